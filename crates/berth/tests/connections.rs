//! The listener against clients that hold connections without making progress: silent sockets,
//! slow headers, stalled bodies, idle keep-alive, more sockets than the open-file limit allows,
//! clients that disconnect or half-close mid-request; and the error bodies of requests no route
//! serves. Timeouts are set to a second or two through the serve flags.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

fn addr(srv: &Server) -> String {
    srv.base().trim_start_matches("http://").to_string()
}

async fn connect(srv: &Server) -> TcpStream {
    TcpStream::connect(addr(srv)).await.expect("connect")
}

/// Whether the server closed `stream` within `within` (whatever it sent before is discarded).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match timeout(deadline.saturating_duration_since(Instant::now()), stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// An HTTP/1.1 response read off a raw socket.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }

    /// The status and the OCI error code of the body.
    #[track_caller]
    fn expect_oci_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.header("content-type"), Some("application/json"), "{self:?}");
        assert_eq!(self.json()["errors"][0]["code"], code, "{self:?}");
    }
}

/// Reads one response (with a Content-Length body) within `within`.
async fn read_response(stream: &mut TcpStream, within: Duration) -> RawResponse {
    let deadline = Instant::now() + within;
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).into_owned();
            let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
            let mut response = RawResponse { status, head, body: data[end + 4..].to_vec() };
            let length: usize = response.header("content-length").map_or(0, |l| l.parse().expect("content-length"));
            while response.body.len() < length {
                let n = timeout(deadline.saturating_duration_since(Instant::now()), stream.read(&mut buf))
                    .await
                    .expect("response body in time")
                    .expect("read response body");
                assert!(n > 0, "connection closed mid-body: {response:?}");
                response.body.extend_from_slice(&buf[..n]);
            }
            return response;
        }
        let n = timeout(deadline.saturating_duration_since(Instant::now()), stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no response within {within:?}; got {:?}", String::from_utf8_lossy(&data)))
            .expect("read response");
        assert!(n > 0, "connection closed without a response; got {:?}", String::from_utf8_lossy(&data));
        data.extend_from_slice(&buf[..n]);
    }
}

/// Sends a request head (`Host` added) on a raw socket.
async fn send_head(stream: &mut TcpStream, srv: &Server, request_line: &str, headers: &[&str]) {
    let mut head = format!("{request_line}\r\nHost: {}\r\n", addr(srv));
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("send request head");
}

/// Opens `n` connections that never send a byte.
async fn silent_sockets(srv: &Server, n: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        // A connection the server cannot accept yet waits in the kernel's queue; one the queue
        // has no room for may not connect at all, which is as silent.
        if let Ok(Ok(s)) = timeout(Duration::from_secs(2), TcpStream::connect(addr(srv))).await {
            sockets.push(s);
        }
    }
    sockets
}

#[tokio::test]
async fn silent_connections_are_closed_while_other_clients_are_served() {
    // Served long before the silent ones time out, with room for a busy machine in between.
    let srv = Server::start_with(&["--handshake-timeout-secs", "10"]);
    let mut silent = silent_sockets(&srv, 250).await;
    assert_eq!(silent.len(), 250);
    let started = Instant::now();
    let r = timeout(Duration::from_secs(15), send(srv.get("/v2/"))).await.expect("a client waited behind silent ones");
    r.expect_status(200);
    assert!(started.elapsed() < Duration::from_secs(3), "served only after {:?}", started.elapsed());
    for (i, socket) in silent.iter_mut().enumerate() {
        assert!(closed_within(socket, Duration::from_secs(15)).await, "silent connection {i} is still open");
    }
}

#[tokio::test]
async fn silent_connections_cannot_starve_a_server_short_of_file_descriptors() {
    // 128 files: the server sizes its connection cap to fit (the rest wait in the kernel's queue).
    let srv = Launch::new().no_auth().open_file_limit(128).args(&["--handshake-timeout-secs", "1"]).start();
    let _silent = silent_sockets(&srv, 200).await;
    let r = timeout(Duration::from_secs(30), send(srv.get("/v2/")))
        .await
        .expect("a legitimate request was not served within 30 s");
    r.expect_status(200);
    assert!(srv.log().contains("open-file limit lowers the connection cap"), "{}", srv.log_tail());
    assert!(!srv.log().contains("accept failed"), "the cap did not keep accept within the limit:\n{}", srv.log_tail());
}

#[tokio::test]
async fn accept_failures_are_survived_and_logged_sparingly() {
    let srv = Server::start_with(&["--handshake-timeout-secs", "1"]);
    // The open-file limit drops under the server while it runs: accept starts failing (EMFILE).
    let pid = srv.pid().to_string();
    let status = std::process::Command::new("prlimit").args(["--pid", &pid, "--nofile=64:64"]).status().unwrap();
    assert!(status.success(), "prlimit --pid failed");
    let _silent = silent_sockets(&srv, 150).await;
    let r = timeout(Duration::from_secs(30), send(srv.get("/v2/")))
        .await
        .expect("a legitimate request was not served within 30 s");
    r.expect_status(200);
    let warnings = srv.log().matches("accept failed").count();
    assert!((1..=4).contains(&warnings), "{warnings} accept warnings:\n{}", srv.log_tail());
}

#[tokio::test]
async fn a_header_sent_slowly_is_cut_off() {
    let srv = Server::start_with(&["--header-timeout-secs", "1"]);
    let mut stream = connect(&srv).await;
    stream.write_all(format!("GET /v2/ HTTP/1.1\r\nHost: {}\r\n", addr(&srv)).as_bytes()).await.unwrap();
    let started = Instant::now();
    // One header line every 200 ms, never the blank line that ends the header.
    let closed = loop {
        if stream.write_all(b"X-Slow: y\r\n").await.is_err() {
            break true;
        }
        let mut buf = [0u8; 1024];
        if let Ok(Ok(0) | Err(_)) = timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            break true;
        }
        if started.elapsed() > Duration::from_secs(6) {
            break false;
        }
    };
    assert!(closed, "a header trickled in for 6 s and the connection is still open");
    assert!(started.elapsed() < Duration::from_secs(4), "cut off only after {:?}", started.elapsed());
}

#[tokio::test]
async fn idle_keep_alive_outlasts_the_header_timeout_and_then_closes() {
    let srv = Server::start_with(&["--header-timeout-secs", "1", "--idle-timeout-secs", "6"]);
    let mut stream = connect(&srv).await;
    send_head(&mut stream, &srv, "GET /v2/ HTTP/1.1", &[]).await;
    assert_eq!(read_response(&mut stream, Duration::from_secs(5)).await.status, 200);
    // Idle longer than the header timeout: still open, and serves the next request.
    tokio::time::sleep(Duration::from_secs(2)).await;
    send_head(&mut stream, &srv, "GET /v2/ HTTP/1.1", &[]).await;
    assert_eq!(read_response(&mut stream, Duration::from_secs(5)).await.status, 200);
    let idle_since = Instant::now();
    assert!(closed_within(&mut stream, Duration::from_secs(12)).await, "an idle connection stayed open");
    let idle = idle_since.elapsed();
    // The idle time counts from the answer's last byte, a moment before the client read it.
    assert!(idle >= Duration::from_secs(4), "closed after {idle:?} idle, before the idle timeout");
}

#[tokio::test]
async fn a_stalled_patch_body_times_out_releases_the_upload_and_rolls_back() {
    let srv = Server::start_with(&["--body-timeout-secs", "1"]);
    let upload = start_upload(&srv, "stalled").await;
    let mut stream = connect(&srv).await;
    send_head(&mut stream, &srv, &format!("PATCH {} HTTP/1.1", upload.path()), &["Content-Length: 1048576"]).await;
    stream.write_all(&random_bytes(100 * 1024)).await.unwrap();
    // The client stops sending: the server answers and lets go of the upload.
    let r = read_response(&mut stream, Duration::from_secs(10)).await;
    r.expect_oci_error(400, "BLOB_UPLOAD_INVALID");
    let r = timeout(Duration::from_secs(10), send(srv.client.patch(upload.clone()).body(&b"abc"[..])))
        .await
        .expect("the upload stayed locked by the stalled body");
    r.expect_status(202);
    assert_eq!(r.header("range"), Some("0-2"), "the stalled append was not rolled back:\n{}", r.describe());
}

#[tokio::test]
async fn a_client_that_disconnects_mid_patch_leaves_no_partial_append() {
    let srv = Server::start();
    let upload = start_upload(&srv, "gone").await;
    let mut stream = connect(&srv).await;
    send_head(&mut stream, &srv, &format!("PATCH {} HTTP/1.1", upload.path()), &["Content-Length: 5000000"]).await;
    stream.write_all(&random_bytes(4_766_437)).await.unwrap();
    drop(stream);

    let data = random_bytes(3);
    let r = send(srv.client.patch(upload.clone()).body(data.clone())).await;
    r.expect_status(202);
    assert_eq!(r.header("range"), Some("0-2"), "part of the interrupted append stayed:\n{}", r.describe());
    let digest = sha256_digest(&data);
    let r = send(srv.client.put(with_query(&r.location(&srv), "digest", &digest))).await;
    expect_blob_created(&srv, &r, "gone", &digest);
    expect_blob(&srv, "gone", &digest, &data).await;
}

#[tokio::test]
async fn a_monolithic_post_whose_client_disconnects_is_cleaned_up_at_once() {
    let srv = Server::start();
    let staging = srv.data_dir().join("uploads");
    let data = random_bytes(5_000_000);
    let mut stream = connect(&srv).await;
    let target = format!("POST /v2/mono/blobs/uploads/?digest={} HTTP/1.1", sha256_digest(&data));
    send_head(&mut stream, &srv, &target, &["Content-Length: 5000000"]).await;
    stream.write_all(&data[..2_000_000]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&staging).unwrap().count() == 0 {
        assert!(Instant::now() < deadline, "the upload never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(stream);

    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&staging).unwrap().count() > 0 {
        assert!(Instant::now() < deadline, "the abandoned upload's staging file is still there");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send(srv.head(&format!("/v2/mono/blobs/{}", sha256_digest(&data)))).await.expect_status(404);
}

#[tokio::test]
async fn a_cancel_during_a_patch_stops_it_and_the_patch_gets_upload_unknown() {
    let srv = Server::start();
    let upload = start_upload(&srv, "cancelled").await;
    let mut stream = connect(&srv).await;
    send_head(&mut stream, &srv, &format!("PATCH {} HTTP/1.1", upload.path()), &["Content-Length: 10485760"]).await;
    stream.write_all(&random_bytes(1024 * 1024)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let r = timeout(Duration::from_secs(10), send(srv.client.delete(upload.clone())))
        .await
        .expect("the cancel waited for the slow PATCH");
    r.expect_status(204);
    read_response(&mut stream, Duration::from_secs(10)).await.expect_oci_error(404, "BLOB_UPLOAD_UNKNOWN");
    send(srv.client.get(upload)).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn a_client_that_half_closes_after_its_request_gets_the_answer() {
    let srv = Server::start();
    let data = random_bytes(1024 * 1024);
    let digest = sha256_digest(&data);
    let mut stream = connect(&srv).await;
    let target = format!("POST /v2/halfclosed/blobs/uploads/?digest={digest} HTTP/1.1");
    send_head(&mut stream, &srv, &target, &[&format!("Content-Length: {}", data.len())]).await;
    stream.write_all(&data).await.unwrap();
    stream.shutdown().await.unwrap();
    assert_eq!(read_response(&mut stream, Duration::from_secs(10)).await.status, 201);
    expect_blob(&srv, "halfclosed", &digest, &data).await;
}

#[tokio::test]
async fn requests_no_route_serves_get_json_errors_in_their_planes_shape() {
    let srv = Server::start();
    for (method, path) in [("GET", "/nothing/here"), ("PUT", "/v3/"), ("GET", "/favicon.ico")] {
        let mut stream = connect(&srv).await;
        send_head(&mut stream, &srv, &format!("{method} {path} HTTP/1.1"), &["Content-Length: 0"]).await;
        read_response(&mut stream, Duration::from_secs(5)).await.expect_oci_error(404, "UNSUPPORTED");
    }
    // The ECR API lives at POST /.
    for method in ["GET", "PUT", "DELETE"] {
        let mut stream = connect(&srv).await;
        send_head(&mut stream, &srv, &format!("{method} / HTTP/1.1"), &["Content-Length: 0"]).await;
        let r = read_response(&mut stream, Duration::from_secs(5)).await;
        assert_eq!(r.status, 405, "{r:?}");
        assert_eq!(r.header("content-type"), Some("application/x-amz-json-1.1"), "{r:?}");
        assert_eq!(r.json()["__type"], "UnknownOperationException", "{r:?}");
        assert!(r.json()["message"].is_string(), "{r:?}");
    }
    // An ECR call sent to another path (an --endpoint-url with a path) is told where the API is.
    let mut stream = connect(&srv).await;
    let target = ["X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.DescribeRegistry", "Content-Length: 2"];
    send_head(&mut stream, &srv, "POST /prefix HTTP/1.1", &target).await;
    stream.write_all(b"{}").await.unwrap();
    let r = read_response(&mut stream, Duration::from_secs(5)).await;
    assert_eq!((r.status, r.json()["__type"].as_str()), (404, Some("UnknownOperationException")), "{r:?}");
    assert!(r.json()["message"].as_str().unwrap().contains("without a path"), "{r:?}");
    let digest = sha256_digest(b"x");
    let mut stream = connect(&srv).await;
    send_head(&mut stream, &srv, &format!("DELETE /_berth/layer/r/{digest} HTTP/1.1"), &["Content-Length: 0"]).await;
    read_response(&mut stream, Duration::from_secs(5)).await.expect_oci_error(405, "UNSUPPORTED");
}

#[tokio::test]
async fn a_header_over_the_limit_is_refused_without_buffering_it() {
    let srv = Server::start_with(&["--max-header-bytes", "8192"]);
    let mut stream = connect(&srv).await;
    let big = format!("X-Big: {}", "a".repeat(9000));
    send_head(&mut stream, &srv, "GET /v2/ HTTP/1.1", &[&big]).await;
    // hyper answers this itself, before any handler: a status without a body (ARCHITECTURE.md).
    assert_eq!(read_response(&mut stream, Duration::from_secs(5)).await.status, 431);
    assert!(closed_within(&mut stream, Duration::from_secs(5)).await);
    // Just under the limit is fine.
    let mut stream = connect(&srv).await;
    let fits = format!("X-Big: {}", "a".repeat(7000));
    send_head(&mut stream, &srv, "GET /v2/ HTTP/1.1", &[&fits]).await;
    assert_eq!(read_response(&mut stream, Duration::from_secs(5)).await.status, 200);
    // Many small fields within the byte limit are fine too (a proxy adds its own), up to 256.
    let many: Vec<String> = (0..200).map(|i| format!("X-{i}: v")).collect();
    let mut stream = connect(&srv).await;
    send_head(&mut stream, &srv, "GET /v2/ HTTP/1.1", &many.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(read_response(&mut stream, Duration::from_secs(5)).await.status, 200);
    let too_many: Vec<String> = (0..300).map(|i| format!("X-{i}: v")).collect();
    let mut stream = connect(&srv).await;
    send_head(&mut stream, &srv, "GET /v2/ HTTP/1.1", &too_many.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(read_response(&mut stream, Duration::from_secs(5)).await.status, 431);
}

/// HTTP/2 frames, written and read by hand (RFC 9113, 4.1).
mod h2 {
    use super::*;

    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub const DATA: u8 = 0;
    pub const HEADERS: u8 = 1;
    pub const SETTINGS: u8 = 4;
    pub const RST_STREAM: u8 = 3;
    pub const PING: u8 = 6;
    pub const GOAWAY: u8 = 7;
    pub const WINDOW_UPDATE: u8 = 8;
    /// RST_STREAM's error code when a client gives up on a request (RFC 9113, 7).
    pub const CANCEL: u32 = 0x8;

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// Reads one frame: (type, flags, stream, payload); `None` once the connection is closed.
    pub async fn read_frame(stream: &mut TcpStream, within: Duration) -> Option<(u8, u8, u32, Vec<u8>)> {
        let mut head = [0u8; 9];
        match timeout(within, stream.read_exact(&mut head)).await.expect("a frame or EOF in time") {
            Ok(_) => {}
            Err(_) => return None,
        }
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).await.ok()?;
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        Some((head[3], head[4], id, payload))
    }

    /// A GET request header block in HPACK, from the static table and literals only.
    pub fn get(path: &str, authority: &str) -> Vec<u8> {
        let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
        literal(&mut block, &[0x04], path); // :path
        literal(&mut block, &[0x01], authority); // :authority
        block
    }

    /// A request header block with a body of `length` bytes.
    pub fn with_body(method: &str, path: &str, authority: &str, length: usize) -> Vec<u8> {
        let mut block = Vec::new();
        literal(&mut block, &[0x02], method); // :method
        block.push(0x86); // :scheme http
        literal(&mut block, &[0x04], path);
        literal(&mut block, &[0x01], authority);
        literal(&mut block, &[0x0f, 0x0d], &length.to_string()); // content-length (static index 28)
        block
    }

    /// A literal header field without indexing, its name from the static table (RFC 7541, 6.2.2).
    fn literal(block: &mut Vec<u8>, name_index: &[u8], value: &str) {
        assert!(value.len() < 127, "a longer value needs a multi-byte length");
        block.extend_from_slice(name_index);
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }

    /// A client connection: preface and settings exchanged.
    pub async fn handshake(stream: &mut TcpStream) -> Vec<(u16, u32)> {
        handshake_with(stream, &[]).await
    }

    /// A client connection whose streams start with no flow-control window: the server sends
    /// no response data until the client's WINDOW_UPDATEs allow it.
    pub async fn handshake_without_window(stream: &mut TcpStream) -> Vec<(u16, u32)> {
        const INITIAL_WINDOW_SIZE_ZERO: [u8; 6] = [0, 4, 0, 0, 0, 0];
        handshake_with(stream, &INITIAL_WINDOW_SIZE_ZERO).await
    }

    /// As [`handshake`], the client's SETTINGS carrying `settings`; returns the server's.
    async fn handshake_with(stream: &mut TcpStream, settings: &[u8]) -> Vec<(u16, u32)> {
        stream.write_all(PREFACE).await.unwrap();
        stream.write_all(&frame(SETTINGS, 0, 0, settings)).await.unwrap();
        let (kind, _, _, payload) = read_frame(stream, Duration::from_secs(5)).await.expect("server SETTINGS");
        assert_eq!(kind, SETTINGS);
        stream.write_all(&frame(SETTINGS, 1, 0, &[])).await.unwrap();
        parse_settings(&payload)
    }

    /// Sends `data` on stream `id` as DATA frames within the server's flow-control windows:
    /// `settings` are the server's first, later ones may change the streams' window (RFC 9113,
    /// 6.9.2); pings and settings are answered meanwhile. The stream is not ended.
    pub async fn send_data(stream: &mut TcpStream, id: u32, data: &[u8], settings: &[(u16, u32)]) {
        const INITIAL_WINDOW_SIZE: u16 = 0x4;
        let window_setting = |settings: &[(u16, u32)]| {
            settings.iter().rev().find(|(s, _)| *s == INITIAL_WINDOW_SIZE).map(|(_, v)| i64::from(*v))
        };
        let mut initial = window_setting(settings).unwrap_or(65_535);
        let (mut connection, mut own) = (65_535i64, initial);
        let mut sent = 0;
        while sent < data.len() {
            let n = (data.len() - sent).min(16_384).min(connection.min(own).max(0) as usize);
            if n > 0 {
                stream.write_all(&frame(DATA, 0, id, &data[sent..sent + n])).await.unwrap();
                (sent, connection, own) = (sent + n, connection - n as i64, own - n as i64);
                continue;
            }
            let (kind, flags, on, payload) = read_frame(stream, Duration::from_secs(10)).await.expect("WINDOW_UPDATE");
            match kind {
                WINDOW_UPDATE => {
                    let increment = i64::from(u32::from_be_bytes(payload[..4].try_into().unwrap()) & 0x7fff_ffff);
                    if on == 0 {
                        connection += increment
                    } else if on == id {
                        own += increment
                    }
                }
                PING if flags & 0x1 == 0 => stream.write_all(&frame(PING, 0x1, 0, &payload)).await.unwrap(),
                SETTINGS if flags & 0x1 == 0 => {
                    if let Some(window) = window_setting(&parse_settings(&payload)) {
                        own += window - initial;
                        initial = window;
                    }
                    stream.write_all(&frame(SETTINGS, 1, 0, &[])).await.unwrap();
                }
                _ => {}
            }
        }
    }

    pub fn parse_settings(payload: &[u8]) -> Vec<(u16, u32)> {
        payload
            .chunks(6)
            .map(|s| (u16::from_be_bytes([s[0], s[1]]), u32::from_be_bytes([s[2], s[3], s[4], s[5]])))
            .collect()
    }
}

#[tokio::test]
async fn http2_announces_its_limits_serves_and_closes_when_idle() {
    let srv = Server::start_with(&["--idle-timeout-secs", "1"]);
    let mut stream = connect(&srv).await;
    let settings = h2::handshake(&mut stream).await;
    let setting = |id: u16| settings.iter().find(|(i, _)| *i == id).map(|(_, v)| *v);
    assert_eq!(setting(0x3), Some(100), "MAX_CONCURRENT_STREAMS in {settings:?}");
    assert!(setting(0x4).is_none_or(|w| w <= 65_535), "INITIAL_WINDOW_SIZE in {settings:?}");
    assert!(setting(0x5).is_none_or(|f| f == 16_384), "MAX_FRAME_SIZE in {settings:?}");
    assert_eq!(setting(0x6), Some(16_384), "MAX_HEADER_LIST_SIZE in {settings:?}");

    let block = h2::get("/v2/", &addr(&srv));
    stream.write_all(&h2::frame(h2::HEADERS, 0x4 | 0x1, 1, &block)).await.unwrap();
    let mut status = None;
    let mut ended = false;
    while !ended {
        let (kind, flags, id, payload) = h2::read_frame(&mut stream, Duration::from_secs(5)).await.expect("response");
        if id == 1 && kind == h2::HEADERS {
            status = payload.first().copied();
        }
        ended = id == 1 && (kind == h2::HEADERS || kind == h2::DATA) && flags & 0x1 != 0;
    }
    assert_eq!(status, Some(0x88), "expected :status 200 (HPACK static index 8)");

    // Idle: GOAWAY, then the connection closes (pings answered meanwhile, as a client must).
    let mut goaway = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Some((kind, flags, _, payload)) =
        h2::read_frame(&mut stream, deadline.saturating_duration_since(Instant::now())).await
    {
        goaway |= kind == h2::GOAWAY;
        if kind == h2::PING && flags & 0x1 == 0 {
            stream.write_all(&h2::frame(h2::PING, 0x1, 0, &payload)).await.ok();
        }
    }
    assert!(goaway, "the idle HTTP/2 connection closed without a GOAWAY");
}

/// Starts a request with a body of `length` bytes on a fresh HTTP/2 connection, sends `sent`
/// of them, then cancels the stream (RST_STREAM), as an HTTP/2 client does when it gives up.
async fn h2_request_cancelled_mid_body(srv: &Server, method: &str, path: &str, length: usize, sent: &[u8]) {
    let mut stream = connect(srv).await;
    let settings = h2::handshake(&mut stream).await;
    let block = h2::with_body(method, path, &addr(srv), length);
    stream.write_all(&h2::frame(h2::HEADERS, 0x4, 1, &block)).await.unwrap();
    h2::send_data(&mut stream, 1, sent, &settings).await;
    stream.write_all(&h2::frame(h2::RST_STREAM, 0, 1, &h2::CANCEL.to_be_bytes())).await.unwrap();
    // The connection stays open: only the request was given up.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn an_http2_patch_cancelled_mid_body_leaves_no_partial_append() {
    let srv = Server::start();
    let upload = start_upload(&srv, "h2gone").await;
    h2_request_cancelled_mid_body(&srv, "PATCH", upload.path(), 5_000_000, &random_bytes(2_000_000)).await;

    let data = random_bytes(3);
    let r = send(srv.client.patch(upload.clone()).body(data.clone())).await;
    r.expect_status(202);
    assert_eq!(r.header("range"), Some("0-2"), "part of the cancelled append stayed:\n{}", r.describe());
    let digest = sha256_digest(&data);
    let r = send(srv.client.put(with_query(&r.location(&srv), "digest", &digest))).await;
    expect_blob_created(&srv, &r, "h2gone", &digest);
}

#[tokio::test]
async fn an_http2_monolithic_post_cancelled_mid_body_is_cleaned_up_at_once() {
    let srv = Server::start();
    let staging = srv.data_dir().join("uploads");
    let data = random_bytes(5_000_000);
    let path = format!("/v2/h2mono/blobs/uploads/?digest={}", sha256_digest(&data));
    h2_request_cancelled_mid_body(&srv, "POST", &path, data.len(), &data[..2_000_000]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&staging).unwrap().count() > 0 {
        assert!(Instant::now() < deadline, "the cancelled upload's staging file is still there");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send(srv.head(&format!("/v2/h2mono/blobs/{}", sha256_digest(&data)))).await.expect_status(404);
}

/// A client resuming after a stalled connection asks where its upload stands while the stalled
/// PATCH still holds the upload: the answer comes at once, with the bytes stored before it; a
/// write instead gets a 416 with the same, after a short wait.
#[tokio::test]
async fn upload_status_and_writes_answer_while_a_patch_is_stalled() {
    let srv = Server::start();
    let upload = start_upload(&srv, "stalled/app").await;
    let first = send(srv.client.patch(upload).body(vec![7u8; 100])).await;
    first.expect_status(202);
    let location = first.location(&srv);
    let target = match location.query() {
        Some(query) => format!("{}?{query}", location.path()),
        None => location.path().to_owned(),
    };
    let mut stalled = connect(&srv).await;
    let head = format!(
        "PATCH {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 100\r\n\r\nabc"
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    // A moment for the server to take the upload for the stalled PATCH.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = timeout(Duration::from_secs(5), send(srv.client.get(location.clone())))
        .await
        .expect("the status request waited for the stalled PATCH");
    status.expect_status(204);
    assert_eq!(status.header("range"), Some("0-99"), "{}", status.describe());
    // A second write while the stalled PATCH holds the upload is refused after a short wait,
    // with where the upload stands (it waited for the stalled body's timeout, minutes).
    let busy = timeout(
        Duration::from_secs(10),
        send(srv.client.patch(location.clone()).header("content-range", "100-199").body(vec![9u8; 100])),
    )
    .await
    .expect("the second PATCH waited for the stalled one");
    busy.expect_error(416, "RANGE_INVALID");
    assert_eq!(busy.header("range"), Some("0-99"), "{}", busy.describe());
    drop(stalled);
    // The stalled PATCH is rolled back; the upload goes on from byte 100.
    let rest = send(srv.client.patch(location).header("content-range", "100-199").body(vec![8u8; 100])).await;
    rest.expect_status(202);
    assert_eq!(rest.header("range"), Some("0-199"), "{}", rest.describe());
}

/// RFC 9112 §3.2 and §6.1: an HTTP/1.1 request without exactly one valid `Host` is 400 (as is
/// one with two `Authorization` or `X-Amz-Target` headers), a transfer coding other than `chunked` 501 — refused
/// before any plane, so nothing is stored from it.
#[tokio::test]
async fn requests_http_1_1_forbids_are_refused() {
    let srv = Server::start();
    for head in [
        "GET /v2/ HTTP/1.1\r\nConnection: close\r\n\r\n".to_owned(),
        format!("GET /v2/ HTTP/1.1\r\nHost: {0}\r\nHost: {0}\r\nConnection: close\r\n\r\n", addr(&srv)),
        // A Host that is not `host[:port]` (RFC 9112, 3.2).
        "GET /v2/ HTTP/1.1\r\nHost: 210987654321.dkr.ecr.us-east-1.amazonaws.com:abc\r\nConnection: close\r\n\r\n"
            .to_owned(),
        "GET /v2/ HTTP/1.1\r\nHost: a b<c>\r\nConnection: close\r\n\r\n".to_owned(),
        // Two credentials: neither is taken.
        format!(
            "GET /v2/ HTTP/1.1\r\nHost: {0}\r\nAuthorization: Basic YTpi\r\nAuthorization: Bearer x\r\n\
             Connection: close\r\n\r\n",
            addr(&srv)
        ),
    ] {
        let mut stream = connect(&srv).await;
        stream.write_all(head.as_bytes()).await.unwrap();
        read_response(&mut stream, Duration::from_secs(5)).await.expect_oci_error(400, "UNSUPPORTED");
    }
    // Nor two X-Amz-Target headers on the ECR API: which call it is would be up to the reader.
    let mut stream = connect(&srv).await;
    let targets = [
        "X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.DescribeRegistry",
        "X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.DeleteRegistryPolicy",
        "Content-Length: 2",
    ];
    send_head(&mut stream, &srv, "POST / HTTP/1.1", &targets).await;
    stream.write_all(b"{}").await.unwrap();
    let r = read_response(&mut stream, Duration::from_secs(5)).await;
    assert_eq!((r.status, r.json()["__type"].as_str()), (400, Some("IncompleteSignatureException")), "{r:?}");
    // HTTP/1.0 has no Host requirement.
    let mut stream = connect(&srv).await;
    stream.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut stream, Duration::from_secs(5)).await.status, 200);

    let data = b"abc";
    let digest = sha256_digest(data);
    let mut stream = connect(&srv).await;
    let target = format!("POST /v2/coded/blobs/uploads/?digest={digest} HTTP/1.1");
    send_head(&mut stream, &srv, &target, &["Transfer-Encoding: gzip, chunked", "Connection: close"]).await;
    stream.write_all(b"3\r\nabc\r\n0\r\n\r\n").await.unwrap();
    read_response(&mut stream, Duration::from_secs(5)).await.expect_oci_error(501, "UNSUPPORTED");
    send(srv.get("/v2/coded/tags/list")).await.expect_error(404, "NAME_UNKNOWN");
    // Plain chunked bodies are fine.
    let mut stream = connect(&srv).await;
    send_head(&mut stream, &srv, &target, &["Transfer-Encoding: chunked", "Connection: close"]).await;
    stream.write_all(b"3\r\nabc\r\n0\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut stream, Duration::from_secs(5)).await.status, 201);
}

/// A manifest PUT whose `Content-Length` is over the limit is refused at once: with
/// `Expect: 100-continue` the client gets the 413 instead of an invitation to send 100 MB.
#[tokio::test]
async fn an_oversized_manifest_is_refused_before_its_body() {
    let srv = Server::start();
    let mut stream = connect(&srv).await;
    let headers = [
        "Content-Type: application/vnd.oci.image.manifest.v1+json",
        "Content-Length: 100000000",
        "Expect: 100-continue",
    ];
    send_head(&mut stream, &srv, "PUT /v2/big/app/manifests/v1 HTTP/1.1", &headers).await;
    read_response(&mut stream, Duration::from_secs(5)).await.expect_oci_error(413, "SIZE_INVALID");
}

/// An HTTP/2 client that gives a response no flow-control window never blocks a socket write,
/// yet would hold the stream and the blob file behind it: a response that sends too little
/// within the body timeout ends the connection, pings answered or not.
#[tokio::test]
async fn an_http2_response_starved_of_window_ends_its_connection() {
    let srv = Server::start_with(&["--body-timeout-secs", "1", "--idle-timeout-secs", "60"]);
    let digest = push_blob(&srv, "starved", &random_bytes(256 * 1024)).await;
    let mut stream = connect(&srv).await;
    h2::handshake_without_window(&mut stream).await;
    let block = h2::get(&format!("/v2/starved/blobs/{digest}"), &addr(&srv));
    stream.write_all(&h2::frame(h2::HEADERS, 0x4 | 0x1, 1, &block)).await.unwrap();
    let started = Instant::now();
    let (mut answered, mut data) = (false, 0);
    loop {
        let Some((kind, flags, id, payload)) = h2::read_frame(&mut stream, Duration::from_secs(10)).await else {
            break;
        };
        match kind {
            h2::HEADERS if id == 1 => answered = true,
            h2::DATA => data += payload.len(),
            h2::PING if flags & 0x1 == 0 => stream.write_all(&h2::frame(h2::PING, 0x1, 0, &payload)).await.unwrap(),
            h2::GOAWAY => {}
            _ => {}
        }
        assert!(started.elapsed() < Duration::from_secs(8), "the starved stream kept its connection open");
    }
    assert!(answered, "the response's header was sent");
    assert_eq!(data, 0, "no window, no data");
    assert!(started.elapsed() >= Duration::from_millis(900), "closed before the body timeout: {:?}", started.elapsed());
    // The server is fine, and serves the blob to a client that takes it.
    send(srv.client.get(srv.url(&format!("/v2/starved/blobs/{digest}")))).await.expect_status(200);
}

/// Manifest bodies are held whole until they parse, so what they may hold together is bounded
/// (and what one client address may hold, a quarter of it): past it a manifest PUT gets 429
/// `TOOMANYREQUESTS`, and once the held bodies are gone pushes work again.
#[tokio::test]
async fn manifest_bodies_held_open_are_bounded() {
    let srv = Server::start();
    const LARGEST: usize = 4 << 20;
    let mut holders = Vec::new();
    for i in 0..4 {
        let mut stream = connect(&srv).await;
        let headers = ["Content-Type: application/vnd.oci.image.manifest.v1+json", "Content-Length: 4194304"];
        send_head(&mut stream, &srv, &format!("PUT /v2/held/manifests/t{i} HTTP/1.1"), &headers).await;
        stream.write_all(&vec![b' '; LARGEST - 1]).await.unwrap();
        holders.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let image = push_image_parts(&srv, "held").await;
    let refused =
        send(srv.client.put(srv.url("/v2/held/manifests/v1")).header("content-type", OCI_MANIFEST).body(image.clone()))
            .await;
    refused.expect_error(429, "TOOMANYREQUESTS");
    drop(holders);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stored =
        send(srv.client.put(srv.url("/v2/held/manifests/v1")).header("content-type", OCI_MANIFEST).body(image)).await;
    stored.expect_status(201);
}

/// A small image's blobs pushed to `repo`; returns its manifest's bytes.
async fn push_image_parts(srv: &Server, repo: &str) -> Vec<u8> {
    let config = config_json("amd64");
    let layer = random_bytes(64);
    push_blob(srv, repo, &config).await;
    push_blob(srv, repo, &layer).await;
    oci_manifest(&descriptor(OCI_CONFIG, &config), &[descriptor(OCI_LAYER, &layer)])
}

/// A slow but steady HTTP/2 reader is not taken for a starving one: each 16 KiB slice the
/// client's window lets through counts as progress, though the whole blob takes several body
/// timeouts to arrive.
#[tokio::test]
async fn a_slow_http2_reader_gets_the_whole_blob() {
    let srv = Server::start_with(&["--body-timeout-secs", "1"]);
    let blob = random_bytes(512 * 1024);
    let digest = push_blob(&srv, "slow", &blob).await;
    // Read twice before: a blob read lately comes from the page cache in large pieces.
    for _ in 0..2 {
        send(srv.client.get(srv.url(&format!("/v2/slow/blobs/{digest}")))).await.expect_status(200);
    }
    let mut stream = connect(&srv).await;
    h2::handshake_without_window(&mut stream).await;
    let block = h2::get(&format!("/v2/slow/blobs/{digest}"), &addr(&srv));
    stream.write_all(&h2::frame(h2::HEADERS, 0x4 | 0x1, 1, &block)).await.unwrap();
    let started = Instant::now();
    let mut received = Vec::new();
    let mut ended = false;
    while !ended {
        // 32 KiB more every 250 ms: the 512 KiB take about 4 s, four body timeouts, and a piece
        // of 256 KiB or more longer than one.
        tokio::time::sleep(Duration::from_millis(250)).await;
        for on in [0, 1] {
            stream.write_all(&h2::frame(h2::WINDOW_UPDATE, 0, on, &32_768u32.to_be_bytes())).await.unwrap();
        }
        let goal = received.len() + 32_768;
        while received.len() < goal && !ended {
            let (kind, flags, id, payload) =
                h2::read_frame(&mut stream, Duration::from_secs(5)).await.expect("the connection stayed open");
            match kind {
                h2::DATA if id == 1 => {
                    received.extend_from_slice(&payload);
                    ended = flags & 0x1 != 0;
                }
                h2::PING if flags & 0x1 == 0 => stream.write_all(&h2::frame(h2::PING, 0x1, 0, &payload)).await.unwrap(),
                h2::GOAWAY | h2::RST_STREAM => panic!("the slow reader was cut off after {:?}", started.elapsed()),
                _ => {}
            }
        }
    }
    assert!(started.elapsed() > Duration::from_secs(3), "it did take longer than the body timeout");
    assert_eq!(received, blob);
}

/// Each HTTP/2 request in flight holds a connection slot, as a connection does: a client opening
/// many streams it gives no window cannot make the server hold more blob files than the
/// open-file limit leaves room for. The streams past the cap wait for a slot; the server serves
/// everyone again once the stalled connection is cut.
#[tokio::test]
async fn http2_streams_take_connection_slots() {
    // 128 files: 32 slots, one of them the HTTP/2 connection's (which covers its first stream).
    let srv = Launch::new()
        .no_auth()
        .open_file_limit(128)
        .args(&["--body-timeout-secs", "2", "--idle-timeout-secs", "60"])
        .start();
    let digest = push_blob(&srv, "streams", &random_bytes(256 * 1024)).await;
    let mut stream = connect(&srv).await;
    h2::handshake_without_window(&mut stream).await;
    let block = h2::get(&format!("/v2/streams/blobs/{digest}"), &addr(&srv));
    for i in 0..100u32 {
        stream.write_all(&h2::frame(h2::HEADERS, 0x4 | 0x1, 2 * i + 1, &block)).await.unwrap();
    }
    // Well within the body timeout: every stream that got a slot has its answer's header out.
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut answered = 0;
    while let Ok(Some((kind, flags, _, payload))) = timeout(
        deadline.saturating_duration_since(Instant::now()),
        h2::read_frame(&mut stream, Duration::from_secs(60)),
    )
    .await
    {
        match kind {
            h2::HEADERS => answered += 1,
            h2::PING if flags & 0x1 == 0 => stream.write_all(&h2::frame(h2::PING, 0x1, 0, &payload)).await.unwrap(),
            _ => {}
        }
    }
    // The first stream is the connection's own; each other one takes a slot.
    assert!((1..=32).contains(&answered), "{answered} of 100 starved streams were answered with 31 slots free");
    let files = std::fs::read_dir(format!("/proc/{}/fd", srv.pid())).unwrap().count();
    assert!(files < 128 - 16, "the server holds {files} files of 128");
    drop(stream);
    let served = timeout(Duration::from_secs(10), send(srv.get(&format!("/v2/streams/blobs/{digest}"))))
        .await
        .expect("a later client was not served once the stalled streams were gone");
    served.expect_status(200);
}

/// A connection always gets one request served, HTTP/2 too, however full the server is; a
/// second stream finding no slot is answered 503 `UNAVAILABLE`: one without a body after waiting
/// the body timeout for a slot, one with a body at once (its unread bytes would hold the
/// connection's flow-control window from the stream being served).
#[tokio::test]
async fn an_http2_stream_without_a_slot_is_answered_unavailable() {
    let srv = Server::start_with(&["--max-connections", "1", "--body-timeout-secs", "1"]);
    let mut stream = connect(&srv).await;
    h2::handshake(&mut stream).await;
    // Alone on the server's one slot: served.
    stream.write_all(&h2::frame(h2::HEADERS, 0x4 | 0x1, 1, &h2::get("/v2/", &addr(&srv)))).await.unwrap();
    let started = Instant::now();
    loop {
        let (kind, _, id, _) = h2::read_frame(&mut stream, Duration::from_secs(5)).await.expect("an answer");
        if kind == h2::HEADERS && id == 1 {
            break;
        }
    }
    assert!(started.elapsed() < Duration::from_millis(900), "the connection's first stream waited for a slot");
    // A manifest arriving slowly keeps stream 3 in flight; streams 5 (a GET) and 7 (a PUT with a
    // body) then need slots of their own.
    let block = h2::with_body("PUT", "/v2/slots/manifests/v1", &addr(&srv), 4096);
    stream.write_all(&h2::frame(h2::HEADERS, 0x4, 3, &block)).await.unwrap();
    stream.write_all(&h2::frame(h2::HEADERS, 0x4 | 0x1, 5, &h2::get("/v2/", &addr(&srv)))).await.unwrap();
    let started = Instant::now();
    let block = h2::with_body("PUT", "/v2/slots/manifests/v2", &addr(&srv), 10);
    stream.write_all(&h2::frame(h2::HEADERS, 0x4, 7, &block)).await.unwrap();
    // Stream 9 is an ECR call: refused in ECR's shape.
    let block = h2::with_body("POST", "/", &addr(&srv), 2);
    stream.write_all(&h2::frame(h2::HEADERS, 0x4, 9, &block)).await.unwrap();
    let mut bodies: std::collections::HashMap<u32, (Vec<u8>, Option<Duration>)> = Default::default();
    let mut sent = 0;
    while [5, 7, 9].iter().any(|id| bodies.get(id).is_none_or(|(_, done)| done.is_none())) {
        if sent < 4096 {
            stream.write_all(&h2::frame(h2::DATA, 0, 3, &[b' '; 512])).await.unwrap();
            sent += 512;
        }
        while let Ok(Some((kind, flags, id, payload))) =
            timeout(Duration::from_millis(250), h2::read_frame(&mut stream, Duration::from_secs(60))).await
        {
            match kind {
                h2::DATA if [5, 7, 9].contains(&id) => {
                    let (body, done) = bodies.entry(id).or_default();
                    body.extend_from_slice(&payload);
                    if flags & 0x1 != 0 {
                        *done = Some(started.elapsed());
                    }
                }
                h2::PING if flags & 0x1 == 0 => stream.write_all(&h2::frame(h2::PING, 0x1, 0, &payload)).await.unwrap(),
                _ => {}
            }
        }
        assert!(started.elapsed() < Duration::from_secs(5), "streams 5, 7 and 9 were not all answered");
    }
    for id in [5, 7] {
        let body: Value = serde_json::from_slice(&bodies[&id].0).expect("a JSON error body");
        assert_eq!(body["errors"][0]["code"], "UNAVAILABLE", "stream {id}: {body}");
    }
    let ecr: Value = serde_json::from_slice(&bodies[&9].0).expect("a JSON error body");
    assert_eq!(ecr["__type"], "ServerException", "{ecr}");
    // Refusals are answers like any other: each has its access-log line.
    let refusals = srv.log().lines().filter(|l| l.contains("berth::access") && l.contains("status=503")).count();
    assert_eq!(refusals, 3, "{}", srv.log_tail());
    let (waited, refused) = (bodies[&5].1.unwrap(), bodies[&7].1.unwrap());
    assert!(waited >= Duration::from_millis(900), "the GET waited the body timeout for a slot: {waited:?}");
    assert!(refused < Duration::from_millis(700), "the PUT was refused at once: {refused:?}");
    assert!(sent < 4096, "answered while stream 3 was still in flight ({sent} of its 4096 bytes sent)");
}

/// At the cap, a connection's HTTP/2 requests take turns on its own slot: one sent while another
/// is in flight is served once that one ends, not refused after waiting for a slot of the
/// listener's.
#[tokio::test]
async fn http2_requests_at_the_cap_take_turns() {
    let srv = Server::start_with(&["--max-connections", "1", "--body-timeout-secs", "5"]);
    // The blob, over an HTTP/1 connection that closes (the server's only slot is needed next).
    let blob = random_bytes(64 * 1024);
    let digest = sha256_digest(&blob);
    let mut upload = connect(&srv).await;
    let target = format!("POST /v2/turns/blobs/uploads/?digest={digest} HTTP/1.1");
    let length = format!("Content-Length: {}", blob.len());
    send_head(&mut upload, &srv, &target, &[&length, "Connection: close"]).await;
    upload.write_all(&blob).await.unwrap();
    assert_eq!(read_response(&mut upload, Duration::from_secs(5)).await.status, 201);
    drop(upload);

    let mut stream = connect(&srv).await;
    h2::handshake_without_window(&mut stream).await;
    // Stream 1 holds the connection's slot while it has no window; stream 3 comes meanwhile.
    let block = h2::get(&format!("/v2/turns/blobs/{digest}"), &addr(&srv));
    stream.write_all(&h2::frame(h2::HEADERS, 0x4 | 0x1, 1, &block)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream.write_all(&h2::frame(h2::HEADERS, 0x4 | 0x1, 3, &h2::get("/v2/", &addr(&srv)))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let started = Instant::now();
    for on in [0, 1, 3] {
        stream.write_all(&h2::frame(h2::WINDOW_UPDATE, 0, on, &(1u32 << 20).to_be_bytes())).await.unwrap();
    }
    let mut third = Vec::new();
    loop {
        let (kind, flags, id, payload) = h2::read_frame(&mut stream, Duration::from_secs(10)).await.expect("answers");
        match kind {
            h2::DATA if id == 3 => third.extend_from_slice(&payload),
            h2::PING if flags & 0x1 == 0 => stream.write_all(&h2::frame(h2::PING, 0x1, 0, &payload)).await.unwrap(),
            _ => {}
        }
        if id == 3 && matches!(kind, h2::DATA | h2::HEADERS) && flags & 0x1 != 0 {
            break;
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stream 3 waited out the body timeout: {:?}",
        started.elapsed()
    );
    assert!(!String::from_utf8_lossy(&third).contains("UNAVAILABLE"), "stream 3 was refused");
}

/// The cap counts what is served: at `--max-connections 4`, one HTTP/2 connection gets four
/// requests in flight (its own slot and three more), none kept back for a connection not yet
/// accepted.
#[tokio::test]
async fn http2_requests_get_every_slot_of_the_cap() {
    let srv = Server::start_with(&["--max-connections", "4", "--body-timeout-secs", "5"]);
    let mut stream = connect(&srv).await;
    h2::handshake(&mut stream).await;
    // Four manifests whose bodies come later: each stream holds a slot until answered.
    let streams = [1u32, 3, 5, 7];
    for id in streams {
        let block = h2::with_body("PUT", &format!("/v2/every-slot/manifests/v{id}"), &addr(&srv), 512);
        stream.write_all(&h2::frame(h2::HEADERS, 0x4, id, &block)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for id in streams {
        stream.write_all(&h2::frame(h2::DATA, 0x1, id, &[b' '; 512])).await.unwrap();
    }
    let mut bodies: std::collections::HashMap<u32, (Vec<u8>, bool)> = Default::default();
    while streams.iter().any(|id| bodies.get(id).is_none_or(|(_, done)| !done)) {
        let (kind, flags, id, payload) = h2::read_frame(&mut stream, Duration::from_secs(10)).await.expect("answers");
        match kind {
            h2::DATA => {
                let (body, done) = bodies.entry(id).or_default();
                body.extend_from_slice(&payload);
                *done |= flags & 0x1 != 0;
            }
            h2::PING if flags & 0x1 == 0 => stream.write_all(&h2::frame(h2::PING, 0x1, 0, &payload)).await.unwrap(),
            _ => {}
        }
    }
    for id in streams {
        let body: Value = serde_json::from_slice(&bodies[&id].0).expect("a JSON error body");
        // Spaces are no manifest: each was served, and refused for its content only.
        assert_eq!(body["errors"][0]["code"], "MANIFEST_INVALID", "stream {id}: {body}");
    }
}
