//! `manifold binfmt ls | install [PLATFORM...|all] | uninstall PLATFORM...|all | test
//! [PLATFORM...]`: the QEMU handlers in binfmt_misc that let this machine run other
//! architectures' programs, and the known-bad-version warning that `run` and `build` print.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::Settings;
use super::args::ListFormat;
use super::errors::{self, user_error};
use super::output::{Table, print_json_lines};
use super::select::short_platform;
use crate::binfmt::{
    Binfmt, BinfmtError, DEFAULT_FLAGS, EmulatorProblem, EmulatorSearch, Handler, HandlerStatus,
    InstallOptions, Installed, Isolation, KnownBad, TestReport, Uninstalled, Verdict,
    emulator_version, parse_flags,
};
use crate::platform::Platform;

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
    /// Run a tiny program of each registered handler's architecture through the kernel, as a
    /// container would, and report what works (exits 1 when something does not)
    Test {
        /// Platforms (`linux/arm64`), handler names (`qemu-aarch64`) or `all` (default: every
        /// registered handler)
        #[arg(value_name = "PLATFORM")]
        targets: Vec<String>,
        #[arg(long, value_enum, default_value_t)]
        format: ListFormat,
    },
}

pub fn run(args: BinfmtArgs, _settings: &Settings) -> anyhow::Result<ExitCode> {
    let done = match args.command {
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
        BinfmtCommand::Test { targets, format } => return test(&targets, format),
    };
    done.map(|()| ExitCode::SUCCESS)
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
    /// The ids of the qemu/known-bad.yaml rows this version falls in.
    known_bad: Vec<String>,
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
            let known_bad = version
                .as_deref()
                .map(|v| KnownBad::matching(&s.handler.target, v))
                .unwrap_or_default();
            for k in &known_bad {
                let name = s
                    .registration
                    .as_ref()
                    .map_or(&s.handler.emulator, |r| &r.name);
                warn_once(&k.warning(name, version.as_deref().unwrap_or_default()));
            }
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
                known_bad: known_bad.iter().map(|k| k.id.clone()).collect(),
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
                    version_cell(r.version.as_deref(), !r.known_bad.is_empty()),
                ]);
            }
            Ok(t.print()?)
        }
    }
}

/// `7.2.22`, `9.2.0 (known bad)` or `-`.
pub fn version_cell(version: Option<&str>, known_bad: bool) -> String {
    match version {
        Some(v) if known_bad => format!("{v} (known bad)"),
        Some(v) => v.to_string(),
        None => "-".into(),
    }
}

/// Print `warning: …` once per process for each distinct message (a build asks for every
/// platform, `platforms` for every row).
pub fn warn_once(message: &str) {
    static WARNED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if warned.insert(message.to_string()) {
        eprintln!("warning: {message}");
    }
}

/// Before an emulated run or build: warn about each registered emulator serving `platforms`
/// whose QEMU version is in the known-bad table (a warning with the fix, never an error).
pub fn warn_known_bad(binfmt: &Binfmt, platforms: &[Platform]) {
    for p in platforms {
        for w in binfmt.known_bad_warnings(p) {
            warn_once(&w);
        }
    }
}

#[derive(Serialize)]
struct TestRow {
    platform: String,
    handler: String,
    /// `works`, `native` or `fails`.
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    registered_as: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interpreter: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flags: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    known_bad: Vec<String>,
    /// Where the program ran: `empty-root`, `user-namespace` or `host`.
    isolation: Isolation,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

impl TestRow {
    fn new(platform: String, r: &TestReport) -> TestRow {
        let (result, failure) = match &r.verdict {
            Verdict::Native => ("native", None),
            Verdict::Works => ("works", None),
            Verdict::Fails(f) => ("fails", Some(f)),
        };
        let mut fix = failure.map(|f| f.fix(&platform));
        if failure.is_some()
            && let Some(k) = r.known_bad.first()
        {
            fix = Some(format!(
                "{}; this QEMU is known bad: {}",
                fix.unwrap_or_default(),
                k.fix
            ));
        }
        TestRow {
            handler: r.handler.name.clone(),
            result,
            reason: failure.map(|f| f.reason()),
            detail: failure.map(|f| f.detail()),
            fix,
            registered_as: r
                .registration
                .as_ref()
                .filter(|g| g.name != r.handler.name)
                .map(|g| g.name.clone()),
            interpreter: r.registration.as_ref().map(|g| g.interpreter.clone()),
            flags: r.registration.as_ref().map(|g| g.flags.clone()),
            version: r.version.clone(),
            known_bad: r.known_bad.iter().map(|k| k.id.clone()).collect(),
            isolation: r.isolation,
            note: r.note.clone(),
            platform,
        }
    }
}

/// The handlers to test, each with the platform to name it by: every registered handler, or
/// the ones named (a platform keeps the name it was given).
fn test_targets(
    binfmt: &Binfmt,
    targets: &[String],
) -> anyhow::Result<Vec<(String, &'static Handler)>> {
    let mut out: Vec<(String, &'static Handler)> = Vec::new();
    let mut add = |label: String, h: &'static Handler| {
        if !out.iter().any(|(_, o)| o.name == h.name) {
            out.push((label, h));
        }
    };
    if targets.is_empty() {
        for s in binfmt.status()? {
            if s.registration.is_some() && !s.native {
                add(short_platform(s.handler.main_platform()), s.handler);
            }
        }
        return Ok(out);
    }
    for t in targets {
        let as_platform = Platform::parse(t).ok().filter(|_| t.contains('/'));
        for h in Handler::parse_arg(t)? {
            let label = as_platform
                .as_ref()
                .map_or_else(|| short_platform(h.main_platform()), short_platform);
            add(label, h);
        }
    }
    Ok(out)
}

fn test(targets: &[String], format: ListFormat) -> anyhow::Result<ExitCode> {
    let binfmt = Binfmt::system(EmulatorSearch::from_env(None));
    let chosen = test_targets(&binfmt, targets)?;
    if chosen.is_empty() {
        eprintln!("no QEMU handler is registered: nothing to test");
        eprintln!(
            "hint: `sudo manifold binfmt install --persist` registers the emulators installed here"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut reports = Vec::new();
    for (label, h) in &chosen {
        reports.push((label.clone(), binfmt.test(h)?));
    }
    let rows: Vec<TestRow> = reports
        .iter()
        .map(|(label, r)| TestRow::new(label.clone(), r))
        .collect();
    match format {
        ListFormat::Json => print_json_lines(&rows)?,
        ListFormat::Table => {
            let mut t = Table::new(&["PLATFORM", "HANDLER", "RESULT", "VERSION", "DETAIL"]);
            for r in &rows {
                t.row(vec![
                    r.platform.clone(),
                    r.handler.clone(),
                    match r.reason {
                        Some(reason) => format!("fails: {reason}"),
                        None => r.result.to_string(),
                    },
                    version_cell(r.version.as_deref(), !r.known_bad.is_empty()),
                    r.detail
                        .clone()
                        .or_else(|| r.note.clone())
                        .unwrap_or_else(|| "-".into()),
                ]);
            }
            t.print()?;
        }
    }
    for (_, report) in &reports {
        for k in &report.known_bad {
            let name = report
                .registration
                .as_ref()
                .map_or(&report.handler.name, |g| &g.name);
            warn_once(&k.warning(name, report.version.as_deref().unwrap_or_default()));
        }
    }
    if rows.iter().any(|r| r.isolation == Isolation::Host) {
        eprintln!(
            "note: this kernel refuses user namespaces, so the programs ran on the host's own \
             root; what a container would meet is judged from each registration"
        );
    }
    let failed: Vec<&TestRow> = rows.iter().filter(|r| r.result == "fails").collect();
    for r in &failed {
        if let Some(fix) = &r.fix {
            eprintln!("hint: {}: {fix}", r.platform);
        }
    }
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    // A failed check, not a failure of manifold's: status 1, as `verify` does.
    eprintln!(
        "error: {} of {} tested platforms do not work",
        failed.len(),
        rows.len()
    );
    Ok(ExitCode::from(1))
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
        eprintln!(
            "handlers written to {} come back at boot (systemd-binfmt)",
            binfmt.persist_dir().display()
        );
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
