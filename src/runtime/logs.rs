//! A detached container's log: what it writes to stdout and stderr, kept apart, one JSON object
//! per line in docker's `json-file` shape (`{"log":"…\n","stream":"stdout","time":"…"}`, the
//! time in RFC 3339 with nanoseconds, UTC), written by the container's monitor and read by
//! `logs` (all of it, the last N lines, a time window, or following it).
//!
//! The log is bounded by default, unlike docker's `json-file` (whose `max-size` is off unless
//! the daemon is configured): nothing else would ever rotate the log of a service that runs for
//! weeks under a monitor nobody watches. When the file reaches `max-size` (10 MiB) it becomes
//! `json.log.1` (the older ones shift up to `json.log.<max-file − 1>`, the oldest is dropped) and
//! a new one starts: at most `max-file` (3) files. `--log-opt max-size=-1` keeps everything.
//!
//! A line longer than 16 KiB is cut into entries of 16 KiB (docker's buffer), the last part
//! ending the line; bytes that are not UTF-8 become U+FFFD, as in docker.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// The log's file name in the container's directory.
pub const LOG_FILE: &str = "json.log";
/// docker's line buffer: longer lines are split into entries of this size.
pub const MAX_LINE: usize = 16 * 1024;
const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;
const DEFAULT_MAX_FILES: u32 = 3;
/// How often a follower looks for more.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// `--log-opt max-size=…`, `max-file=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogOptions {
    /// None: unbounded.
    pub max_size: Option<u64>,
    pub max_files: u32,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            max_size: Some(DEFAULT_MAX_SIZE),
            max_files: DEFAULT_MAX_FILES,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("invalid log option `{option}`: {why}")]
    Option { option: String, why: String },
    #[error("invalid time `{0}`")]
    Time(String),
}

impl crate::hint::Hint for LogError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            LogError::Option { .. } => {
                "log options are `--log-opt max-size=10m` (`-1`: unbounded) and `--log-opt max-file=3`".into()
            }
            LogError::Time(_) => {
                "times look like `2024-05-01T10:00:00Z`, `2024-05-01`, `1714557600` (Unix time) or `10m` (ago)".into()
            }
        })
    }
}

impl LogOptions {
    /// docker's `--log-opt` values for `json-file`.
    pub fn parse(options: &[String]) -> Result<LogOptions, LogError> {
        let mut out = LogOptions::default();
        for o in options {
            let bad = |why: &str| LogError::Option {
                option: o.clone(),
                why: why.to_string(),
            };
            let (k, v) = o.split_once('=').ok_or_else(|| bad("expected KEY=VALUE"))?;
            match k {
                "max-size" if v == "-1" => out.max_size = None,
                "max-size" => {
                    out.max_size = Some(
                        super::resources::parse_size(v)
                            .filter(|n| *n > 0)
                            .ok_or_else(|| bad("expected a size such as 10m or 512k, or -1"))?,
                    );
                }
                "max-file" => {
                    out.max_files = v
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| bad("expected a number of files, at least 1"))?;
                }
                _ => return Err(bad("known options are max-size and max-file")),
            }
        }
        Ok(out)
    }
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub log: String,
    pub stream: Stream,
    pub time: DateTime<Utc>,
}

impl Entry {
    /// `-t`: docker's timestamp in front of the line.
    pub fn timestamp(&self) -> String {
        self.time.to_rfc3339_opts(SecondsFormat::Nanos, true)
    }
}

/// The writing end (the monitor's), rotating by [`LogOptions`].
pub struct LogWriter {
    path: PathBuf,
    options: LogOptions,
    file: File,
    size: u64,
}

impl LogWriter {
    pub fn open(path: &Path, options: LogOptions) -> io::Result<LogWriter> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            options,
            file,
            size,
        })
    }

    pub fn write(&mut self, stream: Stream, line: &[u8], time: DateTime<Utc>) -> io::Result<()> {
        let entry = Entry {
            log: String::from_utf8_lossy(line).into_owned(),
            stream,
            time,
        };
        let mut bytes = serde_json::to_vec(&entry).map_err(io::Error::other)?;
        bytes.push(b'\n');
        if let Some(max) = self.options.max_size
            && self.size > 0
            && self.size + bytes.len() as u64 > max
        {
            self.rotate()?;
        }
        // One write per entry: a reader never sees half of one unless the disk is full.
        self.file.write_all(&bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.options.max_files.max(1);
        if keep == 1 {
            self.file.set_len(0)?;
            self.file.seek(SeekFrom::Start(0))?;
            self.size = 0;
            return Ok(());
        }
        let _ = fs::remove_file(numbered(&self.path, keep - 1));
        for n in (1..keep - 1).rev() {
            let _ = fs::rename(numbered(&self.path, n), numbered(&self.path, n + 1));
        }
        fs::rename(&self.path, numbered(&self.path, 1))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// The log files of `path`, oldest first (`json.log.2`, `json.log.1`, `json.log`), those that
/// exist.
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut n = 1;
    while numbered(path, n).exists() {
        out.push(numbered(path, n));
        n += 1;
    }
    out.reverse();
    if path.exists() {
        out.push(path.to_path_buf());
    }
    out
}

/// Split what a stream gives into lines of at most [`MAX_LINE`] bytes (each with its `\n`, but
/// a cut one and the last bytes before end of file) and pass each on.
pub fn copy_lines(
    from: impl Read,
    mut line: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(MAX_LINE, from);
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    loop {
        let chunk = match reader.fill_buf() {
            Ok([]) => break,
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let room = MAX_LINE - buf.len();
        let take = chunk.len().min(room);
        match chunk[..take].iter().position(|b| *b == b'\n') {
            Some(i) => {
                buf.extend_from_slice(&chunk[..=i]);
                reader.consume(i + 1);
                line(&buf)?;
                buf.clear();
            }
            None => {
                buf.extend_from_slice(&chunk[..take]);
                reader.consume(take);
                if buf.len() == MAX_LINE {
                    line(&buf)?;
                    buf.clear();
                }
            }
        }
    }
    if !buf.is_empty() {
        line(&buf)?;
    }
    Ok(())
}

/// Which entries `logs` shows.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// The last N (of those in the time window).
    pub tail: Option<usize>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl Query {
    fn in_window(&self, e: &Entry) -> bool {
        self.since.is_none_or(|s| e.time >= s) && self.until.is_none_or(|u| e.time <= u)
    }
}

/// Where a reader stopped in the newest file, to follow from there.
#[derive(Debug)]
pub struct Position {
    file: Option<File>,
    inode: Option<u64>,
    partial: Vec<u8>,
}

/// Every entry of the log at `path` that `query` selects, oldest first, passed to `emit`; the
/// position after the last one, to [`follow`] from.
pub fn read(
    path: &Path,
    query: &Query,
    mut emit: impl FnMut(&Entry) -> io::Result<()>,
) -> io::Result<Position> {
    let mut tail: std::collections::VecDeque<Entry> = Default::default();
    let mut position = Position {
        file: None,
        inode: None,
        partial: Vec::new(),
    };
    let all = files(path);
    for (i, f) in all.iter().enumerate() {
        let file = match File::open(f) {
            Ok(file) => file,
            // Rotated away between the listing and now: its entries are in the next file.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let inode = file.metadata()?.ino();
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            if !line.ends_with(b"\n") {
                // Being written: left for the follower.
                if i + 1 == all.len() {
                    position.partial = line.clone();
                }
                break;
            }
            let Ok(entry) = serde_json::from_slice::<Entry>(&line) else {
                continue;
            };
            if !query.in_window(&entry) {
                continue;
            }
            match query.tail {
                Some(0) => {}
                Some(n) => {
                    if tail.len() == n {
                        tail.pop_front();
                    }
                    tail.push_back(entry);
                }
                None => emit(&entry)?,
            }
        }
        if i + 1 == all.len() {
            position.file = Some(reader.into_inner());
            position.inode = Some(inode);
        }
    }
    for e in &tail {
        emit(e)?;
    }
    Ok(position)
}

/// Go on from `position` as the log grows (across rotations), until `running` says the writer
/// is gone and everything it wrote has been passed on, or an entry is past `until`.
pub fn follow(
    path: &Path,
    mut position: Position,
    query: &Query,
    mut running: impl FnMut() -> bool,
    mut emit: impl FnMut(&Entry) -> io::Result<()>,
) -> io::Result<()> {
    loop {
        // Asked before reading, so that what the writer wrote before it went is read after.
        let alive = running();
        if let Some(file) = position.file.as_mut() {
            let mut fresh = Vec::new();
            file.read_to_end(&mut fresh)?;
            position.partial.extend_from_slice(&fresh);
            let complete = position
                .partial
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
            let lines: Vec<u8> = position.partial.drain(..complete).collect();
            for line in lines.split_inclusive(|b| *b == b'\n') {
                let Ok(entry) = serde_json::from_slice::<Entry>(line) else {
                    continue;
                };
                if query.until.is_some_and(|u| entry.time > u) {
                    return Ok(());
                }
                if query.in_window(&entry) {
                    emit(&entry)?;
                }
            }
        }
        // Rotated (or made) since: the current file is read to its end; go on with the one
        // after it, or, when it is gone (rotated out), with the oldest left, all newer.
        let all: Vec<(PathBuf, u64)> = files(path)
            .into_iter()
            .filter_map(|p| fs::metadata(&p).ok().map(|m| (p, m.ino())))
            .collect();
        let next = match all.iter().position(|(_, ino)| Some(*ino) == position.inode) {
            Some(i) => all.get(i + 1),
            None => all.first(),
        };
        if let Some((next, ino)) = next {
            match File::open(next) {
                Ok(f) => {
                    position.file = Some(f);
                    position.inode = Some(*ino);
                    position.partial.clear();
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        if !alive {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

/// docker's `--since`/`--until` values: an RFC 3339 time (`2024-05-01T10:00:00Z`, with or without
/// fractions or zone — local time without one), a date (`2024-05-01`, local midnight), a Unix
/// time (`1714557600`, `1714557600.5`), or a duration ago (`10m`, `1h30m`, `90s`).
pub fn parse_time(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, LogError> {
    let bad = || LogError::Time(s.to_string());
    if let Some(d) = parse_duration(s) {
        return Ok(now - chrono::Duration::from_std(d).map_err(|_| bad())?);
    }
    if let Ok(secs) = s.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        let whole = secs.trunc() as i64;
        let nanos = ((secs - secs.trunc()) * 1e9).round() as u32;
        return Utc
            .timestamp_opt(whole, nanos.min(999_999_999))
            .single()
            .ok_or_else(bad);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let local = |naive: NaiveDateTime| {
        Local
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(bad)
    };
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, format) {
            return local(naive);
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return local(date.and_hms_opt(0, 0, 0).ok_or_else(bad)?);
    }
    Err(bad())
}

/// Go's durations as docker takes them: `300ms`, `10s`, `1h30m`.
fn parse_duration(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn collect(path: &Path, q: &Query) -> Vec<String> {
        let mut out = Vec::new();
        read(path, q, |e| {
            out.push(e.log.clone());
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn docker_json_file_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        let mut w = LogWriter::open(&path, LogOptions::default()).unwrap();
        w.write(Stream::Stdout, b"hello\n", t("2024-05-01T10:00:00.5Z"))
            .unwrap();
        w.write(Stream::Stderr, b"bad \xff\n", t("2024-05-01T10:00:01Z"))
            .unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"log\":\"hello\\n\",\"stream\":\"stdout\",\"time\":\"2024-05-01T10:00:00.500Z\"}\n\
             {\"log\":\"bad \u{fffd}\\n\",\"stream\":\"stderr\",\"time\":\"2024-05-01T10:00:01Z\"}\n"
        );
        let e: Entry = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(e.timestamp(), "2024-05-01T10:00:00.500000000Z");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn lines_are_split_like_docker() {
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut input = b"a\nbb\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + 5));
        input.extend_from_slice(b"\nlast");
        copy_lines(&input[..], |l| {
            lines.push(l.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(lines[0], b"a\n");
        assert_eq!(lines[1], b"bb\n");
        assert_eq!(lines[2].len(), MAX_LINE);
        assert_eq!(lines[3], b"xxxxx\n");
        assert_eq!(lines[4], b"last");
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn rotation_keeps_max_files_and_reads_across_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        let opts = LogOptions {
            max_size: Some(200),
            max_files: 3,
        };
        let mut w = LogWriter::open(&path, opts).unwrap();
        let base = t("2024-05-01T10:00:00Z");
        for i in 0..20 {
            let line = format!("line {i:02}\n");
            w.write(
                Stream::Stdout,
                line.as_bytes(),
                base + chrono::Duration::seconds(i),
            )
            .unwrap();
        }
        let f = files(&path);
        assert_eq!(f.len(), 3, "{f:?}");
        for p in &f {
            assert!(fs::metadata(p).unwrap().len() <= 200, "{}", p.display());
        }
        let all = collect(&path, &Query::default());
        // The oldest are gone; the rest are in order, the newest last.
        assert_eq!(all.last().unwrap(), "line 19\n");
        assert!(all.len() < 20 && all.len() >= 6, "{all:?}");
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(all, sorted);
        let tail = collect(
            &path,
            &Query {
                tail: Some(2),
                ..Default::default()
            },
        );
        assert_eq!(tail, ["line 18\n", "line 19\n"]);
        let window = collect(
            &path,
            &Query {
                since: Some(base + chrono::Duration::seconds(15)),
                until: Some(base + chrono::Duration::seconds(16)),
                ..Default::default()
            },
        );
        assert_eq!(window, ["line 15\n", "line 16\n"]);
        // One file: rotation truncates.
        let one = dir.path().join("one.log");
        let mut w = LogWriter::open(
            &one,
            LogOptions {
                max_size: Some(100),
                max_files: 1,
            },
        )
        .unwrap();
        for i in 0..10 {
            w.write(Stream::Stdout, format!("{i}\n").as_bytes(), base)
                .unwrap();
        }
        assert!(fs::metadata(&one).unwrap().len() <= 100);
        assert_eq!(files(&one).len(), 1);
    }

    #[test]
    fn follow_goes_on_across_a_rotation_and_stops_with_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        let opts = LogOptions {
            max_size: Some(150),
            max_files: 2,
        };
        let mut w = LogWriter::open(&path, opts).unwrap();
        let base = t("2024-05-01T10:00:00Z");
        w.write(Stream::Stdout, b"first\n", base).unwrap();
        let mut seen = Vec::new();
        let pos = read(&path, &Query::default(), |e| {
            seen.push(e.log.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, ["first\n"]);
        let mut round = 0;
        follow(
            &path,
            pos,
            &Query::default(),
            || {
                round += 1;
                if round <= 3 {
                    for i in 0..3 {
                        w.write(Stream::Stdout, format!("r{round} {i}\n").as_bytes(), base)
                            .unwrap();
                    }
                }
                round <= 3
            },
            |e| {
                seen.push(e.log.clone());
                Ok(())
            },
        )
        .unwrap();
        let want: Vec<String> = std::iter::once("first\n".to_string())
            .chain((1..=3).flat_map(|r| (0..3).map(move |i| format!("r{r} {i}\n"))))
            .collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn options_and_times() {
        assert_eq!(LogOptions::parse(&[]).unwrap(), LogOptions::default());
        let o = LogOptions::parse(&["max-size=1m".into(), "max-file=5".into()]).unwrap();
        assert_eq!(o.max_size, Some(1024 * 1024));
        assert_eq!(o.max_files, 5);
        assert_eq!(
            LogOptions::parse(&["max-size=-1".into()]).unwrap().max_size,
            None
        );
        for bad in [
            "max-size=lots",
            "max-file=0",
            "mode=non-blocking",
            "max-size",
        ] {
            assert!(LogOptions::parse(&[bad.into()]).is_err(), "{bad}");
        }
        let now = t("2024-05-01T10:00:00Z");
        assert_eq!(parse_time("10m", now).unwrap(), t("2024-05-01T09:50:00Z"));
        assert_eq!(parse_time("1h30m", now).unwrap(), t("2024-05-01T08:30:00Z"));
        assert_eq!(
            parse_time("2024-05-01T09:00:00.25+02:00", now).unwrap(),
            t("2024-05-01T07:00:00.25Z")
        );
        assert_eq!(
            parse_time("1714557600", now).unwrap(),
            t("2024-05-01T10:00:00Z")
        );
        assert_eq!(
            parse_time("1714557600.5", now).unwrap(),
            t("2024-05-01T10:00:00.5Z")
        );
        assert!(parse_time("2024-05-01", now).is_ok());
        assert!(parse_time("2024-05-01T10:00:00", now).is_ok());
        for bad in ["", "yesterday", "10x", "2024-13-01"] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
    }
}
