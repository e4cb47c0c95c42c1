//! What changed in a plain directory tree since a record of it was taken, as a layer tarball:
//! the diff of a root filesystem that is not an overlay (rootless without an overlay, RUN steps
//! under proot or chroot in an unprivileged container).
//!
//! The record ([`Baseline`]) is each entry's device, inode and ctime, as git's index keeps a
//! stat cache: nothing a process does to a file — writing it, chmod, chown, a new hard link —
//! leaves its ctime as it was, and userspace cannot set a ctime. After the walk that records
//! them, [`Baseline::record`] waits until the file system's clock is past the newest ctime seen,
//! so that a change made right after the record cannot carry the same ctime (the clock is
//! coarse: a few milliseconds), the "racy git" problem. Then an entry is changed when its
//! inode or ctime differs, new when the record lacks its path, deleted when the tree lacks a
//! recorded path (one whiteout for a deleted directory, none under it). A directory replaced
//! by another (a new inode) is written with an opaque marker, its entries all new. The walk
//! reads the whole tree, as `docker diff` does on a copy-based driver.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fd::BorrowedFd;
use rustix::fs::{FileType, Mode, OFlags, Stat};

use super::diff::{DiffReport, DiffWriter};
use super::walk::{Visit, walk};

fn ioerr(e: rustix::io::Errno) -> io::Error {
    io::Error::from(e)
}

/// How long [`Baseline::record`] waits at most for the clock to pass the newest ctime (a
/// file system whose ctimes are in the future, after a clock step, would otherwise hold it).
const CLOCK_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    dev: u64,
    ino: u64,
    ctime: (i64, i64),
    dir: bool,
}

impl Seen {
    fn of(st: &Stat) -> Seen {
        Seen {
            dev: st.st_dev,
            ino: st.st_ino,
            ctime: (st.st_ctime, st.st_ctime_nsec as i64),
            dir: FileType::from_raw_mode(st.st_mode) == FileType::Directory,
        }
    }
}

/// A tree's entries as they were: path (relative) → device, inode, ctime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Baseline {
    entries: HashMap<PathBuf, Seen>,
}

struct Recorder<'a> {
    entries: &'a mut HashMap<PathBuf, Seen>,
    newest: (i64, i64),
}

impl Visit for Recorder<'_> {
    fn entry(&mut self, _: BorrowedFd<'_>, _: &OsStr, st: &Stat, path: &Path) -> io::Result<bool> {
        let seen = Seen::of(st);
        self.newest = self.newest.max(seen.ctime);
        self.entries.insert(path.to_path_buf(), seen);
        Ok(seen.dir)
    }
}

impl Baseline {
    /// Record the tree under `root`, then wait until a change can no longer share a ctime
    /// with what was recorded (see the module doc).
    pub fn record(root: &Path) -> io::Result<Baseline> {
        let fd = open_dir(root)?;
        let mut entries = HashMap::new();
        let mut r = Recorder {
            entries: &mut entries,
            newest: (0, 0),
        };
        walk(&fd, &mut r)?;
        let newest = r.newest;
        let deadline = Instant::now() + CLOCK_WAIT;
        loop {
            if coarse_now() > newest || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(Baseline { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, path: &Path) -> bool {
        self.entries.contains_key(path)
    }

    /// Keep the record in a file (a container's, read again by `commit`): one line per entry,
    /// `dev ino ctime_sec ctime_nsec d|f hex(path)`.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut out = BufWriter::new(File::create(path)?);
        let mut paths: Vec<&PathBuf> = self.entries.keys().collect();
        paths.sort();
        for p in paths {
            let s = &self.entries[p];
            writeln!(
                out,
                "{} {} {} {} {} {}",
                s.dev,
                s.ino,
                s.ctime.0,
                s.ctime.1,
                if s.dir { 'd' } else { 'f' },
                hex::encode(p.as_os_str().as_bytes())
            )?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    }

    pub fn load(path: &Path) -> io::Result<Baseline> {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "a malformed baseline line");
        let mut entries = HashMap::new();
        for line in BufReader::new(File::open(path)?).lines() {
            let line = line?;
            let f: Vec<&str> = line.split(' ').collect();
            let [dev, ino, sec, nsec, kind, name] = f.as_slice() else {
                return Err(bad());
            };
            let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
            let name = hex::decode(name).map_err(|_| bad())?;
            entries.insert(
                PathBuf::from(OsStr::from_bytes(&name)),
                Seen {
                    dev: num(dev)? as u64,
                    ino: num(ino)? as u64,
                    ctime: (num(sec)?, num(nsec)?),
                    dir: *kind == "d",
                },
            );
        }
        Ok(Baseline { entries })
    }
}

/// The clock file systems stamp ctimes with (the coarse real-time clock).
fn coarse_now() -> (i64, i64) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into `ts`, which outlives the call.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    (ts.tv_sec, ts.tv_nsec)
}

fn open_dir(root: &Path) -> io::Result<rustix::fd::OwnedFd> {
    rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(ioerr)
}

struct Changes<'a, W: Write> {
    out: DiffWriter<W>,
    baseline: &'a Baseline,
    seen: HashSet<PathBuf>,
    /// Directories written with an opaque marker: nothing under them needs a whiteout.
    replaced: Vec<PathBuf>,
    ignore_new_empty: &'a [&'a Path],
}

impl<W: Write> Visit for Changes<'_, W> {
    fn entry(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        st: &Stat,
        path: &Path,
    ) -> io::Result<bool> {
        let now = Seen::of(st);
        let before = self.baseline.entries.get(path).copied();
        if before.is_some() {
            self.seen.insert(path.to_path_buf());
        }
        match before {
            Some(b) if (b.dev, b.ino) == (now.dev, now.ino) => {
                if b.ctime == now.ctime {
                    return Ok(now.dir);
                }
                self.out.append(dir, name, st, path)
            }
            Some(b) => {
                let descend = self.out.append(dir, name, st, path)?;
                if b.dir && now.dir {
                    self.out.opaque(path, st.st_mtime.max(0) as u64)?;
                    self.replaced.push(path.to_path_buf());
                }
                Ok(descend)
            }
            None => {
                if self.ignore_new_empty.contains(&path) && is_empty(dir, name, st)? {
                    return Ok(false);
                }
                self.out.append(dir, name, st, path)
            }
        }
    }
}

/// An empty regular file or directory (a mount point a runtime made).
fn is_empty(dir: BorrowedFd<'_>, name: &OsStr, st: &Stat) -> io::Result<bool> {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Ok(st.st_size == 0),
        FileType::Directory => {
            let fd = rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(ioerr)?;
            let mut entries = rustix::fs::Dir::read_from(&fd).map_err(ioerr)?;
            let mut n = 0;
            for e in entries.by_ref() {
                let e = e.map_err(ioerr)?;
                let b = e.file_name().to_bytes();
                if b != b"." && b != b".." {
                    n += 1;
                    break;
                }
            }
            Ok(n == 0)
        }
        _ => Ok(false),
    }
}

/// Write what changed under `root` since `baseline` as a tar stream to `out` (mtimes clamped
/// to `epoch` when given). New entries at the paths `ignore_new_empty` names that are empty
/// files or directories (mount points a runtime made) are left out.
pub fn write_changes<W: Write>(
    root: &Path,
    baseline: &Baseline,
    ignore_new_empty: &[&Path],
    out: W,
    epoch: Option<u64>,
) -> io::Result<(DiffReport, W)> {
    let fd = open_dir(root)?;
    let mut c = Changes {
        out: DiffWriter::new(out, epoch),
        baseline,
        seen: HashSet::new(),
        replaced: Vec::new(),
        ignore_new_empty,
    };
    walk(&fd, &mut c)?;
    let mut gone: Vec<&PathBuf> = baseline
        .entries
        .keys()
        .filter(|p| !c.seen.contains(*p))
        .collect();
    gone.sort();
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut last_dir: Option<&PathBuf> = None;
    for p in gone {
        // Under a deleted directory (its whiteout covers it) or a replaced one.
        if last_dir.is_some_and(|d| p.starts_with(d)) || c.replaced.iter().any(|r| p.starts_with(r))
        {
            continue;
        }
        c.out.whiteout(p, mtime)?;
        if baseline.entries[p].dir {
            last_dir = Some(p);
        }
    }
    c.out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn changes_since_the_record() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("etc/conf.d")).unwrap();
        fs::create_dir_all(r.join("var/cache/old")).unwrap();
        fs::create_dir_all(r.join("opt/tool")).unwrap();
        fs::write(r.join("etc/keep"), "same").unwrap();
        fs::write(r.join("etc/edit"), "before").unwrap();
        fs::write(r.join("etc/conf.d/a"), "a").unwrap();
        fs::write(r.join("var/cache/old/x"), "x").unwrap();
        fs::write(r.join("opt/tool/bin"), "old").unwrap();
        fs::write(r.join("gone"), "bye").unwrap();
        let baseline = Baseline::record(r).unwrap();
        assert_eq!(baseline.len(), 13);
        // Kept and read back: the same record.
        let saved_dir = tempfile::tempdir().unwrap();
        let saved = saved_dir.path().join("baseline");
        baseline.save(&saved).unwrap();
        assert_eq!(Baseline::load(&saved).unwrap(), baseline);
        fs::remove_file(&saved).unwrap();

        // Same size, same second: only the ctime tells.
        fs::write(r.join("etc/edit"), "after!").unwrap();
        fs::write(r.join("etc/new"), "n").unwrap();
        fs::remove_file(r.join("gone")).unwrap();
        fs::remove_dir_all(r.join("var/cache/old")).unwrap();
        fs::remove_dir_all(r.join("opt/tool")).unwrap();
        fs::create_dir(r.join("opt/tool")).unwrap();
        fs::write(r.join("opt/tool/bin2"), "new").unwrap();
        fs::create_dir(r.join("proc")).unwrap();
        let (report, out) =
            write_changes(r, &baseline, &[Path::new("proc")], Vec::new(), None).unwrap();
        let names = super::super::tarball::paths(&out);
        assert_eq!(
            names,
            [
                "etc",
                "etc/edit",
                "etc/new",
                "opt",
                "opt/tool",
                "opt/tool/.wh..wh..opq",
                "opt/tool/bin2",
                "var/cache",
                ".wh.gone",
                "var/cache/.wh.old",
            ]
        );
        assert_eq!(report.whiteouts, 2);
        assert_eq!(report.opaque_dirs, 1);
    }
}
