//! Probes for load balancers and orchestrators, anonymous and cheap: `/healthz` (the process
//! answers) and `/readyz` (the metadata store answers a query and the blob store could take a
//! push: its directories are there and writable, or the bucket answers a lookup). The edge logs
//! them at debug level only and keeps them out of the request metrics.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_meta::MetadataStore;
use berth_storage::BlobStore;

/// A probe waits at most this long for each store (a pool waiting for a dead database would
/// otherwise hold the probe past any orchestrator's timeout).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub const PATHS: [&str; 2] = ["/healthz", "/readyz"];

struct Stores {
    meta: Arc<dyn MetadataStore>,
    blobs: Arc<dyn BlobStore>,
}

pub fn router(meta: Arc<dyn MetadataStore>, blobs: Arc<dyn BlobStore>) -> Router {
    Router::new()
        .route("/healthz", axum::routing::get(|| async { json(StatusCode::OK, serde_json::json!({"status": "ok"})) }))
        .route("/readyz", axum::routing::get(ready))
        .with_state(Arc::new(Stores { meta, blobs }))
}

async fn ready(State(stores): State<Arc<Stores>>) -> Response {
    let (meta, blobs) = tokio::join!(
        tokio::time::timeout(PROBE_TIMEOUT, stores.meta.ping()),
        tokio::time::timeout(PROBE_TIMEOUT, stores.blobs.probe()),
    );
    let mut reasons = Vec::new();
    match meta {
        Ok(Ok(())) => {}
        Ok(Err(e)) => reasons.push(format!("metadata store unreachable: {e}")),
        Err(_) => reasons.push(format!("metadata store did not answer within {} s", PROBE_TIMEOUT.as_secs())),
    }
    match blobs {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => reasons.push(format!("blob store unreachable: {e}")),
        Err(_) => reasons.push(format!("blob store did not answer within {} s", PROBE_TIMEOUT.as_secs())),
    }
    if reasons.is_empty() {
        json(StatusCode::OK, serde_json::json!({"status": "ready"}))
    } else {
        tracing::warn!(?reasons, "not ready");
        json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({"status": "unavailable", "reasons": reasons}))
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}
