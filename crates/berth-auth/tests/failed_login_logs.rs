//! Failed logins are logged with who tried, never with the secret or token. Its own test binary:
//! tracing caches per-callsite interest process-wide, so a thread-local subscriber can miss
//! events whose callsites other tests running in parallel registered first.

use std::path::Path;
use std::sync::Arc;

use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use berth_auth::{AuthMode, Authenticator, DEFAULT_TOKEN_LIFETIME, Identities, MasterKey, TokenIssuer};
use berth_meta::{MetadataStore, SqliteStore};

fn basic(user: &str, password: &str) -> HeaderMap {
    let value = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
    HeaderMap::from_iter([(AUTHORIZATION, HeaderValue::from_str(&value).unwrap())])
}

async fn server(data_dir: &Path) -> Authenticator {
    let store: Arc<dyn MetadataStore> = Arc::new(SqliteStore::open(&data_dir.join("meta.db")).await.unwrap());
    let key = MasterKey::load_or_create(data_dir).unwrap();
    let identities = Arc::new(Identities::new(store, &key));
    Authenticator::new(identities, TokenIssuer::new(&key, DEFAULT_TOKEN_LIFETIME), AuthMode::Required)
}

/// Collects what the fmt subscriber writes.
#[derive(Clone, Default)]
struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn failed_logins_are_logged_without_secrets_or_tokens() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    // Current-thread runtime: everything below runs on this thread, under this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let auth = server(dir.path()).await;
    let alice = auth.identities().create_user("alice", &[]).await.unwrap();
    let token = auth.issue_token("alice").await.unwrap();
    let wrong_secret = "Wrong/Secret+For/Alice0000000000000000000";
    assert!(auth.authenticate(&basic(&alice.access_key_id, wrong_secret)).await.is_err());
    assert!(auth.authenticate(&basic("AKIANOBODY0000000000", &alice.secret_access_key)).await.is_err());
    let forged = format!("{}x", token.token);
    assert!(auth.authenticate(&basic("AWS", &forged)).await.is_err());
    auth.identities().remove_user("alice").await.unwrap();
    assert!(auth.authenticate(&basic("AWS", &token.token)).await.is_err());

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert_eq!(logs.matches("WARN berth_auth::authn: login failed").count(), 4, "{logs}");
    assert!(logs.contains(&format!("access_key_id=\"{}\"", alice.access_key_id)), "{logs}");
    assert!(logs.contains("AKIANOBODY0000000000"), "{logs}");
    assert!(logs.contains("user=alice"), "{logs}");
    for secret in [wrong_secret, &alice.secret_access_key, &token.token, token.token.split('.').next().unwrap()] {
        assert!(!logs.contains(secret), "{secret} leaked into: {logs}");
    }
}
