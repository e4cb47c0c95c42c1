//! Credentials: read from docker's config.json (`auths`, `credsStore`, `credHelpers`) by the
//! docker_credential crate, written by `login`/`logout` ourselves (other keys are preserved).
//! Secrets never reach `Debug`, `Display` or error messages.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use docker_credential::{CredentialRetrievalError, DockerCredential};
use serde_json::{Map, Value};

/// The key Docker Hub's credentials live under in config.json and in credential helpers.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read the credentials for `{registry}` from {path}: {why}")]
    Read {
        registry: String,
        path: PathBuf,
        why: String,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON")]
    Config {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the credential helper `docker-credential-{helper}` failed to {action} credentials{}", exit_note(.status))]
    Helper {
        helper: String,
        action: &'static str,
        status: Option<i32>,
    },
    #[error("neither DOCKER_CONFIG nor HOME is set, so docker's config.json cannot be found")]
    NoConfigDir,
}

fn exit_note(status: &Option<i32>) -> String {
    status.map_or_else(String::new, |s| format!(" (exit status {s})"))
}

/// What a registry is asked with.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// A refresh token from an earlier login (docker's `identitytoken`).
    IdentityToken {
        username: Option<String>,
        token: String,
    },
}

impl Credentials {
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Credentials::Anonymous)
    }

    pub fn username(&self) -> Option<&str> {
        match self {
            Credentials::Anonymous => None,
            Credentials::Basic { username, .. } => Some(username),
            Credentials::IdentityToken { username, .. } => username.as_deref(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => {
                write!(
                    f,
                    "Basic {{ username: {username:?}, password: <redacted> }}"
                )
            }
            Credentials::IdentityToken { username, .. } => {
                write!(
                    f,
                    "IdentityToken {{ username: {username:?}, token: <redacted> }}"
                )
            }
        }
    }
}

/// The key a registry's credentials are stored under: Docker Hub's historical URL, else
/// `host[:port]`.
pub fn config_key(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_KEY.to_string(),
        other => other.to_string(),
    }
}

/// docker's config.json: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn config_path() -> Result<PathBuf, CredentialsError> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
        .ok_or(CredentialsError::NoConfigDir)?;
    Ok(dir.join("config.json"))
}

/// The stored credentials for `registry` (anonymous when none are configured).
pub fn lookup(registry: &str) -> Result<Credentials, CredentialsError> {
    let Ok(path) = config_path() else {
        return Ok(Credentials::Anonymous);
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Credentials::Anonymous),
        Err(e) => {
            return Err(CredentialsError::Read {
                registry: registry.into(),
                path,
                why: e.to_string(),
            });
        }
    };
    let key = config_key(registry);
    let found = docker_credential::get_credential_from_reader(std::io::BufReader::new(file), &key);
    match found {
        Ok(DockerCredential::UsernamePassword(username, password)) => {
            // docker's helpers return `<token>` as the user name of an identity token.
            if username == "<token>" {
                Ok(Credentials::IdentityToken {
                    username: None,
                    token: password,
                })
            } else {
                Ok(Credentials::Basic { username, password })
            }
        }
        Ok(DockerCredential::IdentityToken(token)) => Ok(Credentials::IdentityToken {
            username: stored_username(&path, &key),
            token,
        }),
        Err(CredentialRetrievalError::NoCredentialConfigured)
        | Err(CredentialRetrievalError::ConfigNotFound) => Ok(Credentials::Anonymous),
        // A helper that has nothing for this registry says so on a non-zero exit.
        Err(CredentialRetrievalError::HelperFailure { stdout, .. })
            if stdout.contains("credentials not found") =>
        {
            Ok(Credentials::Anonymous)
        }
        // Never pass the helper's output on: it may echo a secret.
        Err(e) => Err(CredentialsError::Read {
            registry: registry.into(),
            path,
            why: match e {
                CredentialRetrievalError::HelperFailure { helper, .. } => {
                    format!("the credential helper `{helper}` failed")
                }
                CredentialRetrievalError::ConfigReadError => "the file is not valid JSON".into(),
                other => other.to_string().to_lowercase(),
            },
        }),
    }
}

/// The user name beside an identity token in `auths` (its `auth` is `user:`).
fn stored_username(path: &Path, key: &str) -> Option<String> {
    let config = read_config(path).ok()?;
    let auth = config.get("auths")?.get(key)?.get("auth")?.as_str()?;
    let decoded = String::from_utf8(STANDARD.decode(auth).ok()?).ok()?;
    let (user, _) = decoded.split_once(':')?;
    (!user.is_empty()).then(|| user.to_string())
}

fn read_config(path: &Path) -> Result<Map<String, Value>, CredentialsError> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| CredentialsError::Config {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(source) => Err(CredentialsError::Write {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Write config.json as docker does: its directory created 0700, the file replaced atomically
/// and 0600. A config.json that is a symbolic link (dotfiles kept elsewhere) stays one: the
/// file it leads to is what is replaced, keeping its owner (`sudo -E manifold login` must not
/// take a user's file away from them).
fn write_config(path: &Path, config: &Map<String, Value>) -> Result<(), CredentialsError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let err = |source| CredentialsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    let target = follow_links(path).map_err(err)?;
    let target_dir = target.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".config.json")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(target_dir)
        .map_err(err)?;
    if let Ok(old) = std::fs::metadata(&target) {
        // Only root can give a file away, and only root needs to.
        let _ = std::os::unix::fs::fchown(tmp.as_file(), Some(old.uid()), Some(old.gid()));
    }
    let mut bytes = serde_json::to_vec_pretty(config).expect("JSON values serialise");
    bytes.push(b'\n');
    tmp.write_all(&bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(&target).map_err(|e| err(e.error))?;
    Ok(())
}

/// Where a chain of symbolic links from `path` ends (a missing file ends it too); relative links
/// are taken from the link's directory, as the kernel does.
fn follow_links(path: &Path) -> std::io::Result<PathBuf> {
    // The kernel's own limit on links followed in one lookup.
    const MAX_LINKS: usize = 40;
    let mut p = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = std::fs::read_link(&p)?;
                p = p.parent().unwrap_or(Path::new(".")).join(to);
            }
            Ok(_) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(p),
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::from_raw_os_error(libc::ELOOP))
}

/// The helper that holds `key`'s credentials, if config.json names one.
fn helper_for(config: &Map<String, Value>, key: &str) -> Option<String> {
    config
        .get("credHelpers")
        .and_then(|h| h.get(key))
        .and_then(Value::as_str)
        .or_else(|| config.get("credsStore").and_then(Value::as_str))
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

fn run_helper(helper: &str, action: &'static str, input: &[u8]) -> Result<(), CredentialsError> {
    let failed = |status| CredentialsError::Helper {
        helper: helper.to_string(),
        action: if action == "store" { "store" } else { "erase" },
        status,
    };
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|_| failed(None))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input)
        .map_err(|_| failed(None))?;
    let status = child.wait().map_err(|_| failed(None))?;
    if status.success() {
        Ok(())
    } else {
        Err(failed(status.code()))
    }
}

/// Store credentials for `registry` where docker would: its credential helper when config.json
/// names one, else `auths` (base64 `user:password`, or `user:` + `identitytoken`). Returns the
/// file or helper it went to, for the message.
pub fn store(registry: &str, credentials: &Credentials) -> Result<String, CredentialsError> {
    let path = config_path()?;
    let mut config = read_config(&path)?;
    let key = config_key(registry);
    let (username, secret, identity) = match credentials {
        Credentials::Anonymous => return Ok(path.display().to_string()),
        Credentials::Basic { username, password } => (username.clone(), password.clone(), false),
        Credentials::IdentityToken { username, token } => {
            (username.clone().unwrap_or_default(), token.clone(), true)
        }
    };
    if let Some(helper) = helper_for(&config, &key) {
        let helper_user = if identity { "<token>" } else { &username };
        let input =
            serde_json::json!({"ServerURL": key, "Username": helper_user, "Secret": secret});
        run_helper(&helper, "store", input.to_string().as_bytes())?;
        // docker keeps an empty entry so `auths` lists the registry.
        auths_mut(&mut config).insert(key, Value::Object(Map::new()));
        write_config(&path, &config)?;
        return Ok(format!(
            "the credential helper `docker-credential-{helper}`"
        ));
    }
    let mut entry = Map::new();
    if identity {
        entry.insert(
            "auth".into(),
            STANDARD.encode(format!("{username}:")).into(),
        );
        entry.insert("identitytoken".into(), secret.into());
    } else {
        entry.insert(
            "auth".into(),
            STANDARD.encode(format!("{username}:{secret}")).into(),
        );
    }
    auths_mut(&mut config).insert(key, Value::Object(entry));
    write_config(&path, &config)?;
    Ok(path.display().to_string())
}

fn auths_mut(config: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let auths = config
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    auths.as_object_mut().expect("an object")
}

/// Remove `registry`'s credentials (from its helper too). Returns whether any were stored.
pub fn erase(registry: &str) -> Result<bool, CredentialsError> {
    let path = config_path()?;
    let mut config = read_config(&path)?;
    let key = config_key(registry);
    let mut found = false;
    if let Some(helper) = helper_for(&config, &key) {
        found |= run_helper(&helper, "erase", key.as_bytes()).is_ok();
    }
    if let Some(auths) = config.get_mut("auths").and_then(Value::as_object_mut) {
        let before = auths.len();
        auths.retain(|k, _| normalise_key(k) != normalise_key(&key));
        if auths.len() != before {
            found = true;
            write_config(&path, &config)?;
        }
    }
    Ok(found)
}

/// `https://host/v1/` and `host` name the same registry.
fn normalise_key(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.split('/').next().unwrap_or(k);
    match k {
        "registry-1.docker.io" | "docker.io" => "index.docker.io",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test touches DOCKER_CONFIG, so the process environment is not raced.
    #[test]
    fn store_lookup_erase_round_trip_preserving_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths":{"other.example":{"auth":"dTpw"}},"psFormat":"table {{.ID}}"}"#,
        )
        .unwrap();
        // SAFETY: the only test in this binary that reads or writes DOCKER_CONFIG.
        unsafe { std::env::set_var("DOCKER_CONFIG", dir.path()) };
        let basic = Credentials::Basic {
            username: "alice".into(),
            password: "s3cret".into(),
        };
        store("127.0.0.1:5000", &basic).unwrap();
        assert_eq!(lookup("127.0.0.1:5000").unwrap(), basic);
        let token = Credentials::IdentityToken {
            username: Some("bob".into()),
            token: "refresh-me".into(),
        };
        store("docker.io", &token).unwrap();
        assert_eq!(lookup("docker.io").unwrap(), token);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("psFormat"), "{text}");
        assert!(text.contains("other.example"), "{text}");
        assert!(text.contains(DOCKER_HUB_KEY), "{text}");
        assert!(erase("127.0.0.1:5000").unwrap());
        assert!(!erase("127.0.0.1:5000").unwrap());
        assert_eq!(lookup("127.0.0.1:5000").unwrap(), Credentials::Anonymous);
        assert_eq!(lookup("docker.io").unwrap(), token);
        assert!(!format!("{token:?}{basic:?}").contains("refresh-me"));
        assert!(!format!("{basic:?}").contains("s3cret"));
        unsafe { std::env::remove_var("DOCKER_CONFIG") };
    }

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    fn one_entry() -> Map<String, Value> {
        serde_json::from_str(r#"{"auths":{"r.example":{"auth":"dTpw"}}}"#).unwrap()
    }

    #[test]
    fn a_new_config_directory_is_private_and_the_file_0600() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("home/.docker/config.json");
        write_config(&path, &one_entry()).unwrap();
        assert_eq!(mode(&t.path().join("home/.docker")), 0o700);
        assert_eq!(mode(&t.path().join("home")), 0o700);
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn a_symlinked_config_is_written_through_and_stays_a_link() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let dots = t.path().join("dotfiles");
        std::fs::create_dir(&dots).unwrap();
        let real = dots.join("docker.json");
        std::fs::write(&real, r#"{"psFormat":"x"}"#).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o644)).unwrap();
        let docker = t.path().join("docker");
        std::fs::create_dir(&docker).unwrap();
        // A chain: config.json -> (relative) hop -> (absolute) the real file.
        std::os::unix::fs::symlink("hop", docker.join("config.json")).unwrap();
        std::os::unix::fs::symlink(&real, docker.join("hop")).unwrap();
        let path = docker.join("config.json");
        write_config(&path, &one_entry()).unwrap();
        for link in ["config.json", "hop"] {
            let m = std::fs::symlink_metadata(docker.join(link)).unwrap();
            assert!(m.file_type().is_symlink(), "{link} is still a link");
        }
        assert_eq!(read_config(&real).unwrap(), one_entry());
        assert_eq!(mode(&real), 0o600, "credentials are the owner's alone");
        let strays: Vec<_> = std::fs::read_dir(&dots).unwrap().collect();
        assert_eq!(strays.len(), 1, "no temp file left beside the target");

        // A dangling link: the file is created where it points.
        let later = dots.join("later.json");
        std::os::unix::fs::symlink(&later, docker.join("dangling")).unwrap();
        write_config(&docker.join("dangling"), &one_entry()).unwrap();
        assert!(
            std::fs::symlink_metadata(docker.join("dangling"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(read_config(&later).unwrap(), one_entry());
    }

    #[test]
    fn a_link_loop_is_an_error_not_a_hang() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("config.json");
        std::os::unix::fs::symlink("config.json", &path).unwrap();
        let e = write_config(&path, &one_entry()).unwrap_err();
        assert!(matches!(e, CredentialsError::Write { .. }), "{e}");
    }
}
