//! `manifold top CONTAINER [PS OPTIONS]`: the host's `ps` (`-ef` by default), keeping the lines
//! of the container's processes (the runtime lists their PIDs), as docker does.

use std::process::Command;

use anyhow::Context;
use clap::Args;

use super::Settings;
use super::errors::user_error;
use super::output::outln;
use crate::runtime::OciRuntime;
use crate::runtime::exec::running_pid;

#[derive(Debug, Args)]
pub struct TopArgs {
    /// The container: name, ID or ID prefix
    pub container: String,
    /// Options for ps [default: -ef]
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PS OPTIONS"
    )]
    pub ps_args: Vec<String>,
}

pub fn run(args: TopArgs, settings: &Settings) -> anyhow::Result<()> {
    let store = settings.store()?;
    let containers = super::containers::reconciled(&store)?;
    let record = containers.find(&args.container)?;
    let oci = OciRuntime::find(&record.runtime, store.root())?;
    running_pid(&oci, &record)?;
    let pids = oci
        .pids(&record.id)
        .with_context(|| format!("cannot list the processes of {}", record.short_id()))?;
    let ps_args = if args.ps_args.is_empty() {
        vec!["-ef".to_string()]
    } else {
        args.ps_args.clone()
    };
    let out = Command::new("ps")
        .args(&ps_args)
        .output()
        .context("cannot run `ps`")?;
    if !out.status.success() {
        return Err(user_error(
            format!(
                "`ps {}` failed: {}",
                ps_args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Some("give options of the host's ps (procps), such as `-ef` or `aux`"),
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let Some(column) = header.split_whitespace().position(|h| h == "PID") else {
        return Err(user_error(
            format!("`ps {}` printed no PID column", ps_args.join(" ")),
            Some("give ps options whose output has a PID column, such as `-ef` or `aux`"),
        ));
    };
    outln!("{header}")?;
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(column)
            .and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            outln!("{line}")?;
        }
    }
    Ok(())
}
