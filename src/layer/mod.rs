//! Layers as files: chain IDs, safe extraction of a layer tarball into a directory (in
//! overlayfs's form, see `extract`), and an overlayfs upper directory turned back into a layer
//! tarball with OCI whiteouts (see `diff`). Nothing here uses `tar::Entry::unpack`: every path
//! is resolved under the destination with openat2(RESOLVE_IN_ROOT).

pub mod changes;
pub mod diff;
pub mod extract;
pub mod inroot;
pub mod walk;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

pub use changes::{Baseline, write_changes};
pub use diff::{DiffReport, write_diff};
pub use extract::{ExtractOptions, ExtractReport, Extractor, Owners, Whiteouts};
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
    NoSpace(#[from] NoSpace),
    #[error(
        "`{path}…` is {len} bytes long: a layer's paths have at most {MAX_PATH} bytes (what one system call resolves when it is unpacked)"
    )]
    PathTooLong { path: String, len: usize },
}

/// The longest path of a layer's entries: what one openat2 call resolves when it is unpacked
/// (PATH_MAX less the terminating NUL).
pub const MAX_PATH: usize = libc::PATH_MAX as usize - 1;

/// A write that failed because the file system is full (ENOSPC) or the user's quota on it is
/// used up (EDQUOT), with where: the directory written to and the file system's mount point.
/// Every store and runtime write that can fill a disk reports it this way.
#[derive(Debug)]
pub struct NoSpace {
    pub dir: PathBuf,
    pub mount: PathBuf,
    quota: bool,
    source: io::Error,
}

impl std::fmt::Display for NoSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (dir, mount) = (self.dir.display(), self.mount.display());
        if self.quota {
            write!(
                f,
                "disk quota exceeded in `{dir}` (on the file system mounted on `{mount}`)"
            )
        } else {
            write!(
                f,
                "no space left on device in `{dir}` (the file system mounted on `{mount}` is full)"
            )
        }
    }
}

impl std::error::Error for NoSpace {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Whether `e` says the disk is full or the quota is used up.
pub fn is_out_of_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

impl NoSpace {
    pub const HINT: &str = "free space on that file system (`manifold prune` removes unused images, snapshots and temp files), or give `--root` a directory on a larger one";

    /// `e` unchanged, or, when it says the disk is full, an error of the same kind saying where
    /// (`path`: the directory written to, or a file in it).
    pub fn locate(e: io::Error, path: &Path) -> io::Error {
        if !is_out_of_space(&e) || e.get_ref().is_some_and(|i| i.is::<NoSpace>()) {
            return e;
        }
        let kind = e.kind();
        io::Error::new(
            kind,
            NoSpace::at(path, kind == io::ErrorKind::QuotaExceeded),
        )
    }

    /// The error for a full file system (or quota, when `quota`) under `path`.
    pub fn at(path: &Path, quota: bool) -> NoSpace {
        use std::os::unix::fs::MetadataExt;
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let existing = path
            .ancestors()
            .find_map(|p| std::fs::metadata(p).ok().map(|m| (p, m)));
        let (dir, mount) = match existing {
            Some((p, m)) => {
                let dir = if m.is_dir() {
                    p
                } else {
                    p.parent().unwrap_or(p)
                };
                let mount = dir
                    .ancestors()
                    .take_while(|a| std::fs::metadata(a).is_ok_and(|am| am.dev() == m.dev()))
                    .last()
                    .unwrap_or(dir);
                (dir.to_path_buf(), mount.to_path_buf())
            }
            None => (path.clone(), PathBuf::from("/")),
        };
        let errno = if quota { libc::EDQUOT } else { libc::ENOSPC };
        NoSpace {
            dir,
            mount,
            quota,
            source: io::Error::from_raw_os_error(errno),
        }
    }

    /// The same error about another directory (of the same file system).
    pub fn with_dir(mut self, dir: &Path) -> NoSpace {
        self.dir = dir.to_path_buf();
        self
    }
}

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

/// Unpack a layer blob into `dest` (an existing empty directory), checking that the
/// uncompressed stream hashes to `diff_id` when given.
pub fn unpack(
    blob: impl Read,
    compression: LayerCompression,
    dest: &Path,
    diff_id: Option<&Digest>,
) -> Result<ExtractReport, LayerError> {
    unpack_with(blob, compression, dest, diff_id, ExtractOptions::default())
}

/// [`unpack`] with the whiteouts and owners `options` say (a rootless snapshot, or a layer
/// applied over the ones before it in a plain directory).
pub fn unpack_with(
    blob: impl Read,
    compression: LayerCompression,
    dest: &Path,
    diff_id: Option<&Digest>,
    options: ExtractOptions,
) -> Result<ExtractReport, LayerError> {
    let plain = decompress(blob, compression)?;
    let algorithm = diff_id.map_or(Algorithm::Sha256, Digest::algorithm);
    let hashing = HashingReader::new(plain, algorithm);
    let extractor = Extractor::with_options(dest, options).map_err(|source| LayerError::Io {
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
    gzip_diff(out, |w| write_diff(upper, w))
}

/// The tar stream `diff` writes, gzipped to `out`, with its diff ID.
pub fn gzip_diff<W: Write>(
    out: W,
    diff: impl FnOnce(
        HashingWriter<flate2::write::GzEncoder<W>>,
    ) -> io::Result<(DiffReport, HashingWriter<flate2::write::GzEncoder<W>>)>,
) -> io::Result<(Digest, DiffReport, W)> {
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    let hashing = HashingWriter::new(gz, Algorithm::Sha256);
    let (report, hashing) = diff(hashing)?;
    let (gz, diff_id, _) = hashing.finish();
    let out = gz.finish()?;
    Ok((diff_id, report, out))
}

#[cfg(test)]
mod tests;
