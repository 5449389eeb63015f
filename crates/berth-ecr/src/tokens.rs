//! The registry password behind `GetAuthorizationToken` (what `aws ecr get-login-password`
//! prints and `docker login -u AWS` sends). Issuing it is the auth layer's business; the ECR
//! plane only asks for one on behalf of the verified signer.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use berth_iam::Identity;

use crate::error::EcrError;

/// ECR's authorization tokens are valid for 12 hours.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// A registry password and when it stops working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// Sent as the password of user `AWS`. Must not contain `:` or whitespace: the aws CLI
    /// splits the decoded `AWS:<password>` on `:`.
    pub password: String,
    pub expires_at: SystemTime,
}

/// Registry passwords for the identities behind the ECR plane.
#[async_trait]
pub trait TokenIssuer: Send + Sync + 'static {
    async fn issue(&self, identity: &Identity) -> Result<IssuedToken, EcrError>;
}

/// For `--no-auth`: clients call GetAuthorizationToken unconditionally (`get-login-password`,
/// credential helpers, CI login steps), so it must still answer. The `/v2/` plane ignores
/// credentials then, so the password is a fixed marker that says so rather than a secret.
pub struct AuthDisabledTokens;

/// The password handed out when authentication is off.
pub const AUTH_DISABLED_PASSWORD: &str = "berth-auth-disabled";

#[async_trait]
impl TokenIssuer for AuthDisabledTokens {
    async fn issue(&self, _: &Identity) -> Result<IssuedToken, EcrError> {
        Ok(IssuedToken { password: AUTH_DISABLED_PASSWORD.into(), expires_at: SystemTime::now() + TOKEN_LIFETIME })
    }
}
