//! Rootless mode, from the command line's side: the commands that unpack layers, mount overlays
//! or run containers (and those that clean up after them) enter manifold's user namespace first
//! thing when manifold is not root (see `userns`); the others run as the user. Nothing to ask
//! for: it follows from who runs manifold.

use std::path::Path;
use std::sync::Arc;

use super::args::Command;
use crate::builder::run::Unavailable;
use crate::runtime::{Containers, monitor};
use crate::userns::{self, Plan, UsernsError};

/// Whether manifold may run containers here, as settled at start.
#[derive(Debug, Clone)]
pub enum Privilege {
    /// Root on the host (or in a container's own root).
    Root,
    /// Not root, inside manifold's user namespace.
    Namespace,
    /// Not root, and this command does not enter the namespace.
    User,
    /// Not root, and the namespace could not be entered.
    Failed(Arc<UsernsError>),
}

/// The commands that enter the namespace: they unpack, mount, run, or remove what containers
/// and snapshots left (files owned by subordinate ids, which only the namespace's root removes).
fn needs_namespace(command: &Command) -> bool {
    matches!(
        command,
        Command::Run(_)
            | Command::Ps(_)
            | Command::Logs(_)
            | Command::Exec(_)
            | Command::Start(_)
            | Command::Stop(_)
            | Command::Restart(_)
            | Command::Kill(_)
            | Command::Wait(_)
            | Command::Port(_)
            | Command::Top(_)
            | Command::Monitor(_)
            | Command::Rm(_)
            | Command::Commit(_)
            | Command::Prune(_)
            | Command::Rmi(_)
            | Command::Build(_)
            | Command::Bake(_)
            | Command::System(_)
            | Command::Unshare(_)
    )
}

/// The commands after which a single-id mapping changes what works (they make containers).
fn makes_containers(command: &Command) -> bool {
    matches!(
        command,
        Command::Run(_)
            | Command::Start(_)
            | Command::Restart(_)
            | Command::Build(_)
            | Command::Bake(_)
            | Command::Unshare(_)
    )
}

/// The process whose user namespace a command acting inside a running container joins (see
/// `userns::join`): the container's owner, its monitor or the manifold running it in the
/// foreground; with its monitor killed, its first process. None for the other commands, and
/// when the container does not run.
fn running_owner(command: &Command, root: &Path) -> Option<u32> {
    let key = match command {
        Command::Exec(a) => &a.container,
        Command::Top(a) => &a.container,
        _ => return None,
    };
    let containers = Containers::open(root).ok()?;
    let record = containers.find(key).ok()?;
    if let Some(owner) = record.owner.filter(|o| o.is_alive()) {
        return Some(owner.pid);
    }
    monitor::first_pid(&containers.dir_of(&record.id))
        .filter(|p| std::path::Path::new(&format!("/proc/{p}/ns/user")).exists())
}

/// Enter the namespace when `command` needs it and manifold is not root (the namespace of the
/// container it acts in, when it runs). Call it before any thread starts.
pub fn start(command: &Command, root: &Path) -> Privilege {
    if rustix::process::geteuid().is_root() {
        // Run by `manifold unshare`: already in the namespace.
        if userns::adopt().is_some() {
            return Privilege::Namespace;
        }
        return Privilege::Root;
    }
    if !needs_namespace(command) {
        return Privilege::User;
    }
    let plan = match Plan::current() {
        Ok(p) => p,
        Err(e) => return Privilege::Failed(Arc::new(e)),
    };
    if makes_containers(command) {
        if let Some((warning, hint)) = plan.warning() {
            eprintln!("warning: {warning}");
            eprintln!("hint: {hint}");
        }
        if std::env::var_os("XDG_RUNTIME_DIR").is_none_or(|d| d.is_empty()) {
            eprintln!(
                "warning: XDG_RUNTIME_DIR is not set: the OCI runtime keeps its state in {} \
                 (a login session sets it, to /run/user/{})",
                std::env::temp_dir()
                    .join(format!("manifold-run-{}", plan.uid))
                    .display(),
                plan.uid
            );
        }
    }
    if let Some(pid) = running_owner(command, root) {
        return match userns::join(pid) {
            Ok(_) => Privilege::Namespace,
            Err(e) => Privilege::Failed(Arc::new(e)),
        };
    }
    match userns::enter(&plan) {
        Ok(_) => Privilege::Namespace,
        Err(e) => Privilege::Failed(Arc::new(e)),
    }
}

impl Privilege {
    /// Ok when containers can run: as root, or in the namespace; else why not.
    pub fn require(&self) -> Result<(), anyhow::Error> {
        match self {
            Privilege::Root | Privilege::Namespace => Ok(()),
            // Arc<E> is an error as E is, and `crate::hint` finds its hint through the Arc.
            Privilege::Failed(e) => {
                Err(anyhow::Error::new(e.clone()).context("rootless mode needs a user namespace"))
            }
            Privilege::User => Err(crate::runtime::RuntimeError::NotRoot.into()),
        }
    }
}

impl Privilege {
    /// Why containers cannot run, as the builder takes it (see `builder::session::runner`);
    /// None when they can.
    pub fn refused(&self) -> Option<Unavailable> {
        match self {
            Privilege::Root | Privilege::Namespace => None,
            Privilege::Failed(e) => Some(Unavailable::NoUserNamespace(e.clone())),
            Privilege::User => Some(Unavailable::NotRoot),
        }
    }
}
