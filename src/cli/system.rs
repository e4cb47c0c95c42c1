//! `manifold system reset [-f]`: empty the store — containers (killed first), snapshots,
//! images, the build cache, the runtime's state. Rootless, the store holds files owned by the
//! user's subordinate ids, which the user cannot remove from outside manifold's namespace
//! (podman's `system reset` and `unshare` answer the same problem).
//!
//! `manifold unshare [COMMAND [ARG...]]`: run a command as root of manifold's user namespace
//! (rootless only), with `MANIFOLD_ROOT` set to the store, to look at or remove what the store
//! holds (`manifold unshare rm -rf ~/.local/share/manifold`); a manifold it runs knows it is in
//! the namespace and uses the store as the namespace's root.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::Settings;
use super::errors::user_error;
use super::rootless::Privilege;
use crate::layer::walk;
use crate::runtime::sys::RealSyscalls;
use crate::runtime::{Containers, OciRuntime};

#[derive(Debug, Args)]
pub struct SystemArgs {
    #[command(subcommand)]
    pub command: SystemCommand,
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Remove everything in the store: containers (killed first), images, snapshots, the build
    /// cache
    Reset(ResetArgs),
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct UnshareArgs {
    /// The command and its arguments [default: $SHELL, else /bin/sh]
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn run(args: SystemArgs, settings: &Settings) -> anyhow::Result<()> {
    match args.command {
        SystemCommand::Reset(a) => reset(&a, settings),
    }
}

fn reset(args: &ResetArgs, settings: &Settings) -> anyhow::Result<()> {
    settings.privilege.require()?;
    let root = &settings.root;
    if !root.is_dir() {
        eprintln!("nothing to remove: {} does not exist", root.display());
        return Ok(());
    }
    if !args.force {
        if !std::io::stdin().is_terminal() {
            return Err(user_error(
                format!(
                    "`system reset` removes every image, container and snapshot in {}, and asks first",
                    root.display()
                ),
                Some("add `--force` to remove them without asking"),
            ));
        }
        eprint!(
            "This removes every image, container, snapshot and build cache entry in {}.\nAre you sure you want to continue? [y/N] ",
            root.display()
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(user_error("nothing removed", None));
        }
    }
    // Running containers first: their runtime state goes with them.
    let mut stopped = 0;
    if root.join("containers-v1").is_dir() {
        let containers = Containers::open(root)?;
        for record in containers.list()? {
            if let Ok(rt) = OciRuntime::find(&record.runtime, root) {
                let _ = rt.kill(&record.id, "KILL");
                let _ = rt.delete(&record.id);
            }
            let _ = containers.release(&RealSyscalls, None, &record.id);
            stopped += 1;
        }
    }
    let removed = walk::remove_contents(root, &[])
        .map_err(|e| anyhow::Error::new(e).context(format!("cannot empty {}", root.display())))?;
    eprintln!(
        "Removed {} containers and {} files ({}) from {}",
        stopped,
        removed.entries,
        super::output::human_size(removed.bytes),
        root.display()
    );
    Ok(())
}

pub fn unshare(args: UnshareArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    match &settings.privilege {
        Privilege::Namespace => {}
        Privilege::Root => {
            return Err(user_error(
                "`manifold unshare` is for rootless mode: root needs no user namespace",
                Some("run the command itself"),
            ));
        }
        other => other.require()?,
    }
    let command = if args.command.is_empty() {
        vec![std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into())]
    } else {
        args.command
    };
    let status = std::process::Command::new(&command[0])
        .args(&command[1..])
        .env("MANIFOLD_ROOT", &settings.root)
        .env(crate::userns::INHERITED_ENV, "1")
        .status()
        .map_err(|e| anyhow::Error::new(e).context(format!("cannot run `{}`", command[0])))?;
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Ok(ExitCode::from(code as u8))
}
