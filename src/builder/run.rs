//! RUN: the one step that needs a container. The executor hands a [`RunRequest`] to a
//! [`Runner`]; the runtime-backed runner mounts the stage's layers, runs the command (under
//! QEMU through binfmt_misc for a foreign platform) and turns the overlay's upper directory
//! into the step's layer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::layer::LayerInfo;
use super::secrets::{Secrets, SshAgents};
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
    /// What `type=secret` mounts read.
    pub secrets: &'a Secrets,
    /// What `type=ssh` mounts forward to.
    pub ssh: &'a SshAgents,
    /// What each `type=bind` mount of `op.mounts` shows (same index; None for other kinds).
    pub binds: &'a [Option<BindSource>],
}

/// What a `--mount=type=bind` shows, resolved by the executor.
#[derive(Debug, Clone)]
pub struct BindSource {
    pub view: View,
    /// The bound path inside the view, relative, its symlinks resolved in the view (empty:
    /// the view's root).
    pub path: String,
}

/// A tree a bind mount shows, never written to: the step's writes (`rw`) land in a throwaway
/// upper directory.
#[derive(Debug, Clone)]
pub enum View {
    /// A host directory (the context), without `hidden` (relative paths .dockerignore leaves
    /// out).
    Dir { root: PathBuf, hidden: Vec<String> },
    /// A stack of layers (a stage's or an image's filesystem).
    Layers {
        layers: Vec<Descriptor>,
        diff_ids: Vec<Digest>,
    },
}

/// Why a RUN step failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("RUN needs root (mounts and namespaces)")]
    NotRoot,
    #[error("RUN cannot work here: the container runtime is not usable")]
    NoRuntime(#[source] Arc<RuntimeError>),
    /// A `required` secret the build was not given.
    #[error("secret `{id}` is required and was not given{}", unset_note(.unset))]
    SecretRequired { id: String, unset: Option<String> },
    /// A `required` ssh agent the build was not given.
    #[error("ssh agent `{id}` is required and was not given")]
    SshRequired { id: String },
    #[error("secret `{id}` is not UTF-8 text, so it cannot be the environment variable `{var}`")]
    SecretNotText { id: String, var: String },
    #[error("RUN --mount=type=bind: `{path}` is not in `{from}`")]
    BindSource { path: String, from: String },
    #[error("cannot prepare RUN --mount={} at `{target}`", .kind.as_str())]
    Mount {
        kind: MountKind,
        target: String,
        #[source]
        source: std::io::Error,
    },
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

fn unset_note(unset: &Option<String>) -> String {
    match unset {
        Some(var) => format!(" (`{var}`, which it was to come from, is not set)"),
        None => String::new(),
    }
}

impl Hint for RunError {
    fn hint(&self) -> Option<String> {
        match self {
            RunError::NotRoot => Some("run the build with sudo".into()),
            RunError::SecretRequired { id, .. } => Some(format!(
                "pass it: `--secret id={id},src=FILE` or `--secret id={id},env=VARIABLE` (for `manifold bake`: the target's `secrets`)"
            )),
            RunError::SshRequired { id } => Some(format!(
                "pass it: `--ssh {id}` (the agent of SSH_AUTH_SOCK) or `--ssh {id}=KEY_FILE` (for `manifold bake`: the target's `ssh`)"
            )),
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
