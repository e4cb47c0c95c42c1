//! Write transactions: the one way to put blobs, documents, tags, leases and build-cache records
//! into the store. A transaction holds the gc lock shared for as long as it lives, so garbage
//! collection (which takes it exclusively) never runs between a writer's blobs and the tag (or
//! lease, or cache record) that makes them reachable: an operation that writes and then tags
//! does both inside one transaction, and nothing can be tagged outside one.
//!
//! Reads go through the transaction too (it derefs to the [`Store`]), so code that writes takes
//! a `&Transaction` and reads what it wrote without a second handle.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use super::{Result, Store, StoreError};

/// An open write transaction; see the module's documentation. Clones share the guard, which is
/// released when the last of them is dropped.
#[derive(Clone)]
pub struct Transaction {
    store: Store,
    _guard: Arc<Guard>,
}

/// The shared gc lock, and this process's count of open transactions on the root.
struct Guard {
    _file: File,
    root: PathBuf,
}

/// Open transactions of this process, by store root: a collection started by a process that
/// holds one would wait for itself forever.
static OPEN: LazyLock<Mutex<HashMap<PathBuf, usize>>> = LazyLock::new(Default::default);

impl Drop for Guard {
    fn drop(&mut self) {
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.root) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.root);
            }
        }
    }
}

/// Whether this process holds a write transaction on the store at `root`.
pub(super) fn open_here(root: &Path) -> bool {
    OPEN.lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(root)
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("root", &self.store.root)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Open a write transaction. It waits while a garbage collection runs; a collection
    /// started later waits for it (and every other open transaction) to end.
    pub fn begin(&self) -> Result<Transaction> {
        let f = self.lock_file("gc.lock")?;
        f.lock_shared()
            .map_err(StoreError::io("cannot lock", &self.locks.join("gc.lock")))?;
        *OPEN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(self.root.clone())
            .or_default() += 1;
        Ok(Transaction {
            store: self.clone(),
            _guard: Arc::new(Guard {
                _file: f,
                root: self.root.clone(),
            }),
        })
    }
}

impl Transaction {
    /// The store this transaction writes to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Write a small file under the store's root atomically (temp file, fsync, rename): the
    /// build cache's records, which keep their blobs through garbage collection.
    pub fn write_file_atomic(&self, path: &std::path::Path, bytes: &[u8]) -> Result<()> {
        self.store.write_atomic(path, bytes)
    }
}

impl Deref for Transaction {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a garbage collection could start now (the gc lock is free to take exclusively).
    fn gc_could_run(store: &Store) -> bool {
        let f = store.lock_file("gc.lock").unwrap();
        match f.try_lock() {
            Ok(()) => true,
            Err(std::fs::TryLockError::WouldBlock) => false,
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    #[should_panic(expected = "would wait for itself")]
    fn a_collection_inside_a_transaction_is_a_bug_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let txn = store.begin().unwrap();
        let _ = txn.gc();
    }

    #[test]
    fn garbage_collection_waits_for_every_open_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(gc_could_run(&store));
        let txn = store.begin().unwrap();
        let digest = txn.put_bytes(b"written, not yet tagged").unwrap();
        let clone = txn.clone();
        drop(txn);
        assert!(!gc_could_run(&store), "a clone keeps the guard");
        // A collection started now waits for the transaction; once it ends, it removes the
        // blob nothing reaches.
        let collector = {
            let store = store.clone();
            std::thread::spawn(move || store.gc().unwrap())
        };
        assert!(clone.has_blob(&digest));
        drop(clone);
        let report = collector.join().unwrap();
        assert_eq!(report.blobs_removed, 1);
        assert!(!store.has_blob(&digest));
    }
}
