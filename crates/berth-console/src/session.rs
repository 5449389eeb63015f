//! Console sessions and CSRF tokens: a session is a signed cookie, a CSRF token is a MAC of the
//! session's id, so any server holding the same master key accepts them and a restart loses
//! none. The only state is the ids of sessions signed out before they expired, in the store.
//!
//! - Cookie value: `v1.` base64url(JSON claims) `.` base64url(HMAC-SHA256(cookie key, "v1." claims)).
//!   Claims: the user's name and creation time (the caller checks the user still exists with that
//!   creation time, so removing or re-creating a user ends its sessions, as with registry tokens),
//!   how the user signed in, issue and expiry times, and a random session id.
//! - CSRF token (synchronizer token pattern without server state): base64url(HMAC-SHA256(CSRF
//!   key, binding)), where the binding is the session id, or before sign-in a random nonce kept
//!   in its own cookie. A forged form from another site cannot read either.
//!
//! Both keys derive from the master key's console subkey (`MasterKey::console_session_key`), each
//! with its own label, so a session MAC can never pass as a CSRF token or the other way round.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Milliseconds since the Unix epoch, as the rest of Berth keeps times.
pub type Millis = i64;

/// The session cookie.
pub const SESSION_COOKIE: &str = "berth_console";
/// The sign-in form's nonce, until a session exists.
pub const SIGN_IN_COOKIE: &str = "berth_console_sign_in";
/// How long a sign-in form stays usable.
pub const SIGN_IN_LIFETIME: Duration = Duration::from_secs(3600);
/// The console's pages live under this path, and so do its cookies.
pub const COOKIE_PATH: &str = "/console";

const FORMAT: &str = "v1.";
/// Far above any real cookie; bounds the work spent on garbage before the MAC check.
const MAX_COOKIE_LEN: usize = 1024;

/// How a session's user proved itself at sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignedInWith {
    AccessKey,
    Token,
    /// Authentication is off (`--no-auth`): an anonymous session that only carries CSRF state.
    Nothing,
}

/// What a session cookie vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// `None`: anonymous (authentication is off).
    #[serde(rename = "sub")]
    pub user_name: Option<String>,
    #[serde(rename = "uct")]
    pub user_created_at: Millis,
    pub via: SignedInWith,
    #[serde(rename = "iat")]
    pub issued_at: Millis,
    #[serde(rename = "exp")]
    pub expires_at: Millis,
    /// Random; what CSRF tokens are bound to.
    #[serde(rename = "sid")]
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("not a console session")]
    Malformed,
    #[error("session signature does not match")]
    BadSignature,
    #[error("session expired")]
    Expired,
}

/// What a CSRF token is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrfBinding<'a> {
    /// A signed-in session's id.
    Session(&'a str),
    /// The sign-in form's nonce (its cookie).
    SignIn(&'a str),
}

pub struct SessionKeys {
    cookie: [u8; 32],
    csrf: [u8; 32],
    lifetime: Duration,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys").field("lifetime", &self.lifetime).finish_non_exhaustive()
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    parts.iter().for_each(|part| mac.update(part));
    mac.finalize().into_bytes().into()
}

/// 128 random bits, base64url.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `value` has the form [`random_id`] gives (a cookie may hold anything).
pub fn is_random_id(value: &str) -> bool {
    URL_SAFE_NO_PAD.decode(value).is_ok_and(|bytes| bytes.len() == 16)
}

impl SessionKeys {
    /// `console_key` is the master key's console subkey; sessions last `lifetime`.
    pub fn new(console_key: [u8; 32], lifetime: Duration) -> SessionKeys {
        SessionKeys {
            cookie: hmac(&console_key, &[b"berth/console/v1/session-cookie"]),
            csrf: hmac(&console_key, &[b"berth/console/v1/csrf-token"]),
            lifetime,
        }
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// A new session for `user` (name and creation time; `None` when authentication is off).
    pub fn start(&self, user: Option<(&str, Millis)>, via: SignedInWith, now: Millis) -> Session {
        let lifetime = Millis::try_from(self.lifetime.as_millis()).unwrap_or(Millis::MAX);
        Session {
            user_name: user.map(|(name, _)| name.to_owned()),
            user_created_at: user.map_or(0, |(_, created_at)| created_at),
            via,
            issued_at: now,
            expires_at: now.saturating_add(lifetime),
            id: random_id(),
        }
    }

    /// The cookie value for `session`.
    pub fn seal(&self, session: &Session) -> String {
        let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(session).expect("sessions serialize"));
        let signed = format!("{FORMAT}{claims}");
        let mac = hmac(&self.cookie, &[signed.as_bytes()]);
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac))
    }

    /// The session a cookie value holds, if it was sealed with these keys and has not expired.
    pub fn open(&self, value: &str, now: Millis) -> Result<Session, SessionError> {
        if value.len() > MAX_COOKIE_LEN || !value.starts_with(FORMAT) {
            return Err(SessionError::Malformed);
        }
        let (signed, mac) = value.rsplit_once('.').ok_or(SessionError::Malformed)?;
        let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| SessionError::Malformed)?;
        let expected = hmac(&self.cookie, &[signed.as_bytes()]);
        if !bool::from(expected.as_slice().ct_eq(&mac)) {
            return Err(SessionError::BadSignature);
        }
        let session: Session = URL_SAFE_NO_PAD
            .decode(&signed[FORMAT.len()..])
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(SessionError::Malformed)?;
        if now >= session.expires_at { Err(SessionError::Expired) } else { Ok(session) }
    }

    /// The CSRF token every form of a page bound to `binding` carries.
    pub fn csrf_token(&self, binding: CsrfBinding<'_>) -> String {
        let (kind, id): (&[u8], &str) = match binding {
            CsrfBinding::Session(id) => (b"session\0", id),
            CsrfBinding::SignIn(nonce) => (b"sign-in\0", nonce),
        };
        URL_SAFE_NO_PAD.encode(hmac(&self.csrf, &[kind, id.as_bytes()]))
    }

    /// Whether `presented` is the CSRF token of `binding` (compared in constant time).
    pub fn csrf_valid(&self, binding: CsrfBinding<'_>, presented: &str) -> bool {
        let expected = self.csrf_token(binding);
        bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, scoped to the console, `Secure` when the
/// page was served over TLS. `max_age` zero deletes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path={COOKIE_PATH}; Max-Age={}; HttpOnly; SameSite=Strict{secure}", max_age.as_secs())
}

/// The value of cookie `name` in a `Cookie` header (`a=1; b=2`), if present.
pub fn cookie<'h>(header: &'h str, name: &str) -> Option<&'h str> {
    header.split(';').filter_map(|pair| pair.trim().split_once('=')).find(|(n, _)| *n == name).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_800_000_000_000;
    const HOUR: Millis = 3_600_000;

    fn keys() -> SessionKeys {
        SessionKeys::new([7; 32], Duration::from_secs(12 * 3600))
    }

    #[test]
    fn a_session_round_trips_until_it_expires() {
        let keys = keys();
        let session = keys.start(Some(("alice", 42)), SignedInWith::AccessKey, NOW);
        assert_eq!(session.expires_at, NOW + 12 * HOUR);
        let cookie = keys.seal(&session);
        assert!(cookie.starts_with("v1."));
        assert!(cookie.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)), "cookie-safe: {cookie}");
        assert_eq!(keys.open(&cookie, NOW + 11 * HOUR), Ok(session.clone()));
        assert_eq!(keys.open(&cookie, NOW + 12 * HOUR), Err(SessionError::Expired));
        // Another server with the same master key accepts it: the keys derive deterministically.
        assert_eq!(SessionKeys::new([7; 32], Duration::ZERO).open(&cookie, NOW), Ok(session));
    }

    #[test]
    fn two_sessions_of_one_user_differ() {
        let keys = keys();
        let a = keys.start(Some(("alice", 42)), SignedInWith::Token, NOW);
        let b = keys.start(Some(("alice", 42)), SignedInWith::Token, NOW);
        assert_ne!(a.id, b.id);
        assert_ne!(keys.seal(&a), keys.seal(&b));
    }

    #[test]
    fn tampered_or_foreign_cookies_are_refused() {
        let keys = keys();
        let session = keys.start(Some(("alice", 42)), SignedInWith::AccessKey, NOW);
        let cookie = keys.seal(&session);

        // Another user's name with the original MAC.
        let mut forged = session.clone();
        forged.user_name = Some("root".into());
        let forged_claims = keys.seal(&forged);
        let (forged_signed, _) = forged_claims.rsplit_once('.').unwrap();
        let (_, mac) = cookie.rsplit_once('.').unwrap();
        assert_eq!(keys.open(&format!("{forged_signed}.{mac}"), NOW), Err(SessionError::BadSignature));

        // A later expiry with the original MAC.
        let mut extended = session.clone();
        extended.expires_at += 1000 * HOUR;
        let (extended_signed, _) =
            keys.seal(&extended).rsplit_once('.').map(|(s, m)| (s.to_owned(), m.to_owned())).unwrap();
        assert_eq!(keys.open(&format!("{extended_signed}.{mac}"), NOW), Err(SessionError::BadSignature));

        let other = SessionKeys::new([8; 32], Duration::from_secs(3600));
        assert_eq!(other.open(&cookie, NOW), Err(SessionError::BadSignature), "another master key");

        for garbage in ["", "v1.", "v1.abc", "v2.abc.def", "v1.!!!.???", &"v1.a".repeat(400)] {
            assert!(keys.open(garbage, NOW).is_err(), "{garbage:?}");
        }
        // A valid MAC over claims that are not JSON.
        let signed = format!("v1.{}", URL_SAFE_NO_PAD.encode(b"not json"));
        let mac = URL_SAFE_NO_PAD.encode(hmac(&keys.cookie, &[signed.as_bytes()]));
        assert_eq!(keys.open(&format!("{signed}.{mac}"), NOW), Err(SessionError::Malformed));
    }

    #[test]
    fn csrf_tokens_are_bound_to_their_session_or_sign_in_nonce() {
        let keys = keys();
        let token = keys.csrf_token(CsrfBinding::Session("sid-1"));
        assert!(keys.csrf_valid(CsrfBinding::Session("sid-1"), &token));
        assert!(!keys.csrf_valid(CsrfBinding::Session("sid-2"), &token), "another session");
        assert!(!keys.csrf_valid(CsrfBinding::SignIn("sid-1"), &token), "the same id as a sign-in nonce");
        assert!(!keys.csrf_valid(CsrfBinding::Session("sid-1"), ""), "no token");
        assert!(!keys.csrf_valid(CsrfBinding::Session("sid-1"), &token[..token.len() - 1]), "truncated");
        let other = SessionKeys::new([8; 32], Duration::from_secs(3600));
        assert!(!other.csrf_valid(CsrfBinding::Session("sid-1"), &token), "another master key");
        // A session cookie's MAC never passes as a CSRF token.
        let session = keys.start(None, SignedInWith::Nothing, NOW);
        let (_, cookie_mac) = keys.seal(&session).rsplit_once('.').map(|(s, m)| (s.to_owned(), m.to_owned())).unwrap();
        assert!(!keys.csrf_valid(CsrfBinding::Session(&session.id), &cookie_mac));
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_over_tls() {
        let plain = set_cookie(SESSION_COOKIE, "v1.x.y", Duration::from_secs(43200), false);
        assert_eq!(plain, "berth_console=v1.x.y; Path=/console; Max-Age=43200; HttpOnly; SameSite=Strict");
        let tls = set_cookie(SESSION_COOKIE, "v1.x.y", Duration::from_secs(43200), true);
        assert!(tls.ends_with("; Secure"), "{tls}");
    }

    #[test]
    fn cookie_headers_are_parsed_by_name() {
        let header = "other=1; berth_console=v1.a.b;berth_console_sign_in=n=x";
        assert_eq!(cookie(header, SESSION_COOKIE), Some("v1.a.b"));
        assert_eq!(cookie(header, SIGN_IN_COOKIE), Some("n=x"));
        assert_eq!(cookie(header, "berth"), None);
        assert_eq!(cookie("", SESSION_COOKIE), None);
    }
}
