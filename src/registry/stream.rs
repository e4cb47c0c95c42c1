//! Request bodies streamed from blocking code in large pieces: a blob uploaded in one request.
//!
//! reqwest's blocking client pumps a streamed body 8 KiB at a time through a channel to its
//! runtime thread (a thread handoff and a socket write per 8 KiB): on a copy that cost 3–4 times
//! the CPU of the same bytes sent as chunks held in memory. Here reqwest's async client sends the
//! pieces as they come (1 MiB from the blob uploads) on a runtime of its own with one worker
//! thread, fed by the blocking caller through a bounded channel, so a few pieces are held
//! whatever the body's size. In place of a total timeout (a large blob on a slow link may take
//! longer than any fixed bound) a request fails when it makes no progress for `STALL_LIMIT`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::http::{self, Credential, SendError};

/// How many pieces may wait to be sent.
const DEPTH: usize = 4;
/// A request that sends nothing and hears nothing for this long fails (as the blocking
/// client's timeout bounds each exchange).
pub const STALL_LIMIT: Duration = Duration::from_secs(300);

/// The async client of one registry and the runtime it runs on.
pub struct Streamer {
    // Declared before the runtime: its connections go before the runtime that drives them.
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

/// Why a streamed request has no answer.
pub enum Failure {
    Send(SendError),
    /// It sent nothing and heard nothing for `STALL_LIMIT`.
    Stalled,
}

/// What a streamed request got back: its status line and headers, and for a failure the start
/// of its body (where the registry's error codes are).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub url: Url,
    pub error_body: Vec<u8>,
}

impl Streamer {
    pub fn new(client: reqwest::Client) -> std::io::Result<Streamer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("manifold-upload")
            .enable_all()
            .build()?;
        Ok(Streamer { client, runtime })
    }

    /// Send `method url` with `headers` and a body of exactly `len` bytes, given piece by piece
    /// to the returned upload; `credential` (an origin and its `Authorization`) goes with each
    /// hop on that origin (`http::send_stream`). The request goes out at once.
    pub fn start(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        len: u64,
        credential: Option<(Url, HeaderValue)>,
    ) -> Upload<'_> {
        let (pieces, rx) = mpsc::channel(DEPTH);
        let activity = Activity::new();
        let body = PieceBody {
            pieces: rx,
            remaining: len,
            activity: activity.clone(),
        };
        let client = self.client.clone();
        let task = self.runtime.spawn(async move {
            let exchange = async {
                let credential = credential
                    .as_ref()
                    .map(|(origin, authorization)| Credential {
                        origin,
                        authorization,
                    });
                let resp = http::send_stream(
                    &client,
                    method,
                    url,
                    &headers,
                    reqwest::Body::wrap(body),
                    credential.as_ref(),
                )
                .await
                .map_err(Failure::Send)?;
                activity.touch();
                let status = resp.status();
                let headers = resp.headers().clone();
                let url = resp.url().clone();
                let error_body = if status.is_success() {
                    Vec::new()
                } else {
                    // Only the codes are wanted: a body past the limit is cut.
                    http::read_error_body(resp).await
                };
                Ok(Answer {
                    status,
                    headers,
                    url,
                    error_body,
                })
            };
            unless_stalled(exchange, &activity)
                .await
                .unwrap_or(Err(Failure::Stalled))
        });
        Upload {
            streamer: self,
            pieces: Some(pieces),
            task,
            ended: None,
        }
    }
}

/// A request in flight whose body is being given.
pub struct Upload<'a> {
    streamer: &'a Streamer,
    pieces: Option<mpsc::Sender<Bytes>>,
    task: tokio::task::JoinHandle<Result<Answer, Failure>>,
    /// The outcome, once the request ended while pieces were still being given.
    ended: Option<Result<Answer, Failure>>,
}

impl Upload<'_> {
    /// Queue the next piece of the body, waiting while `DEPTH` pieces wait. `false` once the
    /// request has ended (answered early, failed): nothing more needs reading.
    pub fn send(&mut self, piece: Bytes) -> bool {
        let (Some(pieces), None) = (&self.pieces, &self.ended) else {
            return false;
        };
        let (task, ended) = (&mut self.task, &mut self.ended);
        // Waiting for room, or for the end of a request that stopped taking pieces (a server
        // that answered early may never read the rest).
        self.streamer.runtime.block_on(async {
            let mut sending = std::pin::pin!(pieces.send(piece));
            std::future::poll_fn(|cx| {
                if let Poll::Ready(sent) = sending.as_mut().poll(cx) {
                    return Poll::Ready(sent.is_ok());
                }
                let out = ready!(Pin::new(&mut *task).poll(cx));
                *ended = Some(out.expect("the streamed request does not panic"));
                Poll::Ready(false)
            })
            .await
        })
    }

    /// End the body (short of its length if the pieces stopped early: the request then fails)
    /// and wait for the answer.
    pub fn finish(mut self) -> Result<Answer, Failure> {
        self.pieces = None;
        if let Some(out) = self.ended.take() {
            return out;
        }
        let task = &mut self.task;
        self.streamer
            .runtime
            .block_on(task)
            .expect("the streamed request does not panic")
    }
}

/// When a streamed request last moved: a piece taken for sending, or the answer's head.
#[derive(Clone)]
struct Activity {
    start: Instant,
    /// Milliseconds from `start`.
    last: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last.fetch_max(ms, Ordering::Relaxed);
    }

    fn deadline(&self) -> Instant {
        self.start + Duration::from_millis(self.last.load(Ordering::Relaxed)) + STALL_LIMIT
    }
}

/// `exchange`'s outcome, or `None` when it made no progress for `STALL_LIMIT`.
async fn unless_stalled<F: Future>(exchange: F, activity: &Activity) -> Option<F::Output> {
    let mut exchange = std::pin::pin!(exchange);
    let mut alarm = std::pin::pin!(tokio::time::sleep_until(activity.deadline()));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = exchange.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        // The deadline moves on with each piece; the alarm follows it when it rings.
        loop {
            ready!(alarm.as_mut().poll(cx));
            let deadline = activity.deadline();
            if deadline <= alarm.deadline() {
                return Poll::Ready(None);
            }
            alarm.as_mut().reset(deadline);
        }
    })
    .await
}

/// The body: pieces from the channel, exactly `remaining` bytes in all.
struct PieceBody {
    pieces: mpsc::Receiver<Bytes>,
    remaining: u64,
    activity: Activity,
}

impl http_body::Body for PieceBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let piece = ready!(self.pieces.poll_recv(cx));
        self.activity.touch();
        Poll::Ready(Some(match piece {
            Some(p) if p.len() as u64 <= self.remaining => {
                self.remaining -= p.len() as u64;
                Ok(Frame::data(p))
            }
            Some(_) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the body is longer than its length",
            )),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the body ended {} bytes short of its length",
                    self.remaining
                ),
            )),
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
