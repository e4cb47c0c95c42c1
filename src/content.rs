//! The two narrow traits every medium implements — a `Source` that resolves references and opens
//! blobs, a `Sink` that receives blobs, manifests and tags — and `copy`, which walks
//! index → manifests → config → layers from any source into any sink.
//!
//! `pull` is registry → store, `save` is store → archive, `copy` is registry → registry: one walk.

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

/// Where images come from.
pub trait Source: Send + Sync {
    /// The descriptor of the document a reference names (its tag or digest).
    fn resolve(&self, reference: &Reference) -> Result<Descriptor, ContentError>;
    /// The exact bytes of a manifest or index.
    fn fetch_manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, ContentError>;
    /// A stream of a blob's bytes (the sink verifies them).
    fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>, ContentError>;
    /// Whether this source can provide a manifest (a sparse index's absent child cannot).
    fn has_manifest(&self, _desc: &Descriptor) -> Result<bool, ContentError> {
        Ok(true)
    }
    /// Registry repositories where this blob is known to live (a registry source names itself;
    /// the store remembers where it pulled from and pushed to). Hints for cross-repo mounts.
    fn blob_locations(&self, _desc: &Descriptor) -> Vec<BlobLocation> {
        Vec::new()
    }
    /// The blob now also lives at `location` (it was just pushed or mounted there). Best effort:
    /// a source that remembers nothing ignores it.
    fn note_blob_location(&self, _desc: &Descriptor, _location: &BlobLocation) {}
}

/// Where images go.
pub trait Sink: Send + Sync {
    fn has_blob(&self, desc: &Descriptor) -> Result<bool, ContentError>;
    /// Store a blob, verifying its digest and size; nothing partial stays visible on failure.
    fn put_blob(&self, desc: &Descriptor, reader: &mut dyn Read) -> Result<(), ContentError>;
    /// Store a manifest or index by digest, exactly these bytes.
    fn put_manifest(&self, desc: &Descriptor, bytes: &[u8]) -> Result<(), ContentError>;
    /// Point a tag at a stored document.
    fn tag(&self, reference: &Reference, desc: &Descriptor) -> Result<(), ContentError>;
    /// The registry repository this sink writes to, if it is one.
    fn location(&self) -> Option<BlobLocation> {
        None
    }
    /// Make the blob available without sending its bytes, from one of `from` (a cross-repository
    /// mount). `Ok(false)` when no location could be used; the caller then uploads.
    fn mount(&self, _desc: &Descriptor, _from: &[BlobLocation]) -> Result<bool, ContentError> {
        Ok(false)
    }
    /// The blob (stored or already present) is known to live at `locations`. Best effort: the
    /// store remembers them for later mounts, other sinks ignore them.
    fn note_blob_locations(&self, _desc: &Descriptor, _locations: &[BlobLocation]) {}
    /// Called for each index of a copy before any blob moves: a sink that would refuse it
    /// says so now rather than after the upload. Most sinks take any index.
    fn check_index(&self, _desc: &Descriptor, _bytes: &[u8]) -> Result<(), ContentError> {
        Ok(())
    }
}

/// Which platforms of an index to copy.
#[derive(Debug, Clone)]
pub enum Platforms {
    /// Every child (attestations included: they stay attached to their subjects).
    All,
    /// The one best match (the default: the host's platform by the matcher's fallback order).
    Best(Matcher),
    /// Each of these, strictly or by fallback; each must be present.
    Each(Vec<Matcher>),
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

/// The children of an index that `platforms` selects.
pub fn select_children<'a>(
    reference: &Reference,
    index: &'a oci::Index,
    platforms: &Platforms,
) -> Result<Vec<&'a Descriptor>, ContentError> {
    let no_match = |m: &Matcher| ContentError::NoMatchingPlatform {
        reference: reference.to_string(),
        wanted: m.platform().to_string(),
        available: index.images().filter_map(|d| d.platform.clone()).collect(),
    };
    match platforms {
        Platforms::All => Ok(index.manifests.iter().collect()),
        Platforms::Best(m) => Ok(vec![index.select(m).ok_or_else(|| no_match(m))?]),
        Platforms::Each(ms) => {
            let mut out: Vec<&Descriptor> = Vec::new();
            for m in ms {
                let d = index.select(m).ok_or_else(|| no_match(m))?;
                if !out.iter().any(|o| o.digest == d.digest) {
                    out.push(d);
                }
            }
            Ok(out)
        }
    }
}

/// Copy with the default options; see `copy_with`.
pub fn copy(
    source: &dyn Source,
    sink: &dyn Sink,
    reference: &Reference,
    root: &Descriptor,
    platforms: &Platforms,
    progress: &dyn Progress,
) -> Result<CopyReport, ContentError> {
    copy_with(
        source,
        sink,
        reference,
        root,
        platforms,
        progress,
        &CopyOptions::default(),
    )
}

/// Copy the image `root` (resolved from `reference`) from `source` to `sink`: children first,
/// the root last, so a sink never holds a document whose selected children are missing. Blobs
/// the sink has are skipped; the others are mounted when the sink can, else streamed, up to
/// `options.concurrency` at once. The root index is kept whole even when only some platforms
/// are copied (a sparse index). Tagging is left to the caller.
pub fn copy_with(
    source: &dyn Source,
    sink: &dyn Sink,
    reference: &Reference,
    root: &Descriptor,
    platforms: &Platforms,
    progress: &dyn Progress,
    options: &CopyOptions,
) -> Result<CopyReport, ContentError> {
    let mut plan = Plan::default();
    let root_bytes = plan.walk(source, reference, root, platforms)?;
    let indexes = plan.documents.iter().map(|(d, b)| (d, b.as_slice()));
    for (desc, bytes) in std::iter::once((root, root_bytes.as_slice())).chain(indexes) {
        if desc.is_index() {
            sink.check_index(desc, bytes)?;
        }
    }
    let mut report = CopyReport::default();
    run_blobs(source, sink, &plan.blobs, progress, options, &mut report)?;
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
        reference: &Reference,
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
                        for child in select_children(reference, &index, platforms)? {
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
    progress: &dyn Progress,
    options: &CopyOptions,
    report: &mut CopyReport,
) -> Result<(), ContentError> {
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let first_error: Mutex<Option<ContentError>> = Mutex::new(None);
    let totals = Mutex::new(CopyReport::default());
    let workers = options.concurrency.clamp(1, blobs.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    if abort.load(Ordering::Relaxed) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(desc) = blobs.get(i) else { return };
                    match copy_blob(source, sink, desc, progress, options, &abort) {
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
    progress: &dyn Progress,
    options: &CopyOptions,
    abort: &AtomicBool,
) -> Result<Outcome, ContentError> {
    let id = desc.digest.short().to_string();
    let locations = source.blob_locations(desc);
    let remember = |outcome: Outcome| {
        sink.note_blob_locations(desc, &locations);
        if let Some(here) = sink.location() {
            source.note_blob_location(desc, &here);
        }
        outcome
    };
    if sink.has_blob(desc)? {
        progress.finish(&id, "exists");
        return Ok(remember(Outcome::Skipped));
    }
    if !locations.is_empty() && sink.mount(desc, &locations)? {
        progress.finish(&id, "mounted");
        return Ok(remember(Outcome::Mounted));
    }
    let attempts = options.blob_attempts.max(1);
    for attempt in 1..=attempts {
        progress.start(&id, &id, Some(desc.size));
        let result = source.open_blob(desc).and_then(|reader| {
            let reader = Abortable {
                inner: reader,
                abort,
            };
            let mut reader = ProgressReader::new(reader, &id, progress);
            sink.put_blob(desc, &mut reader)
        });
        match result {
            Ok(()) => {
                progress.finish(&id, "done");
                return Ok(remember(Outcome::Copied));
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
    fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>, ContentError> {
        self.inner.open_blob(desc)
    }
    fn has_manifest(&self, desc: &Descriptor) -> Result<bool, ContentError> {
        if desc.digest == self.root.digest {
            return Ok(true);
        }
        self.inner.has_manifest(desc)
    }
    fn blob_locations(&self, desc: &Descriptor) -> Vec<BlobLocation> {
        self.inner.blob_locations(desc)
    }
    fn note_blob_location(&self, desc: &Descriptor, location: &BlobLocation) {
        self.inner.note_blob_location(desc, location)
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
    /// Store a referrer of `subject` (its exact `bytes`; its blobs are already here) and list it
    /// as `listed` says. A document that lost its `subject` to a registry that refused it is
    /// listed all the same.
    fn put_referrer(
        &self,
        subject: &Digest,
        listed: &Descriptor,
        bytes: &[u8],
    ) -> Result<(), ContentError>;
    /// Documents cosign keeps under tags named after the subject (`sha256-<hex>.sig`, `.att`,
    /// `.sbom`), as (tag, descriptor). Media without such tags have none.
    fn attached_tags(&self, _subject: &Digest) -> Result<Vec<(String, Descriptor)>, ContentError> {
        Ok(Vec::new())
    }
    /// Store such a document under its tag; false where the medium keeps no such tags (the
    /// store: its tags are images).
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
) -> Result<usize, ContentError>
where
    S: Source + Referrers + ?Sized,
    K: Sink + Referrers + ?Sized,
{
    let mut done: HashSet<Digest> = HashSet::new();
    let mut queue: std::collections::VecDeque<Digest> = subjects.iter().cloned().collect();
    let mut copied = 0;
    let mut visited = 0;
    while let Some(subject) = queue.pop_front() {
        if !done.insert(subject.clone()) {
            continue;
        }
        let there: HashSet<Digest> = sink
            .referrers(&subject)?
            .into_iter()
            .map(|d| d.digest)
            .collect();
        let mut found = source.referrers(&subject)?;
        let tagged = source.attached_tags(&subject)?;
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
            let bytes = copy_document_parts(source, sink, &listed)?;
            sink.put_referrer(&subject, &listed, &bytes)?;
            copied += 1;
        }
        for (tag, desc) in tagged {
            queue.push_back(desc.digest.clone());
            let bytes = copy_document_parts(source, sink, &desc)?;
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
                        if !sink.has_blob(blob)? {
                            sink.put_blob(blob, &mut source.open_blob(blob)?)?;
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
