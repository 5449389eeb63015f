//! Users and their access keys over any [`MetadataStore`], plus the root user's bootstrap.
//!
//! Every authenticated request looks a user up, so lookups read an in-memory snapshot of all users
//! (secrets already decrypted). At most once per [`REVALIDATE_INTERVAL`] (one second) a lookup
//! asks the store for `credentials_generation()` — a counter every user change bumps, whichever
//! process made it — and reloads the snapshot when it moved. So `berth user add/remove` run
//! against the data dir of a running server takes effect within about a second (well inside the
//! promised five); changes made through the same [`Identities`] take effect at once, and so does a
//! key added elsewhere: a lookup that misses asks the store again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use berth_meta::{AccessKeyStatus, MetadataStore, Millis, UserPolicy, UserRecord};
use serde::Serialize;

use crate::keys::{MasterKey, SecretCipher, random_bytes, replace_private_file};
use crate::token::{IssuedToken, TokenIssuer};
use crate::{Error, now_millis};

pub const REVALIDATE_INTERVAL: Duration = Duration::from_secs(1);
pub const ROOT_USER: &str = "root";
pub const ROOT_ACCESS_KEY_ID_ENV: &str = "BERTH_ROOT_ACCESS_KEY_ID";
pub const ROOT_SECRET_ACCESS_KEY_ENV: &str = "BERTH_ROOT_SECRET_ACCESS_KEY";
/// Where generated root credentials are written, under the data dir (mode 0600).
pub const ROOT_CREDENTIALS_FILE: &str = "root-credentials.json";

/// A user as everyone may see it (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub access_key_id: String,
    pub created_at: Millis,
    pub key_status: AccessKeyStatus,
}

impl User {
    /// Whether the user may act: an inactive access key stops its tokens and console sessions too.
    pub fn is_active(&self) -> bool {
        self.key_status == AccessKeyStatus::Active
    }
}

/// A new user's keys, shown once (`berth user add`, generated root credentials).
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    pub user_name: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user_name", &self.user_name)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    fn generate(user_name: &str) -> Self {
        Credentials {
            user_name: user_name.to_owned(),
            access_key_id: new_access_key_id(),
            secret_access_key: new_secret_access_key(),
        }
    }
}

/// An access key with its plaintext secret, for HTTP Basic and SigV4 verification.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub user_name: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("user_name", &self.user_name)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Root keys chosen by the operator (`BERTH_ROOT_ACCESS_KEY_ID` / `BERTH_ROOT_SECRET_ACCESS_KEY`).
#[derive(Clone, PartialEq, Eq)]
pub struct RootKeys {
    access_key_id: String,
    secret_access_key: String,
}

impl std::fmt::Debug for RootKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootKeys").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

impl RootKeys {
    /// The access key id must be 3 to 128 letters or digits (and not `AWS`, the token user name);
    /// the secret 8 to 128 printable ASCII characters without spaces.
    pub fn new(access_key_id: &str, secret_access_key: &str) -> Result<Self, Error> {
        let id_ok = (3..=128).contains(&access_key_id.len())
            && access_key_id.bytes().all(|b| b.is_ascii_alphanumeric())
            && access_key_id != crate::authn::TOKEN_USER;
        if !id_ok {
            return Err(Error::InvalidRootKeys(format!(
                "{ROOT_ACCESS_KEY_ID_ENV} must be 3 to 128 letters or digits and not {:?}",
                crate::authn::TOKEN_USER
            )));
        }
        let secret_ok =
            (8..=128).contains(&secret_access_key.len()) && secret_access_key.bytes().all(|b| b.is_ascii_graphic());
        if !secret_ok {
            return Err(Error::InvalidRootKeys(format!(
                "{ROOT_SECRET_ACCESS_KEY_ENV} must be 8 to 128 printable ASCII characters without spaces"
            )));
        }
        Ok(RootKeys { access_key_id: access_key_id.to_owned(), secret_access_key: secret_access_key.to_owned() })
    }

    /// Both variables set (non-empty) gives keys, neither gives `None`, one alone is an error.
    pub fn from_env() -> Result<Option<Self>, Error> {
        let read = |name: &str| match std::env::var(name) {
            Ok(value) if value.is_empty() => Ok(None),
            Ok(value) => Ok(Some(value)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::InvalidRootKeys(format!("{name} is not valid UTF-8"))),
        };
        match (read(ROOT_ACCESS_KEY_ID_ENV)?, read(ROOT_SECRET_ACCESS_KEY_ENV)?) {
            (Some(id), Some(secret)) => Self::new(&id, &secret).map(Some),
            (None, None) => Ok(None),
            (Some(_), None) => Err(Error::InvalidRootKeys(format!(
                "{ROOT_ACCESS_KEY_ID_ENV} is set without {ROOT_SECRET_ACCESS_KEY_ENV}"
            ))),
            (None, Some(_)) => Err(Error::InvalidRootKeys(format!(
                "{ROOT_SECRET_ACCESS_KEY_ENV} is set without {ROOT_ACCESS_KEY_ID_ENV}"
            ))),
        }
    }
}

/// What [`Identities::bootstrap_root`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootBootstrap {
    /// No keys in the environment and a root user already exists: left as it is.
    Existing,
    /// The root user holds the environment's keys; `changed` if it was created or its keys replaced.
    FromEnvironment { changed: bool },
    /// First start without keys in the environment: new keys, also written to `file`. Print them
    /// once; they are not shown again.
    Generated { credentials: Credentials, file: PathBuf },
}

pub struct Identities {
    store: Arc<dyn MetadataStore>,
    cipher: SecretCipher,
    cache: RwLock<Cache>,
    /// Held while revalidating, so concurrent lookups wait for one reload instead of each doing one.
    refresh: tokio::sync::Mutex<()>,
}

struct Cache {
    snapshot: Arc<Snapshot>,
    /// When the generation was last compared; `None` forces a check on the next lookup.
    checked_at: Option<Instant>,
    /// When the last check failed, and why; cleared by the next that succeeds.
    failed: Option<(Instant, String)>,
}

#[derive(Default)]
struct Snapshot {
    generation: Option<i64>,
    users: HashMap<String, User>,
    /// Only keys whose secret decrypted.
    access_keys: HashMap<String, AccessKey>,
}

impl Identities {
    pub fn new(store: Arc<dyn MetadataStore>, master_key: &MasterKey) -> Self {
        Identities {
            store,
            cipher: master_key.secret_cipher(),
            cache: RwLock::new(Cache { snapshot: Arc::default(), checked_at: None, failed: None }),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    /// Creates a user with a fresh access key and these identity policies (none: the user may do
    /// nothing, as in IAM). The secret is returned here and never again.
    pub async fn create_user(&self, name: &str, policies: &[UserPolicy]) -> Result<Credentials, Error> {
        validate_user_name(name)?;
        let credentials = Credentials::generate(name);
        self.insert(&credentials, policies).await?;
        Ok(credentials)
    }

    /// Removes a user, which also revokes its access key and tokens.
    pub async fn remove_user(&self, name: &str) -> Result<(), Error> {
        let removed = self.store.delete_user(name).await;
        self.invalidate().await;
        if removed? { Ok(()) } else { Err(Error::UserNotFound(name.to_owned())) }
    }

    /// Deactivates or reactivates a user's access key (IAM's `UpdateAccessKey`); returns the
    /// previous status. An inactive key fails HTTP Basic and SigV4 sign-ins, and the user's
    /// registry tokens and console sessions stop working until the key is active again.
    pub async fn set_access_key_status(&self, name: &str, status: AccessKeyStatus) -> Result<AccessKeyStatus, Error> {
        let changed = self.store.set_access_key_status(name, status).await;
        self.invalidate().await;
        changed.map_err(crate::cli::unknown_user)
    }

    /// The user a token or console session names, if it may still act: the same user (not
    /// removed and re-created since `created_at`) with an active access key.
    pub async fn acting_user(&self, name: &str, created_at: Millis) -> Result<Option<User>, Error> {
        let user =
            self.find_fresh(|snapshot| snapshot.users.get(name).filter(|user| user.created_at == created_at)).await?;
        Ok(user.filter(User::is_active))
    }

    /// Ends console session `id` on every server (a signed cookie would otherwise stay valid
    /// until `expires_at`, in any copy of it).
    pub async fn sign_out_console_session(&self, id: &str, expires_at: Millis, now: Millis) -> Result<(), Error> {
        Ok(self.store.sign_out_console_session(id, expires_at, now).await?)
    }

    /// Whether console session `id` was signed out.
    pub async fn console_session_signed_out(&self, id: &str) -> Result<bool, Error> {
        Ok(self.store.console_session_signed_out(id).await?)
    }

    /// Every user, sorted by name.
    pub async fn users(&self) -> Result<Vec<User>, Error> {
        let mut users: Vec<User> = self.snapshot().await?.users.values().cloned().collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(users)
    }

    pub async fn user(&self, name: &str) -> Result<Option<User>, Error> {
        Ok(self.snapshot().await?.users.get(name).cloned())
    }

    /// The plaintext secret behind an active access key id (HTTP Basic, SigV4).
    pub async fn access_key(&self, access_key_id: &str) -> Result<Option<AccessKey>, Error> {
        self.find_fresh(|snapshot| snapshot.access_keys.get(access_key_id)).await
    }

    /// Looks `find` up in the cached snapshot. A key or user another process just added (`berth
    /// user add`, then `berth token`) works on its first use, not up to a second later: a miss
    /// asks the store whether anything changed since this call. Failed sign-ins are throttled
    /// per address, so unknown names cannot turn this into a flood of queries.
    async fn find_fresh<T: Clone>(&self, find: impl Fn(&Snapshot) -> Option<&T>) -> Result<Option<T>, Error> {
        let asked_at = Instant::now();
        if let Some(found) = find(&*self.snapshot().await?) {
            return Ok(Some(found.clone()));
        }
        Ok(find(&*self.revalidated(|checked| checked > asked_at).await?).cloned())
    }

    /// Mints a token for an existing user (`GetAuthorizationToken`, `berth token`).
    pub async fn issue_token(&self, issuer: &TokenIssuer, user_name: &str) -> Result<IssuedToken, Error> {
        let user = self.user(user_name).await?.ok_or_else(|| Error::UserNotFound(user_name.to_owned()))?;
        if !user.is_active() {
            return Err(Error::AccessKeyInactive(user.name));
        }
        Ok(issuer.mint(&user))
    }

    /// Makes sure the `root` user exists. Keys from the environment win and replace root's keys
    /// whenever they differ, so changing the variables and restarting takes effect. Without them,
    /// an existing root user is kept; on first start new keys are generated, written to a file of
    /// this process's own before the user is stored (so they cannot be lost), and to
    /// `<data_dir>/root-credentials.json` (0600) once stored. Servers starting together on one
    /// database race to store root: the losers find it stored and keep (and write) nothing.
    pub async fn bootstrap_root(&self, data_dir: &Path, from_env: Option<RootKeys>) -> Result<RootBootstrap, Error> {
        let mut attempts = 0;
        loop {
            match self.try_bootstrap_root(data_dir, from_env.clone()).await {
                Err(e) if e.is_user_exists() && attempts < 2 => attempts += 1,
                other => return other,
            }
        }
    }

    async fn try_bootstrap_root(&self, data_dir: &Path, from_env: Option<RootKeys>) -> Result<RootBootstrap, Error> {
        let existing = self.store.user_by_name(ROOT_USER).await?;
        let credentials_file = data_dir.join(ROOT_CREDENTIALS_FILE);
        let Some(keys) = from_env else {
            if existing.is_some() {
                return Ok(RootBootstrap::Existing);
            }
            let credentials = Credentials::generate(ROOT_USER);
            std::fs::create_dir_all(data_dir).map_err(|e| Error::io(format!("creating {}", data_dir.display()), e))?;
            let json = serde_json::to_vec_pretty(&credentials).expect("credentials serialize");
            // Random, not the pid: servers in containers sharing a data directory are all pid 1.
            let pending = data_dir.join(format!("{ROOT_CREDENTIALS_FILE}.{}.pending", crate::keys::hex_suffix()));
            replace_private_file(&pending, &json)?;
            if let Err(e) = self.insert(&credentials, &[]).await {
                // Nobody's keys when another server stored root first; after any other failure
                // the insert may have committed all the same, so the keys stay where they are.
                if e.is_user_exists() {
                    let _ = std::fs::remove_file(&pending);
                }
                return Err(e);
            }
            replace_private_file(&credentials_file, &json)?;
            let _ = std::fs::remove_file(&pending);
            return Ok(RootBootstrap::Generated { credentials, file: credentials_file });
        };

        if let Some(root) = &existing
            && root.access_key_id == keys.access_key_id
            && self.cipher.open(&root.access_key_id, &root.secret_ciphertext).as_deref()
                == Some(keys.secret_access_key.as_str())
        {
            return Ok(RootBootstrap::FromEnvironment { changed: false });
        }
        if let Some(owner) = self.store.user_by_access_key(&keys.access_key_id).await?
            && owner.name != ROOT_USER
        {
            return Err(Error::InvalidRootKeys(format!(
                "{ROOT_ACCESS_KEY_ID_ENV} is already the access key of user {}",
                owner.name
            )));
        }
        if existing.is_some() {
            self.store.delete_user(ROOT_USER).await?;
        }
        self.insert(
            &Credentials {
                user_name: ROOT_USER.to_owned(),
                access_key_id: keys.access_key_id,
                secret_access_key: keys.secret_access_key,
            },
            &[],
        )
        .await?;
        // Generated keys written earlier no longer work; leaving them would mislead.
        match std::fs::remove_file(&credentials_file) {
            Ok(()) => tracing::info!(file = %credentials_file.display(), "removed stale generated root credentials"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", credentials_file.display()), e)),
        }
        Ok(RootBootstrap::FromEnvironment { changed: true })
    }

    /// Stores a new user (the root is given no policies: it needs no allow).
    async fn insert(&self, credentials: &Credentials, policies: &[UserPolicy]) -> Result<(), Error> {
        let record = UserRecord {
            name: credentials.user_name.clone(),
            access_key_id: credentials.access_key_id.clone(),
            secret_ciphertext: self.cipher.seal(&credentials.access_key_id, &credentials.secret_access_key),
            created_at: now_millis(),
            key_status: AccessKeyStatus::Active,
        };
        let created = self.store.create_user(&record, policies).await;
        self.invalidate().await;
        Ok(created?)
    }

    /// Forces the next lookup to revalidate. Waits for a reload in progress, which may have read
    /// the users before this process's own change.
    async fn invalidate(&self) {
        let _refreshing = self.refresh.lock().await;
        let mut cache = self.write_cache();
        cache.checked_at = None;
        cache.failed = None;
    }

    async fn snapshot(&self) -> Result<Arc<Snapshot>, Error> {
        if let Some(snapshot) = self.fresh_snapshot() {
            return Ok(snapshot);
        }
        self.revalidated(|checked| checked.elapsed() < REVALIDATE_INTERVAL).await
    }

    /// The snapshot, checked against the store now unless the last check (perhaps by another
    /// caller that held the refresh lock meanwhile) is `recent_enough`.
    async fn revalidated(&self, recent_enough: impl Fn(Instant) -> bool) -> Result<Arc<Snapshot>, Error> {
        let _refreshing = self.refresh.lock().await;
        {
            let cache = self.read_cache();
            if cache.checked_at.is_some_and(&recent_enough) {
                return Ok(cache.snapshot.clone());
            }
            // Callers that queued behind a check that failed are answered with its failure, not
            // each after another timeout of their own (a store outage would stack them up).
            if let Some((at, why)) = &cache.failed
                && at.elapsed() < REVALIDATE_INTERVAL
            {
                return Err(Error::StoreRecentlyFailed(why.clone()));
            }
        }
        // Stamped before the store is asked: what it answers is at least this recent.
        let checked_at = Instant::now();
        match self.check(checked_at).await {
            Ok(snapshot) => Ok(snapshot),
            Err(e) => {
                self.write_cache().failed = Some((Instant::now(), e.to_string()));
                Err(e)
            }
        }
    }

    async fn check(&self, checked_at: Instant) -> Result<Arc<Snapshot>, Error> {
        let generation = self.store.credentials_generation().await?;
        let current = self.read_cache().snapshot.clone();
        // Reading the generation before the users means a change in between is seen again on the
        // next check, never missed.
        let snapshot =
            if current.generation == Some(generation) { current } else { Arc::new(self.load(generation).await?) };
        *self.write_cache() = Cache { snapshot: snapshot.clone(), checked_at: Some(checked_at), failed: None };
        Ok(snapshot)
    }

    fn fresh_snapshot(&self) -> Option<Arc<Snapshot>> {
        let cache = self.read_cache();
        let fresh = cache.checked_at.is_some_and(|checked| checked.elapsed() < REVALIDATE_INTERVAL);
        fresh.then(|| cache.snapshot.clone())
    }

    /// Refuses a master key other than the one the store's secrets were sealed with: a server
    /// started with the wrong key would otherwise run with every access key disabled, and a
    /// root bootstrap could overwrite the root's secret for the servers holding the right key.
    pub async fn check_master_key(&self) -> Result<(), Error> {
        let users = self.store.list_users().await?;
        let sealed_elsewhere: Vec<String> = users
            .into_iter()
            .filter(|record| self.cipher.open(&record.access_key_id, &record.secret_ciphertext).is_none())
            .map(|record| record.name)
            .collect();
        if sealed_elsewhere.is_empty() { Ok(()) } else { Err(Error::MasterKeyMismatch { users: sealed_elsewhere }) }
    }

    async fn load(&self, generation: i64) -> Result<Snapshot, Error> {
        let mut snapshot = Snapshot { generation: Some(generation), ..Snapshot::default() };
        for record in self.store.list_users().await? {
            match self.cipher.open(&record.access_key_id, &record.secret_ciphertext) {
                // An inactive key signs nothing in; its user stays visible (lists, the console).
                Some(_) if record.key_status == AccessKeyStatus::Inactive => {}
                Some(secret) => {
                    snapshot.access_keys.insert(
                        record.access_key_id.clone(),
                        AccessKey {
                            user_name: record.name.clone(),
                            access_key_id: record.access_key_id.clone(),
                            secret_access_key: secret,
                        },
                    );
                }
                None => tracing::error!(
                    user = %record.name,
                    access_key_id = %record.access_key_id,
                    "stored secret does not decrypt with this master key; the access key is disabled"
                ),
            }
            snapshot.users.insert(record.name.clone(), user_from_record(record));
        }
        Ok(snapshot)
    }

    // The critical sections only swap an `Arc` or a timestamp, so a poisoned lock holds consistent data.
    fn read_cache(&self) -> RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_cache(&self) -> RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(PoisonError::into_inner)
    }
}

fn user_from_record(record: UserRecord) -> User {
    User {
        name: record.name,
        access_key_id: record.access_key_id,
        created_at: record.created_at,
        key_status: record.key_status,
    }
}

/// IAM's rule for user names; and not `anonymous` in any case: a user's `aws:userid` is its
/// name, and `anonymous` is an anonymous caller's, which policies name to single them out.
fn validate_user_name(name: &str) -> Result<(), Error> {
    let valid =
        (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if valid && !name.eq_ignore_ascii_case("anonymous") { Ok(()) } else { Err(Error::InvalidUserName(name.to_owned())) }
}

/// `AKIA` and 16 base32 characters, like an AWS access key id (80 random bits).
fn new_access_key_id() -> String {
    const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits = [0u8; 16];
    bits[6..].copy_from_slice(&random_bytes::<10>());
    let bits = u128::from_be_bytes(bits);
    let mut id = String::with_capacity(20);
    id.push_str("AKIA");
    id.extend((0..16).rev().map(|group| BASE32[((bits >> (group * 5)) & 31) as usize] as char));
    id
}

/// 40 base64 characters (240 random bits), like an AWS secret access key.
fn new_secret_access_key() -> String {
    STANDARD.encode(random_bytes::<30>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_key_ids_look_like_aws_ones() {
        let ids: Vec<String> = (0..50).map(|_| new_access_key_id()).collect();
        for id in &ids {
            assert_eq!(id.len(), 20, "{id}");
            assert!(id.starts_with("AKIA"), "{id}");
            assert!(id[4..].bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)), "{id}");
        }
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }

    #[test]
    fn secrets_are_40_base64_characters() {
        let secret = new_secret_access_key();
        assert_eq!(secret.len(), 40);
        assert!(secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'), "{secret}");
        assert_ne!(secret, new_secret_access_key());
    }

    #[test]
    fn user_names_follow_iam_rules() {
        for good in ["alice", "ci-bot", "a.b@example.com", "x", &"n".repeat(64)] {
            assert!(validate_user_name(good).is_ok(), "{good}");
        }
        for bad in ["", "with space", "slash/", "colon:", "émile", &"n".repeat(65), "anonymous", "Anonymous"] {
            assert!(matches!(validate_user_name(bad), Err(Error::InvalidUserName(_))), "{bad}");
        }
    }

    #[test]
    fn root_keys_are_validated() {
        assert!(RootKeys::new("AKIAROOT", "supersecret").is_ok());
        for (id, secret) in [
            ("AWS", "supersecret"),
            ("ab", "supersecret"),
            ("has:colon", "supersecret"),
            ("AKIAROOT", "short"),
            ("AKIAROOT", "has space inside"),
        ] {
            assert!(matches!(RootKeys::new(id, secret), Err(Error::InvalidRootKeys(_))), "{id} {secret}");
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let credentials = Credentials::generate("alice");
        assert!(!format!("{credentials:?}").contains(&credentials.secret_access_key));
        let keys = RootKeys::new("AKIAROOT", "supersecret").unwrap();
        assert!(!format!("{keys:?}").contains("supersecret"));
    }
}
