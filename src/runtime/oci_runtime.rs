//! The OCI runtime that executes bundles: runc by default, crun or youki by `--runtime` (they
//! share runc's command line). Its state lives under `<root>/runtime-v1/<name>/`, apart from
//! other users of the same runtime.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::RuntimeError;

#[derive(Debug, Clone)]
pub struct OciRuntime {
    /// As given (`runc`, `/usr/local/bin/crun`).
    pub name: String,
    pub program: PathBuf,
    pub state_root: PathBuf,
}

/// What `runc state` says of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeState {
    Created,
    Running,
    Paused,
    Stopped,
}

/// How a runtime failed to start a container, from its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartFailure {
    pub message: String,
}

impl StartFailure {
    /// docker's mapping of start failures: 127 when the command is not there, 126 when it
    /// cannot be executed, 125 otherwise.
    pub fn exit_code(&self) -> u8 {
        let m = self.message.to_ascii_lowercase();
        if m.contains("executable file not found")
            || m.contains("no such file or directory")
            || m.contains("not found in $path")
        {
            127
        } else if m.contains("permission denied")
            || m.contains("exec format error")
            || m.contains("is a directory")
        {
            126
        } else {
            125
        }
    }
}

impl OciRuntime {
    /// Find `name` (a program on PATH, or a path).
    pub fn find(name: &str, store_root: &Path) -> Result<OciRuntime, RuntimeError> {
        let program = super::find_program(name);
        let program = program.ok_or_else(|| RuntimeError::RuntimeNotFound(name.to_string()))?;
        let base = Path::new(name)
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "runtime".into());
        Ok(OciRuntime {
            name: name.to_string(),
            program,
            state_root: store_root.join("runtime-v1").join(base),
        })
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.arg("--root").arg(&self.state_root);
        c
    }

    /// `runc --log LOG --log-format json run --bundle BUNDLE ID`, stdio left to the caller.
    pub fn run_command(&self, bundle: &Path, id: &str, log: &Path) -> Command {
        let mut c = self.command();
        c.arg("--log")
            .arg(log)
            .args(["--log-format", "json", "run", "--bundle"])
            .arg(bundle)
            .arg(id);
        c
    }

    fn quiet(&self, args: &[&str]) -> io::Result<std::process::Output> {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
    }

    /// None when the runtime does not know the container.
    pub fn state(&self, id: &str) -> io::Result<Option<RuntimeState>> {
        Ok(self.state_and_pid(id)?.map(|(s, _)| s))
    }

    /// The state and the host PID of the container's first process (0 once it has stopped).
    pub fn state_and_pid(&self, id: &str) -> io::Result<Option<(RuntimeState, u32)>> {
        if !self.state_root.join(id).exists() {
            return Ok(None);
        }
        let out = self.quiet(&["state", id])?;
        if !out.status.success() {
            return Ok(None);
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(io::Error::other)?;
        let state = match v["status"].as_str().unwrap_or("") {
            "created" | "creating" => RuntimeState::Created,
            "running" => RuntimeState::Running,
            "paused" => RuntimeState::Paused,
            _ => RuntimeState::Stopped,
        };
        let pid = v["pid"].as_u64().unwrap_or(0) as u32;
        Ok(Some((state, pid)))
    }

    /// `run --detach`: the runtime starts the container and exits; its first process keeps the
    /// runtime's stdio (or, with a terminal, its pty goes to `console_socket`) and is adopted
    /// by the nearest subreaper. The PID goes to `pid_file`.
    pub fn run_detached_command(
        &self,
        bundle: &Path,
        id: &str,
        log: &Path,
        pid_file: &Path,
        console_socket: Option<&Path>,
    ) -> Command {
        let mut c = self.command();
        c.arg("--log")
            .arg(log)
            .args(["--log-format", "json", "run", "--detach", "--pid-file"])
            .arg(pid_file);
        if let Some(socket) = console_socket {
            c.arg("--console-socket").arg(socket);
        }
        c.arg("--bundle").arg(bundle).arg(id);
        c
    }

    /// `exec --process PROCESS_JSON`, stdio left to the caller.
    pub fn exec_command(
        &self,
        id: &str,
        process: &Path,
        log: &Path,
        detach: bool,
        pid_file: Option<&Path>,
    ) -> Command {
        let mut c = self.command();
        c.arg("--log")
            .arg(log)
            .args(["--log-format", "json", "exec", "--process"])
            .arg(process);
        if detach {
            c.arg("--detach");
        }
        if let Some(p) = pid_file {
            c.arg("--pid-file").arg(p);
        }
        c.arg(id);
        c
    }

    /// `ps --format json`: the host PIDs of the container's processes.
    pub fn pids(&self, id: &str) -> io::Result<Vec<u32>> {
        let out = self.quiet(&["ps", "--format", "json", id])?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "`{} ps {id}` failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let pids: Option<Vec<u32>> =
            serde_json::from_slice(&out.stdout).map_err(io::Error::other)?;
        Ok(pids.unwrap_or_default())
    }

    pub fn kill(&self, id: &str, signal: &str) -> io::Result<()> {
        self.checked(&["kill", id, signal])
    }

    pub fn pause(&self, id: &str) -> io::Result<()> {
        self.checked(&["pause", id])
    }

    pub fn resume(&self, id: &str) -> io::Result<()> {
        self.checked(&["resume", id])
    }

    /// `delete --force`: the container's state goes whatever it was doing.
    pub fn delete(&self, id: &str) -> io::Result<()> {
        if !self.state_root.join(id).exists() {
            return Ok(());
        }
        self.checked(&["delete", "--force", id])
    }

    fn checked(&self, args: &[&str]) -> io::Result<()> {
        let out = self.quiet(args)?;
        if out.status.success() {
            return Ok(());
        }
        Err(io::Error::other(format!(
            "`{} {}` failed: {}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The runtime's own error from its JSON log, if it logged one (runc writes
/// `{"level":"error","msg":"runc run failed: …"}` when it cannot start the process; a process
/// that ran and exited non-zero leaves no error).
pub fn start_failure(log: &Path) -> Option<StartFailure> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| matches!(v["level"].as_str(), Some("error" | "fatal")))
        .filter_map(|v| v["msg"].as_str().map(str::to_string))
        .next_back()
        .map(|message| StartFailure { message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_failures_from_runc_logs() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.json");
        std::fs::write(
            &log,
            "{\"level\":\"warning\",\"msg\":\"something\"}\n{\"level\":\"error\",\"msg\":\"runc run failed: unable to start container process: exec: \\\"nosuch\\\": executable file not found in $PATH\",\"time\":\"x\"}\n",
        )
        .unwrap();
        let f = start_failure(&log).unwrap();
        assert!(f.message.contains("nosuch"));
        assert_eq!(f.exit_code(), 127);
        assert_eq!(
            StartFailure {
                message: "exec: \"/etc\": permission denied".into()
            }
            .exit_code(),
            126
        );
        assert_eq!(
            StartFailure {
                message: "cgroup: no space left".into()
            }
            .exit_code(),
            125
        );
        std::fs::write(&log, "{\"level\":\"warning\",\"msg\":\"x\"}\n").unwrap();
        assert_eq!(start_failure(&log), None);
        assert_eq!(start_failure(&dir.path().join("missing")), None);
    }
}
