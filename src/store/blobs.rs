//! Blobs: content-addressed files under `images/blobs/<alg>/<hex>`, written through a temp file
//! that is hashed while written, verified, then renamed into place.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use super::direct::{self, DIRECT_AFTER, DirectSink};
use super::{Result, Store, StoreError, Transaction, private};
use crate::content::ContentError;
use crate::oci::{Algorithm, Descriptor, Digest, OffloadHasher};

/// Copy buffer: large enough that hashing and the write syscalls, not the loop, dominate.
const COPY_BUFFER: usize = 1 << 20;

/// A blob being written. Nothing is visible in the store until `commit` verifies it; dropping
/// the writer removes the temp file.
pub struct BlobWriter {
    file: tempfile::NamedTempFile,
    /// Hashes what is written through the page cache (None once the blob goes direct: the
    /// direct sink hashes from there).
    hasher: Option<OffloadHasher>,
    /// Past its first MiBs, a blob goes around the page cache (see `direct`).
    direct: Option<DirectSink>,
    /// The file system refused `O_DIRECT`: buffered to the end.
    buffered_only: bool,
    written: u64,
    /// How far writeback has been started (see `start_writeback`).
    flushed: u64,
}

/// Start writeback after this many new bytes.
const WRITEBACK_STEP: u64 = 8 << 20;

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            if let Some(sink) = &mut self.direct {
                sink.write_all(rest).map_err(|e| self.located(e))?;
                self.written += rest.len() as u64;
                break;
            }
            let room = if self.buffered_only {
                u64::MAX
            } else {
                DIRECT_AFTER.saturating_sub(self.written)
            };
            if room == 0 {
                self.go_direct();
                continue;
            }
            let n = (room.min(rest.len() as u64)) as usize;
            self.file
                .write_all(&rest[..n])
                .map_err(|e| self.located(e))?;
            self.hasher
                .as_mut()
                .expect("buffered bytes are hashed here")
                .update(&rest[..n]);
            self.written += n as u64;
            rest = &rest[n..];
            if self.written - self.flushed >= WRITEBACK_STEP {
                self.start_writeback();
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter {
    /// A writer whose temp file is in `dir` (under the store's `tmp-v1/`).
    pub(super) fn new_in(dir: &Path, algorithm: Algorithm) -> Result<BlobWriter> {
        let file = private::temp_file(dir, "blob-")
            .map_err(StoreError::io("cannot create a temp file in", dir))?;
        Ok(BlobWriter {
            file,
            hasher: Some(OffloadHasher::new(algorithm)),
            direct: None,
            buffered_only: false,
            written: 0,
            flushed: 0,
        })
    }

    /// From here (an aligned offset) the blob goes direct, where the file system allows it.
    fn go_direct(&mut self) {
        let file = self.file.as_file();
        let Ok(writer) = file.try_clone() else {
            self.buffered_only = true;
            return;
        };
        if direct::set_direct(file, true).is_err() {
            self.buffered_only = true;
            return;
        }
        let hasher = self.hasher.take().expect("not direct yet").into_inner();
        self.direct = Some(DirectSink::start(writer, hasher));
    }

    /// Read from `reader` into the blob once (into `buf`, or straight into the direct block):
    /// how many bytes came, 0 at its end.
    pub fn fill_from(&mut self, reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
        if self.direct.is_none() && !self.buffered_only && self.written >= DIRECT_AFTER {
            self.go_direct();
        }
        if let Some(sink) = &mut self.direct {
            let n = reader.read(sink.space())?;
            sink.filled(n).map_err(|e| self.located(e))?;
            self.written += n as u64;
            return Ok(n);
        }
        let n = reader.read(buf)?;
        self.write_all(&buf[..n])?;
        Ok(n)
    }

    /// A write error, said of the temp file's directory when the disk is full.
    fn located(&self, e: io::Error) -> io::Error {
        let dir = self.file.path().parent().unwrap_or(self.file.path());
        crate::space::NoSpace::locate(e, dir)
    }

    /// The temp file being written (what a failed write names).
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Ask the kernel to start writing what we wrote so far to disk, without waiting: the fsync
    /// at commit then finds little left to do, and the disk works while we read on.
    fn start_writeback(&mut self) {
        use std::os::fd::AsRawFd;
        let fd = self.file.as_file().as_raw_fd();
        let (from, len) = (self.flushed, self.written - self.flushed);
        // SAFETY: a plain syscall on a file descriptor we own; failure only loses the hint.
        unsafe {
            libc::sync_file_range(fd, from as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
        }
        self.flushed = self.written;
    }

    /// Verify against `expected` (digest and size) when given, then move into place.
    /// Returns the blob's digest and size.
    pub fn commit(
        self,
        txn: &Transaction,
        expected: Option<(&Digest, u64)>,
    ) -> Result<(Digest, u64)> {
        let staged = self.finish(expected)?;
        let r = (staged.digest.clone(), staged.size);
        staged.commit(txn)?;
        Ok(r)
    }

    /// Verify against `expected` when given, without making the blob visible yet: callers that
    /// must check a whole set of blobs first (an archive) commit them all at the end.
    pub fn finish(mut self, expected: Option<(&Digest, u64)>) -> Result<StagedBlob> {
        let digest = match self.direct.take() {
            Some(sink) => match sink.finish(self.file.as_file_mut()) {
                Ok(hasher) => hasher.finish(),
                Err(e) => {
                    let path = self.file.path().to_path_buf();
                    return Err(StoreError::io("cannot write", &path)(self.located(e)));
                }
            },
            None => self.hasher.take().expect("hashed here").finish(),
        };
        let size = self.written;
        if let Some((want, want_size)) = expected {
            if size != want_size {
                return Err(ContentError::SizeMismatch {
                    what: format!("blob {want}"),
                    expected: want_size,
                    actual: size,
                }
                .into());
            }
            if &digest != want {
                return Err(ContentError::DigestMismatch {
                    what: format!("blob {want}"),
                    expected: want.clone(),
                    actual: digest,
                }
                .into());
            }
        }
        // Closed here: an archive stages thousands of blobs before it commits any, and must not
        // hold a descriptor for each.
        Ok(StagedBlob {
            path: self.file.into_temp_path(),
            digest,
            size,
        })
    }
}

/// A verified blob in a temp file (closed), not yet visible in the store. Dropping it removes
/// it.
pub struct StagedBlob {
    path: tempfile::TempPath,
    pub digest: Digest,
    pub size: u64,
}

impl StagedBlob {
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Make the blob visible (durably: fsync before the rename).
    pub fn commit(self, txn: &Transaction) -> Result<()> {
        let dest = txn.blob_path(&self.digest);
        if dest.exists() {
            return Ok(());
        }
        let path = self.path;
        // fsync through a new descriptor flushes what the writer's descriptor wrote.
        File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(StoreError::io("cannot write", &path))?;
        path.persist(&dest)
            .map_err(|e| StoreError::io("cannot rename into", &dest)(e.error))?;
        Ok(())
    }
}

impl Store {
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        File::open(self.blob_path(digest)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::BlobNotFound(digest.clone()),
            _ => StoreError::io("cannot open", &self.blob_path(digest))(e),
        })
    }

    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::BlobNotFound(digest.clone()),
            _ => StoreError::io("cannot read", &path)(e),
        })
    }

    pub fn blob_size(&self, digest: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(digest)).ok().map(|m| m.len())
    }
}

/// Blobs are written in a transaction: their temp files live in `tmp-v1/`, which garbage
/// collection clears, and what they become must be tagged before a collection runs.
impl Transaction {
    /// A writer for a new blob (sha256).
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        self.blob_writer_for(Algorithm::Sha256)
    }

    pub fn blob_writer_for(&self, algorithm: Algorithm) -> Result<BlobWriter> {
        BlobWriter::new_in(self.tmp_dir(), algorithm)
    }

    /// Store bytes as a blob; returns their digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::sha256_of(bytes);
        if self.has_blob(&digest) {
            return Ok(digest);
        }
        let mut w = self.blob_writer()?;
        w.write_all(bytes)
            .map_err(StoreError::io("cannot write", self.tmp_dir()))?;
        w.commit(self, Some((&digest, bytes.len() as u64)))?;
        Ok(digest)
    }

    /// Stream a blob in, hashing as it is written; when `expected` is given the blob must match
    /// it. Returns the digest and size.
    pub fn write_blob(
        &self,
        reader: &mut dyn Read,
        expected: Option<&Descriptor>,
    ) -> Result<(Digest, u64)> {
        let algorithm = expected.map_or(Algorithm::Sha256, |d| d.digest.algorithm());
        let mut w = self.blob_writer_for(algorithm)?;
        // Read straight into the writer's blocks once the blob goes direct.
        let mut buf = vec![0u8; COPY_BUFFER];
        loop {
            match w.fill_from(reader, &mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StoreError::Content(e.into())),
            }
        }
        w.commit(self, expected.map(|d| (&d.digest, d.size)))
    }
}

/// `io::copy` with a large buffer (std's 8 KiB is slow for hashing multi-GB layers).
pub fn copy_buffered(reader: &mut dyn Read, writer: &mut dyn Write) -> io::Result<u64> {
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut total = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        writer.write_all(&buf[..n])?;
        total += n as u64;
    }
}
