//! The store as a `content::Source` (save, push, copy from local), a `content::Sink` through a
//! write transaction (pull, load, import), and the `content::BlobLocations` every copy consults
//! (kept under `meta-v1/`, see `origins`).

use std::io::Read;

use super::{Store, StoreError, Transaction};
use crate::content::{self, BlobLocation, BlobLocations, ContentError, Reused, Sink, Source};
use crate::oci::{Descriptor, Digest};
use crate::reference::Reference;

fn backend(e: StoreError) -> ContentError {
    match e {
        StoreError::Content(c) => c,
        StoreError::BlobNotFound(d) => ContentError::NotFound(d.to_string()),
        StoreError::ImageNotFound(r) => ContentError::NotFound(r),
        other => ContentError::Backend(Box::new(other)),
    }
}

impl Source for Store {
    fn resolve(&self, reference: &Reference) -> Result<Descriptor, ContentError> {
        Store::resolve(self, reference).map_err(backend)
    }

    fn fetch_manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, ContentError> {
        self.read_blob(&desc.digest).map_err(backend)
    }

    fn open_blob(
        &self,
        desc: &Descriptor,
        _locations: &dyn BlobLocations,
    ) -> Result<Box<dyn Read + Send + '_>, ContentError> {
        Ok(Box::new(
            Store::open_blob(self, &desc.digest).map_err(backend)?,
        ))
    }
}

/// The store is written in a transaction: it is the sink, not the store itself.
impl Sink for Transaction {
    fn try_reuse(
        &self,
        desc: &Descriptor,
        _locations: &dyn BlobLocations,
    ) -> Result<Option<Reused>, ContentError> {
        Ok(self.has_blob(&desc.digest).then_some(Reused::Present))
    }

    fn put_blob(
        &self,
        desc: &Descriptor,
        reader: &mut dyn Read,
        _locations: &dyn BlobLocations,
    ) -> Result<(), ContentError> {
        self.write_blob(reader, Some(desc)).map_err(backend)?;
        Ok(())
    }

    fn put_manifest(&self, desc: &Descriptor, bytes: &[u8]) -> Result<(), ContentError> {
        content::verify(&format!("manifest {}", desc.digest), desc, bytes)?;
        self.write_blob(&mut &bytes[..], Some(desc))
            .map_err(backend)?;
        Ok(())
    }

    fn commit(&self, root: &Descriptor, tags: &[Reference]) -> Result<(), ContentError> {
        let images: Vec<_> = tags
            .iter()
            .map(|t| (Some(t.clone()), root.clone()))
            .collect();
        self.tag_all(&images).map_err(backend)
    }
}

impl BlobLocations for Store {
    fn candidates(&self, digest: &Digest) -> Vec<BlobLocation> {
        self.blob_locations(digest)
    }

    fn record(&self, digest: &Digest, location: &BlobLocation) {
        // Hints: a location that could not be written only costs a later upload.
        let _ = self.add_blob_locations(digest, std::slice::from_ref(location));
    }
}
