//! `import`: a root filesystem tarball (plain, gzip or zstd) becomes a single-layer image. One
//! pass: the input bytes are stored as the layer blob as they arrive, while the decompressed
//! stream is hashed for the diff ID and walked as a tar to prove it is one.

use std::cell::RefCell;
use std::io::{self, Read, Write};

use chrono::{SecondsFormat, Utc};

use super::{ArchiveError, HeaderMeter, Result, TarCheck};
use crate::layer::Compression;
use crate::oci::{
    Algorithm, Descriptor, HashingReader, History, ImageConfig, Manifest, Parsed, changes,
    media_type,
};
use crate::platform::Platform;
use crate::progress::{Progress, ProgressReader};
use crate::reference::Reference;
use crate::store::{BlobWriter, Store, StoreError};

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
    // Staged where gc leaves it alone, so that the gc lock is only taken once the input is read:
    // an import waiting on a stalled pipe must not hold up `rmi` or `prune`.
    let staging = store.staging()?;
    let mut blob = staging.blob_writer()?;
    let id = "import";
    progress.start(id, &options.source_name, None);
    let (diff_id, compression) = stream_layer(ProgressReader::new(input, id, progress), &mut blob)?;
    progress.finish(id, "read");
    let staged = blob.finish(None)?;
    let txn = store.begin()?;
    let layer = (staged.digest.clone(), staged.size);
    staged.commit(&txn)?;
    let layer_media_type = compression.media_type();

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
    txn.put_bytes(&config.bytes)?;
    let manifest = Parsed::from_value(Manifest::new_oci(
        config.descriptor(media_type::OCI_CONFIG),
        vec![Descriptor::new(layer_media_type, layer.0, layer.1)],
    ));
    txn.put_bytes(&manifest.bytes)?;
    let mut desc = manifest.descriptor(media_type::OCI_MANIFEST);
    desc.platform = Some(options.platform.clone());
    match &options.reference {
        Some(r) => txn.tag(r, &desc)?,
        None => txn.add_untagged(&desc)?,
    }
    Ok(desc)
}

/// Copy the raw input into `blob` while checking and hashing the tar inside it.
fn stream_layer(
    input: impl Read,
    blob: &mut BlobWriter,
) -> Result<(crate::oci::Digest, Compression)> {
    let write_error = RefCell::new(None);
    let path = blob.path().to_path_buf();
    stream_layer_into(input, blob, &write_error).map_err(|e| {
        // The write side failing (a full disk) reaches the tar reader as a read error.
        match write_error.into_inner() {
            Some(source) => StoreError::io("cannot write", &path)(source).into(),
            None => e,
        }
    })
}

fn stream_layer_into(
    input: impl Read,
    blob: &mut BlobWriter,
    write_error: &RefCell<Option<io::Error>>,
) -> Result<(crate::oci::Digest, Compression)> {
    let mut input = io::BufReader::with_capacity(1 << 20, input);
    let head = io::BufRead::fill_buf(&mut input).map_err(|e| ArchiveError::Io {
        what: "cannot read the input".into(),
        source: e,
    })?;
    if head.is_empty() {
        return Err(ArchiveError::Empty);
    }
    let compression = Compression::sniff(head);
    let raw = TeeReader {
        inner: input,
        copy: blob,
        write_error,
    };
    let decoded = compression.reader(raw).map_err(|e| ArchiveError::Io {
        what: "cannot start decompression".into(),
        source: e,
    })?;
    let hashing = HashingReader::new(decoded, Algorithm::Sha256);
    let checked = TarCheck::new(hashing, compression)?;
    let (metered, meter) = HeaderMeter::new(checked);
    let mut archive = tar::Archive::new(metered);
    let mut entries = archive.entries().map_err(ArchiveError::Corrupt)?;
    // Bounded by the input: each turn consumes an entry.
    loop {
        let next = meter.between_entries(|| entries.next());
        let Some(entry) = next else { break };
        let mut entry = entry?;
        io::copy(&mut entry, &mut io::sink()).map_err(ArchiveError::Corrupt)?;
    }
    // The rest (end-of-archive blocks, padding) belongs to the layer and its diff ID too.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(ArchiveError::Corrupt)?;
    let (diff_id, _) = rest.into_inner().into_inner().finish();
    Ok((diff_id, compression))
}

/// Everything read through it is also written to `copy`; a failed write is kept in
/// `write_error` so that it is reported as the store's, not as bad input.
struct TeeReader<'a, R> {
    inner: R,
    copy: &'a mut BlobWriter,
    write_error: &'a RefCell<Option<io::Error>>,
}

impl<R: Read> Read for TeeReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Err(e) = self.copy.write_all(&buf[..n]) {
            let kind = e.kind();
            *self.write_error.borrow_mut() = Some(e);
            return Err(io::Error::new(kind, "cannot write the layer to the store"));
        }
        Ok(n)
    }
}
