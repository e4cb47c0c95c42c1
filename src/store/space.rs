//! Running out of space: recognising a full file system (ENOSPC) or an exhausted quota (EDQUOT)
//! in an I/O error, and saying where it happened — the directory written to and the mount point
//! of its file system — instead of letting it pass for corrupt input.

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

/// What ran out, in words: `no space left on device` or `disk quota exceeded`.
pub fn out_of_space_reason(e: &io::Error) -> &'static str {
    if e.raw_os_error() == Some(libc::EDQUOT) || e.kind() == io::ErrorKind::QuotaExceeded {
        "disk quota exceeded"
    } else {
        "no space left on device"
    }
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
        assert_eq!(
            out_of_space_reason(&io::Error::from_raw_os_error(libc::EDQUOT)),
            "disk quota exceeded"
        );
        assert_eq!(out_of_space_reason(&wrapped), "no space left on device");
    }

    #[test]
    fn the_mount_point_of_a_path_under_root_is_an_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("not/yet/there");
        let m = mount_point(&missing);
        assert!(dir.path().starts_with(&m), "{}", m.display());
        assert_eq!(mount_point(Path::new("/")), PathBuf::from("/"));
    }
}
