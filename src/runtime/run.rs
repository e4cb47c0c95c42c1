//! One container's life: snapshots → record and lease → overlay root → bundle → runtime →
//! exit status → cleanup.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::Utc;

use super::RuntimeError;
use super::containers::{
    ContainerDir, ContainerRecord, Containers, Owner, Reconciled, Status, new_id,
};
use super::network::{self, ContainerNetwork, Namespace, Network};
use super::oci_runtime::{OciRuntime, start_failure};
use super::overlay::{Method, Overlay};
use super::service::Service;
use super::snapshots::{LayerRef, Snapshots};
use super::spec::{self, Bind, SpecInput};
use super::sys::{RealSyscalls, Syscalls};
use super::user::{self, ExecUser};
use crate::layer::InRoot;
use crate::oci::{Digest, ImageConfig, Manifest};
use crate::platform::Platform;
use crate::progress::Progress;
use crate::store::{Store, private};

/// PATH when the image sets none (docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything `run` decided before a container exists.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The image as the user named it.
    pub image: String,
    /// The image's top-level descriptor digest (an index or the manifest itself).
    pub image_digest: Digest,
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    pub config_digest: Digest,
    pub config: ImageConfig,
    pub platform: Platform,
    /// The arguments after IMAGE (they replace the image's Cmd).
    pub args: Vec<String>,
    /// `--entrypoint` (`Some("")` clears the image's).
    pub entrypoint: Option<String>,
    /// `KEY=VALUE`, in order (`--env-file` lines, then `-e`); later ones win.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub network: Network,
    pub read_only: bool,
    pub binds: Vec<Bind>,
    pub tty: bool,
    pub auto_remove: bool,
    pub security: spec::Security,
    /// The container lives only as long as this process (a build's RUN step): when it is gone,
    /// the next `ps`, `rm` or `prune` kills and removes the container.
    pub ephemeral: bool,
    /// Published ports, health check, stop settings, log options, resource limits.
    pub service: Service,
}

/// The runtime side of manifold for one store root.
pub struct Runtime {
    store: Store,
    sys: Box<dyn Syscalls>,
    oci: OciRuntime,
    snapshots: Snapshots,
    containers: Containers,
    jobs: usize,
    private_mounts: AtomicBool,
}

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The container's exit status (128+N when killed by signal N).
    pub code: i32,
}

impl Runtime {
    pub fn new(store: &Store, runtime: &str) -> Result<Runtime, RuntimeError> {
        Runtime::with_syscalls(store, runtime, Box::new(RealSyscalls))
    }

    pub fn with_syscalls(
        store: &Store,
        runtime: &str,
        sys: Box<dyn Syscalls>,
    ) -> Result<Runtime, RuntimeError> {
        Ok(Runtime {
            store: store.clone(),
            oci: OciRuntime::find(runtime, store.root())?,
            snapshots: Snapshots::open(store.root())?,
            containers: Containers::open(store.root())?,
            sys,
            jobs: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .max(2),
            private_mounts: AtomicBool::new(false),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn containers(&self) -> &Containers {
        &self.containers
    }

    pub fn oci(&self) -> &OciRuntime {
        &self.oci
    }

    pub fn syscalls(&self) -> &dyn Syscalls {
        &*self.sys
    }

    pub fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }

    /// Move this thread (and every thread and process it starts from now on) into a mount
    /// namespace of its own; call it once from the main thread before the first [`create`].
    ///
    /// [`create`]: Runtime::create
    pub fn enter_private_mounts(&self) -> Result<(), RuntimeError> {
        if self.private_mounts.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.sys
            .private_mount_namespace()
            .map_err(RuntimeError::io(
                "create a mount namespace for",
                Path::new("manifold"),
            ))?;
        self.private_mounts.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Clean what killed manifold processes left (see `Containers::reconcile`).
    pub fn reconcile(&self) -> Result<Reconciled, RuntimeError> {
        let store_root = self.store.root().to_path_buf();
        let default = self.oci.clone();
        self.containers.reconcile(&*self.sys, &self.store, |name| {
            if name == default.name {
                Some(default.clone())
            } else {
                OciRuntime::find(name, &store_root).ok()
            }
        })
    }

    /// Set a container up to the point where the runtime can start it.
    pub fn create(
        &self,
        opts: &RunOptions,
        progress: &dyn Progress,
    ) -> Result<Prepared<'_>, RuntimeError> {
        assert!(
            self.private_mounts.load(Ordering::SeqCst),
            "Runtime::enter_private_mounts must be called before Runtime::create"
        );
        let diff_ids = &opts.config.rootfs.diff_ids;
        if diff_ids.len() != opts.manifest.layers.len() {
            return Err(RuntimeError::LayerCount {
                layers: opts.manifest.layers.len(),
                diff_ids: diff_ids.len(),
            });
        }
        let layers: Vec<LayerRef> = opts
            .manifest
            .layers
            .iter()
            .zip(diff_ids)
            .map(|(d, id)| LayerRef {
                descriptor: d.clone(),
                diff_id: id.clone(),
            })
            .collect();

        // Snapshots stay until the record (which keeps them from pruning) exists.
        let snapshot_lock = self.snapshots.shared()?;
        let chain_ids = self
            .snapshots
            .prepare(&self.store, &layers, self.jobs, progress)?;
        let args = command(&opts.config, opts.entrypoint.as_deref(), &opts.args)?;
        let record = ContainerRecord {
            id: new_id(),
            name: String::new(),
            image: opts.image.clone(),
            image_digest: opts.image_digest.clone(),
            manifest: opts.manifest_digest.clone(),
            config: opts.config_digest.clone(),
            platform: opts.platform.clone(),
            chain_ids: chain_ids.clone(),
            command: args.clone(),
            created: Utc::now(),
            runtime: self.oci.name.clone(),
            network: opts.network,
            auto_remove: opts.auto_remove,
            ephemeral: opts.ephemeral,
            status: Status::Created,
            owner: Some(Owner::current()),
            started: None,
            finished: None,
            exit_code: None,
            service: opts.service.clone(),
        };
        self.lease(&record, &opts.manifest)?;
        let record = match self.containers.create(record.clone(), opts.name.as_deref()) {
            Ok(r) => r,
            Err(e) => {
                let _ = self.store.remove_lease(&record.id);
                return Err(e);
            }
        };
        drop(snapshot_lock);
        let cdir = self.containers.dir_of(&record.id);
        let mut prepared = Prepared {
            rt: self,
            record,
            cdir,
            finished: false,
            method: None,
            network: None,
        };
        if let Err(e) = prepared.setup(opts, &chain_ids, args) {
            // Listed (unless --rm) with docker's status for what went wrong.
            let _ = prepared.abandon(e.exit_code() as i32);
            return Err(e);
        }
        Ok(prepared)
    }

    /// Make a stopped container ready to start again (`start`, `restart`): see
    /// [`Prepared::resume`]. On failure it is left exited, with docker's status for the cause.
    pub fn revive(&self, record: ContainerRecord) -> Result<Prepared<'_>, RuntimeError> {
        assert!(
            self.private_mounts.load(Ordering::SeqCst),
            "Runtime::enter_private_mounts must be called before Runtime::revive"
        );
        let cdir = self.containers.dir_of(&record.id);
        // What the last run left (it was cleaned when it ended, unless its manifold was killed).
        self.containers
            .release(&*self.sys, Some(&self.oci), &record.id)?;
        let mut prepared = Prepared {
            rt: self,
            record,
            cdir,
            finished: false,
            method: None,
            network: None,
        };
        if let Err(e) = prepared.resume() {
            let _ = prepared.abandon(e.exit_code() as i32);
            return Err(e);
        }
        Ok(prepared)
    }

    /// Keep the image's blobs while the container exists, whatever `rmi` and `prune` do.
    fn lease(&self, record: &ContainerRecord, manifest: &Manifest) -> Result<(), RuntimeError> {
        let txn = self.store.begin()?;
        let mut digests = vec![record.manifest.clone(), record.config.clone()];
        digests.extend(manifest.layers.iter().map(|l| l.digest.clone()));
        for d in &digests {
            if !txn.has_blob(d) {
                return Err(crate::store::StoreError::BlobNotFound(d.clone()).into());
            }
        }
        if txn.has_blob(&record.image_digest) {
            digests.push(record.image_digest.clone());
        }
        txn.add_lease(&record.id, digests)?;
        Ok(())
    }
}

/// Entrypoint and Cmd combined as docker does: `--entrypoint` replaces the image's entrypoint
/// and drops its Cmd; arguments replace the Cmd.
pub fn command(
    config: &ImageConfig,
    entrypoint: Option<&str>,
    args: &[String],
) -> Result<Vec<String>, RuntimeError> {
    let rc = config.config.clone().unwrap_or_default();
    let (entry, default_cmd) = match entrypoint {
        Some("") => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.to_string()], Vec::new()),
        None => (
            rc.entrypoint.unwrap_or_default(),
            rc.cmd.unwrap_or_default(),
        ),
    };
    let cmd = if args.is_empty() {
        default_cmd
    } else {
        args.to_vec()
    };
    let all: Vec<String> = entry.into_iter().chain(cmd).collect();
    if all.is_empty() {
        return Err(RuntimeError::NoCommand);
    }
    Ok(all)
}

/// The environment: the image's, then the user's (later wins), with PATH, HOSTNAME, HOME and
/// (with a terminal) TERM filled in when missing.
pub fn environment(
    config: &ImageConfig,
    user_env: &[String],
    hostname: &str,
    home: &str,
    tty: bool,
) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let set = |env: &mut Vec<String>, kv: &str| {
        let key = kv.split_once('=').map_or(kv, |(k, _)| k);
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        env.push(kv.to_string());
    };
    for e in config
        .config
        .as_ref()
        .and_then(|c| c.env.as_ref())
        .into_iter()
        .flatten()
        .chain(user_env)
    {
        set(&mut env, e);
    }
    let has = |env: &Vec<String>, k: &str| env.iter().any(|e| e.starts_with(&format!("{k}=")));
    if !has(&env, "PATH") {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&env, "HOSTNAME") {
        env.push(format!("HOSTNAME={hostname}"));
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={home}"));
    }
    if tty && !has(&env, "TERM") {
        env.push("TERM=xterm".into());
    }
    env
}

/// A container set up and not yet finished. Dropping it without [`Prepared::finish`] (an error
/// on the way) cleans up as if it had exited.
pub struct Prepared<'a> {
    rt: &'a Runtime,
    record: ContainerRecord,
    cdir: ContainerDir,
    finished: bool,
    method: Option<Method>,
    /// The container's network (its forwarder runs until the container is cleaned up).
    network: Option<ContainerNetwork>,
}

impl<'a> Prepared<'a> {
    pub fn record(&self) -> &ContainerRecord {
        &self.record
    }

    pub fn runtime(&self) -> &'a Runtime {
        self.rt
    }

    pub fn container_dir(&self) -> &ContainerDir {
        &self.cdir
    }

    /// How the overlay root was mounted.
    pub fn mount_method(&self) -> Option<Method> {
        self.method
    }

    pub fn rootfs(&self) -> PathBuf {
        self.cdir.rootfs()
    }

    fn setup(
        &mut self,
        opts: &RunOptions,
        chain_ids: &[Digest],
        args: Vec<String>,
    ) -> Result<(), RuntimeError> {
        let cdir = self.cdir.clone();
        // The forwarder configures the namespace while the root is prepared.
        let namespace = self.start_network(opts.network, &opts.service)?;
        self.mount_root(chain_ids)?;

        let root =
            InRoot::open(&cdir.rootfs()).map_err(RuntimeError::io("open", &cdir.rootfs()))?;
        // runc's rule (libcontainer/user's GetExecUserPath): a passwd or group file that
        // cannot be read is absent; `read` takes regular files only, so a FIFO in its place
        // cannot block the start.
        let read = |p: &str| {
            root.read(Path::new(p), 4 << 20)
                .ok()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        let (passwd, group) = (read("/etc/passwd"), read("/etc/group"));
        let user_spec = opts
            .user
            .clone()
            .or_else(|| opts.config.config.as_ref().and_then(|c| c.user.clone()))
            .unwrap_or_default();
        let exec_user: ExecUser = user::resolve(&user_spec, passwd.as_deref(), group.as_deref())?;
        let mut binds = opts.binds.clone();
        binds.extend(self.mask_special_account_files(&root)?);

        let workdir = opts
            .workdir
            .clone()
            .or_else(|| {
                opts.config
                    .config
                    .as_ref()
                    .and_then(|c| c.working_dir.clone())
            })
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into());
        if !workdir.starts_with('/') {
            return Err(RuntimeError::RelativeWorkdir(workdir));
        }
        root.create_dir_all(Path::new(&workdir))
            .map_err(RuntimeError::io(
                "create the working directory",
                Path::new(&workdir),
            ))?;

        let hostname = match (&opts.hostname, opts.network) {
            (Some(h), _) => h.clone(),
            (None, Network::Host) => rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned(),
            (None, Network::None | Network::Private) => self.record.short_id().to_string(),
        };
        let env = environment(
            &opts.config,
            &opts.env,
            &hostname,
            &exec_user.home,
            opts.tty,
        );
        check_command(&root, &args[0], &env, &workdir)?;
        self.write_etc_files(&hostname, opts.network)?;

        let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        let hard = nofile.maximum.unwrap_or(1 << 20);
        let soft = nofile.current.unwrap_or(hard);
        let mut annotations = HashMap::new();
        annotations.insert(
            "org.opencontainers.image.ref.name".to_string(),
            opts.image.clone(),
        );
        annotations.insert(
            "io.manifold.platform".to_string(),
            opts.platform.to_string(),
        );
        let input = SpecInput {
            args,
            env,
            cwd: workdir,
            user: exec_user,
            terminal: opts.tty,
            console_size: if opts.tty { terminal_size() } else { None },
            hostname,
            read_only: opts.read_only,
            network: namespace,
            binds,
            hosts: cdir.dir.join("hosts"),
            hostname_file: cdir.dir.join("hostname"),
            resolv_conf: cdir.dir.join("resolv.conf"),
            nofile: (soft, hard),
            cgroups_path: format!("/manifold/{}", self.record.id),
            annotations,
            resources: opts.service.resources,
            security: opts.security.clone(),
            host: spec::Host::current().clone(),
        };
        let spec = spec::build(&input);
        // It holds the environment (`-e PASSWORD=…`): the owner's alone.
        let config = cdir.bundle_config();
        let bytes = serde_json::to_vec(&spec).expect("a runtime spec serialises");
        private::write_file(&config, &bytes).map_err(RuntimeError::io("write", &config))?;
        if let Some(net) = self.network.as_mut() {
            net.wait_ready()?;
        }
        Ok(())
    }

    fn start_network(
        &mut self,
        mode: Network,
        service: &Service,
    ) -> Result<Namespace, RuntimeError> {
        let dir = &self.cdir.dir;
        let net = self.network.insert(ContainerNetwork::start(
            mode,
            &dir.join("network.log"),
            &service.ports,
            dir,
        )?);
        Ok(net.namespace())
    }

    fn mount_root(&mut self, chain_ids: &[Digest]) -> Result<(), RuntimeError> {
        let rt = self.rt;
        let cdir = &self.cdir;
        let mut lowers: Vec<PathBuf> = chain_ids
            .iter()
            .rev()
            .map(|c| rt.snapshots.fs_path(c))
            .collect();
        if lowers.is_empty() {
            let empty = cdir.empty_lower();
            fs::create_dir_all(&empty).map_err(RuntimeError::io("create", &empty))?;
            lowers.push(empty);
        }
        let overlay = Overlay {
            lowers,
            upper: cdir.upper(),
            work: cdir.work(),
            target: cdir.rootfs(),
            links_dir: cdir.links(),
        };
        self.method = Some(
            overlay
                .mount(&*rt.sys)
                .map_err(|source| RuntimeError::Mount {
                    target: cdir.rootfs(),
                    source,
                })?,
        );
        Ok(())
    }

    /// A stopped container made ready to start again: its network (ports forwarded again), its
    /// root mounted anew, its bundle pointed at the new network namespace.
    fn resume(&mut self) -> Result<(), RuntimeError> {
        let record = self.record.clone();
        let namespace = self.start_network(record.network, &record.service)?;
        // overlayfs's scratch space, with the mark a `volatile` mount leaves there (which makes
        // the next mount fail). The upper directory is whole: the last mount was unmounted when
        // the container stopped (a crash of the machine while it ran may have lost its last
        // writes, as volatile says).
        let work = self.cdir.work();
        crate::layer::walk::remove_contents(&work, &[])
            .map_err(RuntimeError::io("empty", &work))?;
        self.mount_root(&record.chain_ids)?;
        let config = self.cdir.bundle_config();
        let bytes = fs::read(&config).map_err(RuntimeError::io("read", &config))?;
        let mut spec: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            RuntimeError::io("parse", &config)(io::Error::new(io::ErrorKind::InvalidData, e))
        })?;
        if let (Namespace::Join(path), Some(namespaces)) =
            (&namespace, spec["linux"]["namespaces"].as_array_mut())
        {
            for ns in namespaces.iter_mut().filter(|ns| ns["type"] == "network") {
                ns["path"] = serde_json::json!(path);
            }
        }
        let bytes = serde_json::to_vec(&spec).expect("a runtime spec serialises");
        private::write_file(&config, &bytes).map_err(RuntimeError::io("write", &config))?;
        if let Some(net) = self.network.as_mut() {
            net.wait_ready()?;
        }
        Ok(())
    }

    /// runc (1.1) opens the container's /etc/passwd and /etc/group itself before it starts
    /// the process, with a plain open(2): a FIFO there would block it forever, a device be read
    /// as one. Over such a file goes an empty, read-only regular file, which reads as absent
    /// (what manifold made of it). A directory is left to fail in the runtime, naming the file.
    fn mask_special_account_files(&self, root: &InRoot) -> Result<Vec<Bind>, RuntimeError> {
        use rustix::fs::FileType;
        let mut binds = Vec::new();
        for file in ["/etc/passwd", "/etc/group"] {
            let Ok(st) = root.stat(Path::new(file)) else {
                continue;
            };
            if matches!(
                FileType::from_raw_mode(st.st_mode),
                FileType::RegularFile | FileType::Directory
            ) {
                continue;
            }
            let empty = self.cdir.dir.join("empty");
            fs::write(&empty, "").map_err(RuntimeError::io("write", &empty))?;
            binds.push(Bind {
                source: empty,
                destination: file.to_string(),
                read_only: true,
            });
        }
        Ok(binds)
    }

    fn write_etc_files(&self, hostname: &str, network: Network) -> Result<(), RuntimeError> {
        let dir = &self.cdir.dir;
        let host_hosts = fs::read_to_string("/etc/hosts").ok();
        let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        for (name, text) in [
            (
                "hosts",
                network::hosts(network, hostname, host_hosts.as_deref()),
            ),
            ("hostname", format!("{hostname}\n")),
            ("resolv.conf", network::resolv_conf(network, &host_resolv)),
        ] {
            // Bind-mounted where the container's user reads them: not private, but out of
            // reach in the private container directory.
            let p = dir.join(name);
            fs::write(&p, text).map_err(RuntimeError::io("write", &p))?;
        }
        Ok(())
    }

    /// The runtime's command for this container, stdio to be chosen by the caller.
    pub fn command(&self) -> Command {
        self.rt
            .oci
            .run_command(&self.cdir.dir, &self.record.id, &self.cdir.log())
    }

    /// Start the runtime and mark the container running.
    pub fn spawn(
        &mut self,
        stdin: Stdio,
        stdout: Stdio,
        stderr: Stdio,
    ) -> Result<Child, RuntimeError> {
        let child = self
            .command()
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(RuntimeError::io("start", &self.rt.oci.program))?;
        self.mark_running()?;
        Ok(child)
    }

    /// The runtime's command starting this container detached, its first process's PID to
    /// `pid_file` (see `OciRuntime::run_detached_command`); stdio to be chosen by the caller.
    pub fn detached_command(&self, pid_file: &Path, console_socket: Option<&Path>) -> Command {
        self.rt.oci.run_detached_command(
            &self.cdir.dir,
            &self.record.id,
            &self.cdir.log(),
            pid_file,
            console_socket,
        )
    }

    /// Record that the container runs, owned by this process.
    pub fn mark_running(&mut self) -> Result<(), RuntimeError> {
        self.record = self.rt.containers.update(&self.record.id, |r| {
            r.status = Status::Running;
            r.started = Some(Utc::now());
            r.owner = Some(Owner::current());
        })?;
        Ok(())
    }

    /// Record how the runtime ended, unmount, and remove the container with `--rm`. A runtime
    /// that could not start the process is an error carrying docker's exit status.
    pub fn finish(mut self, status: ExitStatus) -> Result<Exit, RuntimeError> {
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        let failure = (code != 0)
            .then(|| start_failure(&self.cdir.log()))
            .flatten();
        let recorded = match &failure {
            Some(f) => f.exit_code() as i32,
            None => code,
        };
        self.finished = true;
        self.cleanup(Some(recorded))?;
        match failure {
            Some(f) => Err(RuntimeError::StartFailed {
                code: f.exit_code(),
                message: f
                    .message
                    .trim_start_matches("runc run failed: ")
                    .to_string(),
            }),
            None => Ok(Exit { code }),
        }
    }

    fn cleanup(&mut self, exit_code: Option<i32>) -> Result<(), RuntimeError> {
        let rt = self.rt;
        let id = self.record.id.clone();
        // The forwarder goes down (the kernel tears its tap device down) while the rest is
        // cleaned; it is reaped at the end (or when `network` drops, on an error).
        if let Some(net) = self.network.as_mut() {
            net.kill();
        }
        rt.containers.release(&*rt.sys, Some(&rt.oci), &id)?;
        if self.record.auto_remove {
            rt.containers.remove(&*rt.sys, None, &rt.store, &id)?;
        } else {
            self.record = rt.containers.update(&id, |r| {
                r.status = Status::Exited;
                r.exit_code = exit_code;
                r.finished = Some(Utc::now());
                // An ephemeral container stays its owner's, to be removed with it.
                if !r.ephemeral {
                    r.owner = None;
                }
            })?;
        }
        if let Some(mut net) = self.network.take() {
            net.stop();
        }
        Ok(())
    }

    /// Give up on a container that failed before it started (records `code` as its exit).
    pub fn abandon(mut self, code: i32) -> Result<(), RuntimeError> {
        self.finished = true;
        self.cleanup(Some(code))
    }
}

impl Drop for Prepared<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.cleanup(Some(125));
        }
    }
}

/// docker's checks before starting: the command exists (127) and can be executed (126),
/// looked up in the container's PATH inside its root.
pub(crate) fn check_command(
    root: &InRoot,
    command: &str,
    env: &[String],
    workdir: &str,
) -> Result<(), RuntimeError> {
    use rustix::fs::FileType;
    let candidates: Vec<PathBuf> = if command.contains('/') {
        vec![if command.starts_with('/') {
            PathBuf::from(command)
        } else {
            Path::new(workdir).join(command)
        }]
    } else {
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        path.split(':')
            .filter(|d| d.starts_with('/'))
            .map(|d| Path::new(d).join(command))
            .collect()
    };
    let mut not_executable = None;
    for c in &candidates {
        let Ok(st) = root.stat(c) else {
            continue;
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile if st.st_mode & 0o111 != 0 => {
                // Neither a program nor a script: the kernel would refuse it (ENOEXEC), and
                // the runtime would only say so after the container started (status 1).
                let head = root.read(c, 4).unwrap_or_default();
                if head.len() == 4 && !head.starts_with(b"\x7fELF") && !head.starts_with(b"#!") {
                    return Err(RuntimeError::NotExecutable {
                        command: command.to_string(),
                        why: "exec format error".into(),
                    });
                }
                return Ok(());
            }
            FileType::Directory => {
                not_executable.get_or_insert("is a directory");
            }
            _ => {
                not_executable.get_or_insert("permission denied");
            }
        }
        if command.contains('/') {
            break;
        }
    }
    match not_executable {
        Some(why) => Err(RuntimeError::NotExecutable {
            command: command.to_string(),
            why: why.to_string(),
        }),
        None if command.contains('/') => Err(RuntimeError::NoSuchFile(command.to_string())),
        None => Err(RuntimeError::CommandNotFound(command.to_string())),
    }
}

/// (rows, columns) of the terminal on stdout, stdin or stderr.
pub fn terminal_size() -> Option<(u16, u16)> {
    use std::os::fd::AsFd;
    let out = io::stdout();
    let inp = io::stdin();
    let err = io::stderr();
    for fd in [out.as_fd(), inp.as_fd(), err.as_fd()] {
        if let Ok(ws) = rustix::termios::tcgetwinsize(fd)
            && ws.ws_row > 0
        {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::RunConfig;

    fn config(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>, env: &[&str]) -> ImageConfig {
        ImageConfig {
            config: Some(RunConfig {
                entrypoint: entrypoint.map(|e| e.iter().map(|s| s.to_string()).collect()),
                cmd: cmd.map(|e| e.iter().map(|s| s.to_string()).collect()),
                env: Some(env.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn entrypoint_and_cmd_like_docker() {
        let c = config(Some(&["/entry"]), Some(&["default"]), &[]);
        assert_eq!(command(&c, None, &[]).unwrap(), v(&["/entry", "default"]));
        assert_eq!(command(&c, None, &v(&["x"])).unwrap(), v(&["/entry", "x"]));
        assert_eq!(command(&c, Some("sh"), &[]).unwrap(), v(&["sh"]));
        assert_eq!(
            command(&c, Some("sh"), &v(&["-c", "true"])).unwrap(),
            v(&["sh", "-c", "true"])
        );
        assert_eq!(command(&c, Some(""), &v(&["true"])).unwrap(), v(&["true"]));
        assert!(matches!(
            command(&c, Some(""), &[]),
            Err(RuntimeError::NoCommand)
        ));
        let none = config(None, None, &[]);
        assert!(matches!(
            command(&none, None, &[]),
            Err(RuntimeError::NoCommand)
        ));
    }

    #[test]
    fn environment_like_docker() {
        let c = config(None, None, &["PATH=/img/bin", "A=image", "B=image"]);
        let env = environment(&c, &v(&["A=user", "C=new"]), "box", "/root", false);
        assert_eq!(
            env,
            v(&[
                "PATH=/img/bin",
                "B=image",
                "A=user",
                "C=new",
                "HOSTNAME=box",
                "HOME=/root"
            ])
        );
        let bare = ImageConfig::default();
        let env = environment(&bare, &[], "h", "/", true);
        assert_eq!(env[0], format!("PATH={DEFAULT_PATH}"));
        assert!(env.contains(&"TERM=xterm".to_string()));
    }

    #[test]
    fn commands_are_looked_up_in_the_root() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("bin")).unwrap();
        fs::create_dir_all(r.join("usr/bin/dir")).unwrap();
        fs::write(r.join("bin/tool"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(r.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(r.join("bin/data"), "x").unwrap();
        fs::set_permissions(r.join("bin/data"), fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink("/bin/tool", r.join("usr/bin/linked")).unwrap();
        let root = InRoot::open(r).unwrap();
        let env = v(&["PATH=/usr/bin:/bin"]);
        check_command(&root, "tool", &env, "/").unwrap();
        check_command(&root, "linked", &env, "/").unwrap();
        check_command(&root, "/bin/tool", &env, "/").unwrap();
        check_command(&root, "./tool", &env, "/bin").unwrap();
        let e = check_command(&root, "nosuch", &env, "/").unwrap_err();
        assert_eq!(e.exit_code(), 127);
        assert_eq!(
            e.to_string(),
            "exec: \"nosuch\": executable file not found in $PATH"
        );
        let e = check_command(&root, "data", &env, "/").unwrap_err();
        assert_eq!(e.exit_code(), 126);
        let e = check_command(&root, "/usr/bin/dir", &env, "/").unwrap_err();
        assert_eq!(e.exit_code(), 126);
        let e = check_command(&root, "/bin/none", &env, "/").unwrap_err();
        assert_eq!(e.exit_code(), 127);
        fs::write(r.join("bin/junk"), "not a program").unwrap();
        fs::set_permissions(r.join("bin/junk"), fs::Permissions::from_mode(0o755)).unwrap();
        let e = check_command(&root, "junk", &env, "/").unwrap_err();
        assert_eq!(e.to_string(), "exec: \"junk\": exec format error");
        assert_eq!(e.exit_code(), 126);
    }
}
