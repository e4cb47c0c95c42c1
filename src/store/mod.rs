//! The local store: an OCI image layout under `<root>/images` that peers (skopeo, umoci,
//! oci-image-tool) read as it is, plus manifold's own versioned directories beside it.
//!
//! ```text
//! <root>/images/         OCI image layout: oci-layout, index.json, blobs/sha256/…
//! <root>/tmp-v1/         temp files, renamed into place once verified
//! <root>/locks-v1/       index.lock (index.json updates), gc.lock (writers shared, gc exclusive)
//! <root>/leases-v1/      blobs kept for their users (containers) though no tag reaches them
//! <root>/meta-v1/        blob-locations/: registry repositories each blob is known to live in
//! <root>/cache-v1/       the build cache: step records (`steps/`, gc roots) and layer indexes
//! <root>/referrers-v1/   per subject, the documents naming it as `subject` (attestations, signatures)
//! ```
//!
//! Everything is its owner's alone (directories 0700, files 0600; see `private`), and opening a
//! store made by an earlier version repairs its modes.
//!
//! Crash safety comes from ordering: a blob is written to a temp file, verified and renamed into
//! place; index.json is replaced by rename under the index lock, after everything it refers to is
//! on disk. At every instant the layout is valid; what a crash leaves behind is unreferenced
//! blobs and temp files, which garbage collection removes.

mod blobs;
mod direct;
mod gc;
mod leases;
mod medium;
mod origins;
pub mod private;
mod referrers;
mod staging;
mod summary;
mod tags;
mod transaction;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

pub use blobs::{BlobWriter, StagedBlob, copy_buffered};
pub use gc::GcReport;
pub use leases::Lease;
pub use staging::Staging;
pub use summary::{ImageSummary, PlatformEntry, parse_created as summary_created};
pub use tags::{Entry, Resolved};
pub use transaction::Transaction;

use crate::content::ContentError;
use crate::hint::Hint;
use crate::oci::{self, Descriptor, Digest, OciError};
use crate::reference::ReferenceError;

const LAYOUT_DIR: &str = "images";
const TMP_DIR: &str = "tmp-v1";
const LOCK_DIR: &str = "locks-v1";
const OCI_LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no such image: `{0}`")]
    ImageNotFound(String),
    #[error("blob {0} is not in the store")]
    BlobNotFound(Digest),
    #[error("`{reference}` names {count} images; use a longer ID or a full reference")]
    Ambiguous { reference: String, count: usize },
    #[error("image {digest} is used by {count} tags ({tags}); use -f to remove it anyway")]
    InUse {
        digest: Digest,
        count: usize,
        tags: String,
    },
    #[error("{path} is not a manifold store: {why}")]
    NotAStore { path: PathBuf, why: String },
    #[error(
        "`{path}` is not empty and is not a manifold store; manifold makes a store's root private (mode 0700) and will not take this one over"
    )]
    ForeignRoot { path: PathBuf },
    /// The file system (or the quota) is full: said as such, with where, so that it is never
    /// taken for bad input.
    #[error(transparent)]
    NoSpace(#[from] crate::space::NoSpace),
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
}

impl StoreError {
    /// An I/O error on `path`; a full file system or quota becomes `NoSpace`, saying where.
    pub fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
        move |source| match crate::space::NoSpace::from_io(&source, path) {
            Some(full) => StoreError::NoSpace(full),
            None => StoreError::Io {
                what,
                path: path.to_path_buf(),
                source,
            },
        }
    }
}

impl Hint for StoreError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            StoreError::ImageNotFound(_) => {
                "`manifold images` lists the images in the store".into()
            }
            StoreError::Ambiguous { .. } => {
                "`manifold images --no-trunc` shows full image IDs".into()
            }
            StoreError::InUse { .. } => {
                "remove the tags one by one, or use `manifold rmi -f`".into()
            }
            StoreError::ForeignRoot { .. } => {
                "give `--root` a new or empty directory, or one that holds a manifold store".into()
            }
            StoreError::NoSpace(e) => return e.hint(),
            StoreError::Content(e) => return e.hint(),
            StoreError::Oci(e) => return e.hint(),
            StoreError::Reference(e) => return e.hint(),
            _ => return None,
        })
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A handle on a store root. Cheap to clone; every operation is safe against concurrent
/// manifold processes on the same root.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    layout: PathBuf,
    tmp: PathBuf,
    locks: PathBuf,
}

impl Store {
    /// Open the store at `root`, creating an empty one if the directory holds none yet.
    pub fn open(root: &Path) -> Result<Store> {
        // Absolute: the runtime is handed paths under the root (bundles, mounts) and resolves
        // them from its own working directory.
        let root = &std::path::absolute(root).map_err(StoreError::io("cannot resolve", root))?;
        let store = Store {
            root: root.to_path_buf(),
            layout: root.join(LAYOUT_DIR),
            tmp: root.join(TMP_DIR),
            locks: root.join(LOCK_DIR),
        };
        store.init()?;
        Ok(store)
    }

    fn init(&self) -> Result<()> {
        private::create_root(&self.root)?;
        for dir in [
            &self.layout.join("blobs").join("sha256"),
            &self.tmp,
            &self.locks,
        ] {
            private::create_dir(dir).map_err(StoreError::io("cannot create", dir))?;
        }
        self.repair()?;
        let layout_file = self.layout.join("oci-layout");
        match fs::read_to_string(&layout_file) {
            Ok(s) => {
                let v: serde_json::Value =
                    serde_json::from_str(&s).map_err(|e| StoreError::NotAStore {
                        path: self.layout.clone(),
                        why: format!("oci-layout is not JSON: {e}"),
                    })?;
                if v["imageLayoutVersion"] != "1.0.0" {
                    return Err(StoreError::NotAStore {
                        path: self.layout.clone(),
                        why: format!("unsupported imageLayoutVersion {}", v["imageLayoutVersion"]),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Its temp file must outlive a concurrent prune's sweep of tmp-v1.
                let _txn = self.begin()?;
                if !layout_file.exists() {
                    self.write_atomic(&layout_file, OCI_LAYOUT.as_bytes())?;
                }
            }
            Err(e) => return Err(StoreError::io("cannot read", &layout_file)(e)),
        }
        let index = self.layout.join("index.json");
        if !index.exists() {
            let _lock = self.lock_index()?;
            if !index.exists() {
                let empty = oci::Index::new_oci(Vec::new());
                let bytes = serde_json::to_vec(&empty).expect("index serialises");
                self.write_atomic(&index, &bytes)?;
            }
        }
        Ok(())
    }

    /// Bring the store's own directories to private modes when an earlier version made them
    /// 0755 (their files 0644). What belongs to containers and the build cache is repaired by
    /// their owners when they open; the private root already keeps other users out of them.
    fn repair(&self) -> Result<()> {
        private::repair_tree(&self.layout)?;
        private::repair_tree(&self.locks)?;
        private::repair_tree(&self.root.join(leases::LEASE_DIR))?;
        private::repair_tree(&self.root.join(origins::META_DIR))?;
        // Temp files are private from their creation; what is below them is build contents.
        private::repair_dir(&self.tmp, false)?;
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The OCI image layout directory (what `skopeo … oci:<dir>:<ref>` is given).
    pub fn layout_dir(&self) -> &Path {
        &self.layout
    }

    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// The build cache's directory (`<root>/cache-v1`): records under `steps/` listing their
    /// `blobs` keep those blobs through garbage collection.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache-v1")
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.layout
            .join("blobs")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    /// Write a small file atomically: temp file in the same directory tree, fsync, rename.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        let mut tmp = private::temp_file(&self.tmp, ".tmp")
            .map_err(StoreError::io("cannot create a temp file in", &self.tmp))?;
        tmp.write_all(bytes)
            .and_then(|_| tmp.as_file().sync_all())
            .map_err(StoreError::io("cannot write", tmp.path()))?;
        tmp.persist(path)
            .map_err(|e| StoreError::io("cannot rename into", path)(e.error))?;
        Ok(())
    }

    fn lock_file(&self, name: &str) -> Result<File> {
        let path = self.locks.join(name);
        private::open_lock(&path).map_err(StoreError::io("cannot open lock", &path))
    }

    /// Exclusive lock for read-modify-write of index.json.
    fn lock_index(&self) -> Result<File> {
        let f = self.lock_file("index.lock")?;
        f.lock().map_err(StoreError::io(
            "cannot lock",
            &self.locks.join("index.lock"),
        ))?;
        Ok(f)
    }

    fn gc_lock(&self) -> Result<File> {
        let f = self.lock_file("gc.lock")?;
        f.lock()
            .map_err(StoreError::io("cannot lock", &self.locks.join("gc.lock")))?;
        Ok(f)
    }

    /// Read a manifest or index blob and parse it by the descriptor's media type.
    pub fn read_document(&self, desc: &Descriptor) -> Result<oci::Parsed<oci::Document>> {
        let bytes = self.read_blob(&desc.digest)?;
        Ok(oci::parse_document(&desc.media_type, bytes)?)
    }

    pub fn read_manifest(&self, digest: &Digest) -> Result<oci::Parsed<oci::Manifest>> {
        Ok(oci::parse_manifest(self.read_blob(digest)?)?)
    }

    pub fn read_index(&self, digest: &Digest) -> Result<oci::Parsed<oci::Index>> {
        Ok(oci::parse_index(self.read_blob(digest)?)?)
    }

    pub fn read_config(&self, digest: &Digest) -> Result<oci::Parsed<oci::ImageConfig>> {
        Ok(oci::parse_config(self.read_blob(digest)?)?)
    }
}

#[cfg(test)]
mod tests;
