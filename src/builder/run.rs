//! RUN: the one step that needs a container. The executor hands a [`RunRequest`] to a
//! [`Runner`]; the runtime-backed runner mounts the stage's layers, runs the command (under
//! QEMU through binfmt_misc for a foreign platform) and turns the overlay's upper directory
//! into the step's layer. Where no container can be made, the isolated runner does the same in
//! a plain directory under proot or chroot (see `runner`); `session` picks one.

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
use crate::runtime::isolation::Isolation;
use crate::runtime::user::UserError;
use crate::store::{StoreError, Transaction};
use crate::userns::UsernsError;

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
    #[error("RUN cannot work here: rootless mode needs a user namespace")]
    NoUserNamespace(#[source] Arc<UsernsError>),
    #[error("RUN cannot work here: `--isolation {isolation}` is not usable")]
    NoIsolation {
        isolation: Isolation,
        #[source]
        source: Arc<RuntimeError>,
    },
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
    /// Without a container (`--isolation proot|chroot`): the step's root, or its command.
    #[error("cannot {what}")]
    Isolated {
        what: &'static str,
        #[source]
        source: Box<RuntimeError>,
    },
    #[error("RUN --network=none needs a network namespace, which `--isolation {0}` cannot make")]
    NoNetworkNamespace(Isolation),
    #[error(transparent)]
    User(#[from] UserError),
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

    pub fn isolated(what: &'static str) -> impl FnOnce(RuntimeError) -> RunError {
        move |source| RunError::Isolated {
            what,
            source: Box::new(source),
        }
    }
}

pub trait Runner: Sync {
    /// Run the step; the layer of what it changed (None when it changed nothing).
    fn run(&self, req: &RunRequest<'_>) -> Result<Option<LayerInfo>, RunError>;
}

/// When RUN cannot work here (not root, no user namespace, no OCI runtime, no proot): every RUN
/// fails with the reason.
#[derive(Debug, Clone)]
pub enum Unavailable {
    NotRoot,
    NoUserNamespace(Arc<UsernsError>),
    NoRuntime(Arc<RuntimeError>),
    NoIsolation(Isolation, Arc<RuntimeError>),
}

impl Unavailable {
    pub fn error(&self) -> RunError {
        match self {
            Unavailable::NotRoot => RunError::NotRoot,
            Unavailable::NoUserNamespace(e) => RunError::NoUserNamespace(e.clone()),
            Unavailable::NoRuntime(e) => RunError::NoRuntime(e.clone()),
            Unavailable::NoIsolation(isolation, e) => RunError::NoIsolation {
                isolation: *isolation,
                source: e.clone(),
            },
        }
    }
}

impl Runner for Unavailable {
    fn run(&self, _req: &RunRequest<'_>) -> Result<Option<LayerInfo>, RunError> {
        Err(self.error())
    }
}
