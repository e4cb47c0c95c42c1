//! What a registry was found to refuse or do differently from the distribution spec during this
//! run (a cross-repository mount, chunked uploads, `subject` fields, an OCI index holding
//! Docker schema2 manifests...): one record per registry, shared by every worker using its
//! transport, so each fallback is found once, said once on stderr, and taken directly from then
//! on.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::transport::Log;

/// How blobs larger than one chunk are uploaded (`Quirks::upload_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadMode {
    /// One `PUT ?digest=` carrying the whole blob, streamed.
    Monolithic,
    /// `PATCH` chunks with `Content-Range`, then `PUT ?digest=` (the spec's chunked upload):
    /// each chunk waits for the registry's answer, but a broken one resumes.
    Chunked,
    /// One `PATCH` without `Content-Range` carrying the whole blob, streamed, then an empty
    /// `PUT ?digest=` (what docker does).
    SinglePatch,
}

/// Something a registry was found to do, said once per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quirk {
    /// A cross-repository mount answered 401, 403, 404 or 405: no more mounts are tried.
    MountRefused,
    /// A mount answered with an upload session (202): the blob is uploaded into that session.
    MountSession,
    /// A `PATCH` with `Content-Range` was refused.
    ChunkedRefused,
    /// A `PUT` carrying the blob was refused.
    MonolithicRefused,
    /// A blob streamed in one request failed on the way (a broken connection, a server error).
    StreamBroke,
    /// A chunk was acknowledged with this status instead of 202.
    PatchStatus(u16),
    /// A manifest with `subject` or `artifactType` was refused.
    SubjectRefused,
    /// An OCI index holding Docker schema2 manifests was refused.
    MixedIndexRefused,
}

impl Quirk {
    /// What to say when it is found; `None` when the error that follows says it all.
    fn describe(self, registry: &str) -> Option<String> {
        Some(match self {
            Quirk::MountRefused => format!(
                "registry `{registry}` refuses cross-repository mounts: uploading blobs instead"
            ),
            Quirk::MountSession => format!(
                "registry `{registry}` answered a cross-repository mount with an upload session: uploading into it"
            ),
            Quirk::ChunkedRefused => format!(
                "registry `{registry}` refuses chunked uploads: using single-request uploads"
            ),
            Quirk::MonolithicRefused => {
                format!("registry `{registry}` refuses blobs in one PUT: uploading them by PATCH")
            }
            Quirk::StreamBroke => format!(
                "an upload to registry `{registry}` broke off: sending large blobs in resumable chunks"
            ),
            Quirk::PatchStatus(status) => format!(
                "registry `{registry}` acknowledges upload chunks with {status} instead of 202: accepted"
            ),
            Quirk::SubjectRefused => format!(
                "registry `{registry}` refuses `subject` and `artifactType` in manifests: listing referrers in the fallback tag `sha256-…`"
            ),
            Quirk::MixedIndexRefused => return None,
        })
    }
}

/// The quirks of one registry found so far in this run.
pub struct Quirks {
    registry: String,
    notice: Option<Log>,
    said: Mutex<HashSet<Quirk>>,
    no_chunks: AtomicBool,
    no_put: AtomicBool,
    broke: AtomicBool,
    no_mount: AtomicBool,
    no_subject: AtomicBool,
    no_mixed_index: AtomicBool,
    /// Whether the registry was asked if it takes a blob in a `PUT` (see
    /// `BlobStore::probe_put`); held while one worker asks, so the others wait for the answer.
    put_probed: Mutex<bool>,
}

impl Quirks {
    pub fn new(registry: &str, notice: Option<Log>) -> Quirks {
        Quirks {
            registry: registry.to_string(),
            notice,
            said: Mutex::new(HashSet::new()),
            no_chunks: AtomicBool::new(false),
            no_put: AtomicBool::new(false),
            broke: AtomicBool::new(false),
            no_mount: AtomicBool::new(false),
            no_subject: AtomicBool::new(false),
            no_mixed_index: AtomicBool::new(false),
            put_probed: Mutex::new(false),
        }
    }

    /// The flag saying whether a `PUT` probe was made, locked: the caller probes while it
    /// holds it if it is false.
    pub fn put_probe(&self) -> std::sync::MutexGuard<'_, bool> {
        self.put_probed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remember `quirk`; the first time, say it. Returns whether it was new.
    pub fn note(&self, quirk: Quirk) -> bool {
        match quirk {
            Quirk::MountRefused => self.no_mount.store(true, Ordering::Relaxed),
            Quirk::ChunkedRefused => self.no_chunks.store(true, Ordering::Relaxed),
            Quirk::MonolithicRefused => self.no_put.store(true, Ordering::Relaxed),
            Quirk::StreamBroke => self.broke.store(true, Ordering::Relaxed),
            Quirk::SubjectRefused => self.no_subject.store(true, Ordering::Relaxed),
            Quirk::MixedIndexRefused => self.no_mixed_index.store(true, Ordering::Relaxed),
            Quirk::MountSession | Quirk::PatchStatus(_) => {}
        }
        let new = self.said.lock().unwrap().insert(quirk);
        if new
            && let Some(notice) = &self.notice
            && let Some(line) = quirk.describe(&self.registry)
        {
            notice(&line);
        }
        new
    }

    /// How a blob larger than one chunk is sent: streamed in one request, the fastest (the
    /// registry receives without pause) — a `PUT`, or where a `PUT` carrying a blob was refused
    /// one `PATCH` (what docker sends) — and in chunks only once a streamed upload broke off
    /// (a broken chunk resumes, a broken stream starts over) and the registry takes chunks.
    /// Chunks wait for the registry's answer to each: where a `PUT` is refused they cost a
    /// third more than one `PATCH` (bench/registry.sh).
    pub fn upload_mode(&self) -> UploadMode {
        let resumable = self.broke.load(Ordering::Relaxed) && !self.chunks_refused();
        if resumable {
            UploadMode::Chunked
        } else if !self.put_refused() {
            UploadMode::Monolithic
        } else {
            UploadMode::SinglePatch
        }
    }

    /// Whether a `PATCH` with `Content-Range` was refused.
    pub fn chunks_refused(&self) -> bool {
        self.no_chunks.load(Ordering::Relaxed)
    }

    /// Whether a blob in a `PUT` was refused (small blobs then go in one `PATCH`).
    pub fn put_refused(&self) -> bool {
        self.no_put.load(Ordering::Relaxed)
    }

    pub fn mounts_refused(&self) -> bool {
        self.no_mount.load(Ordering::Relaxed)
    }

    pub fn subject_refused(&self) -> bool {
        self.no_subject.load(Ordering::Relaxed)
    }

    pub fn mixed_index_refused(&self) -> bool {
        self.no_mixed_index.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn each_quirk_is_said_once_and_upload_refusals_add_up() {
        let said = Arc::new(Mutex::new(Vec::new()));
        let sink = said.clone();
        let notice: Log = Arc::new(move |l: &str| sink.lock().unwrap().push(l.to_string()));
        let q = Quirks::new("reg:5000", Some(notice));
        assert_eq!(q.upload_mode(), UploadMode::Monolithic);
        assert!(q.note(Quirk::MonolithicRefused));
        assert!(!q.note(Quirk::MonolithicRefused));
        assert_eq!(q.upload_mode(), UploadMode::SinglePatch);
        assert!(q.put_refused());
        // A broken stream where a PUT is refused: chunks, which resume.
        q.note(Quirk::StreamBroke);
        assert_eq!(q.upload_mode(), UploadMode::Chunked);
        q.note(Quirk::ChunkedRefused);
        assert_eq!(q.upload_mode(), UploadMode::SinglePatch);
        // A broken stream: chunks, which resume, unless the registry refuses them.
        let other = Quirks::new("other", None);
        other.note(Quirk::StreamBroke);
        assert_eq!(other.upload_mode(), UploadMode::Chunked);
        other.note(Quirk::ChunkedRefused);
        assert_eq!(other.upload_mode(), UploadMode::Monolithic);
        assert!(!q.mounts_refused());
        q.note(Quirk::MountRefused);
        assert!(q.mounts_refused());
        assert_eq!(
            *said.lock().unwrap(),
            vec![
                "registry `reg:5000` refuses blobs in one PUT: uploading them by PATCH",
                "an upload to registry `reg:5000` broke off: sending large blobs in resumable chunks",
                "registry `reg:5000` refuses chunked uploads: using single-request uploads",
                "registry `reg:5000` refuses cross-repository mounts: uploading blobs instead",
            ]
        );
    }
}
