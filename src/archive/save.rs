//! `save`: images from the store into a docker-archive (the classic layout every `docker load`
//! reads: `<diffid>/layer.tar` uncompressed, `<config>.json`, manifest.json) or an OCI archive
//! (a tarred OCI image layout that keeps whole multi-platform indexes).
//!
//! An archive is a `content::Sink`: saving is `content::copy` from the store into it, one image
//! after the other, blobs one at a time in the copy's order (so the same images give the same
//! archive), then `finish` writes the archive's index. Tar headers are normalised (owner 0,
//! mtime 0).

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::json;

use super::{ArchiveError, Result, decompressed};
use crate::content::{
    self, BlobLocations, ContentError, CopyEnv, CopyOptions, NoLocations, Platforms, Reused, Sink,
};
use crate::layer::Compression;
use crate::layer::tarball::{FileError, Meta, Style, TarWriter};
use crate::oci::{
    self, ANNOTATION_REF_NAME, Descriptor, Digest, HashingReader, HashingWriter, media_type,
};
use crate::platform::Platform;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::store::{Resolved, Store, copy_buffered};

/// The annotation containerd and docker (25+) read on index.json entries: the full image name.
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    Docker,
    Oci,
}

/// Write `images` (from `store`, which must hold what is saved of them whole) as one archive to
/// `out`. A docker-archive holds one platform per image: `platform` (the host's when None)
/// picks it from a multi-platform image; an OCI archive keeps whole indexes unless `platform`
/// names one.
pub fn save(
    store: &Store,
    images: &[Resolved],
    format: SaveFormat,
    platform: Option<&Platform>,
    out: impl Write + Send,
    progress: &dyn Progress,
) -> Result<()> {
    let sink = ArchiveSink::new(out, format, store.tmp_dir())?;
    // One blob at a time: the archive's order is the copy's, the same every time.
    let options = CopyOptions {
        concurrency: 1,
        ..CopyOptions::default()
    };
    let env = CopyEnv {
        locations: &NoLocations,
        progress,
        options: &options,
    };
    for image in images {
        let name = display_name(image);
        let root = match (format, platform) {
            (SaveFormat::Docker, None) if image.descriptor.is_index() => {
                return Err(ArchiveError::MultiPlatform(name));
            }
            (_, Some(p)) => store.platform_manifest(&image.descriptor, Some(p))?,
            (_, None) => image.descriptor.clone(),
        };
        let mut root = root;
        root.remove_annotation(ANNOTATION_REF_NAME);
        let tags: Vec<Reference> = image.reference.iter().cloned().collect();
        content::copy(store, &sink, &name, &root, &Platforms::All, &tags, &env)
            .map_err(|e| sink.take_error().unwrap_or(ArchiveError::Content(e)))?;
    }
    let mut out = sink.finish()?;
    out.flush().map_err(write_err)?;
    Ok(())
}

fn display_name(image: &Resolved) -> String {
    image
        .reference
        .as_ref()
        .map_or_else(|| image.descriptor.digest.to_string(), |r| r.familiar())
}

fn write_err(e: io::Error) -> ArchiveError {
    ArchiveError::Io {
        what: "cannot write the archive".into(),
        source: e,
    }
}

/// A failed entry: its source (the blob being read) or the archive being written.
fn file_err(path: &str, e: FileError) -> ArchiveError {
    match e {
        FileError::Read(source) => ArchiveError::Io {
            what: format!("cannot read what goes to `{path}`"),
            source,
        },
        FileError::Write(e) => write_err(e),
    }
}

/// An archive being written, as a sink: blobs and documents become entries as they arrive,
/// each image's name is recorded when it is committed, and [`ArchiveSink::finish`] writes the
/// index (index.json, or manifest.json for a docker-archive).
pub struct ArchiveSink<W: Write> {
    format: SaveFormat,
    /// Where a compressed layer is decompressed (a docker-archive's layers are plain tars, and a
    /// tar entry needs its size up front).
    tmp: PathBuf,
    state: Mutex<State<W>>,
}

struct State<W: Write> {
    tar: TarWriter<W>,
    /// Entries written, by path.
    written: HashSet<String>,
    /// docker-archive: manifests and configs (small), read back when an image is committed.
    documents: HashMap<Digest, Vec<u8>>,
    /// docker-archive: each layer blob's diff ID, as computed while it was written.
    diff_ids: HashMap<Digest, Digest>,
    /// OCI: index.json's entries.
    entries: Vec<Descriptor>,
    /// docker-archive: manifest.json's entries.
    images: Vec<serde_json::Value>,
    /// The archive's own failure behind the content error a copy reports.
    error: Option<ArchiveError>,
}

impl<W: Write> ArchiveSink<W> {
    pub fn new(out: W, format: SaveFormat, tmp: &Path) -> Result<ArchiveSink<W>> {
        let mut state = State {
            tar: TarWriter::new(out, Style::archive()),
            written: HashSet::new(),
            documents: HashMap::new(),
            diff_ids: HashMap::new(),
            entries: Vec::new(),
            images: Vec::new(),
            error: None,
        };
        if format == SaveFormat::Oci {
            state.append_bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(ArchiveSink {
            format,
            tmp: tmp.to_path_buf(),
            state: Mutex::new(state),
        })
    }

    /// Write the archive's index and end the tar stream; returns the writer.
    pub fn finish(self) -> Result<W> {
        let mut state = self.state.into_inner().expect("archive state");
        let (path, bytes) = match self.format {
            SaveFormat::Oci => (
                "index.json",
                serde_json::to_vec(&oci::Index::new_oci(std::mem::take(&mut state.entries)))
                    .expect("index serialises"),
            ),
            SaveFormat::Docker => (
                "manifest.json",
                serde_json::to_vec(&state.images).expect("manifest.json serialises"),
            ),
        };
        state.append_bytes(path, &bytes)?;
        state.tar.finish().map_err(write_err)
    }

    /// The archive error behind the last failure, if it was the archive's.
    fn take_error(&self) -> Option<ArchiveError> {
        self.state.lock().expect("archive state").error.take()
    }

    /// Run `f` on the state; an archive error is kept (see `take_error`) and reported to the
    /// copy as a content error.
    fn with<T>(&self, f: impl FnOnce(&mut State<W>) -> Result<T>) -> Result<T, ContentError> {
        let mut state = self.state.lock().expect("archive state");
        f(&mut state).map_err(|e| {
            let shown = ContentError::Backend(e.to_string().into());
            state.error = Some(e);
            shown
        })
    }

    fn blob_path(digest: &Digest) -> String {
        format!("blobs/{}/{}", digest.algorithm().name(), digest.hex())
    }
}

impl<W: Write> State<W> {
    fn append_bytes(&mut self, path: &str, bytes: &[u8]) -> Result<()> {
        self.tar
            .file(path, &Meta::mode(0o644), bytes.len() as u64, bytes)
            .map_err(|e| file_err(path, e))?;
        self.written.insert(path.to_string());
        Ok(())
    }

    /// Append `size` bytes of `reader` as `path`, checked against `digest` as they go (a short
    /// or altered stream fails the save).
    fn append_verified(
        &mut self,
        path: &str,
        reader: &mut dyn Read,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let mut hashing = HashingReader::new(reader.take(size), digest.algorithm());
        self.tar
            .file(path, &Meta::mode(0o644), size, &mut hashing)
            .map_err(|e| file_err(path, e))?;
        let (actual, count) = hashing.finish();
        if count != size {
            return Err(ContentError::SizeMismatch {
                what: format!("blob {digest}"),
                expected: size,
                actual: count,
            }
            .into());
        }
        if &actual != digest {
            return Err(ContentError::DigestMismatch {
                what: format!("blob {digest}"),
                expected: digest.clone(),
                actual,
            }
            .into());
        }
        self.written.insert(path.to_string());
        Ok(())
    }

    /// docker-archive: a layer as `<diffid>/layer.tar`, decompressed when it is not plain.
    fn append_layer(&mut self, tmp: &Path, desc: &Descriptor, reader: &mut dyn Read) -> Result<()> {
        if Compression::from_media_type(&desc.media_type) == Some(Compression::None) {
            let path = format!("{}/layer.tar", desc.digest.hex());
            self.append_verified(&path, reader, &desc.digest, desc.size)?;
            self.diff_ids
                .insert(desc.digest.clone(), desc.digest.clone());
            return Ok(());
        }
        // The blob is hashed as it is read (its digest), its decompressed bytes as they are
        // written (the diff ID).
        let mut blob = HashingReader::new(reader.take(desc.size), desc.digest.algorithm());
        let mut file = tempfile::tempfile_in(tmp).map_err(|e| ArchiveError::Io {
            what: "cannot create a temp file".into(),
            source: e,
        })?;
        let (diff_id, size) = {
            let (mut plain, _) = decompressed(&mut blob)?;
            let mut hashing = HashingWriter::new(&mut file, oci::Algorithm::Sha256);
            copy_buffered(&mut plain, &mut hashing).map_err(|e| ArchiveError::Io {
                what: format!("cannot decompress layer {}", desc.digest),
                source: e,
            })?;
            let (_, diff_id, size) = hashing.finish();
            (diff_id, size)
        };
        // What the decompressor left unread belongs to the blob's digest too.
        io::copy(&mut blob, &mut io::sink()).map_err(|e| ArchiveError::Io {
            what: format!("cannot read layer {}", desc.digest),
            source: e,
        })?;
        let (actual, count) = blob.finish();
        if count != desc.size || actual != desc.digest {
            return Err(ContentError::DigestMismatch {
                what: format!("layer {}", desc.digest),
                expected: desc.digest.clone(),
                actual,
            }
            .into());
        }
        self.diff_ids.insert(desc.digest.clone(), diff_id.clone());
        let path = format!("{}/layer.tar", diff_id.hex());
        if self.written.contains(&path) {
            // The same content compressed another way: one entry serves both.
            return Ok(());
        }
        file.rewind().map_err(write_err)?;
        self.append_verified(&path, &mut file, &diff_id, size)
    }

    /// docker-archive: manifest.json's entry for the image manifest `root`.
    fn docker_image(&mut self, root: &Descriptor, tags: &[Reference]) -> Result<()> {
        let document = |digest: &Digest| {
            self.documents
                .get(digest)
                .cloned()
                .ok_or_else(|| ContentError::NotFound(digest.to_string()))
        };
        let manifest = oci::parse_manifest(document(&root.digest)?)?.value;
        let config = oci::parse_config(document(&manifest.config.digest)?)?.value;
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != manifest.layers.len() {
            return Err(oci::OciError::Invalid(format!(
                "image {} lists {} layers but its config {} diff IDs",
                root.digest,
                manifest.layers.len(),
                diff_ids.len()
            ))
            .into());
        }
        let mut layers = Vec::new();
        for (layer, diff_id) in manifest.layers.iter().zip(diff_ids) {
            let actual = self
                .diff_ids
                .get(&layer.digest)
                .ok_or_else(|| ContentError::NotFound(layer.digest.to_string()))?;
            if actual != diff_id {
                return Err(ContentError::DigestMismatch {
                    what: format!("uncompressed layer {}", layer.digest),
                    expected: diff_id.clone(),
                    actual: actual.clone(),
                }
                .into());
            }
            layers.push(format!("{}/layer.tar", diff_id.hex()));
        }
        let repo_tags: Vec<String> = tags
            .iter()
            .filter(|r| r.tag().is_some())
            .map(Reference::familiar)
            .collect();
        self.images.push(json!({
            "Config": format!("{}.json", manifest.config.digest.hex()),
            "RepoTags": if repo_tags.is_empty() { serde_json::Value::Null } else { json!(repo_tags) },
            "Layers": layers,
        }));
        Ok(())
    }
}

impl<W: Write + Send> Sink for ArchiveSink<W> {
    fn try_reuse(
        &self,
        desc: &Descriptor,
        _locations: &dyn BlobLocations,
    ) -> Result<Option<Reused>, ContentError> {
        let state = self.state.lock().expect("archive state");
        let present = match self.format {
            SaveFormat::Oci => state.written.contains(&Self::blob_path(&desc.digest)),
            SaveFormat::Docker => {
                state.diff_ids.contains_key(&desc.digest)
                    || state.documents.contains_key(&desc.digest)
            }
        };
        Ok(present.then_some(Reused::Present))
    }

    fn put_blob(
        &self,
        desc: &Descriptor,
        reader: &mut dyn Read,
        _locations: &dyn BlobLocations,
    ) -> Result<(), ContentError> {
        self.with(|state| match self.format {
            SaveFormat::Oci => state.append_verified(
                &Self::blob_path(&desc.digest),
                reader,
                &desc.digest,
                desc.size,
            ),
            SaveFormat::Docker if media_type::is_config(&desc.media_type) => {
                let mut bytes = Vec::new();
                reader
                    .take(oci::MAX_DOCUMENT_SIZE + 1)
                    .read_to_end(&mut bytes)
                    .map_err(ContentError::from)?;
                content::verify(&format!("config {}", desc.digest), desc, &bytes)?;
                state.append_bytes(&format!("{}.json", desc.digest.hex()), &bytes)?;
                state.documents.insert(desc.digest.clone(), bytes);
                Ok(())
            }
            SaveFormat::Docker => state.append_layer(&self.tmp, desc, reader),
        })
    }

    fn put_manifest(&self, desc: &Descriptor, bytes: &[u8]) -> Result<(), ContentError> {
        content::verify(&format!("manifest {}", desc.digest), desc, bytes)?;
        self.with(|state| match self.format {
            SaveFormat::Oci => {
                let path = Self::blob_path(&desc.digest);
                if !state.written.contains(&path) {
                    state.append_bytes(&path, bytes)?;
                }
                Ok(())
            }
            // Not stored: docker-archives name each image's config and layers in manifest.json.
            SaveFormat::Docker if desc.is_manifest() => {
                state.documents.insert(desc.digest.clone(), bytes.to_vec());
                Ok(())
            }
            SaveFormat::Docker => Err(ArchiveError::MultiPlatform(desc.digest.to_string())),
        })
    }

    fn commit(&self, root: &Descriptor, tags: &[Reference]) -> Result<(), ContentError> {
        self.with(|state| match self.format {
            SaveFormat::Oci => {
                let mut entry = root.clone();
                entry.annotations = None;
                if tags.is_empty() {
                    state.entries.push(entry.clone());
                }
                for r in tags {
                    let mut named = entry.clone();
                    named.set_annotation(ANNOTATION_REF_NAME, r.to_string());
                    named.set_annotation(ANNOTATION_CONTAINERD_NAME, r.to_string());
                    state.entries.push(named);
                }
                Ok(())
            }
            SaveFormat::Docker => state.docker_image(root, tags),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut a = tar::Archive::new(archive);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut body = Vec::new();
                e.read_to_end(&mut body).unwrap();
                (e.path().unwrap().display().to_string(), body)
            })
            .collect()
    }

    #[test]
    fn a_blob_that_is_not_what_its_descriptor_says_fails_the_save() {
        let dir = tempfile::tempdir().unwrap();
        let sink = ArchiveSink::new(Vec::new(), SaveFormat::Oci, dir.path()).unwrap();
        let desc = Descriptor::of(media_type::OCI_LAYER, b"promised");
        let err = sink
            .put_blob(&desc, &mut &b"delivered"[..], &NoLocations)
            .unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
        assert!(matches!(
            sink.take_error(),
            Some(ArchiveError::Content(ContentError::DigestMismatch { .. }))
        ));
        let short = sink
            .put_blob(
                &Descriptor::of(media_type::OCI_LAYER, b"long enough"),
                &mut &b"long"[..],
                &NoLocations,
            )
            .unwrap_err();
        assert!(short.to_string().contains("has 4 bytes"), "{short}");
    }

    #[test]
    fn an_oci_archive_writes_each_blob_once_and_names_each_tag() {
        let dir = tempfile::tempdir().unwrap();
        let sink = ArchiveSink::new(Vec::new(), SaveFormat::Oci, dir.path()).unwrap();
        let blob = Descriptor::of(media_type::OCI_LAYER, b"layer");
        assert_eq!(sink.try_reuse(&blob, &NoLocations).unwrap(), None);
        sink.put_blob(&blob, &mut &b"layer"[..], &NoLocations)
            .unwrap();
        assert_eq!(
            sink.try_reuse(&blob, &NoLocations).unwrap(),
            Some(Reused::Present)
        );
        let root = Descriptor::of(media_type::OCI_MANIFEST, b"{}");
        sink.put_manifest(&root, b"{}").unwrap();
        sink.put_manifest(&root, b"{}").unwrap();
        let tags = [
            Reference::parse("a:1").unwrap(),
            Reference::parse("b:2").unwrap(),
        ];
        sink.commit(&root, &tags).unwrap();
        let archive = sink.finish().unwrap();
        let entries = entries(&archive);
        let paths: Vec<&str> = entries.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "oci-layout".to_string(),
                ArchiveSink::<Vec<u8>>::blob_path(&blob.digest),
                ArchiveSink::<Vec<u8>>::blob_path(&root.digest),
                "index.json".to_string(),
            ]
        );
        let index: oci::Index = serde_json::from_slice(&entries[3].1).unwrap();
        let names: Vec<&str> = index
            .manifests
            .iter()
            .map(|d| d.annotation(ANNOTATION_REF_NAME).unwrap())
            .collect();
        assert_eq!(names, ["docker.io/library/a:1", "docker.io/library/b:2"]);
    }
}
