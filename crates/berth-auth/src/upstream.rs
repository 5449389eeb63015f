//! Credentials for other registries (the pull-through cache's upstreams), sealed at rest like
//! access-key secrets: XChaCha20-Poly1305 under its own subkey of the master key, with the
//! secret's name as associated data, so a ciphertext copied under another name does not open.
//!
//! Berth has no Secrets Manager: `berth secret put NAME` stores one and prints the ARN
//! (`arn:aws:secretsmanager:<region>:<account>:secret:ecr-pullthroughcache/NAME`) that a rule's
//! `credentialArn` then names.

use std::sync::Arc;

use berth_meta::MetadataStore;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::keys::{MasterKey, SecretCipher};

/// The prefix ECR requires of a pull-through cache secret's name.
pub const SECRET_NAME_PREFIX: &str = "ecr-pullthroughcache/";

/// A user name and password (or token) for an upstream registry, as Secrets Manager holds them
/// for ECR (`{"username": .., "accessToken": ..}`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamLogin {
    pub username: String,
    #[serde(rename = "accessToken")]
    pub password: String,
    /// The upstream registry URL the login is for (`berth secret put --upstream`): a rule for
    /// another upstream cannot use it. Sealed with the rest, so it cannot be changed apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
}

impl std::fmt::Debug for UpstreamLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamLogin").field("username", &self.username).finish_non_exhaustive()
    }
}

/// Seals and opens upstream logins with the master key's subkey for them.
pub struct UpstreamSecrets {
    cipher: SecretCipher,
}

impl UpstreamSecrets {
    pub fn new(master_key: &MasterKey) -> Self {
        UpstreamSecrets { cipher: master_key.upstream_secret_cipher() }
    }

    pub fn seal(&self, name: &str, login: &UpstreamLogin) -> Vec<u8> {
        let plaintext = serde_json::to_string(login).expect("a login serializes");
        self.cipher.seal(name, &plaintext)
    }

    /// `None` unless the bytes were sealed under `name` with this master key.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Option<UpstreamLogin> {
        serde_json::from_str(&self.cipher.open(name, sealed)?).ok()
    }
}

/// Whether `name` may follow `ecr-pullthroughcache/` in an ARN (Secrets Manager's characters).
pub fn valid_secret_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 512 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b))
}

/// The ARN a rule's `credentialArn` names the secret by.
pub fn secret_arn(region: &str, account_id: &str, name: &str) -> String {
    format!("arn:aws:secretsmanager:{region}:{account_id}:secret:{SECRET_NAME_PREFIX}{name}")
}

/// `berth secret put NAME`: seals and stores the login (replacing one of the same name), returns
/// its ARN.
pub async fn put_secret(
    store: Arc<dyn MetadataStore>,
    master_key: &MasterKey,
    name: &str,
    login: &UpstreamLogin,
    region: &str,
    account_id: &str,
) -> Result<String, Error> {
    if !valid_secret_name(name) {
        return Err(Error::InvalidSecretName(name.to_owned()));
    }
    let sealed = UpstreamSecrets::new(master_key).seal(name, login);
    store.put_upstream_secret(name, &sealed, crate::now_millis()).await?;
    Ok(secret_arn(region, account_id, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_opens_only_under_its_own_name_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::load_or_create(dir.path()).unwrap();
        let secrets = UpstreamSecrets::new(&key);
        let login = UpstreamLogin { username: "u".into(), password: "p@ss".into(), upstream: Some("ghcr.io".into()) };
        let sealed = secrets.seal("hub", &login);
        assert_eq!(secrets.open("hub", &sealed), Some(login.clone()));
        assert_eq!(secrets.open("other", &sealed), None);
        let other_dir = tempfile::tempdir().unwrap();
        let other = UpstreamSecrets::new(&MasterKey::load_or_create(other_dir.path()).unwrap());
        assert_eq!(other.open("hub", &sealed), None);
        assert!(!format!("{login:?}").contains("p@ss"));
    }

    #[test]
    fn names_and_arns_follow_ecrs_pattern() {
        assert!(valid_secret_name("docker-hub/team_1"));
        assert!(!valid_secret_name(""));
        assert!(!valid_secret_name("a b"));
        assert_eq!(
            secret_arn("eu-west-1", "123456789012", "hub"),
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ecr-pullthroughcache/hub"
        );
    }
}
