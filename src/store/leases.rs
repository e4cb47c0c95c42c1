//! Leases: named sets of blobs that garbage collection keeps even when no tag reaches them.
//! A container holds one on the image it was created from, so `rmi` and `prune` never take an
//! image from under a container (running or stopped) that may still be committed.
//!
//! ```text
//! <root>/leases-v1/<name>.json    {"digests": ["sha256:…", …]}
//! ```
//!
//! A lease lists every blob it keeps (the documents, the config, the layers): garbage collection
//! walks nothing from it.

use std::collections::BTreeSet;
use std::fs;
use std::io;

use serde::{Deserialize, Serialize};

use super::{Result, Store, StoreError, Transaction, private};
use crate::oci::Digest;

pub(super) const LEASE_DIR: &str = "leases-v1";

/// One lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    #[serde(skip)]
    pub name: String,
    pub digests: BTreeSet<Digest>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.')
}

impl Store {
    fn lease_dir(&self) -> std::path::PathBuf {
        self.root.join(LEASE_DIR)
    }

    /// Remove a lease; removing one that does not exist is not an error.
    pub fn remove_lease(&self, name: &str) -> Result<()> {
        let path = self.lease_dir().join(format!("{name}.json"));
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("cannot remove", &path)(e)),
        }
    }

    /// Every lease, by name.
    pub fn leases(&self) -> Result<Vec<Lease>> {
        let dir = self.lease_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io("cannot list", &dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(StoreError::io("cannot list", &dir))?;
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(name) = file.strip_suffix(".json") else {
                continue;
            };
            if !valid_name(name) {
                continue;
            }
            let path = entry.path();
            let bytes = match fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("cannot read", &path)(e)),
            };
            let mut lease: Lease =
                serde_json::from_slice(&bytes).map_err(|e| StoreError::NotAStore {
                    path: path.clone(),
                    why: format!("lease is not valid JSON: {e}"),
                })?;
            lease.name = name.to_string();
            out.push(lease);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The leases holding `digest`.
    pub fn leases_of(&self, digest: &Digest) -> Result<Vec<Lease>> {
        Ok(self
            .leases()?
            .into_iter()
            .filter(|l| l.digests.contains(digest))
            .collect())
    }
}

/// A lease keeps blobs like a tag: written in a transaction.
impl Transaction {
    /// Create or replace the lease `name` (letters, digits, `-`, `_`, `.`). Check the blobs are
    /// there first, in the same transaction, so that no garbage collection runs in between.
    pub fn add_lease(&self, name: &str, digests: impl IntoIterator<Item = Digest>) -> Result<()> {
        assert!(valid_name(name), "invalid lease name `{name}`");
        let dir = self.store().lease_dir();
        private::create_dir(&dir).map_err(StoreError::io("cannot create", &dir))?;
        let lease = Lease {
            name: name.to_string(),
            digests: digests.into_iter().collect(),
        };
        let bytes = serde_json::to_vec(&lease).expect("a lease serialises");
        // Temp file and rename, without the fsync of `write_atomic`: leases are written on
        // every `run`, whose start-up time matters, and live as long as their container (whose
        // own record is not fsynced either).
        let path = dir.join(format!("{name}.json"));
        let mut tmp = private::temp_file(self.tmp_dir(), ".tmp").map_err(StoreError::io(
            "cannot create a temp file in",
            self.tmp_dir(),
        ))?;
        std::io::Write::write_all(&mut tmp, &bytes)
            .map_err(StoreError::io("cannot write", tmp.path()))?;
        tmp.persist(&path)
            .map_err(|e| StoreError::io("cannot rename into", &path)(e.error))?;
        Ok(())
    }
}
