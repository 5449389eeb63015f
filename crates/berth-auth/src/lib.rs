//! Who may talk to the registry: users and their access keys ([`Identities`]), secrets encrypted
//! at rest under a master key kept outside the database ([`MasterKey`]), ECR-style registry tokens
//! ([`TokenIssuer`]) and the per-request decision ([`Authenticator`]).
//!
//! Knows nothing about routes or permissions: a router asks [`Authenticator::authenticate`] who
//! is calling and gets an [`berth_iam::Identity`]; an [`AuthError`] is already the 401 response
//! clients expect.

pub mod authn;
pub mod cli;
pub mod keys;
pub mod token;
pub mod upstream;
pub mod users;

use std::path::PathBuf;

use berth_meta::{MetaError, Millis};

pub use authn::{
    AuthError, AuthMode, Authenticator, CHALLENGE, REALM, TOKEN_USER, identity_of, key_id_shaped,
    presented_access_key_id, presents_credentials,
};
/// The identity policies users hold, and their keys' states, are stored with them.
pub use berth_meta::{AccessKeyStatus, UserPolicy};
pub use keys::MasterKey;
pub use token::{DEFAULT_TOKEN_LIFETIME, IssuedToken, TokenError, TokenIssuer, VerifiedToken};
pub use upstream::{UpstreamLogin, UpstreamSecrets};
pub use users::{
    AccessKey, Credentials, Identities, REVALIDATE_INTERVAL, ROOT_CREDENTIALS_FILE, ROOT_USER, RootBootstrap, RootKeys,
    User,
};

/// Failures of identity management (the CLI, bootstrap, lookups).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("{context}: {error}")]
    Io { context: String, error: std::io::Error },
    #[error("master key {}: {problem}", path.display())]
    MasterKey { path: PathBuf, problem: String },
    #[error(
        "the stored access keys of {} were sealed with another master key; give this server the key the others use (copy <data-dir>/keys/master.key from the first server, or point every server at one file with --master-key-file / BERTH_MASTER_KEY_FILE)",
        users.join(", ")
    )]
    MasterKeyMismatch { users: Vec<String> },
    #[error(
        "invalid user name {0:?}: use 1 to 64 letters, digits or any of +=,.@_- (and not \"anonymous\", the aws:userid of anonymous callers)"
    )]
    InvalidUserName(String),
    #[error("invalid secret name {0:?}: use letters, digits or any of /_+=.@-")]
    InvalidSecretName(String),
    #[error("user {0} does not exist")]
    UserNotFound(String),
    #[error("the access key of user {0} is inactive; activate it with `berth user key activate {0}`")]
    AccessKeyInactive(String),
    #[error("{0}")]
    InvalidPolicy(String),
    #[error("policy {policy} is not attached to user {user}")]
    PolicyNotAttached { user: String, policy: String },
    #[error("invalid root credentials: {0}")]
    InvalidRootKeys(String),
    /// What the root user refuses: it is allowed everything, and it is the way back in.
    #[error("the root user {0}")]
    RootUnchangeable(&'static str),
    /// The credential check failed a moment ago: later lookups fail at once instead of each
    /// waiting out the store's timeout in turn.
    #[error("the credential store failed under a second ago: {0}")]
    StoreRecentlyFailed(String),
}

impl Error {
    /// A user of that name exists already (names are unique whatever their case).
    pub fn is_user_exists(&self) -> bool {
        matches!(self, Error::Meta(MetaError::UserExists(_)))
    }

    pub(crate) fn io(context: String, error: std::io::Error) -> Self {
        Error::Io { context, error }
    }
}

pub(crate) fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| Millis::try_from(elapsed.as_millis()).unwrap_or(Millis::MAX))
}
