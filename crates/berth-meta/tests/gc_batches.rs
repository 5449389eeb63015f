//! A GC pass lists storage in batches and asks the metadata store about each batch at once: one
//! statement reads which blobs of the batch are linked, one notes the unlinked ones, however many
//! there are. Counted from sqlx's own statement log (`sqlx::query` events), in a test binary of
//! its own because it installs the process-wide subscriber.

use std::sync::{Arc, Mutex};

use berth_meta::{BlobLinkStore, GcStore, Origin, RepositoryStore, Shutdown, SqliteStore};
use berth_spec::Digest;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Keeps the text of every statement sqlx runs (its summary and, when that is shortened, the
/// whole statement).
#[derive(Clone, Default)]
struct Statements(Arc<Mutex<Vec<String>>>);

/// One event's statement text.
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if matches!(field.name(), "summary" | "db.statement") {
            self.0 += &format!("{value:?}");
        }
    }
}

impl Subscriber for Statements {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "sqlx::query"
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut text = Text(String::new());
        event.record(&mut text);
        self.0.lock().unwrap().push(text.0);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

#[tokio::test]
async fn a_batch_of_blobs_is_noted_with_one_read_and_one_write() {
    let statements = Statements::default();
    tracing::subscriber::set_global_default(statements.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("meta.db")).await.unwrap();
    let origin = Origin { actor: "test".into(), access_key_id: None, request_id: "test".into(), by_replication: false };
    let repo = "gc/batch".parse().unwrap();
    store.create_repository(&origin, &repo, "{}", 1).await.unwrap();
    let blobs: Vec<Digest> = (0..256).map(|i| Digest::sha256_of(format!("blob {i}").as_bytes())).collect();
    for linked in blobs.iter().step_by(2) {
        store.link_blob(&repo, linked, 1, 1).await.unwrap();
    }

    let before = statements.0.lock().unwrap().len();
    let unlinked = store.note_unlinked_blobs(&blobs, 10, false).await.unwrap();
    let ran: Vec<String> = statements.0.lock().unwrap()[before..].to_vec();
    assert_eq!(unlinked.len(), 128);
    let touching = |table: &str| ran.iter().filter(|s| s.contains(table)).count();
    assert_eq!((touching("blob_links"), touching("blob_candidates")), (1, 1), "{ran:#?}");
    assert_eq!(store.due_blob_candidates(11, 0).await.unwrap().len(), 128);
    store.close().await;
}
