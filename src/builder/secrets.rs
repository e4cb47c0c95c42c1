//! What a build is given that never becomes part of an image: secrets (`--secret`, buildx's
//! syntax) and SSH agents (`--ssh`), for `RUN --mount=type=secret|ssh`.
//!
//! A secret's value lives in a [`SecretValue`]: no `Serialize`, a `Debug` that shows only its
//! length, zeroed when dropped. Only the runner reads it, to put it on a tmpfs the step sees
//! (or in the step's environment). The specs ([`SecretSpec`], [`SshSpec`]) hold only where a
//! value comes from (a path, a variable's name), never a value: they may be printed (bake's
//! `--print`) and recorded (provenance). The build args (`PlanOptions::build_args`) never hold
//! a secret.
//!
//! An agent is the user's own (`SSH_AUTH_SOCK`, or a socket named on the command line), or a
//! short-lived `ssh-agent` holding the key files named, which lives as long as the build.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::hint::Hint;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("invalid --secret `{spec}`: {why}")]
    Spec { spec: String, why: String },
    #[error("cannot read the file `{}` of secret `{id}`", path.display())]
    Read {
        id: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid --ssh `{spec}`: {why}")]
    SshSpec { spec: String, why: String },
    #[error("--ssh {id}: SSH_AUTH_SOCK is not set, and no socket or key file was named")]
    NoAgent { id: String },
    #[error("--ssh {id}: `{}` is neither a socket nor a readable key file", path.display())]
    SshPath {
        id: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("--ssh {id}: a socket cannot be combined with other paths")]
    SocketAndKeys { id: String },
    #[error("--ssh {id}: cannot start `ssh-agent` for the key files")]
    Agent {
        id: String,
        #[source]
        source: io::Error,
    },
    #[error("--ssh {id}: `ssh-add` refused the key file `{}`: {message}", path.display())]
    AddKey {
        id: String,
        path: PathBuf,
        message: String,
    },
}

impl Hint for SecretError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            SecretError::Spec { .. } => {
                "write it as `id=ID,src=FILE` or `id=ID,env=VARIABLE` (buildx's syntax)".into()
            }
            SecretError::SshSpec { .. } => {
                "write it as `default`, `default=SOCKET_OR_KEY` or `ID=SOCKET_OR_KEY[,KEY...]`".into()
            }
            SecretError::NoAgent { id } => format!(
                "start an agent (`eval $(ssh-agent)` and `ssh-add`), or name a key file: `--ssh {id}=$HOME/.ssh/id_ed25519`"
            ),
            SecretError::Agent { .. } => {
                "`ssh-agent` and `ssh-add` come with OpenSSH (Debian, Ubuntu: `apt-get install openssh-client`)".into()
            }
            SecretError::AddKey { .. } => {
                "a key with a passphrase must be added to an agent of your own first: `ssh-add KEY`, then `--ssh default`".into()
            }
            _ => return None,
        })
    }
}

/// A secret's bytes. Never serialised, never shown: `Debug` prints the length only.
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    pub fn new(bytes: Vec<u8>) -> SecretValue {
        SecretValue(bytes)
    }

    /// The bytes, for the runner that hands them to the step.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue({} bytes)", self.0.len())
    }
}

impl Drop for SecretValue {
    fn drop(&mut self) {
        // Best effort: the allocator may have copied it before, but not this one.
        for b in self.0.iter_mut() {
            // SAFETY: a valid, aligned &mut u8; volatile so the write is not optimised away.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

/// Where a secret's value comes from (a path or a variable's name: never the value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// One `--secret`: `id=ID,src=FILE`, `id=ID,env=VAR`, `type=file|env,…`, or `id=ID` alone
/// (the variable ID when it is set, else the file ID — buildx's rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretSpec {
    pub id: String,
    pub source: SecretSource,
}

impl std::str::FromStr for SecretSpec {
    type Err = SecretError;

    fn from_str(spec: &str) -> Result<SecretSpec, SecretError> {
        let err = |why: String| SecretError::Spec {
            spec: spec.to_string(),
            why,
        };
        let (mut id, mut src, mut env, mut kind) = (None, None, None, None);
        for field in spec.split(',').filter(|f| !f.is_empty()) {
            let Some((k, v)) = field.split_once('=') else {
                return Err(err(format!("`{field}` is not a key=value pair")));
            };
            match k.to_ascii_lowercase().as_str() {
                "type" => match v {
                    "file" | "env" => kind = Some(v.to_string()),
                    _ => return Err(err(format!("unknown type `{v}`: expected file or env"))),
                },
                "id" => id = Some(v.to_string()),
                "src" | "source" => src = Some(v.to_string()),
                "env" => env = Some(v.to_string()),
                _ => {
                    return Err(err(format!(
                        "unknown key `{k}`: expected id, type, src or env"
                    )));
                }
            }
        }
        // buildx: `type=env,src=VAR` names the variable.
        if kind.as_deref() == Some("env") && env.is_none() {
            env = src.take();
        }
        let id = id
            .or_else(|| env.clone())
            .or_else(|| {
                src.as_deref()
                    .and_then(|s| Path::new(s).file_name())
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .filter(|id| !id.is_empty())
            .ok_or_else(|| err("it needs an id".into()))?;
        let source = match (src, env) {
            (Some(_), Some(_)) => return Err(err("give either src or env, not both".into())),
            (Some(s), None) => SecretSource::File(PathBuf::from(s)),
            (None, Some(e)) => SecretSource::Env(e),
            (None, None) if kind.as_deref() == Some("file") => {
                SecretSource::File(PathBuf::from(&id))
            }
            (None, None) if kind.as_deref() == Some("env") || std::env::var_os(&id).is_some() => {
                SecretSource::Env(id.clone())
            }
            (None, None) => SecretSource::File(PathBuf::from(&id)),
        };
        Ok(SecretSpec { id, source })
    }
}

impl SecretSpec {
    /// The spec with a relative file resolved against `base` (a bake file's directory).
    pub fn relative_to(mut self, base: &Path) -> SecretSpec {
        if let SecretSource::File(p) = &mut self.source
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
        self
    }
}

/// The secrets of one build, by id.
#[derive(Default)]
pub struct Secrets {
    values: BTreeMap<String, SecretValue>,
    /// Given as an environment variable that is not set: absent (BuildKit's rule), and said
    /// so when a step requires it.
    unset: BTreeMap<String, String>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("ids", &self.values.keys().collect::<Vec<_>>())
            .field("unset", &self.unset)
            .finish()
    }
}

impl Secrets {
    /// Read every secret now: a file that cannot be read is an error before anything builds.
    /// The last spec of an id wins.
    pub fn load(specs: &[SecretSpec]) -> Result<Secrets, SecretError> {
        let mut s = Secrets::default();
        for spec in specs {
            s.values.remove(&spec.id);
            s.unset.remove(&spec.id);
            match &spec.source {
                SecretSource::File(path) => {
                    let mut bytes = Vec::new();
                    std::fs::File::open(path)
                        .and_then(|mut f| f.read_to_end(&mut bytes))
                        .map_err(|source| SecretError::Read {
                            id: spec.id.clone(),
                            path: path.clone(),
                            source,
                        })?;
                    s.values.insert(spec.id.clone(), SecretValue(bytes));
                }
                SecretSource::Env(var) => match std::env::var_os(var) {
                    Some(v) => {
                        use std::os::unix::ffi::OsStringExt;
                        s.values.insert(spec.id.clone(), SecretValue(v.into_vec()));
                    }
                    None => {
                        s.unset.insert(spec.id.clone(), var.clone());
                    }
                },
            }
        }
        Ok(s)
    }

    pub fn get(&self, id: &str) -> Option<&SecretValue> {
        self.values.get(id)
    }

    /// Every secret's value: what a record of the build (provenance) must never contain.
    pub fn values(&self) -> impl Iterator<Item = &SecretValue> {
        self.values.values()
    }

    /// The variable a secret was to come from, when it was given that way and is not set.
    pub fn unset_variable(&self, id: &str) -> Option<&str> {
        self.unset.get(id).map(String::as_str)
    }
}

/// One `--ssh`: `default`, `ID=SOCKET`, or `ID=KEY[,KEY...]` (docker's syntax).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshSpec {
    pub id: String,
    /// None: SSH_AUTH_SOCK.
    pub paths: Vec<PathBuf>,
}

impl std::str::FromStr for SshSpec {
    type Err = SecretError;

    fn from_str(spec: &str) -> Result<SshSpec, SecretError> {
        let (id, rest) = match spec.split_once('=') {
            Some((id, rest)) => (id, Some(rest)),
            None => (spec, None),
        };
        if id.is_empty() || id.contains(',') {
            return Err(SecretError::SshSpec {
                spec: spec.to_string(),
                why: "it needs an id".into(),
            });
        }
        let paths = rest
            .into_iter()
            .flat_map(|r| r.split(','))
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        Ok(SshSpec {
            id: id.to_string(),
            paths,
        })
    }
}

impl SshSpec {
    /// The spec with relative paths resolved against `base` (a bake file's directory).
    pub fn relative_to(mut self, base: &Path) -> SshSpec {
        for p in &mut self.paths {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        self
    }
}

/// A short-lived `ssh-agent` holding key files; killed when dropped.
struct OwnedAgent {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for OwnedAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Agent {
    socket: PathBuf,
    _owned: Option<OwnedAgent>,
}

/// The SSH agents of one build, by id.
#[derive(Default)]
pub struct SshAgents {
    agents: BTreeMap<String, Agent>,
}

impl fmt::Debug for SshAgents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.agents.keys()).finish()
    }
}

/// How long a new `ssh-agent` may take to listen.
const AGENT_START: Duration = Duration::from_secs(10);

impl SshAgents {
    /// Find or start every agent now (a missing SSH_AUTH_SOCK, a key `ssh-add` refuses: an
    /// error before anything builds).
    pub fn load(specs: &[SshSpec]) -> Result<SshAgents, SecretError> {
        let mut out = SshAgents::default();
        for spec in specs {
            let agent = Self::agent(spec)?;
            out.agents.insert(spec.id.clone(), agent);
        }
        Ok(out)
    }

    fn agent(spec: &SshSpec) -> Result<Agent, SecretError> {
        let id = &spec.id;
        if spec.paths.is_empty() {
            let sock = std::env::var_os("SSH_AUTH_SOCK")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| SecretError::NoAgent { id: id.clone() })?;
            return Ok(Agent {
                socket: PathBuf::from(sock),
                _owned: None,
            });
        }
        let mut keys = Vec::new();
        let mut socket = None;
        for p in &spec.paths {
            let meta = std::fs::metadata(p).map_err(|source| SecretError::SshPath {
                id: id.clone(),
                path: p.clone(),
                source,
            })?;
            if meta.file_type().is_socket() {
                socket = Some(p.clone());
            } else {
                keys.push(p.clone());
            }
        }
        match socket {
            Some(_) if !keys.is_empty() || spec.paths.len() > 1 => {
                Err(SecretError::SocketAndKeys { id: id.clone() })
            }
            Some(s) => Ok(Agent {
                socket: s,
                _owned: None,
            }),
            None => Self::start_agent(id, &keys),
        }
    }

    fn start_agent(id: &str, keys: &[PathBuf]) -> Result<Agent, SecretError> {
        let agent_err = |source| SecretError::Agent {
            id: id.to_string(),
            source,
        };
        let dir = tempfile::Builder::new()
            .prefix("manifold-ssh-")
            .tempdir()
            .map_err(agent_err)?;
        let socket = dir.path().join("agent.sock");
        // -D: in the foreground, so that the child is the agent and killing it ends it.
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(agent_err)?;
        let owned = OwnedAgent { child, _dir: dir };
        let started = Instant::now();
        // The socket file appears at bind(), before the agent listens: connecting then is
        // refused, so wait for a connection to be accepted.
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if started.elapsed() > AGENT_START {
                return Err(agent_err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "it did not listen within 10 s",
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for key in keys {
            // Never prompt: a key with a passphrase fails here instead of waiting.
            let out = Command::new("ssh-add")
                .arg("-q")
                .arg(key)
                .env("SSH_AUTH_SOCK", &socket)
                .env("SSH_ASKPASS_REQUIRE", "never")
                .env_remove("DISPLAY")
                .stdin(Stdio::null())
                .output()
                .map_err(agent_err)?;
            if !out.status.success() {
                return Err(SecretError::AddKey {
                    id: id.to_string(),
                    path: key.clone(),
                    message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
        }
        Ok(Agent {
            socket,
            _owned: Some(owned),
        })
    }

    pub fn contains(&self, id: &str) -> bool {
        self.agents.contains_key(id)
    }

    /// Listen on `at` and pass every connection on to agent `id` until the [`Forwarder`] is
    /// dropped: the step sees a socket of its own (with the mode and owner its mount asks for),
    /// never the host's path.
    pub fn forward(&self, id: &str, at: &Path) -> io::Result<Option<Forwarder>> {
        let Some(agent) = self.agents.get(id) else {
            return Ok(None);
        };
        Forwarder::start(agent.socket.clone(), at).map(Some)
    }
}

/// A socket that passes its connections on to an agent's, until dropped.
pub struct Forwarder {
    at: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Forwarder {
    fn start(upstream: PathBuf, at: &Path) -> io::Result<Forwarder> {
        let listener = UnixListener::bind(at)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let Ok(up) = UnixStream::connect(&upstream) else {
                    continue;
                };
                // Each direction until its reader ends; then the other side learns of it.
                let pipe = |from: UnixStream, to: UnixStream| {
                    std::thread::spawn(move || {
                        let (mut r, mut w) = (&from, &to);
                        let _ = io::copy(&mut r, &mut w);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                };
                if let (Ok(c2), Ok(u2)) = (conn.try_clone(), up.try_clone()) {
                    pipe(conn, up);
                    pipe(u2, c2);
                }
            }
        });
        Ok(Forwarder {
            at: at.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept; it sees the flag and ends.
        let _ = UnixStream::connect(&self.at);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> SecretSpec {
        s.parse().unwrap()
    }

    #[test]
    fn buildx_secret_syntax() {
        assert_eq!(
            spec("id=tok,src=/run/tok"),
            SecretSpec {
                id: "tok".into(),
                source: SecretSource::File("/run/tok".into())
            }
        );
        assert_eq!(
            spec("id=tok,env=TOKEN").source,
            SecretSource::Env("TOKEN".into())
        );
        assert_eq!(
            spec("type=env,id=tok,src=TOKEN").source,
            SecretSource::Env("TOKEN".into())
        );
        assert_eq!(
            spec("type=file,id=tok").source,
            SecretSource::File("tok".into())
        );
        assert_eq!(spec("src=/a/npmrc").id, "npmrc", "the file's name");
        assert_eq!(spec("env=GH_TOKEN").id, "GH_TOKEN");
        for (bad, why) in [
            ("id=a,src=f,env=V", "either src or env"),
            ("id=a,bogus=1", "unknown key `bogus`"),
            ("id=a,type=ssh", "unknown type `ssh`"),
            ("tok", "not a key=value pair"),
            ("type=file", "needs an id"),
        ] {
            let e = bad.parse::<SecretSpec>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn values_never_show() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s");
        std::fs::write(&f, "hunter2").unwrap();
        let s = Secrets::load(&[
            SecretSpec {
                id: "a".into(),
                source: SecretSource::File(f),
            },
            SecretSpec {
                id: "b".into(),
                source: SecretSource::Env("MANIFOLD_TEST_SURELY_UNSET".into()),
            },
        ])
        .unwrap();
        assert_eq!(s.get("a").unwrap().expose(), b"hunter2");
        assert!(s.get("b").is_none());
        assert_eq!(s.unset_variable("b"), Some("MANIFOLD_TEST_SURELY_UNSET"));
        let shown = format!("{s:?} {:?}", s.get("a").unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("7 bytes"), "{shown}");
        let e = Secrets::load(&[SecretSpec {
            id: "c".into(),
            source: SecretSource::File(dir.path().join("missing")),
        }])
        .unwrap_err();
        assert!(e.to_string().starts_with("cannot read the file"), "{e}");
    }

    #[test]
    fn ssh_syntax() {
        let s: SshSpec = "default".parse().unwrap();
        assert_eq!((s.id.as_str(), s.paths.len()), ("default", 0));
        let s: SshSpec = "git=/k1,/k2".parse().unwrap();
        assert_eq!(s.paths, [PathBuf::from("/k1"), PathBuf::from("/k2")]);
        assert!("=/k".parse::<SshSpec>().is_err());
    }

    #[test]
    fn a_forwarder_passes_bytes_both_ways_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let up = dir.path().join("up.sock");
        let listener = UnixListener::bind(&up).unwrap();
        let echo = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).unwrap();
            io::Write::write_all(&mut c, &buf).unwrap();
        });
        let at = dir.path().join("fwd.sock");
        let f = Forwarder::start(up, &at).unwrap();
        let mut c = UnixStream::connect(&at).unwrap();
        io::Write::write_all(&mut c, b"hello").unwrap();
        let mut back = [0u8; 5];
        c.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");
        echo.join().unwrap();
        drop(f);
        assert!(!at.exists(), "the socket goes with the forwarder");
    }
}
