//! The OCI Distribution v1.1 API (`/v2/`), as an axum router over [`Registry`].
//!
//! Repository names contain slashes, so routes are not matched by axum's router but parsed into a
//! typed [`Endpoint`] (see `endpoint.rs`); one handler per endpoint calls the service, and every
//! service error becomes a spec error body exactly once, in `error.rs`.

mod endpoint;
mod error;
mod handlers;
mod query;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;

use berth_auth::Authenticator;
use berth_registry::Registry;

pub use endpoint::Endpoint;
pub use error::{OciError, error_body};
pub use handlers::set_api_version;

#[derive(Clone)]
pub(crate) struct AppState {
    pub registry: Arc<Registry>,
    pub auth: Arc<Authenticator>,
}

/// The `/v2/` router. Mount it at the root of the server. It takes the request's
/// [`berth_iam::RequestContext`] from the request's extensions (the server's edge puts one there)
/// and returns it, with the caller's identity, in the response's extensions for the access log.
pub fn router(registry: Arc<Registry>, auth: Arc<Authenticator>) -> Router {
    let state = AppState { registry, auth };
    Router::new()
        .route("/v2", axum::routing::any(dispatch))
        .route("/v2/", axum::routing::any(dispatch))
        .route("/v2/{*rest}", axum::routing::any(dispatch))
        .with_state(state)
}

async fn dispatch(State(state): State<AppState>, request: Request) -> Response {
    handlers::handle(state, request).await
}
