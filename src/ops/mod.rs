//! The library's operations (crane's role): `pull` (registry → store), `push` (store →
//! registry), `copy` (registry → registry), `save` (store → archive) and `ensure_local` (the
//! store, else fetch what is missing), over one context: the store, a registry client, a
//! progress reporter and copy options. `cli`, `builder`, `bake` and `manifest` call these; every
//! copy of an image goes through `content::copy`, which commits (tags) what it copied.
//!
//! ```text
//! transfer  pull, push, copy, save: a source, a sink, the platforms, the tags
//! ensure    ensure_local: what an image's users need of it (its layers, for the platforms
//!           they run) made present, fetched from where it is known to live
//! ```
//!
//! The context also owns the handles on registry repositories (one per repository, sharing its
//! connection, tokens and fetched manifests) and reading a document or config from the first
//! of several repositories that holds it.

mod ensure;
mod transfer;

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

pub use ensure::Local;
pub use transfer::{Copied, Pulled, Pushed};

use crate::content::{self, BlobLocation, ContentError, CopyEnv, CopyOptions, NoLocations, Source};
use crate::hint::Hint;
use crate::oci::{self, Descriptor, Digest, ImageConfig, OciError, Parsed};
use crate::progress::Progress;
use crate::reference::{Reference, ReferenceError};
use crate::registry::{Client, PullSource, RegistryError, Repository};
use crate::store::{Store, StoreError, Transaction};

/// Image configs are small; a larger one is not what it claims to be.
const MAX_CONFIG: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("no such image: `{0}`")]
    NotFound(String),
    #[error("`{0}` is not in the store")]
    NotLocal(String),
    #[error(
        "`{image}` is not whole in the store: {what} ({digest}) is missing, and no registry is known to hold it"
    )]
    Incomplete {
        image: String,
        what: String,
        digest: Digest,
    },
    #[error("`{image}` is a single-platform image for `{actual}`, not `{wanted}`")]
    WrongPlatform {
        image: String,
        actual: String,
        wanted: String,
    },
    #[error("`{image}` is {actual}, not the digest the destination `{destination}` names")]
    DestinationDigest {
        image: String,
        actual: Digest,
        destination: String,
    },
    #[error("cannot read `{digest}` from any of {tried}")]
    Unreachable {
        digest: Digest,
        tried: String,
        #[source]
        cause: Box<OpsError>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
}

impl Hint for OpsError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            OpsError::NotFound(_) | OpsError::NotLocal(_) => {
                "`manifold images` lists the images in the store".into()
            }
            OpsError::Incomplete { .. } => {
                "pull the image by its registry reference (`manifold pull REGISTRY/NAME@DIGEST`), so that the store knows where it lives".into()
            }
            OpsError::WrongPlatform { .. } => {
                "leave out `--platform`, or choose a multi-platform image".into()
            }
            OpsError::DestinationDigest { .. } => "name the destination by tag".into(),
            // Transparent wrappers, and the last location tried: their own hint applies.
            OpsError::Unreachable { cause, .. } => return cause.hint(),
            OpsError::Store(e) => return e.hint(),
            OpsError::Content(e) => return e.hint(),
            OpsError::Registry(e) => return e.hint(),
            OpsError::Oci(e) => return e.hint(),
            OpsError::Reference(e) => return e.hint(),
        })
    }
}

pub type Result<T, E = OpsError> = std::result::Result<T, E>;

/// The context every operation runs in.
pub struct Ops<'a> {
    store: &'a Store,
    /// None: the store only (nothing is pulled).
    client: Option<&'a Client>,
    progress: &'a dyn Progress,
    options: CopyOptions,
    repositories: Mutex<HashMap<BlobLocation, Arc<Repository>>>,
}

impl<'a> Ops<'a> {
    pub fn new(store: &'a Store, client: Option<&'a Client>, progress: &'a dyn Progress) -> Self {
        Ops {
            store,
            client,
            progress,
            options: CopyOptions::default(),
            repositories: Mutex::new(HashMap::new()),
        }
    }

    /// The same context with other copy options.
    pub fn with_options(mut self, options: CopyOptions) -> Self {
        self.options = options;
        self
    }

    /// Whether this context can fetch from registries (it has a client).
    pub fn can_pull(&self) -> bool {
        self.client.is_some()
    }

    pub fn store(&self) -> &'a Store {
        self.store
    }

    pub fn progress(&self) -> &'a dyn Progress {
        self.progress
    }

    pub fn options(&self) -> &CopyOptions {
        &self.options
    }

    /// How a copy runs here: the store's blob locations, this context's progress and options.
    fn env(&self) -> CopyEnv<'_> {
        CopyEnv {
            locations: self.store,
            progress: self.progress,
            options: &self.options,
        }
    }

    /// The shared handle on a registry repository.
    pub fn repository(&self, location: &BlobLocation) -> Result<Arc<Repository>> {
        let Some(client) = self.client else {
            return Err(OpsError::NotLocal(location.to_string()));
        };
        let mut map = self.repositories.lock().unwrap();
        if let Some(r) = map.get(location) {
            return Ok(r.clone());
        }
        let transport = client.transport(&location.registry)?;
        let repo = Arc::new(Repository::new(transport, &location.repository));
        map.insert(location.clone(), repo.clone());
        Ok(repo)
    }

    /// The repository a reference names.
    pub fn repository_of(&self, reference: &Reference) -> Result<Arc<Repository>> {
        self.repository(&location_of(reference))
    }

    /// Resolve a reference in its registry: the descriptor and exact bytes of what it names.
    pub fn resolve_remote(&self, reference: &Reference) -> Result<(Descriptor, Vec<u8>)> {
        let repo = self.repository_of(reference)?;
        let desc = repo.resolve_reference(reference)?;
        let bytes = content::fetch_verified(repo.as_ref(), &desc)?;
        Ok((desc, bytes))
    }

    /// What a pull of `reference` reads from: its mirrors first, then its registry.
    pub fn pull_source(&self, reference: &Reference) -> Result<PullSource> {
        let Some(client) = self.client else {
            return Err(OpsError::NotLocal(reference.familiar()));
        };
        Ok(client.pull_source(reference)?)
    }

    /// Try `read` on each location in turn; the first success wins. With one location its
    /// error is returned as it is; with several, the last one's, naming them all. `Ok(None)`
    /// when there is no location to try.
    pub fn try_locations<T>(
        &self,
        digest: &Digest,
        from: &[BlobLocation],
        read: impl Fn(&BlobLocation) -> Result<T>,
    ) -> Result<Option<T>> {
        let mut last = None;
        for location in from {
            match read(location) {
                Ok(v) => return Ok(Some(v)),
                Err(e) => last = Some(e),
            }
        }
        match last {
            None => Ok(None),
            Some(e) if from.len() == 1 => Err(e),
            Some(e) => Err(OpsError::Unreachable {
                digest: digest.clone(),
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
    /// `from` that has it (verified, and stored in `txn` when `keep`). `Ok(None)` when the
    /// store lacks it and `from` is empty.
    pub fn document(
        &self,
        txn: &Transaction,
        desc: &Descriptor,
        from: &[BlobLocation],
        keep: bool,
    ) -> Result<Option<Vec<u8>>> {
        if txn.has_blob(&desc.digest) {
            return Ok(Some(txn.read_blob(&desc.digest)?));
        }
        let bytes = self.try_locations(&desc.digest, from, |location| {
            Ok(content::fetch_verified(
                self.repository(location)?.as_ref(),
                desc,
            )?)
        })?;
        if let Some(b) = &bytes
            && keep
        {
            content::Sink::put_manifest(txn, desc, b)?;
        }
        Ok(bytes)
    }

    /// An image config, as [`Ops::document`] finds it.
    pub fn config(
        &self,
        txn: &Transaction,
        desc: &Descriptor,
        from: &[BlobLocation],
        keep: bool,
    ) -> Result<Option<Parsed<ImageConfig>>> {
        if txn.has_blob(&desc.digest) {
            return Ok(Some(txn.read_config(&desc.digest)?));
        }
        let bytes = self.try_locations(&desc.digest, from, |location| {
            config_bytes(self.repository(location)?.as_ref(), desc)
        })?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        if keep {
            txn.write_blob(&mut &bytes[..], Some(desc))?;
        }
        Ok(Some(oci::parse_config(bytes)?))
    }
}

/// The verified bytes of the image config `desc`, read from `source`.
pub fn config_bytes(source: &dyn Source, desc: &Descriptor) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    source
        .open_blob(desc, &NoLocations)?
        .take(MAX_CONFIG + 1)
        .read_to_end(&mut bytes)
        .map_err(ContentError::from)?;
    content::verify(&format!("config {}", desc.digest), desc, &bytes)?;
    Ok(bytes)
}

/// Where a reference lives, as a blob location.
pub fn location_of(reference: &Reference) -> BlobLocation {
    BlobLocation::new(reference.registry(), reference.repository())
}
