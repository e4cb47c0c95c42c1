//! The host side of a RUN step's `--mount`s, made before the container starts and undone
//! when it is gone:
//!
//! - `cache`: a directory of the store's cache (`cache::Cache::mount_dir`), kept across builds;
//! - `tmpfs`: an empty directory of the step's scratch space;
//! - `secret`: a file on a tmpfs of the step's own (never on disk), with the mount's mode and
//!   owner, and/or an environment variable of the step;
//! - `ssh`: a socket of the step's own that passes connections on to the build's agent
//!   (`secrets::Forwarder`), SSH_AUTH_SOCK naming the first;
//! - `bind`: an overlay over the context (its .dockerignore'd paths whited out) or over a
//!   stage's or image's layers, with a throwaway upper directory: the step reads it, and what
//!   it writes (`rw`) is discarded.
//!
//! The mount points the runtime creates in the container's root for them (and the parents it
//! creates on the way) are removed from the upper directory afterwards, as BuildKit removes its
//! mount stubs: they are not the step's doing, and never part of its layer.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::cache::Cache;
use super::run::{RunError, RunRequest, View};
use super::secrets::Forwarder;
use crate::dockerfile::instructions::MountKind;
use crate::layer::extract::OVERLAY_OPAQUE_XATTR;
use crate::progress::NoProgress;
use crate::runtime::overlay::Overlay;
use crate::runtime::snapshots::LayerRef;
use crate::runtime::{Bind, Runtime};

/// The mounts of one step, undone when dropped.
pub struct StepMounts<'r> {
    rt: &'r Runtime,
    pub binds: Vec<Bind>,
    /// `KEY=VALUE` for the step's process (secrets as variables, SSH_AUTH_SOCK).
    pub env: Vec<String>,
    /// Mounted by us, unmounted on drop (tmpfs, overlays), deepest last.
    mounted: Vec<PathBuf>,
    /// Secret files on a private directory when no tmpfs could be mounted: removed on drop.
    written: Vec<PathBuf>,
    forwarders: Vec<Forwarder>,
    targets: Vec<String>,
    stubs: Stubs,
}

impl Drop for StepMounts<'_> {
    fn drop(&mut self) {
        self.forwarders.clear();
        for f in &self.written {
            let _ = fs::remove_file(f);
        }
        for m in self.mounted.iter().rev() {
            let _ = self.rt.syscalls().unmount(m, true);
        }
    }
}

fn mount_err(kind: MountKind, target: &str) -> impl FnOnce(io::Error) -> RunError + '_ {
    move |source| RunError::Mount {
        kind,
        target: target.to_string(),
        source,
    }
}

/// Make the host side of every mount of `req.op` (required secrets and agents were checked by
/// the executor: a missing one here is optional and left out).
pub fn prepare<'r>(rt: &'r Runtime, req: &RunRequest<'_>) -> Result<StepMounts<'r>, RunError> {
    let mut out = StepMounts {
        rt,
        binds: Vec::new(),
        env: Vec::new(),
        mounted: Vec::new(),
        written: Vec::new(),
        forwarders: Vec::new(),
        targets: Vec::new(),
        stubs: Stubs::default(),
    };
    let mut secrets_dir: Option<PathBuf> = None;
    let mut agent_sock = None;
    for (i, m) in req.op.mounts.iter().enumerate() {
        let err = mount_err(m.kind, &m.target);
        match m.kind {
            MountKind::Cache => {
                let dir = Cache::mount_dir(req.store, &m.id).map_err(err)?;
                if !dir.is_dir() {
                    // The mode the container sees; `mount_dir`'s private parent keeps the
                    // host's other users away from it.
                    let err = mount_err(m.kind, &m.target);
                    fs::create_dir_all(&dir)
                        .and_then(|()| {
                            fs::set_permissions(&dir, fs::Permissions::from_mode(m.mode))
                        })
                        .and_then(|()| {
                            std::os::unix::fs::chown(&dir, Some(m.uid as u32), Some(m.gid as u32))
                        })
                        .map_err(err)?;
                }
                out.bind(dir, &m.target, m.read_only);
            }
            MountKind::Tmpfs => {
                let dir = req.tmp.join(format!("tmpfs-{i}"));
                fs::create_dir_all(&dir).map_err(err)?;
                out.bind(dir, &m.target, m.read_only);
            }
            MountKind::Secret => {
                let Some(value) = req.secrets.get(&m.id) else {
                    continue;
                };
                if let Some(var) = &m.env {
                    let text = std::str::from_utf8(value.expose()).map_err(|_| {
                        RunError::SecretNotText {
                            id: m.id.clone(),
                            var: var.clone(),
                        }
                    })?;
                    out.env.push(format!("{var}={text}"));
                }
                if m.target.is_empty() {
                    continue;
                }
                let dir = match &secrets_dir {
                    Some(d) => d.clone(),
                    None => {
                        let d = out.secrets_dir(req.tmp).map_err(err)?;
                        secrets_dir.insert(d).clone()
                    }
                };
                let file = dir.join(format!("{i}"));
                write_secret(&file, value.expose(), m.mode, m.uid, m.gid)
                    .map_err(mount_err(m.kind, &m.target))?;
                if !out.mounted.contains(&dir) {
                    out.written.push(file.clone());
                }
                out.bind(file, &m.target, true);
            }
            MountKind::Ssh => {
                let sock = req.tmp.join(format!("ssh-{i}.sock"));
                let Some(f) = req.ssh.forward(&m.id, &sock).map_err(err)? else {
                    continue;
                };
                out.forwarders.push(f);
                let err = mount_err(m.kind, &m.target);
                fs::set_permissions(&sock, fs::Permissions::from_mode(m.mode))
                    .and_then(|()| {
                        std::os::unix::fs::chown(&sock, Some(m.uid as u32), Some(m.gid as u32))
                    })
                    .map_err(err)?;
                // A socket is connected to, never written as a file: bound writable.
                out.bind(sock, &m.target, false);
                agent_sock.get_or_insert_with(|| m.target.clone());
            }
            MountKind::Bind => {
                let Some(Some(source)) = req.binds.get(i) else {
                    continue;
                };
                let base = req.tmp.join(format!("bind-{i}"));
                let merged = out.mount_view(req, &source.view, &base).map_err(err)?;
                let path = if source.path.is_empty() {
                    merged
                } else {
                    merged.join(&source.path)
                };
                out.bind(path, &m.target, m.read_only);
            }
        }
    }
    if let Some(sock) = agent_sock
        && !req.op.env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK="))
    {
        out.env.push(format!("SSH_AUTH_SOCK={sock}"));
    }
    Ok(out)
}

fn write_secret(file: &Path, value: &[u8], mode: u32, uid: u64, gid: u64) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)?;
    f.write_all(value)?;
    std::os::unix::fs::chown(file, Some(uid as u32), Some(gid as u32))?;
    fs::set_permissions(file, fs::Permissions::from_mode(mode))
}

impl StepMounts<'_> {
    fn bind(&mut self, source: PathBuf, target: &str, read_only: bool) {
        self.targets.push(target.to_string());
        self.binds.push(Bind {
            source,
            destination: target.to_string(),
            read_only,
        });
    }

    /// A tmpfs for the step's secret files, only root may enter: their bytes never reach a
    /// disk. Where no tmpfs can be mounted, a private directory whose files are removed when
    /// the step ends.
    fn secrets_dir(&mut self, tmp: &Path) -> io::Result<PathBuf> {
        let dir = tmp.join("secrets");
        fs::create_dir(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        let mounted = rustix::mount::mount(
            "manifold-secrets",
            &dir,
            "tmpfs",
            rustix::mount::MountFlags::NOSUID
                | rustix::mount::MountFlags::NODEV
                | rustix::mount::MountFlags::NOEXEC,
            Some(c"mode=0700"),
        );
        if mounted.is_ok() {
            self.mounted.push(dir.clone());
        }
        Ok(dir)
    }

    /// Mount `view` under `base` (an overlay with a throwaway upper directory); its merged
    /// directory.
    fn mount_view(
        &mut self,
        req: &RunRequest<'_>,
        view: &View,
        base: &Path,
    ) -> io::Result<PathBuf> {
        let upper = base.join("upper");
        let work = base.join("work");
        let merged = base.join("merged");
        for d in [&upper, &work, &merged] {
            fs::create_dir_all(d)?;
        }
        let lowers = match view {
            View::Dir { root, hidden } => {
                whiteout(root, &upper, hidden)?;
                vec![root.clone()]
            }
            View::Layers { layers, diff_ids } => {
                let refs: Vec<LayerRef> = layers
                    .iter()
                    .zip(diff_ids)
                    .map(|(d, id)| LayerRef {
                        descriptor: d.clone(),
                        diff_id: id.clone(),
                    })
                    .collect();
                let snapshots = self.rt.snapshots();
                let _lock = snapshots.shared().map_err(io::Error::other)?;
                let chain = snapshots
                    .prepare(req.store, &refs, 2, &NoProgress)
                    .map_err(io::Error::other)?;
                let mut lowers: Vec<PathBuf> =
                    chain.iter().rev().map(|c| snapshots.fs_path(c)).collect();
                if lowers.is_empty() {
                    let empty = base.join("empty");
                    fs::create_dir_all(&empty)?;
                    lowers.push(empty);
                }
                lowers
            }
        };
        Overlay {
            lowers,
            upper,
            work,
            target: merged.clone(),
            links_dir: base.join("links"),
        }
        .mount(self.rt.syscalls())?;
        self.mounted.push(merged.clone());
        Ok(merged)
    }

    /// Before the container starts (its root mounted at `rootfs`): note which parts of each
    /// mount point the image lacks, which the runtime is about to create.
    pub fn note_stubs(&mut self, rootfs: &Path) {
        for t in &self.targets {
            self.stubs.note(rootfs, t);
        }
    }

    /// After the step: the mount points in `upper` that are still what the runtime made
    /// (empty), and the directories that only held them.
    pub fn remove_stubs(&self, upper: &Path) {
        self.stubs.remove(upper);
    }
}

/// overlayfs whiteouts (0/0 character devices) in `upper` for `hidden`, their parents made
/// with the mode and owner they have under `root` (an upper directory's attributes are what
/// the merged directory shows).
fn whiteout(root: &Path, upper: &Path, hidden: &[String]) -> io::Result<()> {
    let mut made: Vec<(PathBuf, fs::Metadata)> = Vec::new();
    for h in hidden {
        let rel = Path::new(h);
        let mut at = PathBuf::new();
        if let Some(parent) = rel.parent() {
            for c in parent.components() {
                at.push(c);
                let up = upper.join(&at);
                if up.exists() {
                    continue;
                }
                let meta = fs::symlink_metadata(root.join(&at))?;
                fs::create_dir(&up)?;
                fs::set_permissions(&up, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
                std::os::unix::fs::chown(&up, Some(meta.uid()), Some(meta.gid()))?;
                made.push((up, meta));
            }
        }
        rustix::fs::mknodat(
            rustix::fs::CWD,
            upper.join(rel),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            rustix::fs::makedev(0, 0),
        )?;
    }
    // Times last: making the entries changed them.
    for (dir, meta) in made.iter().rev() {
        let t = |s: i64, ns: i64| rustix::fs::Timespec {
            tv_sec: s,
            tv_nsec: ns as _,
        };
        let _ = rustix::fs::utimensat(
            rustix::fs::CWD,
            dir,
            &rustix::fs::Timestamps {
                last_access: t(meta.atime(), meta.atime_nsec()),
                last_modification: t(meta.mtime(), meta.mtime_nsec()),
            },
            rustix::fs::AtFlags::empty(),
        );
    }
    Ok(())
}

/// The paths of mount points the image did not have (the runtime creates them, parents
/// first), and the directories it had on the way with their attributes (creating a child
/// copies them up into the upper directory).
#[derive(Default)]
struct Stubs {
    /// Relative, in the order of creation.
    created: Vec<String>,
    existing: Vec<(String, u32, u32, u32)>,
}

impl Stubs {
    fn note(&mut self, rootfs: &Path, target: &str) {
        let mut rel = String::new();
        for c in target.split('/').filter(|c| !c.is_empty()) {
            if !rel.is_empty() {
                rel.push('/');
            }
            rel.push_str(c);
            if self.created.contains(&rel) {
                continue;
            }
            match fs::symlink_metadata(rootfs.join(&rel)) {
                Ok(m) if m.file_type().is_symlink() => return,
                Ok(m) => {
                    let last = rel.len() == target.trim_matches('/').len();
                    if m.is_dir() && !last && !self.existing.iter().any(|e| e.0 == rel) {
                        self.existing
                            .push((rel.clone(), m.mode(), m.uid(), m.gid()));
                    }
                }
                Err(_) => self.created.push(rel.clone()),
            }
        }
    }

    fn remove(&self, upper: &Path) {
        for rel in self.created.iter().rev() {
            let p = upper.join(rel);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {
                    let _ = fs::remove_dir(&p);
                }
                Ok(m) if m.is_file() && m.len() == 0 => {
                    let _ = fs::remove_file(&p);
                }
                Ok(m) if m.file_type().is_socket() => {
                    let _ = fs::remove_file(&p);
                }
                _ => {}
            }
        }
        // Deepest first: a parent empties once its children are gone.
        let mut existing: Vec<&(String, u32, u32, u32)> = self.existing.iter().collect();
        existing.sort_by_key(|e| std::cmp::Reverse(e.0.matches('/').count()));
        for (rel, mode, uid, gid) in existing {
            let p = upper.join(rel);
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            let unchanged = m.is_dir() && m.mode() == *mode && m.uid() == *uid && m.gid() == *gid;
            let opaque = xattr_present(&p, OVERLAY_OPAQUE_XATTR);
            if unchanged && !opaque {
                // Only when empty: the step's own files keep it.
                let _ = fs::remove_dir(&p);
            }
        }
    }
}

fn xattr_present(path: &Path, name: &str) -> bool {
    let mut buf = [0u8; 8];
    rustix::fs::lgetxattr(path, name, &mut buf).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_are_what_the_image_lacked_and_go_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("root");
        let upper = dir.path().join("upper");
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        fs::create_dir_all(rootfs.join("root")).unwrap();
        let mut s = Stubs::default();
        s.note(&rootfs, "/run/secrets/tok");
        s.note(&rootfs, "/run/secrets/other");
        s.note(&rootfs, "/root/.cache");
        s.note(&rootfs, "/etc");
        assert_eq!(
            s.created,
            [
                "run",
                "run/secrets",
                "run/secrets/tok",
                "run/secrets/other",
                "root/.cache"
            ]
        );
        // what the runtime and the step left
        fs::create_dir_all(upper.join("run/secrets")).unwrap();
        fs::write(upper.join("run/secrets/tok"), "").unwrap();
        fs::write(upper.join("run/secrets/other"), "written by the step").unwrap();
        fs::create_dir_all(upper.join("root/.cache")).unwrap();
        let m = fs::metadata(rootfs.join("root")).unwrap();
        fs::set_permissions(upper.join("root"), m.permissions()).unwrap();
        s.remove(&upper);
        assert!(!upper.join("run/secrets/tok").exists());
        assert!(
            upper.join("run/secrets/other").exists(),
            "the step's own file stays, and its directories"
        );
        assert!(
            !upper.join("root").exists(),
            "a copied-up parent left empty goes"
        );
    }
}
