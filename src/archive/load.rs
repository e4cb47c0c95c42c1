//! `load`: a docker-archive or OCI archive (plain, gzip or zstd) into the store, in one
//! streaming pass: every file is hashed while it is written to a staged temp file (closed once
//! written), in a staging directory of its own that garbage collection leaves alone. Only then is
//! the gc lock taken, every image in the archive checked (each document once, however many
//! parents list it), the blobs it needs made visible and the tags written, in one write of
//! index.json: bad input leaves the store as it was.
//!
//! Memory stays bounded whatever the archive's shape: file contents are never kept (documents
//! are read back from their staged file, one at a time and at most `MAX_DOCUMENT_SIZE`), the two
//! metadata files and tar headers have caps, and so has what is remembered per entry.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::{ArchiveError, HeaderMeter, Result, TarCheck, decompressed};
use crate::layer::Compression;
use crate::lexical::within;
use crate::oci::{
    self, ANNOTATION_REF_NAME, Descriptor, Digest, Document, MAX_DOCUMENT_SIZE, Manifest, Parsed,
    media_type,
};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::store::{StagedBlob, Staging, Store, StoreError, Transaction};

/// Files at least this large get a progress bar.
const PROGRESS_FROM: u64 = 4 << 20;
/// The archive's own metadata files (manifest.json, index.json) are read into memory; a
/// docker-archive of 8,000 tagged images has a manifest.json of about 2 MB.
const METADATA_LIMIT: u64 = 8 << 20;
/// What is remembered of the archive's entries (names, digests, staged files), counted as 256
/// bytes plus the name per entry: some 100,000 entries with docker's names (a docker-archive of
/// a thousand images), about 60 MB of memory in fact.
const ENTRY_BUDGET: usize = 32 << 20;
const ENTRY_OVERHEAD: usize = 256;
/// The annotation containerd and docker (25+) put on index.json entries: the full image name.
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// One image the archive named (or, untagged, held).
#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub reference: Option<Reference>,
    pub descriptor: Descriptor,
}

struct FileInfo {
    digest: Digest,
    size: u64,
    compression: Compression,
}

/// What one pass over the archive gathered.
#[derive(Default)]
struct Contents {
    metadata: HashMap<String, Vec<u8>>,
    files: HashMap<String, FileInfo>,
    /// Archive path → the path it links to (symlinks and hardlinks; docker save dedups layers).
    links: HashMap<String, String>,
    /// Every distinct file content, by digest.
    staged: HashMap<Digest, StagedBlob>,
    /// Bytes of bookkeeping so far, against `ENTRY_BUDGET`.
    remembered: usize,
}

impl Contents {
    fn file(&self, path: &str) -> Option<&FileInfo> {
        let mut p = within(path)?;
        for _ in 0..16 {
            if let Some(f) = self.files.get(&p) {
                return Some(f);
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }

    fn remember(&mut self, name: &str) -> Result<()> {
        self.remembered += name.len() + ENTRY_OVERHEAD;
        if self.remembered > ENTRY_BUDGET {
            return Err(ArchiveError::TooManyEntries {
                limit_mib: ENTRY_BUDGET >> 20,
            });
        }
        Ok(())
    }

    /// The bytes of a document or config, from the archive or else the store: `what` names it in
    /// errors. None when neither has it.
    fn small_blob(&self, store: &Store, digest: &Digest, what: &str) -> Result<Option<Vec<u8>>> {
        let (size, path) = match self.staged.get(digest) {
            Some(s) => (s.size, s.path().to_path_buf()),
            None => match store.blob_size(digest) {
                Some(size) => (size, store.blob_path(digest)),
                None => return Ok(None),
            },
        };
        if size > MAX_DOCUMENT_SIZE {
            return Err(ArchiveError::TooLarge {
                what: format!("{what} {digest}"),
                size,
                limit_mib: MAX_DOCUMENT_SIZE >> 20,
            });
        }
        std::fs::read(&path)
            .map(Some)
            .map_err(|e| StoreError::io("cannot read", &path)(e).into())
    }

    fn has(&self, store: &Store, desc: &Descriptor) -> Option<u64> {
        if let Some(s) = self.staged.get(&desc.digest) {
            return Some(s.size);
        }
        store.blob_size(&desc.digest)
    }
}

/// Load every image of the archive read from `input`.
pub fn load(store: &Store, input: impl Read, progress: &dyn Progress) -> Result<Vec<LoadedImage>> {
    let staging = store.staging()?;
    let contents = read_archive(&staging, input, progress)?;
    // Only now: a load waiting on a stalled pipe must not hold up `rmi` or `prune`, and the
    // staged files are safe from them in their locked directory.
    let txn = store.begin()?;
    let mut plan = Plan::default();
    if contents.metadata.contains_key("index.json") {
        plan_oci(store, &contents, &mut plan)?;
    } else if contents.metadata.contains_key("manifest.json") {
        plan_docker(store, &contents, &mut plan)?;
    } else {
        return Err(ArchiveError::UnknownFormat);
    }
    plan.commit(&txn, contents)
}

/// What to make visible once everything checked out: blobs from the archive, documents we
/// wrote, then tags.
#[derive(Default)]
struct Plan {
    blobs: Vec<Digest>,
    blobs_seen: HashSet<Digest>,
    documents: Vec<Vec<u8>>,
    images: Vec<LoadedImage>,
}

impl Plan {
    fn blob(&mut self, digest: &Digest) {
        if self.blobs_seen.insert(digest.clone()) {
            self.blobs.push(digest.clone());
        }
    }

    fn commit(self, txn: &Transaction, mut contents: Contents) -> Result<Vec<LoadedImage>> {
        for d in &self.blobs {
            if let Some(staged) = contents.staged.remove(d) {
                staged.commit(txn)?;
            }
        }
        for doc in &self.documents {
            txn.put_bytes(doc)?;
        }
        // One write of index.json: every tag of the archive or none.
        let tags: Vec<(Option<Reference>, Descriptor)> = self
            .images
            .iter()
            .map(|i| (i.reference.clone(), i.descriptor.clone()))
            .collect();
        txn.tag_all(&tags)?;
        Ok(self.images)
    }
}

fn read_archive(staging: &Staging, input: impl Read, progress: &dyn Progress) -> Result<Contents> {
    let (reader, compression) = decompressed(input)?;
    let reader = TarCheck::new(reader, compression)?;
    let (reader, meter) = HeaderMeter::new(reader);
    let mut archive = tar::Archive::new(reader);
    let mut contents = Contents::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut entries = archive.entries().map_err(ArchiveError::Corrupt)?;
    // Bounded by the input: each turn consumes an entry.
    loop {
        let next = meter.between_entries(|| entries.next());
        let Some(entry) = next else { break };
        let mut entry = entry?;
        read_entry(staging, &mut entry, progress, &mut contents, &mut buf)?;
        // What the entry holds that was not read (a directory's data, a link's): skipped here,
        // not counted as header.
        std::io::copy(&mut entry, &mut std::io::sink()).map_err(ArchiveError::Corrupt)?;
    }
    // Drain what follows the end-of-archive marker so that a truncated stream is noticed by the
    // decompressor rather than ignored.
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(ArchiveError::Corrupt)?;
    Ok(contents)
}

fn read_entry<R: Read>(
    staging: &Staging,
    entry: &mut tar::Entry<'_, R>,
    progress: &dyn Progress,
    contents: &mut Contents,
    buf: &mut [u8],
) -> Result<()> {
    let raw_path = entry.path().map_err(ArchiveError::Corrupt)?.into_owned();
    let Some(path) = within(&raw_path.to_string_lossy()) else {
        return Err(ArchiveError::BadFile {
            path: raw_path.display().to_string(),
            why: "the path leaves the archive".into(),
        });
    };
    let kind = entry.header().entry_type();
    if kind.is_symlink() || kind.is_hard_link() {
        let target = entry
            .link_name()
            .map_err(ArchiveError::Corrupt)?
            .map(|t| t.into_owned())
            .unwrap_or_default();
        let joined: PathBuf = if kind.is_symlink() {
            Path::new(&path)
                .parent()
                .unwrap_or(Path::new(""))
                .join(&target)
        } else {
            target
        };
        if let Some(t) = within(&joined.to_string_lossy()) {
            contents.remember(&path)?;
            contents.remember(&t)?;
            contents.links.insert(path, t);
        }
        return Ok(());
    }
    if !kind.is_file() {
        return Ok(());
    }
    let size = entry.size();
    match path.as_str() {
        "manifest.json" | "index.json" => {
            if size > METADATA_LIMIT {
                return Err(ArchiveError::BadFile {
                    path,
                    why: format!(
                        "{size} bytes is more than the {} MiB allowed for archive metadata",
                        METADATA_LIMIT >> 20
                    ),
                });
            }
            let mut bytes = Vec::with_capacity(size as usize);
            entry
                .read_to_end(&mut bytes)
                .map_err(ArchiveError::Corrupt)?;
            if bytes.len() as u64 != size {
                return Err(ArchiveError::Corrupt(
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            contents.metadata.insert(path, bytes);
        }
        // Read by nobody: skipped by the caller.
        "oci-layout" | "repositories" => {}
        _ => {
            contents.remember(&path)?;
            let info = stage_file(staging, entry, &path, size, progress, contents, buf)?;
            contents.files.insert(path, info);
        }
    }
    Ok(())
}

fn stage_file(
    staging: &Staging,
    entry: &mut impl Read,
    path: &str,
    size: u64,
    progress: &dyn Progress,
    contents: &mut Contents,
    buf: &mut [u8],
) -> Result<FileInfo> {
    let mut writer = staging.blob_writer()?;
    let mut head = [0u8; 8];
    let mut head_len = 0;
    let show = size >= PROGRESS_FROM;
    if show {
        progress.start(path, path, Some(size));
    }
    // Bounded by the entry's size: the tar reader ends the entry there.
    loop {
        let n = match entry.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ArchiveError::Corrupt(e)),
        };
        // A failed write is the store's (a full disk), never the archive's fault.
        writer
            .write_all(&buf[..n])
            .map_err(|e| StoreError::io("cannot write", writer.path())(e))?;
        let take = (head.len() - head_len).min(n);
        head[head_len..head_len + take].copy_from_slice(&buf[..take]);
        head_len += take;
        if show {
            progress.advance(path, n as u64);
        }
    }
    if show {
        progress.finish(path, "loaded");
    }
    // The tar reader hands out what a cut-off stream still has: a short entry is a truncation.
    if writer.written() != size {
        return Err(ArchiveError::Corrupt(
            std::io::ErrorKind::UnexpectedEof.into(),
        ));
    }
    let staged = writer.finish(None)?;
    if let Some(expected) = blob_path_digest(path)
        && expected != staged.digest
    {
        return Err(ArchiveError::BlobMismatch {
            path: path.to_string(),
            actual: staged.digest,
        });
    }
    let info = FileInfo {
        digest: staged.digest.clone(),
        size: staged.size,
        compression: Compression::sniff(&head[..head_len]),
    };
    // A content already staged (docker save writes a layer once per image that has it, and
    // hostile archives repeat one entry thousands of times) is kept once.
    contents
        .staged
        .entry(staged.digest.clone())
        .or_insert(staged);
    Ok(info)
}

/// `blobs/sha256/<hex>` → the digest the file must have.
fn blob_path_digest(path: &str) -> Option<Digest> {
    let rest = path.strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    Digest::parse(&format!("{alg}:{hex}")).ok()
}

// ---- OCI archives ----

fn plan_oci(store: &Store, contents: &Contents, plan: &mut Plan) -> Result<()> {
    let index: oci::Index =
        serde_json::from_slice(&contents.metadata["index.json"]).map_err(|e| {
            ArchiveError::BadFile {
                path: "index.json".into(),
                why: format!("not a valid image index: {e}"),
            }
        })?;
    // Check that every document and everything it refers to is in the archive (or already
    // stored), with the sizes its descriptors claim: each document once.
    crate::content::walk(
        &index.manifests,
        &mut HashSet::new(),
        |desc, _| check_document(store, contents, desc, plan).map(|children| (children, ())),
        |_, ()| Ok(()),
    )?;
    for entry in &index.manifests {
        let name = entry
            .annotation(ANNOTATION_CONTAINERD_NAME)
            .or_else(|| entry.annotation(ANNOTATION_REF_NAME));
        let reference = match name {
            // A bare tag (`latest`, as umoci writes) names no repository: load it untagged.
            Some(n) if n.contains('/') || n.contains(':') || n.contains('@') => {
                Some(Reference::parse(n)?)
            }
            _ => None,
        };
        let mut descriptor = entry.clone();
        descriptor.annotations = None;
        plan.images.push(LoadedImage {
            reference,
            descriptor,
        });
    }
    Ok(())
}

/// Check one document (its bytes, and for a manifest its config and layers); returns the
/// children of an index.
fn check_document(
    store: &Store,
    contents: &Contents,
    desc: &Descriptor,
    plan: &mut Plan,
) -> Result<Vec<Descriptor>> {
    let what = format!("document of type `{}`", desc.media_type);
    if desc.size > MAX_DOCUMENT_SIZE {
        return Err(ArchiveError::TooLarge {
            what: format!("{what} {}", desc.digest),
            size: desc.size,
            limit_mib: MAX_DOCUMENT_SIZE >> 20,
        });
    }
    let bytes = contents
        .small_blob(store, &desc.digest, &what)?
        .ok_or_else(|| ArchiveError::Missing {
            what,
            digest: desc.digest.clone(),
        })?;
    crate::content::verify(&format!("manifest {}", desc.digest), desc, &bytes)?;
    plan.blob(&desc.digest);
    match oci::parse_document(&desc.media_type, bytes)?.value {
        Document::Index(index) => Ok(index.manifests),
        Document::Manifest(m) => {
            for (what, d) in
                std::iter::once(("config", &m.config)).chain(m.layers.iter().map(|l| ("layer", l)))
            {
                let size = contents
                    .has(store, d)
                    .ok_or_else(|| ArchiveError::Missing {
                        what: what.to_string(),
                        digest: d.digest.clone(),
                    })?;
                if size != d.size {
                    return Err(crate::content::ContentError::SizeMismatch {
                        what: format!("{what} {}", d.digest),
                        expected: d.size,
                        actual: size,
                    }
                    .into());
                }
                plan.blob(&d.digest);
            }
            Ok(Vec::new())
        }
    }
}

// ---- docker-archives ----

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn plan_docker(store: &Store, contents: &Contents, plan: &mut Plan) -> Result<()> {
    let bad = |why: String| ArchiveError::BadFile {
        path: "manifest.json".into(),
        why,
    };
    let entries: Vec<DockerEntry> = serde_json::from_slice(&contents.metadata["manifest.json"])
        .map_err(|e| bad(format!("not a docker-archive manifest: {e}")))?;
    if entries.is_empty() {
        return Err(bad("it lists no images".into()));
    }
    // (layer blob, diff ID) pairs already checked: images of one archive share layers.
    let mut checked: HashSet<(Digest, Digest)> = HashSet::new();
    for entry in entries {
        let missing = |path: &str| ArchiveError::BadFile {
            path: path.to_string(),
            why: "manifest.json names it but the archive does not hold it".into(),
        };
        let config_file = contents
            .file(&entry.config)
            .ok_or_else(|| missing(&entry.config))?;
        let config_bytes = contents
            .small_blob(store, &config_file.digest, "image config")?
            .ok_or_else(|| missing(&entry.config))?;
        let config = oci::parse_config(config_bytes).map_err(|e| ArchiveError::BadFile {
            path: entry.config.clone(),
            why: e.to_string(),
        })?;
        let diff_ids = &config.value.rootfs.diff_ids;
        if diff_ids.len() != entry.layers.len() {
            return Err(ArchiveError::BadFile {
                path: entry.config.clone(),
                why: format!(
                    "it lists {} layers, manifest.json {}",
                    diff_ids.len(),
                    entry.layers.len()
                ),
            });
        }
        plan.blob(&config_file.digest);
        let mut layers = Vec::new();
        for (path, diff_id) in entry.layers.iter().zip(diff_ids) {
            let f = contents.file(path).ok_or_else(|| missing(path))?;
            // A layer's uncompressed content must hash to the config's diff ID, as docker load
            // checks: an uncompressed layer's digest is it, a compressed one is decompressed.
            if checked.insert((f.digest.clone(), diff_id.clone())) {
                check_diff_id(contents, path, f, diff_id)?;
            }
            let mt = f.compression.media_type();
            layers.push(Descriptor::new(mt, f.digest.clone(), f.size));
            plan.blob(&f.digest);
        }
        let manifest = Parsed::from_value(Manifest::new_oci(
            Descriptor::new(
                media_type::OCI_CONFIG,
                config_file.digest.clone(),
                config_file.size,
            ),
            layers,
        ));
        let mut descriptor = manifest.descriptor(media_type::OCI_MANIFEST);
        descriptor.platform = Some(config.value.platform());
        plan.documents.push(manifest.bytes);
        let tags = entry.repo_tags.unwrap_or_default();
        if tags.is_empty() {
            plan.images.push(LoadedImage {
                reference: None,
                descriptor: descriptor.clone(),
            });
        }
        for tag in tags {
            plan.images.push(LoadedImage {
                reference: Some(Reference::parse(&tag)?),
                descriptor: descriptor.clone(),
            });
        }
    }
    Ok(())
}

fn check_diff_id(contents: &Contents, path: &str, f: &FileInfo, diff_id: &Digest) -> Result<()> {
    let actual = match f.compression {
        Compression::None if f.digest.algorithm() == diff_id.algorithm() => f.digest.clone(),
        compression => {
            let staged = contents
                .staged
                .get(&f.digest)
                .expect("every file of the archive is staged");
            let file = std::fs::File::open(staged.path())
                .map_err(|e| StoreError::io("cannot read", staged.path())(e))?;
            crate::layer::diff_id(file, compression, diff_id.algorithm()).map_err(|e| {
                ArchiveError::BadFile {
                    path: path.to_string(),
                    why: format!("it is not a valid layer: {e}"),
                }
            })?
        }
    };
    if &actual != diff_id {
        return Err(ArchiveError::BadFile {
            path: path.to_string(),
            why: format!(
                "its uncompressed content hashes to {actual}, the config's diff ID is {diff_id}"
            ),
        });
    }
    Ok(())
}
