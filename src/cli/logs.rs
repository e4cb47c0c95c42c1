//! `manifold logs [-f] [-n N] [-t] [--since TIME] [--until TIME] CONTAINER`: what a detached
//! container wrote, stdout to stdout and stderr to stderr (see `runtime::logs`).

use std::io::Write;

use clap::Args;

use super::Settings;
use super::errors::user_error;
use super::output;
use crate::runtime::logs::{self, Entry, LOG_FILE, Query, Stream};
use crate::runtime::{RuntimeError, Status};

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing what the container writes until it stops
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines (`all`: every line)
    #[arg(short = 'n', long, value_name = "N")]
    pub tail: Option<String>,
    /// Put each line's time (RFC 3339, nanoseconds) in front of it
    #[arg(short, long)]
    pub timestamps: bool,
    /// Only lines since TIME: an RFC 3339 time, a date (`2024-05-01`), a Unix time, or a
    /// duration ago (`10m`, `1h30m`)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only lines until TIME (as `--since`)
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// The container: name, ID or ID prefix
    pub container: String,
}

pub fn run(args: LogsArgs, settings: &Settings) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    let time = |s: &Option<String>| {
        s.as_deref()
            .map(|t| logs::parse_time(t, now).map_err(RuntimeError::from))
            .transpose()
    };
    let tail = match args.tail.as_deref() {
        None | Some("all") => None,
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            user_error(
                format!("invalid `--tail` value `{n}`: expected a number of lines or `all`"),
                None,
            )
        })?),
    };
    let query = Query {
        tail,
        since: time(&args.since)?,
        until: time(&args.until)?,
    };
    let store = settings.store()?;
    let containers = super::containers::reconciled(&store)?;
    let record = containers.find(&args.container)?;
    let path = containers.dir_of(&record.id).dir.join(LOG_FILE);
    if !record.service.logged && logs::files(&path).is_empty() {
        return Err(user_error(
            format!(
                "container {} has no log: it ran in the foreground, its output went to the terminal",
                record.short_id()
            ),
            Some("`manifold run -d` keeps a container's output for `manifold logs`"),
        ));
    }
    let mut out = output::stdout();
    let mut err = std::io::stderr();
    let mut emit = |e: &Entry| -> std::io::Result<()> {
        let to: &mut dyn Write = match e.stream {
            Stream::Stdout => &mut out,
            Stream::Stderr => &mut err,
        };
        if args.timestamps {
            write!(to, "{} ", e.timestamp())?;
        }
        to.write_all(e.log.as_bytes())?;
        to.flush()
    };
    let position = logs::read(&path, &query, &mut emit)?;
    if args.follow {
        let id = record.id.clone();
        let running = || {
            containers
                .get(&id)
                .is_ok_and(|r| r.status == Status::Running && r.owner_alive())
        };
        logs::follow(&path, position, &query, running, &mut emit)?;
    }
    Ok(())
}
