//! Connects the ECR plane to the identities: SigV4 looks secrets (and their owners) up through
//! them, and `GetAuthorizationToken` mints registry tokens for the signer's user.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use berth_auth::{Authenticator, identity_of};
use berth_ecr::{EcrError, IssuedToken, SecretLookup, SigningKey, TokenIssuer};
use berth_iam::{CredentialKind, Identity};

pub struct EcrIdentities(pub Arc<Authenticator>);

#[async_trait]
impl SecretLookup for EcrIdentities {
    async fn secret_for(&self, access_key_id: &str) -> Result<Option<SigningKey>, EcrError> {
        match self.0.identities().access_key(access_key_id).await {
            Ok(key) => Ok(key.map(|key| SigningKey {
                identity: identity_of(&key.user_name, &key.access_key_id, CredentialKind::SigV4),
                secret: key.secret_access_key,
            })),
            Err(e) => {
                tracing::error!(error = %e, "looking up an access key failed");
                Err(EcrError::ServiceUnavailable("the credential store is unavailable; retry shortly".into()))
            }
        }
    }
}

#[async_trait]
impl TokenIssuer for EcrIdentities {
    async fn issue(&self, identity: &Identity) -> Result<IssuedToken, EcrError> {
        let unavailable = |e: &dyn std::fmt::Display| EcrError::Server(format!("issuing a token failed: {e}"));
        let user = identity.user_name().ok_or_else(|| unavailable(&"an anonymous caller has no token"))?;
        let token = self.0.issue_token(user).await.map_err(|e| unavailable(&e))?;
        Ok(IssuedToken {
            password: token.token,
            expires_at: UNIX_EPOCH + Duration::from_millis(u64::try_from(token.expires_at).unwrap_or(0)),
        })
    }
}
