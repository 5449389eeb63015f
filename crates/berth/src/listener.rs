//! The accept loop: each listen address serves TLS when configured and, on loopback (or with
//! `--insecure-http`), plain HTTP on the same port.
//!
//! The first byte of a connection tells them apart (0x16 starts a TLS handshake). This is what the
//! docker CLI needs: it speaks plain HTTP to loopback registries, and elsewhere tries HTTPS first,
//! falling back to HTTP only when a TLS ClientHello is answered with `HTTP/` (hyper's 400 does).
//!
//! What one client can hold is bounded ([`Limits`]; README's "Limits" table): a connection
//! slot (at most `max_connections`; at the cap, accepting pauses and new clients wait in the
//! kernel's queue), time (every phase of a connection has a timeout, see `connection.rs`) and
//! memory (header sizes, HTTP/2 streams and flow-control windows).

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use berth_iam::ConnectionInfo;
use bytes::Bytes;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::connection::{ConnectionService, Expiry, Watch, WatchedIo};

const TLS_HANDSHAKE: u8 = 0x16;
/// How an HTTP/2 client with prior knowledge starts a plain connection (RFC 9113, 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// In-flight requests get this long to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2: a ping this often, and the connection closed when one is not answered in time
/// (a peer gone without a FIN while its streams wait).
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// HTTP/2 streams per connection (RFC 9113 asks for at least 100).
const H2_MAX_STREAMS: u32 = 100;
/// HTTP/1 header fields per request (hyper's default is 100, which a proxy adding its own can
/// reach well within the byte limit; HTTP/2 is bounded by bytes only).
const H1_MAX_HEADERS: usize = 256;
/// HTTP/2 frame payloads the server accepts: the protocol's minimum.
const H2_MAX_FRAME: u32 = 16 * 1024;
/// File descriptors kept for everything but client sockets (database, listener, blocking I/O);
/// at most half of a very low limit.
const RESERVED_FDS: u64 = 64;
/// Warnings about accept failures or a full connection table: at most one per interval.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Connection-level limits and timeouts; every one has a flag and a TOML key (README, "Limits").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once (as configured; `connection_cap` fits it to the open-file limit).
    pub max_connections: usize,
    /// From accept to the first byte, and again for the TLS handshake.
    pub handshake_timeout: Duration,
    /// For a request's header: from the connection's start, or from the request's first byte.
    pub header_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// A request body must bring `MIN_BODY_PROGRESS` bytes per this window, and a response
    /// write that makes no progress for this long ends the connection.
    pub body_timeout: Duration,
    /// Largest request header: the HTTP/1 head (request line included), the HTTP/2 header list.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
            // Longer than the clients' own (Go's http.Transport closes idle connections at 90 s),
            // so a client never sends a request on a connection the server is closing.
            idle_timeout: Duration::from_secs(120),
            body_timeout: Duration::from_secs(60),
            max_header_bytes: 16 * 1024,
        }
    }
}

pub struct Listener {
    pub tls: Option<TlsAcceptor>,
    pub limits: Limits,
}

/// One bound listen address.
pub struct Port {
    pub tcp: TcpListener,
    /// Whether plain-HTTP connections are served (loopback, or `--insecure-http`).
    pub plain_http: bool,
}

/// The next connection on any of `ports`, with whether its port serves plain HTTP; the ports
/// are asked in turn from `first`, so a flooded one cannot starve the others. Cancel-safe, as
/// each `accept` is.
async fn accept_any(ports: &[Port], first: usize) -> (std::io::Result<(TcpStream, SocketAddr)>, bool) {
    let in_turn = ports.iter().cycle().skip(first % ports.len()).take(ports.len());
    let accepts = in_turn.map(|port| Box::pin(async move { (port.tcp.accept().await, port.plain_http) }));
    futures::future::select_all(accepts).await.0
}

/// Loads a PEM certificate chain and private key.
pub fn load_tls(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading private key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("certificate and key do not form a valid pair")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Creates (once) a self-signed certificate for `hosts` under `dir`; returns (cert, key) paths.
pub fn self_signed(dir: &Path, hosts: Vec<String>) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !(cert_path.exists() && key_path.exists()) {
        std::fs::create_dir_all(dir)?;
        let generated = rcgen::generate_simple_self_signed(hosts).context("generating a self-signed certificate")?;
        std::fs::write(&cert_path, generated.cert.pem())?;
        write_private(&key_path, generated.signing_key.serialize_pem().as_bytes())?;
    }
    Ok((cert_path, key_path))
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

impl Listener {
    /// Serves `app` on `ports` until `shutdown` resolves, then drains in-flight connections; the
    /// connection limit counts all ports together.
    pub async fn serve(self, ports: Vec<Port>, app: Router, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let max_connections = self.limits.max_connections;
        let slots = Arc::new(Semaphore::new(max_connections));
        let (closing, closing_rx) = watch::channel(false);
        let http = Arc::new(Http::new(&self.limits));
        let this = Arc::new(self);
        let mut shutdown = std::pin::pin!(shutdown);
        let mut at_cap = Throttled::default();
        let mut accept_errors = AcceptBackoff::default();
        let mut accepts = 0usize;
        loop {
            accepts = accepts.wrapping_add(1);
            let (stream, peer, plain_http) = tokio::select! {
                (accepted, plain_http) = accept_any(&ports, accepts) => match accepted {
                    Ok((stream, peer)) => {
                        accept_errors.succeeded();
                        (stream, peer, plain_http)
                    }
                    Err(e) => {
                        accept_errors.failed(&e).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            if slots.available_permits() == 0 {
                at_cap.warn(|suppressed| {
                    tracing::warn!(max_connections, suppressed, "connection limit reached; new connections wait")
                });
            }
            // Back-pressure: the connection just accepted waits for a slot, and the next ones in
            // the kernel's accept queue. Accepting first leaves every slot to the connections
            // and HTTP/2 requests being served (the one waiting fits the open-file margin).
            let slot = tokio::select! {
                slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                () = &mut shutdown => break,
            };
            let app = App { router: app.clone(), slots: slots.clone() };
            let (this, http, closing) = (this.clone(), http.clone(), closing_rx.clone());
            tokio::spawn(async move {
                if let Err(e) = this.connection(stream, peer, plain_http, app, &http, closing).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                drop(slot);
            });
        }
        drop(ports);
        closing.send_replace(true);
        // Every connection (and HTTP/2 stream) holds a slot until it ends: all slots back means
        // all connections done.
        tokio::select! {
            _ = slots.acquire_many(max_connections as u32) => {}
            () = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("connections still open after the drain timeout"),
        }
        Ok(())
    }

    async fn connection(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        plain_http: bool,
        app: App,
        http: &Http,
        closing: watch::Receiver<bool>,
    ) -> Result<(), ConnectionError> {
        stream.set_nodelay(true)?;
        let limits = &self.limits;
        let mut first = [0u8; 1];
        let peeked = tokio::time::timeout(limits.handshake_timeout, stream.peek(&mut first))
            .await
            .map_err(|_| ConnectionError::TimedOut("data", limits.handshake_timeout))??;
        if peeked == 0 {
            return Ok(());
        }
        match (&self.tls, first[0] == TLS_HANDSHAKE) {
            (Some(acceptor), true) => {
                let tls = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream))
                    .await
                    .map_err(|_| ConnectionError::TimedOut("finished TLS handshake", limits.handshake_timeout))?
                    .map_err(ConnectionError::Tls)?;
                // HTTP/2 over TLS is negotiated by ALPN (RFC 9113, 3.2).
                let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let info = ConnectionInfo { peer, tls: true };
                self.serve_http(tls, Bytes::new(), info, http2, app, http, closing).await
            }
            (_, _) if plain_http => {
                let mut stream = stream;
                let (http2, read) =
                    tokio::time::timeout(limits.handshake_timeout, sniff_http2(&mut stream))
                        .await
                        .map_err(|_| ConnectionError::TimedOut("request start", limits.handshake_timeout))??;
                let info = ConnectionInfo { peer, tls: false };
                self.serve_http(stream, read, info, http2, app, http, closing).await
            }
            (_, _) => {
                tracing::debug!(%peer, "plain HTTP refused on a TLS-only listener");
                let mut stream = stream;
                let body = berth_oci::error_body("UNSUPPORTED", "this registry speaks HTTPS on this port");
                let reply = format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(reply.as_bytes()).await?;
                Ok(())
            }
        }
    }

    /// Serves HTTP on one connection (`read`: bytes already read from it) until it ends, a
    /// header or idle spell runs out (see `connection.rs`), or the server shuts down (in-flight
    /// requests finish first).
    #[allow(clippy::too_many_arguments)]
    async fn serve_http<I>(
        &self,
        io: I,
        read: Bytes,
        info: ConnectionInfo,
        http2: bool,
        app: App,
        http: &Http,
        mut closing: watch::Receiver<bool>,
    ) -> Result<(), ConnectionError>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let limits = &self.limits;
        let watch = Watch::new(http2);
        let io = TokioIo::new(WatchedIo::new(io, read, watch.clone(), limits.body_timeout));
        let service = ConnectionService::new(app.router, info, watch.clone(), limits.body_timeout, app.slots);
        let mut connection = if http2 {
            Served::Http2(Box::pin(http.h2.serve_connection(io, service)))
        } else {
            Served::Http1(Box::pin(http.h1.serve_connection(io, service)))
        };
        let (mut closing_idle, mut closing_down) = (false, false);
        loop {
            tokio::select! {
                served = &mut connection => return served.map_err(ConnectionError::Http),
                expiry = watch.expired(limits.header_timeout, limits.idle_timeout), if !closing_idle => match expiry {
                    Expiry::Header => {
                        tracing::debug!(peer = %info.peer, timeout = ?limits.header_timeout, "no complete request header in time; closing");
                        return Ok(());
                    }
                    Expiry::Idle => {
                        closing_idle = true;
                        if !closing_down {
                            connection.graceful_shutdown();
                        }
                    }
                },
                () = watch.stalled_response(limits.body_timeout) => {
                    tracing::debug!(peer = %info.peer, timeout = ?limits.body_timeout,
                        "a response sent too little in time (its client gives it no window or stopped reading); closing");
                    return Ok(());
                }
                _ = closing.wait_for(|closing| *closing), if !closing_down => {
                    closing_down = true;
                    if !closing_idle {
                        connection.graceful_shutdown();
                    }
                }
            }
        }
    }
}

/// What each connection serves: the app, and the connection slots its HTTP/2 streams take too.
struct App {
    router: Router,
    slots: Arc<Semaphore>,
}

/// Why a connection ended early: logged at debug level and otherwise dropped. Typed rather than
/// `anyhow`, which captures a backtrace per error when `RUST_BACKTRACE` is set: each connection
/// that ended in a protocol error cost an unwind of the whole async stack (and paged in up to
/// 350 KiB of unwind tables, seen at the bench's peak).
#[derive(Debug)]
enum ConnectionError {
    /// Nothing of the named kind arrived within the handshake timeout.
    TimedOut(&'static str, Duration),
    Tls(std::io::Error),
    Io(std::io::Error),
    Http(hyper::Error),
}

impl std::fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectionError::TimedOut(what, after) => write!(f, "no {what} within {after:?} of connecting"),
            ConnectionError::Tls(e) => write!(f, "TLS handshake: {e}"),
            ConnectionError::Io(e) => e.fmt(f),
            ConnectionError::Http(e) => e.fmt(f),
        }
    }
}

impl From<std::io::Error> for ConnectionError {
    fn from(e: std::io::Error) -> Self {
        ConnectionError::Io(e)
    }
}

/// Reads the start of a plain connection: HTTP/2 with prior knowledge begins with its preface,
/// anything else is HTTP/1. Returns the verdict and the bytes read (at most the preface's length).
async fn sniff_http2(stream: &mut TcpStream) -> std::io::Result<(bool, Bytes)> {
    let mut read = Vec::with_capacity(H2_PREFACE.len());
    while H2_PREFACE.starts_with(&read) && read.len() < H2_PREFACE.len() {
        let mut buf = [0u8; 24];
        let n = stream.read(&mut buf[..H2_PREFACE.len() - read.len()]).await?;
        if n == 0 {
            break;
        }
        read.extend_from_slice(&buf[..n]);
    }
    Ok((read == H2_PREFACE, read.into()))
}

type Io<I> = TokioIo<WatchedIo<I>>;

/// One connection as hyper serves it.
enum Served<I> {
    Http1(Pin<Box<http1::Connection<Io<I>, ConnectionService>>>),
    Http2(Pin<Box<http2::Connection<Io<I>, ConnectionService, TokioExecutor>>>),
}

impl<I: AsyncRead + AsyncWrite + Unpin + Send + 'static> Served<I> {
    /// Finishes the requests in flight, takes no new ones (HTTP/2: GOAWAY), then closes.
    fn graceful_shutdown(&mut self) {
        match self {
            Served::Http1(connection) => connection.as_mut().graceful_shutdown(),
            Served::Http2(connection) => connection.as_mut().graceful_shutdown(),
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin + Send + 'static> Future for Served<I> {
    type Output = hyper::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        match self.get_mut() {
            Served::Http1(connection) => connection.as_mut().poll(cx),
            Served::Http2(connection) => connection.as_mut().poll(cx),
        }
    }
}

/// hyper's HTTP/1 and HTTP/2 settings; what each bounds is in README's "Limits" table.
struct Http {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

impl Http {
    fn new(limits: &Limits) -> Http {
        let mut h1 = http1::Builder::new();
        h1
            // Timed by the connection's watch instead (see connection.rs).
            .header_read_timeout(None)
            .max_header_size(limits.max_header_bytes)
            .max_headers(H1_MAX_HEADERS)
            // A client that shuts down its sending side after a request still gets the answer.
            .half_close(true);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .keep_alive_interval(H2_PING_INTERVAL)
            .keep_alive_timeout(H2_PING_TIMEOUT)
            .max_concurrent_streams(H2_MAX_STREAMS)
            .max_frame_size(H2_MAX_FRAME)
            .max_header_list_size(limits.max_header_bytes as u32)
            // Flow-control windows start at the protocol's 64 KiB and grow only while handlers
            // read: a client cannot make the server buffer more than that per connection unasked.
            .adaptive_window(true);
        Http { h1, h2 }
    }
}

/// The connection cap: `configured`, lowered so that client sockets plus one open file each
/// stay within the open-file limit (raised to its hard maximum first, as Go's runtime does).
pub fn connection_cap(configured: usize) -> usize {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let files = match (limit.current, limit.maximum) {
        (Some(current), Some(maximum)) if current < maximum => {
            match setrlimit(Resource::Nofile, Rlimit { current: Some(maximum), maximum: Some(maximum) }) {
                Ok(()) => Some(maximum),
                Err(e) => {
                    tracing::debug!(error = %e, "could not raise the open-file limit");
                    Some(current)
                }
            }
        }
        (current, _) => current,
    };
    let Some(files) = files else { return configured };
    let affordable = (files.saturating_sub(RESERVED_FDS.min(files / 2)) / 2).max(1) as usize;
    if affordable < configured {
        tracing::warn!(
            open_file_limit = files,
            max_connections = affordable,
            "the open-file limit lowers the connection cap; raise it (ulimit -n) for more"
        );
        return affordable;
    }
    configured
}

/// A warning that repeats at most once per [`WARN_INTERVAL`], counting what it held back.
#[derive(Default)]
struct Throttled {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    fn warn(&mut self, log: impl FnOnce(u64)) {
        if self.last.is_some_and(|last| last.elapsed() < WARN_INTERVAL) {
            self.suppressed += 1;
            return;
        }
        log(self.suppressed);
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}

/// Keeps the accept loop alive through failures: a connection reset before it was accepted is
/// skipped; anything else (out of file descriptors or memory) backs off, doubling up to 1 s,
/// until an accept succeeds again.
#[derive(Default)]
struct AcceptBackoff {
    delay: Option<Duration>,
    warning: Throttled,
}

impl AcceptBackoff {
    async fn failed(&mut self, error: &std::io::Error) {
        use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
        if matches!(error.kind(), ConnectionAborted | ConnectionReset | Interrupted) {
            return;
        }
        let delay = self.delay.map_or(Duration::from_millis(10), |d| (d * 2).min(Duration::from_secs(1)));
        self.delay = Some(delay);
        self.warning.warn(|suppressed| tracing::warn!(%error, suppressed, "accept failed; retrying"));
        tokio::time::sleep(delay).await;
    }

    fn succeeded(&mut self) {
        if self.delay.take().is_some() {
            tracing::debug!("accepting connections again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ports_are_asked_in_turn() {
        let mut ports = Vec::new();
        for plain_http in [true, false] {
            ports.push(Port { tcp: TcpListener::bind("127.0.0.1:0").await.unwrap(), plain_http });
        }
        // Two connections waiting on each port: whichever port is asked first answers first.
        let mut clients = Vec::new();
        for port in &ports {
            for _ in 0..2 {
                clients.push(TcpStream::connect(port.tcp.local_addr().unwrap()).await.unwrap());
            }
        }
        let mut served = Vec::new();
        for turn in 0..4 {
            let (accepted, plain_http) = accept_any(&ports, turn).await;
            accepted.unwrap();
            served.push(plain_http);
        }
        assert_eq!(served, [true, false, true, false]);
    }
}
