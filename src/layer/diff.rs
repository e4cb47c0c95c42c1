//! An overlayfs upper directory as a layer tarball: what a container changed, with overlayfs's
//! whiteouts (0/0 character devices, the opaque marker of the kernel's overlayfs — `trusted.` or,
//! mounted with `userxattr`, `user.overlay.opaque` — or of fuse-overlayfs) turned back into
//! OCI's (`.wh.NAME`, `.wh..wh..opq`). overlayfs's own xattrs stay out of the layer.
//!
//! The walk (`walk`: iterative, a few descriptors whatever the depth) goes through directory
//! descriptors with O_NOFOLLOW, so a symlink a container put in its upper directory is recorded
//! as a symlink and never followed to host files. Entries are sorted by name, so the same tree
//! gives the same tarball; the headers are [`super::tarball`]'s.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{FileType, Mode, OFlags, Stat};

use super::extract::{OPAQUE_WHITEOUT, WHITEOUT_PREFIX, is_opaque_marker, is_overlay_xattr};
use super::tarball::{Device, Meta, Style, TarWriter};
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

/// Write the changes recorded in `upper` as a tar stream to `out` (mtimes clamped to `epoch`
/// when given); returns `out` after the end-of-archive blocks. A path longer than a layer may
/// hold ([`MAX_PATH`]) is an error (carrying [`LayerError::PathTooLong`]).
pub fn write_diff<W: Write>(
    upper: &Path,
    out: W,
    epoch: Option<u64>,
) -> io::Result<(DiffReport, W)> {
    let root = rustix::fs::open(
        upper,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(ioerr)?;
    let mut w = DiffWriter::new(out, epoch);
    walk(&root, &mut w)?;
    w.finish()
}

/// The tar stream of a diff, entry by entry (an upper directory's walk, or `changes`'), in
/// [`Style::diff`].
pub(super) struct DiffWriter<W: Write> {
    tar: TarWriter<W>,
    /// (dev, ino) of files with several links → the first path written, for hardlinks.
    links: HashMap<(u64, u64), PathBuf>,
    /// Directories whose opaque marker is written (fuse-overlayfs marks a directory three
    /// ways: the xattr, a `.wh..wh..opq` file and a `.wh..opq` device; one marker goes out).
    opaque_dirs: HashSet<PathBuf>,
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

/// The xattrs a layer keeps: overlayfs's own (kernel, `userxattr`, fuse-overlayfs) stay behind.
fn kept(mut xattrs: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    xattrs.retain(|(k, _)| !is_overlay_xattr(k.as_bytes()));
    xattrs
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
    pub(super) fn new(out: W, epoch: Option<u64>) -> DiffWriter<W> {
        DiffWriter {
            tar: TarWriter::new(out, Style::diff(epoch)),
            links: HashMap::new(),
            opaque_dirs: HashSet::new(),
            report: DiffReport::default(),
        }
    }

    /// The end-of-archive blocks; what the diff held, and `out`.
    pub(super) fn finish(self) -> io::Result<(DiffReport, W)> {
        let out = self.tar.finish()?;
        Ok((self.report, out))
    }

    /// An OCI whiteout for `path` (relative to the tree's root).
    pub(super) fn whiteout(&mut self, path: &Path, mtime: u64) -> io::Result<()> {
        let rel = path.parent().unwrap_or(Path::new(""));
        let mut whname = OsString::from(WHITEOUT_PREFIX);
        whname.push(path.file_name().unwrap_or_default());
        let whpath = rel.join(whname);
        fits(&whpath)?;
        self.tar.whiteout(whpath, mtime)?;
        self.report.whiteouts += 1;
        Ok(())
    }

    /// The opaque marker of directory `path`: what lower layers hold in it is hidden.
    pub(super) fn opaque(&mut self, path: &Path, mtime: u64) -> io::Result<()> {
        if !self.opaque_dirs.insert(path.to_path_buf()) {
            return Ok(());
        }
        let marker = path.join(OPAQUE_WHITEOUT);
        fits(&marker)?;
        self.tar.whiteout(marker, mtime)?;
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
        let mtime = st.st_mtime.max(0) as u64;
        let meta = Meta {
            mode: st.st_mode,
            uid: st.st_uid as u64,
            gid: st.st_gid as u64,
            mtime,
        };
        match kind {
            // fuse-overlayfs's own opaque bookkeeping (next to its xattr): not a deletion.
            FileType::CharacterDevice if st.st_rdev == 0 && name == FUSE_OPAQUE_DEVICE => {
                return Ok(false);
            }
            FileType::CharacterDevice if st.st_rdev == 0 => {
                self.whiteout(&rel.join(name), mtime)?;
                return Ok(false);
            }
            // An opaque marker already in OCI's form (fuse-overlayfs writes one).
            FileType::RegularFile if name == OPAQUE_WHITEOUT => {
                self.opaque(rel, mtime)?;
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
                self.tar.xattrs(&kept(xattrs))?;
                self.tar.dir(&path, &meta)?;
                if opaque {
                    self.opaque(&path, mtime)?;
                }
                self.report.entries += 1;
                return Ok(true);
            }
            FileType::RegularFile => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key) {
                        self.tar.hardlink(&path, &meta, first)?;
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
                self.tar.xattrs(&kept(read_xattrs(&fd)?))?;
                // A file that changes size while being read would corrupt the stream: the
                // writer takes exactly the size recorded in the header (a file truncated
                // meanwhile ends in zeros).
                self.tar
                    .file(&path, &meta, st.st_size as u64, File::from(fd))?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, name, Vec::new()).map_err(ioerr)?;
                let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                self.tar.symlink(&path, &meta, &target)?;
            }
            FileType::Fifo => self.tar.fifo(&path, &meta)?,
            FileType::CharacterDevice | FileType::BlockDevice => {
                let device = if kind == FileType::CharacterDevice {
                    Device::Char
                } else {
                    Device::Block
                };
                self.tar.device(
                    &path,
                    &meta,
                    device,
                    rustix::fs::major(st.st_rdev),
                    rustix::fs::minor(st.st_rdev),
                )?;
            }
            // Sockets belong to running processes, not to images.
            _ => return Ok(false),
        }
        self.report.entries += 1;
        Ok(false)
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
