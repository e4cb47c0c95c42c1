//! Blobs: HEAD, GET as a stream that resumes with a `Range` request when the connection breaks,
//! and uploads — monolithic (POST + PUT) for small blobs, chunked PATCHes for large ones (each
//! chunk resent from where the registry says it stopped after a failure), and cross-repository
//! mounts.

use std::io::{self, Read};
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use reqwest::blocking::Response;
use reqwest::header::{self, HeaderMap};

use super::error::RegistryError;
use super::medium::Repository;
use super::transport::Request;
use crate::content::BlobLocation;
use crate::oci::{Descriptor, Digest};

/// Blobs up to this size go in one PUT; larger ones in PATCH chunks of this size. Also the most
/// memory one upload holds.
pub const CHUNK_SIZE: usize = 16 << 20;
/// Times a download may resume after its connection broke.
const MAX_RESUMES: u32 = 8;

impl Repository {
    fn blob_path(&self, digest: &Digest) -> String {
        format!("/v2/{}/blobs/{digest}", self.name)
    }

    pub fn blob_exists(&self, digest: &Digest) -> Result<bool, RegistryError> {
        let scopes = self.scopes_for_write();
        let req =
            Request::new(Method::HEAD, self.blob_path(digest), &scopes).repository(&self.name);
        match self.transport.send(&req) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A GET of the blob from byte `offset` (redirects to storage are followed; credentials are
    /// not sent to another host).
    fn get_blob(&self, digest: &Digest, offset: u64) -> Result<Response, RegistryError> {
        let scopes = self.scopes_for_read();
        let mut req =
            Request::new(Method::GET, self.blob_path(digest), &scopes).repository(&self.name);
        if offset > 0 {
            req = req.header(header::RANGE, &format!("bytes={offset}-"));
        }
        self.transport.send(&req)
    }

    /// Stream a blob. The stream resumes by itself after broken connections and never yields
    /// more than `desc.size` bytes; the reader of the stream checks the digest.
    pub fn blob_reader(&self, desc: &Descriptor) -> Result<BlobReader<'_>, RegistryError> {
        let response = self.get_blob(&desc.digest, 0)?;
        Ok(BlobReader {
            repo: self,
            digest: desc.digest.clone(),
            size: desc.size,
            offset: 0,
            response: Some(response),
            resumes: 0,
        })
    }

    /// Upload a blob, verified by the registry against `desc.digest`.
    pub fn upload_blob(
        &self,
        desc: &Descriptor,
        reader: &mut dyn Read,
    ) -> Result<(), RegistryError> {
        let mut first = vec![0u8; CHUNK_SIZE.min(desc.size as usize + 1).max(1)];
        let n = read_full(reader, &mut first).map_err(|e| self.transfer("reading the blob", e))?;
        first.truncate(n);
        if n < CHUNK_SIZE && (n as u64) <= desc.size {
            return self.upload_monolithic(desc, Bytes::from(first));
        }
        self.upload_chunked(desc, Bytes::from(first), reader)
    }

    fn transfer(&self, what: &str, source: io::Error) -> RegistryError {
        RegistryError::Transfer {
            registry: self.transport.registry().to_string(),
            what: what.to_string(),
            source,
        }
    }

    /// POST a new upload session; returns its location.
    fn start_upload(&self) -> Result<String, RegistryError> {
        let scopes = self.scopes_for_write();
        let req = Request::new(
            Method::POST,
            format!("/v2/{}/blobs/uploads/", self.name),
            &scopes,
        )
        .header(header::CONTENT_LENGTH, "0")
        .repository(&self.name);
        let resp = self.transport.send(&req)?;
        self.location(resp.headers(), "starting an upload")
    }

    fn location(&self, headers: &HeaderMap, what: &str) -> Result<String, RegistryError> {
        headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| RegistryError::Protocol {
                registry: self.transport.registry().to_string(),
                what: what.to_string(),
                why: "no Location header".into(),
            })
    }

    /// `location` with `digest=` added to its query.
    fn with_digest(&self, location: &str, digest: &Digest) -> Result<String, RegistryError> {
        let mut url = self.transport.url(location)?;
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        Ok(url.to_string())
    }

    fn upload_monolithic(&self, desc: &Descriptor, bytes: Bytes) -> Result<(), RegistryError> {
        let scopes = self.scopes_for_write();
        let location = self.start_upload()?;
        let target = self.with_digest(&location, &desc.digest)?;
        let req = Request::new(Method::PUT, target, &scopes)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes)
            .repository(&self.name);
        self.transport.send(&req)?;
        Ok(())
    }

    fn upload_chunked(
        &self,
        desc: &Descriptor,
        first: Bytes,
        reader: &mut dyn Read,
    ) -> Result<(), RegistryError> {
        let scopes = self.scopes_for_write();
        let start = self.start_upload()?;
        // The next chunk is read while the previous one is being sent: a copy from another
        // registry then downloads and uploads at the same time.
        let location = std::thread::scope(|scope| -> Result<String, RegistryError> {
            let mut location = start;
            let mut offset = 0u64;
            let mut chunk = first;
            loop {
                let sending = {
                    let (location, chunk) = (location.clone(), chunk.clone());
                    scope.spawn(move || self.send_chunk(&location, offset, &chunk))
                };
                let mut buf = vec![0u8; CHUNK_SIZE];
                let read = read_full(reader, &mut buf);
                location = sending.join().expect("the chunk sender does not panic")?;
                offset += chunk.len() as u64;
                let n = read.map_err(|e| self.transfer("reading the blob", e))?;
                if n == 0 {
                    return Ok(location);
                }
                buf.truncate(n);
                chunk = Bytes::from(buf);
            }
        })?;
        let target = self.with_digest(&location, &desc.digest)?;
        let req = Request::new(Method::PUT, target, &scopes)
            .header(header::CONTENT_LENGTH, "0")
            .repository(&self.name);
        self.transport.send(&req)?;
        Ok(())
    }

    /// PATCH `chunk` (which starts at `offset` of the blob); after a failure, ask the registry
    /// how much it has and send the rest of the chunk from there. Returns the next location.
    fn send_chunk(
        &self,
        location: &str,
        offset: u64,
        chunk: &Bytes,
    ) -> Result<String, RegistryError> {
        let scopes = self.scopes_for_write();
        let policy = self.transport.retry_policy().clone();
        let mut location = location.to_string();
        let mut sent = 0usize; // bytes of `chunk` the registry has acknowledged
        let mut attempt = 1;
        loop {
            let part = chunk.slice(sent..);
            let start = offset + sent as u64;
            let end = start + part.len() as u64 - 1;
            let req = Request::new(Method::PATCH, location.clone(), &scopes)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_RANGE, &format!("{start}-{end}"))
                .body(part)
                .repository(&self.name);
            match self.transport.send_once(&req) {
                Ok(resp) => return self.location(resp.headers(), "uploading a chunk"),
                Err(e) if e.is_retryable() && attempt < policy.attempts => {
                    let delay = policy.delay(attempt, &e);
                    self.transport
                        .log(&format!("{e}; resuming the upload in {delay:?}"));
                    std::thread::sleep(delay);
                    attempt += 1;
                    // A session the registry no longer accepts (a chunk broke off midway
                    // leaves distribution's upload state behind its data): the whole blob is
                    // sent again in a new session, by the caller.
                    let (next, received) = self.upload_status(&location).map_err(|cause| {
                        RegistryError::UploadLost {
                            registry: self.transport.registry().to_string(),
                            cause: Box::new(cause),
                        }
                    })?;
                    location = next;
                    if received < offset || received > offset + chunk.len() as u64 {
                        return Err(RegistryError::Protocol {
                            registry: self.transport.registry().to_string(),
                            what: "resuming an upload".into(),
                            why: format!(
                                "it has {received} bytes, expected between {offset} and {}",
                                offset + chunk.len() as u64
                            ),
                        });
                    }
                    sent = (received - offset) as usize;
                    if sent == chunk.len() {
                        return Ok(location);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// How many bytes an upload session holds (its `Range: 0-N`), and its current location.
    fn upload_status(&self, location: &str) -> Result<(String, u64), RegistryError> {
        let scopes = self.scopes_for_write();
        let req = Request::new(Method::GET, location, &scopes).repository(&self.name);
        let resp = self.transport.send(&req)?;
        let received = resp
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|r| r.trim_start_matches("bytes=").split_once('-'))
            .and_then(|(_, end)| end.parse::<u64>().ok())
            // distribution answers `0-0` for an empty session too: read it as nothing received
            // (resending one byte too many is refused; skipping one would corrupt the blob).
            .map_or(0, |end| if end == 0 { 0 } else { end + 1 });
        let next = self
            .location(resp.headers(), "an upload's status")
            .unwrap_or_else(|_| location.to_string());
        Ok((next, received))
    }

    /// Mount `digest` from another repository of this registry. `Ok(false)` when the registry
    /// would not (it then opened an upload session, which is cancelled).
    pub fn mount_blob(&self, digest: &Digest, from: &BlobLocation) -> Result<bool, RegistryError> {
        let mut scopes = self.scopes_for_write();
        // The token must also grant pull on the source repository.
        scopes.push(super::auth::repository_scope(&from.repository, "pull"));
        let mut url = self
            .transport
            .url(&format!("/v2/{}/blobs/uploads/", self.name))?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", &from.repository);
        let req = Request::new(Method::POST, url.to_string(), &scopes)
            .header(header::CONTENT_LENGTH, "0")
            .repository(&self.name);
        let resp = match self.transport.send(&req) {
            Ok(r) => r,
            // No access to the source, or it is gone: upload instead.
            Err(RegistryError::Denied { .. }) | Err(RegistryError::Unauthorized { .. }) => {
                return Ok(false);
            }
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e),
        };
        if resp.status().as_u16() == 201 {
            return Ok(true);
        }
        if let Ok(location) = self.location(resp.headers(), "a mount") {
            let req = Request::new(Method::DELETE, location, &scopes).repository(&self.name);
            let _ = self.transport.send_once(&req);
        }
        Ok(false)
    }
}

/// Fill `buf` as far as the reader goes; returns the bytes read (less only at the end).
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A blob download that picks up where it broke off.
pub struct BlobReader<'a> {
    repo: &'a Repository,
    digest: Digest,
    size: u64,
    offset: u64,
    response: Option<Response>,
    resumes: u32,
}

impl BlobReader<'_> {
    fn resume(&mut self, cause: io::Error) -> io::Result<()> {
        self.response = None;
        self.resumes += 1;
        if self.resumes > MAX_RESUMES {
            return Err(cause);
        }
        let delay = Duration::from_millis(100 * u64::from(self.resumes));
        self.repo.transport.log(&format!(
            "blob {} broke off at byte {} of {} ({cause}); resuming in {delay:?}",
            self.digest, self.offset, self.size
        ));
        std::thread::sleep(delay);
        let mut response = self
            .repo
            .get_blob(&self.digest, self.offset)
            .map_err(io::Error::other)?;
        if response.status().as_u16() != 206 {
            // The registry ignored the range: skip what we have.
            let skipped = io::copy(&mut (&mut response).take(self.offset), &mut io::sink())?;
            if skipped != self.offset {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the blob is shorter on a second download",
                ));
            }
        }
        self.response = Some(response);
        Ok(())
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let remaining = self.size - self.offset.min(self.size);
            if remaining == 0 {
                return Ok(0);
            }
            let want = buf.len().min(remaining.min(usize::MAX as u64) as usize);
            let Some(response) = self.response.as_mut() else {
                self.resume(io::Error::other("no connection"))?;
                continue;
            };
            match response.read(&mut buf[..want]) {
                Ok(0) => {
                    let cause = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the body ended at byte {} of {}", self.offset, self.size),
                    );
                    self.resume(cause)?;
                }
                Ok(n) => {
                    self.offset += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => self.resume(e)?,
            }
        }
    }
}
