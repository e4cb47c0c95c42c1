//! RUN through the runtime: the stage's layers become snapshots (by chain ID), an overlay
//! mounts them with a fresh upper directory, the OCI runtime runs the command (a foreign
//! platform through QEMU, registered with `binfmt::ensure`), and the upper directory becomes the
//! step's layer (OCI whiteouts), its mtimes clamped to SOURCE_DATE_EPOCH when that is set.
//!
//! Where no container can be made (an unprivileged build container), [`IsolatedRunner`] runs
//! the step under proot or chroot in a plain directory holding the stage's layers, and the
//! changes found against a record of it become the layer (see `runtime::isolation`).

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use super::layer::LayerInfo;
use super::run::{RunError, RunRequest, Runner};
use crate::binfmt::{Binfmt, EmulatorSearch};
use crate::dockerfile::instructions::MountKind;
use crate::layer::{Compression, DiffReport, DiffSink};
use crate::oci::{Descriptor, ImageConfig, Manifest, Parsed, RunConfig, media_type};
use crate::platform::Platform;
use crate::progress::NoProgress;
use crate::runtime::isolation::{self, Isolation, Step, StepRoot};
use crate::runtime::{Bind, Network, RunOptions, Runtime, RuntimeError, Security};
use crate::store::{BlobWriter, Store, Transaction};

pub struct RuntimeRunner {
    rt: Runtime,
    binfmt: Binfmt,
    /// binfmt_misc registration is serialised: two platforms may need the same handler.
    ensure_lock: Mutex<()>,
}

impl RuntimeRunner {
    /// Call from the main thread before any other thread starts: the process moves into a
    /// mount namespace of its own.
    pub fn new(
        store: &Store,
        runtime: &str,
    ) -> Result<RuntimeRunner, crate::runtime::RuntimeError> {
        let rt = Runtime::new(store, runtime)?;
        let _ = rt.reconcile();
        rt.enter_private_mounts()?;
        Ok(RuntimeRunner {
            rt,
            binfmt: Binfmt::system(EmulatorSearch::from_env(None)),
            ensure_lock: Mutex::new(()),
        })
    }
}

impl Runner for RuntimeRunner {
    fn run(&self, req: &RunRequest<'_>) -> Result<Option<LayerInfo>, RunError> {
        {
            let _l = self.ensure_lock.lock().expect("binfmt lock");
            self.binfmt
                .ensure(req.platform)
                .map_err(|source| RunError::Emulation {
                    platform: req.platform.to_string(),
                    source,
                })?;
        }
        let store = req.store;
        let op = req.op;
        // The runtime runs images: the stage so far, as one (never tagged; gc takes it).
        let mut config = ImageConfig::default();
        config.set_platform(req.platform);
        config.rootfs.diff_ids = req.diff_ids.to_vec();
        config.config = Some(RunConfig {
            env: Some(op.env.clone()),
            working_dir: Some(op.workdir.clone()),
            user: op.user.clone(),
            cmd: Some(op.argv.clone()),
            ..Default::default()
        });
        let config = Parsed::from_value(config);
        store.put_bytes(&config.bytes)?;
        let manifest = Parsed::from_value(Manifest::new_oci(
            config.descriptor(media_type::OCI_CONFIG),
            req.layers.to_vec(),
        ));
        store.put_bytes(&manifest.bytes)?;
        let mut binds: Vec<Bind> = script_bind(req)?.into_iter().collect();
        let mut mounts = super::mounts::prepare(&self.rt, req)?;
        binds.append(&mut mounts.binds);
        let opts = RunOptions {
            image: "manifold build step".into(),
            image_digest: manifest.digest(),
            manifest_digest: manifest.digest(),
            manifest: manifest.value.clone(),
            config_digest: config.digest(),
            config: config.value.clone(),
            platform: req.platform.clone(),
            args: op.argv.clone(),
            entrypoint: Some(String::new()),
            env: mounts.env.clone(),
            workdir: Some(op.workdir.clone()),
            user: op.user.clone(),
            name: None,
            hostname: None,
            // The plan checked the value: anything else is the default.
            network: Network::from_build_flag(op.network.as_str()).unwrap_or(Network::Private),
            read_only: false,
            binds,
            tty: false,
            auto_remove: false,
            security: Security::default(),
            ephemeral: true,
            service: Default::default(),
        };
        let mut prepared = self
            .rt
            .create(&opts, &NoProgress)
            .map_err(|e| RunError::container("create")(Box::new(e)))?;
        let id = prepared.record().id.clone();
        mounts.note_stubs(&prepared.rootfs());
        let remove = || {
            let _ =
                self.rt
                    .containers()
                    .remove(self.rt.syscalls(), Some(self.rt.oci()), store, &id);
        };
        let mut child = match prepared.spawn(Stdio::null(), Stdio::piped(), Stdio::piped()) {
            Ok(c) => c,
            Err(e) => {
                drop(prepared);
                remove();
                return Err(RunError::container("start")(Box::new(e)));
            }
        };
        let status = match pump(&mut child, req.output) {
            Ok(s) => s,
            Err(e) => {
                drop(prepared);
                remove();
                return Err(RunError::container("wait for")(Box::new(e)));
            }
        };
        let exit = prepared.finish(status);
        let upper = self.rt.containers().dir_of(&id).upper();
        let result = match exit {
            Err(e) => Err(RunError::container("run")(Box::new(e))),
            Ok(x) if x.code != 0 => Err(RunError::Exit {
                argv: op.argv.join(" "),
                code: x.code,
            }),
            Ok(_) => {
                // The mount points of --mount are not the step's doing either.
                mounts.remove_stubs(&upper);
                tidy_upper(&upper);
                // A copied root (rootless without an overlay) has no upper directory: its
                // changes are found against its record, without the mount points.
                let cdir = self.rt.containers().dir_of(&id);
                let targets: Vec<PathBuf> = op
                    .mounts
                    .iter()
                    .map(|m| PathBuf::from(m.target.trim_start_matches('/')))
                    .chain(op.script.iter().map(|_| "dev/pipes".into()))
                    .collect();
                let targets: Vec<&Path> = targets.iter().map(PathBuf::as_path).collect();
                diff_layer(store, req.compression, |w| {
                    crate::runtime::rootfs::write_changes(&cdir, &targets, w, req.epoch)
                })
            }
        };
        remove();
        result
    }
}

/// What the step binds into its root: a here-document's script at `/dev/pipes/NAME`, and each
/// `--mount` (a cache directory of the store, or an empty one for tmpfs).
/// A here-document's script, bound at `/dev/pipes/NAME` (BuildKit's place for it).
fn script_bind(req: &RunRequest<'_>) -> Result<Option<Bind>, RunError> {
    let Some((name, content)) = &req.op.script else {
        return Ok(None);
    };
    let dir = req.tmp.join("pipes");
    fs::create_dir_all(&dir).map_err(RunError::io("write the script"))?;
    let path = dir.join(name);
    fs::write(&path, content).map_err(RunError::io("write the script"))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
        .map_err(RunError::io("write the script"))?;
    Ok(Some(Bind {
        source: path,
        destination: format!("/dev/pipes/{name}"),
        read_only: true,
    }))
}

/// The binds of a step without a container (proot binds them; chroot cannot): its script, and
/// its cache and tmpfs mounts as directories. Secrets, ssh agents and bind mounts need mounts
/// of their own (a tmpfs, an overlay), which only a container's step gets.
fn isolated_binds(req: &RunRequest<'_>) -> Result<Vec<Bind>, RunError> {
    let mut binds: Vec<Bind> = script_bind(req)?.into_iter().collect();
    for (i, m) in req.op.mounts.iter().enumerate() {
        let source = match m.kind {
            MountKind::Cache => {
                let dir = super::cache::Cache::mount_dir(req.store, &m.id)
                    .map_err(RunError::io("create the cache mount"))?;
                if !dir.is_dir() {
                    // The mode the step sees; `mount_dir`'s private parent keeps the host's
                    // other users away from it.
                    fs::create_dir_all(&dir).map_err(RunError::io("create the cache mount"))?;
                    fs::set_permissions(&dir, fs::Permissions::from_mode(m.mode))
                        .map_err(RunError::io("create the cache mount"))?;
                    std::os::unix::fs::chown(&dir, Some(m.uid as u32), Some(m.gid as u32))
                        .map_err(RunError::io("create the cache mount"))?;
                }
                dir
            }
            MountKind::Tmpfs => {
                let dir = req.tmp.join(format!("tmpfs-{i}"));
                fs::create_dir_all(&dir).map_err(RunError::io("create the tmpfs mount"))?;
                dir
            }
            kind => {
                return Err(RunError::Mount {
                    kind,
                    target: m.target.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::Unsupported,
                        "only a container's step gets it: build with `--isolation oci`",
                    ),
                });
            }
        };
        binds.push(Bind {
            source,
            destination: m.target.clone(),
            read_only: m.read_only,
        });
    }
    Ok(binds)
}

/// The command's output, line by line, to `output` while it runs; then its status.
fn pump(
    child: &mut std::process::Child,
    output: &(dyn Fn(&str) + Sync),
) -> io::Result<std::process::ExitStatus> {
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    std::thread::scope(|s| {
        let pump = |r: Box<dyn Read + Send>| {
            for line in BufReader::new(r).lines() {
                match line {
                    Ok(l) => output(&l),
                    Err(_) => break,
                }
            }
        };
        s.spawn(move || pump(Box::new(stdout)));
        s.spawn(move || pump(Box::new(stderr)));
        child.wait()
    })
}

/// The mount points the runtime made for /etc/hosts & co. are not the step's doing.
fn tidy_upper(upper: &std::path::Path) {
    for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
        let p = upper.join(f);
        if fs::symlink_metadata(&p).is_ok_and(|m| m.is_file() && m.len() == 0) {
            let _ = fs::remove_file(&p);
        }
    }
    // Directories only made to hold those mount points: removed when empty (a lower layer
    // that has them keeps them).
    for d in ["etc", "dev", "proc", "sys"] {
        let _ = fs::remove_dir(upper.join(d));
    }
}

/// What the step changed as a layer, written into the store while `diff` writes it (an upper
/// directory's diff, or a plain root's against its record, mtimes clamped as it says); None
/// when the step changed nothing.
fn diff_layer(
    store: &Transaction,
    compression: Compression,
    diff: impl FnOnce(DiffSink<BlobWriter>) -> io::Result<(DiffReport, DiffSink<BlobWriter>)>,
) -> Result<Option<LayerInfo>, RunError> {
    let blob = store.blob_writer()?;
    // Reading the changes and writing the layer share one stream: the cause says which failed.
    let (diff_id, report, blob) = crate::layer::write_layer_diff(blob, compression, diff)
        .map_err(RunError::io("turn the changes into a layer"))?;
    if report.entries == 0 && report.whiteouts == 0 {
        // The staged blob is removed when dropped.
        return Ok(None);
    }
    let (digest, size) = blob.commit(store, None)?;
    Ok(Some(LayerInfo {
        descriptor: Descriptor::new(compression.media_type(), digest, size),
        diff_id,
    }))
}

/// RUN without a container: proot or chroot in a plain directory (see `runtime::isolation`).
pub struct IsolatedRunner {
    isolation: Isolation,
    binfmt: Binfmt,
    /// Emulators for proot, by platform, copied out of what the kernel's handlers hold.
    emulators: Mutex<HashMap<String, PathBuf>>,
    dir: tempfile::TempDir,
}

impl IsolatedRunner {
    pub fn new(isolation: Isolation) -> Result<IsolatedRunner, RuntimeError> {
        if isolation == Isolation::Proot && crate::runtime::find_program("proot").is_none() {
            return Err(RuntimeError::ProotNotFound);
        }
        let tmp = std::env::temp_dir();
        let dir = tempfile::Builder::new()
            .prefix("manifold-isolation-")
            .tempdir()
            .map_err(RuntimeError::io("create a temp directory in", &tmp))?;
        // Traversable, not listable: proot runs as the step's user, who must reach the root
        // (the store's own directories are its owner's alone).
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711))
            .map_err(RuntimeError::io("chmod", dir.path()))?;
        Ok(IsolatedRunner {
            isolation,
            binfmt: Binfmt::system(EmulatorSearch::from_env(None)),
            emulators: Mutex::new(HashMap::new()),
            dir,
        })
    }

    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// How foreign programs run: proot needs an emulator file of its own; chroot leaves them
    /// to the kernel's handler, which must be usable here.
    fn emulator(&self, platform: &Platform) -> Result<Option<PathBuf>, RunError> {
        let cannot = |source| RunError::Emulation {
            platform: platform.to_string(),
            source,
        };
        if self.isolation == Isolation::Chroot {
            self.binfmt.ensure(platform).map_err(cannot)?;
            return Ok(None);
        }
        let key = platform.to_string();
        let mut known = self.emulators.lock().expect("emulators");
        if let Some(p) = known.get(&key) {
            return Ok(Some(p.clone()));
        }
        let Some(mut file) = self.binfmt.emulator_file(platform).map_err(cannot)? else {
            return Ok(None);
        };
        let name = format!("qemu-{}", key.replace('/', "-"));
        let path = isolation::emulator_path(&mut file, self.dir.path(), &name)
            .map_err(RunError::io("copy the emulator"))?;
        known.insert(key, path.clone());
        Ok(Some(path))
    }
}

impl Runner for IsolatedRunner {
    fn run(&self, req: &RunRequest<'_>) -> Result<Option<LayerInfo>, RunError> {
        let op = req.op;
        if Network::from_build_flag(op.network.as_str()) == Some(Network::None) {
            return Err(RunError::NoNetworkNamespace(self.isolation));
        }
        let emulator = self.emulator(req.platform)?;
        let scratch = tempfile::Builder::new()
            .prefix("step-")
            .tempdir_in(self.dir.path())
            .map_err(RunError::io("create the step's root"))?;
        let dir = scratch.path().join("root");
        fs::create_dir(&dir).map_err(RunError::io("create the step's root"))?;
        for (d, mode) in [(scratch.path(), 0o711), (dir.as_path(), 0o755)] {
            fs::set_permissions(d, fs::Permissions::from_mode(mode))
                .map_err(RunError::io("create the step's root"))?;
        }
        let root = StepRoot::unpack(
            req.store,
            req.layers,
            req.diff_ids,
            &dir,
            crate::layer::Owners::Keep,
        )
        .map_err(RunError::isolated("unpack the stage's layers"))?;
        let files =
            crate::layer::InRoot::open(root.dir()).map_err(RunError::io("open the step's root"))?;
        let user = crate::runtime::user::resolve_in(&files, op.user.as_deref().unwrap_or(""))?;
        let hostname = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        let config = ImageConfig {
            config: Some(RunConfig {
                env: Some(op.env.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let env = crate::runtime::run::environment(&config, &[], &hostname, &user.home, false);
        let mut binds = isolated_binds(req)?;
        // chroot binds nothing: a here-document's script goes into the root for the step.
        let mut placed = Vec::new();
        if self.isolation == Isolation::Chroot {
            binds.retain(|b| {
                if !b.destination.starts_with("/dev/pipes/") {
                    return true;
                }
                placed.push(b.clone());
                false
            });
            for b in &placed {
                let inside = root.dir().join(b.destination.trim_start_matches('/'));
                let copied = inside
                    .parent()
                    .map_or(Ok(()), fs::create_dir_all)
                    .and_then(|()| fs::copy(&b.source, &inside).map(|_| ()));
                copied.map_err(RunError::io("write the script"))?;
            }
        }
        let step = Step {
            isolation: self.isolation,
            root: root.dir(),
            argv: &op.argv,
            env: &env,
            cwd: &op.workdir,
            user: &user,
            binds: &binds,
            emulator: emulator.as_deref(),
        };
        let mut child = step
            .command()
            .map_err(RunError::isolated("run the step"))?
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(RunError::io("start the step's command"))?;
        let status = pump(&mut child, req.output).map_err(RunError::io("wait for the step"))?;
        for b in &placed {
            let _ = fs::remove_file(root.dir().join(b.destination.trim_start_matches('/')));
            let _ = fs::remove_dir(root.dir().join("dev/pipes"));
        }
        if !status.success() {
            use std::os::unix::process::ExitStatusExt;
            let code = status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
            return Err(RunError::Exit {
                argv: op.argv.join(" "),
                code,
            });
        }
        diff_layer(req.store, req.compression, |w| {
            root.write_changes(w, req.epoch)
        })
    }
}
