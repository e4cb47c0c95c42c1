//! `manifold binfmt ls | install [PLATFORM...|all] | uninstall PLATFORM...|all`: the QEMU
//! handlers in binfmt_misc that let this machine run other architectures' programs.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::Settings;
use super::args::ListFormat;
use super::errors::{self, user_error};
use super::output::{Table, print_json_lines};
use crate::binfmt::{
    Binfmt, BinfmtError, DEFAULT_FLAGS, EmulatorProblem, EmulatorSearch, Handler, HandlerStatus,
    InstallOptions, Installed, Uninstalled, emulator_version, parse_flags,
};

#[derive(Debug, Args)]
pub struct BinfmtArgs {
    #[command(subcommand)]
    pub command: BinfmtCommand,
}

#[derive(Debug, Subcommand)]
pub enum BinfmtCommand {
    /// List every QEMU handler: platforms, registered or not, interpreter, flags, version
    Ls {
        /// Output format
        #[arg(long, value_enum, default_value_t)]
        format: ListFormat,
        /// Where to look for static QEMU emulators first (also MANIFOLD_QEMU_DIR)
        #[arg(long, value_name = "DIR")]
        emulator_dir: Option<PathBuf>,
    },
    /// Register handlers (default: all the architectures this machine does not run itself)
    Install {
        /// Platforms (`linux/arm64`), handler names (`qemu-aarch64`) or `all`
        #[arg(value_name = "PLATFORM")]
        targets: Vec<String>,
        /// binfmt_misc flags: F (works in containers), P (keeps argv[0]), C (setuid), O
        #[arg(long, default_value = DEFAULT_FLAGS)]
        flags: String,
        /// Replace a registration that cannot work in containers (no F flag)
        #[arg(long)]
        force: bool,
        /// Also write /etc/binfmt.d/ files so the handlers come back after a reboot
        #[arg(long)]
        persist: bool,
        /// Where to look for static QEMU emulators first (also MANIFOLD_QEMU_DIR)
        #[arg(long, value_name = "DIR")]
        emulator_dir: Option<PathBuf>,
    },
    /// Remove the named handlers (and the /etc/binfmt.d/ files `--persist` wrote)
    Uninstall {
        /// Platforms (`linux/arm64`), handler names (`qemu-aarch64`) or `all`
        #[arg(required = true, value_name = "PLATFORM")]
        targets: Vec<String>,
    },
}

pub fn run(args: BinfmtArgs, _settings: &Settings) -> anyhow::Result<()> {
    match args.command {
        BinfmtCommand::Ls {
            format,
            emulator_dir,
        } => ls(format, emulator_dir),
        BinfmtCommand::Install {
            targets,
            flags,
            force,
            persist,
            emulator_dir,
        } => install(targets, &flags, force, persist, emulator_dir),
        BinfmtCommand::Uninstall { targets } => uninstall(targets),
    }
}

fn handlers(targets: &[String]) -> anyhow::Result<Vec<&'static Handler>> {
    let mut out: Vec<&'static Handler> = Vec::new();
    for t in targets {
        for h in Handler::parse_arg(t)? {
            if !out.iter().any(|o| o.name == h.name) {
                out.push(h);
            }
        }
    }
    Ok(out)
}

#[derive(Serialize)]
struct LsRow {
    handler: String,
    platforms: Vec<String>,
    status: String,
    native: bool,
    registered: bool,
    works_in_containers: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    registered_as: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interpreter: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flags: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    emulator: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
}

/// `registered`, `registered (no F flag)`, `disabled`, `not registered`, `native`.
pub fn status_word(s: &HandlerStatus) -> String {
    if s.native {
        return "native".into();
    }
    match &s.registration {
        None => "not registered".into(),
        Some(r) if !r.enabled => "disabled".into(),
        Some(r) if !r.has_flag('F') => "registered (no F flag)".into(),
        Some(_) => "registered".into(),
    }
}

fn ls(format: ListFormat, emulator_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let binfmt = Binfmt::system(EmulatorSearch::from_env(emulator_dir));
    let statuses = binfmt.status()?;
    let rows: Vec<LsRow> = statuses
        .iter()
        .map(|s| {
            let emulator = s.emulator.as_ref().ok().map(|e| e.path.clone());
            let version = match (&s.registration, &emulator) {
                (Some(r), _) => emulator_version(&r.interpreter),
                (None, Some(e)) if !s.native => emulator_version(e),
                _ => None,
            };
            LsRow {
                handler: s.handler.name.clone(),
                platforms: s
                    .handler
                    .platforms
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                status: status_word(s),
                native: s.native,
                registered: s.registration.is_some(),
                works_in_containers: s
                    .registration
                    .as_ref()
                    .is_some_and(|r| r.works_in_containers()),
                registered_as: s
                    .registration
                    .as_ref()
                    .filter(|r| r.name != s.handler.name)
                    .map(|r| r.name.clone()),
                interpreter: s.registration.as_ref().map(|r| r.interpreter.clone()),
                flags: s.registration.as_ref().map(|r| r.flags.clone()),
                emulator,
                version,
            }
        })
        .collect();
    match format {
        ListFormat::Json => print_json_lines(&rows),
        ListFormat::Table => {
            let mut t = Table::new(&[
                "HANDLER",
                "PLATFORMS",
                "STATUS",
                "INTERPRETER",
                "FLAGS",
                "VERSION",
            ]);
            for r in &rows {
                let status = match &r.registered_as {
                    Some(n) => format!("{} as {n}", r.status),
                    None => r.status.clone(),
                };
                t.row(vec![
                    r.handler.clone(),
                    r.platforms.join(","),
                    status,
                    r.interpreter
                        .as_ref()
                        .or(r.emulator.as_ref().filter(|_| !r.native))
                        .map_or("-".into(), |p| p.display().to_string()),
                    r.flags
                        .clone()
                        .filter(|f| !f.is_empty())
                        .unwrap_or_else(|| "-".into()),
                    r.version.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            Ok(t.print()?)
        }
    }
}

fn install(
    targets: Vec<String>,
    flags: &str,
    force: bool,
    persist: bool,
    emulator_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let all = targets.is_empty();
    let targets = if all {
        vec!["all".to_string()]
    } else {
        targets
    };
    let handlers = handlers(&targets)?;
    let opts = InstallOptions {
        flags: parse_flags(flags)?,
        force,
        persist,
    };
    let binfmt = Binfmt::system(EmulatorSearch::from_env(emulator_dir));
    let mut failed = 0;
    for h in &handlers {
        match binfmt.install(h, &opts) {
            Ok(Installed::Native) => {
                if !all && !targets.iter().any(|t| t == "all") {
                    eprintln!(
                        "{}: this machine runs {} natively: nothing to do",
                        h.name,
                        h.platforms_label()
                    );
                }
            }
            Ok(Installed::Present(r)) => eprintln!(
                "{}: already registered{} ({}, flags {})",
                h.name,
                if r.name != h.name {
                    format!(" as `{}`", r.name)
                } else {
                    String::new()
                },
                r.interpreter.display(),
                r.flags
            ),
            Ok(Installed::Enabled(r)) => {
                eprintln!("{}: enabled again ({})", h.name, r.interpreter.display())
            }
            Ok(Installed::Registered {
                registration,
                replaced,
            }) => {
                if let Some(old) = replaced {
                    eprintln!(
                        "{}: replaced `{}` ({}, flags `{}`)",
                        h.name,
                        old.name,
                        old.interpreter.display(),
                        old.flags
                    );
                }
                eprintln!(
                    "{}: registered {} for {} (flags {})",
                    h.name,
                    registration.interpreter.display(),
                    h.platforms_label(),
                    registration.flags
                );
            }
            // With `all`, an architecture without an emulator is not a failure of the others.
            Err(BinfmtError::NoEmulator { .. }) if all || targets.iter().any(|t| t == "all") => {
                eprintln!(
                    "{}: skipped: no static emulator (install qemu-user-static)",
                    h.name
                );
            }
            Err(e) => {
                errors::report(
                    &anyhow::Error::new(e).context(format!("cannot register `{}`", h.name)),
                );
                failed += 1;
            }
        }
    }
    if persist && failed == 0 {
        eprintln!("handlers written to /etc/binfmt.d/ come back at boot (systemd-binfmt)");
    }
    if failed > 0 {
        return Err(user_error(
            format!(
                "{failed} of {} handlers could not be registered",
                handlers.len()
            ),
            None,
        ));
    }
    Ok(())
}

fn uninstall(targets: Vec<String>) -> anyhow::Result<()> {
    let handlers = handlers(&targets)?;
    let binfmt = Binfmt::system(EmulatorSearch::default());
    let mut failed = 0;
    for h in &handlers {
        match binfmt.uninstall(h) {
            Ok(Uninstalled::Removed(r)) => {
                eprintln!("{}: removed ({})", h.name, r.interpreter.display())
            }
            Ok(Uninstalled::NotRegistered) => {
                if !targets.iter().any(|t| t == "all") {
                    eprintln!("{}: not registered", h.name);
                }
            }
            Ok(Uninstalled::Native) => {}
            Ok(Uninstalled::Foreign(r)) => eprintln!(
                "{}: left alone: registered as `{}` by another tool",
                h.name, r.name
            ),
            Err(e) => {
                errors::report(
                    &anyhow::Error::new(e).context(format!("cannot remove `{}`", h.name)),
                );
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(user_error(
            format!(
                "{failed} of {} handlers could not be removed",
                handlers.len()
            ),
            None,
        ));
    }
    Ok(())
}

/// Why an emulator is unusable, in words.
pub fn emulator_problem(p: &EmulatorProblem) -> String {
    match p {
        EmulatorProblem::NotFound { .. } => "no emulator".into(),
        EmulatorProblem::Dynamic { path, .. } => {
            format!("{} is dynamically linked", path.display())
        }
    }
}
