//! `manifold platforms [--format json]`: every known platform and whether this machine runs it:
//! native, emulated (a usable QEMU handler), installable (an emulator is here, not registered),
//! or unavailable (with what to install); and whether this user can run it now (native, runs,
//! not registered, broken), judged from the registrations without running anything (running
//! each architecture's test program is `binfmt test`'s job).

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::Settings;
use super::args::ListFormat;
use super::binfmt::{emulator_problem, version_cell, warn_once};
use super::output::{Table, print_json_lines};
use super::select::short_platform;
use crate::binfmt::{
    Binfmt, EMULATOR_PACKAGE, EmulatorSearch, Handler, KnownBad, Runnable, emulator_version,
    is_native,
};
use crate::platform::Platform;

#[derive(Debug, Args)]
pub struct PlatformsArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub format: ListFormat,
    /// Where to look for static QEMU emulators first (also MANIFOLD_QEMU_DIR)
    #[arg(long, value_name = "DIR")]
    pub emulator_dir: Option<PathBuf>,
}

#[derive(Serialize)]
struct Row {
    platform: String,
    status: &'static str,
    /// Whether this user can run it now: `native`, `runs`, `not registered`, `broken` or
    /// `unsupported`.
    this_user: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    handler: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    emulator: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flags: Option<String>,
    known_bad: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
}

pub fn run(args: PlatformsArgs, _settings: &Settings) -> anyhow::Result<()> {
    let binfmt = Binfmt::system(EmulatorSearch::from_env(args.emulator_dir));
    let statuses = binfmt.status()?;
    let mut versions = std::collections::HashMap::new();
    let mut version_of = |p: &std::path::Path| -> Option<String> {
        versions
            .entry(p.to_path_buf())
            .or_insert_with(|| emulator_version(p))
            .clone()
    };
    let mut rows = Vec::new();
    for known in Platform::known() {
        let p = known.platform();
        let handler = Handler::for_platform(p);
        let status = handler.and_then(|h| statuses.iter().find(|s| s.handler.name == h.name));
        let shown = short_platform(p);
        let mut row = Row {
            platform: shown.clone(),
            status: "unavailable",
            this_user: "unsupported",
            handler: handler.map(|h| h.name.clone()),
            emulator: None,
            version: None,
            flags: None,
            known_bad: Vec::new(),
            hint: None,
        };
        if is_native(p) {
            row.status = "native";
            row.this_user = "native";
            row.handler = None;
        } else if let Some(s) = status {
            let runnable = binfmt.runnable(s);
            row.this_user = runnable.word();
            if s.native {
                row.hint = Some(format!(
                    "this CPU lacks what {shown} needs, and no emulator can stand in for the machine's own architecture"
                ));
            } else if let Some(r) = s.registration.as_ref().filter(|r| r.works_in_containers()) {
                row.status = "emulated";
                row.emulator = Some(r.interpreter.clone());
                row.version = version_of(&r.interpreter);
                row.flags = Some(r.flags.clone());
            } else {
                match &s.emulator {
                    Ok(e) => {
                        row.status = "installable";
                        row.emulator = Some(e.path.clone());
                        row.version = version_of(&e.path);
                        let force = if s.registration.is_some() {
                            "--force "
                        } else {
                            ""
                        };
                        row.hint = Some(format!(
                            "`sudo manifold binfmt install {force}{shown} --persist`"
                        ));
                    }
                    Err(problem) => {
                        row.hint = Some(format!(
                            "{}: install {EMULATOR_PACKAGE} (`sudo apt-get install {EMULATOR_PACKAGE}`), then `sudo manifold binfmt install {shown} --persist`",
                            emulator_problem(problem)
                        ));
                    }
                }
            }
            match runnable {
                Runnable::Broken(why) => {
                    row.hint = Some(format!(
                        "{why}: `sudo manifold binfmt install --force {shown}` fixes it; `manifold binfmt test {shown}` checks for real"
                    ));
                }
                Runnable::Runs { host_only: true } => {
                    row.hint = Some(format!(
                        "this user runs it on the host, but without the F flag containers cannot: `sudo manifold binfmt install --force {shown} --persist`"
                    ));
                }
                _ => {}
            }
            // Only a registered emulator's version counts: an unregistered one runs nothing.
            if let (Some(v), Some(r), "emulated") = (&row.version, &s.registration, row.status) {
                for k in KnownBad::matching(&s.handler.target, v) {
                    warn_once(&k.warning(&r.name, v));
                    row.known_bad.push(k.id.clone());
                }
            }
        }
        rows.push(row);
    }
    match args.format {
        ListFormat::Json => print_json_lines(&rows),
        ListFormat::Table => {
            let mut t = Table::new(&[
                "PLATFORM",
                "STATUS",
                "THIS USER",
                "EMULATOR",
                "VERSION",
                "FLAGS",
                "HINT",
            ]);
            for r in &rows {
                t.row(vec![
                    r.platform.clone(),
                    r.status.to_string(),
                    r.this_user.to_string(),
                    r.emulator
                        .as_ref()
                        .map_or("-".into(), |p| p.display().to_string()),
                    version_cell(r.version.as_deref(), !r.known_bad.is_empty()),
                    r.flags.clone().unwrap_or_else(|| "-".into()),
                    r.hint.clone().unwrap_or_default(),
                ]);
            }
            Ok(t.print()?)
        }
    }
}
