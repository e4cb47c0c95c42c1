//! Snapshots: each layer unpacked once, into a directory keyed by its chain ID, for overlayfs
//! to stack.
//!
//! ```text
//! <root>/snapshots-v1/<chain-id hex>/fs/          the layer's files (overlayfs whiteouts)
//! <root>/snapshots-v1/<chain-id hex>/snapshot.json  layer digest, diff ID, what was refused
//! <root>/snapshots-v1/.tmp-…/                     being unpacked; renamed into place when done
//! ```
//!
//! A half-written snapshot is never used: layers are unpacked into a temp directory and renamed
//! into place only once complete and verified against the diff ID. Missing layers of an image
//! are unpacked in parallel. The directory is mode 0700: snapshots hold setuid programs and
//! files owned by anyone. Unpacking holds `locks-v1/snapshots.lock` shared, removal holds it
//! exclusive.

use std::collections::HashSet;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::RuntimeError;
use super::ownership::Ownership;
use crate::layer::walk::{self, Removed, TempTree};
use crate::layer::{self, LayerError};
use crate::oci::{Descriptor, Digest};
use crate::progress::{Progress, ProgressReader};
use crate::store::{Store, private};

pub const SNAPSHOT_DIR: &str = "snapshots-v1";
const TMP_PREFIX: &str = ".tmp-";

/// What is recorded next to a snapshot's files.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub chain_id: Digest,
    pub diff_id: Digest,
    pub layer: Digest,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused_devices: Vec<String>,
}

/// One layer of an image to stack: its blob and its diff ID from the config.
#[derive(Debug, Clone)]
pub struct LayerRef {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

pub struct Snapshots {
    dir: PathBuf,
    lock: PathBuf,
    ownership: Ownership,
}

/// Held while snapshots are unpacked and put to use (shared) or removed (exclusive).
pub struct SnapshotLock {
    _file: File,
}

impl Snapshots {
    /// Open the store's snapshots, refusing a store whose ownership convention is not this
    /// process's (see `ownership`).
    pub fn open(root: &Path) -> Result<Snapshots, RuntimeError> {
        let ownership = Ownership::of_store(root)?;
        let dir = root.join(SNAPSHOT_DIR);
        private::create_dir(&dir).map_err(RuntimeError::io("create", &dir))?;
        private::repair_dir(&dir, false)?;
        let locks = root.join("locks-v1");
        private::create_dir(&locks).map_err(RuntimeError::io("create", &locks))?;
        Ok(Snapshots {
            dir,
            lock: locks.join("snapshots.lock"),
            ownership,
        })
    }

    fn lock(&self, exclusive: bool) -> Result<SnapshotLock, RuntimeError> {
        let f = private::open_lock(&self.lock).map_err(RuntimeError::io("open", &self.lock))?;
        if exclusive { f.lock() } else { f.lock_shared() }
            .map_err(RuntimeError::io("lock", &self.lock))?;
        Ok(SnapshotLock { _file: f })
    }

    /// How this store's files are owned (and its overlays' opaque markers named).
    pub fn ownership(&self) -> &Ownership {
        &self.ownership
    }

    /// Keep snapshots from being removed while the caller puts them to use.
    pub fn shared(&self) -> Result<SnapshotLock, RuntimeError> {
        self.lock(false)
    }

    /// The directory overlayfs stacks for a chain ID.
    pub fn fs_path(&self, chain_id: &Digest) -> PathBuf {
        self.dir.join(chain_id.hex()).join("fs")
    }

    pub fn exists(&self, chain_id: &Digest) -> bool {
        self.fs_path(chain_id).is_dir()
    }

    /// Unpack every missing layer of the stack (in parallel, at most `jobs` at once); returns
    /// the chain IDs, bottom first. Call it holding [`Snapshots::shared`].
    pub fn prepare(
        &self,
        store: &Store,
        layers: &[LayerRef],
        jobs: usize,
        progress: &dyn Progress,
    ) -> Result<Vec<Digest>, RuntimeError> {
        let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let chain_ids = layer::chain_ids(&diff_ids);
        let missing: Vec<(usize, &LayerRef)> = layers
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.exists(&chain_ids[*i]))
            .collect();
        if missing.is_empty() {
            return Ok(chain_ids);
        }
        let queue = Mutex::new(missing.into_iter());
        let first_error: Mutex<Option<RuntimeError>> = Mutex::new(None);
        let workers = jobs.max(1);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    loop {
                        if first_error.lock().unwrap().is_some() {
                            return;
                        }
                        let Some((i, l)) = queue.lock().unwrap().next() else {
                            return;
                        };
                        if let Err(e) = self.unpack_one(store, l, &chain_ids[i], progress) {
                            first_error.lock().unwrap().get_or_insert(e);
                            return;
                        }
                    }
                });
            }
        });
        if let Some(e) = first_error.into_inner().unwrap() {
            return Err(e);
        }
        Ok(chain_ids)
    }

    fn unpack_one(
        &self,
        store: &Store,
        l: &LayerRef,
        chain_id: &Digest,
        progress: &dyn Progress,
    ) -> Result<(), RuntimeError> {
        let digest = &l.descriptor.digest;
        let compression = layer::Compression::from_media_type(&l.descriptor.media_type)
            .ok_or_else(|| RuntimeError::UnsupportedLayer {
                digest: digest.clone(),
                media_type: l.descriptor.media_type.clone(),
            })?;
        let tmp = TempTree::new_in(
            &self.dir,
            &format!("{TMP_PREFIX}{}-", &chain_id.hex()[..12]),
        )
        .map_err(RuntimeError::io("create a temp directory in", &self.dir))?;
        let fs_dir = tmp.path().join("fs");
        fs::create_dir(&fs_dir).map_err(RuntimeError::io("create", &fs_dir))?;
        // The image's root as the container sees it; the private directories above keep it
        // from the host's users.
        fs::set_permissions(&fs_dir, fs::Permissions::from_mode(0o755))
            .map_err(RuntimeError::io("chmod", &fs_dir))?;
        let blob = store.open_blob(digest)?;
        let id = digest.short().to_string();
        progress.start(
            &id,
            &format!("unpack {}", digest.short()),
            Some(l.descriptor.size),
        );
        let reader = ProgressReader::new(blob, &id, progress);
        let options = self.ownership.snapshot_options();
        let report = layer::unpack_with(reader, compression, &fs_dir, Some(&l.diff_id), options)
            .map_err(|source| {
                RuntimeError::Unpack {
                    digest: digest.clone(),
                    // Where a user looks: the snapshots, not the temp directory that goes away.
                    source: match source {
                        LayerError::NoSpace(n) => LayerError::NoSpace(n.with_dir(&self.dir)),
                        other => other,
                    },
                }
            })?;
        let info = SnapshotInfo {
            chain_id: chain_id.clone(),
            diff_id: l.diff_id.clone(),
            layer: digest.clone(),
            refused_devices: report.refused_devices.clone(),
        };
        let info_path = tmp.path().join("snapshot.json");
        private::write_file(
            &info_path,
            &serde_json::to_vec_pretty(&info).expect("serialises"),
        )
        .map_err(RuntimeError::io("write", &info_path))?;
        let dest = self.dir.join(chain_id.hex());
        match fs::rename(tmp.path(), &dest) {
            Ok(()) => {
                tmp.keep();
            }
            // Another process unpacked the same layer meanwhile: keep theirs (ours goes with
            // `tmp`).
            Err(_) if dest.join("fs").is_dir() => {}
            Err(e) => return Err(RuntimeError::io("rename into", &dest)(e)),
        }
        if !report.refused_devices.is_empty() {
            progress.message(&format!(
                "layer {}: refused {} device node(s): {}",
                digest.short(),
                report.refused_devices.len(),
                report.refused_devices.join(", ")
            ));
        }
        progress.finish(&id, "unpacked");
        Ok(())
    }

    /// Every snapshot's chain ID.
    pub fn list(&self) -> Result<Vec<Digest>, RuntimeError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(RuntimeError::io("list", &self.dir))? {
            let e = e.map_err(RuntimeError::io("list", &self.dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(d) = Digest::parse(&format!("sha256:{name}")) {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Remove every snapshot not in the set `keep` computes (under the exclusive lock, so no
    /// container is being set up meanwhile), and temp directories a crash left.
    pub fn remove_unused(
        &self,
        keep: impl FnOnce() -> Result<HashSet<Digest>, RuntimeError>,
    ) -> Result<SnapshotsPruned, RuntimeError> {
        let _lock = self.lock(true)?;
        let keep = keep()?;
        let mut pruned = SnapshotsPruned::default();
        for e in fs::read_dir(&self.dir).map_err(RuntimeError::io("list", &self.dir))? {
            let e = e.map_err(RuntimeError::io("list", &self.dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if name.starts_with(TMP_PREFIX) {
                pruned.temp_bytes += remove_tree(&path)?.bytes;
                pruned.temp_dirs += 1;
                continue;
            }
            let Ok(d) = Digest::parse(&format!("sha256:{name}")) else {
                continue;
            };
            if keep.contains(&d) {
                continue;
            }
            pruned.bytes += remove_tree(&path)?.bytes;
            pruned.removed += 1;
        }
        Ok(pruned)
    }
}

/// What [`Snapshots::remove_unused`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotsPruned {
    pub removed: usize,
    /// The sizes of the snapshots' files.
    pub bytes: u64,
    /// Temp directories of unpacks that never finished, and their files' sizes.
    pub temp_dirs: usize,
    pub temp_bytes: u64,
}

/// Remove a tree of any depth (see `layer::walk`); returns what went.
pub fn remove_tree(path: &Path) -> Result<Removed, RuntimeError> {
    walk::remove_tree(path).map_err(RuntimeError::io("remove", path))
}
