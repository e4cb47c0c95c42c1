//! Containers: snapshots by chain ID, an overlayfs root over them, an OCI runtime bundle
//! (oci-spec) from the image config, executed by an OCI runtime (runc by default); container
//! records for `ps`, `rm` and `commit`; service containers (`service`): detached under a
//! monitor of manifold's own (`monitor`), with published ports (`ports`), a log (`logs`),
//! processes exec'd into them (`exec`), health checks (`health`) and resource limits
//! (`resources`).
//!
//! Mounts are made in a private mount namespace of the manifold process (slave propagation:
//! nothing propagates back to the host), which the runtime inherits: when manifold and the
//! container are gone, so are the mounts, even when manifold was killed. The records and the
//! runtime's state are what a killed manifold can leave; `Containers::reconcile` cleans them.

pub mod commit;
pub mod containers;
pub mod exec;
pub mod health;
pub mod logs;
pub mod monitor;
pub mod network;
pub mod oci_runtime;
pub mod overlay;
pub mod ports;
pub mod resources;
pub mod run;
pub mod service;
pub mod signals;
pub mod snapshots;
pub mod spec;
pub mod sys;
pub mod user;

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

pub use containers::{ContainerRecord, Containers, Reconciled, Status};
pub use network::Network;
pub use oci_runtime::OciRuntime;
pub use run::{Prepared, RunOptions, Runtime};
pub use snapshots::{Snapshots, SnapshotsPruned};
pub use spec::{Bind, Security, SecurityFlags};

use crate::hint::Hint;
use crate::layer::LayerError;
use crate::oci::{Digest, Document};
use crate::space::NoSpace;
use crate::store::{Store, StoreError};

/// docker's exit status when the command is not found.
pub const EXIT_NOT_FOUND: u8 = 127;
/// docker's exit status when the command cannot be executed.
pub const EXIT_NOT_EXECUTABLE: u8 = 126;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("running containers needs root (mounts, namespaces, cgroups)")]
    NotRoot,
    #[error("OCI runtime `{0}` not found")]
    RuntimeNotFound(String),
    #[error("no command specified: the image has no Entrypoint or Cmd")]
    NoCommand,
    #[error("exec: \"{0}\": executable file not found in $PATH")]
    CommandNotFound(String),
    #[error("exec: \"{0}\": no such file or directory")]
    NoSuchFile(String),
    #[error("exec: \"{command}\": {why}")]
    NotExecutable { command: String, why: String },
    #[error("the runtime could not start the container: {message}")]
    StartFailed { message: String, code: u8 },
    #[error(transparent)]
    User(#[from] user::UserError),
    #[error("the working directory `{0}` is invalid: it needs to be an absolute path")]
    RelativeWorkdir(String),
    #[error("invalid volume `{spec}`: {why}")]
    InvalidVolume { spec: String, why: String },
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    #[error("`{key}` matches {count} containers: use more of the ID, or the name")]
    AmbiguousContainer { key: String, count: usize },
    #[error("invalid container name `{0}`: names are [a-zA-Z0-9][a-zA-Z0-9_.-]*")]
    InvalidName(String),
    #[error("the container name `{name}` is already in use by container {id}")]
    NameInUse { name: String, id: String },
    #[error("container {id} is running")]
    Running { id: String },
    #[error("container {id} is not running")]
    NotRunning { id: String },
    #[error("container {id} is paused")]
    Paused { id: String },
    #[error("cannot signal container {id}")]
    Signal {
        id: String,
        #[source]
        source: io::Error,
    },
    #[error("container {id} did not stop, even after SIGKILL")]
    Unstoppable { id: String },
    #[error("invalid signal `{0}`")]
    InvalidSignal(String),
    #[error("the runtime could not run the command: {message}")]
    ExecFailed { message: String, code: u8 },
    #[error("container {id} is being removed")]
    BeingRemoved { id: String },
    #[error("cannot remove container {id}")]
    Remove {
        id: String,
        #[source]
        source: io::Error,
    },
    #[error("the image config lists {diff_ids} diff IDs for {layers} layers")]
    LayerCount { layers: usize, diff_ids: usize },
    #[error(
        "layer {digest} has media type `{media_type}`, which is not a layer manifold can unpack"
    )]
    UnsupportedLayer { digest: Digest, media_type: String },
    #[error("cannot unpack layer {digest}")]
    Unpack {
        digest: Digest,
        #[source]
        source: LayerError,
    },
    #[error("cannot mount the container's root filesystem on {target}")]
    Mount {
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Network(#[from] network::NetworkError),
    #[error(transparent)]
    Ports(#[from] ports::PortError),
    #[error(transparent)]
    Resources(#[from] resources::ResourceError),
    #[error(transparent)]
    Logs(#[from] logs::LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Change(#[from] crate::oci::changes::ChangeError),
    #[error(transparent)]
    Security(#[from] spec::security::SecurityError),
}

impl RuntimeError {
    pub(crate) fn io<'a>(
        what: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(io::Error) -> RuntimeError + 'a {
        move |source| RuntimeError::Io {
            what,
            path: path.to_path_buf(),
            source: NoSpace::locate(source, path),
        }
    }

    /// docker's exit statuses: 127 not found, 126 not executable, else 125.
    pub fn exit_code(&self) -> u8 {
        match self {
            RuntimeError::CommandNotFound(_) | RuntimeError::NoSuchFile(_) => EXIT_NOT_FOUND,
            RuntimeError::NotExecutable { .. } => EXIT_NOT_EXECUTABLE,
            RuntimeError::StartFailed { code, .. } | RuntimeError::ExecFailed { code, .. } => *code,
            _ => 125,
        }
    }
}

impl Hint for RuntimeError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            RuntimeError::NotRoot => "run it with sudo".into(),
            RuntimeError::RuntimeNotFound(name) if name == "runc" => {
                "install runc (Debian, Ubuntu: `apt-get install runc`), or choose another with `--runtime crun`".into()
            }
            RuntimeError::RuntimeNotFound(_) => {
                "give a runtime on PATH (`runc`, `crun`, `youki`) or its path".into()
            }
            RuntimeError::NoCommand => "give the command after the image: `manifold run IMAGE COMMAND`".into(),
            RuntimeError::NoSuchContainer(_) | RuntimeError::AmbiguousContainer { .. } => {
                "`manifold ps -a` lists the containers".into()
            }
            RuntimeError::NameInUse { .. } => {
                "remove that container (`manifold rm NAME`) or choose another `--name`".into()
            }
            RuntimeError::Running { .. } => "stop it first, or use `manifold rm -f`".into(),
            RuntimeError::NotRunning { .. } => "`manifold start` starts it".into(),
            RuntimeError::Paused { .. } => "resume it first".into(),
            RuntimeError::InvalidSignal(_) => {
                "signals look like `TERM`, `SIGKILL`, `HUP` or a number such as `9`".into()
            }
            RuntimeError::BeingRemoved { .. } => {
                "`manifold rm` finishes the removal (`manifold prune` too)".into()
            }
            RuntimeError::Remove { .. } => {
                "it stays listed (`Dead` in `manifold ps -a`): once what stands in the way is gone, `manifold rm` or `manifold prune` finishes the removal".into()
            }
            RuntimeError::InvalidVolume { .. } => {
                "volumes look like `-v /host/dir:/container/dir[:ro]`".into()
            }
            RuntimeError::Unpack {
                source: LayerError::NoSpace(_),
                ..
            } => NoSpace::HINT.into(),
            RuntimeError::Unpack { .. } => {
                "the layer is malformed or hostile; nothing outside the snapshot was touched".into()
            }
            RuntimeError::Network(e) => return e.hint(),
            RuntimeError::Ports(e) => return e.hint(),
            RuntimeError::Resources(e) => return e.hint(),
            RuntimeError::Logs(e) => return e.hint(),
            RuntimeError::Io { source, .. } if crate::space::is_out_of_space(source) => {
                NoSpace::HINT.into()
            }
            RuntimeError::Mount { .. } => {
                "the kernel needs overlayfs; inside a container, run manifold privileged".into()
            }
            RuntimeError::Security(e) => return e.hint(),
            RuntimeError::Store(e) => return e.hint(),
            _ => return None,
        })
    }
}

/// The chain IDs of every image held in the store and of every container: the snapshots
/// worth keeping.
pub fn chain_ids_in_use(
    store: &Store,
    containers: &Containers,
) -> Result<HashSet<Digest>, RuntimeError> {
    let mut keep: HashSet<Digest> = HashSet::new();
    for c in containers.list()? {
        keep.extend(c.chain_ids);
    }
    let mut manifests = Vec::new();
    for entry in store.entries()? {
        match store.read_document(&entry.descriptor).map(|d| d.value) {
            Ok(Document::Manifest(_)) => manifests.push(entry.descriptor.digest.clone()),
            Ok(Document::Index(index)) => {
                manifests.extend(
                    index
                        .images()
                        .filter(|c| c.is_manifest())
                        .map(|c| c.digest.clone()),
                );
            }
            Err(_) => {}
        }
    }
    for m in manifests {
        let Ok(manifest) = store.read_manifest(&m) else {
            continue;
        };
        let Ok(config) = store.read_config(&manifest.value.config.digest) else {
            continue;
        };
        keep.extend(crate::layer::chain_ids(&config.value.rootfs.diff_ids));
    }
    Ok(keep)
}

/// Remove the snapshots no image and no container uses, and unpacks a crash cut short.
pub fn prune_snapshots(store: &Store) -> Result<SnapshotsPruned, RuntimeError> {
    let containers = Containers::open(store.root())?;
    let snapshots = Snapshots::open(store.root())?;
    snapshots.remove_unused(|| chain_ids_in_use(store, &containers))
}

/// A program: `name` itself when it holds a `/`, else the first executable of that name on PATH.
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let executable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| executable(p))
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}
