//! Reading the documents and configs a list refers to: from the store when it has them, else
//! from the registry repositories they are known to live in (one client, one handle per
//! repository). What is read from a registry is kept in the store when asked: lists are sparse,
//! but their children's manifests and configs are small and make inspect and annotate local.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use super::{ManifestError, Result};
use crate::content::{self, BlobLocation, Sink};
use crate::oci::{self, Descriptor, ImageConfig, Parsed};
use crate::reference::Reference;
use crate::registry::{Client, Repository};
use crate::store::Transaction;

/// Image configs are small; a larger one is not what it claims to be.
const MAX_CONFIG: u64 = 16 << 20;

pub struct Fetcher<'a> {
    /// What is read from registries is kept in this transaction's store.
    store: &'a Transaction,
    client: &'a Client,
    repositories: Mutex<HashMap<BlobLocation, Arc<Repository>>>,
}

/// Where a reference lives, as a blob location.
pub fn location_of(reference: &Reference) -> BlobLocation {
    BlobLocation::new(reference.registry(), reference.repository())
}

impl<'a> Fetcher<'a> {
    pub fn new(store: &'a Transaction, client: &'a Client) -> Fetcher<'a> {
        Fetcher {
            store,
            client,
            repositories: Mutex::new(HashMap::new()),
        }
    }

    pub fn store(&self) -> &'a Transaction {
        self.store
    }

    pub fn client(&self) -> &'a Client {
        self.client
    }

    /// The shared handle on a repository (its transport, tokens and fetched manifests).
    pub fn repository(&self, location: &BlobLocation) -> Result<Arc<Repository>> {
        let mut map = self.repositories.lock().unwrap();
        if let Some(r) = map.get(location) {
            return Ok(r.clone());
        }
        let transport = self.client.transport(&location.registry)?;
        let repo = Arc::new(Repository::new(transport, &location.repository));
        map.insert(location.clone(), repo.clone());
        Ok(repo)
    }

    /// Resolve a reference in its registry: the descriptor and exact bytes of what it names.
    pub fn resolve_remote(&self, reference: &Reference) -> Result<(Descriptor, Vec<u8>)> {
        let repo = self.repository(&location_of(reference))?;
        let desc = repo.resolve_reference(reference)?;
        let bytes = content::fetch_verified(repo.as_ref(), &desc)?;
        Ok((desc, bytes))
    }

    /// Try `read` on each location in turn; the first success wins. With one location its
    /// error is returned as it is; with several, the last one's, naming them all.
    fn try_registries<T>(
        &self,
        desc: &Descriptor,
        from: &[BlobLocation],
        read: impl Fn(&Repository) -> Result<T>,
    ) -> Result<Option<T>> {
        let mut last = None;
        for location in from {
            match self.repository(location).and_then(|r| read(&r)) {
                Ok(v) => return Ok(Some(v)),
                Err(e) => last = Some(e),
            }
        }
        match last {
            None => Ok(None),
            Some(e) if from.len() == 1 => Err(e),
            Some(e) => Err(ManifestError::Unreachable {
                digest: desc.digest.clone(),
                tried: from
                    .iter()
                    .map(|l| format!("`{l}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                cause: Box::new(e),
            }),
        }
    }

    /// The exact bytes of a manifest or index: the store's copy, else the first registry of
    /// `from` that has it (verified, and stored when `keep`). `Ok(None)` when the store lacks
    /// it and `from` is empty.
    pub fn document(
        &self,
        desc: &Descriptor,
        from: &[BlobLocation],
        keep: bool,
    ) -> Result<Option<Vec<u8>>> {
        if self.store.store().has_blob(&desc.digest) {
            return Ok(Some(self.store.read_blob(&desc.digest)?));
        }
        let bytes =
            self.try_registries(desc, from, |repo| Ok(content::fetch_verified(repo, desc)?))?;
        if let Some(b) = &bytes
            && keep
        {
            Sink::put_manifest(self.store, desc, b)?;
        }
        Ok(bytes)
    }

    /// An image config, as [`Fetcher::document`] finds it.
    pub fn config(
        &self,
        desc: &Descriptor,
        from: &[BlobLocation],
        keep: bool,
    ) -> Result<Option<Parsed<ImageConfig>>> {
        if self.store.store().has_blob(&desc.digest) {
            return Ok(Some(self.store.read_config(&desc.digest)?));
        }
        let bytes = self.try_registries(desc, from, |repo| {
            let mut bytes = Vec::new();
            repo.blob_reader(desc)?
                .take(MAX_CONFIG + 1)
                .read_to_end(&mut bytes)
                .map_err(content::ContentError::from)?;
            content::verify(&format!("config {}", desc.digest), desc, &bytes)?;
            Ok(bytes)
        })?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        if keep {
            self.store.write_blob(&mut &bytes[..], Some(desc))?;
        }
        Ok(Some(oci::parse_config(bytes)?))
    }
}
