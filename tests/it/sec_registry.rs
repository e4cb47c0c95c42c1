//! A hostile registry against the client (issue 9, items 5, 6, 13 and 17): credentials go only
//! to the origin they are for, response bodies are read up to a limit with bounded memory,
//! pagination that loops is an error, and a `.localhost` name counts as this machine only when it
//! resolves to loopback addresses alone. The servers are written here and listen on
//! 127.0.0.0/8 only — and, in the last test, inside a network namespace the test creates (where
//! 203.0.113.7 is an address of its own loopback device). Names other than `localhost` ones are
//! given addresses by a hosts file bind-mounted in a mount namespace of the command alone.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};

use crate::harness::{COMMAND_TIMEOUT, TestRoot, skip_unless};
use crate::registry_harness::{
    Head, PASSWORD, USER, import, query_pairs, read_head, stderr_of, stdout_of, tls_certificates,
};

/// What an endless body sends at most (then the server closes): far past every limit, and a
/// resident size no bounded client reaches.
const ENDLESS: u64 = 1 << 30;
/// The bearer token the hostile registry's realm hands out, meant for the registry alone.
const TOKEN: &str = "token-for-the-registry-alone";

// --- a hostile HTTP server ---------------------------------------------------------------------

/// One request a server received.
#[derive(Debug, Clone)]
struct Hit {
    /// `IP:PORT` of the server.
    server: String,
    /// Over TLS (false: plain HTTP; `method` is `(TLS refused)` when a plain server saw a TLS
    /// handshake).
    tls: bool,
    method: String,
    target: String,
    authorization: Option<String>,
}

impl Hit {
    /// `Basic` credentials decoded, for the report of a leak.
    fn credentials(&self) -> Option<String> {
        let a = self.authorization.as_deref()?;
        Some(match a.strip_prefix("Basic ") {
            Some(b) => format!(
                "Basic {}",
                String::from_utf8_lossy(&STANDARD.decode(b).unwrap_or_default())
            ),
            None => a.to_string(),
        })
    }
}

type Hits = Arc<Mutex<Vec<Hit>>>;

/// A request as a handler sees it.
struct Request<'a> {
    server: &'a str,
    head: &'a Head,
    body: &'a [u8],
}

impl Request<'_> {
    fn path(&self) -> &str {
        self.head.target.split('?').next().unwrap_or_default()
    }
    fn query(&self, name: &str) -> Option<String> {
        let q = self.head.target.split_once('?').map_or("", |(_, q)| q);
        query_pairs(q)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// `body`, then `a` without end (up to [`ENDLESS`]), no `Content-Length`.
    endless: bool,
}

impl Reply {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            endless: false,
        }
    }
    fn endless(prefix: &str) -> Reply {
        Reply {
            endless: true,
            ..Reply::new(200, prefix)
        }
    }
    fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// An HTTP/1.1 server, one exchange per connection; with a TLS config it also speaks HTTPS on
/// the same port (told apart by the first byte).
struct Server {
    host: String,
    /// Body bytes written by endless replies.
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(ip: Ipv4Addr, hits: &Hits, handler: Handler) -> Server {
        Server::serve(TcpListener::bind((ip, 0)).unwrap(), hits, None, handler)
    }

    fn serve(
        listener: TcpListener,
        hits: &Hits,
        tls: Option<Arc<rustls::ServerConfig>>,
        handler: Handler,
    ) -> Server {
        let addr = listener.local_addr().unwrap();
        assert!(
            addr.ip().is_loopback() || addr.ip().to_string() == "203.0.113.7",
            "test servers listen on loopback only"
        );
        listener.set_nonblocking(true).unwrap();
        let host = addr.to_string();
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (hits, sent, stop, host) = (hits.clone(), sent.clone(), stop.clone(), host.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = stream.set_nonblocking(false);
                            let (hits, sent, tls, handler, host) = (
                                hits.clone(),
                                sent.clone(),
                                tls.clone(),
                                handler.clone(),
                                host.clone(),
                            );
                            std::thread::spawn(move || {
                                let _ = connection(stream, &host, &hits, tls, &handler, &sent);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        Server { host, sent, stop }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn connection(
    stream: TcpStream,
    server: &str,
    hits: &Hits,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: &Handler,
    sent: &AtomicU64,
) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut first = [0u8; 1];
    if stream.peek(&mut first)? == 0 {
        return Ok(());
    }
    if first[0] != 0x16 {
        return exchange(stream, false, server, hits, handler, sent);
    }
    let Some(config) = tls else {
        hits.lock().unwrap().push(Hit {
            server: server.to_string(),
            tls: true,
            method: "(TLS refused)".into(),
            target: String::new(),
            authorization: None,
        });
        return Ok(());
    };
    let conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
    exchange(
        rustls::StreamOwned::new(conn, stream),
        true,
        server,
        hits,
        handler,
        sent,
    )
}

fn exchange<S: Read + Write>(
    stream: S,
    tls: bool,
    server: &str,
    hits: &Hits,
    handler: &Handler,
    sent: &AtomicU64,
) -> io::Result<()> {
    let mut reader = BufReader::new(stream);
    let Some(head) = read_head(&mut reader)? else {
        return Ok(());
    };
    let mut body = vec![0u8; head.content_length()];
    reader.read_exact(&mut body)?;
    hits.lock().unwrap().push(Hit {
        server: server.to_string(),
        tls,
        method: head.method.clone(),
        target: head.target.clone(),
        authorization: head.header("authorization").map(str::to_string),
    });
    let reply = handler(&Request {
        server,
        head: &head,
        body: &body,
    });
    let out = reader.get_mut();
    let mut text = format!("HTTP/1.1 {} Hostile\r\n", reply.status);
    for (k, v) in &reply.headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    if !reply.endless {
        text.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    }
    text.push_str("Connection: close\r\n\r\n");
    out.write_all(text.as_bytes())?;
    if head.method != "HEAD" {
        out.write_all(&reply.body)?;
    }
    if reply.endless {
        let chunk = vec![b'a'; 64 << 10];
        let mut n = reply.body.len() as u64;
        while n < ENDLESS && out.write_all(&chunk).is_ok() {
            n += chunk.len() as u64;
            sent.fetch_max(n, Ordering::Relaxed);
        }
    }
    out.flush()
}

/// Hits on other servers than `allowed` that carried an `Authorization`, as report lines.
fn leaks(hits: &Hits, allowed: &[&str]) -> Vec<String> {
    hits.lock()
        .unwrap()
        .iter()
        .filter(|h| !allowed.contains(&h.server.as_str()))
        .filter_map(|h| {
            let c = h.credentials()?;
            Some(format!(
                "{} {} {}{} received `{c}`",
                h.server,
                h.method,
                h.target,
                if h.tls { "" } else { " (plain HTTP)" }
            ))
        })
        .collect()
}

// --- a hostile registry ------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scheme {
    Basic,
    Bearer,
}

/// A working registry of one repository (`x`) that hands out absolute URLs on other origins:
/// upload locations, blob downloads redirected to "storage", the second page of the tags.
/// Everything under `/v2/` wants credentials; `/upload/`, `/storage/` and the second tags page
/// do not (like presigned storage URLs).
struct Hostile {
    scheme: Scheme,
    /// The token endpoint (Bearer).
    realm: String,
    /// Origins (`http://IP:PORT`, or empty: relative) of upload locations, blob redirects and
    /// the second tags page.
    uploads: String,
    storage: String,
    next_tags: String,
    blobs: Mutex<HashMap<String, Vec<u8>>>,
    manifests: Mutex<HashMap<String, (String, Vec<u8>)>>,
    sessions: AtomicUsize,
}

impl Hostile {
    fn new(scheme: Scheme, realm: String, elsewhere: &str) -> Hostile {
        Hostile {
            scheme,
            realm,
            uploads: elsewhere.to_string(),
            storage: elsewhere.to_string(),
            next_tags: elsewhere.to_string(),
            blobs: Mutex::default(),
            manifests: Mutex::default(),
            sessions: AtomicUsize::new(0),
        }
    }

    fn handler(self: &Arc<Self>) -> Handler {
        let me = self.clone();
        Arc::new(move |r| me.answer(r))
    }

    fn basic() -> String {
        format!("Basic {}", STANDARD.encode(format!("{USER}:{PASSWORD}")))
    }

    fn authorized(&self, r: &Request) -> bool {
        let want = match self.scheme {
            Scheme::Basic => Hostile::basic(),
            Scheme::Bearer => format!("Bearer {TOKEN}"),
        };
        r.head.header("authorization") == Some(want.as_str())
    }

    fn answer(&self, r: &Request) -> Reply {
        let path = r.path().to_string();
        let method = r.head.method.as_str();
        if path.starts_with("/upload/") && method == "PUT" {
            let digest = r.query("digest").unwrap_or_default();
            self.blobs
                .lock()
                .unwrap()
                .insert(digest.clone(), r.body.to_vec());
            return Reply::new(201, "").header("Docker-Content-Digest", &digest);
        }
        if let Some(digest) = path.strip_prefix("/storage/") {
            return match self.blobs.lock().unwrap().get(digest) {
                Some(b) => Reply::new(200, b.clone()),
                None => Reply::new(404, ""),
            };
        }
        if path == "/token" {
            return match r.head.header("authorization") {
                Some(a) if a == Hostile::basic() => {
                    Reply::new(200, format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#))
                }
                _ => Reply::new(401, ""),
            };
        }
        if path == "/v2/x/tags/list" && r.query("last").as_deref() == Some("a") {
            return Reply::new(200, r#"{"name":"x","tags":["b"]}"#);
        }
        if !self.authorized(r) {
            let challenge = match self.scheme {
                Scheme::Basic => r#"Basic realm="hostile""#.to_string(),
                Scheme::Bearer => format!(r#"Bearer realm="{}",service="hostile""#, self.realm),
            };
            return Reply::new(401, "").header("WWW-Authenticate", &challenge);
        }
        let blob = path.strip_prefix("/v2/x/blobs/").unwrap_or_default();
        let manifest = path.strip_prefix("/v2/x/manifests/").unwrap_or_default();
        match method {
            _ if path == "/v2/" => Reply::new(200, "{}"),
            "POST" if path == "/v2/x/blobs/uploads/" => {
                let n = self.sessions.fetch_add(1, Ordering::Relaxed);
                Reply::new(202, "").header("Location", &format!("{}/upload/{n}", self.uploads))
            }
            "HEAD" if !blob.is_empty() => Reply::new(404, ""),
            "GET" if !blob.is_empty() => Reply::new(307, "").header(
                "Location",
                &format!("{}/storage/{blob}?X-Signature=presigned", self.storage),
            ),
            "PUT" if !manifest.is_empty() => {
                let digest = format!("sha256:{}", hex::encode(Sha256::digest(r.body)));
                let media_type = r.head.header("content-type").unwrap_or_default();
                let mut manifests = self.manifests.lock().unwrap();
                for name in [manifest, digest.as_str()] {
                    manifests.insert(name.to_string(), (media_type.to_string(), r.body.to_vec()));
                }
                Reply::new(201, "").header("Docker-Content-Digest", &digest)
            }
            "GET" | "HEAD" if !manifest.is_empty() => {
                match self.manifests.lock().unwrap().get(manifest) {
                    Some((media_type, body)) => {
                        Reply::new(200, body.clone()).header("Content-Type", media_type)
                    }
                    None => Reply::new(404, ""),
                }
            }
            "GET" if path == "/v2/x/tags/list" => Reply::new(200, r#"{"name":"x","tags":["a"]}"#)
                .header(
                    "Link",
                    &format!(
                        r#"<{}/v2/x/tags/list?n=1000&last=a>; rel="next""#,
                        self.next_tags
                    ),
                ),
            _ => Reply::new(404, ""),
        }
    }
}

/// Store `alice`'s password for `registry` in the root's docker config.
fn store_credentials(root: &TestRoot, registry: &str) {
    let auth = STANDARD.encode(format!("{USER}:{PASSWORD}"));
    std::fs::write(
        root.docker_config().join("config.json"),
        format!(r#"{{"auths":{{"{registry}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed:\n{}", stderr_of(&out));
    stdout_of(&out)
}

fn fails(out: Output, what: &str) -> String {
    assert_eq!(
        out.status.code(),
        Some(125),
        "{what} should fail:\nstdout: {}\nstderr: {}",
        stdout_of(&out),
        stderr_of(&out)
    );
    stderr_of(&out)
}

/// Ports and temporary paths out of a message.
fn redact(root: &TestRoot, s: &str) -> String {
    let s = root.redact(s);
    regex::Regex::new(r"((?:\d+\.){3}\d+|[a-z.]+\.(?:example|localhost)):\d+")
        .unwrap()
        .replace_all(&s, "$1:[PORT]")
        .into_owned()
}

/// Push an image to `registry` through origins the registry names, then pull it back into a
/// fresh root and list the tags: every request the client makes on the way.
fn push_pull_tags(registry: &str, certs: Option<&Path>) -> String {
    let reference = format!("{registry}/x:1");
    let (root, puller) = (TestRoot::new(), TestRoot::new());
    for r in [&root, &puller] {
        store_credentials(r, registry);
    }
    let with_certs = |mut cmd: assert_cmd::Command| {
        if let Some(dir) = certs {
            cmd.env("MANIFOLD_CERTS_DIRS", dir);
        }
        cmd
    };
    import(&root, "amd64", &reference);
    ok(
        with_certs(root.manifold())
            .args(["push", &reference])
            .output()
            .unwrap(),
        "push",
    );
    ok(
        with_certs(puller.manifold())
            .args(["pull", &reference])
            .output()
            .unwrap(),
        "pull through a blob redirect",
    );
    ok(
        with_certs(root.manifold())
            .args(["tags", &format!("{registry}/x")])
            .output()
            .unwrap(),
        "tags",
    )
}

// --- item 5: credentials stay with their origin ------------------------------------------------

#[test]
fn credentials_go_only_to_the_registry_origin() {
    for scheme in [Scheme::Basic, Scheme::Bearer] {
        let hits = Hits::default();
        // The registry, "storage" on another loopback address, and the token realm on a third.
        let storage_listener = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 2), 0)).unwrap();
        let realm_listener = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 3), 0)).unwrap();
        let storage_host = storage_listener.local_addr().unwrap().to_string();
        let realm_host = realm_listener.local_addr().unwrap().to_string();
        let hostile = Arc::new(Hostile::new(
            scheme,
            format!("http://{realm_host}/token"),
            &format!("http://{storage_host}"),
        ));
        let registry = Server::start(Ipv4Addr::LOCALHOST, &hits, hostile.handler());
        let _storage = Server::serve(storage_listener, &hits, None, hostile.handler());
        let _realm = Server::serve(realm_listener, &hits, None, hostile.handler());

        let tags = push_pull_tags(&registry.host, None);
        assert_eq!(
            tags, "a\nb\n",
            "{scheme:?}: the second page came from the Link"
        );

        let seen = hits.lock().unwrap().clone();
        let on = |host: &str, prefix: &str| {
            seen.iter()
                .filter(|h| h.server == host && h.target.starts_with(prefix))
                .count()
        };
        assert!(on(&storage_host, "/upload/") > 0, "{seen:#?}");
        assert!(on(&storage_host, "/storage/") > 0, "{seen:#?}");
        assert!(on(&storage_host, "/v2/x/tags/list") > 0, "{seen:#?}");
        assert!(
            seen.iter()
                .any(|h| h.server == registry.host && h.authorization.is_some()),
            "{scheme:?}: the registry itself gets the credentials: {seen:#?}"
        );
        // The realm gets the password (it is where a token is asked for), nobody else does.
        let allowed = [registry.host.as_str(), realm_host.as_str()];
        let leaked = leaks(&hits, &allowed);
        assert!(
            leaked.is_empty(),
            "{scheme:?}: credentials left their origin:\n{}",
            leaked.join("\n")
        );
    }
}

#[test]
fn a_redirect_from_https_to_plain_http_on_the_same_host_carries_no_credentials() {
    let hits = Hits::default();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let (ca, cert, key) = tls_certificates();
    let certs_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(certs_dir.path().join(&host)).unwrap();
    std::fs::write(certs_dir.path().join(&host).join("ca.crt"), ca).unwrap();
    let tls = tls_config(&cert, &key);
    // Uploads stay on the HTTPS origin; blob downloads go to the same host and port in plain
    // HTTP (the server speaks both on one port).
    let mut hostile = Hostile::new(Scheme::Basic, String::new(), "");
    hostile.storage = format!("http://{host}");
    let hostile = Arc::new(hostile);
    let _server = Server::serve(listener, &hits, Some(tls), hostile.handler());

    push_pull_tags(&host, Some(certs_dir.path()));

    let seen = hits.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|h| !h.tls && h.target.starts_with("/storage/")),
        "the blob came over the plain HTTP redirect: {seen:#?}"
    );
    assert!(
        seen.iter().any(|h| h.tls && h.authorization.is_some()),
        "HTTPS requests carry the credentials: {seen:#?}"
    );
    let leaked: Vec<String> = seen
        .iter()
        .filter(|h| !h.tls && h.authorization.is_some())
        .map(|h| {
            format!(
                "{} {} received `{}`",
                h.method,
                h.target,
                h.credentials().unwrap()
            )
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "credentials went over plain HTTP:\n{}",
        leaked.join("\n")
    );
}

fn tls_config(cert_pem: &str, key_pem: &str) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap(),
    )
}

/// A hosts file for the command alone: `manifold` runs in a mount namespace of its own where
/// `hosts` is bind-mounted over /etc/hosts (the machine's file is never touched).
struct Hosts {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Hosts {
    fn new(lines: &str) -> Hosts {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, format!("127.0.0.1 localhost\n{lines}")).unwrap();
        Hosts { _dir: dir, path }
    }

    fn wrapper(&self) -> Vec<&OsStr> {
        vec![
            OsStr::new("unshare"),
            OsStr::new("--mount"),
            OsStr::new("--propagation"),
            OsStr::new("private"),
            OsStr::new("sh"),
            OsStr::new("-c"),
            OsStr::new(r#"mount --bind "$0" /etc/hosts && exec "$@""#),
            self.path.as_os_str(),
        ]
    }
}

#[test]
fn a_token_realm_in_plain_http_on_another_machine_gets_no_password() {
    skip_unless!("root");
    skip_unless!("unshare");
    let hits = Hits::default();
    // `auth.example` is 127.0.0.3 for the command alone: to manifold, another machine.
    let realm_listener = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 3), 0)).unwrap();
    let realm_port = realm_listener.local_addr().unwrap().port();
    let hosts = Hosts::new("127.0.0.3 auth.example\n");
    let hostile = Arc::new(Hostile::new(
        Scheme::Bearer,
        format!("http://auth.example:{realm_port}/token"),
        "",
    ));
    let registry = Server::start(Ipv4Addr::LOCALHOST, &hits, hostile.handler());
    let _realm = Server::serve(realm_listener, &hits, None, hostile.handler());
    let root = TestRoot::new();
    let login = |extra: &[&str]| {
        root.manifold_wrapped(&hosts.wrapper())
            .args(extra)
            .args(["login", "-u", USER, "--password-stdin", &registry.host])
            .write_stdin(format!("{PASSWORD}\n"))
            .output()
            .unwrap()
    };

    let err = fails(login(&[]), "login with a plain HTTP realm elsewhere");
    insta::assert_snapshot!(redact(&root, &err), @r"
    error: the token server `http://auth.example:[PORT]/token` of `127.0.0.1:[PORT]` is plain HTTP on another machine: credentials are not sent to it
    hint: the token server should use HTTPS; if you trust the network to `auth.example:[PORT]`, pass `--insecure-registry auth.example:[PORT]`
    ");
    let leaked = leaks(&hits, &[registry.host.as_str()]);
    assert!(
        leaked.is_empty(),
        "the password left:\n{}",
        leaked.join("\n")
    );
    assert!(!root.docker_config().join("config.json").exists());

    // Listed as insecure, the realm is trusted in plain HTTP (the user said so).
    let insecure = format!("auth.example:{realm_port}");
    ok(
        login(&["--insecure-registry", &insecure]),
        "login with the realm allowed",
    );
    assert_eq!(leaks(&hits, &[registry.host.as_str()]).len(), 1);
}

// --- item 6: bounded bodies --------------------------------------------------------------------

/// Run `manifold ARGS` and return its output and peak resident size (KiB).
fn run_measured(root: &TestRoot, args: &[&str]) -> (Output, u64) {
    let mut child = root
        .manifold_std()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let stdout = pipe(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let stderr = pipe(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let measured = crate::harness::wait_measured(&mut child, COMMAND_TIMEOUT);
    let output = Output {
        status: measured.status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    (output, measured.peak_rss_kib)
}

#[test]
fn endless_bodies_are_cut_at_their_limit_with_bounded_memory() {
    let hits = Hits::default();
    // The anonymous registry's address, once it is known.
    let open_host = Arc::new(Mutex::new(String::new()));
    let handler: Handler = {
        let open_host = open_host.clone();
        Arc::new(move |r: &Request| match r.path() {
            "/v2/" if r.server == *open_host.lock().unwrap() => Reply::new(200, "{}"),
            "/v2/" => Reply::new(401, "").header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="http://{}/token""#, r.server),
            ),
            "/v2/x/tags/list" => Reply::endless(r#"{"name":"x","tags":["a"#),
            "/v2/_catalog" => Reply::endless(r#"{"repositories":["a"#),
            "/token" => Reply::endless(r#"{"token":"a"#),
            _ => Reply::new(404, ""),
        })
    };
    // One anonymous registry (tags, catalog), one whose token endpoint never ends.
    let open = Server::start(Ipv4Addr::LOCALHOST, &hits, handler.clone());
    let guarded = Server::start(Ipv4Addr::new(127, 0, 0, 2), &hits, handler);
    *open_host.lock().unwrap() = open.host.clone();
    let root = TestRoot::new();
    let cases = [
        (&open, format!("tags {}/x", open.host)),
        (&open, format!("search {}/a", open.host)),
        (&guarded, format!("tags {}/x", guarded.host)),
    ];
    for (server, command) in cases {
        server.sent.store(0, Ordering::Relaxed);
        let args: Vec<&str> = command.split(' ').collect();
        let (out, rss_kib) = run_measured(&root, &args);
        let err = fails(out, &command);
        eprintln!(
            "manifold {command}: peak RSS {} MiB, the server sent {} MiB",
            rss_kib >> 10,
            server.sent.load(Ordering::Relaxed) >> 20
        );
        assert!(
            rss_kib < 256 << 10,
            "manifold {command} held {} MiB: {err}",
            rss_kib >> 10
        );
        assert!(server.sent.load(Ordering::Relaxed) < ENDLESS, "{command}");
        let first = redact(&root, err.lines().next().unwrap_or_default());
        let expected = match args[0] {
            "search" => {
                "error: `127.0.0.1:[PORT]` sent more than 16 MiB in answer to the catalog (`/v2/_catalog`)"
            }
            _ if server.host == open.host => {
                "error: `127.0.0.1:[PORT]` sent more than 16 MiB in answer to the tag list of `x` (`/v2/x/tags/list`)"
            }
            _ => {
                "error: the token server `http://127.0.0.2:[PORT]/token` of `127.0.0.2:[PORT]` sent more than 1 MiB"
            }
        };
        assert_eq!(first, expected, "{err}");
    }
}

// --- item 13: pagination that loops ------------------------------------------------------------

#[test]
fn pagination_that_loops_or_repeats_is_an_error() {
    let hits = Hits::default();
    let handler: Handler = Arc::new(|r: &Request| match r.path() {
        "/v2/" => Reply::new(200, "{}"),
        // The second page links to itself.
        "/v2/x/tags/list" => {
            let tag = if r.query("last").is_some() { "b" } else { "a" };
            Reply::new(200, format!(r#"{{"name":"x","tags":["{tag}"]}}"#))
                .header("Link", r#"</v2/x/tags/list?n=1000&last=a>; rel="next""#)
        }
        // Every page is the first one again, behind a new link each time.
        "/v2/_catalog" => {
            let n: u64 = r.query("page").and_then(|p| p.parse().ok()).unwrap_or(0);
            Reply::new(200, r#"{"repositories":["x"]}"#).header(
                "Link",
                &format!(r#"</v2/_catalog?n=1000&last=x&page={}>; rel="next""#, n + 1),
            )
        }
        _ => Reply::new(404, ""),
    });
    let server = Server::start(Ipv4Addr::LOCALHOST, &hits, handler);
    let root = TestRoot::new();
    let run = |args: &[&str]| root.manifold().args(args).output().unwrap();

    let out = run(&["tags", &format!("{}/x", server.host)]);
    let listed = stdout_of(&out).lines().count();
    assert_eq!(listed, 0, "no listing (with duplicates): {listed} lines");
    let err = fails(out, "tags");
    insta::assert_snapshot!(redact(&root, &err), @"error: `127.0.0.1:[PORT]` sent an invalid response to the tag list of `x`: page 2 links back to `http://127.0.0.1:[PORT]/v2/x/tags/list?n=1000&last=a`, which was page 2");

    let out = run(&["search", &format!("{}/x", server.host)]);
    let listed = stdout_of(&out).lines().count();
    assert_eq!(listed, 0, "no listing (with duplicates): {listed} lines");
    let err = fails(out, "search");
    insta::assert_snapshot!(redact(&root, &err), @"error: `127.0.0.1:[PORT]` sent an invalid response to the catalog: page 2 repeats page 1");
    assert!(
        hits.lock().unwrap().len() < 20,
        "stopped at once, not after thousands of pages"
    );
}

// --- item 17: a `.localhost` name is this machine only when it resolves there alone ------------

/// Run `f` on a thread in a new network namespace with its loopback up and 203.0.113.7 added
/// to it: servers bound there and commands started there see only that namespace.
fn in_network_namespace<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare affects the calling thread only (network namespaces are per task).
        let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "unshare: {}", io::Error::last_os_error());
        for args in [
            &["link", "set", "lo", "up"][..],
            &["addr", "add", "203.0.113.7/32", "dev", "lo"][..],
        ] {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "ip {args:?}: {}", stderr_of(&out));
        }
        f()
    })
    .join()
    .unwrap()
}

#[test]
fn a_localhost_name_that_resolves_elsewhere_gets_no_plain_http() {
    skip_unless!("root");
    skip_unless!("unshare");
    skip_unless!("ip");
    in_network_namespace(|| {
        let hits = Hits::default();
        let handler: Handler = Arc::new(|r: &Request| match r.path() {
            "/v2/" => Reply::new(200, "{}"),
            "/v2/x/tags/list" => Reply::new(200, r#"{"name":"x","tags":["a"]}"#),
            _ => Reply::new(404, ""),
        });
        let loopback = Server::start(Ipv4Addr::LOCALHOST, &hits, handler.clone());
        let port = loopback.host.rsplit_once(':').unwrap().1.to_string();
        let _elsewhere = Server::serve(
            TcpListener::bind(format!("203.0.113.7:{port}")).unwrap(),
            &hits,
            None,
            handler,
        );
        let hosts = Hosts::new(
            "127.0.0.1 evil.localhost\n203.0.113.7 evil.localhost\n127.0.0.1 good.localhost\n",
        );
        let root = TestRoot::new();
        let tags = |registry: &str, extra: &[&str]| {
            root.manifold_wrapped(&hosts.wrapper())
                .args(extra)
                .args(["tags", &format!("{registry}:{port}/x")])
                .output()
                .unwrap()
        };
        let plain = |hits: &Hits| {
            hits.lock()
                .unwrap()
                .iter()
                .filter(|h| !h.tls)
                .map(|h| format!("{} {} {}", h.server, h.method, h.target))
                .collect::<Vec<_>>()
        };

        let err = fails(tags("evil.localhost", &[]), "tags from evil.localhost");
        let err = redact(&root, &err);
        assert!(
            err.starts_with(
                "error: `evil.localhost:[PORT]` is not reachable over HTTPS, and plain HTTP is not allowed: its name resolves to 127.0.0.1, 203.0.113.7, not to this machine alone\n"
            ),
            "{err}"
        );
        assert!(
            err.ends_with(
                "hint: a `.localhost` name counts as this machine only when it resolves to loopback addresses alone; if you trust `evil.localhost:[PORT]` in plain HTTP, pass `--insecure-registry evil.localhost:[PORT]`\n"
            ),
            "{err}"
        );
        assert_eq!(plain(&hits), Vec::<String>::new(), "no plain HTTP request");
        assert!(!hits.lock().unwrap().is_empty(), "HTTPS was tried");

        // Resolving to loopback alone, the name is this machine: plain HTTP, as before.
        assert_eq!(
            ok(tags("good.localhost", &[]), "tags from good.localhost"),
            "a\n"
        );
        // And a name the user vouches for is allowed plain HTTP whatever it resolves to.
        let vouched = format!("evil.localhost:{port}");
        assert_eq!(
            ok(
                tags("evil.localhost", &["--insecure-registry", &vouched]),
                "tags from an insecure-listed evil.localhost"
            ),
            "a\n"
        );
        assert!(plain(&hits).len() >= 2, "{:?}", plain(&hits));
    });
}
