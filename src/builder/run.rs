//! RUN: the one step that needs a container. The executor hands a [`RunRequest`] to a
//! [`Runner`]; the runtime-backed runner mounts the stage's layers, runs the command (under
//! QEMU through binfmt_misc for a foreign platform) and turns the overlay's upper directory
//! into the step's layer.

use std::path::Path;
use std::sync::Arc;

use super::layer::LayerInfo;
use crate::binfmt::BinfmtError;
use crate::dockerfile::instructions::MountKind;
use crate::dockerfile::plan::RunOp;
use crate::hint::Hint;
use crate::layer::Compression;
use crate::oci::{Descriptor, Digest};
use crate::platform::Platform;
use crate::runtime::RuntimeError;
use crate::store::{Store, StoreError, Transaction};

pub struct RunRequest<'a> {
    /// The build's transaction: RUN writes its stage's image and its layer.
    pub store: &'a Transaction,
    /// The platform the stage is built for.
    pub platform: &'a Platform,
    /// The stage's layers before the step, and their diff IDs.
    pub layers: &'a [Descriptor],
    pub diff_ids: &'a [Digest],
    pub op: &'a RunOp,
    pub compression: Compression,
    pub epoch: Option<u64>,
    /// Scratch space for the step (removed afterwards).
    pub tmp: &'a Path,
    /// Each line the command prints.
    pub output: &'a (dyn Fn(&str) + Sync),
}

/// Why a RUN step failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("RUN needs root (mounts and namespaces)")]
    NotRoot,
    #[error("RUN cannot work here: the container runtime is not usable")]
    NoRuntime(#[source] Arc<RuntimeError>),
    #[error("RUN --mount=type={} is not supported yet: manifold has type=cache and type=tmpfs", .0.as_str())]
    Mount(MountKind),
    #[error("cannot run {platform} programs here")]
    Emulation {
        platform: String,
        #[source]
        source: BinfmtError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot {what}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot {what} the container")]
    Container {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("process \"{argv}\" did not complete successfully: exit code: {code}")]
    Exit { argv: String, code: i32 },
}

impl Hint for RunError {
    fn hint(&self) -> Option<String> {
        match self {
            RunError::NotRoot => Some("run the build with sudo".into()),
            RunError::Mount(_) => Some(
                "use `--mount=type=cache` or `--mount=type=tmpfs`, or copy what the step needs with COPY"
                    .into(),
            ),
            RunError::Store(e) => e.hint(),
            _ => None,
        }
    }
}

impl RunError {
    pub fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> RunError {
        move |source| RunError::Io { what, source }
    }

    pub fn container(
        what: &'static str,
    ) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> RunError {
        move |source| RunError::Container { what, source }
    }
}

pub trait Runner: Sync {
    /// Run the step; the layer of what it changed (None when it changed nothing).
    fn run(&self, req: &RunRequest<'_>) -> Result<Option<LayerInfo>, RunError>;
}

/// When RUN cannot work here (not root, no OCI runtime): every RUN fails with the reason.
#[derive(Debug, Clone)]
pub enum Unavailable {
    NotRoot,
    NoRuntime(Arc<RuntimeError>),
}

impl Runner for Unavailable {
    fn run(&self, _req: &RunRequest<'_>) -> Result<Option<LayerInfo>, RunError> {
        Err(match self {
            Unavailable::NotRoot => RunError::NotRoot,
            Unavailable::NoRuntime(e) => RunError::NoRuntime(e.clone()),
        })
    }
}

/// What runs RUN steps: runc through the runtime as root, else a runner that says why RUN
/// cannot work. Create it before any other thread starts: it moves the process into a mount
/// namespace of its own (see [`super::runner::RuntimeRunner::new`]).
pub fn default_runner(store: &Store) -> Box<dyn Runner> {
    if !rustix::process::geteuid().is_root() {
        return Box::new(Unavailable::NotRoot);
    }
    match super::runner::RuntimeRunner::new(store, "runc") {
        Ok(r) => Box::new(r),
        Err(e) => Box::new(Unavailable::NoRuntime(Arc::new(e))),
    }
}
