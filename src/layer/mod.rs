//! Layers as files: chain IDs, safe extraction of a layer tarball into a directory (in
//! overlayfs's form, see `extract`), and an overlayfs upper directory turned back into a layer
//! tarball with OCI whiteouts (see `diff`). Nothing here uses `tar::Entry::unpack`: every path
//! is resolved under the destination with openat2(RESOLVE_IN_ROOT).

pub mod diff;
pub mod extract;
pub mod inroot;
pub mod walk;

use std::io::{self, Read, Write};
use std::path::Path;

pub use diff::{DiffReport, write_diff};
pub use extract::{ExtractReport, Extractor};
pub use inroot::InRoot;

use crate::oci::media_type::LayerCompression;
use crate::oci::{Algorithm, Digest, HashingReader, HashingWriter};

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("the layer is not a valid tar archive")]
    Corrupt(#[source] io::Error),
    #[error("entry `{path}`: {source}")]
    Entry {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "the layer's content does not match the image config: its diff ID is {actual}, the config says {expected}"
    )]
    DiffIdMismatch { expected: Digest, actual: Digest },
    #[error("cannot decompress the layer: {0}")]
    Decompress(#[source] io::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    NoSpace(#[from] crate::space::NoSpace),
    #[error(
        "`{path}…` is {len} bytes long: a layer's paths have at most {MAX_PATH} bytes (what one system call resolves when it is unpacked)"
    )]
    PathTooLong { path: String, len: usize },
}

/// The longest path of a layer's entries: what one openat2 call resolves when it is unpacked
/// (PATH_MAX less the terminating NUL).
pub const MAX_PATH: usize = libc::PATH_MAX as usize - 1;

/// The chain IDs of a stack of layers (OCI image spec): the first layer's is its diff ID, each
/// next one `sha256(parent_chain_id + " " + diff_id)`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => Digest::sha256_of(format!("{parent} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// A reader decompressing a layer blob of the given compression.
pub fn decompress<'a, R: Read + 'a>(
    reader: R,
    compression: LayerCompression,
) -> Result<Box<dyn Read + 'a>, LayerError> {
    let reader = io::BufReader::with_capacity(1 << 20, reader);
    Ok(match compression {
        LayerCompression::None => Box::new(reader),
        LayerCompression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        LayerCompression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(reader).map_err(LayerError::Decompress)?,
        ),
    })
}

/// The diff ID of a layer blob: the digest of its uncompressed stream.
pub fn diff_id(
    blob: impl Read,
    compression: LayerCompression,
    algorithm: Algorithm,
) -> Result<Digest, LayerError> {
    let mut hashing = HashingReader::new(decompress(blob, compression)?, algorithm);
    io::copy(&mut hashing, &mut io::sink()).map_err(LayerError::Decompress)?;
    Ok(hashing.finish().0)
}

/// Unpack a layer blob into `dest` (an existing empty directory), checking that the
/// uncompressed stream hashes to `diff_id` when given.
pub fn unpack(
    blob: impl Read,
    compression: LayerCompression,
    dest: &Path,
    diff_id: Option<&Digest>,
) -> Result<ExtractReport, LayerError> {
    let plain = decompress(blob, compression)?;
    let algorithm = diff_id.map_or(Algorithm::Sha256, Digest::algorithm);
    let hashing = HashingReader::new(plain, algorithm);
    let extractor = Extractor::new(dest).map_err(|source| LayerError::Io {
        what: format!("cannot open {}", dest.display()),
        source,
    })?;
    let (report, hashing) = extractor.extract(hashing)?;
    let (actual, _) = hashing.finish();
    if let Some(expected) = diff_id
        && &actual != expected
    {
        return Err(LayerError::DiffIdMismatch {
            expected: expected.clone(),
            actual,
        });
    }
    Ok(report)
}

/// An upper directory as a gzip layer written to `out`; returns the diff ID (digest of the
/// uncompressed tar) and what the diff holds.
pub fn diff_gzip<W: Write>(upper: &Path, out: W) -> io::Result<(Digest, DiffReport, W)> {
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    let hashing = HashingWriter::new(gz, Algorithm::Sha256);
    let (report, hashing) = write_diff(upper, hashing)?;
    let (gz, diff_id, _) = hashing.finish();
    let out = gz.finish()?;
    Ok((diff_id, report, out))
}

#[cfg(test)]
mod tests;
