//! Who is calling ([`Authenticator::authenticate`]): the one [`Identity`] a request carries from
//! here on. Whether that identity may do what it asks is not decided here but by the registry's
//! authorizer, against the ECR actions each endpoint declares.
//!
//! Accepted credentials, in the `Authorization` header:
//! - `Basic` with user `AWS` and a registry token as password — what
//!   `aws ecr get-login-password | docker login -u AWS --password-stdin` produces;
//! - `Basic` with an access key id and its secret;
//! - `Bearer` with a registry token.
//!
//! Presented-but-wrong credentials are always a 401, never a silent fall back to anonymous.

use std::sync::Arc;

use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use berth_iam::{CredentialKind, Identity};
use berth_meta::Millis;
use subtle::ConstantTimeEq;

use crate::Error;
use crate::token::{IssuedToken, TokenError, TokenIssuer};
use crate::users::{Identities, ROOT_USER};

macro_rules! realm {
    () => {
        "Berth"
    };
}

/// The realm of the Basic challenge; docker stores credentials per registry host, not per realm.
pub const REALM: &str = realm!();
/// The `WWW-Authenticate` value of every 401.
pub const CHALLENGE: &str = concat!("Basic realm=\"", realm!(), "\"");
/// The Basic user name that marks the password as a registry token, as in ECR.
pub const TOKEN_USER: &str = "AWS";

/// Clients disagree on padding in Basic credentials; accept both.
const BASIC_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Every request needs valid credentials (the default).
    #[default]
    Required,
    /// Requests without credentials go on as anonymous, to whatever the server grants anonymous
    /// callers (pulls); everything else needs credentials (`--anonymous-pull`).
    AnonymousPull,
    /// Credentials are ignored and every caller is anonymous (`--no-auth`, loopback only — the
    /// caller enforces that).
    Disabled,
}

impl AuthMode {
    /// Whether a caller without credentials is let through to authorization at all; if not, it is
    /// asked to log in (401 with the Basic challenge).
    pub fn admits_anonymous(self) -> bool {
        self != AuthMode::Required
    }

    /// Whether credentials would be looked at: then a caller without them who is refused
    /// something is asked to log in (401) rather than refused outright (403).
    pub fn reads_credentials(self) -> bool {
        self != AuthMode::Disabled
    }
}

/// The identity an access key's owner acts as: the root user, or an IAM user of the account.
pub fn identity_of(user_name: &str, access_key_id: &str, via: CredentialKind) -> Identity {
    let access_key_id = access_key_id.to_owned();
    if user_name == ROOT_USER {
        Identity::Root { access_key_id, via }
    } else {
        Identity::User { name: user_name.to_owned(), access_key_id, via }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required")]
    CredentialsRequired,
    #[error("malformed Authorization header: {0}")]
    MalformedHeader(&'static str),
    #[error("unsupported authorization scheme; use Basic")]
    UnsupportedScheme,
    #[error("invalid username or password")]
    InvalidCredentials,
    /// ECR's answer, a 403 `DENIED`: clients (soci-snapshotter, for one) log in again on it.
    #[error("Your authorization token has expired. Reauthenticate and try again.")]
    TokenExpired,
    /// The credential store failed; not the client's fault, so a 503 rather than a 401.
    #[error("authentication is temporarily unavailable")]
    Unavailable(#[source] Error),
}

impl AuthError {
    /// Why presented credentials were refused, as metrics and the audit trail label it (`None`:
    /// none were presented, or the store failed).
    pub fn failure_reason(&self) -> Option<&'static str> {
        match self {
            AuthError::CredentialsRequired | AuthError::Unavailable(_) => None,
            AuthError::MalformedHeader(_) => Some("malformed_header"),
            AuthError::UnsupportedScheme => Some("unsupported_scheme"),
            AuthError::InvalidCredentials => Some("invalid_credentials"),
            AuthError::TokenExpired => Some("token_expired"),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::TokenExpired => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

/// A 401 with the Basic challenge and an OCI error body (`UNAUTHORIZED`), a 403 `DENIED` for an
/// expired token (as ECR answers), or a 503 `UNAVAILABLE`.
impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = match &self {
            AuthError::Unavailable(cause) => {
                tracing::error!(error = %cause, "credential lookup failed");
                "UNAVAILABLE"
            }
            AuthError::TokenExpired => "DENIED",
            _ => "UNAUTHORIZED",
        };
        let body = serde_json::json!({"errors": [{"code": code, "message": self.to_string(), "detail": null}]});
        let mut response = (status, [(CONTENT_TYPE, "application/json")], body.to_string()).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
        }
        response
    }
}

pub struct Authenticator {
    identities: Arc<Identities>,
    tokens: TokenIssuer,
    mode: AuthMode,
}

impl Authenticator {
    pub fn new(identities: Arc<Identities>, tokens: TokenIssuer, mode: AuthMode) -> Self {
        Authenticator { identities, tokens, mode }
    }

    /// For SigV4 verification, which needs the secrets.
    pub fn identities(&self) -> &Arc<Identities> {
        &self.identities
    }

    /// A registry token for an existing user, with this authenticator's lifetime.
    pub async fn issue_token(&self, user_name: &str) -> Result<IssuedToken, Error> {
        self.identities.issue_token(&self.tokens, user_name).await
    }

    /// When a registry token that checks out expires (`None` for one that does not).
    pub fn token_expiry(&self, token: &str) -> Option<Millis> {
        self.tokens.verify(token).ok().map(|verified| verified.expires_at)
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Who sent the request: `Anonymous` without credentials (always, with auth disabled), an
    /// error for credentials that do not check out. Failures are logged without secrets or tokens.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, AuthError> {
        if self.mode == AuthMode::Disabled {
            return Ok(Identity::Anonymous);
        }
        let Some(header) = headers.get(AUTHORIZATION) else {
            return Ok(Identity::Anonymous);
        };
        match parse_authorization(header)? {
            Presented::Nothing => Ok(Identity::Anonymous),
            Presented::Basic { user, password } if user == TOKEN_USER => self.with_token(&password).await,
            Presented::Basic { user, password } => self.with_access_key(&user, &password).await,
            Presented::Bearer(token) => self.with_token(&token).await,
        }
    }

    /// A token names its user; the identity carries that user's access key id, as a signed
    /// request would.
    async fn with_token(&self, token: &str) -> Result<Identity, AuthError> {
        let verified = match self.tokens.verify(token) {
            Ok(verified) => verified,
            Err(TokenError::Expired { user_name }) => {
                tracing::warn!(user = %user_name, "login failed: registry token expired");
                return Err(AuthError::TokenExpired);
            }
            Err(reason) => {
                tracing::warn!(%reason, "login failed: invalid registry token");
                return Err(AuthError::InvalidCredentials);
            }
        };
        // A user removed and re-added under the same name does not get its old tokens back, and
        // a deactivated key's tokens stop with it.
        let user = self
            .identities
            .acting_user(&verified.user_name, verified.user_created_at)
            .await
            .map_err(AuthError::Unavailable)?;
        match user {
            Some(user) => Ok(identity_of(&user.name, &user.access_key_id, CredentialKind::Token)),
            None => {
                tracing::warn!(user = %verified.user_name, "login failed: token of a removed user or an inactive key");
                Err(AuthError::InvalidCredentials)
            }
        }
    }

    async fn with_access_key(&self, access_key_id: &str, secret: &str) -> Result<Identity, AuthError> {
        let Some(key) = self.identities.access_key(access_key_id).await.map_err(AuthError::Unavailable)? else {
            if key_id_shaped(access_key_id) {
                tracing::warn!(access_key_id, "login failed: unknown or inactive access key id");
            } else {
                // Not a key id: often the secret, or a token, typed into the user field.
                tracing::warn!(
                    length = access_key_id.len(),
                    "login failed: the user name is not shaped like an access key id (not logged)"
                );
            }
            return Err(AuthError::InvalidCredentials);
        };
        if bool::from(key.secret_access_key.as_bytes().ct_eq(secret.as_bytes())) {
            Ok(identity_of(&key.user_name, &key.access_key_id, CredentialKind::AccessKey))
        } else {
            tracing::warn!(access_key_id, user = %key.user_name, "login failed: wrong secret access key");
            Err(AuthError::InvalidCredentials)
        }
    }
}

/// Whether a presented key id may be written down (log, audit trail): only what has AWS's
/// key-id form (`AKIA` or `ASIA`, then capital letters and digits, 16–128 in all; Berth's own
/// keys have it), so a secret or token typed into the user field never reaches either.
pub fn key_id_shaped(key: &str) -> bool {
    (16..=128).contains(&key.len())
        && (key.starts_with("AKIA") || key.starts_with("ASIA"))
        && key.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// The access key id a request presents (HTTP Basic's user, or a SigV4 `Credential=` scope),
/// whether or not it checks out: for the audit record of a refusal, which keeps it only if it is
/// shaped like a key id.
pub fn presented_access_key_id(header: &HeaderValue) -> Option<String> {
    match parse_authorization(header) {
        Ok(Presented::Basic { user, .. }) if user != TOKEN_USER => Some(user),
        Ok(_) => None,
        Err(_) => {
            let value = header.to_str().ok()?.trim();
            let scope = value.strip_prefix("AWS4-HMAC-SHA256")?.split("Credential=").nth(1)?;
            Some(scope.split('/').next()?.to_owned())
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Presented {
    /// `Basic` with an empty user and password, which some clients (containers/image) send when
    /// they have no credentials.
    Nothing,
    Basic {
        user: String,
        password: String,
    },
    Bearer(String),
}

/// Whether an `Authorization` header presents credentials: all but the empty Basic pair that
/// containers/image (skopeo, podman, buildah, CRI-O) sends for an anonymous pull. A malformed
/// one counts: it is refused like a wrong one.
pub fn presents_credentials(header: &HeaderValue) -> bool {
    !matches!(parse_authorization(header), Ok(Presented::Nothing))
}

fn parse_authorization(header: &HeaderValue) -> Result<Presented, AuthError> {
    let value = header.to_str().map_err(|_| AuthError::MalformedHeader("not ASCII"))?.trim();
    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("Basic") {
        let decoded = BASIC_BASE64
            .decode(credentials)
            .map_err(|_| AuthError::MalformedHeader("Basic credentials are not base64"))?;
        let decoded =
            String::from_utf8(decoded).map_err(|_| AuthError::MalformedHeader("Basic credentials are not UTF-8"))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or(AuthError::MalformedHeader("Basic credentials lack the colon between user and password"))?;
        if user.is_empty() && password.is_empty() {
            return Ok(Presented::Nothing);
        }
        Ok(Presented::Basic { user: user.to_owned(), password: password.to_owned() })
    } else if scheme.eq_ignore_ascii_case("Bearer") {
        if credentials.is_empty() {
            return Err(AuthError::MalformedHeader("empty Bearer token"));
        }
        Ok(Presented::Bearer(credentials.to_owned()))
    } else {
        Err(AuthError::UnsupportedScheme)
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    fn parse(value: &str) -> Result<Presented, AuthError> {
        parse_authorization(&HeaderValue::from_str(value).unwrap())
    }

    fn basic(user_and_password: &str) -> String {
        format!("Basic {}", STANDARD.encode(user_and_password))
    }

    #[test]
    fn the_presented_key_id_is_read_from_basic_or_sigv4() {
        let presented = |value: &str| presented_access_key_id(&HeaderValue::from_str(value).unwrap());
        assert_eq!(presented(&basic("AKIAEXAMPLE00001:secret")).as_deref(), Some("AKIAEXAMPLE00001"));
        let sigv4 = "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE00002/20261206/us-east-1/ecr/aws4_request, \
                     SignedHeaders=host, Signature=abc";
        assert_eq!(presented(sigv4).as_deref(), Some("AKIAEXAMPLE00002"));
        assert_eq!(presented(&basic("AWS:token")), None);
        assert_eq!(presented("Bearer AKIAEXAMPLE00003"), None);
    }

    #[test]
    fn basic_credentials_are_split_at_the_first_colon() {
        assert_eq!(
            parse(&basic("AKIAEXAMPLE:se:cr/et+")).unwrap(),
            Presented::Basic { user: "AKIAEXAMPLE".into(), password: "se:cr/et+".into() }
        );
        assert_eq!(
            parse(&basic("AWS:tok.en")).unwrap(),
            Presented::Basic { user: "AWS".into(), password: "tok.en".into() }
        );
    }

    #[test]
    fn scheme_is_case_insensitive_and_padding_optional() {
        let encoded = STANDARD.encode("user:pw");
        let unpadded = encoded.trim_end_matches('=');
        assert_ne!(encoded, unpadded, "the example needs padding");
        for header in [format!("basic {encoded}"), format!("BASIC  {unpadded}")] {
            assert_eq!(parse(&header).unwrap(), Presented::Basic { user: "user".into(), password: "pw".into() });
        }
        assert_eq!(parse("bearer abc.def").unwrap(), Presented::Bearer("abc.def".into()));
    }

    #[test]
    fn empty_basic_credentials_mean_anonymous() {
        assert_eq!(parse(&basic(":")).unwrap(), Presented::Nothing);
    }

    #[test]
    fn malformed_headers_are_rejected() {
        for header in ["Basic !!!not-base64!!!", "Basic", "Bearer", "Bearer   "] {
            assert!(matches!(parse(header), Err(AuthError::MalformedHeader(_))), "{header}");
        }
        assert!(matches!(parse(&basic("no-colon-here")), Err(AuthError::MalformedHeader(m)) if m.contains("colon")));
        let not_utf8 = format!("Basic {}", STANDARD.encode([0xff, 0xfe, b':', b'x']));
        assert!(matches!(parse(&not_utf8), Err(AuthError::MalformedHeader(m)) if m.contains("UTF-8")));
        let not_ascii = HeaderValue::from_bytes(b"Basic \xe9t\xe9").unwrap();
        assert!(matches!(parse_authorization(&not_ascii), Err(AuthError::MalformedHeader(_))));
    }

    #[test]
    fn other_schemes_are_unsupported() {
        for header in ["Digest username=\"x\"", "AWS4-HMAC-SHA256 Credential=AKIA/x", "Negotiate abc", "token"] {
            assert!(matches!(parse(header), Err(AuthError::UnsupportedScheme)), "{header}");
        }
    }

    #[test]
    fn only_required_mode_turns_anonymous_callers_away() {
        assert!(!AuthMode::Required.admits_anonymous());
        assert!(AuthMode::AnonymousPull.admits_anonymous());
        assert!(AuthMode::Disabled.admits_anonymous());
        assert!(AuthMode::Required.reads_credentials() && AuthMode::AnonymousPull.reads_credentials());
        assert!(!AuthMode::Disabled.reads_credentials());
        assert_eq!(AuthMode::default(), AuthMode::Required);
    }

    #[test]
    fn the_root_users_keys_act_as_the_root() {
        let root = identity_of(ROOT_USER, "AKIAROOT", CredentialKind::Token);
        assert_eq!(root, Identity::Root { access_key_id: "AKIAROOT".into(), via: CredentialKind::Token });
        let ci = identity_of("ci", "AKIACI", CredentialKind::AccessKey);
        assert_eq!(
            ci,
            Identity::User { name: "ci".into(), access_key_id: "AKIACI".into(), via: CredentialKind::AccessKey }
        );
    }

    #[test]
    fn challenge_names_the_realm() {
        assert_eq!(CHALLENGE, format!("Basic realm=\"{REALM}\""));
    }

    #[tokio::test]
    async fn auth_errors_become_401_with_challenge_and_oci_body() {
        let response = AuthError::InvalidCredentials.into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[WWW_AUTHENTICATE], CHALLENGE);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": "invalid username or password", "detail": null}]})
        );
    }

    #[tokio::test]
    async fn store_failures_become_503_without_challenge() {
        let cause = Error::Meta(berth_meta::MetaError::Backend("database is locked".into()));
        let response = AuthError::Unavailable(cause).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().get(WWW_AUTHENTICATE).is_none());
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["errors"][0]["code"], "UNAVAILABLE");
        assert!(!body.to_string().contains("database is locked"), "internal details stay in the log");
    }

    #[test]
    fn only_key_id_shaped_values_are_written_down() {
        for kept in ["AKIAIOSFODNN7EXAMPLE", "ASIAXYZ0123456789ABC", "AKIAOPSTESTROOT00001"] {
            assert!(key_id_shaped(kept), "{kept}");
        }
        for dropped in [
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", // a secret in the user field
            "SECRETINCAPITALS0123456789",               // capitals, but not a key id's form
            "AKIAshort",
            "akiaiosfodnn7example",
            "AKIA-IOSFODNN7-EXAMPLE",
            "",
        ] {
            assert!(!key_id_shaped(dropped), "{dropped}");
        }
    }
}
