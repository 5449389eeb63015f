//! Signing in and out. Credentials go through the registry's own authenticator, exactly as a
//! `docker login` would present them, so whatever the registry accepts (and logs) the console
//! accepts; nothing of them is kept but the session cookie.

use askama::Template;
use axum::extract::{FromRequest, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use berth_auth::{AuthError, TOKEN_USER};
use berth_iam::{CredentialKind, Identity, Served};
use serde::Deserialize;

use super::{redirect, render};
use crate::session::{self, CsrfBinding, Millis, SESSION_COOKIE, SIGN_IN_COOKIE, SIGN_IN_LIFETIME, SignedInWith};
use crate::view::{self, Layout};
use crate::{Console, ConsoleError, HasCsrf, Visitor, authz, now_millis, paths};

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    layout: Layout,
    csrf: String,
    next: String,
    access_key_id: String,
    error: Option<&'static str>,
    lifetime: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignInForm {
    csrf: String,
    next: String,
    access_key_id: String,
    secret_access_key: String,
    token: String,
}

impl HasCsrf for SignInForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CsrfOnly {
    csrf: String,
}

impl HasCsrf for CsrfOnly {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NextQuery {
    next: Option<String>,
}

/// Whether the browser reached the console over TLS (directly, or through a trusted
/// TLS-terminating proxy, as the edge judged): cookies are `Secure` then.
fn tls(request: &Parts) -> bool {
    match request.extensions.get::<berth_iam::RequestContext>() {
        Some(edge) => edge.secure_transport,
        None => request.extensions.get::<berth_iam::ConnectionInfo>().is_some_and(|c| c.tls),
    }
}

fn append_cookie(response: &mut Response, cookie: String) {
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// Signs `user` in: the session cookie, the sign-in nonce dropped, and on to `next`. A session
/// opened with a registry token ends with the token (`not_after`): signing in must not stretch
/// a token about to expire into a fresh session.
fn start_session(
    console: &Console,
    user: Option<&berth_auth::User>,
    via: SignedInWith,
    not_after: Option<Millis>,
    next: &str,
    tls: bool,
) -> Response {
    let now = now_millis();
    let mut session = console.keys.start(user.map(|u| (u.name.as_str(), u.created_at)), via, now);
    session.expires_at = session.expires_at.min(not_after.unwrap_or(Millis::MAX));
    let max_age = std::time::Duration::from_millis(u64::try_from(session.expires_at - now).unwrap_or(0));
    let mut response = redirect(&paths::safe_next(Some(next)));
    append_cookie(&mut response, session::set_cookie(SESSION_COOKIE, &console.keys.seal(&session), max_age, tls));
    append_cookie(&mut response, session::set_cookie(SIGN_IN_COOKIE, "", std::time::Duration::ZERO, tls));
    response
}

/// The nonce cookie of the browser's sign-in form, if it sent one.
fn sign_in_nonce(request: &Parts) -> Option<&str> {
    let cookies = request.headers.get(header::COOKIE)?.to_str().ok()?;
    session::cookie(cookies, SIGN_IN_COOKIE)
}

/// The sign-in form, with the nonce cookie its CSRF token is bound to. With authentication off
/// there is nobody to be: an anonymous session starts at once.
pub async fn form(console: &Console, request: &Parts) -> Response {
    let query = axum::extract::Query::<NextQuery>::try_from_uri(&request.uri).map(|q| q.0).unwrap_or_default();
    let next = paths::safe_next(query.next.as_deref());
    if console.config.auth_disabled {
        return start_session(console, None, SignedInWith::Nothing, None, &next, tls(request));
    }
    if console.visitor(request).await.is_ok() {
        return redirect(&next);
    }
    // The nonce of a sign-in page open in another tab stays good (a second sign-in page, for a
    // tab sent here when its session ended, must not void the first one's form) until its
    // cookie expires: that cookie is left as it is.
    if let Some(nonce) = sign_in_nonce(request).filter(|n| session::is_random_id(n)) {
        return sign_in_page(console, nonce, next, String::new(), None);
    }
    let nonce = session::random_id();
    let mut response = sign_in_page(console, &nonce, next, String::new(), None);
    append_cookie(&mut response, session::set_cookie(SIGN_IN_COOKIE, &nonce, SIGN_IN_LIFETIME, tls(request)));
    response
}

fn sign_in_page(
    console: &Console,
    nonce: &str,
    next: String,
    access_key_id: String,
    error: Option<&'static str>,
) -> Response {
    render(&SignInPage {
        layout: Layout::new(None, false, String::new(), &console.registry_host),
        csrf: console.keys.csrf_token(CsrfBinding::SignIn(nonce)),
        next,
        access_key_id,
        error,
        lifetime: view::duration(console.keys.lifetime()),
    })
}

/// Checks the form came from this site's sign-in page, then the credentials.
/// What the edge learns of a sign-in: CloudTrail's `ConsoleLogin`, a refusal counted like a
/// refused `docker login` (metrics, audit trail, the per-address throttle), a success audited.
fn sign_in_served(outcome: Result<(), (&'static str, &'static str)>) -> Served {
    let mut served = Served::new("ConsoleSignIn", "ConsoleLogin", outcome.is_ok());
    served.event_source = "signin.amazonaws.com";
    if let Err((reason, message)) = outcome {
        served.auth_failure = Some(reason);
        served.error = Some(("InvalidCredentials", message.to_owned()));
    }
    served
}

pub async fn submit(console: &Console, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    // Judged as anonymous until the credentials are.
    let mut ctx = crate::request_context(&parts, Identity::Anonymous);
    let tls = tls(&parts);
    let origin = crate::request_origin(&parts, tls);
    let nonce = sign_in_nonce(&parts).unwrap_or("").to_owned();
    if let Err(error) = console.same_origin(&parts.headers, origin.as_deref()) {
        return console.error_page(error, None);
    }
    // Signed in meanwhile in another tab (which ends the sign-in nonce): on to the page, if as
    // the user this form names.
    let signed_in_as =
        console.visitor(&parts).await.ok().and_then(|v| v.ctx.identity.access_key_id().map(str::to_owned));
    let form = match axum::Form::<SignInForm>::from_request(Request::from_parts(parts, body), &()).await {
        Ok(axum::Form(form)) => form,
        Err(rejection) => {
            return console
                .error_page(ConsoleError::BadRequest(format!("The form could not be read: {rejection}")), None);
        }
    };
    if nonce.is_empty() || !console.keys.csrf_valid(CsrfBinding::SignIn(&nonce), form.csrf()) {
        if signed_in_as.is_some_and(|key| key == form.access_key_id.trim()) {
            return redirect(&paths::safe_next(Some(&form.next)));
        }
        return console.error_page(
            ConsoleError::Forged("The sign-in form expired or came from another site. Open the sign-in page again."),
            None,
        );
    }
    let (user, password) = if !form.token.trim().is_empty() {
        (TOKEN_USER, form.token.trim())
    } else if !form.access_key_id.trim().is_empty() && !form.secret_access_key.is_empty() {
        (form.access_key_id.trim(), form.secret_access_key.as_str())
    } else {
        let mut page = sign_in_page(
            console,
            &nonce,
            form.next,
            form.access_key_id,
            Some("Enter an access key ID and its secret, or a registry token."),
        );
        *page.status_mut() = StatusCode::BAD_REQUEST;
        return page;
    };
    // The registry's authenticator reads HTTP Basic credentials: present them as a client would.
    let mut headers = HeaderMap::new();
    let basic = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
    let Ok(value) = HeaderValue::from_str(&basic) else {
        let mut page = sign_in_page(
            console,
            &nonce,
            form.next,
            form.access_key_id,
            Some("The credentials contain characters no key or token has."),
        );
        *page.status_mut() = StatusCode::BAD_REQUEST;
        return page;
    };
    headers.insert(header::AUTHORIZATION, value);
    const NOT_VALID: &str = "The access key, secret or token is not valid.";
    const UNAVAILABLE: &str = "The registry cannot check credentials right now; try again shortly.";
    // `reason`: why the credentials were refused, for the edge; `None` when they were not judged.
    let failed = |status: StatusCode, message: &'static str, reason: Option<&'static str>| {
        let mut page = sign_in_page(console, &nonce, form.next.clone(), form.access_key_id.clone(), Some(message));
        *page.status_mut() = status;
        if let Some(reason) = reason {
            let mut served = sign_in_served(Err((reason, message)));
            served.presented_access_key_id = Some(form.access_key_id.trim().to_owned()).filter(|k| !k.is_empty());
            page.extensions_mut().insert(served);
        }
        page
    };
    let (identity, name, via) = match console.auth.authenticate(&headers).await {
        Ok(identity @ (Identity::User { via, .. } | Identity::Root { via, .. })) => {
            let name = identity.user_name().unwrap_or_default().to_owned();
            (identity, name, via)
        }
        Ok(Identity::Anonymous | Identity::Server { .. }) => {
            return failed(StatusCode::UNAUTHORIZED, NOT_VALID, Some("invalid_credentials"));
        }
        Err(AuthError::Unavailable(_)) => return failed(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE, None),
        Err(refused @ AuthError::TokenExpired) => {
            return failed(StatusCode::UNAUTHORIZED, "The token has expired; get a new one.", refused.failure_reason());
        }
        Err(refused) => return failed(StatusCode::UNAUTHORIZED, NOT_VALID, refused.failure_reason()),
    };
    let user = match console.auth.identities().user(&name).await {
        Ok(Some(user)) => user,
        Ok(None) => return failed(StatusCode::UNAUTHORIZED, NOT_VALID, Some("invalid_credentials")),
        Err(_) => return failed(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE, None),
    };
    let via = match via {
        CredentialKind::Token => SignedInWith::Token,
        _ => SignedInWith::AccessKey,
    };
    // An access key stands in for the token GetAuthorizationToken gives, as at `docker login`:
    // a user whose policies deny that action (or allow it only from elsewhere) is refused here too.
    ctx.identity = identity;
    if let (Identity::User { .. }, SignedInWith::AccessKey) = (&ctx.identity, via) {
        match authz::authorize(&console.registry, &ctx, authz::Scope::Registry, authz::SIGN_IN_WITH_KEY).await {
            Ok(()) => {}
            Err(ConsoleError::Denied(_)) => {
                const DENIED: &str = "This user's policies do not allow ecr:GetAuthorizationToken here, which signing in with an access key needs.";
                // Audited as the user's refused ConsoleLogin (as `/v2/` records its DENIED); not
                // a failed sign-in: the credentials were right.
                let mut page = failed(StatusCode::FORBIDDEN, DENIED, None);
                let mut served = sign_in_served(Err(("access_denied", DENIED)));
                served.error = Some(("AccessDenied", DENIED.to_owned()));
                page.extensions_mut().insert(served);
                page.extensions_mut().insert(ctx);
                return page;
            }
            Err(_) => return failed(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE, None),
        }
    }
    tracing::info!(user = %user.name, ?via, "console sign-in");
    // A token that expired since it was checked gives a session that has ended already.
    let not_after = match via {
        SignedInWith::Token => Some(console.auth.token_expiry(password).unwrap_or(0)),
        _ => None,
    };
    let mut response = start_session(console, Some(&user), via, not_after, &form.next, tls);
    response.extensions_mut().insert(sign_in_served(Ok(())));
    response.extensions_mut().insert(ctx);
    response
}

/// Ends the session: its cookie is cleared in this browser, and its id is recorded so that no
/// server accepts a copy of the cookie either.
pub async fn sign_out(console: &Console, visitor: &Visitor, request: Request) -> Result<Response, ConsoleError> {
    console.form::<CsrfOnly>(visitor, request).await?;
    let session = &visitor.session;
    console
        .auth
        .identities()
        .sign_out_console_session(&session.id, session.expires_at, crate::now_millis())
        .await
        .map_err(|_| ConsoleError::Unavailable)?;
    let mut response = redirect(&format!("{}/sign-in", paths::ROOT));
    append_cookie(&mut response, session::set_cookie(SESSION_COOKIE, "", std::time::Duration::ZERO, visitor.tls));
    Ok(response)
}
