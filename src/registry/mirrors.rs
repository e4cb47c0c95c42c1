//! Registry mirrors for pulls: podman's `registries.conf` (v2: `[[registry]]` tables with
//! `prefix`, `location`, `insecure`, `blocked`, `mirror-by-digest-only`, and their
//! `[[registry.mirror]]` tables with `location`, `insecure`, `pull-from-mirror`) and docker's
//! `registry-mirrors` (`--registry-mirror URL`, for Docker Hub only, as in docker's
//! daemon.json). For a reference they give the endpoints to read from in order — the mirrors,
//! then the registry itself — and `PullSource` reads through them, falling back to the next
//! endpoint on any failure. Pushes never use them.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Deserialize;

use super::medium::{Repository, content_error};
use crate::content::{BlobLocations, ContentError, Source};
use crate::oci::{Descriptor, Digest};
use crate::reference::Reference;

/// podman's file; `MANIFOLD_REGISTRIES_CONF` names another (tests, unusual setups).
pub fn default_registries_conf() -> PathBuf {
    std::env::var_os("MANIFOLD_REGISTRIES_CONF")
        .filter(|v| !v.is_empty())
        .map_or_else(
            || PathBuf::from("/etc/containers/registries.conf"),
            PathBuf::from,
        )
}

#[derive(Debug, thiserror::Error)]
pub enum MirrorsError {
    #[error("cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse {}", .path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("{}: {what}", .path.display())]
    Invalid { path: PathBuf, what: String },
    #[error("`--registry-mirror {url}` is not a registry URL: {why}")]
    MirrorUrl { url: String, why: &'static str },
    #[error("pulling `{reference}` is blocked by {} (prefix `{prefix}`)", .path.display())]
    Blocked {
        reference: String,
        prefix: String,
        path: PathBuf,
    },
}

#[derive(Debug, Default, Deserialize)]
struct ConfFile {
    #[serde(default)]
    registry: Vec<ConfRegistry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ConfRegistry {
    prefix: Option<String>,
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror_by_digest_only: bool,
    #[serde(default)]
    mirror: Vec<ConfMirror>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ConfMirror {
    location: String,
    #[serde(default)]
    insecure: bool,
    pull_from_mirror: Option<String>,
}

/// Which pulls a mirror serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PullFrom {
    All,
    DigestOnly,
    TagOnly,
}

#[derive(Debug, Clone)]
struct Mirror {
    /// `host[:port][/path]`: replaces the matched prefix.
    location: String,
    insecure: bool,
    pull_from: PullFrom,
}

#[derive(Debug, Clone)]
struct Rule {
    /// `host[:port][/path]`, or `*.domain` (any host under it).
    prefix: String,
    /// Where the registry itself is read from (the prefix unless remapped).
    location: String,
    insecure: bool,
    blocked: bool,
    mirrors: Vec<Mirror>,
    /// The file the rule came from, for messages.
    source: PathBuf,
}

/// One place to read a repository from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`.
    pub registry: String,
    pub repository: String,
    pub mirror: bool,
}

/// The mirror configuration of a run.
#[derive(Debug, Clone, Default)]
pub struct Mirrors {
    rules: Vec<Rule>,
}

impl Mirrors {
    /// Read a `registries.conf`; a missing file is no configuration.
    pub fn load(path: &Path) -> Result<Mirrors, MirrorsError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Mirrors::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Mirrors::default()),
            Err(source) => Err(MirrorsError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parse the text of a `registries.conf` (v2). Keys of other versions and of other features
    /// (`unqualified-search-registries`, short-name aliases) are ignored.
    pub fn parse(text: &str, path: &Path) -> Result<Mirrors, MirrorsError> {
        let file: ConfFile = toml::from_str(text).map_err(|source| MirrorsError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        let invalid = |what: String| MirrorsError::Invalid {
            path: path.to_path_buf(),
            what,
        };
        let mut rules = Vec::new();
        for r in file.registry {
            let prefix = match (r.prefix, &r.location) {
                (Some(p), _) if !p.is_empty() => p,
                (_, Some(l)) if !l.is_empty() => l.clone(),
                _ => {
                    return Err(invalid(
                        "a `[[registry]]` has neither `prefix` nor `location`".into(),
                    ));
                }
            };
            let prefix = prefix.trim_end_matches('/').to_string();
            let wildcard = prefix.starts_with("*.");
            let location = match r.location.filter(|l| !l.is_empty()) {
                Some(_) if wildcard => {
                    return Err(invalid(format!(
                        "the wildcard prefix `{prefix}` cannot have a `location`"
                    )));
                }
                Some(l) => l.trim_end_matches('/').to_string(),
                None => prefix.clone(),
            };
            let mut mirrors = Vec::new();
            for m in r.mirror {
                let pull_from = if r.mirror_by_digest_only {
                    PullFrom::DigestOnly
                } else {
                    match m.pull_from_mirror.as_deref() {
                        None | Some("") | Some("all") => PullFrom::All,
                        Some("digest-only") => PullFrom::DigestOnly,
                        Some("tag-only") => PullFrom::TagOnly,
                        Some(other) => {
                            return Err(invalid(format!(
                                "`pull-from-mirror = \"{other}\"` is none of `all`, `digest-only`, `tag-only`"
                            )));
                        }
                    }
                };
                let location = m.location.trim_end_matches('/').to_string();
                if location.is_empty() || location.starts_with('/') {
                    return Err(invalid(format!(
                        "a mirror of `{prefix}` has no registry in its `location`"
                    )));
                }
                mirrors.push(Mirror {
                    location,
                    insecure: m.insecure,
                    pull_from,
                });
            }
            rules.push(Rule {
                prefix,
                location,
                insecure: r.insecure,
                blocked: r.blocked,
                mirrors,
                source: path.to_path_buf(),
            });
        }
        Ok(Mirrors { rules })
    }

    /// Add docker's `registry-mirrors` (`https://mirror.example`, `http://10.0.0.5:5000`): mirrors
    /// of Docker Hub tried before those of the file. A mirror given as `http://` is spoken to in
    /// plain HTTP.
    pub fn add_docker_mirrors(&mut self, urls: &[String]) -> Result<(), MirrorsError> {
        let mut added = Vec::new();
        for url in urls {
            let bad = |why| MirrorsError::MirrorUrl {
                url: url.clone(),
                why,
            };
            let parsed = reqwest::Url::parse(url).map_err(|_| bad("not a URL"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(bad("the scheme must be `https://` or `http://`"));
            }
            if parsed.query().is_some() || parsed.fragment().is_some() {
                return Err(bad("a query or fragment has no meaning here"));
            }
            let host = super::http::url_host_port(&parsed);
            let host = match parsed.port() {
                Some(_) => host,
                None => parsed.host_str().unwrap_or_default().to_string(),
            };
            let path = parsed.path().trim_matches('/');
            added.push(Mirror {
                location: if path.is_empty() {
                    host
                } else {
                    format!("{host}/{path}")
                },
                insecure: parsed.scheme() == "http",
                pull_from: PullFrom::All,
            });
        }
        if added.is_empty() {
            return Ok(());
        }
        let hub = crate::reference::DEFAULT_REGISTRY;
        match self.rules.iter_mut().find(|r| r.prefix == hub) {
            Some(rule) => {
                added.append(&mut rule.mirrors);
                rule.mirrors = added;
            }
            None => self.rules.push(Rule {
                prefix: hub.to_string(),
                location: hub.to_string(),
                insecure: false,
                blocked: false,
                mirrors: added,
                source: PathBuf::from("--registry-mirror"),
            }),
        }
        Ok(())
    }

    /// `host[:port]` of every location marked insecure (plain HTTP and unverified TLS allowed).
    pub fn insecure_hosts(&self) -> Vec<String> {
        let host = |location: &str| location.split('/').next().unwrap_or_default().to_string();
        let mut out = Vec::new();
        for r in &self.rules {
            if r.insecure && !r.prefix.starts_with("*.") {
                out.push(host(&r.location));
            }
            out.extend(
                r.mirrors
                    .iter()
                    .filter(|m| m.insecure)
                    .map(|m| host(&m.location)),
            );
        }
        out
    }

    /// Where to read `reference` from, in order: the mirrors that serve it, then the registry
    /// itself (its `location`).
    pub fn endpoints(&self, reference: &Reference) -> Result<Vec<Endpoint>, MirrorsError> {
        let name = reference.name();
        let itself = || Endpoint {
            registry: reference.registry().to_string(),
            repository: reference.repository().to_string(),
            mirror: false,
        };
        let Some((rule, matched)) = self.rule_for(reference) else {
            return Ok(vec![itself()]);
        };
        if rule.blocked {
            return Err(MirrorsError::Blocked {
                reference: reference.familiar(),
                prefix: rule.prefix.clone(),
                path: rule.source.clone(),
            });
        }
        let rest = &name[matched..];
        let by_digest = reference.digest().is_some();
        let mut out = Vec::new();
        for m in &rule.mirrors {
            let serves = match m.pull_from {
                PullFrom::All => true,
                PullFrom::DigestOnly => by_digest,
                PullFrom::TagOnly => !by_digest,
            };
            if serves && let Some(e) = endpoint(&m.location, rest, true) {
                out.push(e);
            }
        }
        out.push(if rule.prefix.starts_with("*.") {
            itself()
        } else {
            endpoint(&rule.location, rest, false).unwrap_or_else(itself)
        });
        Ok(out)
    }

    /// The rule whose prefix matches `reference` longest, and how much of its name it matched.
    fn rule_for(&self, reference: &Reference) -> Option<(&Rule, usize)> {
        let name = reference.name();
        let host = reference.registry();
        self.rules
            .iter()
            .filter_map(|r| {
                if let Some(domain) = r.prefix.strip_prefix('*') {
                    let bare = super::http::split_host_port(host).0;
                    return bare.ends_with(domain).then_some((r, host.len()));
                }
                let p = r.prefix.as_str();
                let matches = name == p
                    || name
                        .strip_prefix(p)
                        .is_some_and(|rest| rest.starts_with('/'));
                matches.then_some((r, p.len()))
            })
            .max_by_key(|(r, _)| r.prefix.len())
    }
}

/// `location` + `rest` (`/library/alpine`) split into registry and repository.
fn endpoint(location: &str, rest: &str, mirror: bool) -> Option<Endpoint> {
    let full = format!("{location}{rest}");
    let (registry, repository) = full.split_once('/')?;
    (!registry.is_empty() && !repository.is_empty()).then(|| Endpoint {
        registry: registry.to_string(),
        repository: repository.to_string(),
        mirror,
    })
}

/// A repository read through its mirrors: the first endpoint that resolves the reference serves
/// the pull; a document or blob it fails to give is read from the endpoints after it (the
/// registry itself last). Digests are checked by the copy as for any source.
pub struct PullSource {
    endpoints: Vec<(Repository, bool)>,
    serving: AtomicUsize,
    /// Blobs opened once: opening one again means the first stream failed, so the next
    /// endpoint gives it.
    opened: Mutex<HashSet<Digest>>,
}

impl PullSource {
    pub fn new(endpoints: Vec<(Repository, bool)>) -> PullSource {
        assert!(
            !endpoints.is_empty(),
            "a pull has at least the registry itself"
        );
        PullSource {
            endpoints,
            serving: AtomicUsize::new(0),
            opened: Mutex::new(HashSet::new()),
        }
    }

    fn describe(&self, i: usize) -> String {
        let (repo, mirror) = &self.endpoints[i];
        format!(
            "{} `{}/{}`",
            if *mirror { "mirror" } else { "registry" },
            repo.registry(),
            repo.name()
        )
    }

    fn log(&self, line: &str) {
        self.endpoints[0].0.transport.log(line);
    }

    /// Try `f` on each endpoint from `first` on; the first success wins.
    fn first_ok<'s, T>(
        &'s self,
        first: usize,
        what: &str,
        f: impl Fn(&'s Repository) -> Result<T, ContentError>,
    ) -> Result<(usize, T), ContentError> {
        let last = self.endpoints.len() - 1;
        let mut i = first.min(last);
        loop {
            match f(&self.endpoints[i].0) {
                Ok(v) => return Ok((i, v)),
                Err(e) if i < last => {
                    self.log(&format!(
                        "{} failed {what} ({e}): trying {}",
                        self.describe(i),
                        self.describe(i + 1)
                    ));
                    i += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The endpoint serving the pull (the first that resolved its reference).
    pub fn serving(&self) -> &Repository {
        &self.endpoints[self.serving.load(Ordering::Relaxed)].0
    }

    /// The repository of the registry itself (the last endpoint).
    pub fn origin(&self) -> &Repository {
        &self.endpoints[self.endpoints.len() - 1].0
    }
}

impl Source for PullSource {
    fn resolve(&self, reference: &Reference) -> Result<Descriptor, ContentError> {
        let what = format!("to resolve `{}`", reference.familiar());
        let (i, desc) = self.first_ok(0, &what, |repo| {
            repo.resolve_reference(reference).map_err(content_error)
        })?;
        self.serving.store(i, Ordering::Relaxed);
        if self.endpoints.len() > 1 {
            self.log(&format!(
                "`{}` served by {}",
                reference.familiar(),
                self.describe(i)
            ));
        }
        Ok(desc)
    }

    fn fetch_manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, ContentError> {
        let what = format!("to give manifest {}", desc.digest);
        let first = self.serving.load(Ordering::Relaxed);
        Ok(self
            .first_ok(first, &what, |repo| repo.fetch_manifest(desc))?
            .1)
    }

    /// The endpoint that gives the blob records itself in `locations`, and the registry itself
    /// too: the image's home holds its blobs, whichever mirror served them.
    fn open_blob(
        &self,
        desc: &Descriptor,
        locations: &dyn BlobLocations,
    ) -> Result<Box<dyn Read + Send + '_>, ContentError> {
        let mut first = self.serving.load(Ordering::Relaxed);
        if !self.opened.lock().unwrap().insert(desc.digest.clone()) {
            first += 1;
        }
        let what = format!("to give blob {}", desc.digest);
        let (_, reader) = self.first_ok(first, &what, |repo| {
            Source::open_blob(repo, desc, locations)
        })?;
        locations.record(&desc.digest, &self.origin().here());
        Ok(reader)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> Mirrors {
        Mirrors::parse(text, Path::new("registries.conf")).unwrap()
    }

    fn ends(m: &Mirrors, r: &str) -> Vec<String> {
        m.endpoints(&Reference::parse(r).unwrap())
            .unwrap()
            .into_iter()
            .map(|e| {
                format!(
                    "{}{}/{}",
                    if e.mirror { "mirror " } else { "" },
                    e.registry,
                    e.repository
                )
            })
            .collect()
    }

    const PODMAN: &str = r#"
unqualified-search-registries = ["docker.io"]

[[registry]]
prefix = "docker.io"
location = "docker.io"

[[registry.mirror]]
location = "mirror.example:5000/hub"
insecure = true

[[registry.mirror]]
location = "digests.example"
pull-from-mirror = "digest-only"

[[registry]]
prefix = "docker.io/team"
location = "internal.example/team-copy"

[[registry]]
location = "blocked.example"
blocked = true

[[registry]]
prefix = "*.corp.example"

[[registry.mirror]]
location = "cache.corp.example"
"#;

    #[test]
    fn registries_conf_v2_mirrors_in_order_with_the_registry_last() {
        let m = conf(PODMAN);
        assert_eq!(
            ends(&m, "alpine:3"),
            vec![
                "mirror mirror.example:5000/hub/library/alpine",
                "docker.io/library/alpine"
            ]
        );
        let digest = format!("alpine@sha256:{}", "a".repeat(64));
        assert_eq!(
            ends(&m, &digest),
            vec![
                "mirror mirror.example:5000/hub/library/alpine",
                "mirror digests.example/library/alpine",
                "docker.io/library/alpine"
            ]
        );
        // The longest prefix wins, and its location remaps the namespace.
        assert_eq!(
            ends(&m, "team/app:1"),
            vec!["internal.example/team-copy/app"]
        );
        // A prefix matches at a path boundary only.
        assert_eq!(
            ends(&m, "docker.io/teammate/app:1")[0],
            "mirror mirror.example:5000/hub/teammate/app"
        );
        assert_eq!(
            ends(&m, "git.corp.example:5000/x/y:1"),
            vec!["mirror cache.corp.example/x/y", "git.corp.example:5000/x/y"]
        );
        assert_eq!(ends(&m, "quay.io/a/b:1"), vec!["quay.io/a/b"]);
        let blocked = m
            .endpoints(&Reference::parse("blocked.example/x:1").unwrap())
            .unwrap_err();
        assert_eq!(
            blocked.to_string(),
            "pulling `blocked.example/x:1` is blocked by registries.conf (prefix `blocked.example`)"
        );
        assert_eq!(m.insecure_hosts(), vec!["mirror.example:5000"]);
    }

    #[test]
    fn registry_mirror_flags_serve_docker_hub_only_and_come_first() {
        let mut m = conf(PODMAN);
        m.add_docker_mirrors(&[
            "http://127.0.0.1:5001".into(),
            "https://hub.example/".into(),
        ])
        .unwrap();
        assert_eq!(
            ends(&m, "alpine:3"),
            vec![
                "mirror 127.0.0.1:5001/library/alpine",
                "mirror hub.example/library/alpine",
                "mirror mirror.example:5000/hub/library/alpine",
                "docker.io/library/alpine"
            ]
        );
        assert_eq!(ends(&m, "quay.io/a/b:1"), vec!["quay.io/a/b"]);
        assert!(m.insecure_hosts().contains(&"127.0.0.1:5001".to_string()));
        assert!(!m.insecure_hosts().contains(&"hub.example".to_string()));
        let mut empty = Mirrors::default();
        empty
            .add_docker_mirrors(&["https://m.example:444".into()])
            .unwrap();
        assert_eq!(
            ends(&empty, "busybox"),
            vec![
                "mirror m.example:444/library/busybox",
                "docker.io/library/busybox"
            ]
        );
        for bad in ["ftp://m.example", "not a url", "https://m.example/?x=1"] {
            assert!(
                Mirrors::default()
                    .add_docker_mirrors(&[bad.to_string()])
                    .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_files_are_errors_naming_the_file() {
        let err = Mirrors::parse("[[registry]\n", Path::new("/x/registries.conf")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot parse /x/registries.conf")
        );
        let err =
            Mirrors::parse("[[registry]]\ninsecure = true\n", Path::new("r.conf")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "r.conf: a `[[registry]]` has neither `prefix` nor `location`"
        );
        let err = Mirrors::parse(
            "[[registry]]\nprefix = \"a.example\"\n[[registry.mirror]]\nlocation = \"m.example\"\npull-from-mirror = \"sometimes\"\n",
            Path::new("r.conf"),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("`pull-from-mirror = \"sometimes\"`"),
            "{err}"
        );
        // podman's v1 format has no mirrors: nothing, and no error.
        let v1 = conf("[registries.search]\nregistries = ['docker.io']\n");
        assert_eq!(ends(&v1, "alpine"), vec!["docker.io/library/alpine"]);
        assert!(
            Mirrors::load(Path::new("/nonexistent/registries.conf"))
                .unwrap()
                .rules
                .is_empty()
        );
    }
}
