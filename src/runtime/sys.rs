//! The system calls behind mounts and namespaces, as a small trait with the real implementation
//! and a recording fake (youki's pattern): the decisions around them — which overlay mount
//! method, which option string, what to unmount — are unit-tested without root.

use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

/// An overlay mount request for the new mount API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayConfig {
    /// Top-most first, as overlayfs lists them.
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Extra options (`index=off`, …) as key, value.
    pub options: Vec<(String, String)>,
    /// Flag options (`volatile`), skipped when the kernel does not know them.
    pub flags: Vec<String>,
    /// `userxattr` (a user namespace): required, never skipped.
    pub userxattr: bool,
    pub target: PathBuf,
}

pub trait Syscalls: Send + Sync {
    /// Give the calling thread (and what it spawns) its own mount namespace whose mounts do not
    /// propagate back to the host (`unshare -m --propagation slave`).
    fn private_mount_namespace(&self) -> io::Result<()>;
    /// Mount overlayfs with fsopen/fsconfig(`lowerdir+`)/fsmount/move_mount. `Unsupported` when
    /// the kernel lacks `lowerdir+` (before 6.8) or the new mount API.
    fn mount_overlay_fsconfig(&self, config: &OverlayConfig) -> io::Result<()>;
    /// mount(2) of overlayfs with an option string; `cwd`, when given, is the directory the
    /// relative paths in `data` are resolved from.
    fn mount_overlay_legacy(&self, data: &str, target: &Path, cwd: Option<&Path>)
    -> io::Result<()>;
    /// Run fuse-overlayfs (`program -o OPTIONS TARGET`), which returns once mounted and serves
    /// the mount until it is unmounted. `Unsupported` unless implemented.
    fn mount_fuse_overlayfs(
        &self,
        _program: &Path,
        _options: &str,
        _target: &Path,
    ) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn unmount(&self, target: &Path, detach: bool) -> io::Result<()>;
    /// The mount-option limit of mount(2) (one page).
    fn page_size(&self) -> usize;
    /// /proc/self/mountinfo.
    fn mountinfo(&self) -> io::Result<String>;
}

/// The kernel.
pub struct RealSyscalls;

fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from(e)
}

impl Syscalls for RealSyscalls {
    fn private_mount_namespace(&self) -> io::Result<()> {
        // SAFETY: unshare with only CLONE_NEWNS (which implies CLONE_FS for this thread) does
        // not touch memory; it fails cleanly (EINVAL/EPERM) where it is not allowed.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
            .map_err(errno)?;
        rustix::mount::mount_change(
            "/",
            MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
        )
        .map_err(errno)
    }

    fn mount_overlay_fsconfig(&self, c: &OverlayConfig) -> io::Result<()> {
        use rustix::mount::{
            FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, fsconfig_create,
            fsconfig_set_string, fsmount, fsopen, move_mount,
        };
        let fs = match fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOSYS) => {
                return Err(io::Error::from(io::ErrorKind::Unsupported));
            }
            Err(e) => return Err(errno(e)),
        };
        for (i, lower) in c.lowers.iter().enumerate() {
            match fsconfig_set_string(&fs, "lowerdir+", lower) {
                Ok(()) => {}
                // Kernels before 6.8 do not know `lowerdir+`.
                Err(rustix::io::Errno::INVAL) if i == 0 => {
                    return Err(io::Error::from(io::ErrorKind::Unsupported));
                }
                Err(e) => {
                    return Err(io::Error::new(
                        io::Error::from(e).kind(),
                        format!("lowerdir+ {}: {e}", lower.display()),
                    ));
                }
            }
        }
        fsconfig_set_string(&fs, "upperdir", &c.upper).map_err(errno)?;
        fsconfig_set_string(&fs, "workdir", &c.work).map_err(errno)?;
        for (k, v) in &c.options {
            fsconfig_set_string(&fs, k.as_str(), v.as_str()).map_err(errno)?;
        }
        if c.userxattr {
            rustix::mount::fsconfig_set_flag(&fs, "userxattr").map_err(errno)?;
        }
        for f in &c.flags {
            match rustix::mount::fsconfig_set_flag(&fs, f.as_str()) {
                Ok(()) | Err(rustix::io::Errno::INVAL) => {}
                Err(e) => return Err(errno(e)),
            }
        }
        fsconfig_create(&fs).map_err(errno)?;
        let mnt =
            fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty()).map_err(errno)?;
        move_mount(
            &mnt,
            "",
            rustix::fs::CWD,
            &c.target,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(errno)
    }

    fn mount_overlay_legacy(
        &self,
        data: &str,
        target: &Path,
        cwd: Option<&Path>,
    ) -> io::Result<()> {
        let data = std::ffi::CString::new(data).map_err(io::Error::other)?;
        let mount = || {
            rustix::mount::mount(
                "overlay",
                target,
                "overlay",
                MountFlags::empty(),
                Some(data.as_c_str()),
            )
            .map_err(errno)
        };
        let Some(cwd) = cwd else {
            return mount();
        };
        // Relative lowerdir paths resolve from the working directory: change it in a thread of
        // its own (CLONE_FS unshared), never for the whole process.
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: unsharing CLONE_FS only affects this thread's cwd/root/umask.
                unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS) }
                    .map_err(errno)?;
                rustix::process::chdir(cwd).map_err(errno)?;
                mount()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the mount thread panicked")))
        })
    }

    fn mount_fuse_overlayfs(&self, program: &Path, options: &str, target: &Path) -> io::Result<()> {
        let out = std::process::Command::new(program)
            .arg("-o")
            .arg(options)
            .arg(target)
            .stdin(std::process::Stdio::null())
            .output()?;
        if out.status.success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&out.stderr);
        let said = text
            .lines()
            .filter(|l| !l.contains("unknown argument ignored"))
            .collect::<Vec<_>>()
            .join("; ");
        Err(io::Error::other(format!("{}: {said}", program.display())))
    }

    fn unmount(&self, target: &Path, detach: bool) -> io::Result<()> {
        let flags = if detach {
            UnmountFlags::DETACH
        } else {
            UnmountFlags::empty()
        };
        rustix::mount::unmount(target, flags).map_err(errno)
    }

    fn page_size(&self) -> usize {
        rustix::param::page_size()
    }

    fn mountinfo(&self) -> io::Result<String> {
        std::fs::read_to_string("/proc/self/mountinfo")
    }
}

/// Mount points at or under `dir` in a mountinfo text, deepest first (the order to unmount).
pub fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push(u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use std::sync::Mutex;

    /// Records every call; `fsconfig_supported` decides whether the new API "works".
    pub struct FakeSyscalls {
        pub fsconfig_supported: bool,
        pub page_size: usize,
        pub calls: Mutex<Vec<String>>,
        pub mountinfo: Mutex<String>,
        /// Every mount fails with EPERM (a kernel that refuses overlays here).
        pub refuse_mounts: Mutex<bool>,
    }

    impl FakeSyscalls {
        pub fn new(fsconfig_supported: bool) -> FakeSyscalls {
            FakeSyscalls {
                fsconfig_supported,
                page_size: 4096,
                calls: Mutex::new(Vec::new()),
                mountinfo: Mutex::new(String::new()),
                refuse_mounts: Mutex::new(false),
            }
        }

        pub fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl Syscalls for FakeSyscalls {
        fn private_mount_namespace(&self) -> io::Result<()> {
            self.calls.lock().unwrap().push("unshare(NEWNS)".into());
            Ok(())
        }
        fn mount_overlay_fsconfig(&self, c: &OverlayConfig) -> io::Result<()> {
            if *self.refuse_mounts.lock().unwrap() {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            if !self.fsconfig_supported {
                return Err(io::Error::from(io::ErrorKind::Unsupported));
            }
            self.calls.lock().unwrap().push(format!(
                "fsconfig lowers={} upper={} target={}{}",
                c.lowers.len(),
                c.upper.display(),
                c.target.display(),
                if c.userxattr { " userxattr" } else { "" }
            ));
            Ok(())
        }
        fn mount_overlay_legacy(
            &self,
            data: &str,
            target: &Path,
            cwd: Option<&Path>,
        ) -> io::Result<()> {
            if *self.refuse_mounts.lock().unwrap() {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            self.calls.lock().unwrap().push(format!(
                "mount overlay {} cwd={:?} data={data}",
                target.display(),
                cwd
            ));
            Ok(())
        }
        fn mount_fuse_overlayfs(
            &self,
            program: &Path,
            options: &str,
            target: &Path,
        ) -> io::Result<()> {
            if *self.refuse_mounts.lock().unwrap() {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            self.calls.lock().unwrap().push(format!(
                "{} -o {options} {}",
                program.display(),
                target.display()
            ));
            Ok(())
        }
        fn unmount(&self, target: &Path, detach: bool) -> io::Result<()> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("umount {} detach={detach}", target.display()));
            Ok(())
        }
        fn page_size(&self) -> usize {
            self.page_size
        }
        fn mountinfo(&self) -> io::Result<String> {
            Ok(self.mountinfo.lock().unwrap().clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mounts_under_a_directory_deepest_first() {
        let info = "\
22 1 8:1 / / rw - ext4 /dev/root rw
40 22 0:40 / /var/lib/manifold/containers-v1/abc/rootfs rw - overlay overlay rw
41 40 0:41 / /var/lib/manifold/containers-v1/abc/rootfs/proc rw - proc proc rw
42 22 0:42 / /var/lib/manifold/containers-v1/abcd/rootfs rw - overlay overlay rw
43 22 0:43 / /tmp/with\\040space rw - tmpfs tmpfs rw
";
        let dir = Path::new("/var/lib/manifold/containers-v1/abc");
        assert_eq!(
            mounts_under(info, dir),
            vec![
                PathBuf::from("/var/lib/manifold/containers-v1/abc/rootfs/proc"),
                PathBuf::from("/var/lib/manifold/containers-v1/abc/rootfs"),
            ]
        );
        assert_eq!(
            mounts_under(info, Path::new("/tmp/with space")),
            vec![PathBuf::from("/tmp/with space")]
        );
    }
}
