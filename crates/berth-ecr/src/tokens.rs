//! The registry password behind `GetAuthorizationToken` (what `aws ecr get-login-password`
//! prints and `docker login -u AWS` sends). Issuing it is the auth layer's business; the ECR
//! plane only asks for one on behalf of the verified signer.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use berth_registry::Caller;

use crate::error::EcrError;
use crate::sigv4::Principal;

/// ECR's authorization tokens are valid for 12 hours.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// A registry password for `principal` and when it stops working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// Sent as the password of user `AWS`. Must not contain `:` or whitespace: the aws CLI
    /// splits the decoded `AWS:<password>` on `:`.
    pub password: String,
    pub expires_at: SystemTime,
}

/// The identities behind the ECR plane: who a verified signer is, and their registry passwords.
#[async_trait]
pub trait TokenIssuer: Send + Sync + 'static {
    async fn issue(&self, principal: &Principal) -> Result<IssuedToken, EcrError>;

    /// The signer as repository policies name it.
    async fn caller(&self, principal: &Principal) -> Result<Caller, EcrError>;
}

/// For `--no-auth`: clients call GetAuthorizationToken unconditionally (`get-login-password`,
/// credential helpers, CI login steps), so it must still answer. The `/v2/` plane ignores
/// credentials then, so the password is a fixed marker that says so rather than a secret.
pub struct AuthDisabledTokens;

/// The password handed out when authentication is off.
pub const AUTH_DISABLED_PASSWORD: &str = "berth-auth-disabled";

#[async_trait]
impl TokenIssuer for AuthDisabledTokens {
    async fn issue(&self, _: &Principal) -> Result<IssuedToken, EcrError> {
        Ok(IssuedToken { password: AUTH_DISABLED_PASSWORD.into(), expires_at: SystemTime::now() + TOKEN_LIFETIME })
    }

    /// Unverified signers are anonymous, as on the `/v2/` plane with authentication off.
    async fn caller(&self, _: &Principal) -> Result<Caller, EcrError> {
        Ok(Caller::Anonymous)
    }
}
