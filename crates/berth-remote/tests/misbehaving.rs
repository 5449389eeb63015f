//! Against small servers that do what real registries and their CDNs do at the edges: blob
//! redirects to object storage, wrong content, rate limits, outages, stalls.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_remote::{ByteRange, Client, ClientConfig, Credentials, Endpoint, Error, Remote};
use berth_spec::Digest;
use bytes::Bytes;
use common::image::{Blob, by_digest, pseudo_random, tag};
use common::name;
use futures::StreamExt;

const USER: &str = "mirror-bot";
const PASSWORD: &str = "s3cret-pass-XYZ";
/// Stands for the signature of a pre-signed S3 URL: as secret as the password.
const SIGNATURE: &str = "topsecret-signature";

struct Cdn {
    blob: Blob,
    hits: AtomicUsize,
    saw_authorization: AtomicUsize,
}

struct Upstream {
    cdn_url: Mutex<String>,
    blob: Blob,
    manifest: Blob,
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn cdn(State(cdn): State<Arc<Cdn>>, headers: HeaderMap, request: Request) -> Response {
    cdn.hits.fetch_add(1, Ordering::SeqCst);
    if headers.contains_key(header::AUTHORIZATION) {
        cdn.saw_authorization.fetch_add(1, Ordering::SeqCst);
        // What S3 answers a pre-signed URL that also carries an Authorization header.
        return (StatusCode::BAD_REQUEST, "<Error><Code>InvalidArgument</Code></Error>").into_response();
    }
    if !request.uri().query().unwrap_or("").contains(SIGNATURE) || request.uri().path().ends_with("/expired") {
        return (StatusCode::FORBIDDEN, "<Error><Code>AccessDenied</Code></Error>").into_response();
    }
    let bytes = cdn.blob.bytes.clone();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("bytes="));
    if let Some((start, end)) = range.and_then(|r| r.split_once('-')) {
        let (start, end): (usize, usize) = (start.parse().unwrap(), end.parse().unwrap());
        let content_range = format!("bytes {start}-{end}/{}", bytes.len());
        return (StatusCode::PARTIAL_CONTENT, [(header::CONTENT_RANGE, content_range)], bytes.slice(start..=end))
            .into_response();
    }
    if request.method() == axum::http::Method::HEAD {
        return ([(header::CONTENT_LENGTH, bytes.len().to_string())], ()).into_response();
    }
    bytes.into_response()
}

fn oci_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]}).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn registry(State(upstream): State<Arc<Upstream>>, headers: HeaderMap, request: Request) -> Response {
    let expected = reqwest::Client::new().get("http://x/").basic_auth(USER, Some(PASSWORD)).build().unwrap();
    if headers.get(header::AUTHORIZATION) != expected.headers().get(header::AUTHORIZATION) {
        let mut response = oci_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "authentication required");
        response.headers_mut().insert(header::WWW_AUTHENTICATE, "Basic realm=\"test\"".parse().unwrap());
        return response;
    }
    let path = request.uri().path().to_owned();
    let (blob, manifest, cdn) = (&upstream.blob, &upstream.manifest, upstream.cdn_url.lock().unwrap().clone());
    let manifest_type = "application/vnd.oci.image.manifest.v1+json";
    match path.as_str() {
        "/v2/" => StatusCode::OK.into_response(),
        p if p == format!("/v2/cdn/blobs/{}", blob.digest) => {
            let location = format!("{cdn}/blobs/{}?X-Amz-Signature={SIGNATURE}", blob.digest.hex());
            (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, location)]).into_response()
        }
        p if p == format!("/v2/expired/blobs/{}", blob.digest) => {
            let location = format!("{cdn}/blobs/expired?X-Amz-Signature={SIGNATURE}");
            (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
        }
        p if p == format!("/v2/cdn-down/blobs/{}", blob.digest) => {
            let location = format!("http://127.0.0.1:{}/blob?X-Amz-Signature={SIGNATURE}", common::free_port());
            (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, location)]).into_response()
        }
        p if p.starts_with("/v2/loop/blobs/") => {
            (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, p.to_owned())]).into_response()
        }
        // Serves other bytes than the digest asked for.
        p if p.starts_with("/v2/corrupt/blobs/") => {
            Bytes::from(pseudo_random("corrupt", blob.bytes.len())).into_response()
        }
        p if p.starts_with("/v2/corrupt/manifests/") => {
            let announced = if p.ends_with("/latest") { manifest.digest.to_string() } else { String::new() };
            let mut bytes = manifest.bytes.to_vec();
            bytes.extend_from_slice(b" ");
            let mut response = (StatusCode::OK, [(header::CONTENT_TYPE, manifest_type)], bytes).into_response();
            if !announced.is_empty() {
                response.headers_mut().insert("docker-content-digest", announced.parse().unwrap());
            }
            response
        }
        p if p.starts_with("/v2/untyped/manifests/") => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "text/html")], "<html>captive portal</html>").into_response()
        }
        p if p.starts_with("/v2/limited/") => {
            let mut response =
                oci_error(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS", "You have reached your pull rate limit.");
            response.headers_mut().insert(header::RETRY_AFTER, "7".parse().unwrap());
            response
        }
        p if p.starts_with("/v2/down/") => oci_error(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", "maintenance"),
        p if p.starts_with("/v2/slow/") => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            StatusCode::OK.into_response()
        }
        p if p.starts_with("/v2/stall/blobs/") => {
            // Headers and a first piece, then nothing.
            let first = futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b"first piece")) });
            let body = Body::from_stream(first.chain(futures::stream::pending()));
            ([(header::CONTENT_LENGTH, blob.bytes.len().to_string())], body).into_response()
        }
        _ => oci_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "repository name not known to registry"),
    }
}

struct Setup {
    remote: Remote,
    cdn: Arc<Cdn>,
    blob: Blob,
    manifest: Blob,
}

async fn setup(config: ClientConfig) -> Setup {
    common::install_tls_provider();
    let blob = Blob::new(pseudo_random("cdn-blob", 300_000));
    let manifest =
        Blob::new(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#.to_vec());
    let cdn_state =
        Arc::new(Cdn { blob: blob.clone(), hits: AtomicUsize::new(0), saw_authorization: AtomicUsize::new(0) });
    let cdn_url = serve(Router::new().fallback(cdn).with_state(cdn_state.clone())).await;
    let upstream = Arc::new(Upstream { cdn_url: Mutex::new(cdn_url), blob: blob.clone(), manifest: manifest.clone() });
    let url = serve(Router::new().fallback(registry).with_state(upstream)).await;
    let client = Client::new(config).unwrap();
    let remote = client.remote(Endpoint::parse(&url).unwrap(), Credentials::basic(USER, PASSWORD));
    Setup { remote, cdn: cdn_state, blob, manifest }
}

fn assert_no_secrets(error: &Error) {
    let shown = format!("{error} {error:?}");
    for secret in [PASSWORD, SIGNATURE] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

async fn collect(remote: &Remote, repo: &str, digest: &Digest, range: Option<ByteRange>) -> Result<Vec<u8>, Error> {
    let mut stream = remote.get_blob(&name(repo), digest, range).await?;
    let mut bytes = Vec::new();
    while let Some(piece) = stream.next().await {
        bytes.extend_from_slice(&piece?);
    }
    Ok(bytes)
}

#[tokio::test]
async fn blob_redirects_are_followed_without_the_registrys_credentials() {
    let Setup { remote, cdn, blob, .. } = setup(ClientConfig::default()).await;
    assert_eq!(collect(&remote, "cdn", &blob.digest, None).await.unwrap(), blob.bytes);
    let part = collect(&remote, "cdn", &blob.digest, Some(ByteRange { start: 100, end: Some(199) })).await.unwrap();
    assert_eq!(part, blob.bytes[100..200]);
    assert_eq!(remote.head_blob(&name("cdn"), &blob.digest).await.unwrap(), Some(300_000));
    assert_eq!(cdn.hits.load(Ordering::SeqCst), 3);
    assert_eq!(cdn.saw_authorization.load(Ordering::SeqCst), 0, "the registry's Authorization reached the CDN");

    // Failures behind the redirect are typed and do not show the signed URL.
    let error = collect(&remote, "expired", &blob.digest, None).await.unwrap_err();
    assert!(matches!(error, Error::Denied { .. }), "{error:?}");
    assert_no_secrets(&error);
    let error = collect(&remote, "cdn-down", &blob.digest, None).await.unwrap_err();
    assert!(matches!(error, Error::Transport(_)) && error.is_unavailable(), "{error:?}");
    assert_no_secrets(&error);
    let error = collect(&remote, "loop", &blob.digest, None).await.unwrap_err();
    assert!(matches!(error, Error::InvalidResponse(_)), "{error:?}");
}

#[tokio::test]
async fn content_that_does_not_match_its_digest_is_refused() {
    let Setup { remote, blob, manifest, .. } = setup(ClientConfig::default()).await;
    // A blob: every byte is delivered, then the stream ends in the mismatch instead of cleanly.
    let mut stream = remote.get_blob(&name("corrupt"), &blob.digest, None).await.unwrap();
    let mut received = 0;
    let outcome = loop {
        match stream.next().await {
            Some(Ok(piece)) => received += piece.len(),
            Some(Err(error)) => break Some(error),
            None => break None,
        }
    };
    assert_eq!(received, blob.bytes.len());
    assert!(
        matches!(outcome, Some(Error::DigestMismatch { ref expected, .. }) if *expected == blob.digest),
        "{outcome:?}"
    );
    assert!(stream.next().await.is_none());

    // A manifest by digest, and by tag with a Docker-Content-Digest that its bytes do not have.
    let error = remote.get_manifest(&name("corrupt"), &by_digest(&manifest.digest)).await.unwrap_err();
    assert!(matches!(error, Error::DigestMismatch { ref expected, .. } if *expected == manifest.digest), "{error:?}");
    let error = remote.get_manifest(&name("corrupt"), &tag("latest")).await.unwrap_err();
    assert!(matches!(error, Error::DigestMismatch { .. }), "{error:?}");
    // By tag without an announced digest, the digest is the bytes' own.
    let fetched = remote.get_manifest(&name("corrupt"), &tag("unannounced")).await.unwrap();
    assert_eq!(fetched.digest, Digest::sha256_of(&fetched.bytes));
    // Something that is no manifest at all.
    let error = remote.get_manifest(&name("untyped"), &tag("latest")).await.unwrap_err();
    assert!(matches!(error, Error::InvalidResponse(_)) && error.is_unavailable(), "{error:?}");
}

#[tokio::test]
async fn rate_limits_and_outages_say_serve_from_cache() {
    let Setup { remote, .. } = setup(ClientConfig::default()).await;
    // A HEAD answer has no body: the status and headers alone.
    let error = remote.head_manifest(&name("limited"), &tag("latest")).await.unwrap_err();
    assert!(matches!(error, Error::TooManyRequests { retry_after: Some(d), .. } if d == Duration::from_secs(7)));
    let error = remote.get_manifest(&name("limited"), &tag("latest")).await.unwrap_err();
    assert_eq!(
        error,
        Error::TooManyRequests {
            retry_after: Some(Duration::from_secs(7)),
            message: "You have reached your pull rate limit.".into()
        }
    );
    assert!(error.is_unavailable());
    let error = remote.get_manifest(&name("down"), &tag("latest")).await.unwrap_err();
    assert_eq!(error, Error::Upstream { status: 503, code: Some("UNAVAILABLE".into()), message: "maintenance".into() });
    assert!(error.is_unavailable());
    let error = remote.get_manifest(&name("nothing/here"), &tag("latest")).await.unwrap_err();
    assert!(matches!(error, Error::NotFound { .. }) && !error.is_unavailable(), "{error:?}");

    let nobody = Client::new(ClientConfig::default()).unwrap();
    let closed = nobody
        .remote(Endpoint::parse(&format!("http://127.0.0.1:{}", common::free_port())).unwrap(), Credentials::Anonymous);
    let error = closed.ping().await.unwrap_err();
    assert!(matches!(error, Error::Transport(_)) && error.is_unavailable(), "{error:?}");
}

#[tokio::test]
async fn silent_registries_time_out() {
    let config = ClientConfig {
        response_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        ..ClientConfig::default()
    };
    let Setup { remote, blob, .. } = setup(config).await;
    let started = std::time::Instant::now();
    let error = remote.get_manifest(&name("slow"), &tag("latest")).await.unwrap_err();
    assert!(matches!(error, Error::Transport(ref m) if m.contains("no response")), "{error:?}");
    let mut stream = remote.get_blob(&name("stall"), &blob.digest, None).await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap(), Bytes::from_static(b"first piece"));
    let error = stream.next().await.unwrap().unwrap_err();
    assert!(matches!(error, Error::Transport(ref m) if m.contains("stalled")), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}
