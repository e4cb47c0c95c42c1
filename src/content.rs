//! The two narrow traits every medium implements — a `Source` that resolves references, fetches
//! manifests and opens blobs; a `Sink` that reuses a blob it has (or can mount), receives blobs
//! and manifests, and commits an image under its tags — the `BlobLocations` a copy consults and
//! teaches (where blobs are known to live: containers/image's BlobInfoCache), the one rule of
//! which children of an index a copy takes (`Platforms::select`: attestations follow their
//! subjects), and `copy`, which walks index → manifests → config → layers from any source into
//! any sink and commits.
//!
//! `pull` is registry → store, `save` is store → archive, `copy` is registry → registry: one walk.
//! The media are the registry (`registry::Repository`), the store (a `store::Transaction` as
//! the sink) and archives (`archive::ArchiveSink`).

use std::collections::HashSet;
use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::hint::Hint;
use crate::oci::{self, Descriptor, Digest, Document};
use crate::platform::{Matcher, Platform};
use crate::progress::{Progress, ProgressReader};
use crate::reference::Reference;

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("`{0}` not found")]
    NotFound(String),
    #[error("content of {what} does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("content of {what} has {actual} bytes, its descriptor says {expected}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("no image for platform `{wanted}` in `{reference}` (it has: {})", list_platforms(.available))]
    NoMatchingPlatform {
        reference: String,
        wanted: String,
        available: Vec<Platform>,
    },
    #[error(transparent)]
    Oci(#[from] oci::OciError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// An error of the medium itself (registry, store, archive), kept typed behind the box.
    #[error(transparent)]
    Backend(BoxError),
    /// An error of the medium that may pass when the operation is tried again (a registry's
    /// 503, a connection reset that resuming could not overcome).
    #[error(transparent)]
    Transient(BoxError),
    /// Stopped because another part of the same copy failed.
    #[error("cancelled")]
    Cancelled,
}

impl ContentError {
    /// Whether trying the same operation again may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ContentError::Transient(_) => true,
            // A stream cut short (a reset the medium could not resume) reaches the sink as I/O.
            ContentError::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::Interrupted
            ),
            _ => false,
        }
    }
}

impl Hint for ContentError {
    fn hint(&self) -> Option<String> {
        match self {
            ContentError::NoMatchingPlatform { .. } => Some(
                "choose one of its platforms with `--platform`, or take them all with `--all-platforms`"
                    .into(),
            ),
            ContentError::Oci(e) => e.hint(),
            ContentError::Io(e) => e.hint(),
            ContentError::Backend(e) | ContentError::Transient(e) => crate::hint::of(&**e),
            _ => None,
        }
    }
}

fn list_platforms(platforms: &[Platform]) -> String {
    if platforms.is_empty() {
        return "none".into();
    }
    platforms
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A repository of a registry where a blob is known to live: what a cross-repository mount
/// names as its `from`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobLocation {
    /// `host[:port]`, as in a reference (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// The repository path (`library/alpine`).
    pub repository: String,
}

impl BlobLocation {
    pub fn new(registry: impl Into<String>, repository: impl Into<String>) -> BlobLocation {
        BlobLocation {
            registry: registry.into(),
            repository: repository.into(),
        }
    }

    /// Parse `registry/repository` (the form `Display` writes).
    pub fn parse(s: &str) -> Option<BlobLocation> {
        let (registry, repository) = s.split_once('/')?;
        (!registry.is_empty() && !repository.is_empty() && !s.contains(char::is_whitespace))
            .then(|| BlobLocation::new(registry, repository))
    }
}

impl std::fmt::Display for BlobLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

/// Where blobs are known to live in registries (containers/image's BlobInfoCache): the
/// candidates a sink may mount a blob from instead of receiving its bytes, and what a copy
/// learns as blobs are read, pushed and mounted. Hints only: a stale one costs a failed mount.
pub trait BlobLocations: Send + Sync {
    /// Registry repositories where the blob is known to live, likeliest first.
    fn candidates(&self, digest: &Digest) -> Vec<BlobLocation>;
    /// The blob lives at `location` (it was just read from, pushed to or mounted there).
    fn record(&self, digest: &Digest, location: &BlobLocation);
}

/// Knows nothing and remembers nothing.
pub struct NoLocations;

impl BlobLocations for NoLocations {
    fn candidates(&self, _digest: &Digest) -> Vec<BlobLocation> {
        Vec::new()
    }
    fn record(&self, _digest: &Digest, _location: &BlobLocation) {}
}

/// What `inner` knows, and that every blob of a copy's source also lives at `home` (a
/// registry source's repository, which a sink of the same registry can mount from).
pub struct WithHome<'a> {
    pub inner: &'a dyn BlobLocations,
    pub home: BlobLocation,
}

impl BlobLocations for WithHome<'_> {
    fn candidates(&self, digest: &Digest) -> Vec<BlobLocation> {
        let mut out = vec![self.home.clone()];
        out.extend(
            self.inner
                .candidates(digest)
                .into_iter()
                .filter(|l| *l != self.home),
        );
        out
    }
    fn record(&self, digest: &Digest, location: &BlobLocation) {
        self.inner.record(digest, location)
    }
}

/// Where images come from.
pub trait Source: Send + Sync {
    /// The descriptor of the document a reference names (its tag or digest).
    fn resolve(&self, reference: &Reference) -> Result<Descriptor, ContentError>;
    /// The exact bytes of a manifest or index.
    fn fetch_manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, ContentError>;
    /// A stream of a blob's bytes (the sink verifies them). A source that lives in a registry
    /// records there in `locations`.
    fn open_blob(
        &self,
        desc: &Descriptor,
        locations: &dyn BlobLocations,
    ) -> Result<Box<dyn Read + Send + '_>, ContentError>;
}

/// How a sink came to have a blob without receiving its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reused {
    /// It had it already.
    Present,
    /// It took it from another repository of its registry (a cross-repository mount).
    Mounted,
}

/// Where images go.
pub trait Sink: Send + Sync {
    /// Whether the blob needs no upload: the sink has it, or can make it available from one of
    /// the `locations` the blob is known at. A sink in a registry records there.
    fn try_reuse(
        &self,
        desc: &Descriptor,
        locations: &dyn BlobLocations,
    ) -> Result<Option<Reused>, ContentError>;
    /// Store a blob, verifying its digest and size; nothing partial stays visible on failure.
    fn put_blob(
        &self,
        desc: &Descriptor,
        reader: &mut dyn Read,
        locations: &dyn BlobLocations,
    ) -> Result<(), ContentError>;
    /// Store a manifest or index by digest, exactly these bytes.
    fn put_manifest(&self, desc: &Descriptor, bytes: &[u8]) -> Result<(), ContentError>;
    /// Finish with `root` (written whole): name it by each of `tags` (none: leave it unnamed).
    fn commit(&self, root: &Descriptor, tags: &[Reference]) -> Result<(), ContentError>;
    /// Called for each index of a copy before any blob moves: a sink that would refuse it
    /// says so now rather than after the upload. Most sinks take any index.
    fn check_index(&self, _desc: &Descriptor, _bytes: &[u8]) -> Result<(), ContentError> {
        Ok(())
    }
}

/// Which platforms of an index to take.
#[derive(Debug, Clone)]
pub enum Platforms {
    /// Every child (attestations included).
    All,
    /// The one best match (the default: the host's platform by the matcher's fallback order).
    /// A lone manifest is taken as it is.
    Best(Matcher),
    /// Each of these, strictly or by fallback; each must be present (a lone manifest must be
    /// of each).
    Each(Vec<Matcher>),
}

impl Platforms {
    /// The platforms a user named: the host's (by fallback) when none.
    pub fn of(wanted: &[Platform]) -> Platforms {
        match wanted {
            [] => Platforms::Best(Platform::host().matcher()),
            ps => Platforms::Each(ps.iter().map(Platform::matcher).collect()),
        }
    }

    /// The children of `index` (named `name` in errors) this selection takes, in the index's
    /// order. Attestation manifests follow their subjects: each chosen image brings the
    /// attestations that describe it, and an attestation never counts as a platform.
    pub fn select<'a>(
        &self,
        name: &str,
        index: &'a oci::Index,
    ) -> Result<Vec<&'a Descriptor>, ContentError> {
        let no_match = |m: &Matcher| ContentError::NoMatchingPlatform {
            reference: name.to_string(),
            wanted: m.platform().to_string(),
            available: index.images().filter_map(|d| d.platform.clone()).collect(),
        };
        let matchers = match self {
            Platforms::All => return Ok(index.manifests.iter().collect()),
            Platforms::Best(m) => std::slice::from_ref(m),
            Platforms::Each(ms) => ms.as_slice(),
        };
        let mut chosen: HashSet<&Digest> = HashSet::new();
        for m in matchers {
            chosen.insert(&index.select(m).ok_or_else(|| no_match(m))?.digest);
        }
        Ok(index
            .manifests
            .iter()
            .filter(|d| {
                chosen.contains(&d.digest)
                    || d.attestation_subject().is_some_and(|s| chosen.contains(&s))
            })
            .collect())
    }

    /// What a lone manifest of `platform` lacks of this selection: the first platform `Each`
    /// asks for that it is not (the other selections take a manifest as it is).
    pub fn unmet(&self, platform: &Platform) -> Option<&Matcher> {
        match self {
            Platforms::Each(ms) => ms.iter().find(|m| !m.matches(platform)),
            _ => None,
        }
    }
}

/// How a copy runs.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Blobs copied at once (at least 1).
    pub concurrency: usize,
    /// Attempts per blob when the medium says an error is transient (at least 1). Registries
    /// also retry single requests and resume interrupted downloads themselves; this retries a
    /// whole blob (reopening the source) when that was not enough.
    pub blob_attempts: usize,
}

/// Blobs in flight at once by default: enough to fill a link with several layers, few enough
/// that a registry does not throttle us.
pub const DEFAULT_CONCURRENCY: usize = 4;

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            concurrency: DEFAULT_CONCURRENCY,
            blob_attempts: 3,
        }
    }
}

/// What a copy needs besides its two ends: where blobs are known to live, the progress
/// reporter, the options.
#[derive(Clone, Copy)]
pub struct CopyEnv<'a> {
    pub locations: &'a dyn BlobLocations,
    pub progress: &'a dyn Progress,
    pub options: &'a CopyOptions,
}

/// What a copy did, for reports and tests.
#[derive(Debug, Default, Clone)]
pub struct CopyReport {
    pub blobs_copied: usize,
    pub blobs_skipped: usize,
    pub blobs_mounted: usize,
    pub bytes_copied: u64,
    /// The image manifests copied (per platform).
    pub manifests: Vec<Descriptor>,
}

/// Copy the image `root` (named `name` in errors) from `source` to `sink`, then commit it
/// under `tags`: children first, the root last, so a sink never holds a document whose selected
/// children are missing. Blobs the sink can reuse (has, or mounts) are not sent; the others are
/// streamed, up to `env.options.concurrency` at once. The root index is kept whole even when
/// only some platforms are copied (a sparse index).
pub fn copy(
    source: &dyn Source,
    sink: &dyn Sink,
    name: &str,
    root: &Descriptor,
    platforms: &Platforms,
    tags: &[Reference],
    env: &CopyEnv<'_>,
) -> Result<CopyReport, ContentError> {
    let mut plan = Plan::default();
    let root_bytes = plan.walk(source, name, root, platforms)?;
    let indexes = plan.documents.iter().map(|(d, b)| (d, b.as_slice()));
    for (desc, bytes) in std::iter::once((root, root_bytes.as_slice())).chain(indexes) {
        if desc.is_index() {
            sink.check_index(desc, bytes)?;
        }
    }
    let mut report = CopyReport::default();
    run_blobs(source, sink, &plan.blobs, env, &mut report)?;
    for (desc, bytes) in &plan.documents {
        sink.put_manifest(desc, bytes)?;
        if desc.is_manifest() {
            report.manifests.push(desc.clone());
        }
    }
    sink.put_manifest(root, &root_bytes)?;
    if root.is_manifest() {
        report.manifests.push(root.clone());
    }
    sink.commit(root, tags)?;
    Ok(report)
}

/// Everything a copy will write, gathered before any blob moves: blobs (each once, in walk
/// order) and the child documents in the order they must be written.
#[derive(Default)]
struct Plan {
    blobs: Vec<Descriptor>,
    documents: Vec<(Descriptor, Vec<u8>)>,
    blobs_seen: HashSet<Digest>,
}

impl Plan {
    /// Walk `root`; returns its bytes (the caller decides when to write them).
    fn walk(
        &mut self,
        source: &dyn Source,
        name: &str,
        root: &Descriptor,
        platforms: &Platforms,
    ) -> Result<Vec<u8>, ContentError> {
        let mut root_bytes = Vec::new();
        let Plan {
            blobs,
            documents,
            blobs_seen,
        } = self;
        walk(
            std::slice::from_ref(root),
            &mut HashSet::new(),
            |desc, depth| {
                let bytes = fetch_verified(source, desc)?;
                let mut children = Vec::new();
                match oci::parse_document(&desc.media_type, bytes.clone())?.value {
                    Document::Index(index) => {
                        // Platforms are chosen at the root; below it everything is copied.
                        let platforms = if depth == 0 {
                            platforms
                        } else {
                            &Platforms::All
                        };
                        for child in platforms.select(name, &index)? {
                            if child.is_index() || child.is_manifest() {
                                children.push(child.clone());
                            } else if blobs_seen.insert(child.digest.clone()) {
                                // Artifacts of unknown kinds: copy the bytes, nothing below them.
                                blobs.push(child.clone());
                            }
                        }
                    }
                    Document::Manifest(manifest) => {
                        for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
                            if blobs_seen.insert(blob.digest.clone()) {
                                blobs.push(blob.clone());
                            }
                        }
                    }
                }
                Ok((children, bytes))
            },
            |desc, bytes| {
                if desc.digest == root.digest {
                    root_bytes = bytes;
                } else {
                    documents.push((desc.clone(), bytes));
                }
                Ok::<(), ContentError>(())
            },
        )?;
        Ok(root_bytes)
    }
}

/// What happened to one blob.
enum Outcome {
    Skipped,
    Mounted,
    Copied,
}

/// Copy `blobs` with up to `options.concurrency` workers pulling from one queue. The first
/// failure stops the others (their streams fail at the next read) and is returned.
fn run_blobs(
    source: &dyn Source,
    sink: &dyn Sink,
    blobs: &[Descriptor],
    env: &CopyEnv<'_>,
    report: &mut CopyReport,
) -> Result<(), ContentError> {
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let first_error: Mutex<Option<ContentError>> = Mutex::new(None);
    let totals = Mutex::new(CopyReport::default());
    let workers = env.options.concurrency.clamp(1, blobs.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    if abort.load(Ordering::Relaxed) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(desc) = blobs.get(i) else { return };
                    match copy_blob(source, sink, desc, env, &abort) {
                        Ok(outcome) => {
                            let mut t = totals.lock().unwrap();
                            match outcome {
                                Outcome::Skipped => t.blobs_skipped += 1,
                                Outcome::Mounted => t.blobs_mounted += 1,
                                Outcome::Copied => {
                                    t.blobs_copied += 1;
                                    t.bytes_copied += desc.size;
                                }
                            }
                        }
                        Err(e) => {
                            abort.store(true, Ordering::Relaxed);
                            let mut first = first_error.lock().unwrap();
                            // A worker stopped by the abort reports `Cancelled`; keep the cause.
                            if first.is_none() || matches!(*first, Some(ContentError::Cancelled)) {
                                *first = Some(e);
                            }
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap() {
        return Err(e);
    }
    let t = totals.into_inner().unwrap();
    report.blobs_copied += t.blobs_copied;
    report.blobs_skipped += t.blobs_skipped;
    report.blobs_mounted += t.blobs_mounted;
    report.bytes_copied += t.bytes_copied;
    Ok(())
}

fn copy_blob(
    source: &dyn Source,
    sink: &dyn Sink,
    desc: &Descriptor,
    env: &CopyEnv<'_>,
    abort: &AtomicBool,
) -> Result<Outcome, ContentError> {
    let id = desc.digest.short().to_string();
    let progress = env.progress;
    match sink.try_reuse(desc, env.locations)? {
        Some(Reused::Present) => {
            progress.finish(&id, "exists");
            return Ok(Outcome::Skipped);
        }
        Some(Reused::Mounted) => {
            progress.finish(&id, "mounted");
            return Ok(Outcome::Mounted);
        }
        None => {}
    }
    let attempts = env.options.blob_attempts.max(1);
    for attempt in 1..=attempts {
        progress.start(&id, &id, Some(desc.size));
        let result = source.open_blob(desc, env.locations).and_then(|reader| {
            let reader = Abortable {
                inner: reader,
                abort,
            };
            let mut reader = ProgressReader::new(reader, &id, progress);
            sink.put_blob(desc, &mut reader, env.locations)
        });
        match result {
            Ok(()) => {
                progress.finish(&id, "done");
                return Ok(Outcome::Copied);
            }
            Err(e) if e.is_transient() && attempt < attempts && !abort.load(Ordering::Relaxed) => {
                progress.finish(&id, &format!("failed ({e}), retrying"));
            }
            Err(e) => {
                progress.finish(&id, "failed");
                // Once another worker failed, this failure is a consequence, not the cause.
                return Err(if abort.load(Ordering::Relaxed) {
                    ContentError::Cancelled
                } else {
                    e
                });
            }
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// A reader that fails once another worker has failed, so a copy stops promptly.
struct Abortable<'a, R> {
    inner: R,
    abort: &'a AtomicBool,
}

impl<R: Read> Read for Abortable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.abort.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("cancelled: another blob failed"));
        }
        self.inner.read(buf)
    }
}

/// A source whose root document is replaced: serves `bytes` for `root` and defers everything
/// else to `inner`. Pushing a subset of a multi-platform image copies from one of these.
pub struct WithDocument<'a> {
    pub inner: &'a dyn Source,
    pub root: Descriptor,
    pub bytes: Vec<u8>,
}

impl Source for WithDocument<'_> {
    fn resolve(&self, reference: &Reference) -> Result<Descriptor, ContentError> {
        self.inner.resolve(reference)
    }
    fn fetch_manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, ContentError> {
        if desc.digest == self.root.digest {
            return Ok(self.bytes.clone());
        }
        self.inner.fetch_manifest(desc)
    }
    fn open_blob(
        &self,
        desc: &Descriptor,
        locations: &dyn BlobLocations,
    ) -> Result<Box<dyn Read + Send + '_>, ContentError> {
        self.inner.open_blob(desc, locations)
    }
}

/// A new index holding only `keep` of `index`'s entries (in their original order), in the
/// original's media type: what is pushed or copied when only some platforms are wanted.
pub fn subset_index(
    media_type: &str,
    index: &oci::Index,
    keep: &[&Descriptor],
) -> (Descriptor, Vec<u8>) {
    let keep: HashSet<&Digest> = keep.iter().map(|c| &c.digest).collect();
    let mut subset = index.clone();
    subset.manifests.retain(|d| keep.contains(&d.digest));
    let bytes = serde_json::to_vec(&subset).expect("OCI documents always serialise");
    (Descriptor::of(media_type, &bytes), bytes)
}

/// Walk the graph of documents below `roots` depth first, each document once however many
/// parents list it (`seen` holds the digests entered so far; callers may share it between
/// walks), with an explicit stack rather than recursion, so neither a wide DAG (exponentially
/// many paths) nor a deep chain (thousands of nested indexes) costs more than one visit per
/// document. Documents deeper than `oci::MAX_INDEX_DEPTH` below their root are refused.
/// `enter(desc, depth)` is called before a document's children and returns the children to walk
/// and a value; `leave(desc, value)` is called after them (children are left before their
/// parents: the order documents must be written in).
pub fn walk<T, E: From<oci::OciError>>(
    roots: &[Descriptor],
    seen: &mut HashSet<Digest>,
    mut enter: impl FnMut(&Descriptor, usize) -> Result<(Vec<Descriptor>, T), E>,
    mut leave: impl FnMut(&Descriptor, T) -> Result<(), E>,
) -> Result<(), E> {
    struct Frame<T> {
        desc: Descriptor,
        children: std::vec::IntoIter<Descriptor>,
        value: T,
    }
    for root in roots {
        if !seen.insert(root.digest.clone()) {
            continue;
        }
        let (children, value) = enter(root, 0)?;
        let mut stack = vec![Frame {
            desc: root.clone(),
            children: children.into_iter(),
            value,
        }];
        // Each iteration enters or leaves one document, and each is entered once: bounded by
        // the number of distinct documents.
        while let Some(top) = stack.last_mut() {
            match top.children.next() {
                Some(child) => {
                    if !seen.insert(child.digest.clone()) {
                        continue;
                    }
                    if stack.len() > oci::MAX_INDEX_DEPTH {
                        return Err(oci::OciError::TooDeep {
                            limit: oci::MAX_INDEX_DEPTH,
                            digest: child.digest,
                        }
                        .into());
                    }
                    let (children, value) = enter(&child, stack.len())?;
                    stack.push(Frame {
                        desc: child,
                        children: children.into_iter(),
                        value,
                    });
                }
                None => {
                    let frame = stack.pop().expect("the stack is not empty");
                    leave(&frame.desc, frame.value)?;
                }
            }
        }
    }
    Ok(())
}

/// Fetch a manifest and check it against its descriptor.
pub fn fetch_verified(source: &dyn Source, desc: &Descriptor) -> Result<Vec<u8>, ContentError> {
    let bytes = source.fetch_manifest(desc)?;
    verify(&format!("manifest {}", desc.digest), desc, &bytes)?;
    Ok(bytes)
}

/// Check bytes against a descriptor's size and digest.
pub fn verify(what: &str, desc: &Descriptor, bytes: &[u8]) -> Result<(), ContentError> {
    if bytes.len() as u64 != desc.size {
        return Err(ContentError::SizeMismatch {
            what: what.to_string(),
            expected: desc.size,
            actual: bytes.len() as u64,
        });
    }
    let actual = desc.digest.compute_like(bytes);
    if actual != desc.digest {
        return Err(ContentError::DigestMismatch {
            what: what.to_string(),
            expected: desc.digest.clone(),
            actual,
        });
    }
    Ok(())
}

/// Media that list the documents naming a `subject` (attestations, signatures): the store's
/// referrers lists, a registry's referrers API or its `sha256-<hex>` fallback tag.
pub trait Referrers {
    /// The referrers of `subject` as their list describes them (`artifactType`, annotations).
    fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>, ContentError>;
    /// Documents cosign keeps under tags named after the subject (`sha256-<hex>.sig`, `.att`,
    /// `.sbom`), as (tag, descriptor). Media without such tags have none.
    fn attached_tags(&self, _subject: &Digest) -> Result<Vec<(String, Descriptor)>, ContentError> {
        Ok(Vec::new())
    }
}

/// Media that take referrers: a store transaction, a registry repository.
pub trait PutReferrers: Referrers {
    /// Store a referrer of `subject` (its exact `bytes`; its blobs are already here) and list it
    /// as `listed` says. A document that lost its `subject` to a registry that refused it is
    /// listed all the same.
    fn put_referrer(
        &self,
        subject: &Digest,
        listed: &Descriptor,
        bytes: &[u8],
    ) -> Result<(), ContentError>;
    /// Store a document cosign keeps under a tag; false where the medium keeps no such tags
    /// (the store: its tags are images).
    fn put_attached_tag(
        &self,
        _tag: &str,
        _desc: &Descriptor,
        _bytes: &[u8],
    ) -> Result<bool, ContentError> {
        Ok(false)
    }
}

/// What referrers can name in the image `root`: the root itself and, for an index, each
/// manifest it lists (platforms, and inline attestation manifests, which cosign may sign too).
pub fn image_subjects(source: &dyn Source, root: &Descriptor) -> Result<Vec<Digest>, ContentError> {
    let mut out = vec![root.digest.clone()];
    if root.is_index() {
        let bytes = fetch_verified(source, root)?;
        if let Document::Index(index) = oci::parse_document(&root.media_type, bytes)?.value {
            out.extend(index.manifests.into_iter().map(|d| d.digest));
        }
    }
    Ok(out)
}

/// Referrers looked at per call at most: a source listing more is hostile or broken.
pub const MAX_REFERRERS: usize = 10_000;

/// Copy the referrers of each of `subjects` (signatures, attestations, and their own referrers
/// in turn) and cosign's tagged attachments from `source` to `sink`, so that an image keeps them
/// wherever it is copied. Each referrer's blobs go first, then the referrer. Referrers the sink
/// already lists are skipped. Returns how many documents were copied.
pub fn copy_referrers<S, K>(
    source: &S,
    sink: &K,
    subjects: &[Digest],
    locations: &dyn BlobLocations,
) -> Result<usize, ContentError>
where
    S: Source + Referrers + ?Sized,
    K: Sink + PutReferrers + ?Sized,
{
    let mut done: HashSet<Digest> = HashSet::new();
    let mut queue: std::collections::VecDeque<Digest> = subjects.iter().cloned().collect();
    let mut copied = 0;
    let mut visited = 0;
    while let Some(subject) = queue.pop_front() {
        if !done.insert(subject.clone()) {
            continue;
        }
        let mut found = source.referrers(&subject)?;
        let tagged = source.attached_tags(&subject)?;
        if found.is_empty() && tagged.is_empty() {
            // Nothing to carry: the sink is not asked what it has (a build's push of an image
            // without attestations asks the registry nothing more).
            continue;
        }
        let there: HashSet<Digest> = sink
            .referrers(&subject)?
            .into_iter()
            .map(|d| d.digest)
            .collect();
        visited += found.len() + tagged.len();
        if visited > MAX_REFERRERS {
            return Err(oci::OciError::Invalid(format!(
                "more than {MAX_REFERRERS} referrers and attachments below {}",
                subjects
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ))
            .into());
        }
        found.retain(|d| !there.contains(&d.digest));
        for listed in found {
            queue.push_back(listed.digest.clone());
            let bytes = copy_document_parts(source, sink, &listed, locations)?;
            sink.put_referrer(&subject, &listed, &bytes)?;
            copied += 1;
        }
        for (tag, desc) in tagged {
            queue.push_back(desc.digest.clone());
            let bytes = copy_document_parts(source, sink, &desc, locations)?;
            if sink.put_attached_tag(&tag, &desc, &bytes)? {
                copied += 1;
            }
        }
    }
    Ok(copied)
}

/// Everything a document reaches (children, config, layers) into `sink`, children written
/// before their parents; the document's own verified bytes are returned, not written.
fn copy_document_parts<S, K>(
    source: &S,
    sink: &K,
    root: &Descriptor,
    locations: &dyn BlobLocations,
) -> Result<Vec<u8>, ContentError>
where
    S: Source + ?Sized,
    K: Sink + ?Sized,
{
    let plain = Descriptor::new(root.media_type.clone(), root.digest.clone(), root.size);
    let mut root_bytes = Vec::new();
    walk(
        std::slice::from_ref(&plain),
        &mut HashSet::new(),
        |desc, depth| {
            let bytes = source.fetch_manifest(desc)?;
            verify(&format!("manifest {}", desc.digest), desc, &bytes)?;
            let children = match oci::parse_document(&desc.media_type, bytes.clone())?.value {
                Document::Index(index) => index.manifests,
                Document::Manifest(m) => {
                    for blob in std::iter::once(&m.config).chain(&m.layers) {
                        if sink.try_reuse(blob, locations)?.is_none() {
                            let mut reader = source.open_blob(blob, locations)?;
                            sink.put_blob(blob, &mut reader, locations)?;
                        }
                    }
                    Vec::new()
                }
            };
            Ok::<_, ContentError>((children, (depth, bytes)))
        },
        |desc, (depth, bytes)| {
            if depth == 0 {
                root_bytes = bytes;
                Ok(())
            } else {
                sink.put_manifest(desc, &bytes)
            }
        },
    )?;
    Ok(root_bytes)
}

#[cfg(test)]
mod walk_tests {
    use std::collections::HashMap;

    use super::*;
    use crate::oci::media_type;

    fn node(name: &str) -> Descriptor {
        Descriptor::of(media_type::OCI_INDEX, name.as_bytes())
    }

    /// A DAG given as parent → children, walked from `roots`: what was entered and left, in order.
    fn run(
        graph: &HashMap<Digest, Vec<Descriptor>>,
        roots: &[Descriptor],
    ) -> Result<(Vec<Digest>, Vec<Digest>), oci::OciError> {
        let (mut entered, mut left) = (Vec::new(), Vec::new());
        walk(
            roots,
            &mut HashSet::new(),
            |d, _| {
                entered.push(d.digest.clone());
                Ok((graph.get(&d.digest).cloned().unwrap_or_default(), ()))
            },
            |d, ()| {
                left.push(d.digest.clone());
                Ok(())
            },
        )?;
        Ok((entered, left))
    }

    #[test]
    fn a_wide_dag_is_walked_once_per_document_children_first() {
        // 100 documents per level, each listing all 100 of the next, 4 levels: 10^8 paths.
        let mut graph = HashMap::new();
        let mut level: Vec<Descriptor> = (0..100).map(|i| node(&format!("leaf{i}"))).collect();
        for l in 0..3 {
            let parents: Vec<Descriptor> = (0..100).map(|i| node(&format!("{l}-{i}"))).collect();
            for p in &parents {
                graph.insert(p.digest.clone(), level.clone());
            }
            level = parents;
        }
        let (entered, left) = run(&graph, &level).unwrap();
        assert_eq!(entered.len(), 400);
        assert_eq!(left.len(), 400);
        // Post-order: every child is left before any parent listing it.
        let pos: HashMap<&Digest, usize> = left.iter().enumerate().map(|(i, d)| (d, i)).collect();
        for (parent, children) in &graph {
            for c in children {
                assert!(pos[&c.digest] < pos[parent]);
            }
        }
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused_without_recursion() {
        let chain: Vec<Descriptor> = (0..15_000).map(|i| node(&i.to_string())).collect();
        let graph: HashMap<Digest, Vec<Descriptor>> = chain
            .windows(2)
            .map(|w| (w[0].digest.clone(), vec![w[1].clone()]))
            .collect();
        let err = run(&graph, &chain[..1]).unwrap_err();
        assert!(
            matches!(err, oci::OciError::TooDeep { limit: oci::MAX_INDEX_DEPTH, ref digest } if *digest == chain[oci::MAX_INDEX_DEPTH + 1].digest),
            "{err}"
        );
        // At the limit itself, the walk goes through.
        let (entered, _) = run(&graph, &chain[chain.len() - oci::MAX_INDEX_DEPTH - 1..]).unwrap();
        assert_eq!(entered.len(), oci::MAX_INDEX_DEPTH + 1);
    }
}

#[cfg(test)]
mod select_tests {
    use super::*;
    use crate::oci::{
        ANNOTATION_DOCKER_REFERENCE_DIGEST, ANNOTATION_DOCKER_REFERENCE_TYPE, media_type,
    };

    fn image(platform: &str) -> Descriptor {
        let mut d = Descriptor::of(media_type::OCI_MANIFEST, platform.as_bytes());
        d.platform = Some(platform.parse().unwrap());
        d
    }

    fn attestation(subject: &Descriptor) -> Descriptor {
        let mut d = Descriptor::of(media_type::OCI_MANIFEST, subject.digest.hex().as_bytes());
        d.platform = Some(Platform::new("unknown", "unknown", None));
        d.set_annotation(ANNOTATION_DOCKER_REFERENCE_TYPE, "attestation-manifest");
        d.set_annotation(
            ANNOTATION_DOCKER_REFERENCE_DIGEST,
            subject.digest.to_string(),
        );
        d
    }

    fn digests(ds: &[&Descriptor]) -> Vec<Digest> {
        ds.iter().map(|d| d.digest.clone()).collect()
    }

    #[test]
    fn attestations_follow_the_images_they_describe() {
        let amd = image("linux/amd64");
        let arm = image("linux/arm64");
        let s390 = image("linux/s390x");
        let (att_amd, att_arm) = (attestation(&amd), attestation(&arm));
        let index = oci::Index::new_oci(vec![
            amd.clone(),
            arm.clone(),
            s390.clone(),
            att_amd.clone(),
            att_arm.clone(),
        ]);
        let arm64 = Platform::parse("linux/arm64").unwrap().matcher();
        let amd64 = Platform::parse("linux/amd64").unwrap().matcher();
        let best = Platforms::Best(arm64.clone()).select("x", &index).unwrap();
        assert_eq!(digests(&best), digests(&[&arm, &att_arm]));
        // Each platform once, in the index's order, whatever the order asked.
        let each = Platforms::Each(vec![arm64.clone(), amd64, arm64])
            .select("x", &index)
            .unwrap();
        assert_eq!(digests(&each), digests(&[&amd, &arm, &att_amd, &att_arm]));
        let all = Platforms::All.select("x", &index).unwrap();
        assert_eq!(all.len(), 5);
        // An attestation is never a platform: `unknown/unknown` matches nothing.
        let unknown = Platform::new("unknown", "unknown", None).matcher();
        let err = Platforms::Best(unknown).select("x", &index).unwrap_err();
        assert!(
            matches!(&err, ContentError::NoMatchingPlatform { available, .. } if available.len() == 3),
            "{err}"
        );
    }

    #[test]
    fn a_lone_manifest_must_be_of_each_platform_asked_for() {
        let arm64 = Platform::parse("linux/arm64").unwrap();
        let amd64 = Platform::parse("linux/amd64").unwrap();
        assert!(Platforms::All.unmet(&amd64).is_none());
        assert!(Platforms::Best(arm64.matcher()).unmet(&amd64).is_none());
        assert!(
            Platforms::of(std::slice::from_ref(&arm64))
                .unmet(&arm64)
                .is_none()
        );
        let both = Platforms::of(&[amd64.clone(), arm64.clone()]);
        let wanted = both.unmet(&amd64).unwrap();
        assert_eq!(wanted.platform().to_string(), arm64.to_string());
    }
}
