//! Registry errors: the HTTP status and the distribution spec's error codes a registry sends
//! (`{"errors":[{"code":"MANIFEST_UNKNOWN","message":…}]}`), and whether trying again may help.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::auth::AuthError;
use super::credentials::CredentialsError;
use super::http::BodyLimit;
use crate::hint::Hint;

/// One entry of a registry's `errors` array.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServerError {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ServerError>,
}

/// Parse an error response body; anything else yields no codes.
pub fn parse_errors(body: &[u8]) -> Vec<ServerError> {
    serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.errors)
        .unwrap_or_default()
}

/// A failed request: what was asked, what the registry answered.
#[derive(Debug, Clone)]
pub struct StatusError {
    pub registry: String,
    pub method: String,
    /// The path asked for (never carries credentials).
    pub path: Box<str>,
    pub status: u16,
    pub errors: Vec<ServerError>,
    /// The registry's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
    /// Docker Hub's `RateLimit-Remaining` / `RateLimit-Limit`, when it sent them.
    pub rate_limit: Option<Box<RateLimit>>,
}

/// Docker Hub's pull allowance: `RateLimit-Remaining: 76;w=21600`, `RateLimit-Limit: 100;w=21600`
/// (requests left and allowed in a window of `w` seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub remaining: u64,
    pub limit: Option<u64>,
    /// The window in seconds.
    pub window: Option<u64>,
}

impl RateLimit {
    /// Read from a response's headers; `None` when the registry sends no `RateLimit-Remaining`.
    pub fn from_headers(headers: &reqwest::header::HeaderMap) -> Option<RateLimit> {
        let field = |name: &str| -> Option<(u64, Option<u64>)> {
            let v = headers.get(name)?.to_str().ok()?;
            let mut parts = v.split(';');
            let n = parts.next()?.trim().parse().ok()?;
            let w = parts
                .filter_map(|p| p.trim().strip_prefix("w="))
                .find_map(|w| w.parse().ok());
            Some((n, w))
        };
        let (remaining, w1) = field("ratelimit-remaining")?;
        let limit = field("ratelimit-limit");
        Some(RateLimit {
            remaining,
            limit: limit.map(|(n, _)| n),
            window: w1.or(limit.and_then(|(_, w)| w)),
        })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limit: {} ", self.remaining)?;
        if let Some(l) = self.limit {
            write!(f, "of {l} ")?;
        }
        write!(f, "requests left")?;
        if let Some(w) = self.window {
            write!(f, " per {}", window(w))?;
        }
        Ok(())
    }
}

fn window(secs: u64) -> String {
    match secs {
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// Why a connection could not be made (or broke before an answer), judged from the error's
/// chain: what decides whether trying again can help and what the user should check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectCause {
    /// Nothing listens at that address and port.
    Refused,
    /// The name does not resolve (a typo, or no DNS).
    Dns,
    /// The TLS handshake failed (an unknown CA, plain HTTP, a client certificate required).
    Tls,
    /// A timeout, a reset, anything else: may pass.
    Other,
}

impl ConnectCause {
    pub fn of(error: &(dyn std::error::Error + 'static)) -> ConnectCause {
        let mut cause = Some(error);
        while let Some(e) = cause {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::ConnectionRefused {
                    return ConnectCause::Refused;
                }
                // rustls' errors ride inside an io::Error, which hides them from `source()`.
                if io
                    .get_ref()
                    .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
                {
                    return ConnectCause::Tls;
                }
            }
            if e.downcast_ref::<rustls::Error>().is_some() {
                return ConnectCause::Tls;
            }
            // hyper-util's connector names its resolver's failures so; the io::Error below it
            // (getaddrinfo's) has no kind of its own.
            if e.to_string() == "dns error" {
                return ConnectCause::Dns;
            }
            cause = e.source();
        }
        ConnectCause::Other
    }

    fn describe(self) -> &'static str {
        match self {
            ConnectCause::Refused => ": connection refused",
            ConnectCause::Dns => ": its name does not resolve",
            ConnectCause::Tls => ": the TLS handshake failed",
            ConnectCause::Other => "",
        }
    }
}

impl StatusError {
    pub fn has_code(&self, code: &str) -> bool {
        self.errors.iter().any(|e| e.code == code)
    }
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` answered {} to {} {}",
            self.registry,
            status_text(self.status),
            self.method,
            self.path
        )?;
        for e in &self.errors {
            if e.message.is_empty() {
                write!(f, ": {}", e.code)?;
            } else {
                write!(f, ": {} ({})", e.code, e.message.trim_end_matches('.'))?;
            }
        }
        if let Some(r) = &self.rate_limit {
            write!(f, " ({r})")?;
        }
        Ok(())
    }
}

impl std::error::Error for StatusError {}

fn unauthorized(registry: &str, anonymous: bool) -> String {
    if anonymous {
        format!("`{registry}` requires authentication")
    } else {
        format!("`{registry}` refused the credentials")
    }
}

fn status_text(status: u16) -> String {
    match reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    Status(StatusError),
    #[error("`{what}` not found in `{registry}`")]
    NotFound { registry: String, what: String },
    #[error("{}", unauthorized(.registry, *.anonymous))]
    Unauthorized {
        registry: String,
        /// No credentials were sent (none are stored for this registry).
        anonymous: bool,
        #[source]
        cause: Option<Box<StatusError>>,
    },
    #[error("access to `{repository}` on `{registry}` is denied")]
    Denied {
        registry: String,
        repository: String,
        #[source]
        cause: Box<StatusError>,
    },
    #[error("cannot reach `{registry}`{}", .cause.describe())]
    Connect {
        registry: String,
        cause: ConnectCause,
        #[source]
        source: reqwest::Error,
    },
    #[error("the connection to `{registry}` failed during {what}")]
    Transfer {
        registry: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{registry}` is not reachable over HTTPS and is not allowed over plain HTTP")]
    InsecureNotAllowed {
        registry: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "`{registry}` is not reachable over HTTPS, and plain HTTP is not allowed: its name resolves to {addresses}, not to this machine alone"
    )]
    NotLoopback {
        registry: String,
        addresses: String,
        #[source]
        cause: Box<RegistryError>,
    },
    #[error("`{registry}` sent more than {limit} in answer to {what} (`{path}`)")]
    TooLarge {
        registry: String,
        what: String,
        path: String,
        limit: BodyLimit,
    },
    #[error("`{registry}` redirected to `{to}`, which is not followed: {why}")]
    Redirect {
        registry: String,
        to: String,
        why: &'static str,
    },
    #[error("`{registry}` refused the way the blob was sent: it is sent again another way")]
    UploadMethodRefused {
        registry: String,
        #[source]
        cause: Box<RegistryError>,
    },
    #[error(
        "`{registry}` refuses the OCI index `{digest}`: it holds Docker schema2 manifests ({children} of them)"
    )]
    MixedIndexRefused {
        registry: String,
        digest: crate::oci::Digest,
        children: usize,
        #[source]
        cause: Option<Box<RegistryError>>,
    },
    #[error("the referrers tag `{tag}` in `{registry}` is not an OCI index: it is {what}")]
    ReferrersTag {
        registry: String,
        tag: String,
        what: String,
    },
    #[error("cannot read the client certificate {path}")]
    ClientCertificate {
        path: std::path::PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Mirrors(#[from] super::mirrors::MirrorsError),
    #[error("`{registry}` lost the upload session of a blob")]
    UploadLost {
        registry: String,
        #[source]
        cause: Box<RegistryError>,
    },
    #[error("`{registry}` sent an invalid response to {what}: {why}")]
    Protocol {
        registry: String,
        what: String,
        why: String,
    },
    #[error("`{registry}` does not offer a catalog of its repositories")]
    CatalogUnsupported { registry: String },
    #[error("cannot read the CA certificate {path}")]
    Certificate {
        path: std::path::PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot set up an HTTP client")]
    Client(#[source] reqwest::Error),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    Oci(#[from] crate::oci::OciError),
}

impl Hint for RegistryError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            RegistryError::Unauthorized {
                registry,
                anonymous: true,
                ..
            } => format!("log in with `manifold login {registry}`"),
            RegistryError::Unauthorized { registry, .. } => format!(
                "check the user name and password, then log in again with `manifold login {registry}`"
            ),
            RegistryError::Denied { .. } => {
                "check the repository name, and that your account may access it".into()
            }
            RegistryError::NotFound { .. } => {
                "check the name and tag; `manifold tags REGISTRY/NAME` lists a repository's tags".into()
            }
            RegistryError::Connect {
                registry,
                cause: ConnectCause::Refused,
                ..
            } => format!("is the registry running at `{registry}`? nothing accepts connections there"),
            RegistryError::Connect {
                registry,
                cause: ConnectCause::Dns,
                ..
            } => format!(
                "check the name `{}`: it does not resolve (a typo, or no DNS here)",
                super::api_host(registry)
            ),
            RegistryError::Connect {
                registry,
                cause: ConnectCause::Tls,
                ..
            } => format!(
                "put the registry's CA in /etc/docker/certs.d/{registry}/ca.crt (and a client certificate it requires in client.cert and client.key there); a registry that serves plain HTTP or a certificate you do not check needs `--insecure-registry {registry}`"
            ),
            // A TLS 1.3 server that wants a client certificate closes the connection after the
            // handshake: that reaches us as a closed connection, not as a TLS error.
            RegistryError::Connect { registry, .. } if !super::is_loopback(registry) => {
                format!(
                    "check that `{registry}` is up and reachable from here; a registry that serves plain HTTP or a self-signed certificate needs `--insecure-registry {registry}` (or its CA in /etc/docker/certs.d/{registry}/ca.crt), one that requires a client certificate needs it in client.cert and client.key there"
                )
            }
            RegistryError::Connect { registry, .. } => format!(
                "check that a registry is listening at `{registry}`; one that requires a client certificate needs it in /etc/docker/certs.d/{registry}/client.cert and client.key"
            ),
            RegistryError::ClientCertificate { .. } => {
                "a client certificate is a PEM `NAME.cert` with its PEM key `NAME.key` (PKCS#8, RSA or EC) next to it".into()
            }
            RegistryError::MixedIndexRefused { .. } => {
                "make the list a Docker manifest list (`manifold manifest create --format docker LIST IMAGE...`), or convert its images to OCI manifests (e.g. `skopeo copy --format oci`) and list those".into()
            }
            RegistryError::Status(s) if s.status == 429 => match &s.rate_limit {
                Some(_) => format!(
                    "the registry limits pulls: wait for the window to pass, or log in (`manifold login {}`) for a higher limit",
                    s.registry
                ),
                None => "the registry asks for fewer requests: try again later, or with a lower `--concurrency`".into(),
            },
            RegistryError::Mirrors(_) => {
                "fix the file, or point `MANIFOLD_REGISTRIES_CONF` at another; `--registry-mirror` takes a URL such as `https://mirror.example:5000`".into()
            }
            RegistryError::NotLoopback { registry, .. } => format!(
                "a `.localhost` name counts as this machine only when it resolves to loopback addresses alone; if you trust `{registry}` in plain HTTP, pass `--insecure-registry {registry}`"
            ),
            RegistryError::Auth(AuthError::InsecureRealm { host, .. }) => format!(
                "the token server should use HTTPS; if you trust the network to `{host}`, pass `--insecure-registry {host}`"
            ),
            RegistryError::CatalogUnsupported { .. } => {
                "search needs the registry's `/v2/_catalog`; `manifold tags REGISTRY/NAME` works for a known repository".into()
            }
            RegistryError::Oci(e) => return e.hint(),
            _ => return None,
        })
    }
}

impl RegistryError {
    /// Whether the same request may succeed later: throttling, server-side failures and broken
    /// connections, never a refusal.
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Status(s) => {
                matches!(s.status, 408 | 429 | 500 | 502 | 503 | 504)
                    || s.has_code("TOOMANYREQUESTS")
                    || s.has_code("UNAVAILABLE")
            }
            // Nothing listening, a name that does not resolve, a failed handshake: the same
            // next time, so say so at once.
            RegistryError::Connect { cause, source, .. } => {
                *cause == ConnectCause::Other
                    && (source.is_connect() || source.is_timeout() || source.is_request())
            }
            RegistryError::Transfer { .. }
            | RegistryError::UploadLost { .. }
            | RegistryError::UploadMethodRefused { .. } => true,
            RegistryError::Auth(a) => a.is_retryable(),
            _ => false,
        }
    }

    /// How long the registry asked us to wait before trying again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RegistryError::Status(s) => s.retry_after,
            RegistryError::Auth(a) => a.retry_after(),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        match self {
            RegistryError::NotFound { .. } => true,
            RegistryError::Status(s) => s.status == 404,
            _ => false,
        }
    }

    /// The registry's error codes, if it sent any.
    pub fn codes(&self) -> Vec<&str> {
        match self {
            RegistryError::Status(s) => s.errors.iter().map(|e| e.code.as_str()).collect(),
            RegistryError::Denied { cause, .. } => {
                cause.errors.iter().map(|e| e.code.as_str()).collect()
            }
            RegistryError::Unauthorized { cause: Some(c), .. } => {
                c.errors.iter().map(|e| e.code.as_str()).collect()
            }
            _ => Vec::new(),
        }
    }
}

/// `Retry-After`: seconds, or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let secs = (when.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
    Some(Duration::from_secs(secs.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, body: &str) -> RegistryError {
        RegistryError::Status(StatusError {
            registry: "r.example".into(),
            method: "GET".into(),
            path: "/v2/x/manifests/1".into(),
            status: code,
            errors: parse_errors(body.as_bytes()),
            retry_after: None,
            rate_limit: None,
        })
    }

    #[test]
    fn error_codes_and_retry_judgement() {
        let e = status(
            404,
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"1"}}]}"#,
        );
        assert_eq!(e.codes(), vec!["MANIFEST_UNKNOWN"]);
        assert!(!e.is_retryable());
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            "`r.example` answered 404 Not Found to GET /v2/x/manifests/1: MANIFEST_UNKNOWN (manifest unknown)"
        );
        assert!(status(503, "").is_retryable());
        assert!(status(429, "not json").is_retryable());
        assert!(status(400, r#"{"errors":[{"code":"TOOMANYREQUESTS"}]}"#).is_retryable());
        assert!(!status(401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#).is_retryable());
    }

    #[test]
    fn refusals_of_hostile_answers_say_what_and_where() {
        let too_large = RegistryError::TooLarge {
            registry: "r.example".into(),
            what: "the tag list of `x`".into(),
            path: "/v2/x/tags/list".into(),
            limit: super::super::http::LISTING_PAGE_LIMIT,
        };
        assert_eq!(
            too_large.to_string(),
            "`r.example` sent more than 16 MiB in answer to the tag list of `x` (`/v2/x/tags/list`)"
        );
        assert!(!too_large.is_retryable());
        let redirect = RegistryError::Redirect {
            registry: "r.example".into(),
            to: "http://other.example".into(),
            why: "it would send the request body to another origin",
        };
        assert_eq!(
            redirect.to_string(),
            "`r.example` redirected to `http://other.example`, which is not followed: it would send the request body to another origin"
        );
        assert!(!redirect.is_retryable());
        let realm = RegistryError::Auth(AuthError::TokenRedirect {
            registry: "r.example".into(),
            to: "http://t.example/token".into(),
            why: "more than 10 redirects",
        });
        assert_eq!(
            realm.to_string(),
            "the token server of `r.example` redirected to `http://t.example/token`, which is not followed: more than 10 redirects"
        );
        let read = RegistryError::Auth(AuthError::TokenRead {
            registry: "r.example".into(),
            source: std::io::Error::other("reset"),
        });
        assert_eq!(
            read.to_string(),
            "the connection to the token server of `r.example` broke"
        );
        assert!(read.is_retryable());
    }

    #[test]
    fn docker_hub_rate_limits_are_read_and_shown() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(RateLimit::from_headers(&h), None);
        h.insert("ratelimit-limit", "100;w=21600".parse().unwrap());
        h.insert("ratelimit-remaining", "0;w=21600".parse().unwrap());
        let r = RateLimit::from_headers(&h).unwrap();
        assert_eq!(r.to_string(), "rate limit: 0 of 100 requests left per 6 h");
        let RegistryError::Status(mut s) = status(
            429,
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}"#,
        ) else {
            unreachable!()
        };
        s.rate_limit = Some(Box::new(r));
        assert_eq!(
            s.to_string(),
            "`r.example` answered 429 Too Many Requests to GET /v2/x/manifests/1: TOOMANYREQUESTS (You have reached your pull rate limit) (rate limit: 0 of 100 requests left per 6 h)"
        );
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("ratelimit-remaining", "7".parse().unwrap());
        assert_eq!(
            RateLimit::from_headers(&h).unwrap().to_string(),
            "rate limit: 7 requests left"
        );
    }

    #[test]
    fn connection_failures_are_told_apart_by_their_chain() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(ConnectCause::of(&refused), ConnectCause::Refused);
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(ConnectCause::of(&tls), ConnectCause::Tls);
        #[derive(Debug)]
        struct Dns(std::io::Error);
        impl fmt::Display for Dns {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("dns error")
            }
        }
        impl std::error::Error for Dns {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        assert_eq!(
            ConnectCause::of(&Dns(std::io::Error::other("failed to lookup address"))),
            ConnectCause::Dns
        );
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(ConnectCause::of(&reset), ConnectCause::Other);
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
