//! Service containers: what a container records beyond its image and command (published and
//! exposed ports, stop signal and timeout, HEALTHCHECK and the health seen, log options, an
//! open stdin), and what any manifold process does to a running one — signal it, wait for its
//! exit, stop it (the stop signal, then SIGKILL after the timeout).
//!
//! Waiting asks the container's monitor (see `monitor`) through the socket it serves in the
//! container's directory: it answers with the exit status once the container has exited and
//! been cleaned up (removed, with `--rm`), so a waiter never misses an exit nor reads a
//! half-updated record. A container without a monitor (run in the foreground, or whose monitor
//! was killed) is watched through its record and the runtime's state instead.

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::RuntimeError;
use super::containers::{ContainerRecord, Containers, Status};
use super::health::{Health, Healthcheck};
use super::logs::LogOptions;
use super::oci_runtime::{OciRuntime, RuntimeState};
use super::ports::{ContainerPort, PublishedPort};
use super::resources::Resources;

/// The monitor's socket in the container's directory.
pub const MONITOR_SOCKET: &str = "monitor.sock";
/// docker's stop timeout.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a container may take to go once SIGKILLed before that is an error.
const KILL_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a container without a monitor is looked at.
const POLL: Duration = Duration::from_millis(50);

fn is_false(b: &bool) -> bool {
    !b
}

/// What a container carries for `-d`, `-p`, `stop`, health checks and restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Its output goes to its log (it runs, or last ran, under a monitor).
    #[serde(default, skip_serializing_if = "is_false")]
    pub logged: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PublishedPort>,
    /// The image's EXPOSE (shown by `ps` when not published).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposed: Vec<ContainerPort>,
    /// `--stop-signal`, else the image's STOPSIGNAL; SIGTERM when neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// `--stop-timeout` in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// While it runs under a monitor with a healthcheck.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogOptions>,
    /// `-i` with `-d`: stdin is kept open (for `start -a -i`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub interactive: bool,
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
}

impl Service {
    pub fn is_default(&self) -> bool {
        *self == Service::default()
    }

    /// The signal `stop` sends first.
    pub fn stop_signal(&self) -> Result<i32, RuntimeError> {
        match &self.stop_signal {
            Some(s) => parse_signal(s),
            None => Ok(libc::SIGTERM),
        }
    }
}

/// Linux's signals by name.
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// docker's signal values: a name with or without `SIG` (any case), `RTMIN+N`, or a number.
pub fn parse_signal(s: &str) -> Result<i32, RuntimeError> {
    let bad = || RuntimeError::InvalidSignal(s.to_string());
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n).ok_or_else(bad);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some((_, n)) = SIGNALS.iter().find(|(n, _)| *n == name) {
        return Ok(*n);
    }
    let rt = |base: i32, rest: &str, sign: i32| -> Option<i32> {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.parse().ok()?
        };
        let n = base + sign * off;
        (libc::SIGRTMIN()..=libc::SIGRTMAX())
            .contains(&n)
            .then_some(n)
    };
    let n = if let Some(rest) = name.strip_prefix("RTMIN") {
        rt(libc::SIGRTMIN(), rest.trim_start_matches('+'), 1)
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        rt(libc::SIGRTMAX(), rest.trim_start_matches('-'), -1)
    } else {
        None
    };
    n.ok_or_else(bad)
}

/// A unix socket address for `name` in `dir`: the plain path when it fits in a socket address,
/// else one through a descriptor of `dir` (`/proc/PID/fd/N/name`, valid for other processes
/// too, such as the runtime given a console socket), valid while this lives.
pub struct SocketPath {
    _dir: Option<OwnedFd>,
    pub path: PathBuf,
}

impl SocketPath {
    pub fn new(dir: &Path, name: &str) -> io::Result<SocketPath> {
        let plain = dir.join(name);
        // sun_path holds 108 bytes with the terminating NUL.
        if plain.as_os_str().len() < 100 {
            return Ok(SocketPath {
                _dir: None,
                path: plain,
            });
        }
        let fd = rustix::fs::open(
            dir,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        let path = PathBuf::from(format!(
            "/proc/{}/fd/{}/{name}",
            std::process::id(),
            fd.as_raw_fd()
        ));
        Ok(SocketPath {
            _dir: Some(fd),
            path,
        })
    }
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// It exited with this status (None: unknown, its monitor was killed).
    Exited(Option<i32>),
    /// Still running when the time was up.
    TimedOut,
}

/// Send `signal` to the container's first process.
pub fn kill(oci: &OciRuntime, record: &ContainerRecord, signal: i32) -> Result<(), RuntimeError> {
    if !matches!(
        oci.state(&record.id),
        Ok(Some(
            RuntimeState::Running | RuntimeState::Paused | RuntimeState::Created
        ))
    ) {
        return Err(RuntimeError::NotRunning {
            id: record.short_id().to_string(),
        });
    }
    oci.kill(&record.id, &signal.to_string())
        .map_err(|source| RuntimeError::Signal {
            id: record.short_id().to_string(),
            source,
        })
}

/// Wait until the container has exited and been cleaned up, at most `limit` (None: as long as
/// it takes).
pub fn wait(
    containers: &Containers,
    oci: Option<&OciRuntime>,
    record: &ContainerRecord,
    limit: Option<Duration>,
) -> Result<Waited, RuntimeError> {
    let deadline = limit.map(|l| Instant::now() + l);
    let cdir = containers.dir_of(&record.id);
    if let Some(code) = ask_monitor(&cdir.dir, deadline)? {
        return Ok(code);
    }
    // No monitor (or it went without answering): watch the record, and the runtime once the
    // record's owner is gone.
    loop {
        let current = match containers.find(&record.id) {
            Ok(r) => r,
            Err(RuntimeError::NoSuchContainer(_)) => return Ok(Waited::Exited(None)),
            Err(e) => return Err(e),
        };
        match current.status {
            Status::Exited => return Ok(Waited::Exited(current.exit_code)),
            Status::Removing => return Ok(Waited::Exited(current.exit_code)),
            Status::Created | Status::Running if !current.owner_alive() => {
                let state = oci.and_then(|o| o.state(&record.id).ok().flatten());
                if !matches!(
                    state,
                    Some(RuntimeState::Running | RuntimeState::Paused | RuntimeState::Created)
                ) {
                    return Ok(Waited::Exited(None));
                }
            }
            _ => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(Waited::TimedOut);
        }
        std::thread::sleep(POLL);
    }
}

/// The monitor's answer to `wait`: None when there is no monitor (or it went without one).
fn ask_monitor(dir: &Path, deadline: Option<Instant>) -> Result<Option<Waited>, RuntimeError> {
    let Ok(socket) = SocketPath::new(dir, MONITOR_SOCKET) else {
        return Ok(None);
    };
    let Ok(mut stream) = UnixStream::connect(&socket.path) else {
        return Ok(None);
    };
    if stream.write_all(b"wait\n").is_err() {
        return Ok(None);
    }
    if let Some(d) = deadline {
        let left = d.saturating_duration_since(Instant::now());
        let _ = stream.set_read_timeout(Some(left.max(Duration::from_millis(1))));
    }
    let mut line = String::new();
    match BufReader::new(&stream).read_line(&mut line) {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            return Ok(Some(Waited::TimedOut));
        }
        Err(_) => return Ok(None),
    }
    Ok(line
        .trim()
        .strip_prefix("exited ")
        .and_then(|c| c.parse().ok())
        .map(|c| Waited::Exited(Some(c))))
}

/// `stop`: the stop signal, then SIGKILL when it has not exited after `timeout`. A container
/// that is not running is left as it is.
pub fn stop(
    containers: &Containers,
    oci: &OciRuntime,
    record: &ContainerRecord,
    timeout: Duration,
) -> Result<Waited, RuntimeError> {
    let signal = record.service.stop_signal()?;
    match kill(oci, record, signal) {
        Ok(()) => {}
        Err(RuntimeError::NotRunning { .. }) => {
            return wait(containers, Some(oci), record, Some(Duration::ZERO));
        }
        Err(e) => return Err(e),
    }
    if !timeout.is_zero() {
        match wait(containers, Some(oci), record, Some(timeout))? {
            Waited::TimedOut => {}
            done => return Ok(done),
        }
    }
    match kill(oci, record, libc::SIGKILL) {
        Ok(()) | Err(RuntimeError::NotRunning { .. }) => {}
        Err(e) => return Err(e),
    }
    match wait(containers, Some(oci), record, Some(KILL_TIMEOUT))? {
        Waited::TimedOut => Err(RuntimeError::Unstoppable {
            id: record.short_id().to_string(),
        }),
        done => Ok(done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_like_docker() {
        assert_eq!(parse_signal("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("sigkill").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("SIGUSR1").unwrap(), libc::SIGUSR1);
        assert_eq!(parse_signal("15").unwrap(), 15);
        assert_eq!(parse_signal("RTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
        assert_eq!(parse_signal("RTMAX").unwrap(), libc::SIGRTMAX());
        for bad in ["", "0", "65", "NOPE", "SIG", "RTMIN+99", "-1"] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_signal("NOPE").unwrap_err().to_string(),
            "invalid signal `NOPE`"
        );
        let s = Service {
            stop_signal: Some("SIGQUIT".into()),
            ..Default::default()
        };
        assert_eq!(s.stop_signal().unwrap(), libc::SIGQUIT);
        assert_eq!(Service::default().stop_signal().unwrap(), libc::SIGTERM);
    }

    #[test]
    fn long_directories_get_short_socket_addresses() {
        let base = tempfile::tempdir().unwrap();
        let deep = base.path().join("d".repeat(120));
        std::fs::create_dir_all(&deep).unwrap();
        let s = SocketPath::new(&deep, "x.sock").unwrap();
        assert!(s.path.starts_with("/proc/"), "{}", s.path.display());
        let listener = std::os::unix::net::UnixListener::bind(&s.path).unwrap();
        assert!(deep.join("x.sock").exists());
        UnixStream::connect(&s.path).unwrap();
        drop(listener);
        let short = SocketPath::new(base.path(), "y.sock").unwrap();
        assert_eq!(short.path, base.path().join("y.sock"));
    }
}
