//! The web console, served under `/console/` by `berth serve`: server-rendered pages (askama
//! templates compiled into the binary) with a little JavaScript, over the registry service. Like
//! the `/v2/` and ECR planes it calls [`Registry`], never the stores, and every page and action is
//! authorized by the service's authorization function (`authz.rs`).
//!
//! The request edge (this file): the path is parsed into a [`ConsolePath`]; a session cookie makes
//! the visitor a [`RequestContext`]; every POST must come from this site (`Origin`,
//! `Sec-Fetch-Site`) and carry the CSRF token bound to the session; every response carries
//! headers that keep pages out of frames, caches and other sites' scripts.

mod authz;
mod error;
mod inventory;
mod pages;
mod paths;
pub mod session;
mod view;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{FromRequest, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_auth::{Authenticator, ROOT_USER};
use berth_iam::{ConnectionInfo, CredentialKind, Identity, RequestContext, Served};
use berth_registry::Registry;
use serde::de::DeserializeOwned;

pub use error::ConsoleError;
pub use paths::{ConsolePath, SIGN_IN as SIGN_IN_PATH};

use crate::session::{CsrfBinding, SESSION_COOKIE, Session, SessionKeys};
use crate::view::Layout;

/// What `berth serve` tells the console.
pub struct ConsoleConfig {
    /// Where clients reach the registry (`--public-url`, or the bound address): pull commands
    /// name its host, and forms may be posted from its origin (a TLS-terminating proxy's).
    pub public_url: String,
    /// `--no-auth`: visitors browse anonymously, without signing in.
    pub auth_disabled: bool,
    /// The master key's console subkey (`MasterKey::console_session_key`).
    pub session_key: [u8; 32],
    /// How long a session lasts (the registry tokens' lifetime, 12 hours by default).
    pub session_lifetime: Duration,
    /// The garbage collector's schedule, shown on the admin page (`None`: off).
    pub gc_interval: Option<Duration>,
    pub gc_grace: Duration,
}

pub(crate) struct Console {
    registry: Arc<Registry>,
    auth: Arc<Authenticator>,
    keys: SessionKeys,
    config: ConsoleConfig,
    registry_host: String,
}

/// The `/console` router. Responses of signed-in visitors carry their [`berth_auth::Principal`]
/// for the access log, as the `/v2/` plane's do.
pub fn router(registry: Arc<Registry>, auth: Arc<Authenticator>, config: ConsoleConfig) -> Router {
    let console = Arc::new(Console {
        registry,
        auth,
        keys: SessionKeys::new(config.session_key, config.session_lifetime),
        registry_host: view::host_of(&config.public_url),
        config,
    });
    Router::new()
        .route("/console", axum::routing::any(dispatch))
        .route("/console/", axum::routing::any(dispatch))
        .route("/console/{*rest}", axum::routing::any(dispatch))
        .with_state(console)
}

async fn dispatch(State(console): State<Arc<Console>>, request: Request) -> Response {
    let mut response = handle(&console, request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        // Scripts and styles only from the console's own embedded files; no frames, no plugins.
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn handle(console: &Console, request: Request) -> Response {
    // Handlers borrow the request head across awaits; a body is not `Sync`, so it travels apart.
    let (parts, body) = request.into_parts();
    // A HEAD is answered as the GET (RFC 9110); the server sends no body for it.
    let method = if parts.method == Method::HEAD { Method::GET } else { parts.method.clone() };
    let Some(path) = ConsolePath::parse(parts.uri.path()) else {
        return console.error_page(ConsoleError::NotFound("There is no such console page.".into()), None);
    };
    let allow = path.methods();
    if !allow.split(", ").any(|allowed| allowed == method.as_str()) {
        return console.error_page(ConsoleError::MethodNotAllowed { allow }, None);
    }
    match (&path, &method) {
        (ConsolePath::Asset(name), &Method::GET) => return pages::asset(name),
        (ConsolePath::SignIn, &Method::GET) => return pages::sign_in::form(console, &parts).await,
        (ConsolePath::SignIn, &Method::POST) => {
            return pages::sign_in::submit(console, Request::from_parts(parts, body)).await;
        }
        _ => {}
    }
    let visitor = match console.visitor(&parts).await {
        Ok(visitor) => visitor,
        Err(error) => return console.error_page(error, None),
    };
    let uri = parts.uri.clone();
    let posted = || Request::from_parts(parts, body);
    // What a state-changing action did, for the audit trail: as the equivalent API call.
    let mut audited: Option<Served> = None;
    let outcome = match (path, method) {
        (ConsolePath::Home, Method::GET) => Ok(pages::redirect(&paths::href_repositories())),
        (ConsolePath::SignOut, Method::POST) => pages::sign_in::sign_out(console, &visitor, posted()).await,
        (ConsolePath::Repositories, Method::GET) => pages::repositories::page(console, &visitor, &uri).await,
        (ConsolePath::Repository(repo), Method::GET) => pages::repository::page(console, &visitor, &repo, &uri).await,
        (ConsolePath::Image(repo, digest), Method::GET) => pages::image::page(console, &visitor, &repo, &digest).await,
        (ConsolePath::Lifecycle(repo), Method::GET) => pages::lifecycle::page(console, &visitor, &repo, &uri).await,
        (ConsolePath::Permissions(repo), Method::GET) => pages::permissions::page(console, &visitor, &repo).await,
        (ConsolePath::Action(repo, action), Method::POST) => {
            let served = audited.insert(pages::actions::served(&repo, action));
            pages::actions::submit(console, &visitor, &repo, action, posted(), served).await
        }
        (ConsolePath::Admin, Method::GET) => pages::admin::page(console, &visitor, &uri).await,
        (ConsolePath::CreateUser, Method::POST) => {
            let served = audited.insert(pages::admin::served("CreateUser"));
            pages::admin::create_user(console, &visitor, posted(), served).await
        }
        (ConsolePath::DeleteUser, Method::POST) => {
            let served = audited.insert(pages::admin::served("DeleteUser"));
            pages::admin::delete_user(console, &visitor, posted(), served).await
        }
        (ConsolePath::UpdateAccessKey, Method::POST) => {
            let served = audited.insert(pages::admin::served("UpdateAccessKey"));
            pages::admin::update_access_key(console, &visitor, posted(), served).await
        }
        (_, _) => Err(ConsoleError::MethodNotAllowed { allow }),
    };
    if let (Some(served), Err(error)) = (&mut audited, &outcome) {
        served.error = Some((error.code(), error.message()));
        served.auth_failure = match error {
            ConsoleError::Denied(_) => Some("access_denied"),
            ConsoleError::Forged(_) => Some("forged_request"),
            _ => None,
        };
    }
    let mut response = outcome.unwrap_or_else(|error| console.error_page(error, Some(&visitor)));
    // The access log and the audit trail read who was served, and what, from the response.
    response.extensions_mut().insert(visitor.ctx);
    if let Some(served) = audited {
        response.extensions_mut().insert(served);
    }
    response
}

/// A signed-in visitor (or, with authentication off, an anonymous one).
pub(crate) struct Visitor {
    pub ctx: RequestContext,
    pub session: Session,
    /// Whether the page came over TLS (cookies are then `Secure`).
    pub tls: bool,
    request_origin: Option<String>,
    layout: Layout,
}

impl Visitor {
    pub fn layout(&self) -> Layout {
        self.layout.clone()
    }
}

pub(crate) fn now_millis() -> session::Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| session::Millis::try_from(d.as_millis()).unwrap_or(0))
}

impl Console {
    /// The visitor a request's session cookie names; `SignInRequired` without a valid session.
    async fn visitor(&self, request: &Parts) -> Result<Visitor, ConsoleError> {
        // A GET comes back to itself with its query; a form's POST to the page it was on.
        let resume_at = match ConsolePath::parse(request.uri.path()) {
            Some(_) if request.method == Method::GET || request.method == Method::HEAD => request.uri.to_string(),
            Some(path) => path.page_to_resume(),
            None => paths::href_repositories(),
        };
        let next = || ConsoleError::SignInRequired { next: resume_at.clone() };
        let cookie = request.headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let Some(value) = session::cookie(cookie, SESSION_COOKIE) else { return Err(next()) };
        let session = match self.keys.open(value, now_millis()) {
            Ok(session) => session,
            Err(reason) => {
                tracing::debug!(%reason, "console session refused");
                return Err(next());
            }
        };
        let signed_out = self.auth.identities().console_session_signed_out(&session.id).await;
        if signed_out.map_err(|_| ConsoleError::Unavailable)? {
            return Err(next());
        }
        let identity = match &session.user_name {
            None if self.config.auth_disabled => Identity::Anonymous,
            None => return Err(next()),
            Some(name) => {
                // A removed (or removed and re-created) user's sessions end with it, and so do
                // those of a user whose access key was deactivated.
                let user = self
                    .auth
                    .identities()
                    .acting_user(name, session.user_created_at)
                    .await
                    .map_err(|_| ConsoleError::Unavailable)?;
                let Some(user) = user else {
                    return Err(next());
                };
                let via = CredentialKind::Session;
                if user.name == ROOT_USER {
                    Identity::Root { access_key_id: user.access_key_id, via }
                } else {
                    Identity::User { name: user.name, access_key_id: user.access_key_id, via }
                }
            }
        };
        let ctx = request_context(request, identity);
        let tls = ctx.secure_transport;
        let csrf = self.keys.csrf_token(CsrfBinding::Session(&session.id));
        let user = session.user_name.clone().or_else(|| Some("anonymous".into()));
        let layout = Layout::new(user, ctx.identity.is_root(), csrf, &self.registry_host);
        Ok(Visitor { ctx, session, tls, request_origin: request_origin(request, tls), layout })
    }

    /// Reads a POSTed form after checking it came from this site with the session's CSRF token.
    async fn form<T: DeserializeOwned + HasCsrf>(
        &self,
        visitor: &Visitor,
        request: Request,
    ) -> Result<T, ConsoleError> {
        self.same_origin(request.headers(), visitor.request_origin.as_deref())?;
        let axum::Form(form) = axum::Form::<T>::from_request(request, &())
            .await
            .map_err(|rejection| ConsoleError::BadRequest(format!("The form could not be read: {rejection}")))?;
        if !self.keys.csrf_valid(CsrfBinding::Session(&visitor.session.id), form.csrf()) {
            return Err(ConsoleError::Forged(
                "The form's security token is missing or belongs to another session. Reload the page and try again.",
            ));
        }
        Ok(form)
    }

    /// Browsers say where a request comes from: `Sec-Fetch-Site` (must be `same-origin`) and
    /// `Origin` (must be this server as the browser reached it, or `--public-url`). Clients that
    /// send neither still need the CSRF token.
    fn same_origin(&self, headers: &HeaderMap, request_origin: Option<&str>) -> Result<(), ConsoleError> {
        const CROSS_SITE: &str = "The form was posted from another site. Use the console's own pages.";
        if let Some(site) = header_text(headers, header::HeaderName::from_static("sec-fetch-site"))
            && site != "same-origin"
        {
            return Err(ConsoleError::Forged(CROSS_SITE));
        }
        if let Some(origin) = header_text(headers, header::ORIGIN) {
            let public = public_origin(&self.config.public_url);
            if Some(origin.as_str()) != request_origin && Some(origin.as_str()) != public.as_deref() {
                return Err(ConsoleError::Forged(CROSS_SITE));
            }
        }
        Ok(())
    }

    fn error_page(&self, error: ConsoleError, visitor: Option<&Visitor>) -> Response {
        if let ConsoleError::SignInRequired { next } = &error {
            let target = format!("{}/sign-in?next={}", paths::ROOT, pages::urlencode(next));
            return pages::redirect(&target);
        }
        if let ConsoleError::Internal(detail) = &error {
            tracing::error!(error = %detail, "console request failed");
        }
        let layout = match visitor {
            Some(visitor) => visitor.layout(),
            None => Layout::new(None, false, String::new(), &self.registry_host),
        };
        let mut response = pages::render(&pages::ErrorPage { layout, title: error.title(), message: error.message() });
        *response.status_mut() = error.status();
        if let ConsoleError::MethodNotAllowed { allow } = error {
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

/// Every console form carries the CSRF token in a field named `csrf`.
pub(crate) trait HasCsrf {
    fn csrf(&self) -> &str;
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// The context `identity`'s request is judged in: the edge's request id and client address
/// (trusted proxies applied), so the access log, the audit trail and the events of a change agree.
fn request_context(request: &Parts, identity: Identity) -> RequestContext {
    let connection = request.extensions.get::<ConnectionInfo>().copied();
    let edge = request.extensions.get::<RequestContext>();
    RequestContext {
        request_id: edge.map_or_else(|| uuid::Uuid::new_v4().to_string(), |e| e.request_id.clone()),
        received_at: SystemTime::now(),
        source_ip: edge.and_then(|e| e.source_ip).or(connection.map(|c| c.peer.ip())),
        secure_transport: edge.map_or(connection.is_some_and(|c| c.tls), |e| e.secure_transport),
        user_agent: header_text(&request.headers, header::USER_AGENT),
        identity,
    }
}

/// This server's origin as the browser reached it: the scheme of the connection and the `Host`
/// (or HTTP/2 `:authority`) it asked for.
fn request_origin(request: &Parts, tls: bool) -> Option<String> {
    let host =
        request.uri.authority().map(|a| a.to_string()).or_else(|| header_text(&request.headers, header::HOST))?;
    Some(format!("{}://{host}", if tls { "https" } else { "http" }))
}

/// The origin (`scheme://host[:port]`) of `--public-url`.
fn public_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    Some(format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest)))
}

/// A response that is just a status and a short text (assets, method errors).
pub(crate) fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}
