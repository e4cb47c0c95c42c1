//! How a container's root is made, and how its changes are read back.
//!
//! As root: kernel overlayfs over the snapshots (see `overlay`). Rootless, in order: kernel
//! overlayfs in the user namespace (Linux 5.11+, `userxattr`); else fuse-overlayfs (Debian
//! `fuse-overlayfs`, where /dev/fuse is open to the user), which reads the same lower
//! directories (it honours `user.overlay.opaque`) and writes whiteouts as 0/0 devices and opaque
//! markers as `user.fuseoverlayfs.opaque`, which the diff reads; else a copy: the image's layers
//! applied in the container's root directory, and a record of it (`baseline` in the
//! container's directory) against which `commit` and RUN find the changes. `-v` says which.
//! `MANIFOLD_ROOTFS=overlayfs|fuse-overlayfs|copy` picks one (for tests, and kernels whose
//! overlayfs misbehaves).

use std::io::{self, Write};
use std::path::Path;

use super::RuntimeError;
use super::containers::ContainerDir;
use super::overlay::{Method, Overlay};
use super::ownership::Ownership;
use super::sys::Syscalls;
use crate::layer::{self, Baseline, DiffReport};

/// `MANIFOLD_ROOTFS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Any,
    Overlayfs,
    FuseOverlayfs,
    Copy,
}

impl Choice {
    pub fn from_env() -> Result<Choice, RuntimeError> {
        match std::env::var("MANIFOLD_ROOTFS").as_deref() {
            Err(_) | Ok("") => Ok(Choice::Any),
            Ok("overlayfs") => Ok(Choice::Overlayfs),
            Ok("fuse-overlayfs") => Ok(Choice::FuseOverlayfs),
            Ok("copy") => Ok(Choice::Copy),
            Ok(other) => Err(RuntimeError::RootfsChoice(other.to_string())),
        }
    }
}

/// The record of a copied root, in the container's directory.
const BASELINE: &str = "baseline";

/// Make `overlay.target` the container's root (see the module doc); `copy` fills it with the
/// image's layers when no overlay can be mounted.
pub fn make(
    sys: &dyn Syscalls,
    ownership: &Ownership,
    overlay: &Overlay,
    cdir: &ContainerDir,
    copy: impl FnOnce(&Path) -> Result<Baseline, RuntimeError>,
) -> Result<Method, RuntimeError> {
    // A container started again keeps the root it was copied into, and its record.
    if cdir.dir.join(BASELINE).exists() {
        return Ok(Method::Copy);
    }
    let choice = Choice::from_env()?;
    let target = overlay.target.clone();
    let mount_error = |source| RuntimeError::Mount {
        target: target.clone(),
        source,
    };
    // As root the kernel's overlayfs is all there is to try (it fails only for good reasons).
    if choice == Choice::Any && !ownership.is_user_namespace() {
        return overlay.mount(sys).map_err(mount_error);
    }
    let mut failed: Vec<String> = Vec::new();
    if matches!(choice, Choice::Any | Choice::Overlayfs) {
        match overlay.mount(sys) {
            Ok(m) => return Ok(m),
            Err(e) if choice == Choice::Overlayfs => return Err(mount_error(e)),
            Err(e) => failed.push(format!("overlayfs: {e}")),
        }
    }
    if matches!(choice, Choice::Any | Choice::FuseOverlayfs) {
        match fuse(sys, overlay) {
            Ok(()) => return Ok(Method::FuseOverlayfs),
            Err(e) if choice == Choice::FuseOverlayfs => return Err(mount_error(e)),
            Err(e) => failed.push(format!("fuse-overlayfs: {e}")),
        }
    }
    let _ = failed;
    let baseline = copy(&target)?;
    let record = cdir.dir.join(BASELINE);
    baseline
        .save(&record)
        .map_err(RuntimeError::io("write", &record))?;
    Ok(Method::Copy)
}

/// fuse-overlayfs over the same directories, when it is installed and /dev/fuse is open to
/// this process.
fn fuse(sys: &dyn Syscalls, o: &Overlay) -> io::Result<()> {
    let program = super::find_program("fuse-overlayfs").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "not installed (Debian, Ubuntu: `apt-get install fuse-overlayfs`)",
        )
    })?;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| io::Error::new(e.kind(), format!("/dev/fuse: {e}")))?;
    let paths = o.lowers.iter().chain([&o.upper, &o.work]);
    if paths
        .clone()
        .any(|p| p.to_string_lossy().contains([':', ',']))
    {
        return Err(io::Error::other("a path holds `:` or `,`"));
    }
    let lowers: Vec<String> = o.lowers.iter().map(|p| p.display().to_string()).collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        o.upper.display(),
        o.work.display()
    );
    sys.mount_fuse_overlayfs(&program, &options, &o.target)
}

/// What a container changed, as a tar stream to `out` (mtimes clamped to `epoch` when given):
/// its upper directory, or for a copied root the changes against its record. `mount_points`
/// (relative paths) are left out where a copied root only holds them empty (what the runtime
/// made to mount on). [`layer::write_layer_diff`] makes a layer of it.
pub fn write_changes<W: Write>(
    cdir: &ContainerDir,
    mount_points: &[&Path],
    out: W,
    epoch: Option<u64>,
) -> io::Result<(DiffReport, W)> {
    let record = cdir.dir.join(BASELINE);
    if !record.exists() {
        return layer::write_diff(&cdir.upper(), out, epoch);
    }
    let baseline = Baseline::load(&record)?;
    let mut ignore: Vec<&Path> = DEFAULT_MOUNT_POINTS.iter().map(Path::new).collect();
    ignore.extend_from_slice(mount_points);
    layer::write_changes(&cdir.rootfs(), &baseline, &ignore, out, epoch)
}

/// What the bundle mounts on (runc makes them in the root when the image lacks them).
const DEFAULT_MOUNT_POINTS: [&str; 10] = [
    "proc",
    "sys",
    "dev",
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
    "etc",
    "dev/pts",
    "dev/shm",
    "dev/mqueue",
];

#[cfg(test)]
mod tests {
    use super::super::sys::fake::FakeSyscalls;
    use super::*;
    use crate::userns::IdMap;
    use std::path::PathBuf;

    fn rootless() -> Ownership {
        let one = vec![IdMap {
            inside: 0,
            outside: 1000,
            count: 1,
        }];
        Ownership::UserNamespace {
            uid_map: one.clone(),
            gid_map: one,
        }
    }

    fn setup(dir: &Path) -> (Overlay, ContainerDir) {
        let cdir = ContainerDir {
            dir: dir.to_path_buf(),
        };
        std::fs::create_dir_all(cdir.rootfs()).unwrap();
        let o = Overlay {
            lowers: vec![PathBuf::from("/s/0/fs")],
            upper: cdir.upper(),
            work: cdir.work(),
            target: cdir.rootfs(),
            links_dir: cdir.links(),
            userxattr: true,
        };
        (o, cdir)
    }

    #[test]
    fn rootless_falls_back_to_a_copy_and_reads_its_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (o, cdir) = setup(dir.path());
        let sys = FakeSyscalls::new(false);
        *sys.refuse_mounts.lock().unwrap() = true;
        let m = make(&sys, &rootless(), &o, &cdir, |root| {
            std::fs::create_dir(root.join("etc")).unwrap();
            std::fs::write(root.join("etc/motd"), "hi").unwrap();
            Ok(Baseline::record(root).unwrap())
        })
        .unwrap();
        assert_eq!(m, Method::Copy);
        std::fs::write(cdir.rootfs().join("etc/motd"), "changed").unwrap();
        std::fs::write(cdir.rootfs().join("etc/hosts"), "").unwrap();
        std::fs::create_dir(cdir.rootfs().join("proc")).unwrap();
        let (report, out) = write_changes(&cdir, &[], Vec::new(), None).unwrap();
        assert_eq!(report.entries, 2, "etc and etc/motd, not the mount points");
        let names = layer::tarball::paths(&out);
        assert_eq!(names, ["etc", "etc/motd"]);
    }

    #[test]
    fn root_only_tries_the_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let (mut o, cdir) = setup(dir.path());
        o.userxattr = false;
        let sys = FakeSyscalls::new(false);
        *sys.refuse_mounts.lock().unwrap() = true;
        let err = make(&sys, &Ownership::Host, &o, &cdir, |_| {
            panic!("no copy as root")
        });
        assert!(matches!(err, Err(RuntimeError::Mount { .. })));
    }
}
