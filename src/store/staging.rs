//! Staging directories: a private directory under `tmp-v1/` where an operation that reads a long
//! input (`load`, `import`, possibly from a stalled pipe) writes its blobs before it takes the gc
//! lock. The directory is flock()ed for as long as it lives, so garbage collection leaves it
//! alone while its owner runs and removes it once its owner is gone (killed).

use std::fs::File;
use std::path::Path;

use super::{BlobWriter, Result, Store, StoreError};
use crate::oci::Algorithm;

/// Removed with everything still in it when dropped.
pub struct Staging {
    dir: tempfile::TempDir,
    _lock: File,
}

const PREFIX: &str = "staging-";

impl Store {
    /// A new staging directory. It is created and locked under the shared gc lock, so a
    /// collection never sees it unlocked.
    pub fn staging(&self) -> Result<Staging> {
        let _txn = self.begin()?;
        let dir = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir_in(self.tmp_dir())
            .map_err(StoreError::io(
                "cannot create a directory in",
                self.tmp_dir(),
            ))?;
        let lock = File::open(dir.path()).map_err(StoreError::io("cannot open", dir.path()))?;
        lock.lock()
            .map_err(StoreError::io("cannot lock", dir.path()))?;
        Ok(Staging { dir, _lock: lock })
    }
}

impl Staging {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A writer for a new blob, staged here (sha256).
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        BlobWriter::new_in(self.dir.path(), Algorithm::Sha256)
    }
}

/// Whether `dir` (an entry of `tmp-v1/`) is a staging directory some live process holds.
pub(super) fn in_use(dir: &Path) -> bool {
    let is_staging = dir
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(PREFIX));
    is_staging
        && File::open(dir)
            .is_ok_and(|f| matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn gc_leaves_a_live_staging_directory_and_removes_an_abandoned_one() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let staging = store.staging().unwrap();
        let mut w = staging.blob_writer().unwrap();
        w.write_all(b"staged while gc runs").unwrap();
        let staged = w.finish(None).unwrap();
        assert!(in_use(staging.path()));
        store.gc().unwrap();
        assert!(
            staged.path().is_file(),
            "gc removed a live staging directory"
        );
        let digest = staged.digest.clone();
        staged.commit(&store.begin().unwrap()).unwrap();
        assert!(store.has_blob(&digest));

        // A staging directory whose owner died (no lock held) is debris.
        let abandoned = store.tmp_dir().join(format!("{PREFIX}dead"));
        std::fs::create_dir(&abandoned).unwrap();
        std::fs::write(abandoned.join("blob-x"), b"left over").unwrap();
        assert!(!in_use(&abandoned));
        store.gc().unwrap();
        assert!(!abandoned.exists());
        drop(staging);
    }
}
