//! Who may reach what a store holds: its owner alone. The one place that decides the modes of
//! the store's own directories and files, and that repairs a store an earlier version made
//! reachable to everyone (directories 0755, files 0644).
//!
//! - The root and every directory manifold makes in it are 0700, as podman's storage root is.
//!   Not docker's 0710: docker lets its remapped-root group traverse the root to per-user trees,
//!   and nothing here needs that. runc mounts the rootfs, the bundle's files and cache mounts as
//!   root before the container's process starts, overlayfs checks its layers with the
//!   credentials of whoever mounted them, and nothing is reached through the store's path once
//!   the container runs; skopeo, umoci and oci-image-tool read `<root>/images` as root. The
//!   rootless mode to come has the user own the store, which 0700 leaves to them.
//! - Every file manifold writes for itself is 0600, blobs included: docker's image store is
//!   root's alone too, and a blob of a private image is no one else's business.
//! - What a container sees keeps the modes the container expects (image contents, a
//!   container's upper directory, a cache mount's directory with its `mode`/`uid`/`gid`, the
//!   `hosts`/`resolv.conf` a container user reads): those are unreachable from the host
//!   because the private directories above them are.
//!
//! Repair is cheap because a private directory is taken as proof that what is below it was
//! repaired: a store of this version costs one `stat` per directory checked. A directory is
//! repaired bottom-up (its files, then itself), so an interrupted repair resumes at the next open.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::{Result, StoreError};

/// The mode of every directory the store makes for itself.
pub const DIR_MODE: u32 = 0o700;
/// The mode of every file the store writes for itself.
pub const FILE_MODE: u32 = 0o600;

/// Nobody but the owner can reach it (the mode has no group or other bits).
fn is_private(mode: u32) -> bool {
    mode & 0o077 == 0
}

/// Create `dir` and whatever parents it lacks, each private. An existing directory keeps its
/// mode: changing modes is [`repair_dir`]'s job.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Open `path` for writing from the start, created private, or made private when it existed.
pub fn create_file(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    // The mode given to open applies only to a file it creates.
    f.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(f)
}

/// Write `bytes` to `path` in place (not atomically), the file private.
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    create_file(path)?.write_all(bytes)
}

/// Open (create) a lock file, private so that no other user can hold the lock and stall every
/// manifold process on the store (`flock` needs nothing but a read-only descriptor).
pub fn open_lock(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
}

/// A private temp file in `dir`, to be renamed into place once written.
pub fn temp_file(dir: &Path, prefix: &str) -> io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(prefix)
        .permissions(Permissions::from_mode(FILE_MODE))
        .tempfile_in(dir)
}

fn chmod(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, Permissions::from_mode(mode))
        .map_err(StoreError::io("cannot make private", path))
}

/// The metadata of `path` without following a link; None when it does not exist.
fn lstat(path: &Path) -> Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("cannot inspect", path)(e)),
    }
}

/// Make a regular file of the store private. Returns whether its mode changed.
pub fn repair_file(path: &Path) -> Result<bool> {
    match lstat(path)? {
        Some(m) if m.is_file() && !is_private(m.mode()) => {
            chmod(path, FILE_MODE)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Make the directory `dir` private, and first, when `files` is set, the regular files directly
/// in it (store files, never what a container sees). A directory already private is left alone,
/// contents included. Returns whether it was repaired.
pub fn repair_dir(dir: &Path, files: bool) -> Result<bool> {
    if !needs_repair(dir)? {
        return Ok(false);
    }
    if files {
        for entry in fs::read_dir(dir).map_err(StoreError::io("cannot list", dir))? {
            let entry = entry.map_err(StoreError::io("cannot list", dir))?;
            let kind = entry
                .file_type()
                .map_err(StoreError::io("cannot inspect", &entry.path()))?;
            if kind.is_file() {
                repair_file(&entry.path())?;
            }
        }
    }
    chmod(dir, DIR_MODE)?;
    Ok(true)
}

/// Whether `dir` is a directory others can reach.
pub fn needs_repair(dir: &Path) -> Result<bool> {
    Ok(lstat(dir)?.is_some_and(|m| m.is_dir() && !is_private(m.mode())))
}

/// [`repair_dir`] over a tree that holds nothing but store files (`images/`, `meta-v1/`),
/// bottom-up. The trees are a few levels deep; a private directory is not entered.
pub fn repair_tree(dir: &Path) -> Result<bool> {
    if !needs_repair(dir)? {
        return Ok(false);
    }
    // Directories to visit, with whether their children were already pushed: a post-order
    // walk without recursion.
    let mut stack = vec![(dir.to_path_buf(), false)];
    while let Some((d, expanded)) = stack.pop() {
        if expanded {
            repair_dir(&d, true)?;
            continue;
        }
        stack.push((d.clone(), true));
        for entry in fs::read_dir(&d).map_err(StoreError::io("cannot list", &d))? {
            let entry = entry.map_err(StoreError::io("cannot list", &d))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(StoreError::io("cannot inspect", &path))?;
            if kind.is_dir() && needs_repair(&path)? {
                stack.push((path, false));
            }
        }
    }
    Ok(true)
}

/// Create the store's root private, or make an existing one private. An existing directory is
/// only changed when it is manifold's (empty, or holding nothing but a store's directories):
/// `--root` pointed at a home or a shared directory must not take it away from its users.
pub fn create_root(root: &Path) -> Result<()> {
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(StoreError::io("cannot create", parent))?;
    }
    match DirBuilder::new().mode(DIR_MODE).create(root) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(StoreError::io("cannot create", root)(e)),
    }
    if !needs_repair(root)? {
        return Ok(());
    }
    if !holds_only_a_store(root)? {
        return Err(StoreError::ForeignRoot {
            path: root.to_path_buf(),
        });
    }
    chmod(root, DIR_MODE)
}

fn holds_only_a_store(root: &Path) -> Result<bool> {
    if root.join("images").join("oci-layout").is_file() {
        return Ok(true);
    }
    for entry in fs::read_dir(root).map_err(StoreError::io("cannot list", root))? {
        let entry = entry.map_err(StoreError::io("cannot list", root))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name != "images" && !is_versioned(&name) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A store directory's name: `<name>-v<N>` (`tmp-v1`, `containers-v1`).
fn is_versioned(name: &str) -> bool {
    name.rsplit_once("-v").is_some_and(|(base, n)| {
        !base.is_empty()
            && base.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    fn chmod_to(p: &Path, m: u32) {
        fs::set_permissions(p, Permissions::from_mode(m)).unwrap();
    }

    #[test]
    fn created_dirs_and_files_are_private() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b");
        create_dir(&d).unwrap();
        assert_eq!((mode(&t.path().join("a")), mode(&d)), (0o700, 0o700));
        let f = d.join("f");
        fs::write(&f, "old").unwrap();
        chmod_to(&f, 0o644);
        write_file(&f, b"new").unwrap();
        assert_eq!(mode(&f), 0o600);
        assert_eq!(fs::read(&f).unwrap(), b"new");
        let lock = d.join("x.lock");
        open_lock(&lock).unwrap();
        assert_eq!(mode(&lock), 0o600);
        let tmp = temp_file(&d, "t-").unwrap();
        assert_eq!(mode(tmp.path()), 0o600);
    }

    #[test]
    fn repair_tree_fixes_files_and_dirs_bottom_up_and_leaves_links() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("images");
        fs::create_dir_all(top.join("blobs/sha256")).unwrap();
        fs::write(top.join("index.json"), "{}").unwrap();
        fs::write(top.join("blobs/sha256/abc"), "x").unwrap();
        let outside = t.path().join("outside");
        fs::write(&outside, "o").unwrap();
        chmod_to(&outside, 0o644);
        std::os::unix::fs::symlink(&outside, top.join("link")).unwrap();
        for p in ["", "blobs", "blobs/sha256"] {
            chmod_to(&top.join(p), 0o755);
        }
        for p in ["index.json", "blobs/sha256/abc"] {
            chmod_to(&top.join(p), 0o644);
        }
        assert!(repair_tree(&top).unwrap());
        for p in ["", "blobs", "blobs/sha256"] {
            assert_eq!(mode(&top.join(p)), 0o700, "{p}");
        }
        for p in ["index.json", "blobs/sha256/abc"] {
            assert_eq!(mode(&top.join(p)), 0o600, "{p}");
        }
        assert_eq!(mode(&outside), 0o644, "a link is not followed");
        assert!(!repair_tree(&top).unwrap(), "the second time finds it done");
    }

    #[test]
    fn a_private_directory_is_taken_as_repaired() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        fs::write(&f, "x").unwrap();
        chmod_to(&f, 0o644);
        chmod_to(t.path(), 0o700);
        assert!(!repair_dir(t.path(), true).unwrap());
        assert_eq!(mode(&f), 0o644);
        assert!(!repair_dir(&t.path().join("missing"), true).unwrap());
    }

    #[test]
    fn a_root_is_made_private_only_when_it_is_manifolds() {
        let t = tempfile::tempdir().unwrap();
        let new = t.path().join("new/root");
        create_root(&new).unwrap();
        assert_eq!(mode(&new), 0o700);

        let old = t.path().join("old");
        fs::create_dir_all(old.join("containers-v1")).unwrap();
        fs::create_dir_all(old.join("images")).unwrap();
        chmod_to(&old, 0o755);
        create_root(&old).unwrap();
        assert_eq!(mode(&old), 0o700);

        let home = t.path().join("home");
        fs::create_dir_all(&home).unwrap();
        fs::write(home.join(".profile"), "").unwrap();
        chmod_to(&home, 0o755);
        let e = create_root(&home).unwrap_err();
        assert!(matches!(e, StoreError::ForeignRoot { .. }), "{e}");
        assert_eq!(mode(&home), 0o755, "left as it was");
    }

    #[test]
    fn versioned_names() {
        for ok in ["tmp-v1", "containers-v1", "cache-v12", "blob-locations-v2"] {
            assert!(is_versioned(ok), "{ok}");
        }
        for bad in ["v1", "-v1", "tmp-v", "tmp-vx", ".profile", "Tmp-v1"] {
            assert!(!is_versioned(bad), "{bad}");
        }
    }
}
