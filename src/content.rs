//! The two narrow traits every medium implements — a `Source` that resolves references and opens
//! blobs, a `Sink` that receives blobs, manifests and tags — and `copy`, which walks
//! index → manifests → config → layers from any source into any sink.
//!
//! `pull` is registry → store, `save` is store → archive, `copy` is registry → registry: one walk.

use std::io::Read;

use crate::oci::{self, Descriptor, Digest, Document, Parsed};
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

/// What a copy did, for reports and tests.
#[derive(Debug, Default, Clone)]
pub struct CopyReport {
    pub blobs_copied: usize,
    pub blobs_skipped: usize,
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

/// Copy the image `root` (resolved from `reference`) from `source` to `sink`: children first,
/// the root last, so a sink never holds a document whose selected children are missing. Blobs
/// the sink has are skipped. The root index is kept whole even when only some platforms are
/// copied (a sparse index). Tagging is left to the caller.
pub fn copy(
    source: &dyn Source,
    sink: &dyn Sink,
    reference: &Reference,
    root: &Descriptor,
    platforms: &Platforms,
    progress: &dyn Progress,
) -> Result<CopyReport, ContentError> {
    let mut report = CopyReport::default();
    let bytes = fetch_verified(source, root)?;
    match oci::parse_document(&root.media_type, bytes.clone())?.value {
        Document::Index(index) => {
            for child in select_children(reference, &index, platforms)? {
                if child.is_index() {
                    let sub = Platforms::All;
                    let r = copy(source, sink, reference, child, &sub, progress)?;
                    merge(&mut report, r);
                } else if child.is_manifest() {
                    copy_manifest(source, sink, child, progress, &mut report)?;
                } else {
                    // Artifacts of unknown kinds: copy the bytes, nothing below them.
                    copy_blob(source, sink, child, progress, &mut report)?;
                }
            }
        }
        Document::Manifest(_) => copy_manifest(source, sink, root, progress, &mut report)?,
    }
    sink.put_manifest(root, &bytes)?;
    Ok(report)
}

fn merge(into: &mut CopyReport, from: CopyReport) {
    into.blobs_copied += from.blobs_copied;
    into.blobs_skipped += from.blobs_skipped;
    into.bytes_copied += from.bytes_copied;
    into.manifests.extend(from.manifests);
}

fn copy_manifest(
    source: &dyn Source,
    sink: &dyn Sink,
    desc: &Descriptor,
    progress: &dyn Progress,
    report: &mut CopyReport,
) -> Result<(), ContentError> {
    let bytes = fetch_verified(source, desc)?;
    let manifest: Parsed<oci::Manifest> = oci::parse_manifest(bytes)?;
    copy_blob(source, sink, &manifest.value.config, progress, report)?;
    for layer in &manifest.value.layers {
        copy_blob(source, sink, layer, progress, report)?;
    }
    sink.put_manifest(desc, &manifest.bytes)?;
    report.manifests.push(desc.clone());
    Ok(())
}

fn copy_blob(
    source: &dyn Source,
    sink: &dyn Sink,
    desc: &Descriptor,
    progress: &dyn Progress,
    report: &mut CopyReport,
) -> Result<(), ContentError> {
    let id = desc.digest.short().to_string();
    if sink.has_blob(desc)? {
        report.blobs_skipped += 1;
        progress.finish(&id, "exists");
        return Ok(());
    }
    progress.start(&id, &id, Some(desc.size));
    let reader = source.open_blob(desc)?;
    let mut reader = ProgressReader::new(reader, &id, progress);
    sink.put_blob(desc, &mut reader)?;
    progress.finish(&id, "done");
    report.blobs_copied += 1;
    report.bytes_copied += desc.size;
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
