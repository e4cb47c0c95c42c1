//! `manifold exec [-i] [-t] [-d] [-e K=V]... [-w DIR] [-u USER] CONTAINER COMMAND [ARG...]`: run
//! a command in a running container (see `runtime::exec`), with its exit status (126 when it
//! cannot be executed, 127 when it is not found, 125 when manifold fails). An emulated
//! container's command runs under QEMU like its first process.

use std::io::IsTerminal;
use std::process::{ExitCode, Stdio};

use anyhow::Context;
use clap::Args;

use super::Settings;
use super::errors::user_error;
use crate::binfmt::{Binfmt, EmulatorSearch};
use crate::runtime::exec::{self, ExecOptions};
use crate::runtime::signals::Forwarder;
use crate::runtime::{self, OciRuntime, RuntimeError};

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin open (attach it to the command)
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the command a terminal
    #[arg(short, long)]
    pub tty: bool,
    /// Start the command and return at once
    #[arg(short, long)]
    pub detach: bool,
    /// Set an environment variable (`KEY=VALUE`, or `KEY` to pass the host's value)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory [default: the container's]
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (name or UID) and optionally group [default: the container's]
    #[arg(short, long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// The container: name, ID or ID prefix
    pub container: String,
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn run(args: ExecArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    if args.tty
        && !args.detach
        && !(std::io::stdin().is_terminal()
            || std::io::stdout().is_terminal()
            || std::io::stderr().is_terminal())
    {
        return Err(user_error(
            "the input device is not a TTY",
            Some("drop -t, or run from a terminal"),
        ));
    }
    let mut env = Vec::new();
    for e in &args.env {
        if e.is_empty() || e.starts_with('=') {
            return Err(user_error(
                format!("invalid environment variable `{e}`"),
                None,
            ));
        }
        if e.contains('=') {
            env.push(e.clone());
        } else if let Ok(v) = std::env::var(e) {
            env.push(format!("{e}={v}"));
        }
    }
    if !runtime::is_root() {
        return Err(RuntimeError::NotRoot.into());
    }
    let store = settings.store()?;
    let containers = super::containers::reconciled(&store)?;
    let record = containers.find(&args.container)?;
    let oci = OciRuntime::find(&record.runtime, store.root())?;
    // The handler may have been removed since the container started.
    Binfmt::system(EmulatorSearch::from_env(None))
        .ensure(&record.platform)
        .with_context(|| {
            format!(
                "cannot run {} programs here",
                super::select::short_platform(&record.platform)
            )
        })?;
    let opts = ExecOptions {
        args: args.command.clone(),
        env,
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        tty: args.tty,
        console_size: if args.tty {
            crate::runtime::run::terminal_size()
        } else {
            None
        },
    };
    let process = exec::prepare(&oci, &containers.dir_of(&record.id), &record, &opts)?;
    let mut cmd = process.command(args.detach);
    cmd.stdin(if args.interactive && !args.detach {
        Stdio::inherit()
    } else {
        Stdio::null()
    });
    if args.detach {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    let forwarder = Forwarder::install().context("cannot install signal handlers")?;
    let mut child = cmd
        .spawn()
        .map_err(RuntimeError::io("start", &oci.program))?;
    forwarder.add(child.id());
    let status = child.wait().context("cannot wait for the runtime");
    forwarder.remove(child.id());
    drop(forwarder);
    let code = process.finish(status?)?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
