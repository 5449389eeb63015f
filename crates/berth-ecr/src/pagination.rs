//! Opaque `nextToken`s holding a keyset cursor: the sort key of the last item returned.
//!
//! The next page starts strictly after that key, so items added or removed while a client pages
//! never shift the pages (no skipped or repeated items among those that stay). A token is bound
//! to its operation and to a scope the caller chooses (repository, filter), so a token from one
//! listing is refused by another instead of silently resuming somewhere odd.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::endpoint::Endpoint;
use crate::error::EcrError;

const VERSION: &str = "b1";

/// Encodes the cursor after `last_key` (one or more sort-key columns) for `endpoint` in `scope`.
pub fn encode_token(endpoint: Endpoint, scope: &str, last_key: &[&str]) -> String {
    let mut fields = vec![VERSION, endpoint.name(), scope];
    fields.extend_from_slice(last_key);
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&fields).unwrap_or_default())
}

/// Decodes a token made by [`encode_token`] with the same `endpoint` and `scope`, returning the
/// sort key to resume after.
pub fn decode_token(token: &str, endpoint: Endpoint, scope: &str) -> Result<Vec<String>, EcrError> {
    let invalid = invalid_token;
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let fields: Vec<String> = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    match fields.as_slice() {
        [version, op, token_scope, key @ ..]
            if version == VERSION
                && op == endpoint.name()
                && token_scope == scope
                && !key.is_empty()
                // Keys are names, tags and digests: a forged control character (a NUL, which
                // PostgreSQL's text refuses) is no key.
                && !key.iter().any(|k| k.chars().any(char::is_control)) =>
        {
            Ok(key.to_vec())
        }
        _ => Err(invalid()),
    }
}

/// One paginated listing, binding its tokens to the operation and the scope.
pub struct Pager<'a> {
    endpoint: Endpoint,
    scope: &'a str,
}

impl<'a> Pager<'a> {
    pub fn new(endpoint: Endpoint, scope: &'a str) -> Self {
        Pager { endpoint, scope }
    }

    /// The sort key to resume after, if the request carried a token.
    pub fn resume(&self, token: Option<&str>) -> Result<Option<Vec<String>>, EcrError> {
        token.map(|t| decode_token(t, self.endpoint, self.scope)).transpose()
    }

    /// The token for the page after `page`: only when more items remain.
    pub fn next_token<T>(&self, more: bool, page: &[T], key: impl FnOnce(&T) -> Vec<String>) -> Option<String> {
        let key = key(page.last().filter(|_| more)?);
        Some(encode_token(self.endpoint, self.scope, &key.iter().map(String::as_str).collect::<Vec<_>>()))
    }
}

/// The error for a token this server did not make for this request (also for a well-formed
/// token whose key no longer parses).
pub fn invalid_token() -> EcrError {
    EcrError::invalid_parameter(
        "nextToken",
        "Invalid token: pass the nextToken of the previous response to the same request",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_within_their_operation_and_scope() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let token = encode_token(Endpoint::ListImages, "team/app|TAGGED", &[&digest, "v1"]);
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{token}");
        assert_eq!(
            decode_token(&token, Endpoint::ListImages, "team/app|TAGGED"),
            Ok(vec![digest.clone(), "v1".to_owned()])
        );
        for (endpoint, scope) in [
            (Endpoint::DescribeImages, "team/app|TAGGED"),
            (Endpoint::ListImages, "team/app|UNTAGGED"),
            (Endpoint::ListImages, "other|TAGGED"),
        ] {
            let err = decode_token(&token, endpoint, scope).unwrap_err();
            assert_eq!(err.wire_type(), "InvalidParameterException");
        }
    }

    #[test]
    fn garbage_tokens_are_invalid_parameters() {
        let nul = encode_token(Endpoint::ListImages, "x", &["a\0b"]);
        for garbage in ["", "!!!", "bm90IGpzb24", "WyJiMSJd", "WyJiMSIsIkxpc3RJbWFnZXMiLCJ4Il0", &nul] {
            let err = decode_token(garbage, Endpoint::ListImages, "x").unwrap_err();
            assert_eq!(err.wire_type(), "InvalidParameterException", "{garbage:?}");
            assert!(err.to_string().starts_with("Invalid parameter at 'nextToken'"));
        }
    }
}
