//! `manifold run [--platform P[,P...]|all] [OPTIONS] IMAGE [ARG...]`: run a command in a new
//! container of any platform — natively, or under QEMU through binfmt_misc (registered on the
//! spot when root and an emulator is installed). Exits with the container's status (125 when
//! manifold fails, 126 when the command cannot be executed, 127 when it is not found).
//!
//! With several platforms (`--platform linux/amd64,linux/arm64` or `all`) it is a matrix run:
//! the command runs once per platform of the image, in parallel, each output line prefixed with
//! `[platform] `, then a summary on stderr; the status is that of the first platform (in the
//! order given) that failed.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use super::Settings;
use super::errors::{self, user_error};
use super::monitor::Status;
use super::select::{self, PlatformChoice, Selected, short_platform};
use super::service::{HOST_NETWORK_PORTS, ServiceArgs};
use crate::binfmt::{Binfmt, EmulatorSearch, Ensured};
use crate::progress::Progress;
use crate::runtime::signals::Forwarder;
use crate::runtime::spec::Host;
use crate::runtime::{
    self, Bind, Network, RunOptions, Runtime, RuntimeError, Security, SecurityFlags,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum NetworkArg {
    /// A network namespace of its own with outbound access through slirp4netns: the host's
    /// interfaces, loopback and abstract unix sockets are out of reach
    Bridge,
    /// The same as `bridge` (podman's name for it)
    Slirp4netns,
    /// The host's network: the container sees the host's interfaces and reaches every service
    /// of the host, those on 127.0.0.1 and abstract unix sockets too
    Host,
    /// Only a loopback interface
    None,
}

// Serialisable: `run -d` hands the flags to its monitor (see `monitor`).
#[derive(Debug, Args, Serialize, Deserialize)]
pub struct RunArgs {
    /// Platform to run (`linux/arm64`); several (`linux/amd64,linux/arm64`) or `all` for a
    /// matrix run over the image's platforms [default: the host's]
    #[arg(long, value_name = "PLATFORM[,PLATFORM...]|all")]
    pub platform: Option<String>,
    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Keep stdin open (attach it to the container)
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the container a terminal
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable (`KEY=VALUE`, or `KEY` to pass the host's value)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file (`KEY=VALUE` lines, `#` comments)
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Bind-mount a host directory or file (`-v /host:/container[:ro]`)
    #[arg(short = 'v', long = "volume", value_name = "SRC:DST[:ro]")]
    pub volumes: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (name or UID) and optionally group, resolved in the image's /etc/passwd, /etc/group
    #[arg(short, long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Override the image's entrypoint (`""` clears it)
    #[arg(long, value_name = "COMMAND")]
    pub entrypoint: Option<String>,
    /// Name the container
    #[arg(long)]
    pub name: Option<String>,
    /// Container host name [default: the container ID, or the host's with --network host]
    #[arg(long)]
    pub hostname: Option<String>,
    /// The container's network: a private one with outbound access, the host's, or none
    #[arg(long, value_enum, default_value_t = NetworkArg::Bridge)]
    pub network: NetworkArg,
    /// Mount the container's root filesystem read-only
    #[arg(long)]
    pub read_only: bool,
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub security: SecurityArgs,
    /// OCI runtime: runc, crun, youki, or a path
    #[arg(
        long,
        env = "MANIFOLD_RUNTIME",
        default_value = "runc",
        value_name = "NAME"
    )]
    pub runtime: String,
    /// Where to look for static QEMU emulators first (also MANIFOLD_QEMU_DIR)
    #[arg(long, value_name = "DIR")]
    pub emulator_dir: Option<PathBuf>,
    /// The image (pulled when the store lacks it)
    pub image: String,
    /// The command and its arguments [default: the image's]
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// docker's confinement flags (`run`, and `exec` when it comes).
#[derive(Debug, Args, Serialize, Deserialize)]
pub struct SecurityArgs {
    /// Add a Linux capability (`NET_RAW`, `CAP_SYS_ADMIN`, any case; `ALL` for every one)
    #[arg(long = "cap-add", value_name = "CAP", value_delimiter = ',')]
    pub cap_add: Vec<String>,
    /// Drop a Linux capability (`ALL` drops every one but those added)
    #[arg(long = "cap-drop", value_name = "CAP", value_delimiter = ',')]
    pub cap_drop: Vec<String>,
    /// Every capability, no seccomp filter, /proc and /sys unmasked and writable, every device
    /// allowed (host devices are not mounted)
    #[arg(long)]
    pub privileged: bool,
    /// `seccomp=unconfined|builtin|FILE` (docker's profile JSON) or
    /// `no-new-privileges[=true|false]`
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
}

impl SecurityArgs {
    /// Checked before anything else happens: a bad value changes nothing.
    pub fn resolve(&self) -> Result<Security, RuntimeError> {
        let flags = SecurityFlags {
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            privileged: self.privileged,
            options: self.security_opt.clone(),
        };
        Ok(Security::from_flags(&flags, Host::current())?)
    }
}

pub fn run(args: RunArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    if args.service.detach {
        let choice = PlatformChoice::parse(args.platform.as_deref())?;
        check_matrix(&args, choice.is_matrix())?;
        return super::monitor::launch_run(&args, settings);
    }
    run_in(args, settings, None)
}

/// What a matrix run refuses.
fn check_matrix(args: &RunArgs, matrix: bool) -> anyhow::Result<()> {
    if !matrix {
        return Ok(());
    }
    if args.tty || args.interactive {
        return Err(user_error(
            "a matrix run (several platforms) cannot use -i or -t: the platforms run side by side",
            Some("run one platform at a time for an interactive session"),
        ));
    }
    if args.service.detach || args.service.publishes() {
        return Err(user_error(
            "a matrix run (several platforms) cannot be detached or publish ports",
            Some("run one platform at a time with `-d` or `-p`"),
        ));
    }
    Ok(())
}

/// `run`, in the foreground, or — `monitor` given — as the monitor of a detached container.
pub(super) fn run_in(
    args: RunArgs,
    settings: &Settings,
    monitor: Option<&Status>,
) -> anyhow::Result<ExitCode> {
    let choice = PlatformChoice::parse(args.platform.as_deref())?;
    let matrix = choice.is_matrix();
    check_matrix(&args, matrix)?;
    // A detached container's terminal is the monitor's (docker's `run -dt` needs none).
    if args.tty
        && monitor.is_none()
        && !(std::io::stdin().is_terminal()
            || std::io::stdout().is_terminal()
            || std::io::stderr().is_terminal())
    {
        return Err(user_error(
            "the input device is not a TTY",
            Some("drop -t, or run from a terminal"),
        ));
    }
    let security = args.security.resolve()?;
    let network = match args.network {
        NetworkArg::Bridge | NetworkArg::Slirp4netns => Network::Private,
        NetworkArg::Host => Network::Host,
        NetworkArg::None => Network::None,
    };
    let checked = args.service.check(network)?;
    if !runtime::is_root() {
        return Err(RuntimeError::NotRoot.into());
    }
    if network == Network::Host && args.service.publishes() {
        eprintln!("{HOST_NETWORK_PORTS}");
    }
    let env = environment(&args)?;
    let binds = args
        .volumes
        .iter()
        .map(|v| parse_volume(v))
        .collect::<Result<Vec<_>, _>>()?;

    let store = settings.store()?;
    let rt = Runtime::new(&store, &args.runtime)?;
    if let Err(e) = rt.reconcile() {
        eprintln!("warning: cannot clean up after earlier containers: {e}");
    }
    let selected = select::select(settings, &store, &args.image, &choice)?;

    let binfmt = Binfmt::system(EmulatorSearch::from_env(args.emulator_dir.clone()));
    let progress = settings.progress(false);
    // Each selected platform, with the reason it cannot run here (matrix runs go on without it).
    let mut items: Vec<(Selected, Option<anyhow::Error>)> = Vec::new();
    for s in selected {
        match binfmt.ensure(&s.platform) {
            Ok(Ensured::Registered(r)) => progress_note(
                &progress,
                settings,
                &format!(
                    "registered QEMU handler `{}` for {} ({}, flags {})",
                    r.name,
                    short_platform(&s.platform),
                    r.interpreter.display(),
                    r.flags
                ),
            ),
            Ok(_) => {}
            Err(e) if matrix => {
                items.push((s, Some(e.into())));
                continue;
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot run {} programs here",
                    short_platform(&s.platform)
                )));
            }
        }
        super::binfmt::warn_known_bad(&binfmt, std::slice::from_ref(&s.platform));
        items.push((s, None));
    }

    let mut services = Vec::new();
    for (s, _) in &items {
        services.push(
            args.service
                .service_for(&checked, &s.config, network, args.interactive)?,
        );
    }

    rt.enter_private_mounts()?;
    let options = |i: usize, s: &Selected, name: Option<String>| RunOptions {
        image: s.image.clone(),
        image_digest: s.top.digest.clone(),
        manifest_digest: s.manifest_digest.clone(),
        manifest: s.manifest.clone(),
        config_digest: s.config_digest.clone(),
        config: s.config.clone(),
        platform: s.platform.clone(),
        args: args.args.clone(),
        entrypoint: args.entrypoint.clone(),
        env: env.clone(),
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        name,
        hostname: args.hostname.clone(),
        network,
        read_only: args.read_only,
        binds: binds.clone(),
        tty: args.tty,
        auto_remove: args.rm,
        security: security.clone(),
        ephemeral: false,
        service: services[i].clone(),
    };

    if !matrix {
        let (s, _) = items.pop().expect("one platform selected");
        let opts = options(0, &s, args.name.clone());
        if let Some(status) = monitor {
            return super::monitor::serve_new(&rt, &opts, &progress, status);
        }
        return run_one(&rt, &opts, args.interactive, &progress);
    }

    let name_for = |s: &Selected| {
        args.name
            .as_ref()
            .map(|n| format!("{n}-{}", short_platform(&s.platform).replace('/', "-")))
    };
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let forwarder = Forwarder::install().context("cannot install signal handlers")?;
    let out_lock = Mutex::new(());
    let queue = Mutex::new(items.iter().enumerate().filter(|(_, (_, e))| e.is_none()));
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(items.len()).max(1) {
            scope.spawn(|| {
                loop {
                    let Some((i, (s, _))) = queue.lock().unwrap().next() else {
                        return;
                    };
                    let started = Instant::now();
                    let r = run_prefixed(
                        &rt,
                        &options(i, s, name_for(s)),
                        &progress,
                        &forwarder,
                        &out_lock,
                    );
                    results.lock().unwrap()[i] = Some((r, started.elapsed()));
                }
            });
        }
    });
    drop(forwarder);

    let mut results = results.into_inner().unwrap();
    let rows: Vec<(String, anyhow::Result<i32>, Option<Duration>)> = items
        .into_iter()
        .enumerate()
        .map(|(i, (s, early))| {
            let platform = short_platform(&s.platform);
            match (early, results[i].take()) {
                (Some(e), _) => (platform, Err(e), None),
                (None, Some((r, took))) => (platform, r, Some(took)),
                (None, None) => (platform, Err(anyhow::anyhow!("did not run")), None),
            }
        })
        .collect();
    Ok(summary(&rows))
}

/// How one platform of a matrix run went, and how long it took.
type Outcome = (anyhow::Result<i32>, Duration);

fn progress_note(progress: &dyn Progress, settings: &Settings, text: &str) {
    // Registration changes the machine: say so even when progress is off.
    if settings.progress == super::args::ProgressMode::Auto {
        progress.message(text);
    } else {
        eprintln!("{text}");
    }
}

/// One container with the terminal's stdio; its exit status is ours.
fn run_one(
    rt: &Runtime,
    opts: &RunOptions,
    interactive: bool,
    progress: &dyn Progress,
) -> anyhow::Result<ExitCode> {
    let mut prepared = rt.create(opts, progress)?;
    let forwarder = Forwarder::install().context("cannot install signal handlers")?;
    let stdin = if interactive {
        Stdio::inherit()
    } else {
        Stdio::null()
    };
    let mut child = prepared.spawn(stdin, Stdio::inherit(), Stdio::inherit())?;
    forwarder.add(child.id());
    let status = child.wait().context("cannot wait for the runtime")?;
    forwarder.remove(child.id());
    drop(forwarder);
    let exit = prepared.finish(status)?;
    Ok(ExitCode::from(exit.code.clamp(0, 255) as u8))
}

/// One container of a matrix run: output lines prefixed with its platform.
fn run_prefixed(
    rt: &Runtime,
    opts: &RunOptions,
    progress: &dyn Progress,
    forwarder: &Forwarder,
    out_lock: &Mutex<()>,
) -> anyhow::Result<i32> {
    let prefix = format!("[{}] ", short_platform(&opts.platform));
    let mut prepared = rt.create(opts, progress)?;
    let mut child = prepared.spawn(Stdio::null(), Stdio::piped(), Stdio::piped())?;
    forwarder.add(child.id());
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    std::thread::scope(|s| {
        s.spawn(|| copy_prefixed(stdout, &mut std::io::stdout(), &prefix, out_lock));
        s.spawn(|| copy_prefixed(stderr, &mut std::io::stderr(), &prefix, out_lock));
    });
    let status = child.wait().context("cannot wait for the runtime");
    forwarder.remove(child.id());
    let exit = prepared.finish(status?)?;
    Ok(exit.code)
}

fn copy_prefixed(from: impl Read, to: &mut dyn Write, prefix: &str, lock: &Mutex<()>) {
    let mut reader = BufReader::new(from);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        let _guard = lock.lock().unwrap();
        let _ = to.write_all(prefix.as_bytes());
        let _ = to.write_all(&line);
        let _ = to.flush();
    }
}

/// The matrix summary on stderr; the exit status of the first failing platform.
fn summary(rows: &[(String, Result<i32, anyhow::Error>, Option<Duration>)]) -> ExitCode {
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(8).max(8);
    let mut out = format!("{:<width$}   {:<4}   TIME\n", "PLATFORM", "EXIT");
    let mut first_failure: Option<u8> = None;
    let mut errors_text = String::new();
    for (platform, result, took) in rows {
        let took = took.map_or("-".to_string(), |d| format!("{:.2}s", d.as_secs_f64()));
        let code = match result {
            Ok(c) => *c,
            Err(e) => {
                errors_text.push_str(&format!("[{platform}] error: {e:#}\n"));
                errors::exit_code(e) as i32
            }
        };
        if code != 0 && first_failure.is_none() {
            first_failure = Some(code.clamp(1, 255) as u8);
        }
        out.push_str(&format!("{platform:<width$}   {code:<4}   {took}\n"));
    }
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(errors_text.as_bytes());
    let _ = stderr.write_all(out.as_bytes());
    ExitCode::from(first_failure.unwrap_or(0))
}

/// `--env-file` lines, then `-e`, as `KEY=VALUE`; a bare `KEY` takes the host's value and is
/// dropped when the host has none (docker's rule).
fn environment(args: &RunArgs) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut push = |item: &str| {
        if item.contains('=') {
            out.push(item.to_string());
        } else if let Ok(v) = std::env::var(item) {
            out.push(format!("{item}={v}"));
        }
    };
    for file in &args.env_files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the env file {}", file.display()))?;
        for line in text.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('=') {
                return Err(user_error(
                    format!(
                        "invalid line in {}: `{line}` (no variable name)",
                        file.display()
                    ),
                    None,
                ));
            }
            push(line);
        }
    }
    for e in &args.env {
        if e.is_empty() || e.starts_with('=') {
            return Err(user_error(
                format!("invalid environment variable `{e}`"),
                None,
            ));
        }
        push(e);
    }
    Ok(out)
}

/// `SRC:DST[:ro|rw]` with absolute paths; a missing source directory is created, as docker's
/// `-v` does.
fn parse_volume(spec: &str) -> Result<Bind, RuntimeError> {
    let bad = |why: &str| RuntimeError::InvalidVolume {
        spec: spec.to_string(),
        why: why.to_string(),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, destination, mode) = match parts[..] {
        [s, d] => (s, d, None),
        [s, d, m] => (s, d, Some(m)),
        _ => return Err(bad("expected SRC:DST or SRC:DST:ro")),
    };
    let read_only = match mode {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(other) => return Err(bad(&format!("unknown mode `{other}` (ro or rw)"))),
    };
    if !source.starts_with('/') {
        return Err(bad(
            "the source must be an absolute host path (named volumes are not supported)",
        ));
    }
    if !destination.starts_with('/') || destination == "/" {
        return Err(bad("the destination must be an absolute path other than /"));
    }
    let source = PathBuf::from(source);
    if !source.exists() {
        std::fs::create_dir_all(&source)
            .map_err(|e| bad(&format!("cannot create the source: {e}")))?;
    }
    Ok(Bind {
        source,
        destination: destination.to_string(),
        read_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("made");
        let b = parse_volume(&format!("{}:/data:ro", src.display())).unwrap();
        assert!(b.read_only && src.is_dir());
        assert_eq!(b.destination, "/data");
        let b = parse_volume(&format!("{}:/data", src.display())).unwrap();
        assert!(!b.read_only);
        for bad in ["relative:/data", "/a:relative", "/a:/b:rx", "/a", "/a:/"] {
            assert!(parse_volume(bad).is_err(), "{bad}");
        }
    }
}
