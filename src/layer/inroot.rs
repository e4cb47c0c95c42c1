//! Path resolution that never leaves a root directory: openat2(2) with RESOLVE_IN_ROOT, so an
//! absolute symlink, `..` or a symlink loop inside the tree resolves as if the tree were `/`
//! (as it will be inside the container), and never reaches the host's files.
//!
//! Used to unpack layers into snapshots, and by `run` to read /etc/passwd, create the working
//! directory and look up the command inside a container's root.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

/// Symlinks followed while creating missing parents before giving up (the kernel's own limit).
const MAX_LINKS: u32 = 40;

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// A directory treated as `/`.
#[derive(Debug)]
pub struct InRoot {
    fd: OwnedFd,
    path: PathBuf,
}

/// A path from an archive or a user as components under the root, cleaned by
/// [`crate::lexical::components`].
pub fn clean(path: &[u8]) -> Vec<OsString> {
    crate::lexical::components(path)
        .into_iter()
        .map(|c| OsString::from_vec(c.to_vec()))
        .collect()
}

/// Components joined back into a relative path (`.` for none).
pub fn join(components: &[impl AsRef<OsStr>]) -> PathBuf {
    if components.is_empty() {
        return PathBuf::from(".");
    }
    let mut p = PathBuf::new();
    for c in components {
        p.push(c.as_ref());
    }
    p
}

fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from(e)
}

impl InRoot {
    /// Open `path` (a directory) as the root.
    pub fn open(path: &Path) -> io::Result<InRoot> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        Ok(InRoot {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// openat2 under the root. `path` may be absolute (it is taken from the root) and may hold
    /// symlinks and `..`; none of them leads out.
    pub fn open_at(&self, path: &Path, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        let path = if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path
        };
        rustix::fs::openat2(&self.fd, path, flags | OFlags::CLOEXEC, mode, RESOLVE).map_err(errno)
    }

    /// An O_PATH descriptor of the directory `path`, following symlinks within the root.
    pub fn open_dir(&self, path: &Path) -> io::Result<OwnedFd> {
        self.open_at(path, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
    }

    /// Like [`InRoot::open_dir`], creating missing directories (mode 0755, owned by the caller)
    /// as `mkdir -p` would inside the root. A dangling symlink on the way is followed, and the
    /// directory it names created, within the root.
    pub fn create_dir_all(&self, path: &Path) -> io::Result<OwnedFd> {
        let comps: Vec<OsString> = path
            .as_os_str()
            .as_bytes()
            .split(|b| *b == b'/')
            .filter(|c| !c.is_empty())
            .map(|c| OsString::from_vec(c.to_vec()))
            .collect();
        self.create_components(&comps, 0)
    }

    fn create_components(&self, comps: &[OsString], links: u32) -> io::Result<OwnedFd> {
        match self.open_dir(&join(comps)) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            other => return other,
        }
        let mut current = self.open_dir(Path::new("."))?;
        for i in 0..comps.len() {
            match self.open_dir(&join(&comps[..=i])) {
                Ok(fd) => {
                    current = fd;
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
            // comps[..i] resolved to `current`; comps[i] is missing, or a dangling symlink.
            let name = &comps[i];
            match rustix::fs::statat(&current, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                    if links >= MAX_LINKS {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    let target = rustix::fs::readlinkat(&current, name.as_os_str(), Vec::new())
                        .map_err(errno)?;
                    let target = target.as_bytes();
                    // Where the link points, as a path from the root: absolute targets are
                    // already; relative ones continue from the directory holding the link
                    // (its physical path, so that `..` in the target means what it means to
                    // the kernel).
                    let mut next: Vec<OsString> = if target.starts_with(b"/") {
                        Vec::new()
                    } else {
                        self.physical_components(&current)?
                    };
                    next.extend(
                        target
                            .split(|b| *b == b'/')
                            .filter(|c| !c.is_empty())
                            .map(|c| OsString::from_vec(c.to_vec())),
                    );
                    next.extend(comps[i + 1..].iter().cloned());
                    return self.create_components(&next, links + 1);
                }
                Ok(_) => {
                    // It exists but is no directory: mkdir -p fails the same way.
                    return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
                }
                Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(errno(e)),
            }
            match rustix::fs::mkdirat(&current, name.as_os_str(), Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(errno(e)),
            }
            current = rustix::fs::openat(
                &current,
                name.as_os_str(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(errno)?;
        }
        Ok(current)
    }

    /// The components of a directory inside the root, from the root, without symlinks.
    fn physical_components(&self, dir: &OwnedFd) -> io::Result<Vec<OsString>> {
        let me = fd_path(self.fd.as_fd())?;
        let it = fd_path(dir.as_fd())?;
        let rel = it.strip_prefix(&me).map_err(|_| {
            io::Error::other(format!(
                "{} resolved outside {}",
                it.display(),
                me.display()
            ))
        })?;
        Ok(rel.iter().map(OsStr::to_os_string).collect())
    }

    /// Read a whole (small) regular file at `path` inside the root, following symlinks within
    /// it. Anything else is refused (`InvalidInput`) without blocking: a FIFO is opened
    /// non-blocking (a plain open would wait for a writer forever), a device or a directory is
    /// never read.
    pub fn read(&self, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let fd = self.open_at(
            path,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
            Mode::empty(),
        )?;
        let kind = FileType::from_raw_mode(rustix::fs::fstat(&fd).map_err(errno)?.st_mode);
        if kind != FileType::RegularFile {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file ({kind:?})", path.display()),
            ));
        }
        let mut f = std::fs::File::from(fd);
        let mut out = Vec::new();
        (&mut f).take(limit).read_to_end(&mut out)?;
        Ok(out)
    }

    /// stat(2) of `path` inside the root, following symlinks within it.
    pub fn stat(&self, path: &Path) -> io::Result<rustix::fs::Stat> {
        let fd = self.open_at(path, OFlags::PATH, Mode::empty())?;
        rustix::fs::fstat(&fd).map_err(errno)
    }
}

/// The path the kernel has for an open descriptor.
pub fn fd_path(fd: BorrowedFd<'_>) -> io::Result<PathBuf> {
    std::fs::read_link(format!(
        "/proc/self/fd/{}",
        rustix::fd::AsRawFd::as_raw_fd(&fd)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn read_takes_regular_files_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\n").unwrap();
        symlink("/etc/group", dir.path().join("etc/group-link")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join("etc/passwd"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let root = InRoot::open(dir.path()).unwrap();
        assert_eq!(
            root.read(Path::new("/etc/group"), 100).unwrap(),
            b"root:x:0:\n"
        );
        assert_eq!(
            root.read(Path::new("/etc/group-link"), 100).unwrap(),
            b"root:x:0:\n"
        );
        // A FIFO with no writer: refused at once instead of waiting for one.
        let e = root.read(Path::new("/etc/passwd"), 100).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let e = root.read(Path::new("/etc"), 100).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn join_of_no_components_is_dot() {
        let s = |p: &str| join(&clean(p.as_bytes())).to_string_lossy().into_owned();
        assert_eq!(s("a/b/../../../c"), "c");
        assert_eq!(s("./"), ".");
        assert_eq!(s(""), ".");
    }

    #[test]
    fn absolute_symlinks_resolve_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "inside\n").unwrap();
        symlink("/etc", root.join("link")).unwrap();
        symlink("../../../../etc/passwd", root.join("up")).unwrap();
        let r = InRoot::open(&root).unwrap();
        assert_eq!(r.read(Path::new("link/passwd"), 100).unwrap(), b"inside\n");
        assert_eq!(r.read(Path::new("/up"), 100).unwrap(), b"inside\n");
        assert_eq!(
            r.read(Path::new("../../etc/passwd"), 100).unwrap(),
            b"inside\n"
        );
    }

    #[test]
    fn loops_fail() {
        let dir = tempfile::tempdir().unwrap();
        symlink("b", dir.path().join("a")).unwrap();
        symlink("a", dir.path().join("b")).unwrap();
        let r = InRoot::open(dir.path()).unwrap();
        let e = r.open_dir(Path::new("a")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        let e = r.create_dir_all(Path::new("a/x")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn create_dir_all_follows_dangling_links_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        symlink("/etc/deep", root.join("abs")).unwrap();
        symlink("../rel-target", root.join("sub/rel")).unwrap();
        let r = InRoot::open(&root).unwrap();
        r.create_dir_all(Path::new("abs/x")).unwrap();
        assert!(root.join("etc/deep/x").is_dir());
        r.create_dir_all(Path::new("sub/rel/y")).unwrap();
        assert!(root.join("rel-target/y").is_dir());
        r.create_dir_all(Path::new("plain/a/b")).unwrap();
        assert!(root.join("plain/a/b").is_dir());
        std::fs::write(root.join("file"), "").unwrap();
        let e = r.create_dir_all(Path::new("file/x")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR));
    }
}
