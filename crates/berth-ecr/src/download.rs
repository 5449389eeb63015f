//! The URLs GetDownloadUrlForLayer hands out, served by Berth itself:
//! `GET /_berth/layer/<repository>/<digest>?expires=<epoch seconds>&signature=<hex>`.
//!
//! Like an S3 pre-signed URL the query is the credential, so this route must be mounted outside
//! any authentication layer; a URL that is expired or was altered gets 403. Errors are JSON in
//! the ECR plane's shape (`{"__type", "message"}`); a server-side failure's detail stays in the
//! log, and the client gets the request id to quote.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_iam::RequestContext;
use berth_registry::{ByteRange, Registry, RegistryError, SignedDownload};
use berth_spec::{Digest, RepositoryName};

use crate::error::REQUEST_ID_HEADER;

const PREFIX: &str = "/_berth/layer";

/// The download URL of `digest` in `repo` (`&fill=1` when the download may fill a
/// pull-through cache: the signature covers that too).
pub fn url(
    public_url: &str,
    repo: &RepositoryName,
    digest: &Digest,
    expires_at: i64,
    signed: &SignedDownload,
) -> String {
    let fill = if signed.fill { "&fill=1" } else { "" };
    format!("{public_url}{PREFIX}/{repo}/{digest}?expires={expires_at}&signature={}{fill}", signed.signature)
}

/// The route serving [`url`]s.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new().route(&format!("{PREFIX}/{{*path}}"), get(download)).with_state(registry)
}

/// An error answer: a status, ECR's JSON body, and the request id.
fn failure(status: StatusCode, wire_type: &str, message: &str, request_id: &str) -> Response {
    let body = serde_json::json!({ "__type": wire_type, "message": message }).to_string();
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Ok(id) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, id);
    }
    response
}

async fn download(
    State(registry): State<Arc<Registry>>,
    Path(path): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    extensions: Extensions,
) -> Response {
    let request_id = match extensions.get::<RequestContext>() {
        Some(ctx) => ctx.request_id.clone(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let forbidden = |message: &str| failure(StatusCode::FORBIDDEN, "AccessDeniedException", message, &request_id);
    // Anything that does not parse cannot be a URL this server signed.
    let Some((repo, digest)) = path.rsplit_once('/') else {
        return forbidden("not a layer download URL");
    };
    let (Ok(repo), Ok(digest)) = (repo.parse::<RepositoryName>(), digest.parse::<Digest>()) else {
        return forbidden("not a layer download URL");
    };
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let Some(expires_at) = query.get("expires").and_then(|e| e.parse::<i64>().ok()) else {
        return forbidden("the download URL lacks its expiry");
    };
    let signed = SignedDownload {
        signature: query.get("signature").cloned().unwrap_or_default(),
        fill: query.get("fill").is_some_and(|f| f == "1"),
    };
    // An unparsable Range is ignored, as RFC 9110 says.
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(ByteRange::parse);
    let blob = match registry.open_signed_layer(&repo, &digest, expires_at, &signed, range).await {
        Ok(blob) => blob,
        Err(err) => {
            let (status, wire_type) = match err {
                RegistryError::Denied(_) => (StatusCode::FORBIDDEN, "AccessDeniedException"),
                RegistryError::NameUnknown(_) => (StatusCode::NOT_FOUND, "RepositoryNotFoundException"),
                RegistryError::BlobUnknown(_) => (StatusCode::NOT_FOUND, "LayersNotFoundException"),
                RegistryError::RangeInvalid { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "InvalidParameterException"),
                // A fill the upstream could not serve now: worth retrying.
                RegistryError::PullThrough(_) => (StatusCode::SERVICE_UNAVAILABLE, "ServerException"),
                RegistryError::Internal(_) => {
                    tracing::error!(request_id, error = %err, "layer download failed");
                    let message = format!("Internal server error; request id {request_id}");
                    return failure(StatusCode::INTERNAL_SERVER_ERROR, "ServerException", &message, &request_id);
                }
                _ => (StatusCode::BAD_REQUEST, "InvalidParameterException"),
            };
            let mut response = failure(status, wire_type, &err.to_string(), &request_id);
            if let RegistryError::RangeInvalid { size } = err {
                // Says how large the layer is, as for ranged reads on /v2/.
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    response.headers_mut().insert(header::CONTENT_RANGE, value);
                }
            }
            return response;
        }
    };
    let (status, length, content_range) = match &blob.range {
        None => (StatusCode::OK, blob.size, None),
        Some(r) => (
            StatusCode::PARTIAL_CONTENT,
            r.end - r.start,
            Some(format!("bytes {}-{}/{}", r.start, r.end - 1, blob.size)),
        ),
    };
    let mut response = (status, Body::from_stream(blob.stream)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(content_range) = content_range.and_then(|v| HeaderValue::from_str(&v).ok()) {
        headers.insert(header::CONTENT_RANGE, content_range);
    }
    response
}
