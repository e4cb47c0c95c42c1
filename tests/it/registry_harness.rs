//! The one test registry: the CNCF distribution registry (`docker-registry`) on a free loopback
//! port with storage of its own, in three auth modes (anonymous, htpasswd Basic, token with a
//! token issuer of ours), optionally over TLS with a test CA; a fault-injecting proxy in front of
//! it; test images built with `manifold import`. Everything listens on 127.0.0.1 only.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::harness::{self, TestRoot};

pub const USER: &str = "alice";
pub const PASSWORD: &str = "wonder-land-42";
const SERVICE: &str = "manifold-test-registry";
const ISSUER: &str = "manifold-test-issuer";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Anonymous,
    Basic,
    Token,
}

pub const ALL_AUTH: [Auth; 3] = [Auth::Anonymous, Auth::Basic, Auth::Token];

/// A docker-registry with its own storage and config, stopped on drop.
pub struct TestRegistry {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    pub auth: Auth,
    pub issuer: Option<TokenIssuer>,
    /// The CA that signed the registry's certificate, when it serves TLS.
    pub ca_pem: Option<String>,
}

impl TestRegistry {
    pub fn start(auth: Auth) -> TestRegistry {
        Self::start_with(auth, false)
    }

    pub fn start_tls() -> TestRegistry {
        Self::start_with(Auth::Anonymous, true)
    }

    /// Over TLS, requiring a client certificate signed by `client_ca_pem` (`http.tls.clientcas`).
    pub fn start_tls_client_auth(client_ca_pem: &str) -> TestRegistry {
        Self::start_full(Auth::Anonymous, true, Some(client_ca_pem))
    }

    fn start_with(auth: Auth, tls: bool) -> TestRegistry {
        Self::start_full(auth, tls, None)
    }

    fn start_full(auth: Auth, tls: bool, client_ca_pem: Option<&str>) -> TestRegistry {
        let program = harness::find_program("docker-registry").expect("docker-registry on PATH");
        let dir = tempfile::Builder::new()
            .prefix("manifold-registry-")
            .tempdir()
            .unwrap();
        let mut extra = String::new();
        let mut issuer = None;
        match auth {
            Auth::Anonymous => {}
            Auth::Basic => {
                let hash = bcrypt::hash(PASSWORD, 4).unwrap();
                let path = dir.path().join("htpasswd");
                fs::write(&path, format!("{USER}:{hash}\n")).unwrap();
                extra.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: manifold-test\n    path: {}\n",
                    path.display()
                ));
            }
            Auth::Token => {
                let i = TokenIssuer::start();
                let bundle = dir.path().join("issuer.pem");
                fs::write(&bundle, &i.cert_pem).unwrap();
                extra.push_str(&format!(
                    "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                    i.port,
                    bundle.display()
                ));
                issuer = Some(i);
            }
        }
        let mut ca_pem = None;
        let mut tls_config = String::new();
        if tls {
            let (ca, cert, key) = tls_certificates();
            fs::write(dir.path().join("tls.crt"), cert).unwrap();
            fs::write(dir.path().join("tls.key"), key).unwrap();
            tls_config = format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.path().join("tls.crt").display(),
                dir.path().join("tls.key").display()
            );
            if let Some(client_ca) = client_ca_pem {
                fs::write(dir.path().join("client-ca.crt"), client_ca).unwrap();
                tls_config.push_str(&format!(
                    "    clientcas:\n      - {}\n",
                    dir.path().join("client-ca.crt").display()
                ));
            }
            ca_pem = Some(ca);
        }
        let config = dir.path().join("config.yml");
        let log_path = dir.path().join("registry.log");
        for _ in 0..5 {
            let port = free_port();
            fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
                     http:\n  addr: 127.0.0.1:{port}\n  secret: manifold-tests\n{tls_config}\
                     health:\n  storagedriver:\n    enabled: false\n{extra}",
                    data = dir.path().join("data").display(),
                ),
            )
            .unwrap();
            let log = fs::File::create(&log_path).unwrap();
            let mut child = StdCommand::new(&program)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            if wait_ready(&mut child, port, Duration::from_secs(20)) {
                return TestRegistry {
                    child,
                    dir,
                    port,
                    auth,
                    issuer,
                    ca_pem,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            assert!(
                log.contains("address already in use"),
                "docker-registry did not start; its log:\n{log}"
            );
        }
        panic!("docker-registry found no free port in 5 tries");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `manifold login` for the auth modes that need it.
    pub fn login(&self, root: &TestRoot) {
        if self.auth == Auth::Anonymous {
            return;
        }
        root.manifold()
            .args(["login", "-u", USER, "--password-stdin", &self.host()])
            .write_stdin(format!("{PASSWORD}\n"))
            .assert()
            .success();
    }

    /// skopeo's `--dest-creds`/`--src-creds` value, if any.
    pub fn creds(&self) -> Option<String> {
        (self.auth != Auth::Anonymous).then(|| format!("{USER}:{PASSWORD}"))
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Where the registry keeps its blobs and repositories.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A plain HTTP/1.0 GET against the registry (no TLS, no auth): (status, body). Enough for
    /// checks such as `/v2/_catalog` or `/v2/REPO/tags/list` without an HTTP client.
    pub fn get(&self, path: &str) -> io::Result<(u16, String)> {
        http_get(self.port, path)
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// Polls `GET /v2/` until the registry answers anything (401 with auth, 400 to plain HTTP on a
/// TLS port: it is serving), the registry exits or `limit` passes.
fn wait_ready(child: &mut Child, port: u16, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if http_get(port, "/v2/").is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A plain HTTP/1.0 GET against 127.0.0.1:`port`: (status, body).
pub fn http_get(port: u16, path: &str) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP status line"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// (CA certificate PEM, server certificate PEM for 127.0.0.1, server key PEM).
pub fn tls_certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "manifold test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

// --- a token issuer --------------------------------------------------------------------------

/// What one token request asked for.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub method: String,
    /// `basic:USER`, `refresh:USER` or `anonymous`.
    pub who: String,
    pub scopes: Vec<String>,
    pub offline: bool,
}

/// Issues ES256 JWTs the registry trusts (its certificate is the registry's rootcertbundle and
/// rides in each token's `x5c`). Authenticated users get every action they ask for; anonymous
/// callers get `pull` on repositories under `public/`. Refresh tokens are handed out on
/// `offline_token=true` and accepted by the OAuth2 POST form.
pub struct TokenIssuer {
    pub port: u16,
    pub cert_pem: String,
    pub requests: Arc<Mutex<Vec<TokenRequest>>>,
    stop: Arc<AtomicBool>,
}

struct IssuerState {
    pkcs8: Vec<u8>,
    cert_der: Vec<u8>,
    refresh: Mutex<HashMap<String, String>>,
    counter: AtomicUsize,
}

impl TokenIssuer {
    pub fn start() -> TokenIssuer {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, ISSUER);
        let cert = params.self_signed(&key).unwrap();
        let state = Arc::new(IssuerState {
            pkcs8: key.serialize_der(),
            cert_der: cert.der().to_vec(),
            refresh: Mutex::new(HashMap::new()),
            counter: AtomicUsize::new(0),
        });
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let requests = requests.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = stream.set_nonblocking(false);
                            let state = state.clone();
                            let requests = requests.clone();
                            std::thread::spawn(move || {
                                let _ = serve_token(stream, &state, &requests);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
        }
        TokenIssuer {
            port,
            cert_pem: cert.pem(),
            requests,
            stop,
        }
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A parsed HTTP/1.1 request head.
pub struct Head {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub raw: Vec<u8>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn content_length(&self) -> usize {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

pub fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut raw = Vec::new();
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        if n == 0 {
            return Ok(None);
        }
        raw.extend_from_slice(line.as_bytes());
        let trimmed = line.trim_end_matches(['\r', '\n']).to_string();
        if trimmed.is_empty() {
            break;
        }
        lines.push(trimmed);
    }
    let first = lines.first().cloned().unwrap_or_default();
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let headers = lines[1..]
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Some(Head {
        method,
        target,
        headers,
        raw,
    }))
}

/// `a=b&c=d` decoded (`+` and `%XX`).
pub fn query_pairs(s: &str) -> Vec<(String, String)> {
    let decode = |v: &str| {
        let v = v.replace('+', " ");
        let bytes = v.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && i + 2 < bytes.len()
                && let Ok(b) = u8::from_str_radix(&v[i + 1..i + 3], 16)
            {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn serve_token(
    stream: TcpStream,
    state: &IssuerState,
    requests: &Mutex<Vec<TokenRequest>>,
) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    let Some(head) = read_head(&mut reader)? else {
        return Ok(());
    };
    let mut body = vec![0u8; head.content_length()];
    reader.read_exact(&mut body)?;
    let query = head.target.split_once('?').map_or("", |(_, q)| q);
    let mut params = query_pairs(query);
    if head.method == "POST" {
        params.extend(query_pairs(&String::from_utf8_lossy(&body)));
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    scopes.dedup();
    let offline = get("offline_token").as_deref() == Some("true");
    let who: Option<String> = if head.method == "POST" {
        match get("grant_type").as_deref() {
            Some("refresh_token") => get("refresh_token")
                .and_then(|t| state.refresh.lock().unwrap().get(&t).cloned())
                .map(|u| format!("refresh:{u}")),
            _ => None,
        }
    } else {
        match head.header("authorization") {
            Some(a) => a
                .strip_prefix("Basic ")
                .and_then(|b| STANDARD.decode(b.trim()).ok())
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|up| up == &format!("{USER}:{PASSWORD}"))
                .map(|_| format!("basic:{USER}")),
            None => Some("anonymous".to_string()),
        }
    };
    requests.lock().unwrap().push(TokenRequest {
        method: head.method.clone(),
        who: who.clone().unwrap_or_else(|| "refused".into()),
        scopes: scopes.clone(),
        offline,
    });
    let Some(who) = who else {
        return respond(
            &mut stream,
            "401 Unauthorized",
            r#"{"details":"invalid credentials"}"#,
        );
    };
    let user = who.split_once(':').map(|(_, u)| u.to_string());
    let mut access = Vec::new();
    for scope in &scopes {
        let mut parts = scope.splitn(3, ':');
        let (Some(kind), Some(name), Some(actions)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let granted: Vec<&str> = if user.is_some() {
            actions.split(',').collect()
        } else if kind == "repository" && name.starts_with("public/") {
            actions.split(',').filter(|a| *a == "pull").collect()
        } else {
            Vec::new()
        };
        access.push(serde_json::json!({"type": kind, "name": name, "actions": granted}));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let n = state.counter.fetch_add(1, Ordering::Relaxed);
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": user.clone().unwrap_or_default(), "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("t{n}"), "access": access,
    });
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [STANDARD.encode(&state.cert_der)]});
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let rng = ring::rand::SystemRandom::new();
    let key = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &state.pkcs8,
        &rng,
    )
    .unwrap();
    let sig = key.sign(&rng, signing_input.as_bytes()).unwrap();
    let jwt = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
    let mut response = serde_json::json!({"token": jwt, "access_token": jwt, "expires_in": 300});
    if offline && let Some(u) = &user {
        let refresh = format!("refresh-{n}-{now}");
        state
            .refresh
            .lock()
            .unwrap()
            .insert(refresh.clone(), u.clone());
        response["refresh_token"] = refresh.into();
    }
    respond(&mut stream, "200 OK", &response.to_string())
}

// --- a fault-injecting proxy -----------------------------------------------------------------

/// What a rule does to a matching exchange.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this status (with these headers) instead of forwarding.
    Status(u16, Vec<(String, String)>),
    /// Answer this canned response (status, headers, body) instead of forwarding.
    Respond(u16, Vec<(String, String)>, Vec<u8>),
    /// Forward, but cut the connection (RST) after this many bytes of the response body.
    ResetAfter(usize),
    /// Forward, but close the connection (FIN) after this many bytes of the response body.
    TruncateAfter(usize),
    /// Forward, with one byte of the response body changed.
    Corrupt,
    /// Forward the response body at about this many bytes per second.
    Throttle(usize),
    /// Forward, but cut the connection while the request body is being sent upstream.
    ResetRequestAfter(usize),
    /// Answer this status with this registry error code instead of forwarding.
    Refuse(u16, &'static str),
    /// Forward, but answer the upstream's response with this status instead of its own.
    RewriteStatus(u16),
    /// Forward without the request target's query (a mount becomes a plain upload session).
    DropQuery,
    /// Forward, adding these headers to the response.
    AddHeaders(Vec<(String, String)>),
}

/// A condition on a request, besides its method and target.
#[derive(Debug, Clone)]
pub enum When {
    /// The request carries this header.
    Header(&'static str),
    /// The request carries a body (Content-Length > 0).
    Body,
    /// The request body contains this text (the body is read before the rule is judged).
    BodyContains(String),
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub method: Option<String>,
    /// A substring of the request target.
    pub path: String,
    /// How many matching exchanges it applies to.
    pub times: usize,
    pub fault: Fault,
    /// Further conditions, all of which must hold.
    pub when: Vec<When>,
}

impl Rule {
    pub fn new(method: &str, path: &str, times: usize, fault: Fault) -> Rule {
        Rule {
            method: (!method.is_empty()).then(|| method.to_string()),
            path: path.to_string(),
            times,
            fault,
            when: Vec::new(),
        }
    }

    /// The same rule, applying only when `condition` holds too.
    pub fn when(mut self, condition: When) -> Rule {
        self.when.push(condition);
        self
    }

    fn matches(&self, head: &Head, body: Option<&[u8]>) -> bool {
        self.times > 0
            && self.method.as_deref().is_none_or(|m| m == head.method)
            && head.target.contains(&self.path)
            && self.when.iter().all(|w| match w {
                When::Header(h) => head.header(h).is_some(),
                When::Body => head.content_length() > 0,
                When::BodyContains(text) => {
                    body.is_some_and(|b| b.windows(text.len().max(1)).any(|w| w == text.as_bytes()))
                }
            })
    }
}

/// One exchange the proxy saw: method, target, Range header, what it did.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub range: Option<String>,
    /// The request's `Content-Range` and `Content-Length`.
    pub content_range: Option<String>,
    pub length: usize,
    pub fault: Option<String>,
}

/// An HTTP/1.1 proxy on 127.0.0.1 in front of a registry: one exchange per connection
/// (`Connection: close` both ways), faults applied by the first matching rule with uses left.
/// Request targets with `n=1000` become `n=PAGE` when `page` is set (to test pagination).
pub struct FaultProxy {
    pub port: u16,
    rules: Arc<Mutex<Vec<Rule>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    pub page: Arc<Mutex<Option<usize>>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    pub fn start(upstream: u16) -> FaultProxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let page: Arc<Mutex<Option<usize>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (rules, seen, page, stop) =
                (rules.clone(), seen.clone(), page.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = stream.set_nonblocking(false);
                            let (rules, seen, page) = (rules.clone(), seen.clone(), page.clone());
                            std::thread::spawn(move || {
                                let _ = proxy_one(stream, upstream, &rules, &seen, &page);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        FaultProxy {
            port,
            rules,
            seen,
            page,
            stop,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn add(&self, rule: Rule) {
        self.rules.lock().unwrap().push(rule);
    }

    pub fn clear(&self) {
        self.rules.lock().unwrap().clear();
        self.seen.lock().unwrap().clear();
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Rules with uses left.
    pub fn pending(&self) -> usize {
        self.rules
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.times > 0)
            .count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn proxy_one(
    client: TcpStream,
    upstream: u16,
    rules: &Mutex<Vec<Rule>>,
    seen: &Mutex<Vec<Seen>>,
    page: &Mutex<Option<usize>>,
) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    // A TLS ClientHello (the client tries HTTPS first on loopback): closed at once, as the
    // registry would refuse it, rather than read as an HTTP head that never ends.
    if reader.fill_buf()?.first() == Some(&0x16) {
        return Ok(());
    }
    let Some(head) = read_head(&mut reader)? else {
        return Ok(());
    };
    // A rule that looks into the body needs it read first (only small bodies are judged so).
    let wants_body = rules.lock().unwrap().iter().any(|r| {
        r.times > 0
            && r.method.as_deref().is_none_or(|m| m == head.method)
            && head.target.contains(&r.path)
            && r.when.iter().any(|w| matches!(w, When::BodyContains(_)))
    });
    let buffered = if wants_body {
        let mut b = vec![0u8; head.content_length()];
        reader.read_exact(&mut b)?;
        Some(b)
    } else {
        None
    };
    let fault = {
        let mut rules = rules.lock().unwrap();
        rules
            .iter_mut()
            .find(|r| r.matches(&head, buffered.as_deref()))
            .map(|r| {
                r.times -= 1;
                r.fault.clone()
            })
    };
    seen.lock().unwrap().push(Seen {
        method: head.method.clone(),
        target: head.target.clone(),
        range: head.header("range").map(str::to_string),
        content_range: head.header("content-range").map(str::to_string),
        length: head.content_length(),
        fault: fault.as_ref().map(|f| format!("{f:?}")),
    });
    let mut body = vec![0u8; head.content_length()];
    let read_body = |reader: &mut BufReader<TcpStream>, body: &mut Vec<u8>| match &buffered {
        Some(_) => Ok(()),
        None => reader.read_exact(body),
    };
    match &fault {
        Some(Fault::Refuse(code, error)) => {
            read_body(&mut reader, &mut body)?;
            let msg = format!(
                r#"{{"errors":[{{"code":"{error}","message":"refused by the quirk proxy"}}]}}"#
            );
            write!(
                client,
                "HTTP/1.1 {code} Refused\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
                msg.len()
            )?;
            return client.flush();
        }
        Some(Fault::Status(code, headers)) => {
            read_body(&mut reader, &mut body)?;
            let mut extra = String::new();
            for (k, v) in headers {
                extra.push_str(&format!("{k}: {v}\r\n"));
            }
            let code_name = match code {
                429 => "TOOMANYREQUESTS",
                500..=599 => "UNAVAILABLE",
                _ => "UNSUPPORTED",
            };
            let msg =
                format!(r#"{{"errors":[{{"code":"{code_name}","message":"injected fault"}}]}}"#);
            write!(
                client,
                "HTTP/1.1 {code} Injected\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
                msg.len()
            )?;
            return client.flush();
        }
        Some(Fault::Respond(code, headers, payload)) => {
            read_body(&mut reader, &mut body)?;
            let mut extra = String::new();
            for (k, v) in headers {
                extra.push_str(&format!("{k}: {v}\r\n"));
            }
            write!(
                client,
                "HTTP/1.1 {code} Canned\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
                payload.len()
            )?;
            client.write_all(payload)?;
            return client.flush();
        }
        _ => {}
    }
    let mut target = head.target.clone();
    if let Some(n) = *page.lock().unwrap() {
        target = target.replace("n=1000", &format!("n={n}"));
    }
    if let Some(Fault::DropQuery) = &fault {
        target = target.split('?').next().unwrap_or_default().to_string();
    }
    let mut up = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream))?;
    let mut out = format!("{} {target} HTTP/1.1\r\n", head.method);
    for (k, v) in &head.headers {
        if k.eq_ignore_ascii_case("connection") {
            continue;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    up.write_all(out.as_bytes())?;
    // The request body, as announced.
    let mut left = head.content_length();
    let mut buf = vec![0u8; 64 * 1024];
    if let Some(b) = &buffered {
        up.write_all(b)?;
        left = 0;
    }
    let mut sent = 0usize;
    while left > 0 {
        let want = left.min(buf.len());
        let n = reader.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        if let Some(Fault::ResetRequestAfter(limit)) = &fault
            && sent + n > *limit
        {
            reset(&client);
            reset(&up);
            return Ok(());
        }
        up.write_all(&buf[..n])?;
        sent += n;
        left -= n;
    }
    // The response: head as is, body with the fault applied.
    let mut up_reader = BufReader::new(up);
    let Some(resp) = read_head(&mut up_reader)? else {
        return Ok(());
    };
    match &fault {
        Some(Fault::RewriteStatus(code)) => {
            let raw = String::from_utf8_lossy(&resp.raw).into_owned();
            let (_, rest) = raw.split_once("\r\n").unwrap_or((&raw, ""));
            write!(client, "HTTP/1.1 {code} Rewritten\r\n{rest}")?;
        }
        Some(Fault::AddHeaders(headers)) => {
            let raw = String::from_utf8_lossy(&resp.raw).into_owned();
            let (first, rest) = raw.split_once("\r\n").unwrap_or((&raw, ""));
            let mut extra = String::new();
            for (k, v) in headers {
                extra.push_str(&format!("{k}: {v}\r\n"));
            }
            write!(client, "{first}\r\n{extra}{rest}")?;
        }
        _ => client.write_all(&resp.raw)?,
    }
    let mut written = 0usize;
    let mut corrupted = false;
    loop {
        let n = up_reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &mut buf[..n];
        match &fault {
            Some(Fault::ResetAfter(limit)) | Some(Fault::TruncateAfter(limit))
                if written + n > *limit =>
            {
                let keep = limit - written;
                client.write_all(&chunk[..keep])?;
                client.flush()?;
                if matches!(fault, Some(Fault::ResetAfter(_))) {
                    std::thread::sleep(Duration::from_millis(20));
                    reset(&client);
                } else {
                    let _ = client.shutdown(Shutdown::Both);
                }
                return Ok(());
            }
            Some(Fault::Corrupt) if !corrupted => {
                chunk[n / 2] ^= 0xff;
                corrupted = true;
                client.write_all(chunk)?;
            }
            Some(Fault::Throttle(rate)) => {
                for piece in chunk.chunks(4096) {
                    client.write_all(piece)?;
                    std::thread::sleep(Duration::from_secs_f64(4096.0 / *rate as f64));
                }
            }
            _ => client.write_all(chunk)?,
        }
        written += n;
    }
    client.flush()?;
    let _ = client.shutdown(Shutdown::Write);
    Ok(())
}

/// Close with a TCP RST (SO_LINGER 0).
fn reset(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let _ = stream.shutdown(Shutdown::Both);
}

// --- test images -------------------------------------------------------------------------------

/// Import the busybox fixture of `debarch` into `root` as `reference`; returns its digest.
pub fn import(root: &TestRoot, debarch: &str, reference: &str) -> String {
    let out = root
        .manifold()
        .args(["import", "--platform", harness::platform_of(debarch)])
        .arg(harness::busybox_rootfs(debarch, "tar.gz"))
        .arg(reference)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A multi-platform image `reference` in `root` from the busybox fixtures of `debarches`
/// (an OCI index over one imported image each); returns the index digest.
pub fn multi_arch(root: &TestRoot, debarches: &[&str], reference: &str) -> String {
    use manifold::oci::{self, Descriptor};
    use manifold::reference::Reference;
    use manifold::store::Store;
    let mut children = Vec::new();
    for (i, a) in debarches.iter().enumerate() {
        let child = format!("example.test/tmp/{a}:{i}");
        import(root, a, &child);
        let store = Store::open(root.path()).unwrap();
        let mut d: Descriptor = store.resolve(&Reference::parse(&child).unwrap()).unwrap();
        d.remove_annotation(oci::ANNOTATION_REF_NAME);
        d.platform = Some(harness::platform_of(a).parse().unwrap());
        children.push(d);
        store.untag(&Reference::parse(&child).unwrap()).unwrap();
    }
    let store = Store::open(root.path()).unwrap().begin().unwrap();
    let index = oci::Index::new_oci(children);
    let bytes = serde_json::to_vec(&index).unwrap();
    store.put_bytes(&bytes).unwrap();
    let desc = Descriptor::of(oci::media_type::OCI_INDEX, &bytes);
    store
        .tag(&Reference::parse(reference).unwrap(), &desc)
        .unwrap();
    desc.digest.to_string()
}

/// A 20 MiB incompressible single-layer image (bigger than one upload chunk), for chunked and
/// resumed uploads.
pub fn big_image(root: &TestRoot, reference: &str) -> String {
    let dir = root.scratch("big");
    let tar_path = dir.join("big.tar");
    let mut builder = tar::Builder::new(fs::File::create(&tar_path).unwrap());
    let mut data = vec![0u8; 20 << 20];
    // xorshift: incompressible and reproducible
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(&mut header, "blob.bin", &data[..])
        .unwrap();
    builder.finish().unwrap();
    drop(builder);
    let out = root
        .manifold()
        .args(["import", "--platform", "linux/amd64"])
        .arg(&tar_path)
        .arg(reference)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `skopeo copy` with TLS verification off and the registry's credentials.
pub fn skopeo_copy(registry: &TestRegistry, args: &[&str], src: &str, dest: &str) {
    let mut cmd = StdCommand::new("skopeo");
    cmd.args(["--insecure-policy", "copy", "-q"]).args(args);
    if src.starts_with("docker://") {
        cmd.arg("--src-tls-verify=false");
        if let Some(c) = registry.creds() {
            cmd.args(["--src-creds", &c]);
        }
    }
    if dest.starts_with("docker://") {
        cmd.arg("--dest-tls-verify=false");
        if let Some(c) = registry.creds() {
            cmd.args(["--dest-creds", &c]);
        }
    }
    let out = cmd.arg(src).arg(dest).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo copy {src} {dest} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The digest skopeo sees for an image in the registry (`skopeo inspect --raw`, hashed).
pub fn skopeo_raw_digest(registry: &TestRegistry, image: &str) -> String {
    use sha2::Digest as _;
    let mut cmd = StdCommand::new("skopeo");
    cmd.args(["inspect", "--raw", "--tls-verify=false"]);
    if let Some(c) = registry.creds() {
        cmd.args(["--creds", &c]);
    }
    let out = cmd.arg(format!("docker://{image}")).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(&out.stdout)))
}

/// The store's OCI layout (what skopeo's `oci:` transport reads).
pub fn layout(root: &TestRoot) -> PathBuf {
    root.path().join("images")
}

/// Every blob in the store hashes to its name, and no temp file holds a half blob that a
/// reader could see (temp files are outside `blobs/`).
pub fn assert_store_valid(root: &Path) {
    use sha2::Digest as _;
    let blobs = root.join("images/blobs/sha256");
    for entry in fs::read_dir(&blobs).unwrap() {
        let entry = entry.unwrap();
        let mut f = fs::File::open(entry.path()).unwrap();
        let mut h = sha2::Sha256::new();
        io::copy(&mut f, &mut h).unwrap();
        assert_eq!(
            hex::encode(h.finalize()),
            entry.file_name().to_string_lossy(),
            "blob {} does not match its name",
            entry.path().display()
        );
    }
}

pub use crate::harness::{stderr_of, stdout_of};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::skip_unless;

    #[test]
    fn registry_starts_and_answers() {
        skip_unless!("docker-registry");
        let registry = TestRegistry::start(Auth::Anonymous);
        let (status, body) = registry.get("/v2/_catalog").unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"repositories\""), "{body}");
        assert!(registry.host().starts_with("127.0.0.1:"));
        let basic = TestRegistry::start(Auth::Basic);
        assert_eq!(basic.get("/v2/").unwrap().0, 401);
    }
}
