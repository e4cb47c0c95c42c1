//! ADD of a URL: an HTTP(S) GET (redirects followed, TLS through the registry client's
//! rustls with the system roots) streamed into a file, with `--checksum=sha256:…` verified.
//!
//! Revalidated as BuildKit does: the ETag and Last-Modified a server sent for a URL are kept
//! (with the digest of what it sent) and the next build asks with `If-None-Match` and
//! `If-Modified-Since`; a `304 Not Modified` means the same content. Either way the step's
//! cache key is the content's digest, never the URL alone.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use serde::{Deserialize, Serialize};

use crate::oci::{Algorithm, Digest, HashingWriter};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}: not an http or https URL")]
    Scheme(String),
    #[error("cannot get {url}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: the server answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: the body was cut off ({got} of {expected} bytes)")]
    CutOff {
        url: String,
        got: u64,
        expected: u64,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("--checksum={0}: not a digest such as sha256:…")]
    BadChecksum(String),
    #[error("{url}: checksum mismatch: expected {expected}, got {got}")]
    Checksum {
        url: String,
        expected: Digest,
        got: Digest,
    },
    #[error(
        "{url}: the content changed while the build ran (it was {was}, now {now}); run the build again"
    )]
    Changed {
        url: String,
        was: Digest,
        now: Digest,
    },
    #[error("cannot keep what {url} sent to revalidate it")]
    Cache {
        url: String,
        #[source]
        source: crate::store::StoreError,
    },
}

/// What a server said about a URL, kept between builds to revalidate it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    pub url: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// The content these validators stand for.
    pub digest: Digest,
}

/// The answer to a (conditional) GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The body, now in the file given, with its digest and what to revalidate it with next
    /// time (None when the server sent neither ETag nor Last-Modified).
    Body {
        digest: Digest,
        validators: Option<Validators>,
    },
    /// 304: the content is what `known` describes.
    Unchanged { digest: Digest },
}

impl Fetched {
    pub fn digest(&self) -> &Digest {
        match self {
            Fetched::Body { digest, .. } | Fetched::Unchanged { digest } => digest,
        }
    }
}

/// GET `url` into `dest`, conditionally when `known` says what the server sent before.
pub fn fetch(url: &str, dest: &Path, known: Option<&Validators>) -> Result<Fetched, FetchError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(FetchError::Scheme(url.to_string()));
    }
    let request_err = |source| FetchError::Request {
        url: url.to_string(),
        source,
    };
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(10))
        .connect_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(3600))
        .user_agent("manifold")
        .build()
        .map_err(request_err)?;
    let mut req = client.get(url);
    if let Some(k) = known.filter(|k| k.url == url) {
        if let Some(e) = &k.etag {
            req = req.header(IF_NONE_MATCH, e);
        }
        if let Some(m) = &k.last_modified {
            req = req.header(IF_MODIFIED_SINCE, m);
        }
    }
    let mut resp = req.send().map_err(request_err)?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_MODIFIED
        && let Some(k) = known
    {
        return Ok(Fetched::Unchanged {
            digest: k.digest.clone(),
        });
    }
    if !status.is_success() {
        return Err(FetchError::Status {
            url: url.to_string(),
            status: status.as_u16(),
        });
    }
    let header = |name| {
        resp.headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header(ETAG);
    let last_modified = header(LAST_MODIFIED);
    let expected = resp.content_length();
    let write_err = |source| FetchError::Write {
        path: dest.to_path_buf(),
        source,
    };
    let file = fs::File::create(dest).map_err(write_err)?;
    let mut w = HashingWriter::new(file, Algorithm::Sha256);
    let copied = resp.copy_to(&mut w).map_err(request_err)?;
    if let Some(n) = expected
        && n != copied
    {
        return Err(FetchError::CutOff {
            url: url.to_string(),
            got: copied,
            expected: n,
        });
    }
    let (mut file, digest, _) = w.finish();
    file.flush().map_err(write_err)?;
    let validators = (etag.is_some() || last_modified.is_some()).then(|| Validators {
        url: url.to_string(),
        etag,
        last_modified,
        digest: digest.clone(),
    });
    Ok(Fetched::Body { digest, validators })
}

/// Check `--checksum` against what was fetched.
pub fn verify(url: &str, digest: &Digest, checksum: Option<&str>) -> Result<(), FetchError> {
    let Some(want) = checksum else {
        return Ok(());
    };
    let want = Digest::parse(want).map_err(|_| FetchError::BadChecksum(want.to_string()))?;
    if &want != digest {
        return Err(FetchError::Checksum {
            url: url.to_string(),
            expected: want,
            got: digest.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// Serves `responses` in order, one connection each; the request heads come back on the
    /// channel.
    fn serve(responses: Vec<String>) -> (u16, mpsc::Receiver<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for resp in responses {
                let (mut s, _) = l.accept().unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&got).to_ascii_lowercase());
                s.write_all(resp.as_bytes()).unwrap();
            }
        });
        (port, rx)
    }

    fn body(f: Fetched) -> (Digest, Option<Validators>) {
        match f {
            Fetched::Body { digest, validators } => (digest, validators),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sized_chunked_and_redirected() {
        let (port, _) = serve(vec![
            "HTTP/1.1 302 Found\r\nLocation: /real\r\n\r\n".into(),
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".into(),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
                .into(),
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".into(),
            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\ncut".into(),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        let (d, v) = body(fetch(&format!("http://127.0.0.1:{port}/x"), &f, None).unwrap());
        assert_eq!(fs::read(&f).unwrap(), b"hello");
        assert_eq!(d, Digest::sha256_of(b"hello"));
        assert_eq!(v, None, "nothing to revalidate with");
        let (d, _) = body(fetch(&format!("http://127.0.0.1:{port}/c"), &f, None).unwrap());
        assert_eq!(fs::read(&f).unwrap(), b"abcde");
        assert_eq!(d, Digest::sha256_of(b"abcde"));
        let e = fetch(&format!("http://127.0.0.1:{port}/n"), &f, None).unwrap_err();
        assert!(matches!(e, FetchError::Status { status: 404, .. }), "{e}");
        let e = fetch(&format!("http://127.0.0.1:{port}/t"), &f, None).unwrap_err();
        assert!(
            matches!(e, FetchError::CutOff { .. } | FetchError::Request { .. }),
            "{e}"
        );
        assert!(matches!(
            fetch("ftp://127.0.0.1/x", &f, None),
            Err(FetchError::Scheme(_))
        ));
    }

    #[test]
    fn checksums() {
        let d = Digest::sha256_of(b"x");
        assert!(verify("u", &d, None).is_ok());
        assert!(verify("u", &d, Some(&d.to_string())).is_ok());
        let other = Digest::sha256_of(b"y").to_string();
        assert!(matches!(
            verify("u", &d, Some(&other)),
            Err(FetchError::Checksum { .. })
        ));
        assert!(matches!(
            verify("u", &d, Some("md5:x")),
            Err(FetchError::BadChecksum(_))
        ));
    }

    #[test]
    fn revalidation_with_etag_and_last_modified() {
        let (port, heads) = serve(vec![
            "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nLast-Modified: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: 2\r\n\r\nv1"
                .into(),
            "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n".into(),
            "HTTP/1.1 200 OK\r\nETag: \"v2\"\r\nContent-Length: 2\r\n\r\nv2".into(),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        let url = format!("http://127.0.0.1:{port}/file");
        let (d1, v1) = body(fetch(&url, &f, None).unwrap());
        let v1 = v1.expect("validators");
        assert_eq!(v1.etag.as_deref(), Some("\"v1\""));
        assert_eq!(v1.digest, d1);
        assert!(!heads.recv().unwrap().contains("if-none-match"));
        let again = fetch(&url, &dir.path().join("g"), Some(&v1)).unwrap();
        assert_eq!(again, Fetched::Unchanged { digest: d1.clone() });
        let head = heads.recv().unwrap();
        assert!(head.contains("if-none-match: \"v1\""), "{head}");
        assert!(
            head.contains("if-modified-since: mon, 01 jan 2024 00:00:00 gmt"),
            "{head}"
        );
        let (d2, v2) = body(fetch(&url, &f, Some(&v1)).unwrap());
        assert_ne!(d1, d2);
        assert_eq!(fs::read(&f).unwrap(), b"v2");
        assert_eq!(v2.unwrap().etag.as_deref(), Some("\"v2\""));
    }
}
