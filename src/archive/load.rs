//! `load`: a docker-archive or OCI archive (plain, gzip or zstd) into the store, in one
//! streaming pass: every file is hashed while it is written to a staged temp file. Only when the
//! whole archive has been read and every image in it checked are the blobs it needs made visible
//! and the tags written; bad input leaves the store as it was.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use super::{ArchiveError, Result, TarCheck, decompressed, sniff_compression};
use crate::oci::{
    self, ANNOTATION_REF_NAME, Descriptor, Digest, Document, Manifest, Parsed, media_type,
    media_type::LayerCompression,
};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::store::{StagedBlob, Store, copy_buffered};

/// Files kept in memory as well as staged: configs and manifests are parsed after the pass.
const KEEP_IN_MEMORY: u64 = 4 << 20;
/// The archive's own metadata files are small; anything bigger is not what it claims.
const METADATA_LIMIT: u64 = 64 << 20;
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
    compression: LayerCompression,
    bytes: Option<Vec<u8>>,
}

/// What one pass over the archive gathered.
#[derive(Default)]
struct Contents {
    metadata: HashMap<String, Vec<u8>>,
    files: HashMap<String, FileInfo>,
    /// Archive path → the path it links to (symlinks and hardlinks; docker save dedups layers).
    links: HashMap<String, String>,
    staged: HashMap<Digest, StagedBlob>,
}

impl Contents {
    fn file(&self, path: &str) -> Option<&FileInfo> {
        let mut p = normalize(path)?;
        for _ in 0..16 {
            if let Some(f) = self.files.get(&p) {
                return Some(f);
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }

    fn bytes_of(&self, store: &Store, digest: &Digest) -> Result<Option<Vec<u8>>> {
        if let Some(b) = self
            .files
            .values()
            .find(|f| &f.digest == digest)
            .and_then(|f| f.bytes.as_ref())
        {
            return Ok(Some(b.clone()));
        }
        if let Some(s) = self.staged.get(digest) {
            return std::fs::read(s.path())
                .map(Some)
                .map_err(|e| ArchiveError::Io {
                    what: format!("cannot read staged blob {digest}"),
                    source: e,
                });
        }
        if store.has_blob(digest) {
            return Ok(Some(store.read_blob(digest)?));
        }
        Ok(None)
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
    let _guard = store.write_guard()?;
    let contents = read_archive(store, input, progress)?;
    let mut plan = Plan::default();
    if contents.metadata.contains_key("index.json") {
        plan_oci(store, &contents, &mut plan)?;
    } else if contents.metadata.contains_key("manifest.json") {
        plan_docker(store, &contents, &mut plan)?;
    } else {
        return Err(ArchiveError::UnknownFormat);
    }
    plan.commit(store, contents)
}

/// What to make visible once everything checked out: blobs from the archive, documents we
/// wrote, then tags.
#[derive(Default)]
struct Plan {
    blobs: Vec<Digest>,
    documents: Vec<Vec<u8>>,
    images: Vec<LoadedImage>,
}

impl Plan {
    fn commit(self, store: &Store, mut contents: Contents) -> Result<Vec<LoadedImage>> {
        for d in &self.blobs {
            if let Some(staged) = contents.staged.remove(d) {
                staged.commit(store)?;
            }
        }
        for doc in &self.documents {
            store.put_bytes(doc)?;
        }
        for image in &self.images {
            match &image.reference {
                Some(r) => store.tag(r, &image.descriptor)?,
                None => store.add_untagged(&image.descriptor)?,
            }
        }
        Ok(self.images)
    }
}

/// `a/./b/../c` → `a/c`; None for paths that leave the archive root.
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir | Component::RootDir => {}
            Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

fn read_archive(store: &Store, input: impl Read, progress: &dyn Progress) -> Result<Contents> {
    let (reader, compression) = decompressed(input)?;
    let reader = TarCheck::new(reader, compression)?;
    let mut archive = tar::Archive::new(reader);
    let mut contents = Contents::default();
    for entry in archive.entries().map_err(ArchiveError::Corrupt)? {
        let mut entry = entry.map_err(ArchiveError::Corrupt)?;
        let raw_path = entry.path().map_err(ArchiveError::Corrupt)?.into_owned();
        let Some(path) = normalize(&raw_path.to_string_lossy()) else {
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
            if let Some(t) = normalize(&joined.to_string_lossy()) {
                contents.links.insert(path, t);
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let size = entry.size();
        if matches!(
            path.as_str(),
            "manifest.json" | "index.json" | "oci-layout" | "repositories"
        ) {
            if size > METADATA_LIMIT {
                return Err(ArchiveError::BadFile {
                    path,
                    why: format!("{size} bytes is too large for archive metadata"),
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
            continue;
        }
        let info = stage_file(store, &mut entry, &path, size, progress, &mut contents)?;
        contents.files.insert(path, info);
    }
    // Drain what follows the end-of-archive marker so that a truncated stream is noticed by the
    // decompressor rather than ignored.
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(ArchiveError::Corrupt)?;
    Ok(contents)
}

fn stage_file(
    store: &Store,
    entry: &mut impl Read,
    path: &str,
    size: u64,
    progress: &dyn Progress,
    contents: &mut Contents,
) -> Result<FileInfo> {
    let mut writer = store.blob_writer()?;
    let keep = size <= KEEP_IN_MEMORY;
    let mut memory = Vec::new();
    let mut head = [0u8; 8];
    let mut head_len = 0;
    let show = size > KEEP_IN_MEMORY;
    if show {
        progress.start(path, path, Some(size));
    }
    {
        let mut tee = Tee {
            inner: &mut writer,
            memory: keep.then_some(&mut memory),
            head: &mut head,
            head_len: &mut head_len,
            progress: show.then_some((path, progress)),
        };
        copy_buffered(entry, &mut tee).map_err(ArchiveError::Corrupt)?;
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
        compression: sniff_compression(&head[..head_len]),
        bytes: keep.then_some(memory),
    };
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

/// Writes to the blob writer while keeping the first bytes (to sniff compression) and, for
/// small files, a copy in memory.
struct Tee<'a> {
    inner: &'a mut crate::store::BlobWriter,
    memory: Option<&'a mut Vec<u8>>,
    head: &'a mut [u8; 8],
    head_len: &'a mut usize,
    progress: Option<(&'a str, &'a dyn Progress)>,
}

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let take = (8 - *self.head_len).min(n);
        self.head[*self.head_len..*self.head_len + take].copy_from_slice(&buf[..take]);
        *self.head_len += take;
        if let Some(m) = self.memory.as_mut() {
            m.extend_from_slice(&buf[..n]);
        }
        if let Some((id, p)) = self.progress {
            p.advance(id, n as u64);
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
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
    for entry in &index.manifests {
        check_document(store, contents, entry, plan)?;
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

/// Check that a document and everything it refers to is in the archive (or already stored),
/// with the sizes its descriptors claim.
fn check_document(
    store: &Store,
    contents: &Contents,
    desc: &Descriptor,
    plan: &mut Plan,
) -> Result<()> {
    let bytes = contents
        .bytes_of(store, &desc.digest)?
        .ok_or_else(|| ArchiveError::Missing {
            what: format!("document of type `{}`", desc.media_type),
            digest: desc.digest.clone(),
        })?;
    crate::content::verify(&format!("manifest {}", desc.digest), desc, &bytes)?;
    plan.blobs.push(desc.digest.clone());
    match oci::parse_document(&desc.media_type, bytes)?.value {
        Document::Index(index) => {
            for child in &index.manifests {
                check_document(store, contents, child, plan)?;
            }
        }
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
                plan.blobs.push(d.digest.clone());
            }
        }
    }
    Ok(())
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
    for entry in entries {
        let missing = |path: &str| ArchiveError::BadFile {
            path: path.to_string(),
            why: "manifest.json names it but the archive does not hold it".into(),
        };
        let config_file = contents
            .file(&entry.config)
            .ok_or_else(|| missing(&entry.config))?;
        let config_bytes = contents
            .bytes_of(store, &config_file.digest)?
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
        plan.blobs.push(config_file.digest.clone());
        let mut layers = Vec::new();
        for (path, diff_id) in entry.layers.iter().zip(diff_ids) {
            let f = contents.file(path).ok_or_else(|| missing(path))?;
            // An uncompressed layer's digest is its diff ID: check it, as docker load does.
            if f.compression == LayerCompression::None && &f.digest != diff_id {
                return Err(ArchiveError::BadFile {
                    path: path.clone(),
                    why: format!(
                        "its content hashes to {}, the config's diff ID is {diff_id}",
                        f.digest
                    ),
                });
            }
            let mt = match f.compression {
                LayerCompression::None => media_type::OCI_LAYER,
                LayerCompression::Gzip => media_type::OCI_LAYER_GZIP,
                LayerCompression::Zstd => media_type::OCI_LAYER_ZSTD,
            };
            layers.push(Descriptor::new(mt, f.digest.clone(), f.size));
            plan.blobs.push(f.digest.clone());
        }
        let manifest = Parsed::from_value(Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::new(
                media_type::OCI_CONFIG,
                config_file.digest.clone(),
                config_file.size,
            ),
            layers,
            subject: None,
            annotations: None,
            extra: Default::default(),
        });
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
