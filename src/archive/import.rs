//! `import`: a root filesystem tarball (plain, gzip or zstd) becomes a single-layer image. One
//! pass: the input bytes are stored as the layer blob as they arrive, while the decompressed
//! stream is hashed for the diff ID and walked as a tar to prove it is one.

use std::io::{self, Read, Write};

use chrono::{SecondsFormat, Utc};

use super::{ArchiveError, Result, TarCheck, sniff_compression};
use crate::oci::{
    Algorithm, Descriptor, HashingReader, History, ImageConfig, Manifest, Parsed, changes,
    media_type, media_type::LayerCompression,
};
use crate::platform::Platform;
use crate::progress::{Progress, ProgressReader};
use crate::reference::Reference;
use crate::store::{BlobWriter, Store};

pub struct ImportOptions {
    pub platform: Platform,
    /// Dockerfile instructions applied to the config (`CMD ["sh"]`, `ENV A=b`, …).
    pub changes: Vec<String>,
    pub message: Option<String>,
    /// What the history says the image was imported from (a file name, or `-`).
    pub source_name: String,
    pub reference: Option<Reference>,
}

/// Import the tarball read from `input`; returns the new image's manifest descriptor.
pub fn import(
    store: &Store,
    input: impl Read,
    options: &ImportOptions,
    progress: &dyn Progress,
) -> Result<Descriptor> {
    // Parse the changes first: a typo must not cost a pass over a large tarball.
    let mut config = ImageConfig::default();
    for change in &options.changes {
        changes::apply(&mut config, change)?;
    }
    let _guard = store.write_guard()?;
    let mut blob = store.blob_writer()?;
    let id = "import";
    progress.start(id, &options.source_name, None);
    let (diff_id, compression) = stream_layer(ProgressReader::new(input, id, progress), &mut blob)?;
    progress.finish(id, "read");
    let layer = blob.commit(store, None)?;
    let layer_media_type = match compression {
        LayerCompression::None => media_type::OCI_LAYER,
        LayerCompression::Gzip => media_type::OCI_LAYER_GZIP,
        LayerCompression::Zstd => media_type::OCI_LAYER_ZSTD,
    };

    let created = Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true);
    config.created = Some(created.clone());
    config.set_platform(&options.platform);
    config.rootfs.diff_ids = vec![diff_id];
    config.history = vec![History {
        created: Some(created),
        created_by: Some(format!("manifold import {}", options.source_name)),
        comment: Some(
            options
                .message
                .clone()
                .unwrap_or_else(|| format!("Imported from {}", options.source_name)),
        ),
        ..Default::default()
    }];
    let config = Parsed::from_value(config);
    store.put_bytes(&config.bytes)?;
    let manifest = Parsed::from_value(Manifest {
        schema_version: 2,
        media_type: Some(media_type::OCI_MANIFEST.into()),
        artifact_type: None,
        config: config.descriptor(media_type::OCI_CONFIG),
        layers: vec![Descriptor::new(layer_media_type, layer.0, layer.1)],
        subject: None,
        annotations: None,
        extra: Default::default(),
    });
    store.put_bytes(&manifest.bytes)?;
    let mut desc = manifest.descriptor(media_type::OCI_MANIFEST);
    desc.platform = Some(options.platform.clone());
    match &options.reference {
        Some(r) => store.tag(r, &desc)?,
        None => store.add_untagged(&desc)?,
    }
    Ok(desc)
}

/// Copy the raw input into `blob` while checking and hashing the tar inside it.
fn stream_layer(
    input: impl Read,
    blob: &mut BlobWriter,
) -> Result<(crate::oci::Digest, LayerCompression)> {
    let mut input = io::BufReader::with_capacity(1 << 20, input);
    let head = io::BufRead::fill_buf(&mut input).map_err(|e| ArchiveError::Io {
        what: "cannot read the input".into(),
        source: e,
    })?;
    if head.is_empty() {
        return Err(ArchiveError::Empty);
    }
    let compression = sniff_compression(head);
    let raw = TeeReader {
        inner: input,
        copy: blob,
    };
    let decoded: Box<dyn Read + '_> =
        match compression {
            LayerCompression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
            LayerCompression::Zstd => Box::new(zstd::stream::read::Decoder::new(raw).map_err(
                |e| ArchiveError::Io {
                    what: "cannot start zstd decompression".into(),
                    source: e,
                },
            )?),
            LayerCompression::None => Box::new(raw),
        };
    let hashing = HashingReader::new(decoded, Algorithm::Sha256);
    let checked = TarCheck::new(hashing, compression)?;
    let mut archive = tar::Archive::new(checked);
    for entry in archive.entries().map_err(ArchiveError::Corrupt)? {
        let mut entry = entry.map_err(ArchiveError::Corrupt)?;
        io::copy(&mut entry, &mut io::sink()).map_err(ArchiveError::Corrupt)?;
    }
    // The rest (end-of-archive blocks, padding) belongs to the layer and its diff ID too.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(ArchiveError::Corrupt)?;
    let (diff_id, _) = rest.into_inner().finish();
    Ok((diff_id, compression))
}

/// Everything read through it is also written to `copy`.
struct TeeReader<'a, R> {
    inner: R,
    copy: &'a mut BlobWriter,
}

impl<R: Read> Read for TeeReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}
