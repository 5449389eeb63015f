//! `Identities` and `Authenticator` over a real SQLite store in a temporary data dir.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use berth_auth::{
    AuthError, AuthMode, Authenticator, Credentials, DEFAULT_TOKEN_LIFETIME, Error, Identities, MasterKey,
    ROOT_CREDENTIALS_FILE, RootBootstrap, RootKeys, TokenIssuer, cli,
};
use berth_iam::{CredentialKind, Identity};
use berth_meta::{MetaError, MetadataStore, SqliteStore};

async fn open_store(data_dir: &Path) -> Arc<dyn MetadataStore> {
    Arc::new(SqliteStore::open(&data_dir.join("meta.db")).await.unwrap())
}

/// The pieces `berth serve` wires together.
async fn server(data_dir: &Path, mode: AuthMode, lifetime: Duration) -> (Arc<dyn MetadataStore>, Authenticator) {
    let store = open_store(data_dir).await;
    let key = MasterKey::load_or_create(data_dir).unwrap();
    let identities = Arc::new(Identities::new(store.clone(), &key));
    (store, Authenticator::new(identities, TokenIssuer::new(&key, lifetime), mode))
}

fn headers(authorization: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, HeaderValue::from_str(authorization).unwrap());
    headers
}

fn basic(user: &str, password: &str) -> HeaderMap {
    headers(&format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))))
}

fn access_key_login(credentials: &Credentials) -> HeaderMap {
    basic(&credentials.access_key_id, &credentials.secret_access_key)
}

/// The identity `credentials` act as when presented `via` (a token carries its user's key id too).
fn user(credentials: &Credentials, via: CredentialKind) -> Identity {
    berth_auth::identity_of(&credentials.user_name, &credentials.access_key_id, via)
}

#[tokio::test]
async fn access_keys_and_tokens_work_until_the_user_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (store, auth) = server(dir.path(), AuthMode::Required, DEFAULT_TOKEN_LIFETIME).await;
    let alice = auth.identities().create_user("alice", &[]).await.unwrap();
    assert_eq!(alice.user_name, "alice");

    // The database holds the secret only encrypted.
    let row = store.user_by_name("alice").await.unwrap().unwrap();
    assert_eq!(row.access_key_id, alice.access_key_id);
    let secret = alice.secret_access_key.as_bytes();
    assert!(!row.secret_ciphertext.windows(secret.len()).any(|w| w == secret));
    // ...and gives it back for SigV4.
    let key = auth.identities().access_key(&alice.access_key_id).await.unwrap().unwrap();
    assert_eq!((key.user_name.as_str(), key.secret_access_key.as_str()), ("alice", alice.secret_access_key.as_str()));

    assert_eq!(
        auth.authenticate(&access_key_login(&alice)).await.unwrap(),
        Identity::User {
            name: "alice".into(),
            access_key_id: alice.access_key_id.clone(),
            via: CredentialKind::AccessKey
        }
    );
    let wrong_secret = basic(&alice.access_key_id, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    assert!(matches!(auth.authenticate(&wrong_secret).await, Err(AuthError::InvalidCredentials)));
    let unknown_key = basic("AKIAUNKNOWNUNKNOWNXX", &alice.secret_access_key);
    assert!(matches!(auth.authenticate(&unknown_key).await, Err(AuthError::InvalidCredentials)));

    let token = auth.issue_token("alice").await.unwrap();
    assert_eq!(auth.authenticate(&basic("AWS", &token.token)).await.unwrap(), user(&alice, CredentialKind::Token));
    let bearer = headers(&format!("Bearer {}", token.token));
    assert_eq!(auth.authenticate(&bearer).await.unwrap(), user(&alice, CredentialKind::Token));
    // The token is the password of user AWS only, not of the access key id.
    assert!(matches!(
        auth.authenticate(&basic(&alice.access_key_id, &token.token)).await,
        Err(AuthError::InvalidCredentials)
    ));

    // No credentials: anonymous, which the default mode turns away.
    assert_eq!(auth.authenticate(&HeaderMap::new()).await.unwrap(), Identity::Anonymous);
    assert!(!auth.mode().admits_anonymous());

    auth.identities().remove_user("alice").await.unwrap();
    assert!(matches!(auth.authenticate(&basic("AWS", &token.token)).await, Err(AuthError::InvalidCredentials)));
    assert!(matches!(auth.authenticate(&access_key_login(&alice)).await, Err(AuthError::InvalidCredentials)));
    assert!(matches!(auth.identities().remove_user("alice").await, Err(Error::UserNotFound(_))));
    assert!(matches!(auth.issue_token("alice").await, Err(Error::UserNotFound(_))));

    // A new user under the old name does not revive the old token.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let alice_again = auth.identities().create_user("alice", &[]).await.unwrap();
    assert!(matches!(auth.authenticate(&basic("AWS", &token.token)).await, Err(AuthError::InvalidCredentials)));
    assert!(auth.authenticate(&access_key_login(&alice_again)).await.is_ok());

    let bob = auth.identities().create_user("bob", &[]).await.unwrap();
    let listed: Vec<(String, String)> =
        auth.identities().users().await.unwrap().into_iter().map(|u| (u.name, u.access_key_id)).collect();
    assert_eq!(listed, [("alice".into(), alice_again.access_key_id.clone()), ("bob".into(), bob.access_key_id)]);

    assert!(matches!(auth.identities().create_user("alice", &[]).await, Err(Error::Meta(MetaError::UserExists(_)))));
    assert!(matches!(auth.identities().create_user("bad name", &[]).await, Err(Error::InvalidUserName(_))));
}

#[tokio::test]
async fn expired_and_foreign_tokens_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, auth) = server(dir.path(), AuthMode::Required, Duration::ZERO).await;
    auth.identities().create_user("alice", &[]).await.unwrap();
    let expired = auth.issue_token("alice").await.unwrap();
    assert!(matches!(auth.authenticate(&basic("AWS", &expired.token)).await, Err(AuthError::TokenExpired)));

    // A token from another Berth (another master key) for a user of the same name.
    let other_dir = tempfile::tempdir().unwrap();
    let (_other_store, other) = server(other_dir.path(), AuthMode::Required, DEFAULT_TOKEN_LIFETIME).await;
    other.identities().create_user("alice", &[]).await.unwrap();
    let foreign = other.issue_token("alice").await.unwrap();
    assert!(matches!(auth.authenticate(&basic("AWS", &foreign.token)).await, Err(AuthError::InvalidCredentials)));
    assert!(matches!(auth.authenticate(&basic("AWS", "not-a-token")).await, Err(AuthError::InvalidCredentials)));
}

#[tokio::test]
async fn anonymous_pull_and_disabled_modes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, open) = server(dir.path(), AuthMode::AnonymousPull, DEFAULT_TOKEN_LIFETIME).await;
    let alice = open.identities().create_user("alice", &[]).await.unwrap();

    assert!(open.mode().admits_anonymous());
    assert_eq!(open.authenticate(&HeaderMap::new()).await.unwrap(), Identity::Anonymous);
    // What containers/image sends when it has no credentials.
    assert_eq!(open.authenticate(&basic("", "")).await.unwrap(), Identity::Anonymous);
    // Wrong credentials are not quietly downgraded to anonymous.
    let wrong = basic(&alice.access_key_id, "nope-nope-nope");
    assert!(matches!(open.authenticate(&wrong).await, Err(AuthError::InvalidCredentials)));
    assert_eq!(open.authenticate(&access_key_login(&alice)).await.unwrap(), user(&alice, CredentialKind::AccessKey));

    let key = MasterKey::load_or_create(dir.path()).unwrap();
    let identities = Arc::new(Identities::new(store, &key));
    let disabled = Authenticator::new(identities, TokenIssuer::new(&key, DEFAULT_TOKEN_LIFETIME), AuthMode::Disabled);
    // Credentials, even broken or valid ones, are ignored.
    assert_eq!(disabled.authenticate(&HeaderMap::new()).await.unwrap(), Identity::Anonymous);
    assert_eq!(disabled.authenticate(&headers("Digest whatever")).await.unwrap(), Identity::Anonymous);
    assert_eq!(disabled.authenticate(&access_key_login(&alice)).await.unwrap(), Identity::Anonymous);
}

/// Polls `condition` every 50 ms; returns how long it took, or panics after `limit`.
async fn within(limit: Duration, what: &str, mut condition: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if condition().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn changes_through_another_store_show_up_at_once_or_within_the_cache_window() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, auth) = server(dir.path(), AuthMode::Required, DEFAULT_TOKEN_LIFETIME).await;
    // `berth user add/remove` in another process: its own connection pool and Identities.
    let cli_store = open_store(dir.path()).await;
    let cli_identities = Identities::new(cli_store, &MasterKey::load_or_create(dir.path()).unwrap());

    // The server caches the user list before the change...
    assert!(auth.identities().user("bob").await.unwrap().is_none());
    let bob = cli_identities.create_user("bob", &[]).await.unwrap();
    let login = access_key_login(&bob);
    // A new access key is accepted on its first use, though the cached list is fresh: a miss
    // asks the store (several users added in a row each work at once).
    auth.authenticate(&login).await.expect("bob's key at once");
    for name in ["carol", "dave"] {
        let added = cli_identities.create_user(name, &[]).await.unwrap();
        auth.authenticate(&access_key_login(&added)).await.expect("a key added right after another");
    }
    // So is a token `berth token` mints for a user it has just added (`acting_user`'s re-read).
    let cli_tokens = TokenIssuer::new(&MasterKey::load_or_create(dir.path()).unwrap(), DEFAULT_TOKEN_LIFETIME);
    // A miss (an unknown key) makes the server's snapshot fresh, so only the re-read finds erin.
    let unknown = basic("AKIAUNKNOWNKEY000000", "secret");
    assert!(matches!(auth.authenticate(&unknown).await, Err(AuthError::InvalidCredentials)));
    cli_identities.create_user("erin", &[]).await.unwrap();
    let erin_token = cli_identities.issue_token(&cli_tokens, "erin").await.unwrap();
    auth.authenticate(&basic("AWS", &erin_token.token)).await.expect("a new user's token at once");

    let token = auth.issue_token("bob").await.unwrap();
    let token_login = basic("AWS", &token.token);
    assert!(auth.authenticate(&token_login).await.is_ok());

    cli_identities.remove_user("bob").await.unwrap();
    within(Duration::from_secs(5), "removed user's access key rejected", async || {
        matches!(auth.authenticate(&login).await, Err(AuthError::InvalidCredentials))
    })
    .await;
    assert!(matches!(auth.authenticate(&token_login).await, Err(AuthError::InvalidCredentials)));
}

#[tokio::test]
async fn root_user_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    let (_store, auth) = server(&data_dir, AuthMode::Required, DEFAULT_TOKEN_LIFETIME).await;
    let identities = auth.identities();

    // First start without keys in the environment: generated, stored, returned once.
    let RootBootstrap::Generated { credentials: generated, file } =
        identities.bootstrap_root(&data_dir, None).await.unwrap()
    else {
        panic!("expected generated root credentials");
    };
    assert_eq!(file, data_dir.join(ROOT_CREDENTIALS_FILE));
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(written, serde_json::to_value(&generated).unwrap());
    assert_eq!(written["userName"], "root");
    assert!(generated.access_key_id.starts_with("AKIA"));
    assert_eq!(
        auth.authenticate(&access_key_login(&generated)).await.unwrap(),
        Identity::Root { access_key_id: generated.access_key_id.clone(), via: CredentialKind::AccessKey }
    );

    // Later starts keep it.
    assert_eq!(identities.bootstrap_root(&data_dir, None).await.unwrap(), RootBootstrap::Existing);
    assert!(auth.authenticate(&access_key_login(&generated)).await.is_ok());

    // Keys from the environment replace the generated ones (and their now useless file).
    let env_keys = RootKeys::new("AKIAROOTFROMENV", "root-secret-from-env").unwrap();
    let outcome = identities.bootstrap_root(&data_dir, Some(env_keys.clone())).await.unwrap();
    assert_eq!(outcome, RootBootstrap::FromEnvironment { changed: true });
    assert!(!file.exists());
    assert!(matches!(auth.authenticate(&access_key_login(&generated)).await, Err(AuthError::InvalidCredentials)));
    assert!(auth.authenticate(&basic("AKIAROOTFROMENV", "root-secret-from-env")).await.is_ok());

    let outcome = identities.bootstrap_root(&data_dir, Some(env_keys)).await.unwrap();
    assert_eq!(outcome, RootBootstrap::FromEnvironment { changed: false });

    // A changed secret takes effect on the next start.
    let rotated = RootKeys::new("AKIAROOTFROMENV", "rotated-root-secret").unwrap();
    let outcome = identities.bootstrap_root(&data_dir, Some(rotated)).await.unwrap();
    assert_eq!(outcome, RootBootstrap::FromEnvironment { changed: true });
    assert!(auth.authenticate(&basic("AKIAROOTFROMENV", "root-secret-from-env")).await.is_err());
    assert!(auth.authenticate(&basic("AKIAROOTFROMENV", "rotated-root-secret")).await.is_ok());

    // Someone else's access key id cannot become root's.
    let alice = identities.create_user("alice", &[]).await.unwrap();
    let stolen = RootKeys::new(&alice.access_key_id, "whatever-secret").unwrap();
    assert!(matches!(identities.bootstrap_root(&data_dir, Some(stolen)).await, Err(Error::InvalidRootKeys(_))));
    assert!(auth.authenticate(&basic("AKIAROOTFROMENV", "rotated-root-secret")).await.is_ok());
}

/// `bootstrap_root` of every server at once, each on a task of its own.
async fn bootstrap_together(
    servers: &[Arc<Identities>],
    data_dirs: &[std::path::PathBuf],
    keys: Option<RootKeys>,
) -> Vec<Result<RootBootstrap, Error>> {
    let tasks: Vec<_> = servers
        .iter()
        .zip(data_dirs)
        .map(|(identities, data_dir)| {
            let (identities, data_dir, keys) = (identities.clone(), data_dir.clone(), keys.clone());
            tokio::spawn(async move { identities.bootstrap_root(&data_dir, keys).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}

/// Servers starting together on one database race to store root: one stores its generated keys
/// and writes them; the others find root stored and write no file (their keys would not work).
/// With keys from the environment every one starts.
#[tokio::test]
async fn servers_starting_together_agree_on_root() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    let key = MasterKey::load_or_create(dir.path()).unwrap();
    let data_dirs: Vec<_> = (0..4).map(|i| dir.path().join(format!("server{i}"))).collect();
    let servers: Vec<_> = data_dirs.iter().map(|_| Arc::new(Identities::new(store.clone(), &key))).collect();
    let outcomes = bootstrap_together(&servers, &data_dirs, None).await;
    let mut generated = Vec::new();
    for (outcome, data_dir) in outcomes.into_iter().zip(&data_dirs) {
        match outcome.unwrap() {
            RootBootstrap::Generated { credentials, file } => generated.push((credentials, file)),
            RootBootstrap::Existing => {
                let left: Vec<_> = std::fs::read_dir(data_dir)
                    .map(|d| d.flatten().map(|e| e.file_name()).collect())
                    .unwrap_or_default();
                assert!(left.is_empty(), "a server that did not store root left {left:?}");
            }
            other => panic!("{other:?}"),
        }
    }
    let [(credentials, file)] = &generated[..] else { panic!("{} servers stored root", generated.len()) };
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    assert_eq!(written, serde_json::to_value(credentials).unwrap());
    let auth =
        Authenticator::new(servers[0].clone(), TokenIssuer::new(&key, DEFAULT_TOKEN_LIFETIME), AuthMode::Required);
    assert!(auth.authenticate(&access_key_login(credentials)).await.is_ok(), "the written keys work");

    let env_keys = RootKeys::new("AKIAROOTFROMENV", "root-secret-from-env").unwrap();
    let outcomes = bootstrap_together(&servers, &data_dirs, Some(env_keys)).await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
}

#[tokio::test]
async fn cli_helpers() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path();
    let store = open_store(data_dir).await;

    let mut out = Vec::new();
    let policies = ["AmazonEC2ContainerRegistryPullOnly".to_owned()];
    cli::user_add(store.clone(), data_dir, "ci-bot", &policies, &mut out).await.unwrap();
    let added: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(added["userName"], "ci-bot");
    let access_key_id = added["accessKeyId"].as_str().unwrap();
    let secret = added["secretAccessKey"].as_str().unwrap();
    assert_eq!((access_key_id.len(), secret.len()), (20, 40));

    assert!(matches!(
        cli::user_add(store.clone(), data_dir, "ci-bot", &[], &mut Vec::new()).await,
        Err(Error::Meta(MetaError::UserExists(_)))
    ));
    assert!(matches!(
        cli::user_add(store.clone(), data_dir, "", &[], &mut Vec::new()).await,
        Err(Error::InvalidUserName(_))
    ));

    let mut out = Vec::new();
    cli::user_list(store.clone(), &mut out).await.unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["userName"], "ci-bot");
    assert_eq!(listed[0]["accessKeyId"], access_key_id);
    assert!(listed[0]["createdAt"].as_f64().unwrap() > 1.7e9);
    assert_eq!(listed[0]["policies"], serde_json::json!(["AmazonEC2ContainerRegistryPullOnly"]));
    assert!(!String::from_utf8(out).unwrap().contains(secret));

    // A server on the same data dir accepts the printed keys and the printed token.
    let (_server_store, auth) = server(data_dir, AuthMode::Required, DEFAULT_TOKEN_LIFETIME).await;
    assert!(auth.authenticate(&basic(access_key_id, secret)).await.is_ok());
    let mut out = Vec::new();
    cli::token(store.clone(), data_dir, Some("ci-bot"), &mut out).await.unwrap();
    let token = String::from_utf8(out).unwrap();
    let token = token.strip_suffix('\n').unwrap();
    let ci_bot = auth.identities().user("ci-bot").await.unwrap().unwrap();
    assert_eq!(
        auth.authenticate(&basic("AWS", token)).await.unwrap(),
        Identity::User { name: "ci-bot".into(), access_key_id: ci_bot.access_key_id, via: CredentialKind::Token }
    );
    assert!(
        matches!(cli::token(store.clone(), data_dir, None, &mut Vec::new()).await, Err(Error::UserNotFound(n)) if n == "root")
    );

    cli::user_remove(store.clone(), "ci-bot").await.unwrap();
    assert!(matches!(cli::user_remove(store.clone(), "ci-bot").await, Err(Error::UserNotFound(_))));
    let mut out = Vec::new();
    cli::user_list(store, &mut out).await.unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "[]\n");
}

/// A credential check that failed is the answer for a second to the lookups queued behind it:
/// with the store down, each would otherwise wait out the store's timeout in turn.
#[tokio::test]
async fn lookups_right_after_a_failed_check_fail_at_once_without_asking_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (store, auth) = server(dir.path(), AuthMode::Required, DEFAULT_TOKEN_LIFETIME).await;
    let alice = auth.identities().create_user("alice", &[]).await.unwrap();
    assert!(auth.identities().access_key(&alice.access_key_id).await.unwrap().is_some());
    store.close().await;
    tokio::time::sleep(berth_auth::REVALIDATE_INTERVAL + Duration::from_millis(100)).await;
    let first = auth.identities().access_key(&alice.access_key_id).await;
    assert!(matches!(first, Err(Error::Meta(_))), "the store was asked: {first:?}");
    for _ in 0..3 {
        let next = auth.identities().access_key(&alice.access_key_id).await;
        assert!(matches!(next, Err(Error::StoreRecentlyFailed(_))), "{next:?}");
        assert!(matches!(auth.authenticate(&access_key_login(&alice)).await, Err(AuthError::Unavailable(_))));
    }
    // A second later the store is asked again.
    tokio::time::sleep(berth_auth::REVALIDATE_INTERVAL + Duration::from_millis(100)).await;
    assert!(matches!(auth.identities().access_key(&alice.access_key_id).await, Err(Error::Meta(_))));
}
