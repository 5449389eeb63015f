//! One HTTP exchange with the configured timeouts, and bodies read or written as streams.
//!
//! reqwest's own `read_timeout` also bounds the upload of a request body, so the timeouts are
//! kept here instead: `response_timeout` runs from the moment the request body is fully handed to
//! the connection, `idle_timeout` between any two pieces of a body going either way.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use reqwest::header::CONTENT_LENGTH;
use tokio::time::{Instant, Sleep};

use crate::config::ClientConfig;
use crate::error::{Error, Result};

/// The pooled HTTP client and the timeouts every exchange obeys.
pub(crate) struct Transport {
    pub(crate) http: reqwest::Client,
    pub(crate) config: ClientConfig,
}

impl Transport {
    pub(crate) fn new(config: ClientConfig) -> Result<Transport> {
        let http = crate::config::http_client(&config)?;
        Ok(Transport { http, config })
    }

    /// Sends `request` and waits for the response headers. With `upload`, the request body is a
    /// stream reporting its progress: the wait is bounded by `idle_timeout` while it flows and
    /// by `response_timeout` once it is fully sent.
    pub(crate) async fn execute(
        &self,
        request: reqwest::Request,
        upload: Option<Arc<UploadProgress>>,
    ) -> Result<reqwest::Response> {
        let response = self.http.execute(request);
        let Some(progress) = upload else {
            return match tokio::time::timeout(self.config.response_timeout, response).await {
                Ok(result) => result.map_err(Error::transport),
                Err(_) => Err(self.response_timed_out()),
            };
        };
        let watchdog = async {
            loop {
                let deadline = match progress.state() {
                    (_, Some(finished)) => finished + self.config.response_timeout,
                    (last, None) => last + self.config.idle_timeout,
                };
                if Instant::now() >= deadline {
                    return;
                }
                tokio::time::sleep_until(deadline).await;
            }
        };
        tokio::select! {
            result = response => result.map_err(|e| progress.source_error().unwrap_or_else(|| Error::transport(e))),
            () = watchdog => Err(match progress.state() {
                (_, Some(_)) => self.response_timed_out(),
                (_, None) => Error::Transport(format!(
                    "the upload stalled: no progress for {} s", self.config.idle_timeout.as_secs()
                )),
            }),
        }
    }

    fn response_timed_out(&self) -> Error {
        Error::Transport(format!("no response within {} s", self.config.response_timeout.as_secs()))
    }

    /// The response body as a stream that fails after `idle_timeout` without data.
    pub(crate) fn body_stream(&self, response: reqwest::Response) -> IdleStream {
        IdleStream {
            inner: Box::pin(response.bytes_stream()),
            sleep: Box::pin(tokio::time::sleep(self.config.idle_timeout)),
            idle: self.config.idle_timeout,
            finished: false,
        }
    }

    /// The whole body, refused beyond `limit` bytes (for manifests, tokens, tag lists, errors).
    pub(crate) async fn read_body(&self, response: reqwest::Response, limit: usize) -> Result<Bytes> {
        let announced = response.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if announced.is_some_and(|n| n > limit as u64) {
            return Err(Error::InvalidResponse(format!(
                "a body of {} bytes exceeds the {limit} allowed",
                announced.unwrap_or(0)
            )));
        }
        let mut body = BytesMut::new();
        let mut stream = self.body_stream(response);
        while let Some(piece) = stream.next().await {
            let piece = piece?;
            if body.len() + piece.len() > limit {
                return Err(Error::InvalidResponse(format!("a body exceeds the {limit} bytes allowed")));
            }
            body.extend_from_slice(&piece);
        }
        Ok(body.freeze())
    }

    /// The start of an error response's body (enough for any OCI error document), for
    /// [`Error::from_response`].
    pub(crate) async fn error_from(&self, response: reqwest::Response) -> Error {
        const ERROR_BODY_LIMIT: usize = 64 * 1024;
        let (status, headers) = (response.status(), response.headers().clone());
        let mut body = BytesMut::new();
        let mut stream = self.body_stream(response);
        while body.len() < ERROR_BODY_LIMIT {
            match stream.next().await {
                Some(Ok(piece)) => body.extend_from_slice(&piece),
                // The status decides; a broken error body only loses the message.
                Some(Err(_)) | None => break,
            }
        }
        Error::from_response(status, &headers, &body)
    }
}

/// A response body whose pieces must each arrive within the idle timeout.
pub(crate) struct IdleStream {
    inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    sleep: Pin<Box<Sleep>>,
    idle: Duration,
    finished: bool,
}

impl Stream for IdleStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(piece))) => {
                let deadline = Instant::now() + self.idle;
                self.sleep.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(piece)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.finished = true;
                Poll::Ready(Some(Err(Error::transport(e))))
            }
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(None)
            }
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.finished = true;
                    let message = format!("the download stalled: no data for {} s", self.idle.as_secs());
                    Poll::Ready(Some(Err(Error::Transport(message))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// What an upload body reports to [`Transport::execute`]'s watchdog, and the caller's stream
/// error if that is why the upload failed.
pub(crate) struct UploadProgress {
    state: Mutex<ProgressState>,
}

struct ProgressState {
    last_piece: Instant,
    finished: Option<Instant>,
    source_error: Option<Error>,
}

impl UploadProgress {
    pub(crate) fn new() -> Arc<UploadProgress> {
        Arc::new(UploadProgress {
            state: Mutex::new(ProgressState { last_piece: Instant::now(), finished: None, source_error: None }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProgressState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn state(&self) -> (Instant, Option<Instant>) {
        let state = self.lock();
        (state.last_piece, state.finished)
    }

    pub(crate) fn piece_sent(&self) {
        self.lock().last_piece = Instant::now();
    }

    pub(crate) fn body_finished(&self) {
        self.lock().finished = Some(Instant::now());
    }

    pub(crate) fn source_failed(&self, error: Error) {
        self.lock().source_error.get_or_insert(error);
    }

    pub(crate) fn source_error(&self) -> Option<Error> {
        self.lock().source_error.clone()
    }
}
