//! The monitor of a detached container (conmon's role in podman): a manifold process of its own,
//! in its own session, that starts the container and stays with it until it exits.
//!
//! It holds what the container would otherwise need manifold for: the private mount namespace
//! its root is mounted in, the network forwarder (slirp4netns ends when the monitor does), the
//! reading ends of the container's stdout and stderr, written to its log (see `logs`), stdin
//! when the container keeps one open (`-i`: `start -a -i` attaches to it), the health checks
//! (see `health`), and the container's exit: it is the child subreaper the container's first
//! process falls to once the runtime has started it (`runc run --detach`), so it reaps it,
//! records its status and time, and removes the container for `--rm`.
//!
//! Other manifold processes talk to it through a socket in the container's directory
//! (`monitor.sock`): a `wait` request is answered with the exit status once the container has
//! exited and been cleaned up; an `attach` request's bytes go to the container's stdin.
//!
//! When the monitor is killed, the container lives on (as a podman container does when its
//! conmon is killed): the runtime runs it, `ps` shows it up, `stop` and `kill` reach it through
//! the runtime. What the monitor held goes with it: the log stops growing (the container's
//! writes to stdout fail), published ports stop answering (slirp4netns exits with it), health
//! checks stop. Its exit is then seen by the next `ps`, which reconciles the record as for any
//! container whose manifold is gone: `Exited (unknown)` (nobody reaped it to read its status),
//! or removed, for `--rm`.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::RuntimeError;
use super::containers::{ContainerDir, ContainerRecord};
use super::exec::{self, ExecOptions};
use super::health::{self, Healthcheck, Probe};
use super::logs::{self, LOG_FILE, LogWriter, Stream};
use super::run::{Exit, Prepared, Runtime};
use super::service::{MONITOR_SOCKET, SocketPath};

/// Where the runtime writes the container's first process's PID.
const PID_FILE: &str = "init.pid";
/// Where the runtime sends the container's terminal (with `-t`).
const CONSOLE_SOCKET: &str = "console.sock";
/// How long a client of the monitor's socket may take to say what it wants.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Start `prepared` detached and stay with it until it exits: `started` is told once it runs
/// (the caller's cue to let its own caller go); the container's exit is recorded before this
/// returns it. A container that fails to start is an error, with nothing left running.
pub fn serve(
    mut prepared: Prepared<'_>,
    started: impl FnOnce(&ContainerRecord),
) -> Result<Exit, RuntimeError> {
    let rt = prepared.runtime();
    let cdir = prepared.container_dir().clone();
    let record = prepared.record().clone();
    // The container's first process comes to the monitor when the runtime exits.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .map_err(|e| RuntimeError::io("become the subreaper of", &cdir.dir)(e.into()))?;
    let log_path = cdir.dir.join(LOG_FILE);
    let log = LogWriter::open(&log_path, record.service.log.unwrap_or_default())
        .map_err(RuntimeError::io("open", &log_path))?;
    let log = Mutex::new(log);
    // Listening before the container starts: a `wait` right after `run -d` finds it.
    let control = Control::bind(&cdir.dir).map_err(RuntimeError::io("listen on", &cdir.dir))?;

    let terminal = bundle_terminal(&cdir);
    let pid_file = cdir.dir.join(PID_FILE);
    let _ = fs::remove_file(&pid_file);
    let console = match terminal {
        true => Some(Console::bind(&cdir.dir).map_err(RuntimeError::io("listen on", &cdir.dir))?),
        false => None,
    };
    let mut cmd = prepared.detached_command(&pid_file, console.as_ref().map(|c| c.path()));
    let mut outputs: Vec<(Stream, File)> = Vec::new();
    let mut stdin_sink: Option<File> = None;
    if console.is_some() {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    } else {
        let pipe = || -> Result<(File, File), RuntimeError> {
            let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| RuntimeError::io("make a pipe for", &cdir.dir)(e.into()))?;
            Ok((File::from(r), File::from(w)))
        };
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        cmd.stdout(out_w).stderr(err_w);
        outputs.push((Stream::Stdout, out_r));
        outputs.push((Stream::Stderr, err_r));
        if record.service.interactive {
            let (in_r, in_w) = pipe()?;
            cmd.stdin(in_r);
            stdin_sink = Some(in_w);
        } else {
            cmd.stdin(Stdio::null());
        }
    }
    let console_thread = console.map(|c| std::thread::spawn(move || c.receive()));
    let status = cmd.status();
    // The container's ends of the pipes: only the container may hold them now, so that they
    // read as closed once it is gone.
    drop(cmd);
    let status = status.map_err(RuntimeError::io("start", &rt.oci().program))?;
    if !status.success() {
        return match prepared.finish(status) {
            Err(e) => Err(e),
            Ok(_) => Err(RuntimeError::StartFailed {
                message: format!("`{}` exited with {status}", rt.oci().name),
                code: 125,
            }),
        };
    }
    if let Some(t) = console_thread {
        let master = t
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the console thread panicked")))
            .map_err(RuntimeError::io("receive the terminal of", &cdir.dir))?;
        let master = File::from(master);
        if record.service.interactive {
            stdin_sink = Some(
                master
                    .try_clone()
                    .map_err(RuntimeError::io("receive the terminal of", &cdir.dir))?,
            );
        }
        outputs.push((Stream::Stdout, master));
    }
    let pid = fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| {
            RuntimeError::io("read", &pid_file)(io::Error::new(
                io::ErrorKind::InvalidData,
                "no PID",
            ))
        })?;
    prepared.mark_running()?;
    if record.service.healthcheck.is_some() {
        rt.containers().update(&record.id, |r| {
            r.service.health = Some(health::Health::starting())
        })?;
    }
    started(prepared.record());
    control.serve(stdin_sink);

    let (stop_health, health_stop) = mpsc::channel::<()>();
    let wait_status = std::thread::scope(|s| {
        for (stream, from) in outputs {
            let log = &log;
            s.spawn(move || {
                let _ = logs::copy_lines(from, |line| {
                    log.lock().unwrap().write(stream, line, Utc::now())
                });
            });
        }
        if let Some(check) = &record.service.healthcheck {
            let (record, cdir) = (&record, &cdir);
            s.spawn(move || health_loop(rt, cdir, record, check, &health_stop));
        }
        let status = reap(pid);
        drop(stop_health);
        status
    });
    if record.service.healthcheck.is_some() {
        let _ = rt
            .containers()
            .update(&record.id, |r| r.service.health = None);
    }
    control.close();
    let exit = prepared.finish(wait_status);
    control.notify(match &exit {
        Ok(e) => e.code,
        Err(e) => e.exit_code() as i32,
    });
    exit
}

/// Whether the bundle asks for a terminal.
fn bundle_terminal(cdir: &ContainerDir) -> bool {
    fs::read(cdir.bundle_config())
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["process"]["terminal"].as_bool())
        .unwrap_or(false)
}

/// The container's first process's exit status (128+N when a signal ended it).
fn reap(pid: rustix::process::Pid) -> ExitStatus {
    loop {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
            Ok(Some((_, status))) => return ExitStatus::from_raw(status.as_raw()),
            Ok(None) | Err(rustix::io::Errno::INTR) => continue,
            Err(_) => {
                // Not the monitor's child after all (no subreaper, say): wait for it to go,
                // status unknown.
                while Path::new(&format!("/proc/{}", pid.as_raw_nonzero())).exists() {
                    std::thread::sleep(Duration::from_millis(100));
                }
                return ExitStatus::from_raw(255 << 8);
            }
        }
    }
}

/// Probe the container's health until it exits, keeping its record up to date.
fn health_loop(
    rt: &Runtime,
    cdir: &ContainerDir,
    record: &ContainerRecord,
    check: &Healthcheck,
    stop: &mpsc::Receiver<()>,
) {
    health::run(
        check,
        Instant::now(),
        stop,
        |command, timeout| probe(rt, cdir, record, command, timeout),
        |h| {
            let _ = rt
                .containers()
                .update(&record.id, |r| r.service.health = Some(h.clone()));
        },
    );
}

/// Run a health check command in the container, killed after `timeout`.
fn probe(
    rt: &Runtime,
    cdir: &ContainerDir,
    record: &ContainerRecord,
    command: &[String],
    timeout: Duration,
) -> Probe {
    let start = Utc::now();
    let outcome = |exit_code: i32, output: String| Probe {
        start,
        end: Utc::now(),
        exit_code,
        output: health::truncate_output(output),
    };
    let opts = ExecOptions {
        args: command.to_vec(),
        ..Default::default()
    };
    let process = match exec::prepare(rt.oci(), cdir, record, &opts) {
        Ok(p) => p,
        Err(e) => return outcome(-1, e.to_string()),
    };
    let (out_r, out_w) = match rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC) {
        Ok(p) => p,
        Err(e) => return outcome(-1, e.to_string()),
    };
    let out_w2 = match out_w.try_clone() {
        Ok(w) => w,
        Err(e) => return outcome(-1, e.to_string()),
    };
    let mut cmd = process.command(false);
    cmd.stdin(Stdio::null()).stdout(out_w).stderr(out_w2);
    let child = cmd.spawn();
    drop(cmd);
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return outcome(-1, e.to_string()),
    };
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = File::from(out_r)
            .take(health::MAX_OUTPUT as u64 * 4)
            .read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    });
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline && !timed_out => {
                timed_out = true;
                if let Some(pid) = process
                    .pid()
                    .and_then(|p| rustix::process::Pid::from_raw(p as i32))
                {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
                let _ = child.kill();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    let output = reader.join().unwrap_or_default();
    if timed_out {
        return outcome(-1, format!("Health check exceeded timeout ({:?})", timeout));
    }
    match status.map(|s| process.finish(s)) {
        Some(Ok(code)) => outcome(code, output),
        Some(Err(e)) => outcome(-1, e.to_string()),
        None => outcome(-1, output),
    }
}

/// The monitor's socket: `wait` and `attach` requests.
struct Control {
    listener: UnixListener,
    waiters: Arc<Mutex<Vec<UnixStream>>>,
    path: std::path::PathBuf,
}

impl Control {
    fn bind(dir: &Path) -> io::Result<Control> {
        let _ = fs::remove_file(dir.join(MONITOR_SOCKET));
        let socket = SocketPath::new(dir, MONITOR_SOCKET)?;
        let listener = UnixListener::bind(&socket.path)?;
        Ok(Control {
            listener,
            waiters: Arc::default(),
            path: dir.join(MONITOR_SOCKET),
        })
    }

    /// Answer requests from now on (in the background: the process's end ends it).
    fn serve(&self, stdin: Option<File>) {
        let Ok(listener) = self.listener.try_clone() else {
            return;
        };
        let waiters = Arc::clone(&self.waiters);
        let stdin = stdin.map(|f| Arc::new(Mutex::new(f)));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let waiters = Arc::clone(&waiters);
                let stdin = stdin.clone();
                std::thread::spawn(move || handle(conn, &waiters, stdin.as_deref()));
            }
        });
    }

    /// No new requests: the container has exited.
    fn close(&self) {
        let _ = fs::remove_file(&self.path);
    }

    /// Answer the waiters: the container has exited with `code` and been cleaned up.
    fn notify(&self, code: i32) {
        for mut w in self.waiters.lock().unwrap().drain(..) {
            let _ = w.write_all(format!("exited {code}\n").as_bytes());
        }
    }
}

fn handle(conn: UnixStream, waiters: &Mutex<Vec<UnixStream>>, stdin: Option<&Mutex<File>>) {
    let _ = conn.set_read_timeout(Some(REQUEST_TIMEOUT));
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let _ = reader.get_ref().set_read_timeout(None);
    match line.trim() {
        "wait" => waiters.lock().unwrap().push(reader.into_inner()),
        "attach" => {
            let Some(stdin) = stdin else { return };
            let mut buf = [0u8; 8192];
            // What was read with the request line first, then the rest as it comes.
            let early = reader.buffer().to_vec();
            if !early.is_empty() && stdin.lock().unwrap().write_all(&early).is_err() {
                return;
            }
            let mut conn = reader.into_inner();
            loop {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if stdin.lock().unwrap().write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// The socket the runtime sends the container's terminal to.
struct Console {
    listener: UnixListener,
    socket: SocketPath,
}

impl Console {
    fn bind(dir: &Path) -> io::Result<Console> {
        let _ = fs::remove_file(dir.join(CONSOLE_SOCKET));
        let socket = SocketPath::new(dir, CONSOLE_SOCKET)?;
        let listener = UnixListener::bind(&socket.path)?;
        Ok(Console { listener, socket })
    }

    fn path(&self) -> &Path {
        &self.socket.path
    }

    /// The terminal's master side, as the runtime sends it (SCM_RIGHTS).
    fn receive(self) -> io::Result<OwnedFd> {
        use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
        let (conn, _) = self.listener.accept()?;
        let mut buf = [0u8; 4096];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        recvmsg(
            conn.as_fd(),
            &mut iov,
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(mut fds) = message
                && let Some(fd) = fds.next()
            {
                return Ok(fd);
            }
        }
        Err(io::Error::other("the runtime sent no terminal"))
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.socket.path);
    }
}
