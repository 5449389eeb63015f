//! Registry tokens: what ECR's `GetAuthorizationToken` and `berth token` hand out and what
//! `docker login -u AWS` sends back as its password.
//!
//! A token is `base64url(JSON claims) "." base64url(HMAC-SHA256(signing key, first part))`, so
//! verifying one needs no storage; the signing key is derived from the master key. Claims name
//! the user and when the user was created: the authenticator also checks the user still exists
//! with that creation time, so removing a user (or removing and re-adding the name) revokes its
//! tokens.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use berth_meta::Millis;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};

use crate::keys::{HmacSha256, MasterKey, random_bytes};
use crate::now_millis;
use crate::users::User;

/// ECR's token lifetime.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// Far above any real token (user names are at most 64 characters); bounds the work spent on
/// garbage before the signature check.
const MAX_TOKEN_LEN: usize = 2048;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    #[serde(rename = "sub")]
    user_name: String,
    #[serde(rename = "uct")]
    user_created_at: Millis,
    #[serde(rename = "iat")]
    issued_at: Millis,
    #[serde(rename = "exp")]
    expires_at: Millis,
    /// Random, so two tokens minted in the same millisecond still differ.
    #[serde(rename = "jti")]
    id: String,
}

#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    pub user_name: String,
    pub expires_at: Millis,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("user_name", &self.user_name)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl IssuedToken {
    /// ECR's `authorizationData[].authorizationToken`: base64 of `AWS:<token>`, which
    /// `aws ecr get-login-password` decodes back to the token.
    pub fn ecr_authorization_token(&self) -> String {
        STANDARD.encode(format!("{}:{}", crate::authn::TOKEN_USER, self.token))
    }

    /// ECR's `expiresAt` (a JSON number of seconds since the epoch).
    pub fn expires_at_epoch_seconds(&self) -> f64 {
        self.expires_at as f64 / 1000.0
    }
}

/// What a valid signature vouches for; the caller still checks that the user exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub user_name: String,
    pub user_created_at: Millis,
    pub expires_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a registry token")]
    Malformed,
    #[error("token signature does not match")]
    BadSignature,
    #[error("token of user {user_name} expired")]
    Expired { user_name: String },
}

pub struct TokenIssuer {
    signing_key: [u8; 32],
    lifetime: Duration,
}

impl TokenIssuer {
    /// `lifetime` is [`DEFAULT_TOKEN_LIFETIME`] in production; tests pass a short one (zero
    /// mints tokens that are already expired).
    pub fn new(master_key: &MasterKey, lifetime: Duration) -> Self {
        TokenIssuer { signing_key: master_key.token_signing_key(), lifetime }
    }

    pub fn mint(&self, user: &User) -> IssuedToken {
        self.mint_at(user, now_millis())
    }

    pub fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        self.verify_at(token, now_millis())
    }

    fn mac(&self) -> HmacSha256 {
        <HmacSha256 as KeyInit>::new_from_slice(&self.signing_key).expect("HMAC takes keys of any length")
    }

    fn mint_at(&self, user: &User, now: Millis) -> IssuedToken {
        let lifetime = Millis::try_from(self.lifetime.as_millis()).unwrap_or(Millis::MAX);
        let claims = Claims {
            user_name: user.name.clone(),
            user_created_at: user.created_at,
            issued_at: now,
            expires_at: now.saturating_add(lifetime),
            id: URL_SAFE_NO_PAD.encode(random_bytes::<12>()),
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialize"));
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        IssuedToken {
            token: format!("{payload}.{signature}"),
            user_name: claims.user_name,
            expires_at: claims.expires_at,
        }
    }

    fn verify_at(&self, token: &str, now: Millis) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (payload, signature) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        // `verify_slice` compares in constant time.
        mac.verify_slice(&signature).map_err(|_| TokenError::BadSignature)?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(TokenError::Malformed)?;
        if now >= claims.expires_at {
            return Err(TokenError::Expired { user_name: claims.user_name });
        }
        Ok(VerifiedToken {
            user_name: claims.user_name,
            user_created_at: claims.user_created_at,
            expires_at: claims.expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(lifetime: Duration) -> (tempfile::TempDir, TokenIssuer) {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::load_or_create(dir.path()).unwrap();
        (dir, TokenIssuer::new(&key, lifetime))
    }

    fn alice() -> User {
        User {
            name: "alice".into(),
            access_key_id: "AKIAAAAAAAAAAAAAAAAA".into(),
            created_at: 1_700_000_000_000,
            key_status: berth_meta::AccessKeyStatus::Active,
        }
    }

    const NOW: Millis = 1_800_000_000_000;

    #[test]
    fn minted_token_verifies_until_it_expires() {
        let (_dir, issuer) = issuer(DEFAULT_TOKEN_LIFETIME);
        let issued = issuer.mint_at(&alice(), NOW);
        assert_eq!(issued.expires_at, NOW + 12 * 3600 * 1000);
        assert_eq!(issued.user_name, "alice");

        let verified = issuer.verify_at(&issued.token, NOW).unwrap();
        assert_eq!(
            verified,
            VerifiedToken {
                user_name: "alice".into(),
                user_created_at: alice().created_at,
                expires_at: issued.expires_at
            }
        );
        assert!(issuer.verify_at(&issued.token, issued.expires_at - 1).is_ok());
        assert_eq!(
            issuer.verify_at(&issued.token, issued.expires_at),
            Err(TokenError::Expired { user_name: "alice".into() })
        );
    }

    #[test]
    fn zero_lifetime_tokens_are_already_expired() {
        let (_dir, issuer) = issuer(Duration::ZERO);
        let issued = issuer.mint(&alice());
        assert_eq!(issuer.verify(&issued.token), Err(TokenError::Expired { user_name: "alice".into() }));
    }

    #[test]
    fn tokens_differ_even_when_minted_together() {
        let (_dir, issuer) = issuer(DEFAULT_TOKEN_LIFETIME);
        assert_ne!(issuer.mint_at(&alice(), NOW).token, issuer.mint_at(&alice(), NOW).token);
    }

    #[test]
    fn token_signed_with_another_key_is_rejected() {
        let (_a, issuer) = issuer(DEFAULT_TOKEN_LIFETIME);
        let (_b, forger) = self::issuer(DEFAULT_TOKEN_LIFETIME);
        let forged = forger.mint_at(&alice(), NOW);
        assert_eq!(issuer.verify_at(&forged.token, NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn tampered_claims_or_signature_are_rejected() {
        let (_dir, issuer) = issuer(DEFAULT_TOKEN_LIFETIME);
        let token = issuer.mint_at(&alice(), NOW).token;
        let (payload, signature) = token.split_once('.').unwrap();

        // Same signature over claims that name another user and expire later.
        let mut claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        claims["sub"] = "root".into();
        claims["exp"] = (NOW + 365 * 86_400_000).into();
        let swapped = format!("{}.{signature}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()));
        assert_eq!(issuer.verify_at(&swapped, NOW), Err(TokenError::BadSignature));

        let mut signature_bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
        signature_bytes[0] ^= 1;
        let flipped = format!("{payload}.{}", URL_SAFE_NO_PAD.encode(&signature_bytes));
        assert_eq!(issuer.verify_at(&flipped, NOW), Err(TokenError::BadSignature));

        let truncated = format!("{payload}.{}", URL_SAFE_NO_PAD.encode(&signature_bytes[..16]));
        assert_eq!(issuer.verify_at(&truncated, NOW), Err(TokenError::BadSignature));
        assert_eq!(issuer.verify_at(&format!("{payload}."), NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn garbage_is_malformed() {
        let (_dir, issuer) = issuer(DEFAULT_TOKEN_LIFETIME);
        for garbage in ["", "no-dot", "a.b.c", "payload.!!!", &"x".repeat(MAX_TOKEN_LEN + 1)] {
            assert_eq!(issuer.verify_at(garbage, NOW), Err(TokenError::Malformed), "{garbage:?}");
        }
        // Correctly signed bytes that are not claims.
        let payload = URL_SAFE_NO_PAD.encode(b"{\"sub\":1}");
        let mut mac = issuer.mac();
        mac.update(payload.as_bytes());
        let signed = format!("{payload}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
        assert_eq!(issuer.verify_at(&signed, NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn ecr_authorization_token_is_base64_of_aws_and_the_token() {
        let (_dir, issuer) = issuer(DEFAULT_TOKEN_LIFETIME);
        let issued = issuer.mint_at(&alice(), NOW);
        let decoded = String::from_utf8(STANDARD.decode(issued.ecr_authorization_token()).unwrap()).unwrap();
        assert_eq!(decoded, format!("AWS:{}", issued.token));
        assert_eq!(issued.expires_at_epoch_seconds(), (NOW + 12 * 3600 * 1000) as f64 / 1000.0);
    }

    #[test]
    fn debug_output_hides_the_token() {
        let (_dir, issuer) = issuer(DEFAULT_TOKEN_LIFETIME);
        let issued = issuer.mint_at(&alice(), NOW);
        assert!(!format!("{issued:?}").contains(&issued.token));
    }
}
