//! Running out of disk space: recognising a full file system (ENOSPC) or an exhausted quota
//! (EDQUOT) in an I/O error, and saying where it happened — the directory written to and the
//! mount point of its file system — so that it is never taken for corrupt input ("the archive
//! is truncated", "the layer is hostile"). Every store, layer and runtime write that can fill a
//! disk reports it through [`NoSpace`].

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Whether `e` says the file system is full or the user's quota is used up. Looks at the kind as
/// well as the errno: wrappers such as tempfile's keep the kind but not the raw code.
pub fn is_out_of_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        || matches!(
            e.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        )
}

fn is_quota(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EDQUOT) || e.kind() == io::ErrorKind::QuotaExceeded
}

/// The mount point of the file system holding `path` (or its nearest existing ancestor): the
/// highest ancestor on the same device.
pub fn mount_point(path: &Path) -> PathBuf {
    let mut here = path;
    let meta = loop {
        match std::fs::metadata(here) {
            Ok(m) => break m,
            Err(_) => match here.parent() {
                Some(p) => here = p,
                None => return PathBuf::from("/"),
            },
        }
    };
    let dev = meta.dev();
    let mut mount = here.to_path_buf();
    // Bounded by the path's depth: each step takes one component off.
    while let Some(parent) = mount.parent() {
        match std::fs::metadata(parent) {
            Ok(m) if m.dev() == dev => mount = parent.to_path_buf(),
            _ => break,
        }
    }
    mount
}

/// A write that failed because the file system is full or the quota is used up, with where: the
/// directory written to and the file system's mount point.
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

impl crate::hint::Hint for NoSpace {
    fn hint(&self) -> Option<String> {
        Some(NoSpace::HINT.into())
    }
}

/// A full disk, whichever write met it (the cause above it says where).
impl crate::hint::Hint for io::Error {
    fn hint(&self) -> Option<String> {
        is_out_of_space(self).then(|| NoSpace::HINT.into())
    }
}

impl NoSpace {
    pub const HINT: &str = "free space on that file system (`manifold prune` removes unused images, snapshots and temp files), or give `--root` a directory on a larger one";

    /// `e` unchanged, or, when it says the disk is full, an error of the same kind saying where
    /// (`path`: the directory written to, or a file in it).
    pub fn locate(e: io::Error, path: &Path) -> io::Error {
        if !is_out_of_space(&e) || e.get_ref().is_some_and(|i| i.is::<NoSpace>()) {
            return e;
        }
        let kind = if is_quota(&e) {
            io::ErrorKind::QuotaExceeded
        } else {
            io::ErrorKind::StorageFull
        };
        io::Error::new(
            kind,
            NoSpace::at(path, kind == io::ErrorKind::QuotaExceeded),
        )
    }

    /// `e` as a `NoSpace` saying where, when it says the disk is full.
    pub fn from_io(e: &io::Error, path: &Path) -> Option<NoSpace> {
        if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<NoSpace>()) {
            return Some(NoSpace::at(&inner.dir, inner.quota));
        }
        is_out_of_space(e).then(|| NoSpace::at(path, is_quota(e)))
    }

    /// The error for a full file system (or quota, when `quota`) under `path`.
    pub fn at(path: &Path, quota: bool) -> NoSpace {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let existing = path
            .ancestors()
            .find_map(|p| std::fs::metadata(p).ok().map(|m| (p, m)));
        let dir = match existing {
            Some((p, m)) if m.is_dir() => p.to_path_buf(),
            Some((p, _)) => p.parent().unwrap_or(p).to_path_buf(),
            None => path.clone(),
        };
        let errno = if quota { libc::EDQUOT } else { libc::ENOSPC };
        NoSpace {
            mount: mount_point(&dir),
            dir,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_enospc_and_edquot_by_code_and_by_kind() {
        assert!(is_out_of_space(&io::Error::from_raw_os_error(libc::ENOSPC)));
        assert!(is_out_of_space(&io::Error::from_raw_os_error(libc::EDQUOT)));
        // What tempfile hands back: the kind kept, the code lost behind a wrapper.
        let wrapped = io::Error::new(io::ErrorKind::StorageFull, "at path /x");
        assert!(is_out_of_space(&wrapped));
        assert!(!is_out_of_space(&io::Error::from_raw_os_error(libc::EIO)));
        assert!(!is_out_of_space(&io::Error::from(
            io::ErrorKind::UnexpectedEof
        )));
        let quota = NoSpace::from_io(&io::Error::from_raw_os_error(libc::EDQUOT), Path::new("/"));
        assert!(
            quota
                .unwrap()
                .to_string()
                .starts_with("disk quota exceeded")
        );
    }

    #[test]
    fn the_mount_point_of_a_path_under_root_is_an_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("not/yet/there");
        let m = mount_point(&missing);
        assert!(dir.path().starts_with(&m), "{}", m.display());
    }

    #[test]
    fn located_errors_keep_their_place_through_wrappers() {
        let dir = tempfile::tempdir().unwrap();
        let e = NoSpace::locate(io::Error::from_raw_os_error(libc::ENOSPC), dir.path());
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        let again = NoSpace::from_io(&e, Path::new("/elsewhere")).unwrap();
        assert_eq!(again.dir, dir.path());
        // Locating twice keeps the first place.
        let twice = NoSpace::locate(e, Path::new("/elsewhere"));
        assert!(
            twice
                .to_string()
                .contains(&dir.path().display().to_string())
        );
    }
}
