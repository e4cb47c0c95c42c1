//! The step cache, in the store (`<root>/cache-v1/`), so it survives across runs:
//!
//! ```text
//! steps/<key>.json    one record per step key: the layer it made (if any), when, and the
//!                     blobs it holds (garbage collection keeps those)
//! trees/<digest>.json the entry list of a layer blob (what COPY and WORKDIR look up)
//! mounts/<id hash>/   the host side of a `RUN --mount=type=cache`
//! urls/<sha256>.json  what a server last said about an ADD URL (ETag, Last-Modified, the
//!                     digest of the content), to revalidate it (named by the URL's sha256)
//! ```
//!
//! Everything is private (the store's rule); a cache mount's own directory has the `mode`,
//! `uid` and `gid` the Dockerfile asked for, which only the container sees: `mounts/` keeps
//! the host's other users out whatever that mode is.
//!
//! A key is the sha256 of what decides a step's result: the key of the state before it, the
//! expanded instruction, the platform, and for COPY/ADD the content of the sources.

use std::fs;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::fetch::Validators;
use super::layer::LayerInfo;
use crate::oci::{Digest, Hasher};
use crate::store::{Store, StoreError, Transaction, private};

const MOUNTS_DIR: &str = "mounts";

/// Builds a key from parts, each length-prefixed so that no two part lists collide.
#[derive(Default)]
pub struct KeyBuilder {
    parts: Vec<u8>,
}

impl KeyBuilder {
    pub fn new(kind: &str) -> KeyBuilder {
        let mut k = KeyBuilder::default();
        k.add(kind.as_bytes());
        k
    }

    pub fn add(&mut self, bytes: &[u8]) -> &mut KeyBuilder {
        self.parts
            .extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        self.parts.extend_from_slice(bytes);
        self
    }

    pub fn add_str(&mut self, s: &str) -> &mut KeyBuilder {
        self.add(s.as_bytes())
    }

    pub fn add_json<T: Serialize>(&mut self, v: &T) -> &mut KeyBuilder {
        let bytes = serde_json::to_vec(v).expect("cache key parts serialise");
        self.add(&bytes)
    }

    pub fn finish(&self) -> Digest {
        let mut h = Hasher::new(crate::oci::Algorithm::Sha256);
        h.update(&self.parts);
        h.finish()
    }
}

/// What a step left behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub layer: Option<LayerInfo>,
    /// RFC 3339, the history entry's `created`.
    pub created: String,
    /// The blobs this record keeps alive (the layer's).
    pub blobs: Vec<Digest>,
}

/// The cache of one build, written in its transaction (records keep blobs through garbage
/// collection, as tags do).
#[derive(Clone)]
pub struct Cache {
    store: Transaction,
    steps: PathBuf,
    trees: PathBuf,
    urls: PathBuf,
}

impl Cache {
    pub fn open(store: &Transaction) -> Result<Cache, StoreError> {
        let dir = store.cache_dir();
        let steps = dir.join("steps");
        let trees = dir.join("trees");
        let urls = dir.join("urls");
        for d in [&steps, &trees, &urls] {
            private::create_dir(d).map_err(|source| StoreError::Io {
                what: "cannot create",
                path: d.clone(),
                source,
            })?;
        }
        // An earlier version's cache: records private, `mounts/` closed (not what is in it,
        // which the containers see), `cache-v1/` last as the mark that this is done.
        if private::needs_repair(&dir)? {
            private::repair_tree(&steps)?;
            private::repair_tree(&trees)?;
            private::repair_dir(&dir.join(MOUNTS_DIR), false)?;
            private::repair_dir(&dir, false)?;
        }
        Ok(Cache {
            store: store.clone(),
            steps,
            trees,
            urls,
        })
    }

    fn step_path(&self, key: &Digest) -> PathBuf {
        self.steps.join(format!("{}.json", key.hex()))
    }

    /// The record of `key`, if there is one whose blobs are all still in the store.
    pub fn get(&self, key: &Digest) -> Option<Record> {
        let bytes = fs::read(self.step_path(key)).ok()?;
        let record: Record = serde_json::from_slice(&bytes).ok()?;
        record
            .blobs
            .iter()
            .all(|b| self.store.has_blob(b))
            .then_some(record)
    }

    pub fn put(&self, key: &Digest, record: &Record) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).expect("records serialise");
        self.store.write_file_atomic(&self.step_path(key), &bytes)
    }

    /// Like [`Cache::put`] without waiting for the disk: for the records of config-only steps,
    /// which hold nothing but a timestamp (one lost in a crash is stamped again next build),
    /// and of which a Dockerfile can have thousands (an fsync each would dominate the build).
    pub fn put_unsynced(&self, key: &Digest, record: &Record) -> Result<(), StoreError> {
        use std::io::Write;
        let bytes = serde_json::to_vec(record).expect("records serialise");
        let path = self.step_path(key);
        let io = |what: &'static str, p: &std::path::Path| {
            let p = p.to_path_buf();
            move |source| StoreError::Io {
                what,
                path: p,
                source,
            }
        };
        let mut tmp = tempfile::NamedTempFile::new_in(self.store.tmp_dir())
            .map_err(io("cannot create a temp file in", self.store.tmp_dir()))?;
        tmp.write_all(&bytes).map_err(io("cannot write", &path))?;
        tmp.persist(&path)
            .map_err(|e| io("cannot rename into", &path)(e.error))?;
        Ok(())
    }

    pub fn tree_path(&self, blob: &Digest) -> PathBuf {
        self.trees.join(format!("{}.json", blob.hex()))
    }

    pub fn read_tree(&self, blob: &Digest) -> Option<Vec<u8>> {
        fs::read(self.tree_path(blob)).ok()
    }

    pub fn write_tree(&self, blob: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        self.store.write_file_atomic(&self.tree_path(blob), bytes)
    }

    /// The host directory of the cache mount `id`, its parents created private; the directory
    /// itself is the caller's to create with the mode the container is to see.
    pub fn mount_dir(store: &Store, id: &str) -> io::Result<PathBuf> {
        let parent = store.cache_dir().join(MOUNTS_DIR);
        private::create_dir(&parent)?;
        let name = Digest::sha256_of(id.as_bytes());
        Ok(parent.join(&name.hex()[..32]))
    }

    fn url_path(&self, url: &str) -> PathBuf {
        self.urls
            .join(format!("{}.json", Digest::sha256_of(url.as_bytes()).hex()))
    }

    /// What the server last said about `url`.
    pub fn validators(&self, url: &str) -> Option<Validators> {
        let bytes = fs::read(self.url_path(url)).ok()?;
        serde_json::from_slice::<Validators>(&bytes)
            .ok()
            .filter(|v| v.url == url)
    }

    pub fn put_validators(&self, v: &Validators) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(v).expect("validators serialise");
        self.store.write_file_atomic(&self.url_path(&v.url), &bytes)
    }

    /// Remove every record and layer index (`prune -a`), and the cache mounts (trees of any
    /// depth RUN steps made: see `layer::walk`).
    pub fn clear(store: &Store) -> io::Result<()> {
        crate::layer::walk::remove_tree(&store.cache_dir()).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::layer;
    use crate::layer::Compression;

    #[test]
    fn keys_separate_their_parts() {
        let a = KeyBuilder::new("x").add_str("ab").add_str("c").finish();
        let b = KeyBuilder::new("x").add_str("a").add_str("bc").finish();
        assert_ne!(a, b);
        assert_eq!(a, KeyBuilder::new("x").add_str("ab").add_str("c").finish());
    }

    #[test]
    fn records_survive_and_keep_their_blobs_through_gc() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let txn = store.begin().unwrap();
        let cache = Cache::open(&txn).unwrap();
        let info = layer::write(&txn, Vec::new(), Compression::Gzip, None).unwrap();
        let key = KeyBuilder::new("t").finish();
        let record = Record {
            layer: Some(info.clone()),
            created: "2024-01-01T00:00:00Z".into(),
            blobs: vec![info.descriptor.digest.clone()],
        };
        cache.put(&key, &record).unwrap();
        // The build's transaction ends (with its cache) before a collection can run.
        drop((cache, txn));
        store.gc().unwrap();
        assert!(
            store.has_blob(&info.descriptor.digest),
            "a cache record is a gc root"
        );
        let reopened = Store::open(dir.path()).unwrap();
        let again = Cache::open(&reopened.begin().unwrap()).unwrap();
        assert_eq!(again.get(&key), Some(record));
        drop(again);
        Cache::clear(&store).unwrap();
        store.gc().unwrap();
        assert!(!store.has_blob(&info.descriptor.digest));
        assert_eq!(
            Cache::open(&store.begin().unwrap()).unwrap().get(&key),
            None
        );
    }
}
