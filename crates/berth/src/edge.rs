//! The edge every request passes first: it makes the request's [`RequestContext`] (request id,
//! client address — through trusted proxies only —, transport, user agent), returns the id as
//! `X-Request-Id`, answers a handler's panic with a 500 naming that id, and writes the access
//! log line, attributed to whoever the plane authenticated. It refuses, before any plane, what
//! no plane should see: malformed requests, throttled clients, and `/v2/` requests for another
//! account's ECR registry name.

use std::future::Future;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_iam::{ConnectionInfo, Identity, RequestContext, Served};
use bytes::Bytes;
use futures::FutureExt;
use hyper::body::Frame;
use ipnet::IpNet;

use crate::audit::AuditLog;
use crate::connection::NoStreamSlot;
use crate::health;
use crate::throttle::LoginThrottle;

/// Every response carries its request's id (the ECR API also as `x-amzn-RequestId`).
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

tokio::task_local! {
    /// The id of the request being served, for the panic hook.
    static REQUEST_ID: String;
}

pub struct Edge {
    /// Peers whose `X-Forwarded-For` is believed (reverse proxies, load balancers).
    trusted_proxies: Vec<IpNet>,
    /// Where mutating and refused requests are recorded (`--audit-log`).
    audit: Option<AuditLog>,
    /// Failed sign-ins per client address (`--auth-failures-per-minute`); `None`: off.
    throttle: Option<LoginThrottle>,
    /// The accounts whose ECR registry names reach this server (`ServeConfig::ecr_accounts`);
    /// empty: no `Host` is refused.
    accounts: Vec<String>,
}

impl Edge {
    pub fn new(
        trusted_proxies: Vec<IpNet>,
        audit: Option<AuditLog>,
        throttle: Option<LoginThrottle>,
        accounts: Vec<String>,
    ) -> Edge {
        Edge { trusted_proxies, audit, throttle, accounts }
    }

    /// Why a `/v2/` request is refused as another account's, if it is: its `Host` is the ECR
    /// registry name of an account other than this server's. One server holds one account's
    /// registry; answering for any other (a team pointing its dev and prod accounts' names here)
    /// would merge them, while the ECR API already says another account's repositories do not
    /// exist. `/v2/` itself still answers, as ECR's does for any registry. Regions are not
    /// checked: the ECR API answers every region as this server's too (README).
    fn foreign_registry(&self, request: &Request, path: &str) -> Option<String> {
        if self.accounts.is_empty() || !path.starts_with("/v2/") || path == "/v2/" {
            return None;
        }
        let host = match request.uri().authority() {
            Some(authority) => authority.host(),
            None => request.headers().get(header::HOST)?.to_str().ok()?,
        };
        let account = berth_ecr::names::host_account(host)?;
        (!self.accounts.contains(&account))
            .then(|| format!("{host} is the registry of account {account}, which this server does not hold"))
    }

    /// How long the client must wait when it has spent its failed sign-ins and presents
    /// credentials again: in an `Authorization` header (not the empty Basic pair anonymous
    /// pulls send), or to the console's sign-in form.
    fn throttled(&self, client: Option<IpAddr>, request: &Request, now: Instant) -> Option<std::time::Duration> {
        let (throttle, client) = (self.throttle.as_ref()?, client?);
        let signs_in =
            request.method() == axum::http::Method::POST && request.uri().path() == berth_console::SIGN_IN_PATH;
        let credentials = request.headers().get(header::AUTHORIZATION).is_some_and(berth_auth::presents_credentials);
        if !signs_in && !credentials {
            return None;
        }
        throttle.refused(client, now)
    }

    fn trusts(&self, hop: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&hop))
    }

    /// The client's address: the TCP peer, unless the peer is a trusted proxy; then the
    /// right-most `X-Forwarded-For` hop that is not itself a trusted proxy (the left-most if all
    /// are). Hops left of the first untrusted one are whatever the client claimed, so they are
    /// never used. A hop that does not parse ends the walk at the trusted hop that reported it:
    /// trusted proxies write addresses, so only a client inside a trusted range can be there.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        let values = headers.get_all(FORWARDED_FOR).iter().map(|v| v.to_str().unwrap_or(""));
        let hops: Vec<&str> = values.flat_map(|v| v.split(',')).map(str::trim).collect();
        for hop in hops.into_iter().rev() {
            let Some(address) = parse_hop(hop) else { break };
            client = address;
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

/// Whether the client reached this server over TLS: the connection is TLS, or a trusted proxy
/// (a TLS-terminating one) says so in `X-Forwarded-Proto`. Every value there must be `https`: a
/// proxy that appends to what the client sent leaves a claimed `https` beside its own `http`.
fn secure_transport(edge: &Edge, connection: ConnectionInfo, headers: &HeaderMap) -> bool {
    if connection.tls {
        return true;
    }
    if !edge.trusts(connection.peer.ip().to_canonical()) {
        return false;
    }
    let values = headers.get_all(FORWARDED_PROTO).iter().map(|v| v.to_str().unwrap_or(""));
    let mut schemes = values.flat_map(|v| v.split(',')).map(str::trim).peekable();
    schemes.peek().is_some() && schemes.all(|scheme| scheme.eq_ignore_ascii_case("https"))
}

/// An address in `X-Forwarded-For`: bare, or with a port as some proxies write it.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let address = hop.parse::<IpAddr>().or_else(|_| hop.parse::<std::net::SocketAddr>().map(|a| a.ip())).ok()?;
    Some(address.to_canonical())
}

/// The middleware (see the module docs).
pub async fn serve_request(State(edge): State<Arc<Edge>>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let connection = request.extensions().get::<ConnectionInfo>().copied();
    let headers = request.headers();
    let ctx = RequestContext {
        request_id: uuid::Uuid::new_v4().to_string(),
        received_at: SystemTime::now(),
        source_ip: connection.map(|c| edge.client_address(c.peer.ip(), headers)),
        secure_transport: connection.is_some_and(|c| secure_transport(&edge, c, headers)),
        user_agent: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
        identity: Identity::Anonymous,
    };
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    // Probes are polled constantly: no info line and no series of their own.
    let probe = health::PATHS.contains(&path.as_str());
    let plane = plane(&method, &path);
    if !probe {
        let received = metrics::counter!("berth_http_received_bytes_total", "plane" => plane);
        request = request.map(|body| Body::new(Counted { inner: body, counter: received }));
    }
    request.extensions_mut().insert(ctx.clone());
    // Kept (a cheap clone) only for the audit record of a refusal: which key was tried.
    let authorization = edge.audit.as_ref().and_then(|_| request.headers().get(header::AUTHORIZATION).cloned());
    let throttled = edge.throttled(ctx.source_ip, &request, started);
    let edge_made = |response| with_plane_headers(plane, &ctx.request_id, response);
    let foreign = edge.foreign_registry(&request, &path);
    let no_slot = request.extensions().get::<NoStreamSlot>().is_some();
    let mut response = match (malformed(&request), throttled) {
        _ if no_slot => edge_made(at_capacity(plane)),
        (Some(bad), _) => edge_made(refused(plane, bad.status, bad.message, bad.ecr_type)),
        (None, _) if let Some(foreign) = foreign => {
            let body = berth_oci::error_body("NAME_UNKNOWN", &foreign);
            edge_made((StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "application/json")], body).into_response())
        }
        (None, Some(retry_after)) => {
            metrics::counter!("berth_auth_failures_total", "plane" => plane, "reason" => "throttled").increment(1);
            edge_made(too_many_failures(plane, retry_after))
        }
        (None, None) => catch_panic(ctx.request_id.clone(), next.run(request)).await.unwrap_or_else(|()| {
            // The panic hook logged what happened, with the request id; the client gets only the id.
            edge_made(internal_error(&path, &ctx.request_id))
        }),
    };
    if let Ok(id) = HeaderValue::from_str(&ctx.request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, id);
    }
    // Blobs are whatever was pushed and share an origin with the console: a browser must never
    // read one as a script or a page whatever it contains (the console's CSP allows 'self').
    response.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let status = response.status();
    let elapsed = started.elapsed();
    // The plane returns the context with the caller it authenticated, and what it served.
    let served = response.extensions().get::<RequestContext>().unwrap_or(&ctx);
    let operation = response.extensions().get::<Served>();
    let (user, access_key_id) = (served.identity.user_name().unwrap_or("-"), served.identity.access_key_id());
    let client = ctx.source_ip.map(|ip| ip.to_string());
    let micros = elapsed.as_micros() as u64;
    if probe {
        tracing::debug!(target: "berth::access", request_id = ctx.request_id, %method, path, status = status.as_u16(), micros);
        return response;
    }
    tracing::info!(
        target: "berth::access",
        request_id = ctx.request_id,
        %method,
        path,
        status = status.as_u16(),
        user,
        access_key_id,
        client,
        micros,
    );
    let method = crate::metrics::method_label(&method);
    let operation_label = operation.map_or("none", |o| o.operation);
    let labels = [("plane", plane), ("operation", operation_label), ("method", method)];
    let class = crate::metrics::status_class(status);
    let counted = [labels[0], labels[1], labels[2], ("status", class)];
    metrics::counter!("berth_http_requests_total", &counted).increment(1);
    metrics::histogram!("berth_http_request_duration_seconds", &labels).record(elapsed.as_secs_f64());
    if let Some(operation) = operation {
        if let Some(reason) = operation.auth_failure {
            metrics::counter!("berth_auth_failures_total", "plane" => plane, "reason" => reason).increment(1);
            if let (Some(throttle), Some(client)) = (&edge.throttle, ctx.source_ip)
                && LoginThrottle::counts(reason)
            {
                throttle.record_failure(client, started);
            }
        }
        if let Some(audit) = &edge.audit {
            let presented =
                operation.auth_failure.and(authorization.as_ref()).and_then(berth_auth::presented_access_key_id);
            audit.record(served, operation, status, presented);
        }
    }
    let sent = metrics::counter!("berth_http_sent_bytes_total", "plane" => plane);
    response.map(|body| Body::new(Counted { inner: body, counter: sent }))
}

/// A body that counts its data bytes and otherwise is its inner body: its size hint passes
/// through, so a response keeps its `Content-Length` (a mapped body would turn it chunked).
struct Counted {
    inner: Body,
    counter: metrics::Counter,
}

impl hyper::body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = hyper::body::Body::poll_frame(std::pin::Pin::new(&mut self.inner), cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.counter.increment(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::Body::size_hint(&self.inner)
    }
}

/// Which API a request is for, as the metrics label it.
fn plane(method: &axum::http::Method, path: &str) -> &'static str {
    if path == "/v2" || path.starts_with("/v2/") {
        "oci"
    } else if path == "/" && method == axum::http::Method::POST {
        "ecr"
    } else if path.starts_with("/console") {
        "console"
    } else if path.starts_with("/_berth/layer/") {
        "download"
    } else if path == "/metrics" {
        "metrics"
    } else {
        "other"
    }
}

/// Runs `handler` with its request id visible to the panic hook; `Err` if it panicked.
async fn catch_panic(request_id: String, handler: impl Future<Output = Response>) -> Result<Response, ()> {
    REQUEST_ID.scope(request_id, AssertUnwindSafe(handler).catch_unwind()).await.map_err(|_| ())
}

/// A request the edge refuses before any plane sees it.
struct Malformed {
    status: StatusCode,
    message: &'static str,
    /// The ECR API's error type for it.
    ecr_type: &'static str,
}

/// Headers a signature covers that a request may carry once: which copy counts would be up to
/// whoever reads it first (a proxy filtering on the last `X-Amz-Target` would see another call).
const SINGLETONS: [&str; 4] = ["authorization", "x-amz-target", "x-amz-date", "x-amz-content-sha256"];

/// What HTTP/1.1 (RFC 9112) makes a server refuse and hyper lets through: a request without
/// exactly one `Host` (§3.2: 400), and a transfer coding other than `chunked` (§6.1: 501), whose
/// body would otherwise be read with the coding left in. Also two of a [`SINGLETONS`] header.
fn malformed(request: &Request) -> Option<Malformed> {
    let headers = request.headers();
    let refuse = |status, message, ecr_type| Some(Malformed { status, message, ecr_type });
    if request.version() == axum::http::Version::HTTP_11 && headers.get_all(header::HOST).iter().count() != 1 {
        return refuse(
            StatusCode::BAD_REQUEST,
            "an HTTP/1.1 request needs exactly one Host header",
            "ValidationException",
        );
    }
    // HTTP/2's `:authority` (the URI's) too: the one-account check reads it first.
    let authority = request.uri().authority().map(|authority| authority.as_str().as_bytes());
    if headers.get(header::HOST).map(HeaderValue::as_bytes).into_iter().chain(authority).any(|host| !valid_host(host)) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the Host header is not a host name or address with an optional port",
            "ValidationException",
        );
    }
    if SINGLETONS.iter().any(|name| headers.get_all(*name).iter().nth(1).is_some()) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "a request may carry one each of Authorization, X-Amz-Target, X-Amz-Date and X-Amz-Content-Sha256",
            "IncompleteSignatureException",
        );
    }
    let codings = headers.get_all(header::TRANSFER_ENCODING).iter();
    let only_chunked = codings
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .all(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
    if only_chunked {
        return None;
    }
    refuse(StatusCode::NOT_IMPLEMENTED, "no transfer coding but chunked is supported", "ValidationException")
}

/// RFC 9112's Host: `uri-host [":" port]`, without user information (a server must refuse any
/// other value with 400; read as this registry, `<other account's name>:abc` got past the
/// other-account check).
fn valid_host(value: &[u8]) -> bool {
    let Ok(authority) = axum::http::uri::Authority::try_from(value) else { return false };
    let port_ok = match authority.as_str().rsplit_once(':') {
        // A bracketed IPv6 literal's colons are inside the brackets. A port is digits only
        // (`u16` parsing would take `+443`).
        Some((_, port)) if !port.ends_with(']') => {
            port.bytes().all(|b| b.is_ascii_digit()) && (port.is_empty() || port.parse::<u16>().is_ok())
        }
        _ => true,
    };
    let host = authority.host();
    let literal_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(inside) => inside.parse::<std::net::Ipv6Addr>().is_ok(),
        None => !host.contains(['[', ']']),
    };
    // No percent-encoding either: no client writes one, and `%2E` for `.` hid a name from the
    // one-account check.
    !authority.as_str().contains(['@', '%']) && !host.is_empty() && port_ok && literal_ok
}

/// A refusal before any plane saw the request, in the shape of the plane it was for.
fn refused(plane: &str, status: StatusCode, message: &str, ecr_type: &str) -> Response {
    let (content_type, body) = match plane {
        "oci" => (
            "application/json",
            serde_json::json!({"errors": [{"code": "UNSUPPORTED", "message": message, "detail": null}]}).to_string(),
        ),
        "ecr" => {
            ("application/x-amz-json-1.1", serde_json::json!({"__type": ecr_type, "message": message}).to_string())
        }
        _ => ("text/plain; charset=utf-8", message.to_owned()),
    };
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The answer to an HTTP/2 request that found no connection slot ([`NoStreamSlot`]): `503`
/// with `Retry-After`, which the OCI clients and AWS SDKs retry; ECR's `ServerException`, as
/// every ECR operation models it.
fn at_capacity(plane: &str) -> Response {
    let message = "the server is at its connection limit; retry later";
    let (content_type, body) = match plane {
        // Layer download URLs answer in the ECR plane's shape too.
        "ecr" | "download" => (
            "application/x-amz-json-1.1",
            serde_json::json!({"__type": "ServerException", "message": message}).to_string(),
        ),
        "console" => ("text/plain; charset=utf-8", message.to_owned()),
        _ => ("application/json", berth_oci::error_body("UNAVAILABLE", message)),
    };
    let headers = [(header::CONTENT_TYPE, content_type), (header::RETRY_AFTER, "1")];
    (StatusCode::SERVICE_UNAVAILABLE, headers, body).into_response()
}

/// What the edge answers itself (a malformed request, a throttled client, a panic) carries its
/// plane's headers, as the plane's own answers do.
fn with_plane_headers(plane: &str, request_id: &str, mut response: Response) -> Response {
    match plane {
        "ecr" => {
            if let Ok(id) = HeaderValue::from_str(request_id) {
                response.headers_mut().insert(berth_ecr::error::REQUEST_ID_HEADER, id);
            }
        }
        "oci" => berth_oci::set_api_version(response.headers_mut()),
        _ => {}
    }
    response
}

/// A 500 in the shape of the plane the path belongs to, naming the request id and nothing else.
fn internal_error(path: &str, request_id: &str) -> Response {
    let message = format!("internal server error; request id {request_id}");
    let (content_type, body) = if path.starts_with("/v2") {
        ("application/json", serde_json::json!({"errors": [{"code": "UNKNOWN", "message": message, "detail": null}]}))
    } else {
        ("application/x-amz-json-1.1", serde_json::json!({"__type": "ServerException", "message": message}))
    };
    (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, content_type)], body.to_string()).into_response()
}

/// The refusal of a client that spent its failed sign-ins, in its plane's shape: the OCI
/// distribution spec's `429 TOOMANYREQUESTS`, ECR's `ThrottlingException` (which SDKs retry with
/// backoff), both with `Retry-After`.
fn too_many_failures(plane: &str, retry_after: std::time::Duration) -> Response {
    let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let message = format!("too many failed sign-ins from this address; retry in {seconds} s");
    let (status, content_type, body) = match plane {
        "ecr" => (
            StatusCode::BAD_REQUEST,
            "application/x-amz-json-1.1",
            serde_json::json!({"__type": "ThrottlingException", "message": message}).to_string(),
        ),
        // A browser shows the sentence as it is.
        "console" => (StatusCode::TOO_MANY_REQUESTS, "text/plain; charset=utf-8", message),
        _ => (
            StatusCode::TOO_MANY_REQUESTS,
            "application/json",
            serde_json::json!({"errors": [{"code": "TOOMANYREQUESTS", "message": message, "detail": null}]})
                .to_string(),
        ),
    };
    let headers = [(header::CONTENT_TYPE, content_type.to_owned()), (header::RETRY_AFTER, seconds.to_string())];
    (status, headers, body).into_response()
}

/// The process's panic hook: one error line through the log, with the request id when a
/// request's handler panicked (replacing the default hook's unstructured stderr text).
pub fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let request_id = REQUEST_ID.try_with(String::clone).ok();
    let location = info.location().map(ToString::to_string);
    let message = info
        .payload()
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    let backtrace = std::backtrace::Backtrace::capture();
    tracing::error!(request_id, location, %backtrace, "panic: {message}");
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Mutex;

    use axum::Router;
    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;

    fn edge(trusted: &[&str]) -> Edge {
        Edge::new(trusted.iter().map(|net| net.parse().unwrap()).collect(), None, None, vec![])
    }

    #[test]
    fn host_headers_are_a_host_and_an_optional_port() {
        for good in ["localhost", "127.0.0.1:5000", "[::1]:5000", "[::1]", "reg.example.com", "a.b:1"] {
            assert!(valid_host(good.as_bytes()), "{good}");
        }
        let ecr = "210987654321.dkr.ecr.us-east-1.amazonaws.com";
        for bad in [
            format!("{ecr}:abc"),
            format!("{ecr}:+443"),
            "210987654321.dkr.ecr.us-east-1.amazonaws%2Ecom".into(),
            format!("{ecr}:80:80"),
            format!("u@{ecr}"),
            format!("[{ecr}]"),
            "a b<c>".into(),
            "".into(),
            ":80".into(),
            "host:99999".into(),
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn repository_requests_for_another_accounts_registry_name_are_refused() {
        let own = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        let other = "210987654321.dkr.ecr.us-east-1.amazonaws.com";
        let request =
            |uri: &str, host: &str| Request::builder().uri(uri).header(header::HOST, host).body(Body::empty()).unwrap();
        let refused = |edge: &Edge, uri: &str, host: &str| {
            let request = request(uri, host);
            edge.foreign_registry(&request, request.uri().path()).is_some()
        };
        let stated = Edge::new(vec![], None, None, vec!["123456789012".into(), "333333333333".into()]);
        assert!(refused(&stated, "/v2/app/tags/list", other));
        assert!(refused(&stated, "/v2/_catalog", &format!("{}:443", other.to_uppercase())));
        assert!(
            refused(&stated, &format!("http://user@{other}/v2/app/manifests/v1"), own),
            "the URI's authority counts"
        );
        for (uri, host) in [
            ("/v2/app/tags/list", own),
            ("/v2/app/tags/list", "333333333333.dkr.ecr.eu-west-1.amazonaws.com"),
            ("/v2/app/tags/list", "127.0.0.1:5000"),
            ("/v2/", other),
            ("/console", other),
        ] {
            assert!(!refused(&stated, uri, host), "{uri} at {host}");
        }
        assert!(!refused(&edge(&[]), "/v2/app/tags/list", other), "no account stated: nothing refused");
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(FORWARDED_FOR, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let edge = edge(&["10.0.0.0/8", "fd00::/8"]);
        let spoofed = forwarded(&["6.6.6.6"]);
        // An untrusted peer is the client, whatever it claims.
        assert_eq!(edge.client_address(ip("203.0.113.9"), &spoofed), ip("203.0.113.9"));
        // A trusted proxy's report is believed...
        assert_eq!(edge.client_address(ip("10.1.1.1"), &spoofed), ip("6.6.6.6"));
        // ...up to the right-most hop no trusted proxy vouches for: what the client put left of
        // it is ignored, and trusted hops are skipped.
        let chain = forwarded(&["1.1.1.1, 198.51.100.7", "10.2.2.2"]);
        assert_eq!(edge.client_address(ip("10.1.1.1"), &chain), ip("198.51.100.7"));
        let all_trusted = forwarded(&["10.3.3.3, 10.2.2.2"]);
        assert_eq!(edge.client_address(ip("10.1.1.1"), &all_trusted), ip("10.3.3.3"));
        // A proxy that reported nothing: the proxy itself.
        assert_eq!(edge.client_address(ip("10.1.1.1"), &HeaderMap::new()), ip("10.1.1.1"));
        // Ports, IPv6, and IPv4 peers seen through an IPv6 socket.
        let ported = forwarded(&["[2001:db8::1]:4711, 192.0.2.1:80"]);
        assert_eq!(edge.client_address(ip("fd00::1"), &ported), ip("192.0.2.1"));
        assert_eq!(edge.client_address(ip("::ffff:10.1.1.1"), &spoofed), ip("6.6.6.6"));
        // Garbage reported by a trusted hop: that hop is the best-known client.
        assert_eq!(edge.client_address(ip("10.1.1.1"), &forwarded(&["not-an-ip"])), ip("10.1.1.1"));
        let behind_trusted = forwarded(&["6.6.6.6, garbage", "10.2.2.2"]);
        assert_eq!(edge.client_address(ip("10.1.1.1"), &behind_trusted), ip("10.2.2.2"));
        // Nobody trusted: the peer, always.
        assert_eq!(
            super::Edge::new(vec![], None, None, vec![]).client_address(ip("10.1.1.1"), &spoofed),
            ip("10.1.1.1")
        );
    }

    /// Collects what the fmt subscriber writes.
    #[derive(Clone, Default)]
    struct LogBuffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for LogBuffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    async fn boom() -> &'static str {
        panic!("handler bug")
    }

    /// The edge wraps the handlers, so a panic in one is answered (500, with the request id)
    /// and logged once with that id — by the panic hook — plus the access line.
    #[tokio::test(flavor = "current_thread")]
    async fn a_panicking_handler_gets_a_500_with_its_request_id_and_one_log_line() {
        let logs = LogBuffer::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let previous_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(log_panic));

        let app = Router::new()
            .route("/v2/boom", axum::routing::get(boom))
            .route("/v2/", axum::routing::get(|| async { "{}" }))
            .layer(axum::middleware::from_fn_with_state(Arc::new(edge(&[])), serve_request));
        let request = |path: &str| {
            let mut request = Request::get(path).header("host", "registry.test").body(Body::empty()).unwrap();
            let peer: SocketAddr = "192.0.2.10:5555".parse().unwrap();
            request.extensions_mut().insert(ConnectionInfo { peer, tls: false });
            request
        };
        let response = app.clone().oneshot(request("/v2/boom")).await.unwrap();
        std::panic::set_hook(previous_hook);

        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let id = response.headers()[REQUEST_ID_HEADER].to_str().unwrap().to_owned();
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["errors"][0]["code"], "UNKNOWN");
        assert!(body["errors"][0]["message"].as_str().unwrap().contains(&id), "{body}");
        assert!(!body.to_string().contains("handler bug"), "the panic message stays in the log");

        let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        let panics: Vec<&str> = logs.lines().filter(|l| l.contains("panic: handler bug")).collect();
        assert_eq!(panics.len(), 1, "{logs}");
        assert!(panics[0].contains(&id) && panics[0].contains("ERROR"), "{logs}");
        let access: Vec<&str> = logs.lines().filter(|l| l.contains("berth::access")).collect();
        assert_eq!(access.len(), 1, "{logs}");
        assert!(access[0].contains(&id) && access[0].contains("status=500"), "{logs}");
        assert!(access[0].contains("client=\"192.0.2.10\""), "{logs}");

        // An ordinary request carries its (different) id too.
        let ok = app.oneshot(request("/v2/")).await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        assert_ne!(ok.headers()[REQUEST_ID_HEADER], id.as_str());
    }
}
