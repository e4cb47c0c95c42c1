//! Where the store's blobs are known to live in registries: for each blob, the repositories it
//! was pulled from or pushed to, so that a later push to another repository of the same registry
//! can mount it instead of uploading it.
//!
//! ```text
//! <root>/meta-v1/blob-locations/<alg>/<hex>    one `registry/repository` per line, newest last
//! ```
//!
//! These are hints: a stale line only costs a failed mount (the push then uploads), so writes are
//! atomic but not locked, and two processes recording the same blob at once may keep one line.

use std::fs;
use std::path::PathBuf;

use super::{Result, Store, StoreError, private};
use crate::content::BlobLocation;
use crate::oci::Digest;

pub(super) const META_DIR: &str = "meta-v1";
const LOCATIONS_DIR: &str = "blob-locations";
/// Lines kept per blob: the most recent ones are the likeliest to still hold it.
const MAX_LOCATIONS: usize = 16;

impl Store {
    fn locations_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join(META_DIR)
            .join(LOCATIONS_DIR)
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    /// The registry repositories where `digest` is known to live, newest first.
    pub fn blob_locations(&self, digest: &Digest) -> Vec<BlobLocation> {
        let Ok(text) = fs::read_to_string(self.locations_path(digest)) else {
            return Vec::new();
        };
        let mut out: Vec<BlobLocation> = text.lines().filter_map(BlobLocation::parse).collect();
        out.reverse();
        out
    }

    /// Remember that `digest` lives at each of `locations` (moved to the end when known).
    pub fn add_blob_locations(&self, digest: &Digest, locations: &[BlobLocation]) -> Result<()> {
        if locations.is_empty() {
            return Ok(());
        }
        let mut known = self.blob_locations(digest);
        known.reverse();
        if locations.iter().all(|l| known.last() == Some(l))
            || (locations.len() > 1 && known.ends_with(locations))
        {
            return Ok(());
        }
        known.retain(|k| !locations.contains(k));
        known.extend(locations.iter().cloned());
        let skip = known.len().saturating_sub(MAX_LOCATIONS);
        let mut text = String::new();
        for l in &known[skip..] {
            text.push_str(&l.to_string());
            text.push('\n');
        }
        let path = self.locations_path(digest);
        let dir = path.parent().expect("a blob path has a parent");
        private::create_dir(dir).map_err(StoreError::io("cannot create", dir))?;
        self.write_atomic(&path, text.as_bytes())
    }

    /// Forget a removed blob's locations (garbage collection).
    pub(super) fn forget_blob_locations(&self, digest: &Digest) {
        let _ = fs::remove_file(self.locations_path(digest));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_locations_newest_first_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = Digest::sha256_of(b"x");
        assert!(store.blob_locations(&d).is_empty());
        let a = BlobLocation::new("127.0.0.1:5000", "a/b");
        let b = BlobLocation::new("127.0.0.1:5000", "c");
        store
            .add_blob_locations(&d, std::slice::from_ref(&a))
            .unwrap();
        store
            .add_blob_locations(&d, std::slice::from_ref(&b))
            .unwrap();
        store
            .add_blob_locations(&d, std::slice::from_ref(&a))
            .unwrap();
        assert_eq!(store.blob_locations(&d), vec![a.clone(), b.clone()]);
        for i in 0..40 {
            store
                .add_blob_locations(&d, &[BlobLocation::new("r", format!("n{i}"))])
                .unwrap();
        }
        let all = store.blob_locations(&d);
        assert_eq!(all.len(), MAX_LOCATIONS);
        assert_eq!(all[0], BlobLocation::new("r", "n39"));
        store.forget_blob_locations(&d);
        assert!(store.blob_locations(&d).is_empty());
    }
}
