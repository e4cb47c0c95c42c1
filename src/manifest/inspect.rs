//! What a list or image holds, from the store when it has it, else from its registry: the
//! document itself, and in detail each platform's manifest (size, config, layers) with the
//! attestations attached to it.

use serde::Serialize;

use super::{ManifestError, Result};
use crate::content::BlobLocation;
use crate::oci::{self, Descriptor, Digest, Document};
use crate::ops::{Ops, location_of};
use crate::reference::Reference;
use crate::store::{StoreError, Transaction};

/// A document and, in detail, what it lists.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Inspected {
    /// The name it was found under (normalised), or what was typed.
    pub name: String,
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// Read from the store (else from the registry).
    pub local: bool,
    /// Each platform's image (verbose only); a single-platform image is its own one entry.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<Child>,
    /// The exact bytes of the document.
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Child {
    /// `registry/repository@digest` where it is read from, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub digest: Digest,
    pub media_type: String,
    pub platform: Option<String>,
    /// Manifest, config and layers together: what pulling this platform downloads.
    pub size: u64,
    pub config: Blob,
    pub layers: Vec<Blob>,
    /// For a local list: whether the store holds the whole image (else it lives in a registry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<Blob>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Blob {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

impl Blob {
    fn of(d: &Descriptor) -> Blob {
        Blob {
            media_type: d.media_type.clone(),
            digest: d.digest.clone(),
            size: d.size,
        }
    }
}

/// Inspect `input` (a list or an image): the store's when it has it, else the registry's.
/// `verbose` reads each platform's manifest too.
pub fn inspect(ops: &Ops, txn: &Transaction, input: &str, verbose: bool) -> Result<Inspected> {
    let store = txn;
    let (name, mut descriptor, bytes, local, home) = match store.lookup(input) {
        Ok(found) => {
            let named = found
                .reference
                .clone()
                .or_else(|| Reference::parse(input).ok());
            let bytes = store.read_blob(&found.descriptor.digest)?;
            (
                found
                    .reference
                    .map_or_else(|| input.to_string(), |r| r.to_string()),
                found.descriptor,
                bytes,
                true,
                named,
            )
        }
        Err(StoreError::ImageNotFound(_)) => {
            let reference = Reference::parse(input)?;
            let (d, b) = ops.resolve_remote(&reference)?;
            (reference.to_string(), d, b, false, Some(reference))
        }
        Err(e) => return Err(e.into()),
    };
    descriptor.remove_annotation(oci::ANNOTATION_REF_NAME);
    let mut out = Inspected {
        name,
        digest: descriptor.digest.clone(),
        media_type: descriptor.media_type.clone(),
        size: descriptor.size,
        local,
        manifests: Vec::new(),
        bytes: bytes.clone(),
    };
    if !verbose {
        return Ok(out);
    }
    let home: Vec<BlobLocation> = home.iter().map(location_of).collect();
    match oci::parse_document(&descriptor.media_type, bytes)?.value {
        Document::Manifest(m) => {
            let config = ops.config(txn, &m.config, &home, false)?;
            let platform = config.map(|c| c.value.platform().to_string());
            out.manifests
                .push(child(txn, &descriptor, &m, platform, &home, local));
        }
        Document::Index(index) => {
            for d in index.images() {
                if !d.is_manifest() {
                    continue;
                }
                let mut from = if local {
                    store.blob_locations(&d.digest)
                } else {
                    Vec::new()
                };
                from.extend(home.iter().cloned());
                let bytes = ops.document(txn, d, &from, false)?.ok_or_else(|| {
                    ManifestError::ChildUnavailable {
                        list: out.name.clone(),
                        digest: d.digest.clone(),
                        what: "its manifest".into(),
                    }
                })?;
                let m = oci::parse_manifest(bytes)?.value;
                let mut c = child(
                    txn,
                    d,
                    &m,
                    d.platform.as_ref().map(ToString::to_string),
                    &from,
                    local,
                );
                c.attestations = index
                    .manifests
                    .iter()
                    .filter(|a| a.attestation_subject().as_ref() == Some(&d.digest))
                    .map(Blob::of)
                    .collect();
                out.manifests.push(c);
            }
        }
    }
    Ok(out)
}

fn child(
    txn: &Transaction,
    d: &Descriptor,
    m: &oci::Manifest,
    platform: Option<String>,
    from: &[BlobLocation],
    local: bool,
) -> Child {
    let store = txn;
    let present = store.is_complete(&d.digest);
    let reference = match (present && local, from.first()) {
        (false, Some(l)) => Some(format!("{l}@{}", d.digest)),
        _ => None,
    };
    Child {
        reference,
        digest: d.digest.clone(),
        media_type: d.media_type.clone(),
        platform,
        size: d.size + m.config.size + m.layers.iter().map(|l| l.size).sum::<u64>(),
        config: Blob::of(&m.config),
        layers: m.layers.iter().map(Blob::of).collect(),
        present: local.then_some(present),
        attestations: Vec::new(),
    }
}
