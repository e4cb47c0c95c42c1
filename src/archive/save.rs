//! `save`: images from the store into a docker-archive (the classic layout every `docker load`
//! reads: `<diffid>/layer.tar` uncompressed, `<config>.json`, manifest.json) or an OCI archive
//! (a tarred OCI image layout that keeps whole multi-platform indexes). Tar headers are
//! normalised (owner 0, mtime 0) so the same images give the same archive.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Write};

use serde_json::json;

use super::{ArchiveError, Result, decompressed};
use crate::layer::Compression;
use crate::layer::tarball::{Meta, Style, TarWriter};
use crate::oci::{self, ANNOTATION_REF_NAME, Descriptor, Digest, Document};
use crate::platform::Platform;
use crate::progress::Progress;
use crate::store::{Resolved, Store, copy_buffered};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    Docker,
    Oci,
}

/// Write `images` as one archive to `out`.
pub fn save(
    store: &Store,
    images: &[Resolved],
    format: SaveFormat,
    platform: Option<&Platform>,
    out: impl Write,
    progress: &dyn Progress,
) -> Result<()> {
    let mut tar = TarWriter::new(out, Style::archive());
    match format {
        SaveFormat::Docker => save_docker(store, images, platform, &mut tar, progress)?,
        SaveFormat::Oci => save_oci(store, images, platform, &mut tar, progress)?,
    }
    tar.finish()
        .and_then(|mut w| w.flush())
        .map_err(write_err)?;
    Ok(())
}

fn write_err(e: io::Error) -> ArchiveError {
    ArchiveError::Io {
        what: "cannot write the archive".into(),
        source: e,
    }
}

fn append_bytes<W: Write>(tar: &mut TarWriter<W>, path: &str, bytes: &[u8]) -> Result<()> {
    tar.file(path, &Meta::mode(0o644), bytes.len() as u64, bytes)
        .map(drop)
        .map_err(|e| write_err(e.into()))
}

fn append_file<W: Write>(
    tar: &mut TarWriter<W>,
    path: &str,
    file: &mut File,
    size: u64,
    progress: &dyn Progress,
) -> Result<()> {
    let id = path.rsplit('/').next().unwrap_or(path);
    let id = &id[..id.len().min(12)];
    progress.start(id, id, Some(size));
    let reader = crate::progress::ProgressReader::new(file, id, progress);
    tar.file(path, &Meta::mode(0o644), size, reader)
        .map_err(|e| write_err(e.into()))?;
    progress.finish(id, "saved");
    Ok(())
}

/// The image manifest to save for `image`: docker-archives hold one platform per image.
fn single_platform(
    store: &Store,
    image: &Resolved,
    platform: Option<&Platform>,
    name: &str,
) -> Result<Descriptor> {
    if image.descriptor.is_index() && platform.is_none() {
        return Err(ArchiveError::MultiPlatform(name.to_string()));
    }
    Ok(store.platform_manifest(&image.descriptor, platform)?)
}

fn display_name(image: &Resolved) -> String {
    image
        .reference
        .as_ref()
        .map_or_else(|| image.descriptor.digest.to_string(), |r| r.familiar())
}

fn save_docker<W: Write>(
    store: &Store,
    images: &[Resolved],
    platform: Option<&Platform>,
    tar: &mut TarWriter<W>,
    progress: &dyn Progress,
) -> Result<()> {
    let mut written: HashSet<String> = HashSet::new();
    let mut manifest_json = Vec::new();
    for image in images {
        let name = display_name(image);
        let desc = single_platform(store, image, platform, &name)?;
        let manifest = store.read_manifest(&desc.digest)?.value;
        let config = store.read_config(&manifest.config.digest)?;
        let diff_ids = &config.value.rootfs.diff_ids;
        if diff_ids.len() != manifest.layers.len() {
            return Err(crate::oci::OciError::Invalid(format!(
                "image {} lists {} layers but its config {} diff IDs",
                desc.digest,
                manifest.layers.len(),
                diff_ids.len()
            ))
            .into());
        }
        let config_path = format!("{}.json", manifest.config.digest.hex());
        if written.insert(config_path.clone()) {
            append_bytes(tar, &config_path, &config.bytes)?;
        }
        let mut layer_paths = Vec::new();
        for (layer, diff_id) in manifest.layers.iter().zip(diff_ids) {
            let path = format!("{}/layer.tar", diff_id.hex());
            if written.insert(path.clone()) {
                append_uncompressed_layer(store, tar, &path, layer, diff_id, progress)?;
            }
            layer_paths.push(path);
        }
        let tags: Vec<String> = image
            .reference
            .iter()
            .filter(|r| r.tag().is_some())
            .map(|r| r.familiar())
            .collect();
        manifest_json.push(json!({
            "Config": config_path,
            "RepoTags": if tags.is_empty() { serde_json::Value::Null } else { json!(tags) },
            "Layers": layer_paths,
        }));
    }
    let bytes = serde_json::to_vec(&manifest_json).expect("manifest.json serialises");
    append_bytes(tar, "manifest.json", &bytes)
}

/// docker-archives carry uncompressed layers (their digests are the diff IDs); compressed ones
/// are decompressed into a temp file first, since a tar entry needs its size up front.
fn append_uncompressed_layer<W: Write>(
    store: &Store,
    tar: &mut TarWriter<W>,
    path: &str,
    layer: &Descriptor,
    diff_id: &Digest,
    progress: &dyn Progress,
) -> Result<()> {
    let mut blob = store.open_blob(&layer.digest)?;
    if Compression::from_media_type(&layer.media_type) == Some(Compression::None) {
        return append_file(tar, path, &mut blob, layer.size, progress);
    }
    let (mut reader, _) = decompressed(blob)?;
    let mut tmp = tempfile::tempfile_in(store.tmp_dir()).map_err(|e| ArchiveError::Io {
        what: "cannot create a temp file".into(),
        source: e,
    })?;
    let mut hashing = oci::HashingWriter::new(&mut tmp, diff_id.algorithm());
    copy_buffered(&mut reader, &mut hashing).map_err(|e| ArchiveError::Io {
        what: format!("cannot decompress layer {}", layer.digest),
        source: e,
    })?;
    let (_, actual, size) = hashing.finish();
    if &actual != diff_id {
        return Err(crate::content::ContentError::DigestMismatch {
            what: format!("uncompressed layer {}", layer.digest),
            expected: diff_id.clone(),
            actual,
        }
        .into());
    }
    use std::io::Seek;
    tmp.rewind().map_err(write_err)?;
    append_file(tar, path, &mut tmp, size, progress)
}

fn save_oci<W: Write>(
    store: &Store,
    images: &[Resolved],
    platform: Option<&Platform>,
    tar: &mut TarWriter<W>,
    progress: &dyn Progress,
) -> Result<()> {
    let mut blobs: Vec<Descriptor> = Vec::new();
    let mut seen: HashSet<Digest> = HashSet::new();
    let mut entries = Vec::new();
    for image in images {
        let name = display_name(image);
        let desc = match platform {
            Some(p) => store.platform_manifest(&image.descriptor, Some(p))?,
            None => image.descriptor.clone(),
        };
        collect(store, &desc, &name, &mut blobs, &mut seen)?;
        let mut entry = desc.clone();
        entry.annotations = None;
        if let Some(r) = &image.reference {
            entry.set_annotation(ANNOTATION_REF_NAME, r.to_string());
            entry.set_annotation("io.containerd.image.name", r.to_string());
        }
        entries.push(entry);
    }
    append_bytes(tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    for b in &blobs {
        let path = format!("blobs/{}/{}", b.digest.algorithm().name(), b.digest.hex());
        let mut f = store.open_blob(&b.digest)?;
        append_file(tar, &path, &mut f, b.size, progress)?;
    }
    let index = oci::Index::new_oci(entries);
    let bytes = serde_json::to_vec(&index).expect("index serialises");
    append_bytes(tar, "index.json", &bytes)
}

/// Every blob under `desc`, each once; a child missing from the store is an error (an OCI
/// archive must be complete).
fn collect(
    store: &Store,
    desc: &Descriptor,
    name: &str,
    out: &mut Vec<Descriptor>,
    seen: &mut HashSet<Digest>,
) -> Result<()> {
    let sparse = || ArchiveError::Sparse(name.to_string());
    let mut blobs = Vec::new();
    crate::content::walk(
        std::slice::from_ref(desc),
        seen,
        |d, _| {
            if !store.has_blob(&d.digest) {
                return Err(sparse());
            }
            out.push(d.clone());
            if !(d.is_index() || d.is_manifest()) {
                return Ok((Vec::new(), ()));
            }
            match store.read_document(d)?.value {
                Document::Index(index) => Ok((index.manifests, ())),
                Document::Manifest(m) => {
                    for b in std::iter::once(m.config).chain(m.layers) {
                        if !store.has_blob(&b.digest) {
                            return Err(sparse());
                        }
                        blobs.push(b);
                    }
                    Ok((Vec::new(), ()))
                }
            }
        },
        |_, ()| Ok(()),
    )?;
    for b in blobs {
        if seen.insert(b.digest.clone()) {
            out.push(b);
        }
    }
    Ok(())
}
