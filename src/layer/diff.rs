//! An overlayfs upper directory as a layer tarball: what a container changed, with overlayfs's
//! whiteouts (0/0 character devices, the opaque marker of the kernel's overlayfs — `trusted.` or,
//! mounted with `userxattr`, `user.overlay.opaque` — or of fuse-overlayfs) turned back into
//! OCI's (`.wh.NAME`, `.wh..wh..opq`). overlayfs's own xattrs stay out of the layer.
//!
//! The walk (`walk`: iterative, a few descriptors whatever the depth) goes through directory
//! descriptors with O_NOFOLLOW, so a symlink a container put in its upper directory is recorded
//! as a symlink and never followed to host files. Entries are sorted by name, so the same tree
//! gives the same tarball.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{FileType, Mode, OFlags, Stat};

use super::extract::{OPAQUE_WHITEOUT, WHITEOUT_PREFIX, is_opaque_marker, is_overlay_xattr};
use super::walk::{Visit, walk};
use super::{LayerError, MAX_PATH};

/// The 0/0 device fuse-overlayfs puts in a directory it made opaque.
const FUSE_OPAQUE_DEVICE: &str = ".wh..opq";

fn ioerr(e: rustix::io::Errno) -> io::Error {
    io::Error::from(e)
}

/// What a diff holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DiffReport {
    pub entries: u64,
    pub whiteouts: u64,
    pub opaque_dirs: u64,
}

/// Write the changes recorded in `upper` as a tar stream to `out`; returns `out` after the
/// end-of-archive blocks. A path longer than a layer may hold ([`MAX_PATH`]) is an error
/// (carrying [`LayerError::PathTooLong`]).
pub fn write_diff<W: Write>(upper: &Path, out: W) -> io::Result<(DiffReport, W)> {
    let root = rustix::fs::open(
        upper,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(ioerr)?;
    let mut w = DiffWriter::new(out);
    walk(&root, &mut w)?;
    w.finish()
}

/// The tar stream of a diff, entry by entry (an upper directory's walk, or `changes`').
pub(super) struct DiffWriter<W: Write> {
    tar: tar::Builder<W>,
    /// (dev, ino) of files with several links → the first path written, for hardlinks.
    links: HashMap<(u64, u64), PathBuf>,
    /// Directories whose opaque marker is written (fuse-overlayfs marks a directory three
    /// ways: the xattr, a `.wh..wh..opq` file and a `.wh..opq` device; one marker goes out).
    opaque_dirs: std::collections::HashSet<PathBuf>,
    report: DiffReport,
}

/// Refuse a path the layer could not be unpacked with.
fn fits(path: &Path) -> io::Result<()> {
    let len = path.as_os_str().len();
    if len <= MAX_PATH {
        return Ok(());
    }
    let shown: String = path.to_string_lossy().chars().take(64).collect();
    Err(io::Error::new(
        io::ErrorKind::InvalidFilename,
        LayerError::PathTooLong { path: shown, len },
    ))
}

impl<W: Write> Visit for DiffWriter<W> {
    fn entry(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        st: &Stat,
        path: &Path,
    ) -> io::Result<bool> {
        self.append(dir, name, st, path)
    }
}

impl<W: Write> DiffWriter<W> {
    pub(super) fn new(out: W) -> DiffWriter<W> {
        let mut tar = tar::Builder::new(out);
        tar.mode(tar::HeaderMode::Complete);
        DiffWriter {
            tar,
            links: HashMap::new(),
            opaque_dirs: Default::default(),
            report: DiffReport::default(),
        }
    }

    /// The end-of-archive blocks; what the diff held, and `out`.
    pub(super) fn finish(self) -> io::Result<(DiffReport, W)> {
        let report = self.report;
        let out = self.tar.into_inner()?;
        Ok((report, out))
    }

    /// An OCI whiteout for `path` (relative to the tree's root).
    pub(super) fn whiteout(&mut self, path: &Path, mtime: u64) -> io::Result<()> {
        let rel = path.parent().unwrap_or(Path::new(""));
        let mut whname = OsString::from(WHITEOUT_PREFIX);
        whname.push(path.file_name().unwrap_or_default());
        let whpath = rel.join(whname);
        fits(&whpath)?;
        let mut wh = tar::Header::new_gnu();
        wh.set_entry_type(tar::EntryType::Regular);
        wh.set_mode(0o644);
        wh.set_mtime(mtime);
        wh.set_size(0);
        self.tar.append_data(&mut wh, whpath, io::empty())?;
        self.report.whiteouts += 1;
        Ok(())
    }

    /// The opaque marker of directory `path`: what lower layers hold in it is hidden.
    pub(super) fn opaque(&mut self, path: &Path, mtime: u64) -> io::Result<()> {
        if !self.opaque_dirs.insert(path.to_path_buf()) {
            return Ok(());
        }
        let mut wh = tar::Header::new_gnu();
        wh.set_entry_type(tar::EntryType::Regular);
        wh.set_mode(0o644);
        wh.set_mtime(mtime);
        wh.set_size(0);
        let marker = path.join(OPAQUE_WHITEOUT);
        fits(&marker)?;
        self.tar.append_data(&mut wh, marker, io::empty())?;
        self.report.opaque_dirs += 1;
        Ok(())
    }

    /// Write the entry `name` of `dir` (at `path`, with its lstat `st`), overlayfs's whiteouts
    /// and opaque markers in OCI's form; true for a directory (whose entries come next).
    pub(super) fn append(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        st: &Stat,
        path: &Path,
    ) -> io::Result<bool> {
        fits(path)?;
        let rel = path.parent().unwrap_or(Path::new(""));
        let path = path.to_path_buf();
        let kind = FileType::from_raw_mode(st.st_mode);
        let mut header = tar::Header::new_gnu();
        header.set_uid(st.st_uid as u64);
        header.set_gid(st.st_gid as u64);
        header.set_mode(st.st_mode & 0o7777);
        header.set_mtime(st.st_mtime.max(0) as u64);
        header.set_size(0);
        match kind {
            // fuse-overlayfs's own opaque bookkeeping (next to its xattr): not a deletion.
            FileType::CharacterDevice if st.st_rdev == 0 && name == FUSE_OPAQUE_DEVICE => {
                return Ok(false);
            }
            FileType::CharacterDevice if st.st_rdev == 0 => {
                self.whiteout(&rel.join(name), st.st_mtime.max(0) as u64)?;
                return Ok(false);
            }
            // An opaque marker already in OCI's form (fuse-overlayfs writes one).
            FileType::RegularFile if name == OPAQUE_WHITEOUT => {
                self.opaque(rel, st.st_mtime.max(0) as u64)?;
                return Ok(false);
            }
            FileType::Directory => {
                let sub = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(ioerr)?;
                let xattrs = read_xattrs(&sub)?;
                drop(sub);
                let opaque = xattrs
                    .iter()
                    .any(|(k, v)| is_opaque_marker(k.as_bytes(), v));
                self.pax(&xattrs)?;
                header.set_entry_type(tar::EntryType::Directory);
                self.tar.append_data(&mut header, &path, io::empty())?;
                if opaque {
                    self.opaque(&path, st.st_mtime.max(0) as u64)?;
                }
                self.report.entries += 1;
                return Ok(true);
            }
            FileType::RegularFile => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key) {
                        header.set_entry_type(tar::EntryType::Link);
                        self.tar.append_link(&mut header, &path, first)?;
                        self.report.entries += 1;
                        return Ok(false);
                    }
                    self.links.insert(key, path.clone());
                }
                let fd = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(ioerr)?;
                let xattrs = read_xattrs(&fd)?;
                self.pax(&xattrs)?;
                let file = File::from(fd);
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(st.st_size as u64);
                // A file that changes size while being read would corrupt the stream:
                // take exactly the size recorded in the header.
                let reader = io::Read::take(file, st.st_size as u64);
                let mut reader = PadTo {
                    inner: reader,
                    remaining: st.st_size as u64,
                };
                self.tar.append_data(&mut header, &path, &mut reader)?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, name, Vec::new()).map_err(ioerr)?;
                header.set_entry_type(tar::EntryType::Symlink);
                let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                self.tar.append_link(&mut header, &path, &target)?;
            }
            FileType::Fifo => {
                header.set_entry_type(tar::EntryType::Fifo);
                self.tar.append_data(&mut header, &path, io::empty())?;
            }
            FileType::CharacterDevice | FileType::BlockDevice => {
                header.set_entry_type(if kind == FileType::CharacterDevice {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                });
                header.set_device_major(rustix::fs::major(st.st_rdev))?;
                header.set_device_minor(rustix::fs::minor(st.st_rdev))?;
                self.tar.append_data(&mut header, &path, io::empty())?;
            }
            // Sockets belong to running processes, not to images.
            _ => return Ok(false),
        }
        self.report.entries += 1;
        Ok(false)
    }
}

impl<W: Write> DiffWriter<W> {
    fn pax(&mut self, xattrs: &[(String, Vec<u8>)]) -> io::Result<()> {
        let kept: Vec<(String, &[u8])> = xattrs
            .iter()
            .filter(|(k, _)| !is_overlay_xattr(k.as_bytes()))
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
            .collect();
        if kept.is_empty() {
            return Ok(());
        }
        self.tar
            .append_pax_extensions(kept.iter().map(|(k, v)| (k.as_str(), *v)))
    }
}

/// Zero-fills a reader that ends early (a file truncated while it was read).
struct PadTo<R> {
    inner: R,
    remaining: u64,
}

impl<R: io::Read> io::Read for PadTo<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.remaining as usize);
        let n = match self.inner.read(&mut buf[..want])? {
            0 => {
                buf[..want].fill(0);
                want
            }
            n => n,
        };
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn read_xattrs(fd: &impl AsFd) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::flistxattr(fd, &mut names[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Err(rustix::io::Errno::RANGE) => {
            let size = rustix::fs::flistxattr(fd, &mut [0u8; 0][..]).map_err(ioerr)?;
            names = vec![0u8; size];
            rustix::fs::flistxattr(fd, &mut names[..]).map_err(ioerr)?
        }
        Err(e) => return Err(ioerr(e)),
    };
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        let mut value = vec![0u8; 256];
        let len = match rustix::fs::fgetxattr(fd, name, &mut value[..]) {
            Ok(len) => len,
            Err(rustix::io::Errno::RANGE) => {
                let size = rustix::fs::fgetxattr(fd, name, &mut [0u8; 0][..]).map_err(ioerr)?;
                value = vec![0u8; size];
                rustix::fs::fgetxattr(fd, name, &mut value[..]).map_err(ioerr)?
            }
            Err(rustix::io::Errno::NODATA) => continue,
            Err(e) => return Err(ioerr(e)),
        };
        value.truncate(len);
        out.push((name.to_string(), value));
    }
    out.sort();
    Ok(out)
}
