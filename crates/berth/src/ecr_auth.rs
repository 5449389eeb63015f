//! Connects the ECR plane to the identities: SigV4 looks secrets up through them, and
//! `GetAuthorizationToken` mints registry tokens for the signer's user, and repository policies
//! see the signer as that user.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use berth_auth::{Authenticator, ROOT_USER};
use berth_ecr::{EcrError, IssuedToken, Principal, SecretLookup, TokenIssuer};
use berth_registry::Caller;

pub struct EcrIdentities(pub Arc<Authenticator>);

#[async_trait]
impl SecretLookup for EcrIdentities {
    async fn secret_for(&self, access_key_id: &str) -> Option<String> {
        match self.0.identities().access_key(access_key_id).await {
            Ok(key) => key.map(|k| k.secret_access_key),
            Err(e) => {
                tracing::error!(error = %e, "looking up an access key failed");
                None
            }
        }
    }
}

#[async_trait]
impl TokenIssuer for EcrIdentities {
    async fn issue(&self, principal: &Principal) -> Result<IssuedToken, EcrError> {
        let unavailable = |e: &dyn std::fmt::Display| EcrError::Server(format!("issuing a token failed: {e}"));
        let key = self.0.identities().access_key(&principal.access_key_id).await.map_err(|e| unavailable(&e))?;
        // SigV4 just verified this key, so it exists unless it was removed in between.
        let key = key.ok_or_else(|| unavailable(&"the access key was removed"))?;
        let token = self.0.issue_token(&key.user_name).await.map_err(|e| unavailable(&e))?;
        Ok(IssuedToken {
            password: token.token,
            expires_at: UNIX_EPOCH + Duration::from_millis(u64::try_from(token.expires_at).unwrap_or(0)),
        })
    }

    async fn caller(&self, principal: &Principal) -> Result<Caller, EcrError> {
        let key = self.0.identities().access_key(&principal.access_key_id).await;
        let key = key.map_err(|e| EcrError::Server(format!("looking up the signer failed: {e}")))?;
        Ok(match key {
            Some(key) if key.user_name == ROOT_USER => Caller::Root,
            Some(key) => Caller::User(key.user_name),
            // Removed since its signature was verified: it names nobody any more.
            None => Caller::Anonymous,
        })
    }
}
