//! ADD of a URL: an HTTP(S) GET (redirects followed, TLS through the registry client's
//! rustls with the system roots) streamed into a file, with `--checksum=sha256:…` verified.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::oci::{Algorithm, Digest, HashingWriter};

/// Download `url` to `dest`; returns its digest.
pub fn download(url: &str, dest: &Path, checksum: Option<&str>) -> Result<Digest, String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("{url}: not an http or https URL"));
    }
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(10))
        .connect_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(3600))
        .user_agent("manifold")
        .build()
        .map_err(|e| format!("{url}: {e}"))?;
    let mut resp = client.get(url).send().map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("{url}: the server answered {}", status.as_u16()));
    }
    let expected = resp.content_length();
    let file = fs::File::create(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    let mut w = HashingWriter::new(file, Algorithm::Sha256);
    let copied = resp.copy_to(&mut w).map_err(|e| format!("{url}: {e}"))?;
    if let Some(n) = expected
        && n != copied
    {
        return Err(format!(
            "{url}: the body was cut off ({copied} of {n} bytes)"
        ));
    }
    let (mut file, digest, _) = w.finish();
    file.flush()
        .map_err(|e| format!("{}: {e}", dest.display()))?;
    if let Some(want) = checksum {
        let want = Digest::parse(want).map_err(|e| format!("--checksum={want}: {e}"))?;
        if want != digest {
            return Err(format!(
                "{url}: checksum mismatch: expected {want}, got {digest}"
            ));
        }
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
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
