//! Changes as the service makes them, over the real backends: every change leaves its events
//! with who made it and in which request; repository settings that cannot be read are neither
//! relied on nor overwritten; settings updates on two servers sharing PostgreSQL never undo each
//! other; descriptor sizes are checked against the blobs; a blob a manifest needs cannot be
//! deleted.

use std::sync::Arc;
use std::time::Duration;

use berth_iam::{CredentialKind, Identity, RequestContext};
use berth_meta::{
    AccessKeyStatus, CredentialStore, EventKind, Origin, PostgresStore, SettingsUpdate, SqliteStore, UserPolicy,
    UserRecord,
};
use berth_registry::events::EventLog;
use berth_registry::settings::ResourceTag;
use berth_registry::{PutImage, Registry, RegistryConfig, RegistryError, RepositorySettings};
use berth_spec::{Digest, Reference, RepositoryName};
use berth_storage::FsBlobStore;
use bytes::Bytes;
use futures::StreamExt;

const IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";

const ALLOW_ALL: &str = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr:*"}]}"#;

fn user_ctx(name: &str, request_id: &str) -> RequestContext {
    let identity =
        Identity::User { name: name.into(), access_key_id: format!("AKIA{name}"), via: CredentialKind::SigV4 };
    RequestContext { identity, ..RequestContext::server("test", request_id.into()) }
}

fn root() -> RequestContext {
    let identity = Identity::Root { access_key_id: "AKIAROOT".into(), via: CredentialKind::SigV4 };
    RequestContext { identity, ..RequestContext::server("test", "root-request".into()) }
}

fn name(s: &str) -> RepositoryName {
    s.parse().unwrap()
}

/// A registry whose users `alice` and `ci` hold AmazonEC2ContainerRegistryFullAccess.
async fn sqlite_registry(dir: &std::path::Path) -> Arc<Registry> {
    let meta = SqliteStore::open(&dir.join("metadata.db")).await.unwrap();
    for user in ["alice", "ci"] {
        if meta.user_by_name(user).await.unwrap().is_none() {
            let record = UserRecord {
                name: user.into(),
                access_key_id: format!("AKIA{user}"),
                secret_ciphertext: vec![],
                created_at: 1,
                key_status: AccessKeyStatus::Active,
            };
            let full_access = UserPolicy { name: berth_iam::managed::FULL_ACCESS.into(), document: None };
            meta.create_user(&record, &[full_access]).await.unwrap();
        }
    }
    let blobs = FsBlobStore::open(dir).await.unwrap();
    Registry::new(Arc::new(blobs), Arc::new(meta), RegistryConfig::default())
}

async fn upload(registry: &Registry, ctx: &RequestContext, repo: &RepositoryName, data: &'static [u8]) -> Digest {
    let digest = Digest::sha256_of(data);
    let body = futures::stream::once(async move { Ok(Bytes::from_static(data)) }).boxed();
    registry.upload_monolithic(ctx, repo, &digest, body).await.unwrap()
}

/// An image manifest over `config` and `layer` as their descriptors state them, made unique by `n`.
fn manifest(config: &Digest, layer: &Digest, layer_size: u64, n: usize) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{IMAGE}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":{layer_size}}}],"annotations":{{"n":"{n}"}}}}"#
    )
}

async fn push(registry: &Registry, ctx: &RequestContext, repo: &RepositoryName, content: &str, tag: &str) -> Digest {
    let reference = Reference::Tag(tag.parse().unwrap());
    registry.put_manifest(ctx, repo, &reference, Some(IMAGE), content.as_bytes()).await.unwrap().digest
}

#[tokio::test]
async fn changes_record_their_events_with_the_caller_and_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let registry = sqlite_registry(dir.path()).await;
    let log = EventLog::new(registry.metadata().clone());
    assert!(log.register("audit").await.unwrap());
    let (alice, repo) = (user_ctx("alice", "push-1"), name("team/app"));

    // Create-on-push, a tagged image, a repository policy, then lifecycle expiry.
    let config = upload(&registry, &alice, &repo, b"{}").await;
    let layer = upload(&registry, &alice, &repo, b"layer").await;
    let first = push(&registry, &alice, &repo, &manifest(&config, &layer, 5, 1), "v1").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = push(&registry, &alice, &repo, &manifest(&config, &layer, 5, 2), "v1").await;
    registry.set_repository_policy(&root(), &repo, ALLOW_ALL, false).await.unwrap();
    let keep_newest = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#;
    registry.put_lifecycle_policy(&root(), &repo, keep_newest).await.unwrap();
    assert_eq!(registry.run_lifecycle_policies().await.unwrap(), 1);

    let claim = log.claim("audit", 100, Duration::from_secs(60)).await.unwrap();
    let events: Vec<_> = claim.events.iter().map(|c| &c.event).collect();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    use EventKind::*;
    assert_eq!(
        kinds,
        [
            RepositoryCreated,
            ManifestPushed,
            TagSet,
            ManifestPushed,
            TagSet,
            SettingsChanged,
            SettingsChanged,
            ManifestDeleted,
            SettingsChanged
        ]
    );
    for event in &events[..5] {
        assert_eq!(event.actor, "arn:aws:iam::000000000000:user/alice");
        assert_eq!((event.access_key_id.as_deref(), event.request_id.as_str()), (Some("AKIAalice"), "push-1"));
    }
    assert_eq!((events[4].digest.as_ref(), events[4].previous_digest.as_ref()), (Some(&second), Some(&first)));
    assert_eq!(events[5].actor, "arn:aws:iam::000000000000:root");
    assert_eq!(events[5].detail.as_deref(), Some(r#"{"changed":["repositoryPolicy"]}"#));
    assert_eq!(events[6].detail.as_deref(), Some(r#"{"changed":["lifecyclePolicy"]}"#));
    assert_eq!((events[7].actor.as_str(), events[7].digest.as_ref()), ("berth:lifecycle", Some(&first)));
    assert_eq!(events[8].detail.as_deref(), Some(r#"{"changed":["lifecycleEvaluatedAt"]}"#));
    assert_eq!(events[7].request_id, events[8].request_id, "one lifecycle run, one request id");
    assert_eq!(log.ack(&claim, &claim.ids()).await.unwrap(), 9);

    // A change that changes nothing records nothing.
    registry.untag_repository(&root(), &repo, &["absent".into()]).await.unwrap();
    assert!(log.claim("audit", 100, Duration::from_secs(60)).await.unwrap().events.is_empty());
}

fn unreadable_error<T>(result: Result<T, RegistryError>) -> bool {
    matches!(result, Err(RegistryError::SettingsUnreadable { .. }))
}

/// Replaces a repository's settings document behind the service's back, as a newer version of
/// Berth (or a damaged database) might have written it.
async fn write_settings(registry: &Registry, repo: &RepositoryName, document: &str) {
    let store = registry.metadata();
    let expected_version = store.get_repository(repo).await.unwrap().unwrap().settings_version;
    let origin = Origin { actor: "test".into(), access_key_id: None, request_id: "test".into(), by_replication: false };
    let update = SettingsUpdate { settings: document, expected_version, changed: &["test"] };
    store.set_repository_settings(&origin, repo, update).await.unwrap();
}

#[tokio::test]
async fn unreadable_settings_are_neither_relied_on_nor_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let registry = sqlite_registry(dir.path()).await;
    let repo = name("team/locked");
    let settings = RepositorySettings {
        image_tag_mutability: berth_registry::settings::TagMutability::Immutable,
        ..RepositorySettings::default()
    };
    registry.create_repository(&root(), &repo, &settings).await.unwrap();
    let config = upload(&registry, &root(), &repo, b"{}").await;
    let layer = upload(&registry, &root(), &repo, b"layer").await;
    push(&registry, &root(), &repo, &manifest(&config, &layer, 5, 1), "release").await;
    // A mode this version does not know: the document cannot be read as a whole.
    let unreadable = r#"{"imageTagMutability":"IMMUTABLE_SOMETIMES","repositoryPolicy":"{}"}"#;
    write_settings(&registry, &repo, unreadable).await;
    let restarted = sqlite_registry(dir.path()).await;

    // Not mutable by default: the immutable tag does not move.
    let moved = manifest(&config, &layer, 5, 2);
    let reference = Reference::Tag("release".parse().unwrap());
    assert!(unreadable_error(restarted.put_manifest(&root(), &repo, &reference, Some(IMAGE), moved.as_bytes()).await));
    let tag = "release".parse().unwrap();
    let put = PutImage { content: moved.as_bytes(), media_type: Some(IMAGE), tag: Some(&tag), digest: None };
    assert!(unreadable_error(restarted.put_image(&root(), &repo, put).await));
    // No policy by default either: denied like an unenforceable policy, but for the root's repair.
    let denied = restarted.authorize(&user_ctx("alice", "r"), &repo, &["ecr:BatchGetImage"]).await;
    assert!(matches!(denied, Err(RegistryError::AccessDenied { .. })), "{denied:?}");
    assert!(restarted.authorize(&user_ctx("ci", "test"), &repo, &["ecr:PutImage"]).await.is_err());
    restarted.authorize(&root(), &repo, &["ecr:PutImage"]).await.unwrap();
    restarted.authorize(&root(), &repo, &["ecr:SetRepositoryPolicy"]).await.unwrap();

    // No write replaces the document, lifecycle's included.
    let tags = [ResourceTag { key: "team".into(), value: "web".into() }];
    assert!(unreadable_error(restarted.tag_repository(&root(), &repo, &tags).await));
    assert!(unreadable_error(restarted.set_repository_policy(&root(), &repo, ALLOW_ALL, false).await));
    assert!(unreadable_error(restarted.delete_repository(&root(), &repo, true).await));
    assert_eq!(restarted.run_lifecycle_policies().await.unwrap(), 0);
    let stored = restarted.metadata().get_repository(&repo).await.unwrap().unwrap();
    assert_eq!(stored.settings, unreadable, "the document is untouched");
    assert_eq!(restarted.catalog(&root(), None, None).await.unwrap().0, ["team/locked"], "still listed by name");
}

#[tokio::test]
async fn descriptor_sizes_must_be_the_blob_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let registry = sqlite_registry(dir.path()).await;
    let repo = name("team/sizes");
    registry.create_repository(&root(), &repo, &RepositorySettings::default()).await.unwrap();
    let config = upload(&registry, &root(), &repo, b"{}").await;
    let layer = upload(&registry, &root(), &repo, &[7; 1000]).await;
    let lying = manifest(&config, &layer, 0, 1);
    let reference = Reference::Tag("liar".parse().unwrap());
    let err = registry.put_manifest(&root(), &repo, &reference, Some(IMAGE), lying.as_bytes()).await.unwrap_err();
    assert!(matches!(&err, RegistryError::ManifestInvalid(m) if m.contains("1000")), "{err:?}");
    let put = PutImage { content: lying.as_bytes(), media_type: Some(IMAGE), tag: None, digest: None };
    let err = registry.put_image(&root(), &repo, put).await.unwrap_err();
    assert!(matches!(err, RegistryError::ManifestInvalid(_)), "{err:?}");
    assert!(registry.metadata().list_images(&repo, None, 10).await.unwrap().is_empty(), "nothing stored");
    push(&registry, &root(), &repo, &manifest(&config, &layer, 1000, 1), "honest").await;
}

#[tokio::test]
async fn a_blob_a_manifest_needs_cannot_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let registry = sqlite_registry(dir.path()).await;
    let repo = name("team/blobs");
    let config = upload(&registry, &root(), &repo, b"{}").await;
    let layer = upload(&registry, &root(), &repo, b"layer").await;
    let image = push(&registry, &root(), &repo, &manifest(&config, &layer, 5, 1), "v1").await;
    let err = registry.delete_blob(&root(), &repo, &layer).await.unwrap_err();
    assert!(matches!(&err, RegistryError::BlobInUse { manifest, .. } if *manifest == image), "{err:?}");
    assert!(err.to_string().contains(image.as_str()), "the message names the manifest: {err}");
    assert_eq!(registry.stat_blob(&repo, &layer).await.unwrap(), 5);
    registry.delete_manifest(&root(), &repo, &Reference::Digest(image)).await.unwrap();
    registry.delete_blob(&root(), &repo, &layer).await.unwrap();
}

/// Two servers on one PostgreSQL database change one repository's settings at once, through
/// every kind of settings write: none undoes another's change.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settings_updates_on_two_servers_are_never_lost() {
    let Ok(url) = std::env::var("BERTH_TEST_POSTGRES_URL") else {
        eprintln!("\n*** SKIPPED: BERTH_TEST_POSTGRES_URL not set; scripts/postgres.sh starts a server ***\n");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut servers = Vec::new();
    for _ in 0..2 {
        let meta = PostgresStore::connect(&url).await.unwrap();
        let blobs = FsBlobStore::open(dir.path()).await.unwrap();
        let config = RegistryConfig { shared_metadata: true, ..RegistryConfig::default() };
        servers.push(Registry::new(Arc::new(blobs), Arc::new(meta), config));
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let repo = name(&format!("race/settings-{nanos}"));
    servers[0].create_repository(&root(), &repo, &RepositorySettings::default()).await.unwrap();
    let lifecycle = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":90},"action":{"type":"expire"}}]}"#;
    servers[1].put_lifecycle_policy(&root(), &repo, lifecycle).await.unwrap();

    const ROUNDS: usize = 12;
    let tag = |server: usize, n: usize| ResourceTag { key: format!("s{server}-{n}"), value: "v".into() };
    let (a, b) = (&servers[0], &servers[1]);
    let repo = &repo;
    let writes_a = async {
        for n in 0..ROUNDS {
            a.tag_repository(&root(), repo, &[tag(0, n)]).await.unwrap();
            a.run_lifecycle_policies().await.unwrap();
        }
    };
    let writes_b = async {
        for n in 0..ROUNDS {
            b.tag_repository(&root(), repo, &[tag(1, n)]).await.unwrap();
            if n == ROUNDS / 2 {
                b.set_repository_policy(&root(), repo, ALLOW_ALL, false).await.unwrap();
                b.set_scan_on_push(&root(), repo, true).await.unwrap();
            }
        }
    };
    tokio::join!(writes_a, writes_b);

    let settings = servers[0].describe_repository(repo).await.unwrap().settings;
    assert_eq!(settings.resource_tags.len(), 2 * ROUNDS, "{:?}", settings.resource_tags);
    assert!(settings.repository_policy.is_some(), "the policy survived lifecycle's writes");
    assert!(settings.scan_on_push);
    assert!(settings.lifecycle_policy.is_some() && settings.lifecycle_evaluated_at.is_some());
    servers[0].delete_repository(&root(), repo, true).await.unwrap();
}
