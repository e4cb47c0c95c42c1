//! The hidden `monitor` command — the process a detached container runs under (see
//! `runtime::monitor`) — and how `run -d`, `start` and `restart` start it.
//!
//! The command that starts it re-executes manifold as `manifold --root … monitor run|start …`
//! in a session of its own, detached from it by a double fork (so a terminal closing does not
//! reach it, and it is nobody's child to wait for). Until the container runs, the monitor writes
//! to the caller's stderr — progress, warnings, and on failure the error as any command prints
//! it — and then says on a pipe (descriptor 3) how it went: `started ID`, or `failed STATUS`.
//! The caller prints the ID, or exits with that status. From then on the monitor's stdio is
//! `monitor.log` in the container's directory, and the caller is free to go.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Mutex;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::Settings;
use super::errors::{self, user_error};
use super::output::outln;
use crate::binfmt::{Binfmt, EmulatorSearch};
use crate::progress::Progress;
use crate::runtime::oci_runtime::RuntimeState;
use crate::runtime::{self, ContainerRecord, RunOptions, Runtime, RuntimeError, Status as State};

#[derive(Debug, Args)]
pub struct MonitorArgs {
    #[command(subcommand)]
    pub what: MonitorCommand,
}

#[derive(Debug, Subcommand)]
pub enum MonitorCommand {
    /// A new container: `run`'s flags as JSON on stdin
    Run,
    /// An existing, stopped container
    Start { container: String },
}

/// The descriptor the monitor reports on.
const STATUS_FD: i32 = 3;

/// The monitor's side of the status pipe.
pub struct Status {
    pipe: Mutex<Option<File>>,
}

impl Status {
    /// Descriptor 3, kept from every process the monitor starts.
    fn take() -> Status {
        // SAFETY: fcntl on a descriptor number; a closed one fails with EBADF.
        let open = unsafe { libc::fcntl(STATUS_FD, libc::F_SETFD, libc::FD_CLOEXEC) } == 0;
        // SAFETY: descriptor 3 was set up by `launch` for this process alone.
        let pipe = open.then(|| unsafe { File::from_raw_fd(STATUS_FD) });
        Status {
            pipe: Mutex::new(pipe),
        }
    }

    fn send(&self, line: &str) {
        if let Some(mut p) = self.pipe.lock().unwrap().take() {
            let _ = p.write_all(line.as_bytes());
        }
    }

    fn reported(&self) -> bool {
        self.pipe.lock().unwrap().is_none()
    }

    /// The container runs: tell the caller, and let go of its stdio.
    pub fn started(&self, record: &ContainerRecord, log: &std::path::Path) {
        let _ = std::io::stderr().flush();
        if let Ok(f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            // SAFETY: dup2 onto the standard descriptors, which this process owns.
            unsafe {
                libc::dup2(f.as_raw_fd(), 1);
                libc::dup2(f.as_raw_fd(), 2);
            }
        }
        if let Ok(null) = File::open("/dev/null") {
            // SAFETY: as above.
            unsafe { libc::dup2(null.as_raw_fd(), 0) };
        }
        // No directory of the user's stays busy.
        let _ = std::env::set_current_dir("/");
        self.send(&format!("started {}\n", record.id));
    }
}

pub fn run(args: MonitorArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let status = Status::take();
    let result = match args.what {
        MonitorCommand::Run => {
            read_run_args().and_then(|a| super::run::run_in(a, settings, Some(&status)))
        }
        MonitorCommand::Start { container } => start(settings, &container, &status),
    };
    match result {
        Ok(code) => Ok(code),
        Err(e) if !status.reported() => {
            let code = errors::exit_code(&e);
            errors::report(&e);
            status.send(&format!("failed {code}\n"));
            Ok(ExitCode::from(code))
        }
        // After the start: to monitor.log.
        Err(e) => Err(e),
    }
}

fn read_run_args() -> anyhow::Result<super::run::RunArgs> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .context("cannot read the run's flags")?;
    serde_json::from_slice(&input).context("cannot read the run's flags")
}

/// The monitor of a container `run` has just prepared.
pub(super) fn serve_new(
    rt: &Runtime,
    opts: &RunOptions,
    progress: &dyn Progress,
    status: &Status,
) -> anyhow::Result<ExitCode> {
    let prepared = rt.create(opts, progress)?;
    let log = prepared.container_dir().dir.join("monitor.log");
    let exit = runtime::monitor::serve(prepared, |r| status.started(r, &log))?;
    Ok(ExitCode::from(exit.code.clamp(0, 255) as u8))
}

/// The monitor of a stopped container started again.
fn start(settings: &Settings, key: &str, status: &Status) -> anyhow::Result<ExitCode> {
    if !runtime::is_root() {
        return Err(RuntimeError::NotRoot.into());
    }
    let store = settings.store()?;
    let containers = super::containers::reconciled(&store)?;
    let record = containers.find(key)?;
    match record.status {
        State::Removing => {
            return Err(RuntimeError::BeingRemoved {
                id: record.short_id().to_string(),
            }
            .into());
        }
        State::Running | State::Created if record.owner_alive() => {
            return Err(RuntimeError::Running {
                id: record.short_id().to_string(),
            }
            .into());
        }
        _ => {}
    }
    let binfmt = Binfmt::system(EmulatorSearch::from_env(None));
    binfmt.ensure(&record.platform).with_context(|| {
        format!(
            "cannot run {} programs here",
            super::select::short_platform(&record.platform)
        )
    })?;
    runtime::ports::check_free(&record.service.ports).map_err(RuntimeError::from)?;
    let rt = Runtime::new(&store, &record.runtime)?;
    // Its monitor is gone, the container is not.
    if matches!(
        rt.oci().state(&record.id),
        Ok(Some(RuntimeState::Running | RuntimeState::Paused))
    ) {
        return Err(RuntimeError::Running {
            id: record.short_id().to_string(),
        }
        .into());
    }
    rt.enter_private_mounts()?;
    let record = rt
        .containers()
        .update(&record.id, |r| r.service.logged = true)?;
    let prepared = rt.revive(record)?;
    let log = prepared.container_dir().dir.join("monitor.log");
    let exit = runtime::monitor::serve(prepared, |r| status.started(r, &log))?;
    Ok(ExitCode::from(exit.code.clamp(0, 255) as u8))
}

/// How a monitor's start went.
pub enum Launched {
    /// The container runs (its full ID).
    Started(String),
    /// It did not (the monitor has said why on stderr): exit with this status.
    Failed(u8),
}

/// Start a monitor (`manifold monitor WHAT…`), `input` on its stdin, and wait until it says
/// how the container's start went.
pub fn launch(
    settings: &Settings,
    what: &[&str],
    input: Option<&[u8]>,
) -> anyhow::Result<Launched> {
    let exe = std::env::current_exe().context("cannot find manifold's own program")?;
    let root = std::path::absolute(&settings.root)
        .with_context(|| format!("cannot resolve {}", settings.root.display()))?;
    let (status_r, status_w) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).context("cannot make a pipe")?;
    let mut cmd = Command::new(exe);
    cmd.arg("--root").arg(&root);
    for r in &settings.insecure_registries {
        cmd.arg("--insecure-registry").arg(r);
    }
    cmd.arg("--progress").arg(match settings.progress {
        super::args::ProgressMode::Auto => "auto",
        super::args::ProgressMode::Plain => "plain",
        super::args::ProgressMode::None => "none",
    });
    for _ in 0..settings.verbose {
        cmd.arg("--verbose");
    }
    cmd.arg("monitor").args(what);
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    let status_fd = status_w.as_raw_fd();
    // SAFETY: only async-signal-safe calls (fcntl, dup2, close_range, setsid, fork, _exit)
    // between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            // Through a number above 3 first: dup2 onto another number clears close-on-exec.
            let high = libc::fcntl(status_fd, libc::F_DUPFD_CLOEXEC, 10);
            if high < 0 || libc::dup2(high, STATUS_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Nothing else the caller was given stays open for the container's lifetime (an
            // outer pipe would never see its end): every other descriptor closes at exec.
            const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
            let upto = libc::c_uint::MAX;
            if libc::syscall(libc::SYS_close_range, 4, upto, CLOSE_RANGE_CLOEXEC) < 0 {
                for fd in STATUS_FD + 1..1024 {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The grandchild goes on to exec, in the new session but not its leader (it can
            // never gain a controlling terminal); its parent is done.
            match libc::fork() {
                -1 => Err(std::io::Error::last_os_error()),
                0 => Ok(()),
                _ => libc::_exit(0),
            }
        });
    }
    let mut child = cmd
        .spawn()
        .context("cannot start the container's monitor")?;
    drop(status_w);
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        stdin
            .write_all(input)
            .context("cannot hand the run's flags to the monitor")?;
    }
    let _ = child.wait();
    let mut answer = String::new();
    File::from(status_r)
        .read_to_string(&mut answer)
        .context("cannot hear from the container's monitor")?;
    let answer = answer.trim();
    if let Some(id) = answer.strip_prefix("started ") {
        return Ok(Launched::Started(id.to_string()));
    }
    if let Some(code) = answer.strip_prefix("failed ").and_then(|c| c.parse().ok()) {
        return Ok(Launched::Failed(code));
    }
    Err(user_error(
        "the container's monitor ended before the container started",
        Some("`manifold ps -a` shows what became of it"),
    ))
}

/// `run -d`: the run's flags to a new monitor; the container's ID on stdout.
pub(super) fn launch_run(
    args: &super::run::RunArgs,
    settings: &Settings,
) -> anyhow::Result<ExitCode> {
    let input = serde_json::to_vec(args).expect("the run's flags serialise");
    match launch(settings, &["run"], Some(&input))? {
        Launched::Started(id) => {
            outln!("{id}")?;
            Ok(ExitCode::SUCCESS)
        }
        Launched::Failed(code) => Ok(ExitCode::from(code)),
    }
}
