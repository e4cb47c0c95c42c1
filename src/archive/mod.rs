//! Image tarballs: docker-archive (`docker save`'s layout) and OCI archives (a tarred OCI image
//! layout), both written (`save`), read in one streaming pass (`load`), and root filesystem
//! tarballs turned into single-layer images (`import`).
//!
//! Nothing is ever extracted onto the host: layer tarballs are hashed and stored as blobs.

mod import;
mod load;
mod save;

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

pub use import::{ImportOptions, import};
pub use load::{LoadedImage, load};
pub use save::{ArchiveSink, SaveFormat, save};

use crate::content::ContentError;
use crate::hint::Hint;
use crate::layer::compression::{self, Compression};
use crate::layer::tarball::looks_like_tar;
use crate::oci::{Digest, OciError};
use crate::reference::ReferenceError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the input is empty")]
    Empty,
    #[error("the input is not a tar archive{}", compressed_note(.0))]
    NotTar(Option<Compression>),
    #[error("the archive is truncated or corrupt")]
    Corrupt(#[source] io::Error),
    #[error(
        "the archive is neither a docker-archive nor an OCI archive: it has no manifest.json and no index.json"
    )]
    UnknownFormat,
    #[error("`{path}` in the archive is not valid: {why}")]
    BadFile { path: String, why: String },
    #[error("`{path}` in the archive does not match its digest: its content hashes to {actual}")]
    BlobMismatch { path: String, actual: Digest },
    #[error("the archive is incomplete: {what} ({digest}) is missing")]
    Missing { what: String, digest: Digest },
    #[error(
        "the archive has too many entries: remembering their names would take more than {limit_mib} MiB"
    )]
    TooManyEntries { limit_mib: usize },
    #[error("{what} has {size} bytes, more than the {limit_mib} MiB allowed")]
    TooLarge {
        what: String,
        size: u64,
        limit_mib: u64,
    },
    #[error("`{0}` is a multi-platform image; a docker-archive holds one platform per image")]
    MultiPlatform(String),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Change(#[from] crate::oci::changes::ChangeError),
}

impl Hint for ArchiveError {
    fn hint(&self) -> Option<String> {
        match self {
            ArchiveError::Store(e) => e.hint(),
            ArchiveError::Content(e) => e.hint(),
            ArchiveError::Oci(e) => e.hint(),
            ArchiveError::Reference(e) => e.hint(),
            _ => None,
        }
    }
}

fn compressed_note(c: &Option<Compression>) -> &'static str {
    match c {
        Some(Compression::Gzip) => " (after gzip decompression)",
        Some(Compression::Zstd) => " (after zstd decompression)",
        _ => "",
    }
}

pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;

/// Wrap a reader in the decompressor its first bytes call for.
pub fn decompressed<'a, R: Read + 'a>(reader: R) -> Result<(Box<dyn Read + 'a>, Compression)> {
    compression::sniffed(reader)
        .map_err(|e| ArchiveError::Io {
            what: "cannot read the input".into(),
            source: e,
        })?
        .ok_or(ArchiveError::Empty)
}

/// A reader that checks its first 512 bytes look like a tar header before handing them on, so
/// garbage input gets a clear error rather than the tar crate's.
pub(crate) struct TarCheck<R> {
    inner: R,
    head: Vec<u8>,
    pos: usize,
}

impl<R: Read> TarCheck<R> {
    pub fn new(mut inner: R, compression: Compression) -> Result<TarCheck<R>> {
        let mut head = vec![0u8; 512];
        let mut filled = 0;
        while filled < 512 {
            match inner.read(&mut head[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(if compression == Compression::None {
                        ArchiveError::Corrupt(e)
                    } else {
                        ArchiveError::NotTar(Some(compression))
                    });
                }
            }
        }
        if filled == 0 {
            return Err(ArchiveError::Empty);
        }
        let compression = (compression != Compression::None).then_some(compression);
        if !looks_like_tar(&head[..filled]) {
            return Err(ArchiveError::NotTar(compression));
        }
        Ok(TarCheck {
            inner,
            head,
            pos: 0,
        })
    }
}

impl<R> TarCheck<R> {
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for TarCheck<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.head.len() {
            let n = buf.len().min(self.head.len() - self.pos);
            buf[..n].copy_from_slice(&self.head[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

/// What the tar reader may read between two entries (the next header, and the GNU long names
/// and PAX records before it), which the tar crate keeps in memory whole: a hostile archive
/// compresses a gigabyte-long name into a few kilobytes.
const HEADER_LIMIT: u64 = 4 << 20;

/// Counts what the tar reader reads between entries and fails past `HEADER_LIMIT`. The reader
/// half goes to `tar::Archive`; the caller keeps this half and wraps each `next()` in
/// `between_entries`.
#[derive(Clone)]
pub(crate) struct HeaderMeter {
    state: Rc<MeterState>,
}

#[derive(Default)]
struct MeterState {
    counting: Cell<bool>,
    count: Cell<u64>,
    exceeded: Cell<bool>,
}

pub(crate) struct Metered<R> {
    inner: R,
    state: Rc<MeterState>,
}

impl HeaderMeter {
    pub fn new<R: Read>(inner: R) -> (Metered<R>, HeaderMeter) {
        let state = Rc::new(MeterState::default());
        (
            Metered {
                inner,
                state: state.clone(),
            },
            HeaderMeter { state },
        )
    }

    /// Run `next` (the tar reader's step to the next entry) under the limit; an error it returns
    /// because of the limit becomes `TooLarge`.
    pub fn between_entries<T>(
        &self,
        next: impl FnOnce() -> Option<io::Result<T>>,
    ) -> Option<Result<T>> {
        self.state.counting.set(true);
        self.state.count.set(0);
        let r = next();
        self.state.counting.set(false);
        r.map(|r| {
            r.map_err(|e| {
                if self.state.exceeded.get() {
                    ArchiveError::TooLarge {
                        what: "a tar header (with its long names and PAX records)".into(),
                        size: self.state.count.get(),
                        limit_mib: HEADER_LIMIT >> 20,
                    }
                } else {
                    ArchiveError::Corrupt(e)
                }
            })
        })
    }
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.state.counting.get() {
            let count = self.state.count.get() + n as u64;
            self.state.count.set(count);
            if count > HEADER_LIMIT {
                self.state.exceeded.set(true);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "tar header too large",
                ));
            }
        }
        Ok(n)
    }
}

impl<R> Metered<R> {
    pub fn into_inner(self) -> R {
        self.inner
    }
}
