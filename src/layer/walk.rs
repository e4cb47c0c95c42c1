//! Walks over directory trees on the host whose shape a container or a layer chose (a
//! container's upper directory, snapshots, temp directories): iterative, so any depth fits in
//! the stack, with at most three descriptors open whatever the depth, and with the names still
//! to visit held under a memory budget.
//!
//! Only the directory being read is open. Going down opens the child (O_NOFOLLOW) and closes the
//! parent; going up opens `..` and checks it is the directory we came from (device and inode),
//! so a tree renamed under the walk is an error, never a way out of it. Each level keeps its
//! sorted list of names to visit while the lists together stay under [`NAME_BUDGET`]; past it,
//! the lists of levels further up are dropped and read again when the walk returns to them
//! (resuming after the name it left from). Memory is then the budget plus the path (one name
//! per level).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

/// Bytes of pending names the levels of a walk keep in memory together (each name counts its
/// length plus [`NAME_OVERHEAD`]). The current directory's list is always kept whole.
pub const NAME_BUDGET: usize = 16 << 20;
const NAME_OVERHEAD: usize = 32;

fn ioerr(e: rustix::io::Errno) -> io::Error {
    io::Error::from(e)
}

fn cost(name: &OsStr) -> usize {
    name.len() + NAME_OVERHEAD
}

/// What a walk calls back.
pub trait Visit {
    /// An entry of `dir`, in name order, with its lstat; `path` is relative to the walk's root
    /// and ends with `name`. For a directory, returning true walks into it.
    fn entry(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        st: &Stat,
        path: &Path,
    ) -> io::Result<bool>;

    /// After the contents of a directory the walk went into, with the directory holding it.
    fn leave(&mut self, _parent: BorrowedFd<'_>, _name: &OsStr, _path: &Path) -> io::Result<()> {
        Ok(())
    }
}

struct Level {
    dev: u64,
    ino: u64,
    /// Names still to visit, sorted; None when dropped to stay under the budget.
    names: Option<VecDeque<OsString>>,
    /// Bytes the names above count for.
    held: usize,
    /// The name visited last (the child the walk is in, for levels above the current one).
    last: Option<OsString>,
}

fn is_dir(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}

/// The names in a directory, sorted (without `.` and `..`).
pub(super) fn list(dir: &OwnedFd) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for e in rustix::fs::Dir::read_from(dir).map_err(ioerr)? {
        let e = e.map_err(ioerr)?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    names.sort();
    Ok(names)
}

fn open_dir(parent: impl AsFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Walk the tree under `root` (a directory), calling `visit` for every entry, depth first, in
/// name order. Entries that vanish while the walk runs are skipped.
pub fn walk(root: impl AsFd, visit: &mut impl Visit) -> io::Result<()> {
    walk_within(root, visit, NAME_BUDGET)
}

fn walk_within(root: impl AsFd, visit: &mut impl Visit, budget: usize) -> io::Result<()> {
    let mut current = open_dir(&root, OsStr::new(".")).map_err(ioerr)?;
    let st = rustix::fs::fstat(&current).map_err(ioerr)?;
    let mut stack = vec![Level {
        dev: st.st_dev,
        ino: st.st_ino,
        names: None,
        held: 0,
        last: None,
    }];
    let mut held = 0usize;
    let mut path = PathBuf::new();
    loop {
        let depth = stack.len() - 1;
        if stack[depth].names.is_none() {
            let mut names = list(&current)?;
            if let Some(last) = &stack[depth].last {
                let start = names.partition_point(|n| n <= last);
                names.drain(..start);
            }
            let bytes: usize = names.iter().map(|n| cost(n)).sum();
            held += bytes;
            stack[depth].names = Some(names.into());
            stack[depth].held = bytes;
            // Over budget: drop the lists of the levels the walk returns to last.
            for level in &mut stack[..depth] {
                if held <= budget {
                    break;
                }
                if level.names.take().is_some() {
                    held -= level.held;
                    level.held = 0;
                }
            }
        }
        let level = &mut stack[depth];
        let next = level.names.as_mut().and_then(VecDeque::pop_front);
        let Some(name) = next else {
            held -= level.held;
            if depth == 0 {
                return Ok(());
            }
            stack.pop();
            let parent = open_dir(&current, OsStr::new("..")).map_err(ioerr)?;
            let pst = rustix::fs::fstat(&parent).map_err(ioerr)?;
            let up = &stack[depth - 1];
            if (pst.st_dev, pst.st_ino) != (up.dev, up.ino) {
                return Err(io::Error::other(format!(
                    "`{}` was moved while it was read",
                    path.display()
                )));
            }
            current = parent;
            let name = up.last.clone().expect("the walk came down through a name");
            visit.leave(current.as_fd(), &name, &path)?;
            path.pop();
            continue;
        };
        level.held -= cost(&name);
        held -= cost(&name);
        let st = match rustix::fs::statat(&current, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => return Err(ioerr(e)),
        };
        path.push(&name);
        let descend = visit.entry(current.as_fd(), &name, &st, &path)?;
        if !(descend && is_dir(&st)) {
            path.pop();
            stack[depth].last = Some(name);
            continue;
        }
        let child = match open_dir(&current, &name) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => {
                path.pop();
                stack[depth].last = Some(name);
                continue;
            }
            Err(e) => return Err(ioerr(e)),
        };
        let cst = rustix::fs::fstat(&child).map_err(ioerr)?;
        stack[depth].last = Some(name);
        current = child;
        stack.push(Level {
            dev: cst.st_dev,
            ino: cst.st_ino,
            names: None,
            held: 0,
            last: None,
        });
    }
}

/// What a removal freed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// Entries removed (files, links, directories, the top one included).
    pub entries: u64,
    /// The sizes of the non-directories removed.
    pub bytes: u64,
}

impl std::ops::AddAssign for Removed {
    fn add_assign(&mut self, other: Removed) {
        self.entries += other.entries;
        self.bytes += other.bytes;
    }
}

struct Remover {
    dev: u64,
    /// The name of what is removed: errors name the entry from there.
    top: PathBuf,
    removed: Removed,
}

fn gone_ok(r: rustix::io::Result<()>) -> io::Result<()> {
    match r {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(ioerr(e)),
    }
}

impl Visit for Remover {
    fn entry(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        st: &Stat,
        path: &Path,
    ) -> io::Result<bool> {
        if is_dir(st) {
            if st.st_dev != self.dev {
                return Err(io::Error::other(format!(
                    "a file system is mounted on `{}`",
                    self.top.join(path).display()
                )));
            }
            return Ok(true);
        }
        gone_ok(rustix::fs::unlinkat(dir, name, AtFlags::empty()))
            .map_err(|e| in_path(e, &self.top.join(path)))?;
        self.removed.entries += 1;
        self.removed.bytes += st.st_size.max(0) as u64;
        Ok(false)
    }

    fn leave(&mut self, parent: BorrowedFd<'_>, name: &OsStr, path: &Path) -> io::Result<()> {
        gone_ok(rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR))
            .map_err(|e| in_path(e, &self.top.join(path)))?;
        self.removed.entries += 1;
        Ok(())
    }
}

/// An error about one entry, naming it (relative to what is being removed).
fn in_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("`{}`: {e}", path.display()))
}

/// Remove `name` in `parent` and, when it is a directory, everything under it, without following
/// symlinks or crossing into other file systems. Nothing there is not an error.
pub fn remove_all_at(parent: impl AsFd, name: &OsStr) -> io::Result<Removed> {
    remove_shown(parent, name, Path::new(name))
}

/// [`remove_all_at`], errors naming entries under `shown` (what the caller calls `name`).
fn remove_shown(parent: impl AsFd, name: &OsStr, shown: &Path) -> io::Result<Removed> {
    let st = match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(Removed::default()),
        Err(e) => return Err(ioerr(e)),
    };
    if !is_dir(&st) {
        gone_ok(rustix::fs::unlinkat(&parent, name, AtFlags::empty()))
            .map_err(|e| in_path(e, shown))?;
        return Ok(Removed {
            entries: 1,
            bytes: st.st_size.max(0) as u64,
        });
    }
    let dir = match open_dir(&parent, name) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(Removed::default()),
        Err(e) => return Err(ioerr(e)),
    };
    let mut remover = Remover {
        dev: st.st_dev,
        top: shown.to_path_buf(),
        removed: Removed::default(),
    };
    walk(&dir, &mut remover)?;
    drop(dir);
    gone_ok(rustix::fs::unlinkat(&parent, name, AtFlags::REMOVEDIR))
        .map_err(|e| in_path(e, shown))?;
    remover.removed.entries += 1;
    Ok(remover.removed)
}

/// [`remove_all_at`] by path; errors name entries by their full path.
pub fn remove_tree(path: &Path) -> io::Result<Removed> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        Some(_) => Path::new("."),
        None => return Err(io::Error::other("refusing to remove `/`")),
    };
    let Some(name) = path.file_name() else {
        return Err(io::Error::other(format!(
            "refusing to remove `{}`",
            path.display()
        )));
    };
    let dir = match open_dir(rustix::fs::CWD, parent.as_os_str()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(Removed::default()),
        Err(e) => return Err(ioerr(e)),
    };
    remove_shown(&dir, name, path)
}

/// Remove everything in the directory `dir` except the names `keep` lists (kept whole).
pub fn remove_contents(dir: &Path, keep: &[&str]) -> io::Result<Removed> {
    let fd = match open_dir(rustix::fs::CWD, dir.as_os_str()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(Removed::default()),
        Err(e) => return Err(ioerr(e)),
    };
    let mut total = Removed::default();
    for name in list(&fd)? {
        if keep.iter().any(|k| OsStr::new(k) == name) {
            continue;
        }
        total += remove_shown(&fd, &name, &dir.join(&name))?;
    }
    Ok(total)
}

/// A temp directory removed with [`remove_tree`] when dropped (unless kept): `tempfile`'s
/// `TempDir` removes with std's recursive `remove_dir_all`, which holds a descriptor per level.
#[derive(Debug)]
pub struct TempTree {
    path: Option<PathBuf>,
}

impl TempTree {
    /// A new directory in `dir`, named `prefix` and random characters.
    pub fn new_in(dir: &Path, prefix: &str) -> io::Result<TempTree> {
        let t = tempfile::Builder::new().prefix(prefix).tempdir_in(dir)?;
        Ok(TempTree {
            path: Some(t.keep()),
        })
    }

    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("only keep() takes the path")
    }

    /// Keep the directory (it was renamed into place, say).
    pub fn keep(mut self) -> PathBuf {
        self.path.take().expect("only keep() takes the path")
    }
}

impl Drop for TempTree {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = remove_tree(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A chain of `depth` directories `d/d/…` under `top`, made with descriptors (the path is
    /// too long for one syscall), with a file at each level.
    fn deep_chain(top: &Path, depth: usize) {
        let mut fd = open_dir(rustix::fs::CWD, top.as_os_str()).unwrap();
        for i in 0..depth {
            rustix::fs::mkdirat(&fd, "d", Mode::from_raw_mode(0o755)).unwrap();
            let f = rustix::fs::openat(
                &fd,
                format!("f{}", i % 3),
                OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .unwrap();
            rustix::io::write(&f, b"xy").unwrap();
            fd = open_dir(&fd, OsStr::new("d")).unwrap();
        }
    }

    struct Collect(Vec<String>, usize);
    impl Visit for Collect {
        fn entry(
            &mut self,
            _dir: BorrowedFd<'_>,
            _name: &OsStr,
            st: &Stat,
            path: &Path,
        ) -> io::Result<bool> {
            if self.0.len() < 1000 {
                self.0.push(path.display().to_string());
            }
            self.1 = self.1.max(path.components().count());
            Ok(is_dir(st))
        }
    }

    #[test]
    fn walks_in_name_order_depth_first() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for d in ["b/y", "a", "b/x/z"] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        fs::write(r.join("b/x/file"), "1").unwrap();
        fs::write(r.join("c"), "1").unwrap();
        std::os::unix::fs::symlink("/", r.join("b/link")).unwrap();
        let root = open_dir(rustix::fs::CWD, r.as_os_str()).unwrap();
        let mut c = Collect(Vec::new(), 0);
        walk(&root, &mut c).unwrap();
        assert_eq!(
            c.0,
            ["a", "b", "b/link", "b/x", "b/x/file", "b/x/z", "b/y", "c"]
        );
    }

    #[test]
    fn deep_trees_walk_and_go_with_few_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("top")).unwrap();
        deep_chain(&dir.path().join("top"), 1500);
        let root = open_dir(rustix::fs::CWD, dir.path().join("top").as_os_str()).unwrap();
        let mut c = Collect(Vec::new(), 0);
        walk(&root, &mut c).unwrap();
        assert_eq!(c.1, 1500, "the deepest file");
        drop(root);
        let removed = remove_tree(&dir.path().join("top")).unwrap();
        assert_eq!(removed.entries, 1500 * 2 + 1);
        assert_eq!(removed.bytes, 1500 * 2);
        assert!(!dir.path().join("top").exists());
        assert_eq!(
            remove_tree(&dir.path().join("top")).unwrap(),
            Removed::default()
        );
    }

    #[test]
    fn lists_over_the_budget_are_read_again() {
        // Wide levels on a chain: with a budget of a few names, every level above the current
        // one loses its list and reads it again on return, resuming where it left.
        let dir = tempfile::tempdir().unwrap();
        let mut p = dir.path().join("top");
        for _ in 0..4 {
            fs::create_dir_all(&p).unwrap();
            for i in 0..20 {
                fs::write(p.join(format!("f{i:02}")), "").unwrap();
            }
            fs::create_dir(p.join("e")).unwrap();
            p = p.join("m");
        }
        let root = open_dir(rustix::fs::CWD, dir.path().join("top").as_os_str()).unwrap();
        let mut all = Collect(Vec::new(), 0);
        walk(&root, &mut all).unwrap();
        let mut tight = Collect(Vec::new(), 0);
        walk_within(&root, &mut tight, 3 * (3 + NAME_OVERHEAD)).unwrap();
        assert_eq!(all.0.len(), 4 * 22 - 1);
        assert_eq!(tight.0, all.0);
    }

    #[test]
    fn removal_keeps_what_it_is_told_to() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("upper/a")).unwrap();
        fs::write(r.join("upper/a/f"), "abc").unwrap();
        fs::write(r.join("record.json"), "{}").unwrap();
        std::os::unix::fs::symlink(r.join("record.json"), r.join("link")).unwrap();
        let removed = remove_contents(r, &["record.json"]).unwrap();
        assert_eq!(removed.entries, 4);
        let left: Vec<_> = fs::read_dir(r)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["record.json"]);
    }
}
