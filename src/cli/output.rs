//! What goes to stdout, and how: the one writer for data ([`stdout`], [`outln!`]) whose broken
//! pipe the top of `cli` recognises, and the listings' helpers (docker's human sizes and
//! durations, aligned tables, JSON lines).

use std::io::{self, Write};

use chrono::{DateTime, Utc};

/// docker's `units.HumanSize`: decimal units, four significant digits ("4.194MB", "123kB").
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    format!("{}{}", format_g4(size), UNITS[unit])
}

/// Go's `%.4g` for the values human_size produces (0 ≤ v < 1000).
fn format_g4(v: f64) -> String {
    let digits_before = if v < 1.0 {
        1
    } else {
        (v.log10().floor() as i32 + 1).max(1)
    };
    let decimals = (4 - digits_before).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// docker's `units.HumanDuration` + " ago" ("2 days ago", "About an hour ago").
pub fn ago(t: Option<DateTime<Utc>>) -> String {
    let Some(t) = t else {
        return "N/A".into();
    };
    let secs = (Utc::now() - t).num_seconds();
    if secs < 0 {
        return "Less than a second from now".into();
    }
    let plural = |n: i64, unit: &str| format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" });
    let mins = secs / 60;
    let hours = mins / 60;
    let days = hours / 24;
    match () {
        _ if secs < 1 => "Less than a second ago".into(),
        _ if secs == 1 => "1 second ago".into(),
        _ if secs < 60 => format!("{secs} seconds ago"),
        _ if mins == 1 => "About a minute ago".into(),
        _ if mins < 60 => format!("{mins} minutes ago"),
        _ if hours == 1 => "About an hour ago".into(),
        _ if hours < 48 => format!("{hours} hours ago"),
        _ if hours < 24 * 7 * 2 => plural(days, "day"),
        _ if hours < 24 * 30 * 2 => plural(days / 7, "week"),
        _ if hours < 24 * 365 * 2 => plural(days / 30, "month"),
        _ => plural(days / 365, "year"),
    }
}

/// An aligned table like docker's (columns padded, three spaces apart), written to stdout.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|s| s.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}   ", w = widths[c]));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub fn print(&self) -> io::Result<()> {
        write_stdout(self.render().as_bytes())
    }
}

/// Print one JSON document per line (docker's `--format json`).
pub fn print_json_lines<T: serde::Serialize>(items: &[T]) -> anyhow::Result<()> {
    let mut out = stdout();
    for item in items {
        serde_json::to_writer(&mut out, item)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Print one pretty JSON document.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = stdout();
    serde_json::to_writer_pretty(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// `println!` for data, without its panic on a closed stdout: `outln!("{digest}")?`. The error
/// carries [`StdoutClosed`] when the reader has gone, so the command ends quietly.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let mut out = $crate::cli::output::stdout();
        writeln!(out, $($arg)*).and_then(|()| out.flush())
    }};
}
pub(crate) use outln;

/// Write `bytes` to stdout and flush them.
pub fn write_stdout(bytes: &[u8]) -> io::Result<()> {
    let mut out = stdout();
    out.write_all(bytes)?;
    out.flush()
}

/// Stdout, locked, for data a script reads. Every write to stdout goes through it (`println!`
/// would panic on a closed pipe, since Rust ignores SIGPIPE): when the reader has gone (`| head`,
/// `| true`), the error it returns has [`StdoutClosed`] in its chain.
pub fn stdout() -> MarkClosed<io::StdoutLock<'static>> {
    MarkClosed(io::stdout().lock())
}

/// A writer whose broken pipe is marked as stdout's (see [`stdout`]).
pub struct MarkClosed<W>(pub W);

impl<W: Write> Write for MarkClosed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(mark_closed)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(mark_closed)
    }
}

fn mark_closed(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        io::Error::new(io::ErrorKind::BrokenPipe, ClosedPipe(StdoutClosed))
    } else {
        e
    }
}

/// In a failure's chain when the failure was writing data to a stdout nobody reads any more:
/// the command ends quietly with status 0, as ripgrep does. A broken pipe elsewhere (a registry,
/// a container) does not carry it and is reported as usual.
#[derive(Debug, thiserror::Error)]
#[error("stdout is closed")]
pub struct StdoutClosed;

/// The payload of a marked `io::Error`. It hands out the marker as its source because
/// `io::Error::source()` returns its payload's source, not the payload: so the marker stays in
/// the chain through `io::Error`, serde_json's and tar's errors and `#[error(transparent)]`
/// wrappers alike.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to stdout: the reader has gone")]
struct ClosedPipe(#[source] StdoutClosed);

/// Whether `err` comes from writing to a closed stdout (see [`StdoutClosed`]).
pub fn stdout_closed(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.is::<StdoutClosed>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(1_234_567), "1.235MB");
        assert_eq!(human_size(4_194_304), "4.194MB");
        assert_eq!(human_size(123_000), "123kB");
    }

    #[test]
    fn durations_like_docker() {
        let now = Utc::now();
        assert_eq!(
            ago(Some(now - chrono::Duration::seconds(30))),
            "30 seconds ago"
        );
        assert_eq!(
            ago(Some(now - chrono::Duration::minutes(61))),
            "About an hour ago"
        );
        assert_eq!(ago(Some(now - chrono::Duration::days(3))), "3 days ago");
        assert_eq!(ago(Some(now - chrono::Duration::days(21))), "3 weeks ago");
        assert_eq!(ago(None), "N/A");
    }

    /// A real pipe whose reader is closed: writes to it fail with EPIPE.
    fn widowed_pipe() -> io::PipeWriter {
        let (reader, writer) = io::pipe().unwrap();
        drop(reader);
        writer
    }

    #[test]
    fn a_closed_stdout_is_recognised_through_every_wrapper() {
        let write = |w: &mut dyn Write| w.write_all(b"data\n").and_then(|()| w.flush());
        let err = write(&mut MarkClosed(widowed_pipe())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert!(stdout_closed(&anyhow::Error::from(err)));

        // through serde_json, which hides the io::Error itself
        let err = serde_json::to_writer(MarkClosed(widowed_pipe()), &["x"; 10]).unwrap_err();
        assert!(stdout_closed(&anyhow::Error::from(err)));

        // through a module error, whether it names its source or is transparent
        #[derive(Debug, thiserror::Error)]
        enum Wrapper {
            #[error("cannot write the archive")]
            Named(#[source] io::Error),
            #[error(transparent)]
            Transparent(io::Error),
        }
        let err = write(&mut MarkClosed(widowed_pipe())).unwrap_err();
        assert!(stdout_closed(&Wrapper::Named(err).into()));
        let err = write(&mut MarkClosed(widowed_pipe())).unwrap_err();
        let err = anyhow::Error::from(Wrapper::Transparent(err)).context("while saving");
        assert!(stdout_closed(&err));

        // through tar, which wraps the io::Error in one of its own
        let mut tar = tar::Builder::new(MarkClosed(widowed_pipe()));
        let err = tar
            .append_data(&mut tar::Header::new_ustar(), "f", &[0u8; 4096][..])
            .unwrap_err();
        assert!(stdout_closed(&anyhow::Error::from(err)));
    }

    #[test]
    fn a_broken_pipe_elsewhere_is_not_stdouts() {
        // the same EPIPE, from a pipe that is not stdout
        let err = widowed_pipe().write_all(b"data").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert!(!stdout_closed(&anyhow::Error::from(err)));
        // and from a socket whose peer has gone (a registry that hung up)
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        drop(listener.accept().unwrap());
        drop(listener);
        let err = (0..1000)
            .find_map(|_| client.write_all(&[0; 65536]).err())
            .expect("writes to a closed socket fail");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{err}"
        );
        let err = anyhow::Error::from(err).context("cannot upload a blob");
        assert!(!stdout_closed(&err));
        // other stdout failures (a full disk) are reported
        let full = io::Error::from_raw_os_error(libc::ENOSPC);
        let err = write_all_marked(full);
        assert!(!stdout_closed(&err.into()));
    }

    fn write_all_marked(fail_with: io::Error) -> io::Error {
        struct Failing(Option<io::Error>);
        impl Write for Failing {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(self.0.take().expect("one write"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        MarkClosed(Failing(Some(fail_with)))
            .write_all(b"x")
            .unwrap_err()
    }

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["A", "BB"]);
        t.row(vec!["xxx".into(), "y".into()]);
        assert_eq!(t.render(), "A     BB\nxxx   y\n");
    }
}
