//! The OCI Distribution v1.1 API (`/v2/`), as an axum router over [`Registry`].
//!
//! Repository names contain slashes, so routes are not matched by axum's router but parsed into a
//! typed [`Endpoint`] (see `endpoint.rs`); one handler per endpoint calls the service, and every
//! service error becomes a spec error body exactly once, in `error.rs`.

mod endpoint;
mod error;
mod handlers;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::Response;

use berth_registry::Registry;

pub use endpoint::Endpoint;
pub use error::OciError;

/// Decides whether a request may touch a repository; the auth layer provides it.
pub trait AccessPolicy: Send + Sync + 'static {
    /// Checks the request's credentials for `action` on `repo` (`None` for registry-wide
    /// endpoints such as `/v2/` and `_catalog`). `Err` is the complete response to send.
    fn check(&self, headers: &HeaderMap, action: Action, repo: Option<&str>) -> Result<Principal, Response>;
}

/// What a request wants to do, for access decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `GET /v2/`: any valid credentials.
    Login,
    Pull,
    Push,
    Delete,
    Catalog,
}

/// Who is calling, as established by the [`AccessPolicy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// User name, or `anonymous`.
    pub user: String,
    /// Whether this principal may pull from any repository (for mounts without `from`).
    pub can_pull_everywhere: bool,
}

/// Lets everyone do everything: `--no-auth` on loopback.
pub struct OpenAccess;

impl AccessPolicy for OpenAccess {
    fn check(&self, _: &HeaderMap, _: Action, _: Option<&str>) -> Result<Principal, Response> {
        Ok(Principal { user: "anonymous".into(), can_pull_everywhere: true })
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub registry: Arc<Registry>,
    pub access: Arc<dyn AccessPolicy>,
}

/// The `/v2/` router. Mount it at the root of the server.
pub fn router(registry: Arc<Registry>, access: Arc<dyn AccessPolicy>) -> Router {
    let state = AppState { registry, access };
    Router::new()
        .route("/v2", axum::routing::any(dispatch))
        .route("/v2/", axum::routing::any(dispatch))
        .route("/v2/{*rest}", axum::routing::any(dispatch))
        .with_state(state)
}

async fn dispatch(State(state): State<AppState>, request: Request) -> Response {
    handlers::handle(state, request).await
}
