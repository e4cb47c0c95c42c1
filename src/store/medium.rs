//! The store as a `content::Source` (save, push, copy from local) and `content::Sink` (pull,
//! load, import).

use std::io::Read;

use super::{Store, StoreError, Transaction};
use crate::content::{self, BlobLocation, ContentError, Sink, Source};
use crate::oci::Descriptor;
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

    fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>, ContentError> {
        Ok(Box::new(
            Store::open_blob(self, &desc.digest).map_err(backend)?,
        ))
    }

    fn has_manifest(&self, desc: &Descriptor) -> Result<bool, ContentError> {
        Ok(self.has_blob(&desc.digest))
    }

    fn blob_locations(&self, desc: &Descriptor) -> Vec<BlobLocation> {
        Store::blob_locations(self, &desc.digest)
    }

    fn note_blob_location(&self, desc: &Descriptor, location: &BlobLocation) {
        let _ = self.add_blob_locations(&desc.digest, std::slice::from_ref(location));
    }
}

/// The store is written in a transaction: it is the sink, not the store itself.
impl Sink for Transaction {
    fn has_blob(&self, desc: &Descriptor) -> Result<bool, ContentError> {
        Ok(Store::has_blob(self, &desc.digest))
    }

    fn put_blob(&self, desc: &Descriptor, reader: &mut dyn Read) -> Result<(), ContentError> {
        self.write_blob(reader, Some(desc)).map_err(backend)?;
        Ok(())
    }

    fn put_manifest(&self, desc: &Descriptor, bytes: &[u8]) -> Result<(), ContentError> {
        content::verify(&format!("manifest {}", desc.digest), desc, bytes)?;
        self.write_blob(&mut &bytes[..], Some(desc))
            .map_err(backend)?;
        Ok(())
    }

    fn tag(&self, reference: &Reference, desc: &Descriptor) -> Result<(), ContentError> {
        Transaction::tag(self, reference, desc).map_err(backend)
    }

    fn note_blob_locations(&self, desc: &Descriptor, locations: &[BlobLocation]) {
        let _ = self.add_blob_locations(&desc.digest, locations);
    }
}
