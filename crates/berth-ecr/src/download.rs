//! The URLs GetDownloadUrlForLayer hands out, served by Berth itself:
//! `GET /_berth/layer/<repository>/<digest>?expires=<epoch seconds>&signature=<hex>`.
//!
//! Like an S3 pre-signed URL the query is the credential, so this route must be mounted outside
//! any authentication layer; a URL that is expired or was altered gets 403.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_registry::{ByteRange, Registry, RegistryError};
use berth_spec::{Digest, RepositoryName};

const PREFIX: &str = "/_berth/layer";

/// The download URL of `digest` in `repo`.
pub fn url(public_url: &str, repo: &RepositoryName, digest: &Digest, expires_at: i64, signature: &str) -> String {
    format!("{public_url}{PREFIX}/{repo}/{digest}?expires={expires_at}&signature={signature}")
}

/// The route serving [`url`]s.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new().route(&format!("{PREFIX}/{{*path}}"), get(download)).with_state(registry)
}

async fn download(
    State(registry): State<Arc<Registry>>,
    Path(path): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let forbidden = |message: &str| (StatusCode::FORBIDDEN, message.to_owned()).into_response();
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
    let signature = query.get("signature").map_or("", String::as_str);
    // An unparsable Range is ignored, as RFC 9110 says.
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(ByteRange::parse);
    let blob = match registry.open_signed_layer(&repo, &digest, expires_at, signature, range).await {
        Ok(blob) => blob,
        Err(err) => {
            let status = match err {
                RegistryError::Denied(_) => StatusCode::FORBIDDEN,
                RegistryError::BlobUnknown(_) | RegistryError::NameUnknown(_) => StatusCode::NOT_FOUND,
                RegistryError::RangeInvalid { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
                RegistryError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            };
            if status.is_server_error() {
                tracing::error!(error = %err, "layer download failed");
            }
            return (status, err.to_string()).into_response();
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
