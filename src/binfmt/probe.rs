//! Running an architecture's test program the way a container would: written to a file of its
//! own and executed directly, so that the kernel picks the binfmt_misc handler (running
//! `qemu-<arch> program` would bypass the registration being tested). As root the program runs
//! in an empty root directory, where a handler without the F flag cannot find its emulator and a
//! dynamically linked emulator cannot find its loader, exactly as in a container. Without root,
//! in a new user namespace with the same empty root when the kernel allows one, else on the host.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::Duration;

/// How long a test program may run: it writes one line and exits, so only a hung emulator
/// comes near this.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where the program ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// chroot into a directory holding only the program (root).
    EmptyRoot,
    /// A new user namespace, then the same empty root (not root).
    UserNamespace,
    /// On the host's own root: the kernel refuses user namespaces here.
    Host,
}

impl Isolation {
    /// The strongest isolation available to this process.
    pub fn available(is_root: bool) -> Isolation {
        if is_root {
            Isolation::EmptyRoot
        } else if user_namespaces_work() {
            Isolation::UserNamespace
        } else {
            Isolation::Host
        }
    }

    /// Whether the program could see nothing of the host's files, as in a container.
    pub fn is_container_like(self) -> bool {
        self != Isolation::Host
    }
}

/// How the program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The kernel refused to execute it (the errno of execve).
    NotExecuted(i32),
    Exited(i32),
    Signaled(i32),
    TimedOut,
}

/// What one run of a test program did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    pub isolation: Isolation,
    pub ended: Ended,
    pub stdout: String,
    pub stderr: String,
}

/// Write `program` to a fresh directory under the temporary directory and execute it there with
/// `env` as its whole environment.
pub fn run(program: &[u8], isolation: Isolation, env: &[(&str, &str)]) -> io::Result<Ran> {
    let dir = tempfile::Builder::new()
        .prefix("manifold-binfmt-test-")
        .tempdir()?;
    // The user namespace runs as an unmapped user, who must still reach the directory.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
    let path = dir.path().join("prog");
    fs::write(&path, program)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;

    let exec = Exec::new(
        if isolation.is_container_like() {
            Path::new("/prog")
        } else {
            &path
        },
        isolation.is_container_like().then_some(dir.path()),
        isolation == Isolation::UserNamespace,
        env,
    )?;
    // The program is run by execve in the child itself: std's exec would fall back to
    // `/bin/sh PROGRAM` on ENOEXEC, as execvp does, and hide the kernel's answer.
    let mut cmd = Command::new(&path);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec the closure makes only async-signal-safe system calls
    // (unshare, chroot, chdir, execve) on memory prepared before the fork.
    unsafe {
        cmd.pre_exec(move || exec.run());
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Ok(Ran {
                isolation,
                ended: Ended::NotExecuted(e.raw_os_error().unwrap_or(libc::EIO)),
                stdout: String::new(),
                stderr: String::new(),
            });
        }
    };
    let (ended, out) = wait(child)?;
    Ok(Ran {
        isolation,
        ended,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// An execve prepared before the fork (nothing may allocate between fork and exec).
struct Exec {
    program: CString,
    root: Option<CString>,
    user_namespace: bool,
    _strings: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

// SAFETY: the pointers point into `program` and `_strings`, which the struct owns and never
// changes; the child process that uses them has a copy of its own.
unsafe impl Send for Exec {}
unsafe impl Sync for Exec {}

impl Exec {
    fn new(
        program: &Path,
        root: Option<&Path>,
        user_namespace: bool,
        env: &[(&str, &str)],
    ) -> io::Result<Exec> {
        let c = |b: &[u8]| {
            CString::new(b).map_err(|_| io::Error::other("a path or variable holds a NUL byte"))
        };
        let program = c(program.as_os_str().as_bytes())?;
        let strings = env
            .iter()
            .map(|(k, v)| c(format!("{k}={v}").as_bytes()))
            .collect::<io::Result<Vec<_>>>()?;
        let argv = vec![program.as_ptr(), std::ptr::null()];
        let mut envp: Vec<_> = strings.iter().map(|s| s.as_ptr()).collect();
        envp.push(std::ptr::null());
        Ok(Exec {
            root: root.map(|r| c(r.as_os_str().as_bytes())).transpose()?,
            program,
            user_namespace,
            _strings: strings,
            argv,
            envp,
        })
    }

    /// In the child: enter the isolation and execute; returns only on failure.
    fn run(&self) -> io::Result<()> {
        // SAFETY: plain system calls on NUL-terminated strings and NULL-terminated arrays.
        unsafe {
            if self.user_namespace && libc::unshare(libc::CLONE_NEWUSER) != 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(root) = &self.root
                && (libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0)
            {
                return Err(io::Error::last_os_error());
            }
            libc::execve(
                self.program.as_ptr(),
                self.argv.as_ptr(),
                self.envp.as_ptr(),
            );
        }
        Err(io::Error::last_os_error())
    }
}

/// Wait for the child, killing it after [`TIMEOUT`]; its output is read meanwhile, so that a
/// program printing more than a pipe holds cannot block.
fn wait(child: std::process::Child) -> io::Result<(Ended, Output)> {
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let (timed_out, out) = match rx.recv_timeout(TIMEOUT) {
        Ok(out) => (false, out?),
        Err(_) => {
            // Not reaped yet (the waiting thread has not returned), so the pid is still ours.
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let out = rx
                .recv()
                .map_err(|_| io::Error::other("the waiting thread went away"))??;
            (true, out)
        }
    };
    let ended = if timed_out {
        Ended::TimedOut
    } else if let Some(code) = out.status.code() {
        Ended::Exited(code)
    } else {
        Ended::Signaled(out.status.signal().unwrap_or(0))
    };
    Ok((ended, out))
}

/// The emulator the kernel runs `program` (a foreign test program) with, as an open file: the
/// program is executed under ptrace, which stops it right after the execve, before its first
/// instruction, and its `/proc/PID/exe` — the interpreter binfmt_misc put in its place — is
/// opened then. With the F flag the kernel holds that file open since registration, so this
/// reaches an emulator that is not in this process's file system at all (a container's).
/// None when the kernel did not run it through a handler.
pub fn held_emulator(program: &[u8]) -> io::Result<Option<fs::File>> {
    let dir = tempfile::Builder::new()
        .prefix("manifold-emulator-")
        .tempdir()?;
    let path = dir.path().join("prog");
    fs::write(&path, program)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    let exec = Exec::new(&path, None, false, &[])?;
    let mut cmd = Command::new(&path);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls (ptrace, execve) on memory prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            exec.run()
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.raw_os_error() == Some(libc::ENOEXEC) => return Ok(None),
        Err(e) => return Err(e),
    };
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: waits for our own child, which stops (SIGTRAP) after its execve.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    let exe = if waited == pid && libc::WIFSTOPPED(status) {
        fs::File::open(format!("/proc/{pid}/exe")).ok()
    } else {
        None
    };
    // SAFETY: the child is ours and not reaped yet (waitpid saw it stop, not exit).
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = child.wait();
    // Run natively after all (no handler in between): not an emulator.
    let same = |f: &fs::File| {
        use std::os::unix::fs::MetadataExt;
        match (f.metadata(), fs::metadata(&path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    };
    Ok(exe.filter(|f| !same(f)))
}

/// Whether this process may create a user namespace (asked once, in a throwaway child).
fn user_namespaces_work() -> bool {
    static WORKS: OnceLock<bool> = OnceLock::new();
    *WORKS.get_or_init(|| {
        // SAFETY: the child makes only async-signal-safe calls (unshare, _exit) and never
        // returns into Rust code.
        unsafe {
            let pid = libc::fork();
            if pid == 0 {
                let ok = libc::unshare(libc::CLONE_NEWUSER) == 0;
                libc::_exit(if ok { 0 } else { 1 });
            }
            if pid < 0 {
                return false;
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0) == pid
                && libc::WIFEXITED(status)
                && libc::WEXITSTATUS(status) == 0
        }
    })
}

/// `SIGSEGV (segmentation fault)`.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGSEGV => "SIGSEGV (segmentation fault)",
        libc::SIGILL => "SIGILL (illegal instruction)",
        libc::SIGBUS => "SIGBUS (bus error)",
        libc::SIGABRT => "SIGABRT (aborted)",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGFPE => "SIGFPE (arithmetic fault)",
        libc::SIGSYS => "SIGSYS (bad system call)",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}
