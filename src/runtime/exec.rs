//! Processes started in a running container: `exec`, and the monitor's health probes.
//!
//! The process is the container's own (`process` of its bundle's config.json) with the
//! command, environment, working directory, user and terminal replaced: it keeps the
//! container's capabilities, no-new-privileges, rlimits and confinement. The runtime applies the
//! container's seccomp filter to it (runc and crun take it from the container, not from the
//! process), and joins all of the container's namespaces, so it sees the container's root, PID
//! namespace and network. The user is resolved in the container's /etc/passwd and /etc/group
//! (through `/proc/PID/root`), and the command is looked up in its PATH first, for docker's
//! 126/127. In an emulated container the program runs through the same binfmt_misc handler as
//! the container's first process (its F flag keeps the emulator open for every mount namespace).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use super::RuntimeError;
use super::containers::{ContainerDir, ContainerRecord};
use super::oci_runtime::{OciRuntime, RuntimeState, start_failure};
use super::run::{DEFAULT_PATH, check_command};
use super::user;
use crate::layer::InRoot;
use crate::store::private;

/// What `exec` (or a probe) asks for.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub args: Vec<String>,
    /// `KEY=VALUE`, over the container's.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub tty: bool,
    /// (rows, columns), with `tty`.
    pub console_size: Option<(u16, u16)>,
}

/// A process ready for `runc exec`; its files in the container's directory go when it drops.
#[derive(Debug)]
pub struct ExecProcess {
    oci: OciRuntime,
    id: String,
    process: PathBuf,
    log: PathBuf,
    pid_file: PathBuf,
}

/// The container's first process, when it runs: its host PID.
pub fn running_pid(oci: &OciRuntime, record: &ContainerRecord) -> Result<u32, RuntimeError> {
    match oci.state_and_pid(&record.id) {
        Ok(Some((RuntimeState::Running, pid))) if pid != 0 => Ok(pid),
        Ok(Some((RuntimeState::Paused, _))) => Err(RuntimeError::Paused {
            id: record.short_id().to_string(),
        }),
        _ => Err(RuntimeError::NotRunning {
            id: record.short_id().to_string(),
        }),
    }
}

/// Make the process `opts` describes for the running container `record`.
pub fn prepare(
    oci: &OciRuntime,
    cdir: &ContainerDir,
    record: &ContainerRecord,
    opts: &ExecOptions,
) -> Result<ExecProcess, RuntimeError> {
    if opts.args.is_empty() {
        return Err(RuntimeError::NoCommand);
    }
    let pid = running_pid(oci, record)?;
    let config_path = cdir.bundle_config();
    let bytes = fs::read(&config_path).map_err(RuntimeError::io("read", &config_path))?;
    let spec: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        RuntimeError::io("parse", &config_path)(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            e,
        ))
    })?;
    let proc_root = PathBuf::from(format!("/proc/{pid}/root"));
    let root = InRoot::open(&proc_root).map_err(RuntimeError::io("open", &proc_root))?;
    let mut process = spec["process"].clone();
    let process_env: Vec<String> = process["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();

    let mut home = None;
    if let Some(spec_user) = &opts.user {
        let read = |p: &str| {
            root.read(Path::new(p), 4 << 20)
                .ok()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        let (passwd, group) = (read("/etc/passwd"), read("/etc/group"));
        let u = user::resolve(spec_user, passwd.as_deref(), group.as_deref())?;
        let mut user = serde_json::json!({"uid": u.uid, "gid": u.gid});
        if !u.additional_gids.is_empty() {
            user["additionalGids"] = serde_json::json!(u.additional_gids);
        }
        process["user"] = user;
        home = Some(u.home);
    }

    let mut env = process_env;
    let mut set = |kv: String| {
        let key = kv
            .split_once('=')
            .map_or(kv.as_str(), |(k, _)| k)
            .to_string();
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        env.push(kv);
    };
    if let Some(h) = home {
        set(format!("HOME={h}"));
    }
    for e in &opts.env {
        set(e.clone());
    }
    let has = |env: &[String], k: &str| env.iter().any(|e| e.starts_with(&format!("{k}=")));
    if !has(&env, "PATH") {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    if opts.tty && !has(&env, "TERM") {
        env.push("TERM=xterm".into());
    }

    let cwd = match &opts.workdir {
        Some(w) if !w.starts_with('/') => return Err(RuntimeError::RelativeWorkdir(w.clone())),
        Some(w) => w.clone(),
        None => process["cwd"].as_str().unwrap_or("/").to_string(),
    };
    check_command(&root, &opts.args[0], &env, &cwd)?;

    process["args"] = serde_json::json!(opts.args);
    process["env"] = serde_json::json!(env);
    process["cwd"] = serde_json::json!(cwd);
    process["terminal"] = serde_json::json!(opts.tty);
    match (opts.tty, opts.console_size) {
        (true, Some((rows, cols))) => {
            process["consoleSize"] = serde_json::json!({"height": rows, "width": cols});
        }
        _ => {
            if let Some(o) = process.as_object_mut() {
                o.remove("consoleSize");
            }
        }
    }

    let tag = hex::encode(super::containers::random_bytes::<6>());
    let out = ExecProcess {
        oci: oci.clone(),
        id: record.id.clone(),
        process: cdir.dir.join(format!("exec-{tag}.json")),
        log: cdir.dir.join(format!("exec-{tag}.log")),
        pid_file: cdir.dir.join(format!("exec-{tag}.pid")),
    };
    let bytes = serde_json::to_vec(&process).expect("a process serialises");
    // It holds the environment: the owner's alone, like config.json.
    private::write_file(&out.process, &bytes).map_err(RuntimeError::io("write", &out.process))?;
    Ok(out)
}

impl ExecProcess {
    /// The runtime's `exec`, stdio to be chosen by the caller; `detach`: the runtime returns
    /// once the process has started.
    pub fn command(&self, detach: bool) -> Command {
        self.oci.exec_command(
            &self.id,
            &self.process,
            &self.log,
            detach,
            Some(&self.pid_file),
        )
    }

    /// The process's host PID, once the runtime has started it.
    pub fn pid(&self) -> Option<u32> {
        fs::read_to_string(&self.pid_file).ok()?.trim().parse().ok()
    }

    /// The process's exit status from the runtime's: a failure to start it is an error with
    /// docker's status (126, 127), anything else the process's own.
    pub fn finish(self, status: ExitStatus) -> Result<i32, RuntimeError> {
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        if code != 0
            && let Some(f) = start_failure(&self.log)
        {
            return Err(RuntimeError::ExecFailed {
                code: f.exit_code(),
                message: f
                    .message
                    .trim_start_matches("exec failed: ")
                    .trim_start_matches("runc exec failed: ")
                    .to_string(),
            });
        }
        Ok(code)
    }
}

impl Drop for ExecProcess {
    fn drop(&mut self) {
        for f in [&self.process, &self.log, &self.pid_file] {
            let _ = fs::remove_file(f);
        }
    }
}
