//! Authentication: the registry's `WWW-Authenticate` challenge (parsed with http-auth), Basic
//! credentials, and Bearer tokens from the challenge's realm for a set of scopes — anonymous,
//! with a user name and password, or with an identity (refresh) token — cached until they
//! expire. A request refused for a missing scope gets a new token that covers it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::Deserialize;

use super::credentials::Credentials;
use super::error::parse_retry_after;
use super::http::{self, BodyLimit, Credential, SendError};

/// The client id sent to token servers (docker sends `docker`).
pub const CLIENT_ID: &str = "manifold";
/// Tokens without `expires_in` live 60 s by the spec.
const DEFAULT_TOKEN_LIFETIME: u64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("`{registry}` sent an authentication challenge that cannot be parsed: `{challenge}`")]
    BadChallenge { registry: String, challenge: String },
    #[error("`{registry}` asks for `{scheme}` authentication, which is not supported")]
    UnsupportedScheme { registry: String, scheme: String },
    #[error("the token server of `{registry}` refused the credentials ({status})")]
    TokenDenied { registry: String, status: u16 },
    #[error("the token server of `{registry}` failed ({status})")]
    TokenServer {
        registry: String,
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("cannot reach the token server of `{registry}`")]
    TokenConnect {
        registry: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the token server of `{registry}` sent no token")]
    NoToken { registry: String },
    #[error(
        "the token server `{realm}` of `{registry}` is plain HTTP on another machine: credentials are not sent to it"
    )]
    InsecureRealm {
        registry: String,
        realm: String,
        /// `host:port` as `--insecure-registry` takes it.
        host: String,
    },
    #[error("the token server `{realm}` of `{registry}` sent more than {limit}")]
    TokenTooLarge {
        registry: String,
        realm: String,
        limit: BodyLimit,
    },
    #[error("the token server of `{registry}` redirected to `{to}`, which is not followed: {why}")]
    TokenRedirect {
        registry: String,
        to: String,
        why: &'static str,
    },
    #[error("the connection to the token server of `{registry}` broke")]
    TokenRead {
        registry: String,
        #[source]
        source: std::io::Error,
    },
}

impl AuthError {
    pub fn is_retryable(&self) -> bool {
        match self {
            AuthError::TokenServer { status, .. } => {
                matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
            }
            AuthError::TokenConnect { .. } | AuthError::TokenRead { .. } => true,
            _ => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AuthError::TokenServer { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// How a registry wants to be authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `/v2/` answered without asking.
    None,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        /// The scope the failed request needed, when the registry says.
        scope: Option<String>,
    },
}

/// Parse a `WWW-Authenticate` value; Bearer is preferred over Basic when both are offered.
pub fn parse_challenge(registry: &str, header: &str) -> Result<Challenge, AuthError> {
    let bad = || AuthError::BadChallenge {
        registry: registry.to_string(),
        challenge: header.to_string(),
    };
    let challenges = http_auth::parse_challenges(header).map_err(|_| bad())?;
    let mut basic = false;
    let mut other = None;
    for c in &challenges {
        if c.scheme.eq_ignore_ascii_case("bearer") {
            let param = |name: &str| {
                c.params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_unescaped())
            };
            let realm = param("realm").ok_or_else(bad)?;
            return Ok(Challenge::Bearer {
                realm,
                service: param("service"),
                scope: param("scope"),
            });
        }
        if c.scheme.eq_ignore_ascii_case("basic") {
            basic = true;
        } else {
            other.get_or_insert(c.scheme.to_string());
        }
    }
    match (basic, other) {
        (true, _) => Ok(Challenge::Basic),
        (false, Some(scheme)) => Err(AuthError::UnsupportedScheme {
            registry: registry.to_string(),
            scheme,
        }),
        (false, None) => Err(bad()),
    }
}

/// The `Authorization` value of Basic credentials.
pub fn basic(username: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

/// `repository:NAME:pull` and friends.
pub fn repository_scope(repository: &str, actions: &str) -> String {
    format!("repository:{repository}:{actions}")
}

pub const CATALOG_SCOPE: &str = "registry:catalog:*";

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// A token fetched for a set of scopes.
#[derive(Clone)]
pub struct Token {
    pub value: String,
    pub expires: Instant,
    /// Given when asked for one (`offline_token=true`): what `login` stores as identity token.
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Tokens by the set of scopes they were granted for.
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<String, Token>>,
}

fn cache_key(scopes: &BTreeSet<String>) -> String {
    scopes.iter().cloned().collect::<Vec<_>>().join(" ")
}

impl TokenCache {
    pub fn get(&self, scopes: &BTreeSet<String>) -> Option<String> {
        let tokens = self.tokens.lock().unwrap();
        let t = tokens.get(&cache_key(scopes))?;
        // A margin, so a token does not expire between this check and its use.
        (t.expires > Instant::now() + Duration::from_secs(5)).then(|| t.value.clone())
    }

    pub fn put(&self, scopes: &BTreeSet<String>, token: Token) {
        self.tokens.lock().unwrap().insert(cache_key(scopes), token);
    }

    pub fn forget(&self, scopes: &BTreeSet<String>) {
        self.tokens.lock().unwrap().remove(&cache_key(scopes));
    }
}

/// Ask the realm for a token covering `scopes`. With an identity token this is the OAuth2
/// refresh-token grant (POST); otherwise a GET, with Basic credentials when there are any (sent to
/// the realm's origin only; the caller has judged that the realm may receive them).
/// `offline` asks for a refresh token too (what `login` stores).
pub fn fetch_token(
    client: &reqwest::blocking::Client,
    registry: &str,
    realm: &reqwest::Url,
    service: Option<&str>,
    scopes: &BTreeSet<String>,
    credentials: &Credentials,
    offline: bool,
) -> Result<Token, AuthError> {
    let sent = |e: SendError| match e {
        SendError::Http(source) => AuthError::TokenConnect {
            registry: registry.to_string(),
            source,
        },
        SendError::Redirect { to, why } => AuthError::TokenRedirect {
            registry: registry.to_string(),
            to,
            why,
        },
    };
    let response = match credentials {
        Credentials::IdentityToken { token, .. } => {
            let mut form: Vec<(&str, &str)> = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("client_id", CLIENT_ID),
            ];
            if let Some(s) = service {
                form.push(("service", s));
            }
            let scope = scopes.iter().cloned().collect::<Vec<_>>().join(" ");
            if !scope.is_empty() {
                form.push(("scope", &scope));
            }
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
            // The refresh token rides in the body, which `send` never resends elsewhere.
            http::send(
                client,
                reqwest::Method::POST,
                realm.clone(),
                &headers,
                Some(form_encode(&form).into()),
                None,
            )
            .map_err(sent)?
        }
        _ => {
            let mut query: Vec<(&str, &str)> = Vec::new();
            if let Some(s) = service {
                query.push(("service", s));
            }
            for s in scopes {
                query.push(("scope", s));
            }
            if offline {
                query.push(("offline_token", "true"));
                query.push(("client_id", CLIENT_ID));
            }
            let mut url = realm.clone();
            url.query_pairs_mut().extend_pairs(&query);
            let authorization = match credentials {
                Credentials::Basic { username, password } => {
                    HeaderValue::from_str(&basic(username, password)).ok()
                }
                _ => None,
            };
            let credential = authorization.as_ref().map(|a| Credential {
                origin: realm,
                authorization: a,
            });
            http::send(
                client,
                reqwest::Method::GET,
                url,
                &HeaderMap::new(),
                None,
                credential.as_ref(),
            )
            .map_err(sent)?
        }
    };
    let status = response.status().as_u16();
    if status == 401 || status == 403 {
        return Err(AuthError::TokenDenied {
            registry: registry.to_string(),
            status,
        });
    }
    if !response.status().is_success() {
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        return Err(AuthError::TokenServer {
            registry: registry.to_string(),
            status,
            retry_after,
        });
    }
    let no_token = || AuthError::NoToken {
        registry: registry.to_string(),
    };
    let body = http::read_body(response, http::TOKEN_LIMIT).map_err(|e| match e {
        http::BodyError::TooLarge => AuthError::TokenTooLarge {
            registry: registry.to_string(),
            realm: realm.to_string(),
            limit: http::TOKEN_LIMIT,
        },
        http::BodyError::Read(source) => AuthError::TokenRead {
            registry: registry.to_string(),
            source,
        },
    })?;
    let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|_| no_token())?;
    let value = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(no_token)?;
    let lifetime = parsed
        .expires_in
        .unwrap_or(DEFAULT_TOKEN_LIFETIME)
        .max(DEFAULT_TOKEN_LIFETIME);
    Ok(Token {
        value,
        expires: Instant::now() + Duration::from_secs(lifetime),
        refresh_token: parsed.refresh_token,
    })
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut s = reqwest::Url::parse("http://x/").expect("a valid URL");
    s.query_pairs_mut().extend_pairs(pairs);
    s.query().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        let c = parse_challenge(
            "r",
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            }
        );
        assert_eq!(
            parse_challenge("r", r#"Basic realm="Registry Realm""#).unwrap(),
            Challenge::Basic
        );
        // Bearer wins when both are offered.
        assert!(matches!(
            parse_challenge("r", r#"Basic realm="x", Bearer realm="https://t/""#).unwrap(),
            Challenge::Bearer { .. }
        ));
        assert!(matches!(
            parse_challenge("r", r#"Negotiate realm="x""#),
            Err(AuthError::UnsupportedScheme { .. })
        ));
        assert!(parse_challenge("r", "Bearer").is_err());
    }

    #[test]
    fn token_cache_is_keyed_by_scope_set() {
        let cache = TokenCache::default();
        let a: BTreeSet<String> = ["repository:a:pull".to_string()].into();
        let ab: BTreeSet<String> = ["repository:a:pull".into(), "repository:b:pull".into()].into();
        cache.put(
            &a,
            Token {
                value: "t1".into(),
                expires: Instant::now() + Duration::from_secs(60),
                refresh_token: None,
            },
        );
        assert_eq!(cache.get(&a).as_deref(), Some("t1"));
        assert_eq!(cache.get(&ab), None);
        cache.put(
            &ab,
            Token {
                value: "old".into(),
                expires: Instant::now(),
                refresh_token: None,
            },
        );
        assert_eq!(cache.get(&ab), None, "expired tokens are not used");
        assert_eq!(
            format!("{:?}", cache.tokens.lock().unwrap()["repository:a:pull"]),
            "Token(<redacted>)"
        );
    }
}
