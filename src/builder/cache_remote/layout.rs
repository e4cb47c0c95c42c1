//! An OCI image layout directory as a `content::Source` and `content::Sink`: what `type=local`
//! caches are (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`), the manifest named by its
//! `org.opencontainers.image.ref.name` annotation. Writers on one machine take `index.lock`
//! in the directory around their read-merge-write.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::content::{self, BlobLocations, ContentError, NoLocations, Reused, Sink, Source};
use crate::oci::{self, ANNOTATION_REF_NAME, Descriptor, Digest, HashingReader, media_type};
use crate::reference::Reference;

const OCI_LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

pub struct LayoutDir {
    dir: PathBuf,
}

fn io_err(what: &str, path: &Path, e: io::Error) -> ContentError {
    ContentError::Io(io::Error::new(
        e.kind(),
        format!("{what} {}: {e}", path.display()),
    ))
}

impl LayoutDir {
    pub fn new(dir: &Path) -> LayoutDir {
        LayoutDir {
            dir: dir.to_path_buf(),
        }
    }

    /// Create the layout's skeleton if it is not there.
    pub fn create(&self) -> Result<(), ContentError> {
        let blobs = self.dir.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(|e| io_err("cannot create", &blobs, e))?;
        let layout = self.dir.join("oci-layout");
        if !layout.exists() {
            self.write_atomic(&layout, OCI_LAYOUT.as_bytes())?;
        }
        let index = self.dir.join("index.json");
        if !index.exists() {
            let bytes =
                serde_json::to_vec(&oci::Index::new_oci(Vec::new())).expect("indexes serialise");
            self.write_atomic(&index, &bytes)?;
        }
        Ok(())
    }

    /// An exclusive lock on the layout's index, held while the returned file is open.
    pub fn lock(&self) -> Result<File, ContentError> {
        let path = self.dir.join("index.lock");
        let f = crate::store::private::open_lock(&path)
            .map_err(|e| io_err("cannot open lock", &path, e))?;
        f.lock().map_err(|e| io_err("cannot lock", &path, e))?;
        Ok(f)
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir
            .join("blobs")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), ContentError> {
        let parent = path.parent().unwrap_or(&self.dir);
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(parent)
            .map_err(|e| io_err("cannot create a temp file in", parent, e))?;
        tmp.write_all(bytes)
            .and_then(|_| tmp.as_file().sync_all())
            .map_err(|e| io_err("cannot write", tmp.path(), e))?;
        tmp.persist(path)
            .map_err(|e| io_err("cannot rename into", path, e.error))?;
        Ok(())
    }

    /// The index's manifests.
    pub fn index(&self) -> Result<oci::Index, ContentError> {
        let path = self.dir.join("index.json");
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ContentError::NotFound(path.display().to_string()),
            _ => io_err("cannot read", &path, e),
        })?;
        Ok(oci::parse_index(bytes)?.value)
    }

    /// The manifest named `tag`.
    pub fn find(&self, tag: &str) -> Result<Descriptor, ContentError> {
        self.index()?
            .manifests
            .into_iter()
            .find(|d| d.annotation(ANNOTATION_REF_NAME) == Some(tag))
            .ok_or_else(|| ContentError::NotFound(format!("{}:{tag}", self.dir.display())))
    }

    /// Name `desc` `tag` in the index (replacing what had that name).
    pub fn set_tag(&self, tag: &str, desc: &Descriptor) -> Result<(), ContentError> {
        let mut index = self.index()?;
        index
            .manifests
            .retain(|d| d.annotation(ANNOTATION_REF_NAME) != Some(tag));
        let mut entry = Descriptor::new(desc.media_type.clone(), desc.digest.clone(), desc.size);
        entry.set_annotation(ANNOTATION_REF_NAME, tag);
        index.manifests.push(entry);
        let bytes = serde_json::to_vec(&index).expect("indexes serialise");
        self.write_atomic(&self.dir.join("index.json"), &bytes)
    }

    pub fn read(&self, desc: &Descriptor, limit: u64) -> Result<Vec<u8>, ContentError> {
        if desc.size > limit {
            return Err(ContentError::SizeMismatch {
                what: format!("blob {} (more than the {limit} bytes allowed)", desc.digest),
                expected: limit,
                actual: desc.size,
            });
        }
        let path = self.blob_path(&desc.digest);
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ContentError::NotFound(desc.digest.to_string()),
            _ => io_err("cannot read", &path, e),
        })?;
        content::verify(&format!("blob {}", desc.digest), desc, &bytes)?;
        Ok(bytes)
    }

    /// Remove the blobs no manifest of the index reaches (what merges and trims left behind).
    /// Only image manifests are walked; an index that lists anything else is left alone.
    pub fn collect_garbage(&self) -> Result<usize, ContentError> {
        let index = self.index()?;
        let mut keep = std::collections::HashSet::new();
        for d in &index.manifests {
            if !media_type::is_manifest(&d.media_type) {
                return Ok(0);
            }
            let bytes = self.read(d, super::format::MAX_CONFIG)?;
            let m = oci::parse_manifest(bytes)?.value;
            keep.insert(d.digest.hex().to_string());
            keep.insert(m.config.digest.hex().to_string());
            keep.extend(m.layers.iter().map(|l| l.digest.hex().to_string()));
        }
        let dir = self.dir.join("blobs").join("sha256");
        let mut removed = 0;
        for entry in fs::read_dir(&dir).map_err(|e| io_err("cannot read", &dir, e))? {
            let entry = entry.map_err(|e| io_err("cannot read", &dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.len() == 64 && !keep.contains(&name) && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

impl Source for LayoutDir {
    fn resolve(&self, reference: &Reference) -> Result<Descriptor, ContentError> {
        self.find(&reference.tag_or_digest())
    }

    fn fetch_manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, ContentError> {
        self.read(desc, super::format::MAX_CONFIG)
    }

    fn open_blob(
        &self,
        desc: &Descriptor,
        _locations: &dyn BlobLocations,
    ) -> Result<Box<dyn Read + Send + '_>, ContentError> {
        let path = self.blob_path(&desc.digest);
        let f = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ContentError::NotFound(desc.digest.to_string()),
            _ => io_err("cannot open", &path, e),
        })?;
        Ok(Box::new(f))
    }
}

impl LayoutDir {
    pub fn has_blob(&self, desc: &Descriptor) -> bool {
        self.blob_path(&desc.digest).is_file()
    }
}

impl Sink for LayoutDir {
    fn try_reuse(
        &self,
        desc: &Descriptor,
        _locations: &dyn BlobLocations,
    ) -> Result<Option<Reused>, ContentError> {
        Ok(self.has_blob(desc).then_some(Reused::Present))
    }

    fn put_blob(
        &self,
        desc: &Descriptor,
        reader: &mut dyn Read,
        _locations: &dyn BlobLocations,
    ) -> Result<(), ContentError> {
        let dest = self.blob_path(&desc.digest);
        let parent = dest.parent().expect("a blob path has a parent");
        fs::create_dir_all(parent).map_err(|e| io_err("cannot create", parent, e))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(parent)
            .map_err(|e| io_err("cannot create a temp file in", parent, e))?;
        let mut hashing = HashingReader::new(reader, desc.digest.algorithm());
        crate::store::copy_buffered(&mut hashing, tmp.as_file_mut())?;
        let (digest, size) = hashing.finish();
        let what = format!("blob {}", desc.digest);
        if size != desc.size {
            return Err(ContentError::SizeMismatch {
                what,
                expected: desc.size,
                actual: size,
            });
        }
        if digest != desc.digest {
            return Err(ContentError::DigestMismatch {
                what,
                expected: desc.digest.clone(),
                actual: digest,
            });
        }
        tmp.as_file()
            .sync_all()
            .map_err(|e| io_err("cannot write", tmp.path(), e))?;
        tmp.persist(&dest)
            .map_err(|e| io_err("cannot rename into", &dest, e.error))?;
        Ok(())
    }

    fn put_manifest(&self, desc: &Descriptor, bytes: &[u8]) -> Result<(), ContentError> {
        content::verify(&format!("manifest {}", desc.digest), desc, bytes)?;
        self.put_blob(desc, &mut &bytes[..], &NoLocations)
    }

    fn commit(&self, root: &Descriptor, tags: &[Reference]) -> Result<(), ContentError> {
        for t in tags {
            self.set_tag(&t.tag_or_digest(), root)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_tags_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let l = LayoutDir::new(dir.path());
        l.create().unwrap();
        let blob = b"layer bytes".to_vec();
        let d = Descriptor::of(media_type::OCI_LAYER_GZIP, &blob);
        l.put_blob(&d, &mut &blob[..], &NoLocations).unwrap();
        assert!(l.has_blob(&d));
        let wrong = Descriptor::of(media_type::OCI_LAYER_GZIP, b"other");
        assert!(matches!(
            l.put_blob(&wrong, &mut &blob[..], &NoLocations),
            Err(ContentError::SizeMismatch { .. })
        ));
        let m = Descriptor::of(media_type::OCI_MANIFEST, b"{}");
        l.put_manifest(&m, b"{}").unwrap();
        l.set_tag("latest", &m).unwrap();
        assert_eq!(l.find("latest").unwrap().digest, m.digest);
        assert!(matches!(l.find("other"), Err(ContentError::NotFound(_))));
        // The layout is one peers read: skopeo's `oci:DIR:latest`.
        assert!(dir.path().join("oci-layout").is_file());
    }
}
