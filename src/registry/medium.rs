//! A repository of a registry as a `content::Source` (pull, copy) and `content::Sink` (push,
//! copy).

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::{Arc, Mutex};

use super::auth::repository_scope;
use super::error::RegistryError;
use super::transport::Transport;
use crate::content::{BlobLocation, BlobLocations, ContentError, Reused, Sink, Source};
use crate::oci::{Descriptor, Digest};
use crate::reference::Reference;

/// One repository (`library/alpine`) of one registry.
pub struct Repository {
    pub(super) transport: Arc<Transport>,
    pub(super) name: String,
    /// Manifests fetched by `resolve` or pushed, by digest: fetched once, tagged without a GET.
    manifests: Mutex<HashMap<Digest, Vec<u8>>>,
    /// Upload sessions refused mounts opened, by blob: the blob's upload uses them.
    pub(super) sessions: Mutex<HashMap<Digest, String>>,
    /// Blobs known to be here without asking (see `assume_present`).
    present: Mutex<HashSet<Digest>>,
}

/// Keep a registry error typed behind the content error; transient ones are marked so that a
/// copy retries the blob.
pub fn content_error(e: RegistryError) -> ContentError {
    match e {
        RegistryError::Oci(o) => ContentError::Oci(o),
        e if e.is_retryable() => ContentError::Transient(Box::new(e)),
        e => ContentError::Backend(Box::new(e)),
    }
}

impl Repository {
    pub fn new(transport: Arc<Transport>, name: &str) -> Repository {
        Repository {
            transport,
            name: name.to_string(),
            manifests: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            present: Mutex::new(HashSet::new()),
        }
    }

    /// Take it that the repository holds `blobs` (this process just put them there): reusing
    /// them asks the registry nothing.
    pub fn assume_present(&self, blobs: impl IntoIterator<Item = Digest>) {
        self.present.lock().unwrap().extend(blobs);
    }

    /// Another handle on the same repository (sharing the connection and tokens; the
    /// manifests fetched so far are carried over).
    pub fn clone_handle(&self) -> Repository {
        Repository {
            transport: self.transport.clone(),
            name: self.name.clone(),
            manifests: Mutex::new(self.manifests.lock().unwrap().clone()),
            sessions: Mutex::new(HashMap::new()),
            present: Mutex::new(self.present.lock().unwrap().clone()),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn registry(&self) -> &str {
        self.transport.registry()
    }

    pub(super) fn scopes_for_read(&self) -> Vec<String> {
        vec![repository_scope(&self.name, "pull")]
    }

    pub(super) fn scopes_for_write(&self) -> Vec<String> {
        vec![repository_scope(&self.name, "pull,push")]
    }

    /// Resolve a reference of this repository: its descriptor, the bytes kept for later.
    pub fn resolve_reference(&self, reference: &Reference) -> Result<Descriptor, RegistryError> {
        let (desc, bytes) = self.get_manifest(&reference.tag_or_digest(), reference.digest())?;
        self.manifests
            .lock()
            .unwrap()
            .insert(desc.digest.clone(), bytes);
        Ok(desc)
    }

    /// Where this repository is, as a blob location.
    pub fn here(&self) -> BlobLocation {
        BlobLocation::new(self.registry(), &self.name)
    }
}

impl Drop for Repository {
    /// Sessions opened by mounts whose blob was not uploaded after all (a copy that stopped):
    /// cancelled rather than left for the registry to expire.
    fn drop(&mut self) {
        let left: Vec<String> = self
            .sessions
            .lock()
            .unwrap()
            .drain()
            .map(|(_, l)| l)
            .collect();
        for location in left {
            self.cancel_upload(&location);
        }
    }
}

impl Source for Repository {
    fn resolve(&self, reference: &Reference) -> Result<Descriptor, ContentError> {
        self.resolve_reference(reference).map_err(content_error)
    }

    fn fetch_manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, ContentError> {
        if let Some(b) = self.manifests.lock().unwrap().get(&desc.digest) {
            return Ok(b.clone());
        }
        let (_, bytes) = self
            .get_manifest(&desc.digest.to_string(), Some(&desc.digest))
            .map_err(content_error)?;
        Ok(bytes)
    }

    fn open_blob(
        &self,
        desc: &Descriptor,
        locations: &dyn BlobLocations,
    ) -> Result<Box<dyn Read + Send + '_>, ContentError> {
        let reader = self.blob_reader(desc).map_err(content_error)?;
        locations.record(&desc.digest, &self.here());
        Ok(Box::new(reader))
    }
}

/// Mounts are tried from at most this many candidate repositories: each failed one is a
/// round trip before the upload.
const MOUNT_CANDIDATES: usize = 3;

impl Sink for Repository {
    fn try_reuse(
        &self,
        desc: &Descriptor,
        locations: &dyn BlobLocations,
    ) -> Result<Option<Reused>, ContentError> {
        let here = self.here();
        if self.present.lock().unwrap().contains(&desc.digest) {
            locations.record(&desc.digest, &here);
            return Ok(Some(Reused::Present));
        }
        let candidates = locations.candidates(&desc.digest);
        let mounts: Vec<&BlobLocation> = candidates
            .iter()
            .filter(|l| l.registry == here.registry && l.repository != here.repository)
            .take(MOUNT_CANDIDATES)
            .collect();
        // A mount is answered 201 for a blob already here too: with a place to mount from,
        // it is asked first (one request where a HEAD and a mount were two), unless the blob
        // is known to be here (then it is said to exist, not to be mounted).
        let ask_first = mounts.is_empty() || candidates.contains(&here);
        if ask_first && self.blob_exists(&desc.digest).map_err(content_error)? {
            locations.record(&desc.digest, &here);
            return Ok(Some(Reused::Present));
        }
        for location in mounts {
            if self
                .mount_blob(&desc.digest, location)
                .map_err(content_error)?
            {
                locations.record(&desc.digest, &here);
                return Ok(Some(Reused::Mounted));
            }
        }
        if !ask_first && self.blob_exists(&desc.digest).map_err(content_error)? {
            locations.record(&desc.digest, &here);
            return Ok(Some(Reused::Present));
        }
        Ok(None)
    }

    fn put_blob(
        &self,
        desc: &Descriptor,
        reader: &mut dyn Read,
        locations: &dyn BlobLocations,
    ) -> Result<(), ContentError> {
        self.upload_blob(desc, reader).map_err(content_error)?;
        locations.record(&desc.digest, &self.here());
        Ok(())
    }

    fn put_manifest(&self, desc: &Descriptor, bytes: &[u8]) -> Result<(), ContentError> {
        crate::content::verify(&format!("manifest {}", desc.digest), desc, bytes)?;
        self.put_manifest_bytes(&desc.digest.to_string(), desc, bytes)
            .map_err(content_error)?;
        self.manifests
            .lock()
            .unwrap()
            .insert(desc.digest.clone(), bytes.to_vec());
        Ok(())
    }

    /// Tags are manifests put again under the tag's name; a digest reference names what was
    /// just pushed and needs nothing.
    fn commit(&self, root: &Descriptor, tags: &[Reference]) -> Result<(), ContentError> {
        for tag in tags.iter().filter_map(Reference::tag) {
            let bytes = match self.manifests.lock().unwrap().get(&root.digest) {
                Some(b) => b.clone(),
                None => Source::fetch_manifest(self, root)?,
            };
            self.put_manifest_bytes(tag, root, &bytes)
                .map_err(content_error)?;
        }
        Ok(())
    }

    fn check_index(&self, desc: &Descriptor, bytes: &[u8]) -> Result<(), ContentError> {
        Repository::check_index(self, desc, bytes).map_err(content_error)
    }
}
