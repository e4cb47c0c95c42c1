//! The HTTP rules every request of the registry client follows, token servers included: where
//! credentials may go (only to the origin — scheme, host and port — they are for; a redirect or
//! a `Location`/`Link` to another origin, or from HTTPS to plain HTTP, carries none), which
//! hosts are this machine (a `localhost` name only when it resolves to loopback addresses alone,
//! and then connections go to exactly those addresses), which hosts may be spoken to in plain
//! HTTP (`--insecure-registry`), and how much of a response body is read into memory.

use std::fmt;
use std::io::Read;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use bytes::Bytes;
use reqwest::Method;
use reqwest::Url;
use reqwest::blocking::{Client, Response};
use reqwest::header::{self, HeaderMap, HeaderValue};

/// Redirects followed per request (reqwest's and Go's default).
pub const MAX_REDIRECTS: usize = 10;

/// `host` and `port` of `host[:port]` (`[v6]:port` too); the host without brackets.
pub fn split_host_port(hostport: &str) -> (&str, Option<u16>) {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        return (host, after.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()) => {
            (h, p.parse().ok())
        }
        _ => (hostport, None),
    }
}

/// Whether a host is this machine, judged once per host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locality {
    /// A loopback address, or a `localhost` name that resolved to loopback addresses only;
    /// connections to the name go to exactly `pinned` (no second lookup that could differ).
    Loopback { pinned: Vec<SocketAddr> },
    /// A `localhost` name that resolves elsewhere too, or not at all: treated as remote.
    NotLoopback { addresses: Vec<IpAddr> },
    /// Any other host.
    Remote,
}

impl Locality {
    pub fn is_loopback(&self) -> bool {
        matches!(self, Locality::Loopback { .. })
    }
}

/// The names RFC 6761 reserves for loopback: `localhost` and `*.localhost`.
fn is_localhost_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

fn is_loopback_ip(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Judge `host` (a name or an address, without port or brackets), resolving `localhost` names
/// with the system resolver.
pub fn locality(host: &str) -> Locality {
    locality_with(host, &|name| {
        (name, 0)
            .to_socket_addrs()
            .map(|addrs| addrs.map(|a| a.ip()).collect())
            .unwrap_or_default()
    })
}

fn locality_with(host: &str, resolve: &dyn Fn(&str) -> Vec<IpAddr>) -> Locality {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return if is_loopback_ip(ip) {
            Locality::Loopback { pinned: Vec::new() }
        } else {
            Locality::Remote
        };
    }
    if !is_localhost_name(host) {
        return Locality::Remote;
    }
    let mut addresses = resolve(host);
    addresses.dedup();
    if !addresses.is_empty() && addresses.iter().all(|ip| is_loopback_ip(*ip)) {
        Locality::Loopback {
            pinned: addresses
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 0))
                .collect(),
        }
    } else {
        Locality::NotLoopback { addresses }
    }
}

/// Whether `registry` (`host[:port]`) is this machine, so that plain HTTP is allowed to it.
pub fn is_loopback(registry: &str) -> bool {
    locality(split_host_port(registry).0).is_loopback()
}

/// Connections to `host` go to the addresses its judgement checked, and never through a proxy
/// when it is this machine.
pub fn pin(
    builder: reqwest::ClientBuilder,
    host: &str,
    locality: &Locality,
) -> reqwest::ClientBuilder {
    match locality {
        Locality::Loopback { pinned } if pinned.is_empty() => builder.no_proxy(),
        Locality::Loopback { pinned } => builder.resolve_to_addrs(host, pinned).no_proxy(),
        _ => builder,
    }
}

/// The `--insecure-registry` list: `host[:port]` entries allowed plain HTTP and unverified TLS
/// (a bare host: any port).
#[derive(Debug, Clone, Default)]
pub struct InsecureRegistries(Vec<String>);

impl InsecureRegistries {
    pub fn new(entries: Vec<String>) -> InsecureRegistries {
        InsecureRegistries(entries)
    }

    /// Whether `hostport` (`host[:port]`) is listed, by itself or by its host.
    pub fn contains(&self, hostport: &str) -> bool {
        let host = hostport.rsplit_once(':').map_or(hostport, |(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                hostport
            }
        });
        self.0.iter().any(|i| i == hostport || i == host)
    }
}

/// `host:port` of a URL as `--insecure-registry` spells it (brackets around IPv6).
pub fn url_host_port(url: &Url) -> String {
    // `host_str` keeps the brackets of an IPv6 address.
    let host = url.host_str().unwrap_or_default();
    match url.port_or_known_default() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// Credentials and the origin they belong to.
pub struct Credential<'a> {
    /// Any URL of the origin (scheme, host and port) the credentials are for.
    pub origin: &'a Url,
    pub authorization: &'a HeaderValue,
}

/// Why a request could not be sent.
#[derive(Debug)]
pub enum SendError {
    Http(reqwest::Error),
    /// A redirect that is not followed: where it pointed and why.
    Redirect {
        to: String,
        why: &'static str,
    },
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Http(e) => e.fmt(f),
            SendError::Redirect { to, why } => {
                write!(f, "a redirect to `{to}` is not followed: {why}")
            }
        }
    }
}

/// The headers of one hop to `url`: `headers`, and the credential's `Authorization` when `url`
/// is on its origin.
fn hop_headers(headers: &HeaderMap, credential: Option<&Credential>, url: &Url) -> HeaderMap {
    let mut hop = headers.clone();
    if let Some(c) = credential
        && c.origin.origin() == url.origin()
    {
        let mut v = c.authorization.clone();
        v.set_sensitive(true);
        hop.insert(header::AUTHORIZATION, v);
    }
    hop
}

/// The next hop of a redirect.
struct Hop {
    method: Method,
    url: Url,
    /// A `303` (or a `301`/`302` after a `POST`): a `GET` without the body.
    drops_body: bool,
}

/// Where a response to `method url` sends the request next, if it is a redirect to follow.
fn next_hop(
    status: u16,
    headers: &HeaderMap,
    method: &Method,
    url: &Url,
) -> Result<Option<Hop>, SendError> {
    let location = headers.get(header::LOCATION).and_then(|v| v.to_str().ok());
    let (true, Some(location)) = (matches!(status, 301 | 302 | 303 | 307 | 308), location) else {
        return Ok(None);
    };
    let next = url.join(location).map_err(|_| SendError::Redirect {
        to: location.to_string(),
        why: "not a valid URL",
    })?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(SendError::Redirect {
            to: next.to_string(),
            why: "not HTTP",
        });
    }
    let drops_body = status == 303 && *method != Method::HEAD
        || matches!(status, 301 | 302) && *method == Method::POST;
    Ok(Some(Hop {
        method: if drops_body {
            Method::GET
        } else {
            method.clone()
        },
        url: next,
        drops_body,
    }))
}

/// Send a request, following redirects by hand (the client is built without reqwest's): the
/// credential's `Authorization` goes with every hop on its origin and with no other, so a
/// redirect to storage on another host (a presigned URL) works without credentials, as docker
/// does, and a redirect from HTTPS to plain HTTP never carries them (another origin by scheme). A
/// body is never resent to another origin.
pub fn send(
    http: &Client,
    method: Method,
    url: Url,
    headers: &HeaderMap,
    body: Option<Bytes>,
    credential: Option<&Credential>,
) -> Result<Response, SendError> {
    let (mut method, mut url, mut body) = (method, url, body);
    for _ in 0..=MAX_REDIRECTS {
        let mut rb = http
            .request(method.clone(), url.clone())
            .headers(hop_headers(headers, credential, &url));
        if let Some(b) = &body {
            rb = rb.body(b.clone());
        }
        let resp = rb.send().map_err(SendError::Http)?;
        let Some(hop) = next_hop(resp.status().as_u16(), resp.headers(), &method, &url)? else {
            return Ok(resp);
        };
        if hop.drops_body {
            body = None;
        }
        if body.is_some() && hop.url.origin() != url.origin() {
            return Err(SendError::Redirect {
                to: hop.url.origin().ascii_serialization(),
                why: "it would send the request body to another origin",
            });
        }
        (method, url) = (hop.method, hop.url);
    }
    Err(SendError::Redirect {
        to: url.to_string(),
        why: "more than 10 redirects",
    })
}

/// `send` for a body streamed once, with the async client: redirects are followed only where
/// they drop the body (a `303`), since a stream cannot be sent again.
pub async fn send_stream(
    http: &reqwest::Client,
    method: Method,
    url: Url,
    headers: &HeaderMap,
    body: reqwest::Body,
    credential: Option<&Credential<'_>>,
) -> Result<reqwest::Response, SendError> {
    let (mut method, mut url, mut body) = (method, url, Some(body));
    for _ in 0..=MAX_REDIRECTS {
        let mut rb = http
            .request(method.clone(), url.clone())
            .headers(hop_headers(headers, credential, &url));
        let sent_body = body.is_some();
        if let Some(b) = body.take() {
            rb = rb.body(b);
        }
        let resp = rb.send().await.map_err(SendError::Http)?;
        let Some(hop) = next_hop(resp.status().as_u16(), resp.headers(), &method, &url)? else {
            return Ok(resp);
        };
        if sent_body && !hop.drops_body {
            return Err(SendError::Redirect {
                to: hop.url.to_string(),
                why: "a streamed request body cannot be sent again",
            });
        }
        (method, url) = (hop.method, hop.url);
    }
    Err(SendError::Redirect {
        to: url.to_string(),
        why: "more than 10 redirects",
    })
}

/// A limit on what one response body may hold in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit(pub u64);

/// A manifest or index: registries refuse more than 4 MiB (distribution), some allow more.
pub const MANIFEST_LIMIT: BodyLimit = BodyLimit(16 << 20);
/// A tag list or catalog page: a page of 1,000 names is ~100 KiB; registries that ignore `n`
/// and send every tag at once stay far below this too.
pub const LISTING_PAGE_LIMIT: BodyLimit = BodyLimit(16 << 20);
/// A token server's answer: a JWT or two (a few KiB, some tens with many scopes).
pub const TOKEN_LIMIT: BodyLimit = BodyLimit(1 << 20);
/// An error answer: only its `errors` codes and messages are wanted.
pub const ERROR_LIMIT: BodyLimit = BodyLimit(64 << 10);

impl fmt::Display for BodyLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            n if n >= 1 << 20 && n % (1 << 20) == 0 => write!(f, "{} MiB", n >> 20),
            n if n >= 1 << 10 && n % (1 << 10) == 0 => write!(f, "{} KiB", n >> 10),
            n => write!(f, "{n} bytes"),
        }
    }
}

/// Why a body was not read.
#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    Read(std::io::Error),
}

/// Read a whole body, refusing one longer than `limit` (announced or sent): at most
/// `limit + 1` bytes are read whatever the server streams.
pub fn read_body(resp: Response, limit: BodyLimit) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > limit.0) {
        return Err(BodyError::TooLarge);
    }
    let capacity = resp.content_length().unwrap_or(0).min(limit.0) as usize;
    let mut body = Vec::with_capacity(capacity);
    resp.take(limit.0 + 1)
        .read_to_end(&mut body)
        .map_err(BodyError::Read)?;
    if body.len() as u64 > limit.0 {
        return Err(BodyError::TooLarge);
    }
    Ok(body)
}

/// The start of an error answer's body read by the async client: at most `ERROR_LIMIT`, and
/// nothing when it is longer (as `read_body` with that limit), only the codes are wanted.
pub async fn read_error_body(mut resp: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() as u64 > ERROR_LIMIT.0 {
            return Vec::new();
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn splits_host_and_port() {
        assert_eq!(split_host_port("reg:5000"), ("reg", Some(5000)));
        assert_eq!(split_host_port("reg"), ("reg", None));
        assert_eq!(split_host_port("[::1]:5000"), ("::1", Some(5000)));
        assert_eq!(split_host_port("[::1]"), ("::1", None));
        assert_eq!(split_host_port("::1"), ("::1", None));
    }

    #[test]
    fn addresses_are_judged_without_resolving() {
        let never = |_: &str| -> Vec<IpAddr> { panic!("no lookup for an address") };
        for host in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert!(locality_with(host, &never).is_loopback(), "{host}");
        }
        for host in ["10.0.0.1", "2001:db8::1", "0.0.0.0"] {
            assert_eq!(locality_with(host, &never), Locality::Remote, "{host}");
        }
        assert_eq!(
            locality_with("localhost.example.com", &never),
            Locality::Remote
        );
        assert_eq!(locality_with("docker.io", &never), Locality::Remote);
    }

    #[test]
    fn a_localhost_name_is_loopback_only_when_every_address_is() {
        let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let elsewhere = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let answers = |ips: Vec<IpAddr>| move |_: &str| ips.clone();
        assert_eq!(
            locality_with("foo.localhost", &answers(vec![v4, v6])),
            Locality::Loopback {
                pinned: vec![SocketAddr::new(v4, 0), SocketAddr::new(v6, 0)]
            }
        );
        assert!(locality_with("LOCALHOST.", &answers(vec![v4])).is_loopback());
        assert_eq!(
            locality_with("foo.localhost", &answers(vec![v4, elsewhere])),
            Locality::NotLoopback {
                addresses: vec![v4, elsewhere]
            }
        );
        assert_eq!(
            locality_with("foo.localhost", &answers(vec![])),
            Locality::NotLoopback { addresses: vec![] }
        );
    }

    #[test]
    fn insecure_registries_match_host_or_host_and_port() {
        let list = InsecureRegistries::new(vec!["reg.example".into(), "other.example:5000".into()]);
        assert!(list.contains("reg.example"));
        assert!(list.contains("reg.example:443"));
        assert!(list.contains("other.example:5000"));
        assert!(!list.contains("other.example:5001"));
        assert!(!list.contains("other.example"));
        assert!(!list.contains("docker.io"));
    }

    #[test]
    fn url_host_port_spells_what_insecure_registry_takes() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            url_host_port(&u("http://auth.example/t")),
            "auth.example:80"
        );
        assert_eq!(url_host_port(&u("http://[::1]:8080/t")), "[::1]:8080");
        assert_eq!(url_host_port(&u("https://a:444/")), "a:444");
    }

    /// A server on `ip` answering each request with `answer(target)` (status, Location), and
    /// recording `(target, Authorization)` of each.
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>;

    fn server(ip: [u8; 4], answer: fn(&str) -> (u16, String)) -> (String, Seen) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind((Ipv4Addr::from(ip), 0)).unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut first, mut auth, mut length) = (String::new(), None, 0usize);
                reader.read_line(&mut first).unwrap();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    let (k, v) = line.split_once(": ").unwrap();
                    match k.to_ascii_lowercase().as_str() {
                        "authorization" => auth = Some(v.to_string()),
                        "content-length" => length = v.parse().unwrap(),
                        _ => {}
                    }
                }
                std::io::Read::read_exact(&mut reader, &mut vec![0; length]).unwrap();
                let target = first.split(' ').nth(1).unwrap().to_string();
                record.lock().unwrap().push((target.clone(), auth));
                let (status, location) = answer(&target);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        (origin, seen)
    }

    #[test]
    fn redirects_keep_credentials_and_bodies_on_their_origin() {
        let (elsewhere, seen_elsewhere) = server([127, 0, 0, 2], |_| (200, String::new()));
        static ELSEWHERE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        ELSEWHERE.set(elsewhere.clone()).unwrap();
        let (origin, seen) = server([127, 0, 0, 1], |target| match target {
            "/here" => (307, "/there".into()),
            "/away" => (307, format!("{}/storage", ELSEWHERE.get().unwrap())),
            "/loop" => (302, "/loop".into()),
            _ => (200, String::new()),
        });
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap();
        let base = Url::parse(&origin).unwrap();
        let secret = HeaderValue::from_static("Basic c2VjcmV0");
        let credential = Credential {
            origin: &base,
            authorization: &secret,
        };
        let go = |method: Method, path: &str, body: Option<Bytes>| {
            send(
                &http,
                method,
                base.join(path).unwrap(),
                &HeaderMap::new(),
                body,
                Some(&credential),
            )
        };
        // On the origin, every hop carries the credentials.
        assert_eq!(go(Method::GET, "/here", None).unwrap().status(), 200);
        // To another origin (storage), the request goes without them.
        assert_eq!(go(Method::GET, "/away", None).unwrap().status(), 200);
        let auth = |s: &[(String, Option<String>)], t: &str| {
            s.iter().find(|(x, _)| x == t).map(|(_, a)| a.clone())
        };
        let here = seen.lock().unwrap().clone();
        assert_eq!(auth(&here, "/here"), Some(Some("Basic c2VjcmV0".into())));
        assert_eq!(auth(&here, "/there"), Some(Some("Basic c2VjcmV0".into())));
        assert_eq!(
            *seen_elsewhere.lock().unwrap(),
            vec![("/storage".to_string(), None)]
        );
        // A body is not resent to another origin, and a loop ends.
        let refused = go(Method::PUT, "/away", Some(Bytes::from_static(b"blob"))).unwrap_err();
        assert!(
            refused
                .to_string()
                .ends_with("would send the request body to another origin"),
            "{refused}"
        );
        assert_eq!(seen_elsewhere.lock().unwrap().len(), 1);
        let looped = go(Method::GET, "/loop", None).unwrap_err();
        assert!(
            looped.to_string().contains("more than 10 redirects"),
            "{looped}"
        );
        let loops = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t == "/loop")
            .count();
        assert_eq!(loops, MAX_REDIRECTS + 1);
    }

    #[test]
    fn limits_print_in_binary_units() {
        assert_eq!(LISTING_PAGE_LIMIT.to_string(), "16 MiB");
        assert_eq!(ERROR_LIMIT.to_string(), "64 KiB");
        assert_eq!(BodyLimit(1000).to_string(), "1000 bytes");
    }
}
