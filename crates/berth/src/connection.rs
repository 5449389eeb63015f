//! How long one connection may hold the server without making progress.
//!
//! A connection is always in one [`Phase`]: waiting for a request header, serving requests, or
//! idle. [`Watch::expired`] resolves when a header or an idle spell lasts too long, and the
//! listener then ends the connection. While requests are in flight only their bodies are
//! limited: [`MinProgress`] fails a request body that stops arriving, [`WatchedIo`] fails the
//! connection when the client stops reading what is sent to it, and [`Watch::stalled_response`]
//! when an HTTP/2 response body sends too little (a client can starve a stream of flow-control
//! window, which no socket write ever waits on, and hold the blob file behind it). A slow
//! handler is not limited.
//!
//! hyper's own `header_read_timeout` is not used: its clock starts when an HTTP/1 connection
//! goes idle, so it would close keep-alive connections after the header timeout, which must be
//! short against slow-header clients while keep-alive should outlast the clients' own idle timeout.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use berth_iam::ConnectionInfo;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response, Version};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body must bring at least this many bytes per body timeout, or end.
pub const MIN_BODY_PROGRESS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request's header: from the connection's start, or (HTTP/1) from the first
    /// byte after an idle spell.
    Header { since: Instant },
    /// Requests in flight (several at once on HTTP/2).
    Busy { requests: usize },
    /// No request in flight.
    Idle { since: Instant },
}

/// The limit that ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Header,
    Idle,
}

/// One connection's phase, shared by its IO (bytes arriving), its requests (starting and
/// finishing) and the listener's watchdog.
pub struct Watch {
    phase: Mutex<Phase>,
    /// Idle on HTTP/1: the next byte read starts a request header. Spares reads the lock.
    awaiting_header: AtomicBool,
    /// HTTP/2 frames (pings, window updates) arrive while idle; they start no header.
    http2: AtomicBool,
    changed: Notify,
    /// What the response bodies being sent have sent lately (dead entries are pruned).
    responses: Mutex<Vec<Weak<ResponseProgress>>>,
    responses_changed: Notify,
    /// The zero of [`ResponseProgress`]'s clock.
    epoch: Instant,
}

/// What one response body has sent since its current window began: at least
/// [`MIN_BODY_PROGRESS`] per body timeout, as asked of request bodies.
struct ResponseProgress {
    /// Nanoseconds after the watch's `epoch`.
    window_start: AtomicU64,
    sent: AtomicUsize,
}

impl Watch {
    pub fn new(http2: bool) -> Arc<Watch> {
        Arc::new(Watch {
            phase: Mutex::new(Phase::Header { since: Instant::now() }),
            awaiting_header: AtomicBool::new(false),
            http2: AtomicBool::new(http2),
            changed: Notify::new(),
            responses: Mutex::new(Vec::new()),
            responses_changed: Notify::new(),
            epoch: Instant::now(),
        })
    }

    fn since_epoch(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn response_started(&self) -> Arc<ResponseProgress> {
        let progress =
            Arc::new(ResponseProgress { window_start: AtomicU64::new(self.since_epoch()), sent: AtomicUsize::new(0) });
        let mut responses = self.responses.lock().unwrap_or_else(|p| p.into_inner());
        responses.retain(|r| r.strong_count() > 0);
        responses.push(Arc::downgrade(&progress));
        drop(responses);
        self.responses_changed.notify_one();
        progress
    }

    fn response_sent(&self, progress: &ResponseProgress, bytes: usize) {
        if progress.sent.fetch_add(bytes, Ordering::Relaxed) + bytes >= MIN_BODY_PROGRESS {
            progress.sent.store(0, Ordering::Relaxed);
            progress.window_start.store(self.since_epoch(), Ordering::Relaxed);
        }
    }

    /// Resolves once a response body being sent has sent less than [`MIN_BODY_PROGRESS`] within
    /// `body_timeout`: its client starves it (no HTTP/2 window) or stopped taking it.
    pub async fn stalled_response(&self, body_timeout: Duration) {
        loop {
            let changed = self.responses_changed.notified();
            let oldest = {
                let responses = self.responses.lock().unwrap_or_else(|p| p.into_inner());
                responses.iter().filter_map(Weak::upgrade).map(|r| r.window_start.load(Ordering::Relaxed)).min()
            };
            let Some(oldest) = oldest else {
                changed.await;
                continue;
            };
            let deadline = self.epoch + Duration::from_nanos(oldest) + body_timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, phase: &mut Phase, next: Phase) {
        *phase = next;
        let awaiting = matches!(next, Phase::Idle { .. }) && !self.http2.load(Ordering::Relaxed);
        self.awaiting_header.store(awaiting, Ordering::Relaxed);
        // One waiter (the watchdog); a change while it is not waiting leaves it a permit.
        self.changed.notify_one();
    }

    /// A request's header is complete: until its response is done, only body limits apply.
    fn request_started(self: &Arc<Self>, version: Version) -> RequestGuard {
        if version == Version::HTTP_2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        let mut phase = self.phase();
        let requests = match *phase {
            Phase::Busy { requests } => requests + 1,
            _ => 1,
        };
        self.set(&mut phase, Phase::Busy { requests });
        RequestGuard(self.clone())
    }

    fn request_finished(&self) {
        let mut phase = self.phase();
        let next = match *phase {
            Phase::Busy { requests } if requests > 1 => Phase::Busy { requests: requests - 1 },
            _ => Phase::Idle { since: Instant::now() },
        };
        self.set(&mut phase, next);
    }

    fn bytes_read(&self) {
        if self.awaiting_header.swap(false, Ordering::Relaxed) {
            let mut phase = self.phase();
            if matches!(*phase, Phase::Idle { .. }) {
                self.set(&mut phase, Phase::Header { since: Instant::now() });
            }
        }
    }

    fn deadline(&self, header_timeout: Duration, idle_timeout: Duration) -> Option<(Instant, Expiry)> {
        match *self.phase() {
            Phase::Header { since } => Some((since + header_timeout, Expiry::Header)),
            Phase::Idle { since } => Some((since + idle_timeout, Expiry::Idle)),
            Phase::Busy { .. } => None,
        }
    }

    /// Resolves once the connection has waited for a request header longer than
    /// `header_timeout`, or been idle longer than `idle_timeout`.
    pub async fn expired(&self, header_timeout: Duration, idle_timeout: Duration) -> Expiry {
        loop {
            let changed = self.changed.notified();
            match self.deadline(header_timeout, idle_timeout) {
                None => changed.await,
                Some((at, expiry)) => tokio::select! {
                    () = changed => {}
                    () = tokio::time::sleep_until(at) => {
                        if self.deadline(header_timeout, idle_timeout) == Some((at, expiry)) {
                            return expiry;
                        }
                    }
                },
            }
        }
    }
}

/// A request in flight; dropped with its response body (sent, or abandoned with the connection).
pub struct RequestGuard(Arc<Watch>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// The connection's socket (or TLS stream), reporting bytes read to the [`Watch`] and failing
/// once a write has made no progress for `send_timeout` (a client that stopped reading).
pub struct WatchedIo<T> {
    inner: T,
    /// Bytes read from `inner` before it was wrapped (to tell HTTP/2 from HTTP/1), read first.
    read: Bytes,
    watch: Arc<Watch>,
    send_timeout: Duration,
    /// Runs while writes are blocked; `None` until the first block.
    stall: Option<Pin<Box<Sleep>>>,
    stalled: bool,
}

impl<T> WatchedIo<T> {
    pub fn new(inner: T, read: Bytes, watch: Arc<Watch>, send_timeout: Duration) -> WatchedIo<T> {
        WatchedIo { inner, read, watch, send_timeout, stall: None, stalled: false }
    }

    /// Called when a write could not proceed: arms the stall clock, fails once it ran out.
    fn poll_stall<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let deadline = Instant::now() + self.send_timeout;
        let stall = match &mut self.stall {
            Some(stall) if self.stalled => stall,
            Some(stall) => {
                stall.as_mut().reset(deadline);
                stall
            }
            None => self.stall.insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.stalled = true;
        ready!(stall.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the client read nothing for {:?}", self.send_timeout),
        )))
    }

    fn progressed<R>(&mut self, result: Poll<io::Result<R>>, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        match result {
            Poll::Pending => self.poll_stall(cx),
            ready => {
                self.stalled = false;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.read.is_empty() {
            let n = this.read.len().min(buf.remaining());
            buf.put_slice(&this.read.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.watch.bytes_read();
        }
        result
    }
}

/// Writes go straight to the transport. A mapped blob piece (see `berth_storage`'s file store) is
/// copied once, from the page cache, by the socket write. Measured and not kept: `sendfile` of
/// those pieces from the file itself. On this kernel (6.18, loopback) it cost 0.63–0.72 s of
/// server CPU per cached GiB pulled, against 0.28–0.37 s for the copy. Every 4 KiB page went out
/// as its own fragment.
impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, data);
        this.progressed(result, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, data);
        this.progressed(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.progressed(result, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.progressed(result, cx)
    }
}

/// A request body that fails when fewer than [`MIN_BODY_PROGRESS`] bytes arrive in a `window`
/// (a client stalled or trickling mid-body), so it cannot hold its handler, and an upload's
/// lock, forever. The clock runs only while the body is awaited and has not ended.
pub struct MinProgress<B> {
    inner: B,
    window: Duration,
    /// The current window's end; `None` until the body first has to wait.
    timer: Option<Pin<Box<Sleep>>>,
    received: usize,
    failed: bool,
}

impl<B> MinProgress<B> {
    pub fn new(inner: B, window: Duration) -> MinProgress<B> {
        MinProgress { inner, window, timer: None, received: 0, failed: false }
    }
}

impl<B> Body for MinProgress<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.received += frame.data_ref().map_or(0, Bytes::len);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let window = this.window;
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(window)));
                loop {
                    ready!(timer.as_mut().poll(cx));
                    if this.received < MIN_BODY_PROGRESS {
                        this.failed = true;
                        tracing::debug!(?window, "request body too slow; failing it");
                        return Poll::Ready(Some(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("the request body brought fewer than {MIN_BODY_PROGRESS} bytes in {window:?}"),
                        )
                        .into())));
                    }
                    this.received = 0;
                    timer.as_mut().reset(Instant::now() + window);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request counted as in flight until it is sent or dropped. On
/// HTTP/2 it also reports what it sends to the [`Watch`], in slices of at most [`H2_SLICE`]:
/// hyper asks for the next piece only once the last one is sent (flow control permitting), so a
/// poll is progress — a 1 MiB piece would take a slow but steady client longer than the body
/// timeout. (HTTP/1 needs neither: `WatchedIo` times its blocked writes.)
pub struct Tracked<B> {
    inner: B,
    progress: Option<Arc<ResponseProgress>>,
    /// The rest of the piece being handed out in slices.
    unsent: Bytes,
    request: RequestGuard,
    /// HTTP/2: the slot the request holds (see [`ConnectionService`]).
    _slot: Option<OwnedSemaphorePermit>,
}

/// The most an HTTP/2 response hands hyper at once: one frame of the protocol's default size.
const H2_SLICE: usize = 16 * 1024;

impl<B: Body<Data = Bytes> + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        let Some(progress) = &this.progress else { return Pin::new(&mut this.inner).poll_frame(cx) };
        if this.unsent.is_empty() {
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.unsent = data,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return Poll::Ready(other),
            }
        }
        let slice = this.unsent.split_to(this.unsent.len().min(H2_SLICE));
        this.request.0.response_sent(progress, slice.len());
        Poll::Ready(Some(Ok(Frame::data(slice))))
    }

    fn is_end_stream(&self) -> bool {
        self.unsent.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.inner.size_hint();
        let unsent = self.unsent.len() as u64;
        hint.set_lower(hint.lower() + unsent);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + unsent);
        }
        hint
    }
}

/// The app as one connection serves it: each request carries the connection's
/// [`ConnectionInfo`], its body is held to [`MinProgress`], and it counts as in flight (for the
/// [`Watch`]) until its response is done. An HTTP/2 request also holds a slot until then: the
/// connection's own (the listener's permit for the connection leaves room for one file), or one
/// of the listener's connection slots: each stream of a multiplexed connection may hold a file (a
/// blob being sent or received) as a connection does. So a connection always gets a request
/// served, as on HTTP/1, and past the cap its requests take turns on its own slot.
#[derive(Clone)]
pub struct ConnectionService {
    app: Router,
    info: ConnectionInfo,
    watch: Arc<Watch>,
    body_timeout: Duration,
    slots: Arc<Semaphore>,
    /// The connection's own slot, for one HTTP/2 request at a time.
    own_slot: Arc<Semaphore>,
}

impl ConnectionService {
    pub fn new(
        app: Router,
        info: ConnectionInfo,
        watch: Arc<Watch>,
        body_timeout: Duration,
        slots: Arc<Semaphore>,
    ) -> ConnectionService {
        ConnectionService { app, info, watch, body_timeout, slots, own_slot: Arc::new(Semaphore::new(1)) }
    }
}

/// A slot for an HTTP/2 request (`None` if none came free): the connection's own or a
/// listener's, whichever is free. One without a body waits up to `timeout` for either (slots
/// come free as responses finish or stalled connections are cut, both within a body timeout
/// unless a transfer is making progress); one with a body must find one at once: its unread
/// bytes would hold the connection's flow-control window, which the requests being served need
/// for theirs.
async fn stream_slot(
    own: Arc<Semaphore>,
    slots: Arc<Semaphore>,
    has_body: bool,
    timeout: Duration,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(slot) = own.clone().try_acquire_owned().or_else(|_| slots.clone().try_acquire_owned()) {
        return Some(slot);
    }
    if has_body {
        return None;
    }
    let either = async {
        tokio::select! {
            slot = own.acquire_owned() => slot,
            slot = slots.acquire_owned() => slot,
        }
    };
    tokio::time::timeout(timeout, either).await.ok()?.ok()
}

/// Marks an HTTP/2 request that found no slot (see [`stream_slot`]): the edge answers it
/// `503` in its plane's shape, logged and counted like any other answer, without serving it.
#[derive(Clone, Copy, Debug)]
pub struct NoStreamSlot;

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<Tracked<axum::body::Body>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let guard = self.watch.request_started(request.version());
        let http2 = request.version() == Version::HTTP_2;
        request.extensions_mut().insert(self.info);
        let has_body = !request.body().is_end_stream();
        let request = request.map(|body| MinProgress::new(body, self.body_timeout));
        let (app, watch, body_timeout) = (self.app.clone(), self.watch.clone(), self.body_timeout);
        let (own_slot, slots) = (self.own_slot.clone(), self.slots.clone());
        Box::pin(async move {
            let mut request = request;
            let slot = if http2 {
                let slot = stream_slot(own_slot, slots, has_body, body_timeout).await;
                if slot.is_none() {
                    request.extensions_mut().insert(NoStreamSlot);
                }
                slot
            } else {
                None
            };
            let response = tower::ServiceExt::oneshot(app, request).await?;
            let progress = http2.then(|| watch.response_started());
            Ok(response.map(|inner| Tracked { inner, progress, unsent: Bytes::new(), request: guard, _slot: slot }))
        })
    }
}
