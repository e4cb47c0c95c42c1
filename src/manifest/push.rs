//! Pushing a list: one `content::copy` of the list from a source that routes every document and
//! blob to where it is — the store for what it holds, else the registry repository the child was
//! listed from. The copy mounts what another repository of the destination registry holds,
//! uploads local blobs, streams those of other registries across, writes each child by digest
//! and the list last, as the exact bytes stored.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use super::fetch::{Fetcher, location_of};
use super::{ManifestError, Result};
use crate::content::{
    self, BlobLocation, ContentError, CopyOptions, CopyReport, Platforms, Sink, Source,
};
use crate::oci::{self, Descriptor, Digest, Document};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::Repository;
use crate::store::Store;

#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    pub copy: CopyOptions,
    /// Remove the list from the store once pushed.
    pub purge: bool,
}

#[derive(Debug, Clone)]
pub struct Pushed {
    pub destination: Reference,
    pub descriptor: Descriptor,
    pub report: CopyReport,
}

/// Push the list `name` to `destination` (its own name when `None`), then tag it there.
pub fn push(
    fetcher: &Fetcher,
    name: &str,
    destination: Option<&str>,
    progress: &dyn Progress,
    options: &PushOptions,
) -> Result<Pushed> {
    let store = fetcher.store();
    // Keeps gc from removing blobs while they are read.
    let guard = store.write_guard()?;
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
        route(fetcher, &mut source, name, child, &home, 0)?;
    }
    let repo = fetcher.repository(&location_of(&destination))?;
    progress.message(&format!("Pushing {}", destination.familiar()));
    let report = content::copy_with(
        &source,
        repo.as_ref(),
        &destination,
        &list,
        &Platforms::All,
        progress,
        &options.copy,
    )?;
    // The attestations and signatures the store keeps of the list's images go along.
    let subjects = content::image_subjects(&source, &list)?;
    content::copy_referrers(store, repo.as_ref(), &subjects)?;
    Sink::tag(repo.as_ref(), &destination, &list)?;
    drop(guard);
    if options.purge
        && let Some(r) = &found.reference
    {
        super::list::remove(store, &r.to_string())?;
        store.gc()?;
    }
    Ok(Pushed {
        destination,
        descriptor: list,
        report,
    })
}

/// Make `child` (and what it refers to) readable through `source`: nothing to do when the
/// store holds it whole; else its manifest (from the store, or fetched and kept) and the
/// registry repositories its blobs are read from.
fn route(
    fetcher: &Fetcher,
    source: &mut Routed,
    list: &str,
    child: &Descriptor,
    home: &[BlobLocation],
    depth: usize,
) -> Result<()> {
    let store = fetcher.store();
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
        .map(|l| fetcher.repository(l))
        .collect::<Result<Vec<Arc<Repository>>>>()?;
    let mut digests = vec![child.digest.clone()];
    if child.is_manifest() || child.is_index() {
        let bytes = fetcher
            .document(child, &from, true)?
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
                    route(fetcher, source, list, grandchild, &from, depth + 1)?;
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
    store: &'a Store,
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
        Source::resolve(self.store, reference)
    }

    fn fetch_manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, ContentError> {
        if desc.digest == self.root.digest {
            return Ok(self.root_bytes.clone());
        }
        if self.store.has_blob(&desc.digest) {
            return Source::fetch_manifest(self.store, desc);
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

    fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>, ContentError> {
        if self.store.has_blob(&desc.digest) {
            return Source::open_blob(self.store, desc);
        }
        let mut last = None;
        for repo in self.origins(desc)? {
            match repo.open_blob(desc) {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one origin"))
    }

    fn has_manifest(&self, desc: &Descriptor) -> Result<bool, ContentError> {
        Ok(desc.digest == self.root.digest
            || self.store.has_blob(&desc.digest)
            || self.origins.contains_key(&desc.digest))
    }

    fn blob_locations(&self, desc: &Descriptor) -> Vec<BlobLocation> {
        let mut out = self.store.blob_locations(&desc.digest);
        for repo in self.origins.get(&desc.digest).into_iter().flatten() {
            let here = BlobLocation::new(repo.registry(), repo.name());
            if !out.contains(&here) {
                out.push(here);
            }
        }
        out
    }

    fn note_blob_location(&self, desc: &Descriptor, location: &BlobLocation) {
        Source::note_blob_location(self.store, desc, location);
    }
}
