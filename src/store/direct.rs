//! Large blobs written around the page cache (`O_DIRECT`), in aligned blocks.
//!
//! A blob is made durable before it is named (fsync), so its bytes must reach the disk anyway;
//! copying them into the page cache first only adds work: on this project's 2-core machine the
//! kernel's copy into new page-cache pages was half of a pull's CPU (perf: 52 % in
//! `copy_folio_from_iter_atomic`), more than hashing every byte. Written direct, the bytes go
//! from our buffer to the disk, and the fsync at commit has only metadata left to do.
//!
//! The first `DIRECT_AFTER` bytes of every blob are written through the page cache (configs
//! and manifests, read again at once, never leave it). Past that, the caller reads straight
//! into an aligned block (`space`/`filled`); each full block goes to a thread of its own that
//! hashes it and then writes it, so a byte is copied once in user space (by the reader) and the
//! next block fills while the disk takes the last. The tail (less than a block) is hashed and
//! written at the end, its aligned part direct, the rest through the page cache. A file system
//! that refuses `O_DIRECT` (the flag, or a direct write) gets the rest of the blob buffered.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;

use crate::oci::Hasher;

/// Blobs go direct past this many bytes (a multiple of `ALIGN`).
pub const DIRECT_AFTER: u64 = 8 << 20;
/// Offsets, lengths and buffers of direct writes are multiples of this (every block size
/// Linux file systems use divides it).
const ALIGN: usize = 4096;
/// One direct write.
const BLOCK: usize = 2 << 20;
/// Full blocks waiting for the hashing and writing thread.
const DEPTH: usize = 2;

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

/// Switch `O_DIRECT` on or off for `file` (and every descriptor sharing its open file).
pub fn set_direct(file: &File, on: bool) -> io::Result<()> {
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

/// Write all of `bytes` at the file's offset. A direct write refused with EINVAL (before any
/// byte of it went: the offset is still aligned) switches the file to buffered writes for good
/// and goes on from where it was; never is a byte written twice.
fn write_block(file: &mut File, bytes: &[u8], refused: &mut bool) -> io::Result<()> {
    let mut at = 0;
    while at < bytes.len() {
        match file.write(&bytes[at..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && !*refused && at % ALIGN == 0 => {
                set_direct(file, false)?;
                *refused = true;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What the hashing and writing thread ends with.
type Done = (Hasher, io::Result<()>, bool);

/// The direct part of a blob being written: the block filling, and the thread hashing and
/// writing the full ones.
pub struct DirectSink {
    block: Block,
    blocks: Option<SyncSender<Block>>,
    spare: Receiver<Block>,
    worker: Option<JoinHandle<Done>>,
}

impl DirectSink {
    /// Go on writing `file` direct (`O_DIRECT` already set on it; its offset aligned) through
    /// `writer` (a second descriptor of the same open file), `hasher` having hashed every byte
    /// before.
    pub fn start(mut writer: File, mut hasher: Hasher) -> DirectSink {
        let (blocks, rx) = sync_channel::<Block>(DEPTH);
        let (give_back, spare) = channel::<Block>();
        let worker = std::thread::spawn(move || -> Done {
            let mut refused = false;
            for block in rx {
                hasher.update(block.bytes());
                if let Err(e) = write_block(&mut writer, block.bytes(), &mut refused) {
                    return (hasher, Err(e), refused);
                }
                let _ = give_back.send(block);
            }
            (hasher, Ok(()), refused)
        });
        DirectSink {
            block: Block::new(),
            blocks: Some(blocks),
            spare,
            worker: Some(worker),
        }
    }

    /// Wait for the thread: the hasher, and whether the writes went well and stayed direct.
    fn join(&mut self) -> io::Result<Done> {
        drop(self.blocks.take());
        let worker = self
            .worker
            .take()
            .ok_or_else(|| io::Error::other("the blob's writing thread was already waited for"))?;
        worker
            .join()
            .map_err(|_| io::Error::other("the blob's writing thread panicked"))
    }

    /// Where the next bytes go: the free part of the block filling (never empty).
    pub fn space(&mut self) -> &mut [u8] {
        let at = self.block.filled;
        &mut self.block.bytes_mut()[at..]
    }

    /// `n` more bytes of `space` hold data; a full block goes to the thread.
    pub fn filled(&mut self, n: usize) -> io::Result<()> {
        self.block.filled += n;
        if self.block.filled < BLOCK {
            return Ok(());
        }
        let next = self.spare.try_recv().unwrap_or_else(|_| Block::new());
        let full = std::mem::replace(&mut self.block, next);
        self.block.filled = 0;
        let sent = self.blocks.as_ref().is_some_and(|b| b.send(full).is_ok());
        if !sent {
            // The thread stopped on an error: that error.
            let (_, written, _) = self.join()?;
            written?;
            return Err(io::Error::other("the blob's writing thread stopped"));
        }
        Ok(())
    }

    /// Copy `buf` in.
    pub fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let space = self.space();
            let n = space.len().min(buf.len());
            space[..n].copy_from_slice(&buf[..n]);
            buf = &buf[n..];
            self.filled(n)?;
        }
        Ok(())
    }

    /// Wait for the thread, then hash and write the block filling; `file` is the descriptor the
    /// blob was opened with. Returns the hasher, every byte of the blob hashed.
    pub fn finish(mut self, file: &mut File) -> io::Result<Hasher> {
        let (mut hasher, written, mut refused) = self.join()?;
        written?;
        let tail = &self.block.bytes()[..self.block.filled];
        hasher.update(tail);
        let aligned = if refused {
            0
        } else {
            tail.len() / ALIGN * ALIGN
        };
        if aligned > 0 {
            write_block(file, &tail[..aligned], &mut refused)?;
        }
        set_direct(file, false)?;
        file.write_all(&tail[aligned..])?;
        Ok(hasher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Algorithm;
    use std::io::Read;

    /// Bytes written buffered up to the switch, then direct (through `write_all` and through
    /// `space`/`filled`), read back whole and hash as one stream, at every size around the
    /// blocks.
    #[test]
    fn what_is_written_reads_back_and_hashes_at_every_size() {
        let dir = tempfile::tempdir().unwrap();
        let head = DIRECT_AFTER as usize;
        for (size, by_space) in [
            (0, false),
            (1, true),
            (ALIGN - 1, false),
            (ALIGN + 7, true),
            (BLOCK - 1, false),
            (BLOCK, true),
            (BLOCK + 1, false),
            (3 * BLOCK + 4097, true),
            (5 * BLOCK, false),
        ] {
            let data: Vec<u8> = (0..head + size).map(|i| (i * 7 % 251) as u8).collect();
            let path = dir.path().join(format!("blob-{size}-{by_space}"));
            let mut file = File::create(&path).unwrap();
            file.write_all(&data[..head]).unwrap();
            let mut hasher = Hasher::new(Algorithm::Sha256);
            hasher.update(&data[..head]);
            set_direct(&file, true).expect("ext4 takes O_DIRECT");
            let mut sink = DirectSink::start(file.try_clone().unwrap(), hasher);
            for piece in data[head..].chunks(123_457) {
                if by_space {
                    let mut piece = piece;
                    while !piece.is_empty() {
                        let space = sink.space();
                        let n = space.len().min(piece.len());
                        space[..n].copy_from_slice(&piece[..n]);
                        sink.filled(n).unwrap();
                        piece = &piece[n..];
                    }
                } else {
                    sink.write_all(piece).unwrap();
                }
            }
            let digest = sink.finish(&mut file).unwrap().finish();
            drop(file);
            let mut back = Vec::new();
            File::open(&path).unwrap().read_to_end(&mut back).unwrap();
            assert!(back == data, "size {size}");
            assert_eq!(digest, crate::oci::Digest::sha256_of(&data), "size {size}");
        }
    }
}
