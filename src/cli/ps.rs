//! `manifold ps [-a] [-q] [--no-trunc] [--format json]`: containers, running ones unless `-a`,
//! with docker's columns (STATUS with health, PORTS) and the platform.
//! Cleans first what killed manifold processes left behind.

use clap::Args;
use serde::Serialize;

use super::Settings;
use super::args::ListFormat;
use super::output::{Table, ago, outln, print_json_lines};
use super::select::short_platform;
use crate::runtime::{ContainerRecord, Status, ports};

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (running ones only by default)
    #[arg(short, long)]
    pub all: bool,
    /// Only show container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub format: ListFormat,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Row<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    names: &'a str,
    image: &'a str,
    image_digest: String,
    platform: String,
    command: String,
    created_at: String,
    state: Status,
    status: String,
    ports: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
}

/// docker's STATUS column: `Up 5 seconds`, `Up 2 minutes (healthy)`, `Exited (0) 2 minutes
/// ago`, `Created`.
pub fn status_text(r: &ContainerRecord) -> String {
    match r.status {
        Status::Created => "Created".into(),
        Status::Running => {
            let since = ago(r.started.or(Some(r.created)));
            let up = format!("Up {}", since.trim_end_matches(" ago"));
            match &r.service.health {
                Some(h) => format!("{up} {}", h.status.ps_suffix()),
                None => up,
            }
        }
        // docker's words for a removal under way, and for one that failed or was cut short.
        Status::Removing if r.owner_alive() => "Removal In Progress".into(),
        Status::Removing => "Dead".into(),
        Status::Exited => {
            let code = r
                .exit_code
                .map_or_else(|| "unknown".to_string(), |c| c.to_string());
            format!("Exited ({code}) {}", ago(r.finished))
        }
    }
}

/// docker's PORTS column: a running container's published and exposed ports.
fn ports_text(r: &ContainerRecord) -> String {
    if r.status != Status::Running {
        return String::new();
    }
    ports::display(&r.service.ports, &r.service.exposed)
}

fn command_text(r: &ContainerRecord, no_trunc: bool) -> String {
    let full = r.command.join(" ");
    if no_trunc || full.chars().count() <= 20 {
        format!("\"{full}\"")
    } else {
        format!("\"{}…\"", full.chars().take(19).collect::<String>())
    }
}

pub fn run(args: PsArgs, settings: &Settings) -> anyhow::Result<()> {
    let store = settings.store()?;
    let containers = super::containers::reconciled(&store)?;
    let list: Vec<ContainerRecord> = containers
        .list()?
        .into_iter()
        .rev()
        .filter(|r| args.all || r.status == Status::Running)
        .collect();
    if args.quiet {
        for r in &list {
            outln!("{}", if args.no_trunc { &r.id } else { r.short_id() })?;
        }
        return Ok(());
    }
    match args.format {
        ListFormat::Json => {
            let rows: Vec<Row> = list
                .iter()
                .map(|r| Row {
                    id: &r.id,
                    names: &r.name,
                    image: &r.image,
                    image_digest: r.manifest.to_string(),
                    platform: short_platform(&r.platform),
                    command: command_text(r, true),
                    created_at: r.created.to_rfc3339(),
                    state: r.status,
                    status: status_text(r),
                    ports: ports_text(r),
                    exit_code: r.exit_code,
                })
                .collect();
            print_json_lines(&rows)
        }
        ListFormat::Table => {
            let mut t = Table::new(&[
                "CONTAINER ID",
                "IMAGE",
                "COMMAND",
                "CREATED",
                "STATUS",
                "PORTS",
                "PLATFORM",
                "NAMES",
            ]);
            for r in &list {
                t.row(vec![
                    if args.no_trunc {
                        r.id.clone()
                    } else {
                        r.short_id().to_string()
                    },
                    r.image.clone(),
                    command_text(r, args.no_trunc),
                    ago(Some(r.created)),
                    status_text(r),
                    ports_text(r),
                    short_platform(&r.platform),
                    r.name.clone(),
                ]);
            }
            Ok(t.print()?)
        }
    }
}
