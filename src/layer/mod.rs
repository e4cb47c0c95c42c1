//! Layers as files: their compression (`compression`), the one writer of the tar streams
//! manifold makes (`tarball`), chain IDs, safe extraction of a layer tarball into a directory
//! (in overlayfs's form, see `extract`), an overlayfs upper directory turned back into a layer
//! tarball with OCI whiteouts (see `diff`), and the merged view of a stack of layers with OCI's
//! whiteout rules (`merged`). Nothing here uses `tar::Entry::unpack`: every path is resolved
//! under the destination with openat2(RESOLVE_IN_ROOT).

pub mod compression;
pub mod diff;
pub mod extract;
pub mod inroot;
pub mod merged;
pub mod tarball;
pub mod walk;

use std::io::{self, Read, Write};
use std::path::Path;

pub use compression::Compression;
pub use diff::{DiffReport, write_diff};
pub use extract::{ExtractReport, Extractor};
pub use inroot::InRoot;

use crate::oci::{Algorithm, Digest, HashingReader, HashingWriter};

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("the layer is not a valid tar archive")]
    Corrupt(#[source] io::Error),
    #[error("entry `{path}`")]
    Entry {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "the layer's content does not match the image config: its diff ID is {actual}, the config says {expected}"
    )]
    DiffIdMismatch { expected: Digest, actual: Digest },
    #[error("cannot decompress the layer")]
    Decompress(#[source] io::Error),
    #[error("{what}")]
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

/// The diff ID of a layer blob: the digest of its uncompressed stream.
pub fn diff_id(
    blob: impl Read,
    compression: Compression,
    algorithm: Algorithm,
) -> Result<Digest, LayerError> {
    let plain = compression.reader(blob).map_err(LayerError::Decompress)?;
    let mut hashing = HashingReader::new(plain, algorithm);
    io::copy(&mut hashing, &mut io::sink()).map_err(LayerError::Decompress)?;
    Ok(hashing.finish().0)
}

/// Unpack a layer blob into `dest` (an existing empty directory), checking that the
/// uncompressed stream hashes to `diff_id` when given.
pub fn unpack(
    blob: impl Read,
    compression: Compression,
    dest: &Path,
    diff_id: Option<&Digest>,
) -> Result<ExtractReport, LayerError> {
    let plain = compression.reader(blob).map_err(LayerError::Decompress)?;
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

/// An upper directory as a layer written to `out` (mtimes clamped to `epoch` when given);
/// returns the diff ID (digest of the uncompressed tar) and what the diff holds.
pub fn write_layer_diff<W: Write>(
    upper: &Path,
    out: W,
    compression: Compression,
    epoch: Option<u64>,
) -> io::Result<(Digest, DiffReport, W)> {
    let hashing = HashingWriter::new(compression.writer(out)?, Algorithm::Sha256);
    let (report, hashing) = write_diff(upper, hashing, epoch)?;
    let (encoder, diff_id, _) = hashing.finish();
    Ok((diff_id, report, encoder.finish()?))
}

#[cfg(test)]
mod tests;
