//! What can go wrong talking to a remote registry, typed so callers can tell "the upstream is
//! away or rate-limiting: serve from cache" from "not there" from "bad credentials".
//!
//! Messages carry what the registry said, never credentials, tokens or signed URLs.

use std::time::{Duration, SystemTime};

use berth_spec::Digest;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// 404: the repository, manifest or blob does not exist there (`code` as the registry said:
    /// `MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`, `NAME_UNKNOWN`, ...).
    #[error("not found: {message}")]
    NotFound { code: Option<String>, message: String },
    /// 401, from the registry or its token service: missing or wrong credentials.
    #[error("authentication failed: {message}")]
    Unauthorized { message: String },
    /// 403: the credentials are valid but may not do this.
    #[error("access denied: {message}")]
    Denied { message: String },
    /// 429 (or Docker Hub's `TOOMANYREQUESTS`): try again after `retry_after` if known.
    #[error("rate-limited by the registry{}: {message}", retry_hint(*.retry_after))]
    TooManyRequests { retry_after: Option<Duration>, message: String },
    /// Any other error status, with the OCI error body's first `code` and `message`.
    #[error("the registry answered {status}{}: {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Upstream { status: u16, code: Option<String>, message: String },
    /// The registry could not be reached or stopped answering (connect, TLS, timeout, reset).
    #[error("cannot reach the registry: {0}")]
    Transport(String),
    /// Content did not hash to the digest it was asked for or announced with.
    #[error("content does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    /// The registry answered something the distribution spec does not allow.
    #[error("invalid response from the registry: {0}")]
    InvalidResponse(String),
    /// The caller asked for something inconsistent (e.g. manifest bytes that are not the digest
    /// they are pushed by, a body shorter than its announced size).
    #[error("invalid request: {0}")]
    InvalidInput(String),
    /// The caller's upload stream failed.
    #[error("reading the blob to upload failed: {0}")]
    Source(String),
    /// [`crate::ClientConfig`] cannot be used (e.g. a CA bundle without certificates).
    #[error("invalid client configuration: {0}")]
    Config(String),
}

fn retry_hint(retry_after: Option<Duration>) -> String {
    retry_after.map(|d| format!(" (retry after {} s)", d.as_secs())).unwrap_or_default()
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The registry is down, overloaded, rate-limiting or broken: a cache serves what it has.
    /// `NotFound`, `Unauthorized`, `Denied` and 4xx answers are the registry's considered reply.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Transport(_) | Error::TooManyRequests { .. } | Error::InvalidResponse(_) => true,
            Error::Upstream { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// Classifies an error response from its status, headers and (start of the) body.
    pub(crate) fn from_response(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        let (code, body_message) = oci_error(body);
        let message = body_message.unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
        if status == StatusCode::TOO_MANY_REQUESTS || code.as_deref() == Some("TOOMANYREQUESTS") {
            return Error::TooManyRequests { retry_after: retry_after(headers), message };
        }
        match status {
            StatusCode::NOT_FOUND => Error::NotFound { code, message },
            // A token that authenticated but does not cover the request, after a fresh token was
            // fetched for it: the credentials lack the permission.
            StatusCode::UNAUTHORIZED if insufficient_scope(headers) => Error::Denied { message },
            StatusCode::UNAUTHORIZED => Error::Unauthorized { message },
            StatusCode::FORBIDDEN => Error::Denied { message },
            _ => Error::Upstream { status: status.as_u16(), code, message },
        }
    }

    /// A reqwest failure, without its URL (a redirect target may be a signed URL).
    pub(crate) fn transport(error: reqwest::Error) -> Error {
        let error = error.without_url();
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Error::Transport(message)
    }
}

fn insufficient_scope(headers: &HeaderMap) -> bool {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("error=\"insufficient_scope\"") || v.contains("error=insufficient_scope"))
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
    /// Token services (Docker Hub's among them) answer `{"details": "..."}`.
    details: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    code: Option<String>,
    message: Option<String>,
}

/// The first `errors[]` entry of an OCI error body: (code, message).
fn oci_error(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) else {
        return (None, None);
    };
    match parsed.errors.into_iter().next() {
        Some(entry) => (entry.code, entry.message.filter(|m| !m.is_empty())),
        None => (None, parsed.details),
    }
}

/// `Retry-After` (seconds or an HTTP date); else Docker Hub's `ratelimit-remaining: 0;w=<window>`,
/// whose window is the longest the wait can be.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(value) = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()) {
        let value = value.trim();
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(Duration::from_secs(seconds));
        }
        if let Ok(at) = httpdate::parse_http_date(value) {
            return Some(at.duration_since(SystemTime::now()).unwrap_or_default());
        }
    }
    let remaining = headers.get("ratelimit-remaining")?.to_str().ok()?;
    let (count, params) = remaining.split_once(';')?;
    if count.trim() != "0" {
        return None;
    }
    let window = params.split(';').find_map(|p| p.trim().strip_prefix("w="))?;
    window.trim().parse().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    const MANIFEST_UNKNOWN: &[u8] =
        br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;

    #[test]
    fn statuses_become_typed_errors_with_the_registrys_words() {
        let none = HeaderMap::new();
        assert_eq!(
            Error::from_response(StatusCode::NOT_FOUND, &none, MANIFEST_UNKNOWN),
            Error::NotFound { code: Some("MANIFEST_UNKNOWN".into()), message: "manifest unknown".into() }
        );
        let unauthorized = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
        assert_eq!(
            Error::from_response(StatusCode::UNAUTHORIZED, &none, unauthorized),
            Error::Unauthorized { message: "authentication required".into() }
        );
        let scoped = headers(&[(
            "www-authenticate",
            r#"Bearer realm="https://auth.example/token",scope="repository:a:push",error="insufficient_scope""#,
        )]);
        assert_eq!(
            Error::from_response(StatusCode::UNAUTHORIZED, &scoped, unauthorized),
            Error::Denied { message: "authentication required".into() }
        );
        assert_eq!(
            Error::from_response(StatusCode::FORBIDDEN, &none, b"<html>nope</html>"),
            Error::Denied { message: "Forbidden".into() }
        );
        assert_eq!(
            Error::from_response(StatusCode::UNAUTHORIZED, &none, br#"{"details":"incorrect username or password"}"#),
            Error::Unauthorized { message: "incorrect username or password".into() }
        );
        let unsupported = br#"{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}"#;
        let error = Error::from_response(StatusCode::METHOD_NOT_ALLOWED, &none, unsupported);
        assert_eq!(
            error,
            Error::Upstream {
                status: 405,
                code: Some("UNSUPPORTED".into()),
                message: "The operation is unsupported.".into()
            }
        );
        assert_eq!(error.to_string(), "the registry answered 405 UNSUPPORTED: The operation is unsupported.");
    }

    #[test]
    fn rate_limits_carry_when_to_retry() {
        let limited = br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}"#;
        let error = Error::from_response(StatusCode::TOO_MANY_REQUESTS, &headers(&[("retry-after", "42")]), limited);
        assert_eq!(
            error,
            Error::TooManyRequests {
                retry_after: Some(Duration::from_secs(42)),
                message: "You have reached your pull rate limit.".into()
            }
        );
        assert!(error.to_string().contains("retry after 42 s"), "{error}");
        // Docker Hub: no Retry-After, but the window of the exhausted limit.
        let hub = headers(&[("ratelimit-limit", "100;w=21600"), ("ratelimit-remaining", "0;w=21600")]);
        assert!(matches!(
            Error::from_response(StatusCode::TOO_MANY_REQUESTS, &hub, limited),
            Error::TooManyRequests { retry_after: Some(d), .. } if d == Duration::from_secs(21600)
        ));
        // The code alone marks it, whatever the status.
        assert!(matches!(
            Error::from_response(StatusCode::FORBIDDEN, &HeaderMap::new(), limited),
            Error::TooManyRequests { retry_after: None, .. }
        ));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let Error::TooManyRequests { retry_after: Some(wait), .. } =
            Error::from_response(StatusCode::TOO_MANY_REQUESTS, &headers(&[("retry-after", &later)]), b"")
        else {
            panic!("an HTTP date is a retry time")
        };
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120), "{wait:?}");
    }

    #[test]
    fn unavailable_means_try_the_cache() {
        assert!(Error::Transport("connection refused".into()).is_unavailable());
        assert!(Error::Upstream { status: 503, code: None, message: String::new() }.is_unavailable());
        assert!(Error::TooManyRequests { retry_after: None, message: String::new() }.is_unavailable());
        assert!(!Error::NotFound { code: None, message: String::new() }.is_unavailable());
        assert!(!Error::Unauthorized { message: String::new() }.is_unavailable());
        assert!(!Error::Upstream { status: 400, code: None, message: String::new() }.is_unavailable());
    }
}
