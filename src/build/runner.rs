//! RUN through the runtime: the stage's layers become snapshots (by chain ID), an overlay
//! mounts them with a fresh upper directory, the OCI runtime runs the command (a foreign
//! platform through QEMU, registered with `binfmt::ensure`), and the upper directory becomes the
//! step's layer (OCI whiteouts), its mtimes clamped to SOURCE_DATE_EPOCH when that is set.
//!
//! Where no container can be made (an unprivileged build container), [`IsolatedRunner`] runs
//! the step under proot or chroot in a plain directory holding the stage's layers, and the
//! changes found against a record of it become the layer (see `runtime::isolation`).

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::process::Stdio;
use std::sync::Mutex;

use super::layer::{Compression, LayerInfo};
use super::run::{RunRequest, Runner};
use crate::binfmt::{Binfmt, EmulatorSearch};
use crate::oci::{
    Algorithm, Descriptor, HashingWriter, ImageConfig, Manifest, Parsed, RunConfig, media_type,
};
use crate::progress::NoProgress;
use crate::runtime::isolation::{self, Isolation, Step, StepRoot};
use crate::runtime::{Bind, Network, RunOptions, Runtime, Security};
use crate::store::Store;

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

fn io_msg(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

impl Runner for RuntimeRunner {
    fn run(&self, req: &RunRequest<'_>) -> Result<Option<LayerInfo>, String> {
        {
            let _l = self.ensure_lock.lock().expect("binfmt lock");
            self.binfmt.ensure(req.platform).map_err(|e| {
                let mut m = format!("cannot run {} programs here: {e}", req.platform);
                if let Some(h) = e.hint() {
                    m.push_str(&format!(" ({h})"));
                }
                m
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
        store.put_bytes(&config.bytes).map_err(|e| e.to_string())?;
        let manifest = Parsed::from_value(Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.into()),
            artifact_type: None,
            config: config.descriptor(media_type::OCI_CONFIG),
            layers: req.layers.to_vec(),
            subject: None,
            annotations: None,
            extra: Default::default(),
        });
        store
            .put_bytes(&manifest.bytes)
            .map_err(|e| e.to_string())?;
        let binds = step_binds(req)?;
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
            env: Vec::new(),
            workdir: Some(op.workdir.clone()),
            user: op.user.clone(),
            name: None,
            hostname: None,
            // The plan checked the value: anything else is the default.
            network: Network::from_build_flag(&op.network).unwrap_or(Network::Private),
            read_only: false,
            binds,
            tty: false,
            auto_remove: false,
            security: Security::default(),
            ephemeral: true,
        };
        let mut prepared = self
            .rt
            .create(&opts, &NoProgress)
            .map_err(|e| format!("cannot create the container: {e}"))?;
        let id = prepared.record().id.clone();
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
                return Err(format!("cannot start the container: {e}"));
            }
        };
        let status = match pump(&mut child, req.output) {
            Ok(s) => s,
            Err(e) => {
                drop(prepared);
                remove();
                return Err(format!("cannot wait for the container: {e}"));
            }
        };
        let exit = prepared.finish(status);
        let upper = self.rt.containers().dir_of(&id).upper();
        let result = match exit {
            Err(e) => Err(e.to_string()),
            Ok(x) if x.code != 0 => Err(format!(
                "process \"{}\" did not complete successfully: exit code: {}",
                op.argv.join(" "),
                x.code
            )),
            Ok(_) => {
                // The mount points of --mount are not the step's doing either.
                for m in &op.mounts {
                    let _ = fs::remove_dir(upper.join(m.target.trim_start_matches('/')));
                }
                tidy_upper(&upper);
                let cdir = self.rt.containers().dir_of(&id);
                let targets: Vec<std::path::PathBuf> = op
                    .mounts
                    .iter()
                    .map(|m| std::path::PathBuf::from(m.target.trim_start_matches('/')))
                    .chain(op.script.iter().map(|_| "dev/pipes".into()))
                    .collect();
                let targets: Vec<&std::path::Path> = targets.iter().map(|p| p.as_path()).collect();
                diff_layer(store, req.compression, req.epoch, req.tmp, |out| {
                    crate::runtime::rootfs::write_changes(&cdir, &targets, out)
                })
            }
        };
        remove();
        result
    }
}

/// What the step binds into its root: a here-document's script at `/dev/pipes/NAME`, and each
/// `--mount` (a cache directory of the store, or an empty one for tmpfs).
fn step_binds(req: &RunRequest<'_>) -> Result<Vec<Bind>, String> {
    let op = req.op;
    let store = req.store;
    let mut binds = Vec::new();
    if let Some((name, content)) = &op.script {
        let dir = req.tmp.join("pipes");
        fs::create_dir_all(&dir).map_err(|e| io_msg("cannot write the script", e))?;
        let path = dir.join(name);
        fs::write(&path, content).map_err(|e| io_msg("cannot write the script", e))?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .map_err(|e| io_msg("cannot write the script", e))?;
        binds.push(Bind {
            source: path,
            destination: format!("/dev/pipes/{name}"),
            read_only: true,
        });
    }
    for (i, m) in op.mounts.iter().enumerate() {
        let source = match m.kind.as_str() {
            "cache" => {
                let dir = super::cache::Cache::mount_dir(store, &m.id)
                    .map_err(|e| io_msg("cannot create the cache mount", e))?;
                if !dir.is_dir() {
                    // The mode the container sees; `mount_dir`'s private parent keeps the
                    // host's other users away from it.
                    fs::create_dir_all(&dir)
                        .map_err(|e| io_msg("cannot create the cache mount", e))?;
                    use std::os::unix::fs::PermissionsExt;
                    fs::set_permissions(&dir, fs::Permissions::from_mode(m.mode))
                        .map_err(|e| io_msg("cannot create the cache mount", e))?;
                    std::os::unix::fs::chown(&dir, Some(m.uid as u32), Some(m.gid as u32))
                        .map_err(|e| io_msg("cannot create the cache mount", e))?;
                }
                dir
            }
            _ => {
                let dir = req.tmp.join(format!("tmpfs-{i}"));
                fs::create_dir_all(&dir).map_err(|e| io_msg("cannot create the tmpfs mount", e))?;
                dir
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

/// What a step changed as a layer: the OCI diff (`diff`: an upper directory's, or a plain
/// root's against its record) into a temp file, then (mtimes clamped when an epoch is given)
/// compressed into the store.
fn diff_layer(
    store: &Store,
    compression: Compression,
    epoch: Option<u64>,
    tmp: &std::path::Path,
    diff: impl FnOnce(
        io::BufWriter<fs::File>,
    ) -> io::Result<(crate::layer::DiffReport, io::BufWriter<fs::File>)>,
) -> Result<Option<LayerInfo>, String> {
    let raw_path = tmp.join("diff.tar");
    let raw = fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&raw_path)
        .map_err(|e| io_msg("cannot write the diff", e))?;
    let (report, raw) =
        diff(io::BufWriter::new(raw)).map_err(|e| io_msg("cannot read the changes", e))?;
    let mut raw = raw
        .into_inner()
        .map_err(|e| io_msg("cannot write the diff", e.error()))?;
    if report.entries == 0 && report.whiteouts == 0 {
        return Ok(None);
    }
    raw.rewind()
        .map_err(|e| io_msg("cannot read the diff", e))?;
    let blob = store.blob_writer().map_err(|e| e.to_string())?;
    let write = |out: &mut dyn Write| -> io::Result<crate::oci::Digest> {
        let mut hashing = HashingWriter::new(out, Algorithm::Sha256);
        match epoch {
            None => {
                io::copy(&mut io::BufReader::new(&raw), &mut hashing)?;
            }
            Some(e) => {
                let mut archive = tar::Archive::new(io::BufReader::new(&raw));
                let mut b = tar::Builder::new(&mut hashing);
                for entry in archive.entries()? {
                    let mut entry = entry?;
                    let mut h = entry.header().clone();
                    if h.mtime().unwrap_or(0) > e {
                        h.set_mtime(e);
                    }
                    let path = entry.path()?.into_owned();
                    match h.entry_type() {
                        tar::EntryType::Symlink | tar::EntryType::Link => {
                            let target = entry
                                .link_name()?
                                .map(|l| l.into_owned())
                                .unwrap_or_default();
                            b.append_link(&mut h, &path, target)?;
                        }
                        _ => b.append_data(&mut h, &path, &mut entry)?,
                    }
                }
                b.finish()?;
            }
        }
        let (_, digest, _) = hashing.finish();
        Ok(digest)
    };
    let (blob, diff_id) = match compression {
        Compression::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(blob, flate2::Compression::new(6));
            let d = write(&mut gz).map_err(|e| io_msg("cannot write the layer", e))?;
            (
                gz.finish()
                    .map_err(|e| io_msg("cannot write the layer", e))?,
                d,
            )
        }
        Compression::Zstd => {
            let mut z = zstd::stream::write::Encoder::new(blob, 3)
                .map_err(|e| io_msg("cannot write the layer", e))?;
            let d = write(&mut z).map_err(|e| io_msg("cannot write the layer", e))?;
            (
                z.finish()
                    .map_err(|e| io_msg("cannot write the layer", e))?,
                d,
            )
        }
    };
    let (digest, size) = blob.commit(store, None).map_err(|e| e.to_string())?;
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
    emulators: Mutex<std::collections::HashMap<String, std::path::PathBuf>>,
    dir: tempfile::TempDir,
}

impl IsolatedRunner {
    pub fn new(isolation: Isolation) -> Result<IsolatedRunner, crate::runtime::RuntimeError> {
        if isolation == Isolation::Proot && crate::runtime::find_program("proot").is_none() {
            return Err(crate::runtime::RuntimeError::ProotNotFound);
        }
        let tmp = std::env::temp_dir();
        let dir = tempfile::Builder::new()
            .prefix("manifold-isolation-")
            .tempdir()
            .map_err(crate::runtime::RuntimeError::io(
                "create a temp directory in",
                &tmp,
            ))?;
        // Traversable, not listable: proot runs as the step's user, who must reach the root
        // (the store's own directories are its owner's alone).
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711))
            .map_err(crate::runtime::RuntimeError::io("chmod", dir.path()))?;
        Ok(IsolatedRunner {
            isolation,
            binfmt: Binfmt::system(EmulatorSearch::from_env(None)),
            emulators: Mutex::new(Default::default()),
            dir,
        })
    }

    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// How foreign programs run: proot needs an emulator file of its own; chroot leaves them
    /// to the kernel's handler, which must be usable here.
    fn emulator(
        &self,
        platform: &crate::platform::Platform,
    ) -> Result<Option<std::path::PathBuf>, String> {
        let cannot = |e: crate::binfmt::BinfmtError| {
            let mut m = format!("cannot run {platform} programs here: {e}");
            if let Some(h) = e.hint() {
                m.push_str(&format!(" ({h})"));
            }
            m
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
            .map_err(|e| io_msg("cannot copy the emulator", e))?;
        known.insert(key, path.clone());
        Ok(Some(path))
    }
}

impl Runner for IsolatedRunner {
    fn run(&self, req: &RunRequest<'_>) -> Result<Option<LayerInfo>, String> {
        let op = req.op;
        if Network::from_build_flag(&op.network) == Some(Network::None) {
            return Err(format!(
                "RUN --network=none needs a network namespace, which `--isolation {}` cannot make",
                self.isolation
            ));
        }
        let emulator = self.emulator(req.platform)?;
        let scratch = tempfile::Builder::new()
            .prefix("step-")
            .tempdir_in(self.dir.path())
            .map_err(|e| io_msg("cannot create the step's root", e))?;
        let dir = scratch.path().join("root");
        fs::create_dir(&dir).map_err(|e| io_msg("cannot create the step's root", e))?;
        use std::os::unix::fs::PermissionsExt;
        for d in [scratch.path(), &dir] {
            fs::set_permissions(
                d,
                fs::Permissions::from_mode(if d == dir { 0o755 } else { 0o711 }),
            )
            .map_err(|e| io_msg("cannot create the step's root", e))?;
        }
        let root = StepRoot::unpack(
            req.store,
            req.layers,
            req.diff_ids,
            &dir,
            crate::layer::Owners::Keep,
        )
        .map_err(|e| format!("cannot unpack the stage's layers: {e}"))?;
        let files = crate::layer::InRoot::open(root.dir())
            .map_err(|e| io_msg("cannot open the step's root", e))?;
        let read = |p: &str| {
            files
                .read(std::path::Path::new(p), 4 << 20)
                .ok()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        let user = crate::runtime::user::resolve(
            op.user.as_deref().unwrap_or(""),
            read("/etc/passwd").as_deref(),
            read("/etc/group").as_deref(),
        )
        .map_err(|e| e.to_string())?;
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
        let mut binds = step_binds(req)?;
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
                copied.map_err(|e| io_msg("cannot write the script", e))?;
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
            .map_err(|e| {
                let mut m = format!("cannot run the step: {e}");
                if let Some(h) = e.hint() {
                    m.push_str(&format!(" ({h})"));
                }
                m
            })?
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io_msg(&format!("cannot start `{}`", op.argv[0]), e))?;
        let status =
            pump(&mut child, req.output).map_err(|e| io_msg("cannot wait for the step", e))?;
        for b in &placed {
            let _ = fs::remove_file(root.dir().join(b.destination.trim_start_matches('/')));
            let _ = fs::remove_dir(root.dir().join("dev/pipes"));
        }
        if !status.success() {
            use std::os::unix::process::ExitStatusExt;
            let code = status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
            return Err(format!(
                "process \"{}\" did not complete successfully: exit code: {code}",
                op.argv.join(" ")
            ));
        }
        diff_layer(req.store, req.compression, req.epoch, req.tmp, |out| {
            root.write_changes(out)
        })
    }
}
