//! One registry host: the HTTP client (rustls with the system roots plus docker's per-registry
//! CA files; plain HTTP only where allowed), the `/v2/` ping that finds the scheme and the
//! authentication challenge, authorisation of each request (credentials only to the registry's
//! own origin; a token realm in plain HTTP only on this machine or when listed insecure), and
//! retries with bounded backoff (the registry's `Retry-After` honoured).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::blocking::{Client, Response};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::auth::{self, AuthError, Challenge, TokenCache};
use super::credentials::{self, Credentials};
use super::error::{
    ConnectCause, RateLimit, RegistryError, StatusError, parse_errors, parse_retry_after,
};
use super::http::{self, Credential, InsecureRegistries, Locality, SendError};
use super::quirks::Quirks;
use super::stream::{Answer, Failure, STALL_LIMIT, Streamer, Upload};

/// Where verbose request lines go (`-v`): method, URL path and status, never headers or bodies.
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// How requests are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Tries per request, the first included.
    pub attempts: u32,
    /// The first delay; each retry doubles it.
    pub base: Duration,
    /// No delay is longer, whatever the registry asks.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base: Duration::from_millis(250),
            max: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (1-based) after `err`.
    pub fn delay(&self, attempt: u32, err: &RegistryError) -> Duration {
        let backoff = self
            .base
            .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16));
        err.retry_after().unwrap_or(backoff).min(self.max)
    }
}

/// What a transport is allowed and told.
#[derive(Clone, Default)]
pub struct TransportOptions {
    /// Hosts allowed plain HTTP and unverified TLS (the registry itself, token realms).
    pub insecure_registries: InsecureRegistries,
    /// Directories holding `HOST[:PORT]/*.crt` CA files (docker's and podman's certs.d).
    pub cert_dirs: Vec<PathBuf>,
    pub retry: RetryPolicy,
    pub log: Option<Log>,
    /// Where the fallbacks taken for a registry's quirks are said (once each).
    pub notice: Option<Log>,
    /// Use these instead of docker's config.json (login verifies them this way).
    pub credentials: Option<Credentials>,
}

/// What to send. Bodies are `Bytes` so a retry resends them without copying; a body too large
/// to hold goes through `Transport::start_stream`.
pub struct Request<'a> {
    pub method: Method,
    /// A path under the registry (`/v2/…`) or an absolute URL (an upload location).
    pub target: String,
    pub scopes: &'a [String],
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<bytes::Bytes>,
    /// The repository, for error messages.
    pub repository: Option<&'a str>,
}

impl<'a> Request<'a> {
    pub fn new(method: Method, target: impl Into<String>, scopes: &'a [String]) -> Request<'a> {
        Request {
            method,
            target: target.into(),
            scopes,
            headers: Vec::new(),
            body: None,
            repository: None,
        }
    }

    pub fn header(mut self, name: HeaderName, value: &str) -> Request<'a> {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    pub fn body(mut self, body: bytes::Bytes) -> Request<'a> {
        self.body = Some(body);
        self
    }

    pub fn repository(mut self, repository: &'a str) -> Request<'a> {
        self.repository = Some(repository);
        self
    }
}

pub struct Transport {
    registry: String,
    host: String,
    /// The registry's host name judged once: its addresses are pinned in `http`.
    locality: Locality,
    /// Named by `--insecure-registry`: plain HTTP and unverified TLS.
    insecure: bool,
    /// Plain HTTP may be used: insecure, or this machine.
    allow_http: bool,
    http: Client,
    /// The async client for streamed request bodies, built on the first.
    streamer: OnceLock<Streamer>,
    /// Clients pinned to token realms on `localhost` names, by host.
    realm_clients: Mutex<HashMap<String, Client>>,
    options: TransportOptions,
    base: OnceLock<reqwest::Url>,
    ping_lock: Mutex<()>,
    challenge: Mutex<Challenge>,
    credentials: Mutex<Option<Credentials>>,
    tokens: TokenCache,
    token_lock: Mutex<()>,
    quirks: Quirks,
}

/// The host that serves a registry's API (Docker Hub's differs from its name).
pub fn api_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

/// The CA files for `registry` under each of `dirs` (`DIR/HOST[:PORT]/*.crt`).
pub fn ca_files(dirs: &[PathBuf], registry: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir.join(registry)) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        found.sort();
        out.extend(found);
    }
    out
}

/// The client certificate for `registry` under `dirs`, docker's way: the first `NAME.cert` (in
/// name order, first directory first) with its `NAME.key` next to it. A `.cert` without its key
/// is an error, as in docker.
pub fn client_certificate(
    dirs: &[PathBuf],
    registry: &str,
) -> Result<Option<reqwest::Identity>, RegistryError> {
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir.join(registry)) else {
            continue;
        };
        let mut certs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "cert"))
            .collect();
        certs.sort();
        let Some(cert) = certs.into_iter().next() else {
            continue;
        };
        let key = cert.with_extension("key");
        let err = |path: &Path, source: Box<dyn std::error::Error + Send + Sync>| {
            RegistryError::ClientCertificate {
                path: path.to_path_buf(),
                source,
            }
        };
        let mut pem = std::fs::read(&cert).map_err(|e| err(&cert, Box::new(e)))?;
        let key_pem = std::fs::read(&key).map_err(|e| err(&key, Box::new(e)))?;
        pem.push(b'\n');
        pem.extend_from_slice(&key_pem);
        return reqwest::Identity::from_pem(&pem)
            .map(Some)
            .map_err(|e| err(&cert, Box::new(e)));
    }
    Ok(None)
}

fn load_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, RegistryError> {
    let err = |source: Box<dyn std::error::Error + Send + Sync>| RegistryError::Certificate {
        path: path.to_path_buf(),
        source,
    };
    let pem = std::fs::read(path).map_err(|e| err(Box::new(e)))?;
    reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| err(Box::new(e)))
}

/// An HTTP client's settings for `registry` (its CA files; unverified TLS when `skip_verify`)
/// whose connections to `host` go where `locality` says. Redirects are not followed by the
/// client: `http::send` follows them, deciding where credentials go.
fn client_builder(
    registry: &str,
    options: &TransportOptions,
    skip_verify: bool,
    host: &str,
    locality: &Locality,
) -> Result<reqwest::ClientBuilder, RegistryError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("manifold/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(32)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none());
    builder = http::pin(builder, host, locality);
    if skip_verify {
        builder = builder.danger_accept_invalid_certs(true);
    }
    for file in ca_files(&options.cert_dirs, registry) {
        for cert in load_ca(&file)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let Some(identity) = client_certificate(&options.cert_dirs, registry)? {
        builder = builder.identity(identity);
    }
    Ok(builder)
}

/// The blocking client `client_builder` describes.
fn build_client(
    registry: &str,
    options: &TransportOptions,
    skip_verify: bool,
    host: &str,
    locality: &Locality,
) -> Result<Client, RegistryError> {
    let builder = client_builder(registry, options, skip_verify, host, locality)?;
    reqwest::blocking::ClientBuilder::from(builder)
        // Per request and per body read: a stalled connection fails instead of hanging.
        .timeout(Duration::from_secs(300))
        .build()
        .map_err(RegistryError::Client)
}

impl Transport {
    pub fn new(registry: &str, options: TransportOptions) -> Result<Transport, RegistryError> {
        let host = api_host(registry).to_string();
        let insecure = options.insecure_registries.contains(registry);
        let locality = http::locality(http::split_host_port(&host).0);
        let allow_http = insecure || locality.is_loopback();
        let http = build_client(
            registry,
            &options,
            insecure,
            http::split_host_port(&host).0,
            &locality,
        )?;
        Ok(Transport {
            quirks: Quirks::new(registry, options.notice.clone()),
            registry: registry.to_string(),
            host,
            locality,
            insecure,
            allow_http,
            credentials: Mutex::new(options.credentials.clone()),
            http,
            streamer: OnceLock::new(),
            realm_clients: Mutex::new(HashMap::new()),
            options,
            base: OnceLock::new(),
            ping_lock: Mutex::new(()),
            challenge: Mutex::new(Challenge::None),
            tokens: TokenCache::default(),
            token_lock: Mutex::new(()),
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.options.retry
    }

    /// What this registry was found to do differently during this run.
    pub fn quirks(&self) -> &Quirks {
        &self.quirks
    }

    pub fn log(&self, line: &str) {
        if let Some(log) = &self.options.log {
            log(line);
        }
    }

    /// The credentials requests are made with (docker's config.json, read once).
    pub fn credentials(&self) -> Result<Credentials, RegistryError> {
        let mut c = self.credentials.lock().unwrap();
        if let Some(c) = c.as_ref() {
            return Ok(c.clone());
        }
        let found = credentials::lookup(&self.registry)?;
        *c = Some(found.clone());
        Ok(found)
    }

    /// The challenge `/v2/` answered with.
    pub fn challenge(&self) -> Result<Challenge, RegistryError> {
        self.base()?;
        Ok(self.challenge.lock().unwrap().clone())
    }

    /// `https://host/` (or `http://` where allowed and HTTPS is not served), found by pinging
    /// `/v2/` once.
    pub fn base(&self) -> Result<&reqwest::Url, RegistryError> {
        if let Some(b) = self.base.get() {
            return Ok(b);
        }
        let _guard = self.ping_lock.lock().unwrap();
        if let Some(b) = self.base.get() {
            return Ok(b);
        }
        let https = reqwest::Url::parse(&format!("https://{}/", self.host)).map_err(|e| {
            RegistryError::Protocol {
                registry: self.registry.clone(),
                what: "its address".into(),
                why: e.to_string(),
            }
        })?;
        let (base, challenge) = if self.allow_http {
            // One HTTPS try, then plain HTTP (retried): a loopback registry usually serves HTTP.
            match self.ping(&https, 1) {
                Ok(c) => (https, c),
                Err(https_err) => {
                    let mut http = https.clone();
                    let _ = http.set_scheme("http");
                    match self.ping(&http, self.options.retry.attempts) {
                        Ok(c) => (http, c),
                        // An HTTPS server refused the HTTP request: its TLS error says more.
                        Err(RegistryError::Status(s)) if s.status == 400 => return Err(https_err),
                        Err(e) => return Err(e),
                    }
                }
            }
        } else {
            let c = self
                .ping(&https, self.options.retry.attempts)
                .map_err(|e| match (&self.locality, e) {
                    // A `localhost` name that is not this machine alone: say why plain HTTP
                    // was not tried.
                    (Locality::NotLoopback { addresses }, e @ RegistryError::Connect { .. }) => {
                        RegistryError::NotLoopback {
                            registry: self.registry.clone(),
                            addresses: if addresses.is_empty() {
                                "no address".into()
                            } else {
                                addresses
                                    .iter()
                                    .map(ToString::to_string)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            },
                            cause: Box::new(e),
                        }
                    }
                    (_, e) => e,
                })?;
            (https, c)
        };
        *self.challenge.lock().unwrap() = challenge;
        Ok(self.base.get_or_init(|| base))
    }

    fn ping(&self, base: &reqwest::Url, attempts: u32) -> Result<Challenge, RegistryError> {
        let url = base.join("v2/").expect("a valid path");
        let mut attempt = 1;
        loop {
            let result = http::send(
                &self.http,
                Method::GET,
                url.clone(),
                &HeaderMap::new(),
                None,
                None,
            )
            .map_err(|e| self.send_error(e))
            .and_then(|resp| {
                self.log(&format!("GET {url} -> {}", resp.status()));
                match resp.status().as_u16() {
                    200..=299 => Ok(Challenge::None),
                    401 => match resp.headers().get(header::WWW_AUTHENTICATE) {
                        Some(h) => Ok(auth::parse_challenge(
                            &self.registry,
                            h.to_str().unwrap_or_default(),
                        )?),
                        None => Ok(Challenge::Basic),
                    },
                    _ => Err(self.status_error(&Method::GET, url.path(), resp)),
                }
            });
            match result {
                Err(e) if e.is_retryable() && attempt < attempts => {
                    self.backoff(attempt, &e);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn backoff(&self, attempt: u32, err: &RegistryError) {
        let delay = self.options.retry.delay(attempt, err);
        self.log(&format!("{err}; retrying in {delay:?}"));
        std::thread::sleep(delay);
    }

    /// The absolute URL of a target (a `/v2/…` path or an upload location, possibly relative).
    pub fn url(&self, target: &str) -> Result<reqwest::Url, RegistryError> {
        let base = self.base()?;
        base.join(target).map_err(|e| RegistryError::Protocol {
            registry: self.registry.clone(),
            what: format!("`{target}`"),
            why: e.to_string(),
        })
    }

    /// Send with retries of transient failures. Success statuses come back as a response;
    /// every other status is an error carrying the registry's codes.
    pub fn send(&self, request: &Request) -> Result<Response, RegistryError> {
        let mut attempt = 1;
        loop {
            match self.send_once(request) {
                Err(e) if e.is_retryable() && attempt < self.options.retry.attempts => {
                    self.backoff(attempt, &e);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Send once (plus one more time with a new token when the registry asks for another scope).
    /// Credentials go only to the registry's own origin: an absolute target elsewhere (an upload
    /// `Location`, a `Link`) and redirects elsewhere get none.
    pub fn send_once(&self, request: &Request) -> Result<Response, RegistryError> {
        let (url, origin) = self.target(request)?;
        let mut scopes: BTreeSet<String> = request.scopes.iter().cloned().collect();
        let mut retried_auth = false;
        let headers = request_headers(request);
        loop {
            let authorization = self.authorization_for(&url, &origin, &scopes)?;
            let credential = authorization.as_ref().map(|a| Credential {
                origin: &origin,
                authorization: a,
            });
            let started = Instant::now();
            let resp = http::send(
                &self.http,
                request.method.clone(),
                url.clone(),
                &headers,
                request.body.clone(),
                credential.as_ref(),
            )
            .map_err(|e| self.send_error(e))?;
            self.log_exchange(
                &request.method,
                resp.url(),
                resp.status(),
                started,
                resp.headers(),
            );
            let status = resp.status().as_u16();
            if resp.status().is_success() {
                return Ok(resp);
            }
            // Only the registry's own answers speak for its authentication.
            let from_registry = resp.url().origin() == origin.origin();
            if status == 401 && from_registry && !retried_auth {
                // A new challenge (another scope, an expired token): ask again, once.
                retried_auth = true;
                self.tokens.forget(&scopes);
                if let Some(h) = resp.headers().get(header::WWW_AUTHENTICATE)
                    && let Ok(c) =
                        auth::parse_challenge(&self.registry, h.to_str().unwrap_or_default())
                {
                    let mut c = c;
                    if let Challenge::Bearer { scope, .. } = &mut c
                        && let Some(s) = scope.take()
                    {
                        scopes.extend(s.split(' ').map(str::to_string));
                    }
                    *self.challenge.lock().unwrap() = c;
                    continue;
                }
            }
            let err = self.status_error(&request.method, url.path(), resp);
            return Err(self.classify(
                err,
                request.repository,
                authorization.is_some() && from_registry,
            ));
        }
    }

    /// Start `request` with a body of `len` bytes streamed in pieces (`StreamedRequest::send`),
    /// sent once: no retry, and no second try with a new token, since the body is gone.
    /// Credentials go as with `send_once`.
    pub fn start_stream(
        &self,
        request: &Request,
        len: u64,
    ) -> Result<StreamedRequest<'_>, RegistryError> {
        let (url, origin) = self.target(request)?;
        let scopes: BTreeSet<String> = request.scopes.iter().cloned().collect();
        let authorization = self.authorization_for(&url, &origin, &scopes)?;
        let streamer = self.streamer()?;
        let started = Instant::now();
        let upload = streamer.start(
            request.method.clone(),
            url.clone(),
            request_headers(request),
            len,
            authorization.clone().map(|a| (origin.clone(), a)),
        );
        Ok(StreamedRequest {
            transport: self,
            upload,
            method: request.method.clone(),
            url,
            origin,
            repository: request.repository.map(str::to_string),
            sent_auth: authorization.is_some(),
            started,
        })
    }

    /// The async client, built on first use.
    fn streamer(&self) -> Result<&Streamer, RegistryError> {
        if let Some(s) = self.streamer.get() {
            return Ok(s);
        }
        let host = http::split_host_port(&self.host).0;
        let client = client_builder(
            &self.registry,
            &self.options,
            self.insecure,
            host,
            &self.locality,
        )?
        .build()
        .map_err(RegistryError::Client)?;
        let streamer = Streamer::new(client).map_err(|source| RegistryError::Transfer {
            registry: self.registry.clone(),
            what: "starting a streamed request".into(),
            source,
        })?;
        // Two first uploads at once: one of the two is kept.
        Ok(self.streamer.get_or_init(|| streamer))
    }

    /// A request's absolute URL, and the registry's origin.
    fn target(&self, request: &Request) -> Result<(reqwest::Url, reqwest::Url), RegistryError> {
        let url = self.url(&request.target)?;
        let origin = self.base()?.clone();
        Ok((url, origin))
    }

    /// The `Authorization` for a request to `url`: only on the registry's own origin.
    fn authorization_for(
        &self,
        url: &reqwest::Url,
        origin: &reqwest::Url,
        scopes: &BTreeSet<String>,
    ) -> Result<Option<HeaderValue>, RegistryError> {
        if url.origin() == origin.origin() {
            self.authorization(scopes)
        } else {
            Ok(None)
        }
    }

    /// The `-v` line of one exchange.
    fn log_exchange(
        &self,
        method: &Method,
        url: &reqwest::Url,
        status: reqwest::StatusCode,
        started: Instant,
        headers: &HeaderMap,
    ) {
        self.log(&format!(
            "{method} {}{} -> {status} ({:.2?}){}",
            url.origin().ascii_serialization(),
            url.path(),
            started.elapsed(),
            RateLimit::from_headers(headers)
                .map(|r| format!(" {r}"))
                .unwrap_or_default()
        ));
    }

    fn send_error(&self, e: SendError) -> RegistryError {
        match e {
            SendError::Http(source) => RegistryError::Connect {
                registry: self.registry.clone(),
                cause: ConnectCause::of(&source),
                source,
            },
            SendError::Redirect { to, why } => RegistryError::Redirect {
                registry: self.registry.clone(),
                to,
                why,
            },
        }
    }

    fn classify(
        &self,
        err: RegistryError,
        repository: Option<&str>,
        sent_auth: bool,
    ) -> RegistryError {
        let RegistryError::Status(s) = err else {
            return err;
        };
        match s.status {
            401 => RegistryError::Unauthorized {
                registry: self.registry.clone(),
                anonymous: !sent_auth
                    || self
                        .credentials
                        .lock()
                        .unwrap()
                        .as_ref()
                        .is_none_or(Credentials::is_anonymous),
                cause: Some(Box::new(s)),
            },
            403 => RegistryError::Denied {
                registry: self.registry.clone(),
                repository: repository.unwrap_or("/").to_string(),
                cause: Box::new(s),
            },
            _ if s.has_code("DENIED") => RegistryError::Denied {
                registry: self.registry.clone(),
                repository: repository.unwrap_or("/").to_string(),
                cause: Box::new(s),
            },
            _ => RegistryError::Status(s),
        }
    }

    /// The `Authorization` value for a request needing `scopes`, if the registry wants one.
    fn authorization(
        &self,
        scopes: &BTreeSet<String>,
    ) -> Result<Option<HeaderValue>, RegistryError> {
        let challenge = self.challenge()?;
        let value = match challenge {
            Challenge::None => return Ok(None),
            Challenge::Basic => match self.credentials()? {
                Credentials::Basic { username, password } => auth::basic(&username, &password),
                _ => return Ok(None),
            },
            Challenge::Bearer { realm, service, .. } => {
                if let Some(t) = self.tokens.get(scopes) {
                    format!("Bearer {t}")
                } else {
                    // One fetch at a time: parallel workers then share the token.
                    let _guard = self.token_lock.lock().unwrap();
                    match self.tokens.get(scopes) {
                        Some(t) => format!("Bearer {t}"),
                        None => {
                            let credentials = self.credentials()?;
                            let (realm_url, client) = self.realm(&realm)?;
                            let token = auth::fetch_token(
                                &client,
                                &self.registry,
                                &realm_url,
                                service.as_deref(),
                                scopes,
                                &credentials,
                                false,
                            )?;
                            self.log(&format!(
                                "token for {} from {realm}",
                                scopes.iter().cloned().collect::<Vec<_>>().join(" ")
                            ));
                            let value = token.value.clone();
                            self.tokens.put(scopes, token);
                            format!("Bearer {value}")
                        }
                    }
                }
            }
        };
        let mut v = HeaderValue::from_str(&value).map_err(|_| RegistryError::Protocol {
            registry: self.registry.clone(),
            what: "authentication".into(),
            why: "the token is not a valid header value".into(),
        })?;
        v.set_sensitive(true);
        Ok(Some(v))
    }

    /// The token realm a challenge names, and the client to ask it with. Credentials go to a
    /// realm in plain HTTP only when it is this machine or listed with `--insecure-registry`
    /// (then connections go to the addresses judged, as for the registry itself).
    fn realm(&self, realm: &str) -> Result<(reqwest::Url, Client), RegistryError> {
        let bad = || AuthError::BadChallenge {
            registry: self.registry.clone(),
            challenge: format!("realm=\"{realm}\""),
        };
        let url = reqwest::Url::parse(realm).map_err(|_| bad())?;
        let host = url.host_str().ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let hostport = http::url_host_port(&url);
        let insecure = self.options.insecure_registries.contains(&hostport);
        if host == http::split_host_port(&self.host).0 {
            if url.scheme() == "http" && !(insecure || self.locality.is_loopback()) {
                return Err(self.insecure_realm(realm, &hostport));
            }
            return Ok((url, self.http.clone()));
        }
        match url.scheme() {
            "https" => return Ok((url, self.http.clone())),
            "http" => {}
            _ => return Err(bad().into()),
        }
        let mut clients = self.realm_clients.lock().unwrap();
        if let Some(c) = clients.get(host) {
            return Ok((url, c.clone()));
        }
        let locality = http::locality(host);
        if !(insecure || locality.is_loopback()) {
            return Err(self.insecure_realm(realm, &hostport));
        }
        let client = build_client(
            &self.registry,
            &self.options,
            self.insecure || insecure,
            host,
            &locality,
        )?;
        clients.insert(host.to_string(), client.clone());
        Ok((url, client))
    }

    fn insecure_realm(&self, realm: &str, hostport: &str) -> RegistryError {
        AuthError::InsecureRealm {
            registry: self.registry.clone(),
            realm: realm.to_string(),
            host: hostport.to_string(),
        }
        .into()
    }

    /// Check credentials the way `login` does: Basic on `/v2/`, or a token from the realm (asking
    /// for a refresh token to store instead of the password). Returns the credentials to store.
    pub fn verify_login(&self) -> Result<Credentials, RegistryError> {
        let credentials = self.credentials()?;
        match self.challenge()? {
            Challenge::None => Ok(credentials),
            Challenge::Basic => {
                self.send(&Request::new(Method::GET, "/v2/", &[]))?;
                Ok(credentials)
            }
            Challenge::Bearer { realm, service, .. } => {
                let (realm_url, client) = self.realm(&realm)?;
                let token = auth::fetch_token(
                    &client,
                    &self.registry,
                    &realm_url,
                    service.as_deref(),
                    &BTreeSet::new(),
                    &credentials,
                    true,
                )
                .map_err(|e| match e {
                    auth::AuthError::TokenDenied { .. } => RegistryError::Unauthorized {
                        registry: self.registry.clone(),
                        anonymous: credentials.is_anonymous(),
                        cause: None,
                    },
                    other => other.into(),
                })?;
                Ok(match token.refresh_token {
                    Some(refresh) => Credentials::IdentityToken {
                        username: credentials.username().map(str::to_string),
                        token: refresh,
                    },
                    None => credentials,
                })
            }
        }
    }

    /// Turn a failed response into an error with the registry's codes.
    pub fn status_error(&self, method: &Method, path: &str, resp: Response) -> RegistryError {
        let (status, headers) = (resp.status(), resp.headers().clone());
        let body = if *method == Method::HEAD {
            Vec::new()
        } else {
            // Only the codes are wanted: a body past the limit is not read.
            http::read_body(resp, http::ERROR_LIMIT).unwrap_or_default()
        };
        self.error_of(method, path, status, &headers, &body)
    }

    /// The error a failed answer makes: its status, the registry's codes from its body, and
    /// when to try again.
    fn error_of(
        &self,
        method: &Method,
        path: &str,
        status: reqwest::StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> RegistryError {
        RegistryError::Status(StatusError {
            registry: self.registry.clone(),
            method: method.to_string(),
            path: path.into(),
            status: status.as_u16(),
            errors: parse_errors(body),
            retry_after: headers
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after),
            rate_limit: RateLimit::from_headers(headers).map(Box::new),
        })
    }

    /// Read a whole success body of at most `limit` (what a JSON answer may hold in memory).
    pub fn read_body(
        &self,
        resp: Response,
        limit: http::BodyLimit,
        what: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        let path = resp.url().path().to_string();
        http::read_body(resp, limit).map_err(|e| match e {
            http::BodyError::TooLarge => RegistryError::TooLarge {
                registry: self.registry.clone(),
                what: what.to_string(),
                path,
                limit,
            },
            http::BodyError::Read(source) => RegistryError::Transfer {
                registry: self.registry.clone(),
                what: what.to_string(),
                source,
            },
        })
    }
}

/// A request's own headers.
fn request_headers(request: &Request) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (k, v) in &request.headers {
        headers.append(k.clone(), v.clone());
    }
    headers
}

/// A request in flight whose body is being streamed (`Transport::start_stream`).
pub struct StreamedRequest<'t> {
    transport: &'t Transport,
    upload: Upload<'t>,
    method: Method,
    url: reqwest::Url,
    origin: reqwest::Url,
    repository: Option<String>,
    sent_auth: bool,
    started: Instant,
}

impl StreamedRequest<'_> {
    /// Queue the next piece of the body; `false` once the request has ended (nothing more is
    /// wanted: `finish` says how it ended).
    pub fn send(&mut self, piece: bytes::Bytes) -> bool {
        self.upload.send(piece)
    }

    /// End the body and wait for the answer: a success, or the error it makes (as `send_once`).
    pub fn finish(self) -> Result<Answer, RegistryError> {
        let t = self.transport;
        let answer = self.upload.finish().map_err(|e| match e {
            Failure::Send(e) => t.send_error(e),
            Failure::Stalled => RegistryError::Transfer {
                registry: t.registry.clone(),
                what: "a streamed request".into(),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no progress for {}s", STALL_LIMIT.as_secs()),
                ),
            },
        })?;
        t.log_exchange(
            &self.method,
            &answer.url,
            answer.status,
            self.started,
            &answer.headers,
        );
        if answer.status.is_success() {
            return Ok(answer);
        }
        let from_registry = answer.url.origin() == self.origin.origin();
        let err = t.error_of(
            &self.method,
            self.url.path(),
            answer.status,
            &answer.headers,
            &answer.error_body,
        );
        Err(t.classify(
            err,
            self.repository.as_deref(),
            self.sent_auth && from_registry,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_honours_retry_after_within_bounds() {
        let p = RetryPolicy::default();
        let e = RegistryError::Status(StatusError {
            registry: "r".into(),
            method: "GET".into(),
            path: "/".into(),
            status: 503,
            errors: vec![],
            retry_after: None,
            rate_limit: None,
        });
        assert_eq!(p.delay(1, &e), Duration::from_millis(250));
        assert_eq!(p.delay(3, &e), Duration::from_millis(1000));
        assert_eq!(p.delay(30, &e), p.max);
        let mut s = match e {
            RegistryError::Status(s) => s,
            _ => unreachable!(),
        };
        s.retry_after = Some(Duration::from_secs(2));
        assert_eq!(
            p.delay(1, &RegistryError::Status(s.clone())),
            Duration::from_secs(2)
        );
        s.retry_after = Some(Duration::from_secs(3600));
        assert_eq!(p.delay(1, &RegistryError::Status(s)), p.max);
    }

    #[test]
    fn finds_ca_files_per_registry() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("reg.example:5000");
        std::fs::create_dir_all(&host).unwrap();
        std::fs::write(host.join("ca.crt"), "x").unwrap();
        std::fs::write(host.join("client.key"), "x").unwrap();
        let found = ca_files(&[dir.path().to_path_buf()], "reg.example:5000");
        assert_eq!(found, vec![host.join("ca.crt")]);
        assert!(ca_files(&[dir.path().to_path_buf()], "other").is_empty());
    }
}
