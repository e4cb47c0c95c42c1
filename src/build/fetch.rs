//! ADD of a URL: a plain HTTP/1.1 GET (redirects followed, chunked or sized bodies) into a
//! file, with `--checksum=sha256:…` verified. https is refused until the registry client's
//! TLS stack is available to the builder.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::oci::{Algorithm, Digest, HashingWriter};

/// Download `url` to `dest`; returns its digest.
pub fn download(url: &str, dest: &Path, checksum: Option<&str>) -> Result<Digest, String> {
    let mut url = url.to_string();
    for _ in 0..10 {
        match get(&url, dest)? {
            Fetched::Done(d) => {
                if let Some(want) = checksum {
                    let want =
                        Digest::parse(want).map_err(|e| format!("--checksum={want}: {e}"))?;
                    if want != d {
                        return Err(format!(
                            "{url}: checksum mismatch: expected {want}, got {d}"
                        ));
                    }
                }
                return Ok(d);
            }
            Fetched::Redirect(to) => {
                url = if to.starts_with("http://") || to.starts_with("https://") {
                    to
                } else {
                    let (scheme_host, _) = split_url(&url)?;
                    format!(
                        "{scheme_host}{}",
                        if to.starts_with('/') {
                            to
                        } else {
                            format!("/{to}")
                        }
                    )
                };
            }
        }
    }
    Err(format!("{url}: too many redirects"))
}

enum Fetched {
    Done(Digest),
    Redirect(String),
}

/// (`http://host:port`, `/path?query`)
fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        if url.starts_with("https://") {
            format!(
                "{url}: ADD of https URLs is not supported yet; download it in the context first"
            )
        } else {
            format!("{url}: not an http URL")
        }
    })?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((format!("http://{host}"), path.to_string()))
}

fn get(url: &str, dest: &Path) -> Result<Fetched, String> {
    let (scheme_host, path) = split_url(url)?;
    let host = scheme_host.trim_start_matches("http://");
    let addr = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let err = |e: std::io::Error| format!("{url}: {e}");
    let mut stream = TcpStream::connect(&addr).map_err(err)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(err)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: manifold\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(err)?;
    let mut r = BufReader::new(stream);
    let mut status_line = String::new();
    r.read_line(&mut status_line).map_err(err)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{url}: not an HTTP response"))?;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut location = None;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).map_err(err)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let v = v.trim();
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.parse().ok(),
                "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                "location" => location = Some(v.to_string()),
                _ => {}
            }
        }
    }
    if (300..400).contains(&status) {
        return location
            .map(Fetched::Redirect)
            .ok_or_else(|| format!("{url}: redirect without Location"));
    }
    if status != 200 {
        return Err(format!("{url}: the server answered {status}"));
    }
    let file = fs::File::create(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    let mut w = HashingWriter::new(file, Algorithm::Sha256);
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).map_err(err)?;
            let n = u64::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| format!("{url}: bad chunk size"))?;
            if n == 0 {
                break;
            }
            let copied = std::io::copy(&mut (&mut r).take(n), &mut w).map_err(err)?;
            if copied != n {
                return Err(format!("{url}: the body was cut off"));
            }
            let mut crlf = String::new();
            r.read_line(&mut crlf).map_err(err)?;
        }
    } else if let Some(n) = length {
        let copied = std::io::copy(&mut (&mut r).take(n), &mut w).map_err(err)?;
        if copied != n {
            return Err(format!(
                "{url}: the body was cut off ({copied} of {n} bytes)"
            ));
        }
    } else {
        std::io::copy(&mut r, &mut w).map_err(err)?;
    }
    let (mut file, digest, _) = w.finish();
    file.flush().map_err(err)?;
    Ok(Fetched::Done(digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves `responses` in order, one connection each.
    fn serve(responses: Vec<String>) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
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
                s.write_all(resp.as_bytes()).unwrap();
            }
        });
        port
    }

    #[test]
    fn sized_chunked_and_redirected() {
        let port = serve(vec![
            "HTTP/1.1 302 Found\r\nLocation: /real\r\n\r\n".into(),
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".into(),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
                .into(),
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".into(),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        let d = download(&format!("http://127.0.0.1:{port}/x"), &f, None).unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"hello");
        assert_eq!(d, Digest::sha256_of(b"hello"));
        let want = Digest::sha256_of(b"abcde").to_string();
        download(&format!("http://127.0.0.1:{port}/c"), &f, Some(&want)).unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"abcde");
        let e = download(&format!("http://127.0.0.1:{port}/n"), &f, None).unwrap_err();
        assert!(e.contains("404"), "{e}");
        assert!(
            download("https://127.0.0.1/x", &f, None)
                .unwrap_err()
                .contains("https")
        );
    }

    #[test]
    fn checksum_mismatch_fails() {
        let port = serve(vec!["HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx".into()]);
        let dir = tempfile::tempdir().unwrap();
        let want = Digest::sha256_of(b"y").to_string();
        let e = download(
            &format!("http://127.0.0.1:{port}/"),
            &dir.path().join("f"),
            Some(&want),
        )
        .unwrap_err();
        assert!(e.contains("checksum mismatch"), "{e}");
    }
}
