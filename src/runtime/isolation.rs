//! Commands run without a container, for where none can be made: as root inside a Docker (or
//! Kubernetes) container started without `--privileged`, whose default seccomp profile refuses
//! mount(2), unshare(2) and clone with namespace flags — no overlay, no namespace of any kind —
//! while its capabilities still include CAP_SYS_CHROOT, CAP_CHOWN, CAP_FOWNER, CAP_MKNOD, and
//! the profile allows ptrace (Linux 4.8+). What kaniko and buildah's `--isolation chroot` do
//! there, each in its own way.
//!
//! The root is a plain directory ([`StepRoot`]): the stage's layers applied one after the other
//! (whiteouts delete, opaque markers empty), recorded ([`crate::layer::Baseline`]) before the
//! command and diffed after it. Two ways to run the command in it ([`Isolation`]):
//!
//! - **proot** (Debian `proot`): ptrace-based path translation. The command sees the directory
//!   as `/`, and the build container's `/proc`, `/dev`, `/sys`, `/etc/resolv.conf` and
//!   `/etc/hosts` bound into it (no mount: proot rewrites the paths of every system call), so
//!   package scripts find a working `/proc`. Foreign programs run through QEMU by proot's `-q`,
//!   with the emulator the machine's binfmt_misc handler holds (see
//!   `binfmt::Binfmt::emulator_file`): proot loads programs itself, so the kernel's handler
//!   never sees them. System calls cost a ptrace stop each (with seccomp acceleration, only
//!   the ones that take paths).
//! - **chroot**: chroot(2) only (buildah's `chroot` without its mounts, which need privileges
//!   here): nothing bound, so no `/proc`, an empty `/dev`, and the image's own
//!   `/etc/resolv.conf`. Foreign programs go through the kernel's handlers directly (the F
//!   flag). Cheaper, for steps that need none of that.
//!
//! Neither makes namespaces, so a step shares the build container's network, processes and
//! host name, and `--network=none` cannot be honoured; nor confines it beyond the build
//! container's own capabilities and seccomp profile — the container is the boundary.

use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::RuntimeError;
use super::spec::Bind;
use super::user::ExecUser;
use crate::layer::{
    self, Baseline, Compression, DiffReport, ExtractOptions, InRoot, Owners, Whiteouts,
};
use crate::oci::{Descriptor, Digest};
use crate::store::Store;

/// How a command runs in a [`StepRoot`] (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    Proot,
    Chroot,
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Isolation::Proot => "proot",
            Isolation::Chroot => "chroot",
        })
    }
}

/// The paths proot binds from the build container into the root, when it has them.
const PROOT_BINDS: [&str; 5] = ["/proc", "/dev", "/sys", "/etc/resolv.conf", "/etc/hosts"];

/// A plain directory holding an image's layers applied in order, and the record of it.
pub struct StepRoot {
    dir: PathBuf,
    baseline: Baseline,
}

impl StepRoot {
    /// Apply `layers` (with their diff IDs) from the store into `dir` (an empty directory),
    /// with `owners`, and record the result.
    pub fn unpack(
        store: &Store,
        layers: &[Descriptor],
        diff_ids: &[Digest],
        dir: &Path,
        owners: Owners,
    ) -> Result<StepRoot, RuntimeError> {
        if layers.len() != diff_ids.len() {
            return Err(RuntimeError::LayerCount {
                layers: layers.len(),
                diff_ids: diff_ids.len(),
            });
        }
        let options = ExtractOptions {
            whiteouts: Whiteouts::Apply,
            owners,
        };
        for (l, diff_id) in layers.iter().zip(diff_ids) {
            let compression = Compression::from_media_type(&l.media_type).ok_or_else(|| {
                RuntimeError::UnsupportedLayer {
                    digest: l.digest.clone(),
                    media_type: l.media_type.clone(),
                }
            })?;
            let blob = store.open_blob(&l.digest)?;
            layer::unpack_with(blob, compression, dir, Some(diff_id), options).map_err(
                |source| RuntimeError::Unpack {
                    digest: l.digest.clone(),
                    source,
                },
            )?;
        }
        let baseline =
            Baseline::record(dir).map_err(RuntimeError::io("record the contents of", dir))?;
        Ok(StepRoot {
            dir: dir.to_path_buf(),
            baseline,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The record, to keep beside the root.
    pub fn into_baseline(self) -> Baseline {
        self.baseline
    }

    /// What changed since [`StepRoot::unpack`], as a tar stream to `out` (mtimes clamped to
    /// `epoch` when given).
    pub fn write_changes<W: Write>(
        &self,
        out: W,
        epoch: Option<u64>,
    ) -> io::Result<(DiffReport, W)> {
        layer::write_changes(&self.dir, &self.baseline, &[], out, epoch)
    }
}

/// One command to run in a root.
pub struct Step<'a> {
    pub isolation: Isolation,
    pub root: &'a Path,
    pub argv: &'a [String],
    pub env: &'a [String],
    pub cwd: &'a str,
    pub user: &'a ExecUser,
    /// Host paths bound into the root (proot only).
    pub binds: &'a [Bind],
    /// The emulator proot runs foreign programs with.
    pub emulator: Option<&'a Path>,
}

impl Step<'_> {
    /// The command, stdio left to the caller. The working directory is created in the root;
    /// the program is looked up in the root's `PATH`.
    pub fn command(&self) -> Result<Command, RuntimeError> {
        let root = InRoot::open(self.root).map_err(RuntimeError::io("open", self.root))?;
        root.create_dir_all(Path::new(self.cwd))
            .map_err(RuntimeError::io(
                "create the working directory",
                Path::new(self.cwd),
            ))?;
        let program = lookup(&root, &self.argv[0], self.env, self.cwd)?;
        let mut cmd = match self.isolation {
            Isolation::Proot => self.proot(&program)?,
            Isolation::Chroot => self.chroot(&program)?,
        };
        cmd.env_clear();
        for kv in self.env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
        Ok(cmd)
    }

    fn proot(&self, program: &str) -> Result<Command, RuntimeError> {
        let proot = super::find_program("proot").ok_or(RuntimeError::ProotNotFound)?;
        let mut cmd = Command::new(proot);
        cmd.arg("-r").arg(self.root).arg("-w").arg(self.cwd);
        for b in PROOT_BINDS {
            if Path::new(b).exists() {
                cmd.arg("-b").arg(b);
            }
        }
        for b in self.binds {
            let mut spec = b.source.as_os_str().to_owned();
            spec.push(":");
            spec.push(&b.destination);
            cmd.arg("-b").arg(spec);
        }
        if let Some(q) = self.emulator {
            cmd.arg("-q").arg(q);
        }
        cmd.arg(program).args(&self.argv[1..]);
        // proot runs as the step's user: what it creates is theirs, as in a container.
        self.enter(&mut cmd, None)?;
        Ok(cmd)
    }

    /// Between fork and exec: chroot into `root` (when given), then become the step's user.
    fn enter(&self, cmd: &mut Command, root: Option<&Path>) -> Result<(), RuntimeError> {
        let c = |p: &[u8]| {
            CString::new(p)
                .map_err(|_| RuntimeError::io("use", self.root)(io::ErrorKind::InvalidInput.into()))
        };
        let root = root.map(|r| c(r.as_os_str().as_bytes())).transpose()?;
        let cwd = c(self.cwd.as_bytes())?;
        let (uid, gid) = (self.user.uid, self.user.gid);
        let groups: Vec<libc::gid_t> = self.user.additional_gids.clone();
        // SAFETY: chroot, chdir, setgroups, setgid and setuid are async-signal-safe and use
        // memory prepared before the fork. The ids change last: chroot needs CAP_SYS_CHROOT,
        // which std's own uid/gid would have dropped first.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(root) = &root
                    && (libc::chroot(root.as_ptr()) != 0 || libc::chdir(cwd.as_ptr()) != 0)
                {
                    return Err(io::Error::last_os_error());
                }
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(())
    }

    fn chroot(&self, program: &str) -> Result<Command, RuntimeError> {
        if !self.binds.is_empty() {
            return Err(RuntimeError::ChrootBinds);
        }
        let mut cmd = Command::new(program);
        cmd.args(&self.argv[1..]);
        self.enter(&mut cmd, Some(self.root))?;
        Ok(cmd)
    }
}

/// `command` as the root's `PATH` finds it (an absolute path inside the root).
fn lookup(root: &InRoot, command: &str, env: &[String], cwd: &str) -> Result<String, RuntimeError> {
    if command.contains('/') {
        return Ok(if command.starts_with('/') {
            command.to_string()
        } else {
            Path::new(cwd).join(command).to_string_lossy().into_owned()
        });
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(super::run::DEFAULT_PATH);
    for dir in path.split(':').filter(|d| d.starts_with('/')) {
        let candidate = Path::new(dir).join(command);
        if root
            .stat(&candidate)
            .is_ok_and(|st| st.st_mode & 0o111 != 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG)
        {
            return Ok(candidate.to_string_lossy().into_owned());
        }
    }
    Err(RuntimeError::CommandNotFound(command.to_string()))
}

/// An emulator file as a path proot can execute: copied into `dir` (mode 0755) once.
pub fn emulator_path(file: &mut fs::File, dir: &Path, name: &str) -> io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    if !path.exists() {
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut out = fs::File::create(&tmp)?;
        io::copy(file, &mut out)?;
        out.set_permissions(fs::Permissions::from_mode(0o755))?;
        drop(out);
        fs::rename(&tmp, &path)?;
    }
    Ok(path)
}
