//! The ECR operations of the registry service over the real SQLite and filesystem backends, for
//! what the client suites (tests/ecr, tests/clients/ecr-*.sh) cannot reach through the wire:
//! expired download URLs, a signing key shared by two servers, listings that scan past the
//! store's batch size, ECR's untag-then-delete rule next to an index, repository policies
//! (conditions included) taking effect (and going) at once through the service's policy cache,
//! and scanOnPush kept
//! across a restart.

use std::sync::Arc;

use berth_meta::{AccessKeyStatus, CredentialStore, Origin, SettingsUpdate, SqliteStore, UserPolicy, UserRecord};
use berth_registry::lifecycle::RuleAction;
use berth_registry::settings::ResourceTag;
use berth_registry::templates::{AppliedFor, TemplateSettings};
use berth_registry::{
    ImageFilter, ImageId, ImageSelector, MountOutcome, PutImage, Registry, RegistryConfig, RegistryError,
    RepositorySettings, StorageClass, TagStatus, UrlSigningKey,
};
use berth_spec::{Digest, Reference, RepositoryName, Tag};
use berth_storage::FsBlobStore;
use bytes::Bytes;
use futures::StreamExt;

/// A request by the root user, as the planes would describe it.
fn ctx() -> RequestContext {
    as_ctx(root())
}

fn as_ctx(identity: Identity) -> RequestContext {
    RequestContext { identity, ..RequestContext::server("test", "test-request".into()) }
}

fn user(name: &str) -> Identity {
    Identity::User { name: name.into(), access_key_id: format!("AKIA{name}"), via: CredentialKind::SigV4 }
}

fn root() -> Identity {
    Identity::Root { access_key_id: "AKIAROOT".into(), via: CredentialKind::SigV4 }
}

use berth_iam::{CredentialKind, Identity, RequestContext};

/// A registry whose users `ci` and `alice` hold AmazonEC2ContainerRegistryFullAccess, and whose
/// user `ops` holds no policy (only repository policies grant it anything).
async fn open_registry(dir: &std::path::Path, url_signing_key: UrlSigningKey) -> Arc<Registry> {
    let meta = SqliteStore::open(&dir.join("metadata.db")).await.unwrap();
    for user in ["ci", "alice", "ops"] {
        if meta.user_by_name(user).await.unwrap().is_none() {
            let access_key_id = format!("AKIA{user}");
            let record = UserRecord {
                name: user.into(),
                access_key_id,
                secret_ciphertext: vec![],
                created_at: 1,
                key_status: AccessKeyStatus::Active,
            };
            let full_access = UserPolicy { name: berth_iam::managed::FULL_ACCESS.into(), document: None };
            let policies = if user == "ops" { vec![] } else { vec![full_access] };
            meta.create_user(&record, &policies).await.unwrap();
        }
    }
    let blobs = FsBlobStore::open(dir).await.unwrap();
    Registry::new(Arc::new(blobs), Arc::new(meta), RegistryConfig { url_signing_key, ..RegistryConfig::default() })
}

fn name(s: &str) -> RepositoryName {
    s.parse().unwrap()
}

async fn blob(registry: &Registry, repo: &RepositoryName, data: &'static [u8]) -> Digest {
    let digest = Digest::sha256_of(data);
    let body = futures::stream::once(async move { Ok(Bytes::from_static(data)) }).boxed();
    registry.upload_monolithic(&ctx(), repo, &digest, body).await.unwrap()
}

/// An OCI image manifest over `config` and `layer`, made unique by `n`.
fn manifest(config: &Digest, layer: &Digest, n: usize) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":5}}],"annotations":{{"n":"{n}"}}}}"#
    )
}

async fn put(registry: &Registry, repo: &RepositoryName, content: &str, tag: Option<&str>) -> Digest {
    let tag: Option<Tag> = tag.map(|t| t.parse().unwrap());
    let put = PutImage { content: content.as_bytes(), media_type: None, tag: tag.as_ref(), digest: None };
    registry.put_image(&ctx(), repo, put).await.unwrap().0
}

/// Replaces a repository's settings document behind the service's back, as another version of
/// Berth (or a damaged database) might have written it.
async fn write_settings(registry: &Registry, repo: &RepositoryName, document: &str) {
    let store = registry.metadata();
    let expected_version = store.get_repository(repo).await.unwrap().unwrap().settings_version;
    let origin = Origin { actor: "test".into(), access_key_id: None, request_id: "test".into(), by_replication: false };
    let update = SettingsUpdate { settings: document, expected_version, changed: &["test"] };
    store.set_repository_settings(&origin, repo, update).await.unwrap();
}

fn now_secs() -> i64 {
    berth_registry::now_millis() / 1000
}

#[tokio::test]
async fn signed_downloads_expire_and_verify_on_any_server_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = [7; 32];
    let registry = open_registry(dir.path(), UrlSigningKey::from(key)).await;
    let repo = name("team/app");
    registry.create_repository(&ctx(), &repo, &RepositorySettings::default()).await.unwrap();
    let config = blob(&registry, &repo, b"{}").await;
    let layer = blob(&registry, &repo, b"hello").await;
    put(&registry, &repo, &manifest(&config, &layer, 0), Some("v1")).await;

    let expires = now_secs() + 60;
    let signature = registry.sign_layer_download(&ctx(), &repo, &layer, expires).await.unwrap();
    let body = registry.open_signed_layer(&repo, &layer, expires, &signature, None).await.unwrap();
    assert_eq!(body.size, 5);
    // A stored layer's URL may not fill a cache, and that cannot be added to it.
    assert!(!signature.fill);
    let widened = berth_registry::SignedDownload { fill: true, ..signature.clone() };
    assert!(matches!(
        registry.open_signed_layer(&repo, &layer, expires, &widened, None).await,
        Err(RegistryError::Denied(_))
    ));

    let expired = now_secs() - 1;
    let old = registry.sign_layer_download(&ctx(), &repo, &layer, expired).await.unwrap();
    let err = registry.open_signed_layer(&repo, &layer, expired, &old, None).await.err().unwrap();
    assert!(matches!(err, RegistryError::Denied(ref m) if m.contains("expired")), "{err}");
    let other = name("team/other");
    assert!(matches!(
        registry.open_signed_layer(&other, &layer, expires, &signature, None).await,
        Err(RegistryError::Denied(_))
    ));
    assert!(matches!(
        registry.open_signed_layer(&repo, &config, expires, &signature, None).await,
        Err(RegistryError::Denied(_))
    ));

    // A second server (over the same stores) with the same key accepts the URL; one with
    // another key does not.
    let second = open_registry(dir.path(), UrlSigningKey::from(key)).await;
    assert!(second.open_signed_layer(&repo, &layer, expires, &signature, None).await.is_ok());
    let stranger = open_registry(dir.path(), UrlSigningKey::random()).await;
    assert!(matches!(
        stranger.open_signed_layer(&repo, &layer, expires, &signature, None).await,
        Err(RegistryError::Denied(_))
    ));

    // Only layers of images are handed out.
    let orphan = blob(&registry, &repo, b"orphan").await;
    assert!(matches!(
        registry.sign_layer_download(&ctx(), &repo, &orphan, expires).await,
        Err(RegistryError::LayerInaccessible(_))
    ));
    let absent = Digest::sha256_of(b"absent");
    assert!(matches!(
        registry.sign_layer_download(&ctx(), &repo, &absent, expires).await,
        Err(RegistryError::BlobUnknown(_))
    ));
}

#[tokio::test]
async fn filtered_listings_scan_past_the_store_batch() {
    let dir = tempfile::tempdir().unwrap();
    let registry = open_registry(dir.path(), UrlSigningKey::random()).await;
    let repo = name("many");
    registry.create_repository(&ctx(), &repo, &RepositorySettings::default()).await.unwrap();
    let config = blob(&registry, &repo, b"{}").await;
    let layer = blob(&registry, &repo, b"hello").await;
    let mut tagged = Vec::new();
    let mut untagged = Vec::new();
    // Few untagged images spread over several store batches (of 100).
    for n in 0..260 {
        let content = manifest(&config, &layer, n);
        if n % 37 == 0 {
            untagged.push(put(&registry, &repo, &content, None).await);
        } else {
            tagged.push((put(&registry, &repo, &content, Some(&format!("t{n}"))).await, format!("t{n}")));
        }
    }
    untagged.sort();
    tagged.sort();

    let mut seen = Vec::new();
    let mut after: Option<Digest> = None;
    loop {
        let (page, more) = registry
            .list_images(&repo, after.as_ref(), 3, ImageFilter { tags: TagStatus::Untagged, class: None })
            .await
            .unwrap();
        assert!(page.len() <= 3 && page.iter().all(|i| i.tags.is_empty()));
        seen.extend(page.iter().map(|i| i.manifest.digest.clone()));
        after = page.last().map(|i| i.manifest.digest.clone());
        if !more {
            break;
        }
    }
    assert_eq!(seen, untagged);

    let mut pairs = Vec::new();
    let mut after: Option<ImageId> = None;
    loop {
        let (page, more) = registry
            .list_image_ids(&repo, after.as_ref(), 7, ImageFilter { tags: TagStatus::Tagged, class: None })
            .await
            .unwrap();
        assert!(page.len() <= 7);
        pairs.extend(page.iter().map(|id| (id.digest.clone(), id.tag.clone().unwrap())));
        after = page.last().cloned();
        if !more {
            break;
        }
    }
    assert_eq!(pairs, tagged);
    let (all, more) =
        registry.list_image_ids(&repo, None, 1000, ImageFilter { tags: TagStatus::Any, class: None }).await.unwrap();
    assert_eq!((all.len(), more), (260, false));
}

#[tokio::test]
async fn the_last_tag_takes_the_image_and_is_refused_while_an_index_lists_it() {
    let dir = tempfile::tempdir().unwrap();
    let registry = open_registry(dir.path(), UrlSigningKey::random()).await;
    let repo = name("multi");
    registry.create_repository(&ctx(), &repo, &RepositorySettings::default()).await.unwrap();
    let config = blob(&registry, &repo, b"{}").await;
    let layer = blob(&registry, &repo, b"hello").await;
    let child_manifest = manifest(&config, &layer, 1);
    let child = put(&registry, &repo, &child_manifest, Some("child")).await;
    let alone = put(&registry, &repo, &manifest(&config, &layer, 2), Some("alone")).await;
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{child}","size":{}}}]}}"#,
        child_manifest.len()
    );
    let index_digest = put(&registry, &repo, &index, Some("multi")).await;

    let by_tag = |t: &str| ImageSelector::Tag(t.parse().unwrap());
    let results = registry.delete_images(&ctx(), &repo, &[by_tag("child"), by_tag("alone")]).await.unwrap();
    assert!(matches!(&results[0], Err(RegistryError::ManifestReferenced { index }) if index == &index_digest));
    assert!(results[1].is_ok(), "{results:?}");
    let found = registry
        .resolve_images(&repo, &[ImageSelector::Digest(child.clone()), ImageSelector::Digest(alone)], None)
        .await
        .unwrap();
    let child_image = found[0].as_ref().expect("the child stays while the index lists it");
    assert_eq!(child_image.tags, ["child"], "a refused delete changes nothing");
    assert!(matches!(found[1], Err(RegistryError::ManifestUnknown(_))), "the lone image went with its tag");
    let refused = registry.delete_images(&ctx(), &repo, &[ImageSelector::Digest(child.clone())]).await.unwrap();
    assert!(matches!(refused[0], Err(RegistryError::ManifestReferenced { .. })));
    // A second tag can go: the image keeps the other.
    put(&registry, &repo, &child_manifest, Some("child-2")).await;
    let results = registry.delete_images(&ctx(), &repo, &[by_tag("child-2")]).await.unwrap();
    assert!(results[0].is_ok(), "{results:?}");
}

/// Archiving an index archives it with its child; both are refused on pull (by tag and digest,
/// `/v2/`'s and BatchGetImage's paths) yet still listed under ARCHIVED; the child cannot be
/// archived alone while the index is STANDARD; a restore makes everything pull again.
#[tokio::test]
async fn archived_images_are_listed_but_refused_on_pull_until_restored() {
    let dir = tempfile::tempdir().unwrap();
    let registry = open_registry(dir.path(), UrlSigningKey::random()).await;
    let repo = name("archive");
    registry.create_repository(&ctx(), &repo, &RepositorySettings::default()).await.unwrap();
    let config = blob(&registry, &repo, b"{}").await;
    let layer = blob(&registry, &repo, b"hello").await;
    let child_manifest = manifest(&config, &layer, 1);
    let child = put(&registry, &repo, &child_manifest, None).await;
    let index = put(&registry, &repo, &index_of(&child, &child_manifest), Some("v1")).await;
    let tag = ImageSelector::Tag("v1".parse().unwrap());

    let refused = registry
        .update_image_storage_class(&ctx(), &repo, &ImageSelector::Digest(child.clone()), StorageClass::Archive)
        .await;
    assert!(matches!(&refused, Err(RegistryError::ArchiveRefused { index: i }) if *i == index), "{refused:?}");
    let archived = registry.update_image_storage_class(&ctx(), &repo, &tag, StorageClass::Archive).await.unwrap();
    assert_eq!(archived, index);

    for reference in
        [Reference::Tag("v1".parse().unwrap()), Reference::Digest(index.clone()), Reference::Digest(child.clone())]
    {
        let pulled = registry.pull_manifest(&ctx(), &repo, &reference, true).await;
        assert!(matches!(pulled, Err(RegistryError::ImageArchived(_))), "{reference}: {pulled:?}");
    }
    let batch = registry.resolve_images(&repo, std::slice::from_ref(&tag), Some(&ctx())).await.unwrap();
    assert!(matches!(batch[0], Err(RegistryError::ImageArchived(_))), "BatchGetImage refuses it");
    let described = registry.resolve_images(&repo, std::slice::from_ref(&tag), None).await.unwrap();
    assert_eq!(described[0].as_ref().unwrap().manifest.storage_class, StorageClass::Archive, "described still");

    let mut both = vec![index.clone(), child.clone()];
    both.sort();
    assert_eq!(listed(&registry, &repo, Some(StorageClass::Archive)).await, both);
    assert!(listed(&registry, &repo, Some(StorageClass::Standard)).await.is_empty());
    assert_eq!(listed(&registry, &repo, None).await, both);

    // Their layers do not pull by digest either, though the links stay for a restore.
    for digest in [&config, &layer] {
        let pulled = registry.get_blob(&repo, digest, None).await.map(drop);
        assert!(matches!(&pulled, Err(RegistryError::LayerArchived(d)) if d == digest), "{pulled:?}");
        assert_eq!(registry.blob_link(&repo, digest).await.unwrap().needed_by, Some(StorageClass::Archive));
    }
    // Nor does a mount read them into another repository, named as its source or not.
    let other = name("archive-other");
    for from in [Some(&repo), None] {
        let mounted = registry.mount_blob(&ctx(), &other, &layer, from).await.unwrap();
        assert!(matches!(mounted, MountOutcome::Upload(_)), "from {from:?}: an upload instead");
        assert!(matches!(registry.stat_blob(&other, &layer).await, Err(RegistryError::BlobUnknown(_))));
    }

    registry.update_image_storage_class(&ctx(), &repo, &tag, StorageClass::Standard).await.unwrap();
    for reference in [Reference::Tag("v1".parse().unwrap()), Reference::Digest(child.clone())] {
        registry.pull_manifest(&ctx(), &repo, &reference, true).await.expect("restored images pull");
    }
    assert_eq!(listed(&registry, &repo, Some(StorageClass::Standard)).await, both);
    assert_eq!(registry.get_blob(&repo, &layer, None).await.unwrap().size, 5, "restored layers pull");
}

/// A lifecycle `transition` archives what it selects (an index with its untagged child) with the
/// same effect as UpdateImageStorageClass; the preview reports it as a TRANSITION first.
#[tokio::test]
async fn lifecycle_transitions_archive_images_and_their_layers() {
    let dir = tempfile::tempdir().unwrap();
    let registry = open_registry(dir.path(), UrlSigningKey::random()).await;
    let repo = name("team/archive-by-policy");
    registry.create_repository(&ctx(), &repo, &RepositorySettings::default()).await.unwrap();
    let config = blob(&registry, &repo, b"{}").await;
    let old_layer = blob(&registry, &repo, b"old!!").await;
    let new_layer = blob(&registry, &repo, b"new!!").await;
    let child_manifest = manifest(&config, &old_layer, 1);
    let child = put(&registry, &repo, &child_manifest, None).await;
    let old = put(&registry, &repo, &index_of(&child, &child_manifest), Some("v1")).await;
    // "Newest" is by push time in milliseconds: two puts in one would tie.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let new = put(&registry, &repo, &manifest(&config, &new_layer, 2), Some("v2")).await;

    let policy = r#"{"rules":[{"rulePriority":1,"description":"archive all but the newest","selection":{"tagStatus":"tagged","tagPrefixList":["v"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"transition","targetStorageClass":"archive"}}]}"#;
    registry.start_lifecycle_preview(&ctx(), &repo, policy).await.unwrap();
    let preview = registry.lifecycle_preview(&repo).await.unwrap();
    let moving: Vec<_> = preview.results.iter().map(|r| r.digest.clone()).collect();
    let mut expected = vec![old.clone(), child.clone()];
    expected.sort();
    assert_eq!(moving, expected, "the index and its untagged child move; v2 stays (results sorted by digest)");
    assert!(
        preview.results.iter().all(|r| r.action == RuleAction::Transition && r.storage_class == StorageClass::Standard)
    );

    registry.put_lifecycle_policy(&ctx(), &repo, policy).await.unwrap();
    assert_eq!(registry.run_lifecycle_policies().await.unwrap(), 2, "the index and the child it took along");
    let mut both = vec![old.clone(), child.clone()];
    both.sort();
    assert_eq!(listed(&registry, &repo, Some(StorageClass::Archive)).await, both);
    assert_eq!(listed(&registry, &repo, Some(StorageClass::Standard)).await, vec![new.clone()]);
    let pulled = registry.pull_manifest(&ctx(), &repo, &Reference::Tag("v1".parse().unwrap()), true).await;
    assert!(matches!(pulled, Err(RegistryError::ImageArchived(_))), "{pulled:?}");
    assert!(matches!(registry.get_blob(&repo, &old_layer, None).await, Err(RegistryError::LayerArchived(_))));
    // The config is shared with v2, which is STANDARD: it still pulls.
    assert_eq!(registry.get_blob(&repo, &config, None).await.unwrap().size, 2);
    registry.pull_manifest(&ctx(), &repo, &Reference::Tag("v2".parse().unwrap()), true).await.unwrap();
    assert_eq!(registry.run_lifecycle_policies().await.unwrap(), 0, "archived images are not judged again");
}

/// The digests `list_images` shows in one storage class (`None`: all).
async fn listed(registry: &Registry, repo: &RepositoryName, class: Option<StorageClass>) -> Vec<Digest> {
    let filter = ImageFilter { tags: TagStatus::Any, class };
    let (images, _) = registry.list_images(repo, None, 10, filter).await.unwrap();
    images.into_iter().map(|i| i.manifest.digest).collect()
}

fn index_of(child: &Digest, content: &str) -> String {
    index(&[(child, content, "application/vnd.oci.image.manifest.v1+json")])
}

/// An OCI index listing `children` (digest, exact bytes, media type).
fn index(children: &[(&Digest, &str, &str)]) -> String {
    let entries: Vec<String> = children
        .iter()
        .map(|(digest, content, media_type)| {
            format!(r#"{{"mediaType":"{media_type}","digest":"{digest}","size":{}}}"#, content.len())
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
        entries.join(",")
    )
}

#[tokio::test]
async fn lifecycle_runs_delete_nested_indexes_outermost_first_and_record_the_run() {
    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    let dir = tempfile::tempdir().unwrap();
    let registry = open_registry(dir.path(), UrlSigningKey::random()).await;
    let repo = name("team/life");
    registry.create_repository(&ctx(), &repo, &RepositorySettings::default()).await.unwrap();
    let config = blob(&registry, &repo, b"{}").await;
    let layer = blob(&registry, &repo, b"hello").await;
    let child = manifest(&config, &layer, 1);
    let child_digest = put(&registry, &repo, &child, None).await;
    let inner = index(&[(&child_digest, &child, MANIFEST)]);
    let inner_digest = put(&registry, &repo, &inner, None).await;
    let outer = index(&[(&inner_digest, &inner, INDEX)]);
    put(&registry, &repo, &outer, Some("release-1")).await;
    let newest = put(&registry, &repo, &manifest(&config, &layer, 2), Some("release-2")).await;

    let policy = r#"{"rules":[{"rulePriority":1,"description":"keep the newest release","selection":{"tagStatus":"tagged","tagPrefixList":["release"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#;
    assert!(matches!(registry.run_lifecycle_policies().await, Ok(0)), "no policy, nothing expires");
    registry.start_lifecycle_preview(&ctx(), &repo, policy).await.unwrap();
    let preview = registry.lifecycle_preview(&repo).await.unwrap();
    assert_eq!(preview.results.len(), 3, "the release-1 index, the index it lists and that one's child");
    assert!(preview.results.iter().all(|r| r.rule_priority == 1));

    registry.put_lifecycle_policy(&ctx(), &repo, policy).await.unwrap();
    assert_eq!(registry.lifecycle_policy(&repo).await.unwrap().last_evaluated_at, None);
    // The store refuses to delete a manifest an index lists, so this only succeeds in order.
    assert_eq!(registry.run_lifecycle_policies().await.unwrap(), 3);
    let (left, _) =
        registry.list_images(&repo, None, 10, ImageFilter { tags: TagStatus::Any, class: None }).await.unwrap();
    assert_eq!(left.iter().map(|i| i.manifest.digest.clone()).collect::<Vec<_>>(), vec![newest]);
    let evaluated = registry.lifecycle_policy(&repo).await.unwrap().last_evaluated_at.unwrap();
    assert!((berth_registry::now_millis() - evaluated).abs() < 60_000);
    assert_eq!(registry.run_lifecycle_policies().await.unwrap(), 0, "a second run finds nothing more");
}

#[tokio::test]
async fn repository_policies_take_effect_at_once_and_go_with_their_repository() {
    let dir = tempfile::tempdir().unwrap();
    let registry = open_registry(dir.path(), UrlSigningKey::random()).await;
    let repo = name("policy/app");
    let ci = as_ctx(user("ci"));
    let push = ["ecr:InitiateLayerUpload", "ecr:PutImage"];
    registry.authorize(&ci, &repo, &push).await.expect("a missing repository has no policy");
    registry.create_repository(&ctx(), &repo, &RepositorySettings::default()).await.unwrap();
    registry.authorize(&ci, &repo, &push).await.expect("no policy yet (and now cached as such)");

    let deny_ci = r#"{"Statement":[{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::000000000000:user/ci"},"Action":"ecr:PutImage"}]}"#;
    registry.set_repository_policy(&ctx(), &repo, deny_ci, false).await.unwrap();
    let err = registry.authorize(&ci, &repo, &push).await.unwrap_err();
    let RegistryError::AccessDenied { message, explicit: true } = &err else { panic!("{err:?}") };
    assert_eq!(
        message,
        "User: arn:aws:iam::000000000000:user/ci is not authorized to perform: ecr:PutImage on resource: \
         arn:aws:ecr:us-east-1:000000000000:repository/policy/app with an explicit deny in a resource-based policy"
    );
    registry.authorize(&ci, &repo, &["ecr:BatchGetImage"]).await.unwrap();
    registry.authorize(&as_ctx(user("alice")), &repo, &push).await.unwrap();

    // The policy goes with its repository: one created again under the name starts without it.
    registry.delete_repository(&ctx(), &repo, true).await.unwrap();
    registry.create_repository(&ctx(), &repo, &RepositorySettings::default()).await.unwrap();
    registry.authorize(&ci, &repo, &push).await.unwrap();

    // Conditions are evaluated against the request's context: a Deny of plain-HTTP pushes
    // applies to a request without TLS only.
    let conditional = r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":"ecr:PutImage","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}"#;
    registry.set_repository_policy(&ctx(), &repo, conditional, false).await.unwrap();
    let err = registry.authorize(&ci, &repo, &["ecr:PutImage"]).await.unwrap_err();
    assert!(matches!(err, RegistryError::AccessDenied { explicit: true, .. }), "{err:?}");
    let over_tls = RequestContext { secure_transport: true, ..ci.clone() };
    registry.authorize(&over_tls, &repo, &["ecr:PutImage"]).await.unwrap();

    // A stored policy that no longer parses denies everything to everyone but the root (the
    // deny-all standing in for it does not bind the root), who may always repair it.
    let unparsable = r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":"ecr:PutImage","Condition":{"NoSuchOperator":{"aws:username":"x"}}}]}"#;
    let settings = RepositorySettings { repository_policy: Some(unparsable.into()), ..RepositorySettings::default() };
    write_settings(&registry, &repo, &settings.to_json()).await;
    let restarted = open_registry(dir.path(), UrlSigningKey::random()).await;
    let err = restarted.authorize(&ci, &repo, &["ecr:BatchGetImage"]).await.unwrap_err();
    assert!(matches!(err, RegistryError::AccessDenied { explicit: true, .. }), "{err:?}");
    restarted.authorize(&ctx(), &repo, &["ecr:BatchGetImage", "ecr:DeleteRepositoryPolicy"]).await.unwrap();
    restarted.delete_repository_policy(&ctx(), &repo).await.unwrap();
    restarted.authorize(&ci, &repo, &["ecr:BatchGetImage"]).await.unwrap();
}

#[tokio::test]
async fn a_repository_policy_that_locks_its_setter_out_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let registry = open_registry(dir.path(), UrlSigningKey::random()).await;
    let repo = name("policy/locked");
    registry.create_repository(&ctx(), &repo, &RepositorySettings::default()).await.unwrap();
    let ops = as_ctx(user("ops"));
    let allow_ops = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/ops"},"Action":"ecr:*"}]}"#;
    registry.set_repository_policy(&ctx(), &repo, allow_ops, false).await.unwrap();

    // Explicitly denied, or no longer allowed: either way ops could not set a policy again.
    let deny_setting = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/ops"},"Action":"ecr:*"},{"Effect":"Deny","Principal":"*","Action":"ecr:SetRepositoryPolicy"}]}"#;
    let pull_only = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/ops"},"Action":"ecr:BatchGetImage"}]}"#;
    for locking in [deny_setting, pull_only] {
        let err = registry.set_repository_policy(&ops, &repo, locking, false).await.unwrap_err();
        let RegistryError::SettingInvalid { member: "force", reason } = &err else { panic!("{err:?}") };
        assert!(reason.contains("set force"), "{reason}");
        assert_eq!(registry.repository_policy(&repo).await.unwrap(), allow_ops, "nothing changed");
    }
    // A policy that keeps ops in needs no force; the root is never locked out.
    let keeps_ops = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/ops"},"Action":["ecr:SetRepositoryPolicy","ecr:BatchGetImage"]}]}"#;
    registry.set_repository_policy(&ops, &repo, keeps_ops, false).await.unwrap();
    registry.set_repository_policy(&ctx(), &repo, deny_setting, false).await.unwrap();
    registry.set_repository_policy(&ctx(), &repo, keeps_ops, false).await.unwrap();

    registry.set_repository_policy(&ops, &repo, deny_setting, true).await.unwrap();
    assert_eq!(registry.repository_policy(&repo).await.unwrap(), deny_setting);
    let err = registry.authorize(&ops, &repo, &["ecr:SetRepositoryPolicy"]).await.unwrap_err();
    assert!(matches!(err, RegistryError::AccessDenied { explicit: true, .. }), "{err:?}");
}

/// Every implicit creation (a push, a pull-through fill, a replication) refuses a name ECR's API
/// could not manage; only a ROOT cache rule or a push could ask for one.
#[tokio::test]
async fn no_repository_is_created_implicitly_under_two_characters() {
    let dir = tempfile::tempdir().unwrap();
    let registry = open_registry(dir.path(), UrlSigningKey::random()).await;
    for purpose in [AppliedFor::CreateOnPush, AppliedFor::PullThroughCache, AppliedFor::Replication] {
        let err = registry.create_implicitly(&ctx(), &name("z"), purpose).await.unwrap_err();
        assert!(matches!(&err, RegistryError::NameInvalid(m) if m.contains("shorter than 2")), "{err:?}");
    }
    assert!(registry.list_repositories(None, 10).await.unwrap().0.is_empty());
    registry.create_implicitly(&ctx(), &name("zz"), AppliedFor::PullThroughCache).await.unwrap();
}

#[tokio::test]
async fn a_principal_naming_no_user_or_a_user_in_another_case_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let registry = open_registry(dir.path(), UrlSigningKey::random()).await;
    let repo = name("policy/case");
    registry.create_repository(&ctx(), &repo, &RepositorySettings::default()).await.unwrap();
    let deny = |user: &str| {
        format!(
            r#"{{"Statement":[{{"Effect":"Deny","Principal":{{"AWS":"arn:aws:iam::000000000000:user/{user}"}},"Action":"ecr:*"}}]}}"#
        )
    };
    // `CI` could never match: the user is `ci`, and no `CI` can be created beside it.
    let err = registry.set_repository_policy(&ctx(), &repo, &deny("CI"), false).await.unwrap_err();
    let RegistryError::PolicyInvalid { reason, .. } = &err else { panic!("{err:?}") };
    assert!(reason.contains("user/CI") && reason.contains(r#""ci""#), "{reason}");
    assert!(registry.repository_policy(&repo).await.is_err(), "nothing set");
    let err = registry.put_registry_policy(&deny("Alice")).await.unwrap_err();
    assert!(matches!(err, RegistryError::PolicyInvalid { .. }), "{err:?}");
    assert!(registry.registry_policy().await.is_err(), "nothing set");
    // A creation template would set the policy on the repositories it makes: checked alike.
    let template = TemplateSettings {
        repository_policy: Some(deny("CI")),
        applied_for: vec![AppliedFor::CreateOnPush],
        ..TemplateSettings::default()
    };
    let err = registry.create_template(&ctx(), "case", template.clone()).await.unwrap_err();
    assert!(matches!(err, RegistryError::PolicyInvalid { .. }), "{err:?}");
    // A name no user has is refused too (ECR: "Principal not found"), but by a template only
    // where it differs in case: a template's policy may name a user created later.
    let err = registry.set_repository_policy(&ctx(), &repo, &deny("later"), false).await.unwrap_err();
    assert!(matches!(&err, RegistryError::PrincipalNotFound { user, .. } if user == "later"), "{err:?}");
    let err = registry.put_registry_policy(&deny("later")).await.unwrap_err();
    assert!(matches!(&err, RegistryError::PrincipalNotFound { user, .. } if user == "later"), "{err:?}");
    assert!(registry.registry_policy().await.is_err(), "nothing set");
    registry
        .create_template(
            &ctx(),
            "later",
            TemplateSettings { repository_policy: Some(deny("later")), ..template.clone() },
        )
        .await
        .unwrap();
    // The exact name is taken.
    registry.set_repository_policy(&ctx(), &repo, &deny("ci"), false).await.unwrap();
    registry.put_registry_policy(&deny("alice")).await.unwrap();
    registry
        .create_template(&ctx(), "case", TemplateSettings { repository_policy: Some(deny("ci")), ..template })
        .await
        .unwrap();
}

#[tokio::test]
async fn scan_on_push_is_stored_with_the_other_settings_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let repo = name("scan/app");
    {
        let registry = open_registry(dir.path(), UrlSigningKey::random()).await;
        registry.create_repository(&ctx(), &repo, &RepositorySettings::default()).await.unwrap();
        let team = ResourceTag { key: "team".into(), value: "web".into() };
        registry.tag_repository(&ctx(), &repo, &[team]).await.unwrap();
        let info = registry.set_scan_on_push(&ctx(), &repo, true).await.unwrap();
        assert!(info.settings.scan_on_push);
        let err = registry.set_scan_on_push(&ctx(), &name("scan/none"), true).await.unwrap_err();
        assert!(matches!(err, RegistryError::NameUnknown(ref n) if n == "scan/none"), "{err:?}");
    }
    let registry = open_registry(dir.path(), UrlSigningKey::random()).await;
    let settings = registry.describe_repository(&repo).await.unwrap().settings;
    assert!(settings.scan_on_push);
    assert_eq!(settings.resource_tags.len(), 1, "other settings are kept");
    registry.set_scan_on_push(&ctx(), &repo, false).await.unwrap();
    assert!(!registry.describe_repository(&repo).await.unwrap().settings.scan_on_push);
}

/// A preview is judged once per start: its pages slice that one evaluation (so reading n results
/// page by page costs n, not n²), an image deleted afterwards stays in it as a snapshot, and the
/// next start judges afresh.
#[tokio::test]
async fn a_lifecycle_preview_is_judged_once_per_start() {
    let dir = tempfile::tempdir().unwrap();
    let registry = open_registry(dir.path(), UrlSigningKey::random()).await;
    let repo = name("team/preview-snapshot");
    registry.create_repository(&ctx(), &repo, &RepositorySettings::default()).await.unwrap();
    let config = blob(&registry, &repo, b"{}").await;
    let layer = blob(&registry, &repo, b"layer").await;
    for n in 1..=3 {
        put(&registry, &repo, &manifest(&config, &layer, n), Some(&format!("v{n}"))).await;
    }
    let policy = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPrefixList":["v"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#;
    registry.start_lifecycle_preview(&ctx(), &repo, policy).await.unwrap();
    let first = registry.lifecycle_preview(&repo).await.unwrap();
    assert_eq!(first.results.len(), 2, "all but the newest v* image expire");
    let gone = first.results[0].digest.clone();
    registry.delete_manifest(&ctx(), &repo, &Reference::Digest(gone.clone())).await.unwrap();
    let again = registry.lifecycle_preview(&repo).await.unwrap();
    assert!(Arc::ptr_eq(&first, &again), "the second read slices the first evaluation");

    registry.start_lifecycle_preview(&ctx(), &repo, policy).await.unwrap();
    let fresh = registry.lifecycle_preview(&repo).await.unwrap();
    assert_eq!(fresh.results.len(), 1, "a new start judges the two images left");
    assert!(fresh.results.iter().all(|r| r.digest != gone));
}

/// AWS grants `GetAuthorizationToken` and `CreatePullThroughCacheRule` through identity
/// policies only: a registry policy's Allow gives a user without one neither (its Deny binds),
/// while the repository actions it allows are granted (the V2 scope).
#[tokio::test]
async fn a_registry_policy_grants_no_token_and_no_cache_rules() {
    let dir = tempfile::tempdir().unwrap();
    let registry = open_registry(dir.path(), UrlSigningKey::random()).await;
    let repo = name("team/app");
    registry.create_repository(&ctx(), &repo, &RepositorySettings::default()).await.unwrap();
    let allow_ops = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/ops"},"Action":["ecr:GetAuthorizationToken","ecr:CreatePullThroughCacheRule","ecr:BatchGetImage"],"Resource":"*"}]}"#;
    registry.put_registry_policy(allow_ops).await.unwrap();
    let ops = as_ctx(user("ops"));
    let authorizer = registry.authorizer();
    for action in ["ecr:GetAuthorizationToken", "ecr:CreatePullThroughCacheRule"] {
        let err = authorizer.authorize(&ops, &[action], berth_registry::Resource::Registry).await.unwrap_err();
        assert!(matches!(err, RegistryError::AccessDenied { explicit: false, .. }), "{action}: {err:?}");
    }
    registry.authorize(&ops, &repo, &["ecr:BatchGetImage"]).await.expect("a repository action the policy allows");

    let ci = as_ctx(user("ci"));
    authorizer.authorize(&ci, &["ecr:GetAuthorizationToken"], berth_registry::Resource::Registry).await.unwrap();
    let deny_ci = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::000000000000:user/ci"},"Action":"ecr:GetAuthorizationToken","Resource":"*"}]}"#;
    registry.put_registry_policy(deny_ci).await.unwrap();
    let err = authorizer.authorize(&ci, &["ecr:GetAuthorizationToken"], berth_registry::Resource::Registry).await;
    assert!(matches!(err, Err(RegistryError::AccessDenied { explicit: true, .. })), "{err:?}");
}

/// One repository whose lifecycle run fails (here a stored policy that no longer parses) does
/// not stop the others, and the run reports the failure instead of success.
#[tokio::test]
async fn a_failed_repository_fails_the_lifecycle_run_after_the_others_ran() {
    let dir = tempfile::tempdir().unwrap();
    let registry = open_registry(dir.path(), UrlSigningKey::random()).await;
    let (broken, fine) = (name("a/broken"), name("b/fine"));
    for repo in [&broken, &fine] {
        registry.create_repository(&ctx(), repo, &RepositorySettings::default()).await.unwrap();
    }
    let config = blob(&registry, &fine, b"{}").await;
    let layer = blob(&registry, &fine, b"hello").await;
    put(&registry, &fine, &manifest(&config, &layer, 1), None).await;
    put(&registry, &fine, &manifest(&config, &layer, 2), None).await;
    let expire_untagged = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#;
    registry.put_lifecycle_policy(&ctx(), &fine, expire_untagged).await.unwrap();
    let unparsable =
        RepositorySettings { lifecycle_policy: Some("{\"rules\":[]}".into()), ..RepositorySettings::default() };
    write_settings(&registry, &broken, &unparsable.to_json()).await;

    let err = registry.run_lifecycle_policies().await.unwrap_err().to_string();
    assert!(err.contains("the lifecycle policy of a/broken failed"), "{err}");
    let (left, _) =
        registry.list_images(&fine, None, 10, ImageFilter { tags: TagStatus::Any, class: None }).await.unwrap();
    assert_eq!(left.len(), 1, "the other repository's policy ran: {left:?}");
}
