//! One registry host: the HTTP client (rustls with the system roots plus docker's per-registry
//! CA files; plain HTTP only where allowed), the `/v2/` ping that finds the scheme and the
//! authentication challenge, authorisation of each request, and retries with bounded backoff
//! (the registry's `Retry-After` honoured).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use reqwest::Method;
use reqwest::blocking::{Client, Response};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::auth::{self, Challenge, TokenCache};
use super::credentials::{self, Credentials};
use super::error::{RegistryError, StatusError, parse_errors, parse_retry_after};

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
    /// Plain HTTP may be used (loopback and `--insecure-registry` registries).
    pub allow_http: bool,
    /// TLS certificates are not verified (`--insecure-registry` only, as docker does).
    pub skip_verify: bool,
    /// Directories holding `HOST[:PORT]/*.crt` CA files (docker's and podman's certs.d).
    pub cert_dirs: Vec<PathBuf>,
    pub retry: RetryPolicy,
    pub log: Option<Log>,
    /// Use these instead of docker's config.json (login verifies them this way).
    pub credentials: Option<Credentials>,
}

/// What to send. Bodies are `Bytes` so a retry resends them without copying.
pub struct Request<'a> {
    pub method: Method,
    /// A path under the registry (`/v2/…`) or an absolute URL (an upload location).
    pub target: String,
    pub scopes: &'a [String],
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<Bytes>,
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

    pub fn body(mut self, body: Bytes) -> Request<'a> {
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
    http: Client,
    options: TransportOptions,
    base: OnceLock<reqwest::Url>,
    ping_lock: Mutex<()>,
    challenge: Mutex<Challenge>,
    credentials: Mutex<Option<Credentials>>,
    tokens: TokenCache,
    token_lock: Mutex<()>,
}

/// The host that serves a registry's API (Docker Hub's differs from its name).
pub fn api_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

/// Whether `registry` (`host[:port]`) is on this machine: such registries may use plain HTTP.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.rsplit_once(':').map_or(registry, |(h, _)| h),
    };
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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

fn load_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, RegistryError> {
    let err = |source: Box<dyn std::error::Error + Send + Sync>| RegistryError::Certificate {
        path: path.to_path_buf(),
        source,
    };
    let pem = std::fs::read(path).map_err(|e| err(Box::new(e)))?;
    reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| err(Box::new(e)))
}

impl Transport {
    pub fn new(registry: &str, options: TransportOptions) -> Result<Transport, RegistryError> {
        let mut builder = Client::builder()
            .user_agent(concat!("manifold/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            // Per request and per body read: a stalled connection fails instead of hanging.
            .timeout(Duration::from_secs(300))
            .pool_max_idle_per_host(32)
            .tcp_nodelay(true);
        if is_loopback(registry) {
            builder = builder.no_proxy();
        }
        if options.skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        for file in ca_files(&options.cert_dirs, registry) {
            for cert in load_ca(&file)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(RegistryError::Client)?;
        Ok(Transport {
            registry: registry.to_string(),
            host: api_host(registry).to_string(),
            credentials: Mutex::new(options.credentials.clone()),
            http,
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
        let (base, challenge) = if self.options.allow_http {
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
            let c = self.ping(&https, self.options.retry.attempts)?;
            (https, c)
        };
        *self.challenge.lock().unwrap() = challenge;
        Ok(self.base.get_or_init(|| base))
    }

    fn ping(&self, base: &reqwest::Url, attempts: u32) -> Result<Challenge, RegistryError> {
        let url = base.join("v2/").expect("a valid path");
        let mut attempt = 1;
        loop {
            let result = self
                .http
                .get(url.clone())
                .send()
                .map_err(|source| RegistryError::Connect {
                    registry: self.registry.clone(),
                    source,
                })
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
    pub fn send_once(&self, request: &Request) -> Result<Response, RegistryError> {
        let url = self.url(&request.target)?;
        let mut scopes: BTreeSet<String> = request.scopes.iter().cloned().collect();
        let mut retried_auth = false;
        loop {
            let authorization = self.authorization(&scopes)?;
            let mut rb = self.http.request(request.method.clone(), url.clone());
            let mut headers = HeaderMap::new();
            for (k, v) in &request.headers {
                headers.append(k.clone(), v.clone());
            }
            if let Some(a) = &authorization {
                let mut v = HeaderValue::from_str(a).map_err(|_| RegistryError::Protocol {
                    registry: self.registry.clone(),
                    what: "authentication".into(),
                    why: "the token is not a valid header value".into(),
                })?;
                v.set_sensitive(true);
                headers.insert(header::AUTHORIZATION, v);
            }
            rb = rb.headers(headers);
            if let Some(body) = &request.body {
                rb = rb.body(body.clone());
            }
            let started = Instant::now();
            let resp = rb.send().map_err(|source| RegistryError::Connect {
                registry: self.registry.clone(),
                source,
            })?;
            self.log(&format!(
                "{} {}{} -> {} ({:.2?})",
                request.method,
                url.origin().ascii_serialization(),
                url.path(),
                resp.status(),
                started.elapsed()
            ));
            let status = resp.status().as_u16();
            if resp.status().is_success() {
                return Ok(resp);
            }
            if status == 401 && !retried_auth {
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
            return Err(self.classify(err, request, authorization.is_some()));
        }
    }

    fn classify(&self, err: RegistryError, request: &Request, sent_auth: bool) -> RegistryError {
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
                repository: request.repository.unwrap_or("/").to_string(),
                cause: Box::new(s),
            },
            _ if s.has_code("DENIED") => RegistryError::Denied {
                registry: self.registry.clone(),
                repository: request.repository.unwrap_or("/").to_string(),
                cause: Box::new(s),
            },
            _ => RegistryError::Status(s),
        }
    }

    /// The `Authorization` value for a request needing `scopes`, if the registry wants one.
    fn authorization(&self, scopes: &BTreeSet<String>) -> Result<Option<String>, RegistryError> {
        let challenge = self.challenge()?;
        match challenge {
            Challenge::None => Ok(None),
            Challenge::Basic => match self.credentials()? {
                Credentials::Basic { username, password } => Ok(Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{password}"))
                ))),
                _ => Ok(None),
            },
            Challenge::Bearer { realm, service, .. } => {
                if let Some(t) = self.tokens.get(scopes) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                // One fetch at a time: parallel workers then share the token.
                let _guard = self.token_lock.lock().unwrap();
                if let Some(t) = self.tokens.get(scopes) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let credentials = self.credentials()?;
                let token = auth::fetch_token(
                    &self.http,
                    &self.registry,
                    &realm,
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
                Ok(Some(format!("Bearer {value}")))
            }
        }
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
                let token = auth::fetch_token(
                    &self.http,
                    &self.registry,
                    &realm,
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
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = if *method == Method::HEAD {
            Vec::new()
        } else {
            let mut body = Vec::new();
            let _ =
                std::io::Read::read_to_end(&mut std::io::Read::take(resp, 64 * 1024), &mut body);
            body
        };
        RegistryError::Status(StatusError {
            registry: self.registry.clone(),
            method: method.to_string(),
            path: path.to_string(),
            status,
            errors: parse_errors(&body),
            retry_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries() {
        for r in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "docker.io",
            "10.0.0.1:5000",
            "[2001:db8::1]:5000",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
    }

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
