//! Registry errors: the HTTP status and the distribution spec's error codes a registry sends
//! (`{"errors":[{"code":"MANIFEST_UNKNOWN","message":…}]}`), and whether trying again may help.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::auth::AuthError;
use super::credentials::CredentialsError;
use super::http::BodyLimit;

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
    pub path: String,
    pub status: u16,
    pub errors: Vec<ServerError>,
    /// The registry's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
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
    #[error("cannot reach `{registry}`")]
    Connect {
        registry: String,
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
            RegistryError::Connect { source, .. } => {
                source.is_connect() || source.is_timeout() || source.is_request()
            }
            RegistryError::Transfer { .. } | RegistryError::UploadLost { .. } => true,
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
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
