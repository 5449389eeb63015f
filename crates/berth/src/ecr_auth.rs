//! Connects the ECR plane to the identities: SigV4 looks secrets (and their owners) up through
//! them, and `GetAuthorizationToken` mints registry tokens for the signer's user.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use berth_auth::{Authenticator, ROOT_USER};
use berth_ecr::{EcrError, IssuedToken, SecretLookup, SigningKey, TokenIssuer};
use berth_iam::{CredentialKind, Identity};

pub struct EcrIdentities(pub Arc<Authenticator>);

#[async_trait]
impl SecretLookup for EcrIdentities {
    async fn secret_for(&self, access_key_id: &str) -> Option<SigningKey> {
        match self.0.identities().access_key(access_key_id).await {
            Ok(key) => key.map(|key| {
                let access_key_id = key.access_key_id;
                let identity = if key.user_name == ROOT_USER {
                    Identity::Root { access_key_id, via: CredentialKind::SigV4 }
                } else {
                    Identity::User { name: key.user_name, access_key_id, via: CredentialKind::SigV4 }
                };
                SigningKey { secret: key.secret_access_key, identity }
            }),
            Err(e) => {
                tracing::error!(error = %e, "looking up an access key failed");
                None
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
