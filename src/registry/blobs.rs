//! Blobs: HEAD, GET as a stream that resumes with a `Range` request when the connection breaks,
//! and uploads — small blobs in one `PUT` from memory, large ones streamed in one `PUT` while
//! they are read (as `curl -T` does: the registry receives without pause); chunked PATCHes
//! (each chunk resent from where the registry says it stopped after a failure) where a registry
//! refuses blobs in a `PUT` and once a streamed upload broke off (they resume), one streamed
//! `PATCH` where it refuses both — and cross-repository mounts, falling back to an upload
//! (into the session a refused mount opened, if it did).

use std::io::{self, Read};
use std::time::Duration;

use bytes::Bytes;
use reqwest::blocking::Response;
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};

use super::error::RegistryError;
use super::medium::Repository;
use super::quirks::{Quirk, UploadMode};
use super::stream::Answer;
use super::transport::Request;
use crate::content::BlobLocation;
use crate::oci::{Descriptor, Digest};

/// Blobs smaller than this are held in memory and go in one request (sent again as they are
/// after a failure); larger ones are streamed, or go in PATCH chunks of this size. Also the most
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

    /// Upload a blob, verified by the registry against `desc.digest`. Small blobs go in one
    /// request from memory; larger ones streamed in one request, or in chunks (see
    /// `Quirks::upload_mode`), never whole in memory.
    pub fn upload_blob(
        &self,
        desc: &Descriptor,
        reader: &mut dyn Read,
    ) -> Result<(), RegistryError> {
        if desc.size >= CHUNK_SIZE as u64 {
            self.probe_put()?;
        }
        let mode = self.transport.quirks().upload_mode();
        if mode != UploadMode::Chunked && desc.size >= CHUNK_SIZE as u64 {
            // Known to go in one request: nothing to hold back.
            return self.upload_streamed(desc, mode, Vec::new(), reader);
        }
        let mut first = vec![0u8; CHUNK_SIZE.min(desc.size as usize + 1).max(1)];
        let n = read_full(reader, &mut first).map_err(|e| self.transfer("reading the blob", e))?;
        first.truncate(n);
        if n < CHUNK_SIZE && (n as u64) <= desc.size {
            return self.upload_whole(desc, Bytes::from(first));
        }
        match self.transport.quirks().upload_mode() {
            UploadMode::Chunked => self.upload_chunked(desc, Bytes::from(first), reader),
            mode => self.upload_streamed(desc, mode, vec![Bytes::from(first)], reader),
        }
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

    /// The upload session for `desc`: the one a refused mount opened, else a new one.
    fn session(&self, desc: &Descriptor) -> Result<String, RegistryError> {
        match self.sessions.lock().unwrap().remove(&desc.digest) {
            Some(location) => Ok(location),
            None => self.start_upload(),
        }
    }

    /// Keep the session a mount of `digest` opened, for its upload (cancelling an older one).
    fn keep_session(&self, digest: &Digest, location: String) {
        let older = self
            .sessions
            .lock()
            .unwrap()
            .insert(digest.clone(), location);
        if let Some(older) = older {
            self.cancel_upload(&older);
        }
    }

    /// Cancel an upload session, best effort (the registry expires it anyway).
    pub(super) fn cancel_upload(&self, location: &str) {
        let scopes = self.scopes_for_write();
        let req = Request::new(Method::DELETE, location, &scopes).repository(&self.name);
        let _ = self.transport.send_once(&req);
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

    /// The session's next location after a PATCH was acknowledged: its `Location`, or the same
    /// one when it sent none. The spec says 202; 201 and 204 (ECR and others) are accepted too.
    fn acknowledged(&self, status: StatusCode, headers: &HeaderMap, location: &str) -> String {
        if status.as_u16() != 202 {
            self.transport
                .quirks()
                .note(Quirk::PatchStatus(status.as_u16()));
        }
        self.location(headers, "uploading a chunk")
            .unwrap_or_else(|_| location.to_string())
    }

    /// `location` with `digest=` added to its query.
    fn with_digest(&self, location: &str, digest: &Digest) -> Result<String, RegistryError> {
        let mut url = self.transport.url(location)?;
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        Ok(url.to_string())
    }

    /// Before the first large blob goes to this registry in one streamed `PUT`: ask whether it
    /// takes a blob in a `PUT` at all, with a 1-byte body under a digest that body does not
    /// have (the registry answers DIGEST_INVALID and keeps nothing; one that refuses the form
    /// says so). Without it, every parallel worker streamed a whole layer into the refusal
    /// before the first one was known, then sent it again in chunks. The other workers wait
    /// for the answer; later blobs do not ask again.
    fn probe_put(&self) -> Result<(), RegistryError> {
        let quirks = self.transport.quirks();
        if quirks.put_refused() {
            return Ok(());
        }
        let mut probed = quirks.put_probe();
        if *probed {
            return Ok(());
        }
        let scopes = self.scopes_for_write();
        let location = self.start_upload()?;
        // Not the digest of the body (nor of anything manifold writes): a registry that did not
        // verify would keep one byte under a name nobody asks for.
        let digest = Digest::sha256_of(b"manifold: does this registry take a blob in a PUT?");
        let target = self.with_digest(&location, &digest)?;
        let req = Request::new(Method::PUT, target, &scopes)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(Bytes::from_static(b"\0"))
            .repository(&self.name);
        match self.transport.send_once(&req) {
            Err(e) if is_refusal(&e) => {
                quirks.note(Quirk::MonolithicRefused);
            }
            // DIGEST_INVALID (the form is taken), or anything else: the upload itself will say.
            _ => {}
        }
        self.cancel_upload(&location);
        *probed = true;
        Ok(())
    }

    /// Close a session whose data was sent by PATCH: an empty `PUT ?digest=`.
    fn finish_upload(&self, location: &str, desc: &Descriptor) -> Result<(), RegistryError> {
        let scopes = self.scopes_for_write();
        let target = self.with_digest(location, &desc.digest)?;
        let req = Request::new(Method::PUT, target, &scopes)
            .header(header::CONTENT_LENGTH, "0")
            .repository(&self.name);
        self.transport.send(&req)?;
        Ok(())
    }

    /// A blob held in memory (smaller than one chunk): one `PUT`, or one `PATCH` and an empty
    /// `PUT` where the registry refuses blobs in a `PUT`.
    fn upload_whole(&self, desc: &Descriptor, bytes: Bytes) -> Result<(), RegistryError> {
        let scopes = self.scopes_for_write();
        let quirks = self.transport.quirks();
        if !quirks.put_refused() {
            let location = self.session(desc)?;
            let target = self.with_digest(&location, &desc.digest)?;
            let req = Request::new(Method::PUT, target, &scopes)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .body(bytes.clone())
                .repository(&self.name);
            match self.transport.send(&req) {
                Err(e) if is_refusal(&e) => {
                    quirks.note(Quirk::MonolithicRefused);
                    self.cancel_upload(&location);
                }
                other => return other.map(|_| ()),
            }
        }
        let location = self.session(desc)?;
        let req = Request::new(Method::PATCH, location.clone(), &scopes)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes)
            .repository(&self.name);
        let resp = self.transport.send(&req)?;
        let next = self.acknowledged(resp.status(), resp.headers(), &location);
        self.finish_upload(&next, desc)
    }

    /// The spec's chunked upload. Where the registry refuses the first chunk, the chunks read so
    /// far and the rest of the reader go in one streamed request instead (said once, and done
    /// so directly for the rest of the run).
    fn upload_chunked(
        &self,
        desc: &Descriptor,
        first: Bytes,
        reader: &mut dyn Read,
    ) -> Result<(), RegistryError> {
        enum Outcome {
            Sent(String),
            Refused { location: String, read: Vec<Bytes> },
        }
        let start = self.session(desc)?;
        // The next chunk is read while the previous one is being sent: a copy from another
        // registry then downloads and uploads at the same time.
        let outcome = std::thread::scope(|scope| -> Result<Outcome, RegistryError> {
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
                let sent = sending.join().expect("the chunk sender does not panic");
                let n = match sent {
                    Err(e) if offset == 0 && is_refusal(&e) => {
                        let n = read.map_err(|e| self.transfer("reading the blob", e))?;
                        buf.truncate(n);
                        let mut read = vec![chunk];
                        if n > 0 {
                            read.push(Bytes::from(buf));
                        }
                        return Ok(Outcome::Refused { location, read });
                    }
                    sent => {
                        location = sent?;
                        offset += chunk.len() as u64;
                        read.map_err(|e| self.transfer("reading the blob", e))?
                    }
                };
                if n == 0 {
                    return Ok(Outcome::Sent(location));
                }
                buf.truncate(n);
                chunk = Bytes::from(buf);
            }
        })?;
        match outcome {
            Outcome::Sent(location) => self.finish_upload(&location, desc),
            Outcome::Refused { location, read } => {
                self.transport.quirks().note(Quirk::ChunkedRefused);
                self.cancel_upload(&location);
                let mode = self.transport.quirks().upload_mode();
                self.upload_streamed(desc, mode, read, reader)
            }
        }
    }

    /// The whole blob in one streamed request: `PUT ?digest=` carrying it, or (`SinglePatch`)
    /// one `PATCH` without `Content-Range` and an empty `PUT`. A `PUT` the registry refuses
    /// cannot be sent again from a stream already read: the error asks the copy to send the
    /// blob again, which then takes another way.
    fn upload_streamed(
        &self,
        desc: &Descriptor,
        mode: UploadMode,
        read: Vec<Bytes>,
        reader: &mut dyn Read,
    ) -> Result<(), RegistryError> {
        let scopes = self.scopes_for_write();
        let location = self.session(desc)?;
        if mode != UploadMode::SinglePatch {
            let target = self.with_digest(&location, &desc.digest)?;
            let req = Request::new(Method::PUT, target, &scopes)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .repository(&self.name);
            return match self.stream(&req, read, reader, desc.size) {
                Err(e) if is_refusal(&e) => {
                    self.transport.quirks().note(Quirk::MonolithicRefused);
                    self.cancel_upload(&location);
                    Err(RegistryError::UploadMethodRefused {
                        registry: self.transport.registry().to_string(),
                        cause: Box::new(e),
                    })
                }
                other => other.map(|_| ()),
            };
        }
        let req = Request::new(Method::PATCH, location.clone(), &scopes)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .repository(&self.name);
        let answer = self.stream(&req, read, reader, desc.size)?;
        let next = self.acknowledged(answer.status, &answer.headers, &location);
        self.finish_upload(&next, desc)
    }

    /// Send `request` with `read` and then the rest of `reader` (`len` bytes in all) as its
    /// body, read on this thread in `STREAM_PIECE`s while the request is in flight, so a few
    /// MiB are held whatever the blob's size. A request that failed on the way (not for the
    /// reader, not refused) makes the next large blobs go in chunks, which resume.
    fn stream(
        &self,
        request: &Request,
        read: Vec<Bytes>,
        reader: &mut dyn Read,
        len: u64,
    ) -> Result<Answer, RegistryError> {
        let mut upload = self.transport.start_stream(request, len)?;
        let failed = (|| {
            for piece in read {
                if !upload.send(piece) {
                    return None;
                }
            }
            loop {
                let mut buf = vec![0u8; STREAM_PIECE];
                match read_full(reader, &mut buf) {
                    Ok(0) => return None,
                    Ok(n) => {
                        buf.truncate(n);
                        if !upload.send(Bytes::from(buf)) {
                            return None;
                        }
                    }
                    Err(e) => return Some(e),
                }
            }
        })();
        let answer = upload.finish();
        if let Some(e) = failed {
            return Err(self.transfer("reading the blob", e));
        }
        let quirks = self.transport.quirks();
        if let Err(e) = &answer
            && e.is_retryable()
            && !quirks.chunks_refused()
        {
            quirks.note(Quirk::StreamBroke);
        }
        answer
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
                Ok(resp) => return Ok(self.acknowledged(resp.status(), resp.headers(), &location)),
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
    /// would not: a refusal (401, 403, 404, 405) is remembered for the rest of the run and no
    /// more mounts are asked of it; an upload session it opened instead (202) is kept for the
    /// blob's upload.
    pub fn mount_blob(&self, digest: &Digest, from: &BlobLocation) -> Result<bool, RegistryError> {
        let quirks = self.transport.quirks();
        if quirks.mounts_refused() {
            return Ok(false);
        }
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
            Err(RegistryError::Denied { .. }) | Err(RegistryError::Unauthorized { .. }) => {
                quirks.note(Quirk::MountRefused);
                return Ok(false);
            }
            Err(RegistryError::Status(s)) if matches!(s.status, 404 | 405) => {
                quirks.note(Quirk::MountRefused);
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        if resp.status().as_u16() == 201 {
            return Ok(true);
        }
        // Harbor answers so when the source is in a project it will not read from for us,
        // distribution when the blob is not in that repository (a stale location): either way
        // the blob goes into this session.
        if let Ok(location) = self.location(resp.headers(), "a mount") {
            quirks.note(Quirk::MountSession);
            self.keep_session(digest, location);
        }
        Ok(false)
    }
}

/// Whether a registry refused the way a blob was sent (rather than its content): a chunk with
/// `Content-Range`, a blob in a `PUT`. Digest and size complaints are about the content.
fn is_refusal(e: &RegistryError) -> bool {
    let RegistryError::Status(s) = e else {
        return false;
    };
    if s.has_code("UNSUPPORTED") {
        return true;
    }
    match s.status {
        405 | 415 | 416 | 501 => true,
        400 => s.errors.iter().all(|e| e.code == "BLOB_UPLOAD_INVALID"),
        _ => false,
    }
}

/// Pieces a streamed body is read and sent in: large enough that each costs little to hand
/// over and write, small enough that the few waiting hold little.
const STREAM_PIECE: usize = 1 << 20;

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
