//! Pushing a list: one `content::copy` of the list from a source that routes every document and
//! blob to where it is — the store for what it holds, else the registry repository the child was
//! listed from. The copy mounts what another repository of the destination registry holds,
//! uploads local blobs, streams those of other registries across, writes each child by digest
//! and the list last, as the exact bytes stored.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use super::{ManifestError, Result};
use crate::content::{
    self, BlobLocation, BlobLocations, ContentError, CopyEnv, CopyReport, Platforms, Source,
};
use crate::oci::{self, Descriptor, Digest, Document};
use crate::ops::{Ops, location_of};
use crate::reference::Reference;
use crate::registry::Repository;
use crate::store::Transaction;

#[derive(Debug, Clone)]
pub struct Pushed {
    /// The list's tag in the store (None when it was named by digest).
    pub list: Option<Reference>,
    pub destination: Reference,
    pub descriptor: Descriptor,
    pub report: CopyReport,
}

/// Push the list `name` to `destination` (its own name when `None`), then tag it there.
pub fn push(ops: &Ops, txn: &Transaction, name: &str, destination: Option<&str>) -> Result<Pushed> {
    let store = txn;
    let found = store.lookup(name)?;
    let mut list = found.descriptor.clone();
    list.remove_annotation(oci::ANNOTATION_REF_NAME);
    if !list.is_index() {
        return Err(ManifestError::NotAList(name.to_string()));
    }
    let destination = match (destination, &found.reference) {
        (Some(d), _) => Reference::parse(d)?,
        (None, Some(r)) => r.clone(),
        (None, None) => return Err(ManifestError::NoDestination(name.to_string())),
    };
    if let Some(d) = destination.digest()
        && d != &list.digest
    {
        return Err(ManifestError::DestinationDigest {
            list: name.to_string(),
            actual: list.digest.clone(),
            destination: destination.familiar(),
        });
    }
    let list_bytes = store.read_blob(&list.digest)?;
    // A list pulled from a registry has its missing children there.
    let home: Vec<BlobLocation> = found.reference.iter().map(location_of).collect();
    let mut source = Routed {
        store,
        root: list.clone(),
        root_bytes: list_bytes.clone(),
        origins: HashMap::new(),
    };
    let index = oci::parse_index(list_bytes)?.value;
    for child in &index.manifests {
        route(ops, txn, &mut source, name, child, &home, 0)?;
    }
    let repo = ops.repository(&location_of(&destination))?;
    ops.progress()
        .message(&format!("Pushing {}", destination.familiar()));
    let env = CopyEnv {
        locations: &source,
        progress: ops.progress(),
        options: ops.options(),
    };
    let report = content::copy(
        &source,
        repo.as_ref(),
        name,
        &list,
        &Platforms::All,
        std::slice::from_ref(&destination),
        &env,
    )?;
    // The attestations and signatures the store keeps of the list's images go along.
    let subjects = content::image_subjects(&source, &list)?;
    content::copy_referrers(store.store(), repo.as_ref(), &subjects, &source)?;
    Ok(Pushed {
        list: found.reference,
        destination,
        descriptor: list,
        report,
    })
}

/// Make `child` (and what it refers to) readable through `source`: nothing to do when the
/// store holds it whole; else its manifest (from the store, or fetched and kept) and the
/// registry repositories its blobs are read from.
fn route(
    ops: &Ops,
    txn: &Transaction,
    source: &mut Routed,
    list: &str,
    child: &Descriptor,
    home: &[BlobLocation],
    depth: usize,
) -> Result<()> {
    let store = txn;
    if child.is_manifest() && store.is_complete(&child.digest) {
        return Ok(());
    }
    let mut from = store.blob_locations(&child.digest);
    for h in home {
        if !from.contains(h) {
            from.push(h.clone());
        }
    }
    let unavailable = || ManifestError::ChildUnavailable {
        list: list.to_string(),
        digest: child.digest.clone(),
        what: child
            .platform
            .as_ref()
            .filter(|p| !p.is_unknown())
            .map_or_else(|| "an attestation".into(), |p| format!("`{p}`")),
    };
    if from.is_empty() {
        return Err(unavailable());
    }
    let repos = from
        .iter()
        .map(|l| ops.repository(l))
        .collect::<Result<Vec<Arc<Repository>>, _>>()?;
    let mut digests = vec![child.digest.clone()];
    if child.is_manifest() || child.is_index() {
        let bytes = ops
            .document(txn, child, &from, true)?
            .ok_or_else(unavailable)?;
        match oci::parse_document(&child.media_type, bytes)?.value {
            Document::Manifest(m) => {
                digests.extend(
                    std::iter::once(&m.config)
                        .chain(&m.layers)
                        .map(|d| d.digest.clone()),
                );
            }
            Document::Index(index) => {
                if depth >= oci::MAX_INDEX_DEPTH {
                    return Err(oci::OciError::TooDeep {
                        limit: oci::MAX_INDEX_DEPTH,
                        digest: child.digest.clone(),
                    }
                    .into());
                }
                for grandchild in &index.manifests {
                    route(ops, txn, source, list, grandchild, &from, depth + 1)?;
                }
            }
        }
    }
    for d in digests {
        source
            .origins
            .entry(d)
            .or_default()
            .extend(repos.iter().cloned());
    }
    Ok(())
}

/// A source that reads each document and blob where it is.
struct Routed<'a> {
    store: &'a Transaction,
    root: Descriptor,
    root_bytes: Vec<u8>,
    /// For what the store may lack: the repositories that hold it, in order of preference.
    origins: HashMap<Digest, Vec<Arc<Repository>>>,
}

impl Routed<'_> {
    fn origins(&self, desc: &Descriptor) -> Result<&[Arc<Repository>], ContentError> {
        match self.origins.get(&desc.digest) {
            Some(o) if !o.is_empty() => Ok(o),
            _ => Err(ContentError::NotFound(desc.digest.to_string())),
        }
    }
}

impl Source for Routed<'_> {
    fn resolve(&self, reference: &Reference) -> Result<Descriptor, ContentError> {
        Source::resolve(self.store.store(), reference)
    }

    fn fetch_manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, ContentError> {
        if desc.digest == self.root.digest {
            return Ok(self.root_bytes.clone());
        }
        if self.store.has_blob(&desc.digest) {
            return Source::fetch_manifest(self.store.store(), desc);
        }
        let mut last = None;
        for repo in self.origins(desc)? {
            match repo.fetch_manifest(desc) {
                Ok(b) => return Ok(b),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one origin"))
    }

    fn open_blob(
        &self,
        desc: &Descriptor,
        locations: &dyn BlobLocations,
    ) -> Result<Box<dyn Read + Send + '_>, ContentError> {
        if self.store.has_blob(&desc.digest) {
            return Source::open_blob(self.store.store(), desc, locations);
        }
        let mut last = None;
        for repo in self.origins(desc)? {
            match repo.open_blob(desc, locations) {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one origin"))
    }
}

/// Where the list's blobs live: what the store remembers, and the repositories each child was
/// routed to (what the destination mounts from when it is in the same registry).
impl BlobLocations for Routed<'_> {
    fn candidates(&self, digest: &Digest) -> Vec<BlobLocation> {
        let mut out = self.store.blob_locations(digest);
        for repo in self.origins.get(digest).into_iter().flatten() {
            let here = repo.here();
            if !out.contains(&here) {
                out.push(here);
            }
        }
        out
    }

    fn record(&self, digest: &Digest, location: &BlobLocation) {
        BlobLocations::record(self.store.store(), digest, location);
    }
}
