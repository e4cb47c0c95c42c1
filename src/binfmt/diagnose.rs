//! What a handler is worth on this machine: `binfmt test`'s verdict on a run of the test program
//! (works, or fails with the reason and the fix), and the static judgement `platforms` makes of
//! whether this user can run a platform now, without running anything.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::known_bad::KnownBad;
use super::misc::Registration;
use super::probe::{Ended, Isolation, Ran, signal_name};
use super::{EMULATOR_PACKAGE, Handler};
use crate::elf;

/// The emulator file a registration names, as found on disk now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interpreter {
    Missing,
    Static,
    /// Dynamically linked: the loader it asks for.
    Dynamic(String),
    /// Not an ELF file (a script, say), or unreadable.
    Other,
}

impl Interpreter {
    pub fn inspect(path: &Path) -> Interpreter {
        match fs::metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Interpreter::Missing,
            Err(_) => return Interpreter::Other,
            Ok(_) => {}
        }
        match fs::File::open(path).and_then(|mut f| elf::interpreter(&mut f)) {
            Ok(None) => Interpreter::Static,
            Ok(Some(loader)) => Interpreter::Dynamic(loader),
            Err(_) => Interpreter::Other,
        }
    }
}

/// `binfmt test`'s verdict for one handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// This machine runs these programs itself.
    Native,
    Works,
    Fails(Failure),
}

/// Why a test program did not work, as a container would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// exec format error: no handler matches these programs.
    NotRegistered,
    Disabled {
        name: String,
    },
    /// The handler has no F flag, so the kernel opens the emulator at each exec, and the file
    /// is gone (an upgrade removed or renamed it).
    EmulatorMissing {
        interpreter: PathBuf,
    },
    /// No F flag: inside a container's root the emulator's path does not exist.
    NoFixFlag {
        interpreter: PathBuf,
        /// Set when the emulator is also dynamically linked (Debian's qemu-user).
        loader: Option<String>,
    },
    /// F flag, but a dynamically linked emulator: its loader is not in a container's root.
    DynamicEmulator {
        interpreter: PathBuf,
        loader: String,
    },
    Signal {
        signal: i32,
        stderr: String,
    },
    ExitStatus {
        code: i32,
        stderr: String,
    },
    WrongOutput {
        stdout: String,
        stderr: String,
    },
    TimedOut,
    /// The kernel refused the program for another reason.
    Exec {
        errno: i32,
    },
}

impl Failure {
    /// The reason in a few words (`emulator missing`); JSON's `reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::NotRegistered => "exec format error",
            Failure::Disabled { .. } => "handler disabled",
            Failure::EmulatorMissing { .. } => "emulator missing",
            Failure::NoFixFlag {
                loader: Some(_), ..
            } => "dynamic emulator without the F flag",
            Failure::NoFixFlag { loader: None, .. } => "no F flag",
            Failure::DynamicEmulator { .. } => "dynamic emulator",
            Failure::Signal { .. } => "killed by a signal",
            Failure::ExitStatus { .. } => "exit status",
            Failure::WrongOutput { .. } => "wrong output",
            Failure::TimedOut => "timed out",
            Failure::Exec { .. } => "cannot execute",
        }
    }

    /// What happened, in a sentence.
    pub fn detail(&self) -> String {
        match self {
            Failure::NotRegistered => {
                "the kernel has no binfmt_misc handler for these programs".into()
            }
            Failure::Disabled { name } => format!("`{name}` is registered but disabled"),
            Failure::EmulatorMissing { interpreter } => format!(
                "{} does not exist; without the F flag the kernel opens it at each exec",
                interpreter.display()
            ),
            Failure::NoFixFlag {
                interpreter,
                loader: Some(loader),
            } => format!(
                "{} is dynamically linked (it needs {loader}) and registered without the F flag: \
                 a container has neither",
                interpreter.display()
            ),
            Failure::NoFixFlag {
                interpreter,
                loader: None,
            } => format!(
                "registered without the F flag: the kernel looks for {} inside each container's \
                 root",
                interpreter.display()
            ),
            Failure::DynamicEmulator {
                interpreter,
                loader,
            } => format!(
                "{} is dynamically linked: it needs {loader}, which a container does not have",
                interpreter.display()
            ),
            Failure::Signal { signal, stderr } => {
                with_stderr(format!("killed by {}", signal_name(*signal)), stderr)
            }
            Failure::ExitStatus { code, stderr } => with_stderr(format!("exited {code}"), stderr),
            Failure::WrongOutput { stdout, stderr } => with_stderr(
                format!("printed {:?} instead of the test line", excerpt(stdout)),
                stderr,
            ),
            Failure::TimedOut => "still running after 30 seconds: killed".into(),
            Failure::Exec { errno } => io::Error::from_raw_os_error(*errno).to_string(),
        }
    }

    /// The command that fixes it, for `platform` (`linux/arm64`).
    pub fn fix(&self, platform: &str) -> String {
        match self {
            Failure::NotRegistered => format!(
                "`sudo manifold binfmt install {platform} --persist` registers it (and again at \
                 every boot)"
            ),
            Failure::Disabled { .. } => {
                format!("`sudo manifold binfmt install {platform}` enables it")
            }
            Failure::EmulatorMissing { .. } => format!(
                "reinstall the emulators if they are gone (`sudo apt-get install {EMULATOR_PACKAGE}`), \
                 then `sudo manifold binfmt install --force {platform}` registers them with the F \
                 flag (the kernel then holds the emulator open, and upgrades cannot break it)"
            ),
            Failure::NoFixFlag { .. } | Failure::DynamicEmulator { .. } => format!(
                "`sudo manifold binfmt install --force {platform}` registers a static emulator with \
                 the F flag"
            ),
            Failure::Signal { .. }
            | Failure::ExitStatus { .. }
            | Failure::WrongOutput { .. }
            | Failure::TimedOut => format!(
                "the emulator itself fails: install a current {EMULATOR_PACKAGE}, then \
                 `sudo manifold binfmt install --force {platform}`"
            ),
            Failure::Exec { errno } if *errno == libc::EACCES => {
                "the temporary directory may be mounted noexec: point TMPDIR at one that is not"
                    .into()
            }
            Failure::Exec { .. } => "`manifold binfmt ls` shows the registration".into(),
        }
    }
}

fn with_stderr(s: String, stderr: &str) -> String {
    match stderr.lines().find(|l| !l.trim().is_empty()) {
        Some(line) => format!("{s}: {}", excerpt(line.trim())),
        None => s,
    }
}

fn excerpt(s: &str) -> String {
    const MAX: usize = 120;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

/// Judge one run of `h`'s test program, `registration` being what serves `h` (if anything) and
/// `interpreter` the state of the file it names.
pub fn classify(
    h: &Handler,
    registration: Option<&Registration>,
    interpreter: &Interpreter,
    ran: &Ran,
) -> Verdict {
    let native = h.is_host_family();
    let fails = Verdict::Fails;
    match &ran.ended {
        Ended::NotExecuted(errno) if *errno == libc::ENOEXEC => match registration {
            _ if native => fails(Failure::Exec { errno: *errno }),
            None => fails(Failure::NotRegistered),
            Some(r) if !r.enabled => fails(Failure::Disabled {
                name: r.name.clone(),
            }),
            Some(_) => fails(Failure::Exec { errno: *errno }),
        },
        Ended::NotExecuted(errno) if *errno == libc::ENOENT => match registration {
            Some(r) if !r.has_flag('F') => fails(match interpreter {
                Interpreter::Missing => Failure::EmulatorMissing {
                    interpreter: r.interpreter.clone(),
                },
                Interpreter::Dynamic(loader) => Failure::NoFixFlag {
                    interpreter: r.interpreter.clone(),
                    loader: Some(loader.clone()),
                },
                _ => Failure::NoFixFlag {
                    interpreter: r.interpreter.clone(),
                    loader: None,
                },
            }),
            Some(r) => match interpreter {
                Interpreter::Dynamic(loader) => fails(Failure::DynamicEmulator {
                    interpreter: r.interpreter.clone(),
                    loader: loader.clone(),
                }),
                _ => fails(Failure::Exec { errno: *errno }),
            },
            None => fails(Failure::Exec { errno: *errno }),
        },
        Ended::NotExecuted(errno) => fails(Failure::Exec { errno: *errno }),
        Ended::Signaled(signal) => fails(Failure::Signal {
            signal: *signal,
            stderr: ran.stderr.clone(),
        }),
        Ended::TimedOut => fails(Failure::TimedOut),
        Ended::Exited(code) if *code != 0 => fails(Failure::ExitStatus {
            code: *code,
            stderr: ran.stderr.clone(),
        }),
        Ended::Exited(_) if ran.stdout != super::data::test_output(&h.target) => {
            fails(Failure::WrongOutput {
                stdout: ran.stdout.clone(),
                stderr: ran.stderr.clone(),
            })
        }
        Ended::Exited(_) if native => Verdict::Native,
        Ended::Exited(_) => match registration {
            // Run on the host's own root (no user namespaces here): what a container would
            // meet is judged from the registration instead.
            Some(r) if !ran.isolation.is_container_like() && !r.has_flag('F') => {
                fails(Failure::NoFixFlag {
                    interpreter: r.interpreter.clone(),
                    loader: match interpreter {
                        Interpreter::Dynamic(l) => Some(l.clone()),
                        _ => None,
                    },
                })
            }
            Some(r) if !ran.isolation.is_container_like() => match interpreter {
                Interpreter::Dynamic(loader) => fails(Failure::DynamicEmulator {
                    interpreter: r.interpreter.clone(),
                    loader: loader.clone(),
                }),
                _ => Verdict::Works,
            },
            _ => Verdict::Works,
        },
    }
}

/// Everything `binfmt test` found out about one handler.
#[derive(Debug, Clone)]
pub struct TestReport {
    pub handler: &'static Handler,
    pub registration: Option<Registration>,
    pub verdict: Verdict,
    /// The emulator's QEMU version (`7.2.22`), when it could be asked.
    pub version: Option<String>,
    pub known_bad: Vec<&'static KnownBad>,
    pub isolation: Isolation,
    /// Worth knowing although it works (the emulator file is gone, say).
    pub note: Option<String>,
}

impl TestReport {
    pub fn failed(&self) -> bool {
        matches!(self.verdict, Verdict::Fails(_))
    }
}

/// Whether this user can run a platform's programs now, judged without running anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runnable {
    Native,
    /// A usable handler is registered (`host_only`: no F flag, so not inside containers).
    Runs {
        host_only: bool,
    },
    NotRegistered,
    Broken(String),
    /// The host's own architecture family, which its CPU cannot run: no emulator may stand in.
    Unsupported,
}

impl Runnable {
    /// `native`, `runs`, `not registered`, `broken`, `unsupported`.
    pub fn word(&self) -> &'static str {
        match self {
            Runnable::Native => "native",
            Runnable::Runs { .. } => "runs",
            Runnable::NotRegistered => "not registered",
            Runnable::Broken(_) => "broken",
            Runnable::Unsupported => "unsupported",
        }
    }
}

/// The static judgement: a registered, enabled handler with the F flag serves every user (the
/// kernel opened the emulator at registration); without F the kernel opens the emulator as the
/// user at each exec, so it must exist and be executable by them.
pub fn runnable(
    registration: Option<&Registration>,
    can_execute: impl Fn(&Path) -> bool,
) -> Runnable {
    let Some(r) = registration else {
        return Runnable::NotRegistered;
    };
    if !r.enabled {
        return Runnable::Broken(format!("`{}` is disabled", r.name));
    }
    if r.has_flag('F') {
        return Runnable::Runs { host_only: false };
    }
    match Interpreter::inspect(&r.interpreter) {
        Interpreter::Missing => Runnable::Broken(format!(
            "emulator missing: {} (no F flag)",
            r.interpreter.display()
        )),
        _ if !can_execute(&r.interpreter) => Runnable::Broken(format!(
            "{} is not executable by this user (no F flag)",
            r.interpreter.display()
        )),
        _ => Runnable::Runs { host_only: true },
    }
}

/// Whether this process may execute `path` (effective ids, as the kernel checks at exec).
pub fn can_execute(path: &Path) -> bool {
    rustix::fs::accessat(
        rustix::fs::CWD,
        path,
        rustix::fs::Access::EXEC_OK,
        rustix::fs::AtFlags::EACCESS,
    )
    .is_ok()
}
