//! Large blobs written around the page cache (`O_DIRECT`), in aligned blocks.
//!
//! A blob is made durable before it is named (fsync), so its bytes must reach the disk anyway;
//! copying them into the page cache first only adds work: on this project's 2-core machine the
//! kernel's copy into new page-cache pages was half of a pull's CPU (perf: 52 % in
//! `copy_folio_from_iter_atomic`), more than hashing every byte. Written direct, the bytes go
//! from our buffer to the disk, and the fsync at commit has only metadata left to do.
//!
//! The first `DIRECT_AFTER` bytes of every blob are written through the page cache as before
//! (configs and manifests, read again at once, never leave it); past that, bytes gather in an
//! aligned block that is written whole. The tail (less than a block) is written through the
//! page cache again. A file system that refuses `O_DIRECT` (or a direct write) leaves the blob
//! buffered, as it was.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;

/// Blobs go direct past this many bytes.
pub const DIRECT_AFTER: u64 = 8 << 20;
/// Offsets, lengths and buffers of direct writes are multiples of this (every block size
/// Linux file systems use divides it).
const ALIGN: usize = 4096;
/// One direct write.
const BLOCK: usize = 2 << 20;

#[repr(C, align(4096))]
struct Page([u8; ALIGN]);

/// A block of memory aligned for direct writes.
struct Block {
    pages: Vec<Page>,
    filled: usize,
}

impl Block {
    fn new() -> Block {
        Block {
            pages: (0..BLOCK / ALIGN).map(|_| Page([0; ALIGN])).collect(),
            filled: 0,
        }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `pages` is BLOCK contiguous, initialised bytes (Page is a plain byte array).
        unsafe { std::slice::from_raw_parts(self.pages.as_ptr().cast::<u8>(), BLOCK) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `self` is borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.pages.as_mut_ptr().cast::<u8>(), BLOCK) }
    }
}

/// Switch `O_DIRECT` on or off for `file`.
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: plain fcntl calls on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = if on {
            flags | libc::O_DIRECT
        } else {
            flags & !libc::O_DIRECT
        };
        if libc::fcntl(fd, libc::F_SETFL, flags) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Writes a file's bytes: buffered up to `DIRECT_AFTER` (rounded up to `ALIGN`), then direct
/// in whole blocks where the file system allows it.
pub struct DirectWriter {
    written: u64,
    block: Option<Block>,
    /// Direct writes were refused: buffered to the end.
    refused: bool,
}

impl DirectWriter {
    pub fn new() -> DirectWriter {
        DirectWriter {
            written: 0,
            block: None,
            refused: false,
        }
    }

    /// Whether bytes now go direct (no writeback to start for them).
    pub fn is_direct(&self) -> bool {
        self.block.is_some()
    }

    /// Write all of `buf` to `file`.
    pub fn write_all(&mut self, file: &mut File, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let Some(block) = &mut self.block else {
                // Buffered up to the switch, which is on an aligned offset.
                let switch = DIRECT_AFTER.next_multiple_of(ALIGN as u64);
                let room = switch.saturating_sub(self.written);
                if room == 0 || self.refused {
                    if !self.refused && set_direct(file, true).is_ok() {
                        self.block = Some(Block::new());
                        continue;
                    }
                    self.refused = true;
                    file.write_all(buf)?;
                    self.written += buf.len() as u64;
                    return Ok(());
                }
                let n = (room as usize).min(buf.len());
                file.write_all(&buf[..n])?;
                self.written += n as u64;
                buf = &buf[n..];
                continue;
            };
            let n = (BLOCK - block.filled).min(buf.len());
            let at = block.filled;
            block.bytes_mut()[at..at + n].copy_from_slice(&buf[..n]);
            block.filled += n;
            buf = &buf[n..];
            if block.filled == BLOCK {
                self.flush_block(file, BLOCK)?;
            }
        }
        Ok(())
    }

    /// Write the first `len` bytes of the block (a multiple of ALIGN) direct; a refusal writes
    /// them buffered and leaves the rest of the file buffered.
    fn flush_block(&mut self, file: &mut File, len: usize) -> io::Result<()> {
        let Some(block) = &mut self.block else {
            return Ok(());
        };
        match file.write_all(&block.bytes()[..len]) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                // Refused after all (a file system that takes the flag, not the write).
                set_direct(file, false)?;
                self.refused = true;
                file.write_all(&block.bytes()[..len])?;
            }
            Err(e) => return Err(e),
        }
        let rest = block.filled - len;
        block.bytes_mut().copy_within(len..len + rest, 0);
        block.filled = rest;
        self.written += len as u64;
        if self.refused {
            let tail = block.bytes()[..rest].to_vec();
            self.block = None;
            file.write_all(&tail)?;
            self.written += tail.len() as u64;
        }
        Ok(())
    }

    /// Write what the block holds: its aligned part direct, the tail buffered.
    pub fn finish(&mut self, file: &mut File) -> io::Result<()> {
        let Some(block) = &self.block else {
            return Ok(());
        };
        let aligned = block.filled / ALIGN * ALIGN;
        if aligned > 0 {
            self.flush_block(file, aligned)?;
        }
        if let Some(block) = self.block.take() {
            set_direct(file, false)?;
            file.write_all(&block.bytes()[..block.filled])?;
            self.written += block.filled as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Every size around the switch and the blocks, written in odd pieces, reads back whole.
    #[test]
    fn what_is_written_reads_back_at_every_size() {
        let dir = tempfile::tempdir().unwrap();
        let switch = DIRECT_AFTER as usize;
        for size in [
            0,
            1,
            switch - 1,
            switch,
            switch + 1,
            switch + ALIGN + 7,
            switch + BLOCK,
            switch + 3 * BLOCK + 4097,
        ] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let path = dir.path().join(format!("blob-{size}"));
            let mut file = File::create(&path).unwrap();
            let mut w = DirectWriter::new();
            for piece in data.chunks(123_457) {
                w.write_all(&mut file, piece).unwrap();
            }
            w.finish(&mut file).unwrap();
            assert_eq!(w.written, size as u64);
            assert!(!w.is_direct());
            drop(file);
            let mut back = Vec::new();
            File::open(&path).unwrap().read_to_end(&mut back).unwrap();
            assert!(back == data, "size {size}");
        }
    }

    /// On a file system that takes O_DIRECT (ext4: the tests' temp directory here and in CI),
    /// the large part of a blob does go direct.
    #[test]
    fn large_blobs_go_direct_where_the_file_system_allows_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = File::create(dir.path().join("blob")).unwrap();
        let mut w = DirectWriter::new();
        w.write_all(&mut file, &vec![1u8; DIRECT_AFTER as usize + 1])
            .unwrap();
        assert!(w.is_direct());
        w.finish(&mut file).unwrap();
    }
}
