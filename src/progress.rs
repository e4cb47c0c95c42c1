//! How library code reports progress: a small trait (start, advance, finish) that only the CLI
//! implements with terminal bars or plain lines, so the library never prints.

/// Progress of long operations, keyed by an id the caller chooses (usually a short digest).
pub trait Progress: Send + Sync {
    /// A new task: `label` is shown to the user, `total` in bytes when known.
    fn start(&self, id: &str, label: &str, total: Option<u64>);
    /// `bytes` more bytes of task `id` are done.
    fn advance(&self, id: &str, bytes: u64);
    /// Task `id` ended; `outcome` is a short word or phrase ("done", "exists", "skipped").
    fn finish(&self, id: &str, outcome: &str);
    /// A one-line message that belongs to no task.
    fn message(&self, _text: &str) {}
    /// A message the user sees whatever the progress display (docker's "Unable to find image
    /// locally"): something happens they did not ask for.
    fn notice(&self, text: &str) {
        self.message(text)
    }
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: &str, _: Option<u64>) {}
    fn advance(&self, _: &str, _: u64) {}
    fn finish(&self, _: &str, _: &str) {}
}

/// A reader that reports every read to a progress task.
pub struct ProgressReader<'a, R> {
    inner: R,
    id: &'a str,
    progress: &'a dyn Progress,
}

impl<'a, R> ProgressReader<'a, R> {
    pub fn new(inner: R, id: &'a str, progress: &'a dyn Progress) -> Self {
        ProgressReader {
            inner,
            id,
            progress,
        }
    }
}

impl<R: std::io::Read> std::io::Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.progress.advance(self.id, n as u64);
        }
        Ok(n)
    }
}
