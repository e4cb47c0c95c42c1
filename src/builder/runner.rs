//! RUN through the runtime: the stage's layers become snapshots (by chain ID), an overlay
//! mounts them with a fresh upper directory, the OCI runtime runs the command (a foreign
//! platform through QEMU, registered with `binfmt::ensure`), and the upper directory becomes the
//! step's layer (OCI whiteouts), its mtimes clamped to SOURCE_DATE_EPOCH when that is set.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::Mutex;

use super::layer::LayerInfo;
use super::run::{RunError, RunRequest, Runner};
use crate::binfmt::{Binfmt, EmulatorSearch};
use crate::layer::Compression;
use crate::oci::{Descriptor, ImageConfig, Manifest, Parsed, RunConfig, media_type};
use crate::progress::NoProgress;
use crate::runtime::{Bind, Network, RunOptions, Runtime, Security};
use crate::store::{Store, Transaction};

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
        store.put_bytes(&manifest.bytes)?;
        let mut binds = Vec::new();
        if let Some((name, content)) = &op.script {
            let dir = req.tmp.join("pipes");
            fs::create_dir_all(&dir).map_err(RunError::io("write the script"))?;
            let path = dir.join(name);
            fs::write(&path, content).map_err(RunError::io("write the script"))?;
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .map_err(RunError::io("write the script"))?;
            binds.push(Bind {
                source: path,
                destination: format!("/dev/pipes/{name}"),
                read_only: true,
            });
        }
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
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let status = std::thread::scope(|s| {
            let out = req.output;
            let pump = |r: Box<dyn Read + Send>| {
                for line in BufReader::new(r).lines() {
                    match line {
                        Ok(l) => out(&l),
                        Err(_) => break,
                    }
                }
            };
            s.spawn(move || pump(Box::new(stdout)));
            s.spawn(move || pump(Box::new(stderr)));
            child.wait()
        });
        let status = match status {
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
                diff_layer(store, &upper, req.compression, req.epoch)
            }
        };
        remove();
        result
    }
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

/// The upper directory as a layer (mtimes clamped when an epoch is given), written into the
/// store while it is read; None when the step changed nothing.
fn diff_layer(
    store: &Transaction,
    upper: &std::path::Path,
    compression: Compression,
    epoch: Option<u64>,
) -> Result<Option<LayerInfo>, RunError> {
    let blob = store.blob_writer()?;
    // Reading the changes and writing the layer share one stream: the cause says which failed.
    let (diff_id, report, blob) = crate::layer::write_layer_diff(upper, blob, compression, epoch)
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
