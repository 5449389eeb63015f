//! Behaviour every [`MetadataStore`] backend must show; each backend's tests call [`run_all`].
//!
//! Every check works in repositories, users and upload ids with names unique to the run, so the
//! suite also runs against a shared database (PostgreSQL) that already holds data.

use std::collections::BTreeSet;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_spec::{Digest, Reference, RepositoryName, Tag};
use futures::future::join_all;

use crate::{
    AccessKeyStatus, BlobLink, Event, EventKind, ManifestRecord, MetaError, MetadataStore, Origin, PutManifest,
    PutOutcome, PutTag, SettingsUpdate, StorageClass, UploadSession, UserPolicy, UserRecord,
};

pub async fn run_all(store: &dyn MetadataStore) {
    repositories(store).await;
    repository_listing(store).await;
    repository_deletion(store).await;
    blob_links(store).await;
    image_manifests(store).await;
    failed_puts_change_nothing(store).await;
    tag_immutability(store).await;
    indexes_and_children(store).await;
    sparse_indexes(store).await;
    manifest_deletion(store).await;
    referrers_and_subjects(store).await;
    tag_listing(store).await;
    images(store).await;
    pulls(store).await;
    storage_classes(store).await;
    upload_sessions(store).await;
    users(store).await;
    console_sign_outs(store).await;
    user_policies(store).await;
    registry_settings(store).await;
    concurrent_pushes_of_one_tag(store).await;
    garbage_collection(store).await;
    blobs_needed_by_manifests(store).await;
    declared_sizes_must_match(store).await;
    tags_move_together(store).await;
    every_change_records_its_events(store).await;
    failed_changes_record_nothing(store).await;
    event_claims(store).await;
    awaited_deliveries(store).await;
    consumer_removal(store).await;
    pull_through_configuration(store).await;
    creation_templates(store).await;
    pull_time_exclusions(store).await;
    connection_pools(store);
}

/// Both pools report themselves, within their limits (the metrics read this).
fn connection_pools(store: &dyn MetadataStore) {
    let pools = store.pools();
    assert_eq!(pools.iter().map(|p| p.name).collect::<Vec<_>>(), ["readers", "writer"]);
    for pool in pools {
        assert!(pool.max >= 1 && pool.open <= pool.max && pool.idle <= pool.open, "{pool:?}");
    }
}

/// A name unique to this run and call, usable as a repository name, tag or user name.
fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn repo_name(s: &str) -> RepositoryName {
    s.parse().unwrap()
}

fn tag(s: &str) -> Tag {
    s.parse().unwrap()
}

fn by_tag(s: &str) -> Reference {
    Reference::Tag(tag(s))
}

fn by_digest(d: &Digest) -> Reference {
    Reference::Digest(d.clone())
}

fn blob(s: &str) -> Digest {
    Digest::sha256_of(s.as_bytes())
}

async fn new_repo(store: &dyn MetadataStore, prefix: &str) -> RepositoryName {
    let name = repo_name(&unique(prefix));
    store.create_repository(&ORIGIN, &name, "{}", 1).await.unwrap();
    name
}

/// Manifest bytes and their digest; the store never parses them.
fn manifest_bytes(label: &str) -> (Vec<u8>, Digest) {
    let content = format!("{{\"schemaVersion\":2,\"label\":\"{label}\"}}").into_bytes();
    let digest = Digest::sha256_of(&content);
    (content, digest)
}

const IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn image_put<'a>(
    repo: &'a RepositoryName,
    digest: &'a Digest,
    content: &'a [u8],
    blobs: &'a [(Digest, u64)],
    tag: Option<&'a Tag>,
    now: i64,
) -> PutManifest<'a> {
    PutManifest {
        repo,
        digest,
        media_type: IMAGE,
        content,
        artifact_type: None,
        annotations: None,
        subject: None,
        blobs,
        foreign_blobs: &[],
        children: &[],
        sparse: false,
        tags: tag.map(|tag| PutTag { tag, immutable: false }).into_iter().collect(),
        settings_version: None,
        now,
    }
}

/// The same push with every tag immutable.
fn immutable_tags(put: PutManifest<'_>) -> PutManifest<'_> {
    let tags = put.tags.iter().map(|t| PutTag { immutable: true, ..*t }).collect();
    PutManifest { tags, ..put }
}

/// Who the suite's changes are by.
static ORIGIN: LazyLock<Origin> = LazyLock::new(|| Origin {
    actor: "arn:aws:iam::000000000000:user/suite".into(),
    access_key_id: Some("AKIASUITE".into()),
    request_id: "suite-request".into(),
    by_replication: false,
});

/// Links two blobs and pushes an image made of them, returning its digest.
async fn push_image(
    store: &dyn MetadataStore,
    repo: &RepositoryName,
    label: &str,
    size: u64,
    tag: Option<&Tag>,
) -> Digest {
    let (content, digest) = manifest_bytes(label);
    let blobs = [(blob(&format!("{label}-config")), 10), (blob(&format!("{label}-layer")), size)];
    for (d, s) in &blobs {
        store.link_blob(repo, d, *s, 1).await.unwrap();
    }
    store.put_manifest(&ORIGIN, image_put(repo, &digest, &content, &blobs, tag, 100)).await.unwrap();
    digest
}

/// Pushes an index of `children`, each declared with its stored size (0 when absent).
async fn push_index(
    store: &dyn MetadataStore,
    repo: &RepositoryName,
    label: &str,
    children: &[Digest],
) -> Result<Digest, MetaError> {
    let mut sized = Vec::new();
    for child in children {
        let stored = store.get_manifest(repo, &by_digest(child)).await.unwrap();
        sized.push((child.clone(), stored.map_or(0, |m| m.content.len() as u64)));
    }
    push_index_sized(store, repo, label, &sized).await
}

async fn push_index_sized(
    store: &dyn MetadataStore,
    repo: &RepositoryName,
    label: &str,
    children: &[(Digest, u64)],
) -> Result<Digest, MetaError> {
    let (content, digest) = manifest_bytes(label);
    store
        .put_manifest(
            &ORIGIN,
            PutManifest { media_type: INDEX, children, ..image_put(repo, &digest, &content, &[], None, 200) },
        )
        .await?;
    Ok(digest)
}

async fn repositories(store: &dyn MetadataStore) {
    let name = repo_name(&unique("repos"));
    assert_eq!(store.get_repository(&name).await.unwrap(), None);
    let created = store.create_repository(&ORIGIN, &name, r#"{"mutable":true}"#, 5).await.unwrap();
    assert_eq!(
        (created.name.as_str(), created.created_at, created.settings.as_str()),
        (name.as_str(), 5, r#"{"mutable":true}"#)
    );
    assert_eq!(store.get_repository(&name).await.unwrap(), Some(created.clone()));

    let err = store.create_repository(&ORIGIN, &name, "{}", 6).await.unwrap_err();
    assert!(matches!(&err, MetaError::RepositoryExists(n) if n == name.as_str()), "{err:?}");

    let ensured = store.ensure_repository(&ORIGIN, &name, "{\"other\":1}", 9).await.unwrap();
    assert_eq!(ensured, created, "ensure keeps an existing repository as it is");

    let fresh = repo_name(&unique("ensured"));
    let ensured = store.ensure_repository(&ORIGIN, &fresh, "{\"new\":1}", 9).await.unwrap();
    assert_eq!((ensured.created_at, ensured.settings.as_str()), (9, "{\"new\":1}"));
    assert_eq!(store.get_repository(&fresh).await.unwrap(), Some(ensured));

    // Settings change by compare-and-set: a write based on an older version changes nothing.
    let update = |settings, expected_version| SettingsUpdate { settings, expected_version, changed: &["mutable"] };
    assert_eq!(store.set_repository_settings(&ORIGIN, &name, update("{\"mutable\":false}", 0)).await.unwrap(), 1);
    let updated = store.get_repository(&name).await.unwrap().unwrap();
    assert_eq!(
        (updated.created_at, updated.settings.as_str(), updated.settings_version),
        (5, "{\"mutable\":false}", 1)
    );
    let err = store.set_repository_settings(&ORIGIN, &name, update("{\"stale\":1}", 0)).await.unwrap_err();
    assert!(matches!(&err, MetaError::SettingsConflict(n) if n == name.as_str()), "{err:?}");
    assert_eq!(store.get_repository(&name).await.unwrap(), Some(updated));
    assert_eq!(store.set_repository_settings(&ORIGIN, &name, update("{}", 1)).await.unwrap(), 2);

    let missing = repo_name(&unique("missing"));
    let err = store.set_repository_settings(&ORIGIN, &missing, update("{}", 0)).await.unwrap_err();
    assert!(matches!(&err, MetaError::RepositoryNotFound(n) if n == missing.as_str()), "{err:?}");
    assert_eq!(store.get_repository(&missing).await.unwrap(), None, "a failed update creates nothing");
}

async fn repository_listing(store: &dyn MetadataStore) {
    let prefix = unique("list");
    let names: Vec<String> = ["a", "b", "c"].iter().map(|s| format!("{prefix}/{s}")).collect();
    for n in names.iter().rev() {
        store.create_repository(&ORIGIN, &repo_name(n), "{}", 1).await.unwrap();
    }
    let listed = |page: Vec<crate::Repository>| page.into_iter().map(|r| r.name).collect::<Vec<_>>();

    assert_eq!(listed(store.list_repositories(Some(&prefix), 2).await.unwrap()), names[..2]);
    let next = listed(store.list_repositories(Some(&names[1]), 2).await.unwrap());
    assert_eq!(next[0], names[2]);
    assert!(next.get(1).is_none_or(|n| !n.starts_with(&prefix)), "{next:?}");
    assert_eq!(listed(store.list_repositories(Some(&prefix), 3).await.unwrap()), names, "exact page");
    let after_last = listed(store.list_repositories(Some(&names[2]), 10).await.unwrap());
    assert!(after_last.iter().all(|n| n.as_str() > names[2].as_str() && !n.starts_with(&prefix)), "{after_last:?}");
    assert!(store.list_repositories(Some(&prefix), 0).await.unwrap().is_empty());
    // A cursor with a NUL (PostgreSQL refuses one) lists what comes after its text before it.
    let with_nul = format!("{}\0x", names[0]);
    assert_eq!(listed(store.list_repositories(Some(&with_nul), 2).await.unwrap()), names[1..]);
    assert_eq!(store.list_tags(&repo_name(&names[0]), Some("\0"), None).await.unwrap(), Vec::<String>::new());

    let all = listed(store.list_repositories(None, usize::MAX).await.unwrap());
    let ours: Vec<_> = all.iter().filter(|n| n.starts_with(&prefix)).cloned().collect();
    assert_eq!(ours, names, "an unbounded list from the start holds everything, sorted");
    assert!(all.windows(2).all(|w| w[0] < w[1]), "sorted by name");
}

async fn repository_deletion(store: &dyn MetadataStore) {
    let missing = repo_name(&unique("gone"));
    let err = store.delete_repository(&ORIGIN, &missing, true).await.unwrap_err();
    assert!(matches!(&err, MetaError::RepositoryNotFound(n) if n == missing.as_str()), "{err:?}");

    // Blob links alone do not make a repository non-empty.
    let empty = new_repo(store, "empty").await;
    store.link_blob(&empty, &blob("lonely"), 3, 1).await.unwrap();
    let removed = store.delete_repository(&ORIGIN, &empty, false).await.unwrap();
    assert_eq!(removed.name, empty.as_str());
    assert_eq!(store.get_repository(&empty).await.unwrap(), None);
    assert!(!store.repositories_with_blob(&blob("lonely")).await.unwrap().contains(&empty.to_string()));

    let full = new_repo(store, "full").await;
    let t = tag("v1");
    let label = unique("del-repo-img");
    let image = push_image(store, &full, &label, 20, Some(&t)).await;
    let layer = blob(&format!("{label}-layer"));
    assert_eq!(store.repositories_with_blob(&layer).await.unwrap(), vec![full.to_string()]);
    let index = push_index(store, &full, &unique("del-repo-idx"), std::slice::from_ref(&image)).await.unwrap();
    let upload_id = unique("del-repo-upload");
    store
        .create_upload(&UploadSession { id: upload_id.clone(), repo: full.to_string(), created_at: 1, updated_at: 1 })
        .await
        .unwrap();
    let err = store.delete_repository(&ORIGIN, &full, false).await.unwrap_err();
    assert!(matches!(&err, MetaError::RepositoryNotEmpty(n) if n == full.as_str()), "{err:?}");
    assert!(store.get_manifest(&full, &by_tag("v1")).await.unwrap().is_some(), "refused delete keeps content");

    let removed = store.delete_repository(&ORIGIN, &full, true).await.unwrap();
    assert_eq!(removed.name, full.as_str());
    assert_eq!(store.get_repository(&full).await.unwrap(), None);
    assert_eq!(store.get_upload(&upload_id).await.unwrap(), None, "uploads go with the repository");

    // Recreating the name must not resurrect anything.
    store.create_repository(&ORIGIN, &full, "{}", 2).await.unwrap();
    assert_eq!(store.get_manifest(&full, &by_digest(&image)).await.unwrap(), None);
    assert_eq!(store.get_manifest(&full, &by_digest(&index)).await.unwrap(), None);
    assert_eq!(store.get_manifest(&full, &by_tag("v1")).await.unwrap(), None);
    assert!(store.list_tags(&full, None, None).await.unwrap().is_empty());
    assert!(store.list_images(&full, None, 10).await.unwrap().is_empty());
    assert!(store.parents(&full, &image).await.unwrap().is_empty());
    assert_eq!(store.linked_blob(&full, &layer).await.unwrap(), None);
    assert!(store.repositories_with_blob(&layer).await.unwrap().is_empty(), "blob links go with the repository");
    store.delete_repository(&ORIGIN, &full, false).await.unwrap();
}

async fn blob_links(store: &dyn MetadataStore) {
    let d = blob(&unique("linked"));
    let missing = repo_name(&unique("nolink"));
    let err = store.link_blob(&missing, &d, 1, 1).await.unwrap_err();
    assert!(matches!(&err, MetaError::RepositoryNotFound(n) if n == missing.as_str()), "{err:?}");

    let (first, second) = (new_repo(store, "links-b").await, new_repo(store, "links-a").await);
    assert_eq!(store.linked_blob(&first, &d).await.unwrap(), None);
    assert!(store.repositories_with_blob(&d).await.unwrap().is_empty());
    store.link_blob(&first, &d, 1234, 1).await.unwrap();
    store.link_blob(&first, &d, 1234, 2).await.unwrap();
    assert_eq!(store.linked_blob(&first, &d).await.unwrap(), Some(1234));
    assert_eq!(store.linked_blob(&second, &d).await.unwrap(), None, "links are per repository");
    store.link_blob(&second, &d, 1234, 3).await.unwrap();
    let mut both = vec![first.to_string(), second.to_string()];
    both.sort();
    assert_eq!(store.repositories_with_blob(&d).await.unwrap(), both);

    assert!(store.unlink_blob(&ORIGIN, &first, &d).await.unwrap());
    assert!(!store.unlink_blob(&ORIGIN, &first, &d).await.unwrap());
    assert_eq!(store.linked_blob(&first, &d).await.unwrap(), None);
    assert_eq!(store.repositories_with_blob(&d).await.unwrap(), vec![second.to_string()]);

    let big = blob(&unique("big"));
    store.link_blob(&second, &big, 5 << 40, 1).await.unwrap();
    assert_eq!(store.linked_blob(&second, &big).await.unwrap(), Some(5 << 40), "sizes beyond 32 bits");
}

async fn image_manifests(store: &dyn MetadataStore) {
    let repo = new_repo(store, "images").await;
    let (content, digest) = manifest_bytes(&unique("image"));
    let blobs = [(blob("img-config"), 300), (blob("img-layer-1"), 4000), (blob("img-layer-2"), 50000)];
    for (d, s) in &blobs {
        store.link_blob(&repo, d, *s, 1).await.unwrap();
    }
    let subject = blob("some-subject");
    let latest = tag("latest");
    let put = PutManifest {
        artifact_type: Some("application/vnd.example.config+json"),
        annotations: Some(r#"{"org.opencontainers.image.title":"x"}"#),
        subject: Some(&subject),
        ..image_put(&repo, &digest, &content, &blobs, Some(&latest), 1000)
    };
    let outcome = store.put_manifest(&ORIGIN, put.clone()).await.unwrap();
    assert_eq!(outcome, PutOutcome { manifest_created: true, previous_tag_targets: vec![None], restored: false });

    let expected = ManifestRecord {
        digest: digest.clone(),
        media_type: IMAGE.to_owned(),
        content: content.clone(),
        artifact_type: Some("application/vnd.example.config+json".to_owned()),
        subject: Some(subject.clone()),
        annotations: Some(r#"{"org.opencontainers.image.title":"x"}"#.to_owned()),
        image_size: 54300,
        pushed_at: 1000,
        last_pulled_at: None,
        storage_class: StorageClass::Standard,
        last_archived_at: None,
        last_activated_at: None,
    };
    assert_eq!(store.get_manifest(&repo, &by_tag("latest")).await.unwrap(), Some(expected.clone()));
    assert_eq!(store.get_manifest(&repo, &by_digest(&digest)).await.unwrap(), Some(expected.clone()));
    assert_eq!(store.get_manifest(&repo, &by_tag("other")).await.unwrap(), None);
    let elsewhere = new_repo(store, "images-elsewhere").await;
    assert_eq!(
        store.get_manifest(&elsewhere, &by_digest(&digest)).await.unwrap(),
        None,
        "manifests are per repository"
    );

    // Re-pushing the same bytes later keeps the first push time.
    let again = store.put_manifest(&ORIGIN, PutManifest { now: 2000, ..put.clone() }).await.unwrap();
    assert_eq!(
        again,
        PutOutcome { manifest_created: false, previous_tag_targets: vec![Some(digest.clone())], restored: false }
    );
    assert_eq!(store.get_manifest(&repo, &by_digest(&digest)).await.unwrap(), Some(expected.clone()));

    // Re-pushing under a new tag adds the tag only.
    let stable = tag("stable");
    let outcome = store
        .put_manifest(
            &ORIGIN,
            PutManifest { tags: vec![PutTag { tag: &stable, immutable: false }], now: 3000, ..put.clone() },
        )
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome { manifest_created: false, previous_tag_targets: vec![None], restored: false });
    assert_eq!(store.get_manifest(&repo, &by_tag("stable")).await.unwrap(), Some(expected.clone()));

    // Moving a tag reports where it pointed; the old manifest stays reachable by digest.
    let (content2, digest2) = manifest_bytes(&unique("image2"));
    let outcome = store
        .put_manifest(&ORIGIN, image_put(&repo, &digest2, &content2, &blobs[..1], Some(&latest), 4000))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        PutOutcome { manifest_created: true, previous_tag_targets: vec![Some(digest.clone())], restored: false }
    );
    let moved = store.get_manifest(&repo, &by_tag("latest")).await.unwrap().unwrap();
    assert_eq!(
        (moved.digest, moved.image_size, moved.artifact_type, moved.subject),
        (digest2.clone(), 300, None, None)
    );
    assert_eq!(store.get_manifest(&repo, &by_digest(&digest)).await.unwrap(), Some(expected));

    // A manifest with no blobs (e.g. an empty artifact) is fine and has size 0.
    let (content3, digest3) = manifest_bytes(&unique("image3"));
    store.put_manifest(&ORIGIN, image_put(&repo, &digest3, &content3, &[], None, 5000)).await.unwrap();
    assert_eq!(store.get_manifest(&repo, &by_digest(&digest3)).await.unwrap().unwrap().image_size, 0);
}

async fn failed_puts_change_nothing(store: &dyn MetadataStore) {
    let missing = repo_name(&unique("noput"));
    let (content, digest) = manifest_bytes(&unique("orphan"));
    let t = tag("t");
    let err = store.put_manifest(&ORIGIN, image_put(&missing, &digest, &content, &[], Some(&t), 1)).await.unwrap_err();
    assert!(matches!(&err, MetaError::RepositoryNotFound(n) if n == missing.as_str()), "{err:?}");
    assert_eq!(store.get_repository(&missing).await.unwrap(), None, "put_manifest does not create repositories");

    let repo = new_repo(store, "failing").await;
    let present = blob(&unique("present"));
    let (absent1, absent2) = (blob(&unique("absent1")), blob(&unique("absent2")));
    store.link_blob(&repo, &present, 10, 1).await.unwrap();
    let foreign = new_repo(store, "failing-foreign").await;
    store.link_blob(&foreign, &absent1, 10, 1).await.unwrap();
    let blobs = [(present.clone(), 10), (absent1.clone(), 20), (absent2.clone(), 30)];
    let err = store.put_manifest(&ORIGIN, image_put(&repo, &digest, &content, &blobs, Some(&t), 1)).await.unwrap_err();
    assert!(
        matches!(&err, MetaError::BlobsUnknown(d) if *d == [absent1.clone(), absent2]),
        "every missing blob, even one linked elsewhere: {err:?}"
    );
    assert_eq!(store.get_manifest(&repo, &by_digest(&digest)).await.unwrap(), None);
    assert!(store.list_tags(&repo, None, None).await.unwrap().is_empty(), "no tag from a failed put");

    let ghost = manifest_bytes(&unique("ghost")).1;
    let err = push_index(store, &repo, &unique("bad-index"), std::slice::from_ref(&ghost)).await.unwrap_err();
    assert!(matches!(&err, MetaError::ManifestUnknown(d) if *d == ghost), "{err:?}");
}

async fn tag_immutability(store: &dyn MetadataStore) {
    let repo = new_repo(store, "immutable").await;
    let release = tag("release");
    let first = push_image(store, &repo, &unique("imm1"), 1, Some(&release)).await;
    let (content, second) = manifest_bytes(&unique("imm2"));
    let immutable = |digest, tag| immutable_tags(image_put(&repo, digest, &content, &[], tag, 50));

    let err = store.put_manifest(&ORIGIN, immutable(&second, Some(&release))).await.unwrap_err();
    match &err {
        MetaError::TagImmutable { tag, current, .. } => assert_eq!((tag.as_str(), current), ("release", &first)),
        other => panic!("expected TagImmutable, got {other:?}"),
    }
    assert_eq!(
        store.get_manifest(&repo, &by_digest(&second)).await.unwrap(),
        None,
        "the refused manifest is not stored"
    );
    assert_eq!(store.get_manifest(&repo, &by_tag("release")).await.unwrap().unwrap().digest, first);

    // Pushing without a tag, with a new tag, or the same digest under the tag is allowed.
    assert!(store.put_manifest(&ORIGIN, immutable(&second, None)).await.unwrap().manifest_created);
    let fresh = tag("fresh");
    assert_eq!(
        store.put_manifest(&ORIGIN, immutable(&second, Some(&fresh))).await.unwrap().previous_tag_targets,
        vec![None]
    );
    let first_content = store.get_manifest(&repo, &by_digest(&first)).await.unwrap().unwrap().content;
    let same = immutable_tags(image_put(&repo, &first, &first_content, &[], Some(&release), 60));
    assert_eq!(
        store.put_manifest(&ORIGIN, same).await.unwrap(),
        PutOutcome { manifest_created: false, previous_tag_targets: vec![Some(first.clone())], restored: false }
    );

    // A push whose tags were judged by settings changed since stores nothing: the caller judges
    // them again (a push in flight must not move a tag made immutable meanwhile).
    let version = store.get_repository(&repo).await.unwrap().unwrap().settings_version;
    let update = SettingsUpdate { settings: "{}", expected_version: version, changed: &["imageTagMutability"] };
    store.set_repository_settings(&ORIGIN, &repo, update).await.unwrap();
    let stale =
        PutManifest { settings_version: Some(version), ..image_put(&repo, &second, &content, &[], Some(&release), 65) };
    let err = store.put_manifest(&ORIGIN, stale.clone()).await.unwrap_err();
    assert!(matches!(&err, MetaError::SettingsConflict(n) if n == repo.as_str()), "{err:?}");
    assert_eq!(store.get_manifest(&repo, &by_tag("release")).await.unwrap().unwrap().digest, first);

    // Mutable pushes may move it.
    let current = PutManifest { settings_version: Some(version + 1), ..stale };
    let outcome = store.put_manifest(&ORIGIN, current).await.unwrap();
    assert_eq!(outcome.previous_tag_targets, vec![Some(first)]);
}

async fn indexes_and_children(store: &dyn MetadataStore) {
    let repo = new_repo(store, "indexes").await;
    let amd64 = push_image(store, &repo, &unique("amd64"), 5000, None).await;
    let arm64 = push_image(store, &repo, &unique("arm64"), 7000, None).await;
    let ghost = manifest_bytes(&unique("never-pushed")).1;

    let err =
        push_index(store, &repo, &unique("idx-missing"), &[amd64.clone(), ghost.clone(), blob("x")]).await.unwrap_err();
    assert!(matches!(&err, MetaError::ManifestUnknown(d) if *d == ghost), "first missing child: {err:?}");

    let other = new_repo(store, "indexes-other").await;
    let foreign = push_image(store, &other, &unique("foreign"), 1, None).await;
    let err = push_index(store, &repo, &unique("idx-foreign"), std::slice::from_ref(&foreign)).await.unwrap_err();
    assert!(
        matches!(&err, MetaError::ManifestUnknown(d) if *d == foreign),
        "children must be in the same repository: {err:?}"
    );

    // A child must have the size its descriptor states, as blobs must.
    let amd64_size = store.get_manifest(&repo, &by_digest(&amd64)).await.unwrap().unwrap().content.len() as u64;
    let lying = unique("idx-lying");
    let err = push_index_sized(store, &repo, &lying, &[(amd64.clone(), amd64_size + 1)]).await.unwrap_err();
    assert!(
        matches!(&err, MetaError::ChildSizeMismatch { digest, declared, stored } if *digest == amd64 && *declared == amd64_size + 1 && *stored == amd64_size),
        "{err:?}"
    );
    assert!(store.get_manifest(&repo, &by_digest(&manifest_bytes(&lying).1)).await.unwrap().is_none());

    let index_a = push_index(store, &repo, &unique("idx-a"), &[amd64.clone(), arm64.clone()]).await.unwrap();
    let index_b = push_index(store, &repo, &unique("idx-b"), std::slice::from_ref(&arm64)).await.unwrap();
    let record = store.get_manifest(&repo, &by_digest(&index_a)).await.unwrap().unwrap();
    assert_eq!(
        (record.media_type.as_str(), record.image_size),
        (INDEX, 7010),
        "an index is as large as its largest child"
    );

    // An index of indexes takes the largest grandchild size through its children.
    let nested = push_index(store, &repo, &unique("idx-nested"), std::slice::from_ref(&index_b)).await.unwrap();
    assert_eq!(store.get_manifest(&repo, &by_digest(&nested)).await.unwrap().unwrap().image_size, 7010);

    let mut both = vec![index_a.clone(), index_b.clone()];
    both.sort();
    assert_eq!(store.parents(&repo, &arm64).await.unwrap(), both);
    assert_eq!(store.parents(&repo, &amd64).await.unwrap(), vec![index_a.clone()]);
    assert_eq!(store.parents(&repo, &index_b).await.unwrap(), vec![nested.clone()]);
    assert!(store.parents(&repo, &index_a).await.unwrap().is_empty());
    assert!(store.parents(&other, &arm64).await.unwrap().is_empty());

    let err = store.delete_manifest(&ORIGIN, &repo, &arm64).await.unwrap_err();
    assert!(matches!(&err, MetaError::ManifestReferenced { index } if *index == both[0]), "smallest parent: {err:?}");
    assert!(store.get_manifest(&repo, &by_digest(&arm64)).await.unwrap().is_some());

    // Deleting an index removes its own child edges, releasing its children.
    store.delete_manifest(&ORIGIN, &repo, &index_a).await.unwrap();
    assert!(store.parents(&repo, &amd64).await.unwrap().is_empty());
    store.delete_manifest(&ORIGIN, &repo, &amd64).await.unwrap();
    let err = store.delete_manifest(&ORIGIN, &repo, &arm64).await.unwrap_err();
    assert!(matches!(&err, MetaError::ManifestReferenced { index } if *index == index_b), "{err:?}");
    let err = store.delete_manifest(&ORIGIN, &repo, &index_b).await.unwrap_err();
    assert!(matches!(&err, MetaError::ManifestReferenced { index } if *index == nested), "{err:?}");
    store.delete_manifest(&ORIGIN, &repo, &nested).await.unwrap();
    store.delete_manifest(&ORIGIN, &repo, &index_b).await.unwrap();
    store.delete_manifest(&ORIGIN, &repo, &arm64).await.unwrap();
    assert!(store.list_images(&repo, None, 10).await.unwrap().is_empty());

    // Re-pushing an index after its children were re-pushed rebuilds the edges.
    let amd64 = push_image(store, &repo, &unique("amd64-again"), 10, None).await;
    let index = push_index(store, &repo, &unique("idx-again"), std::slice::from_ref(&amd64)).await.unwrap();
    assert_eq!(store.parents(&repo, &amd64).await.unwrap(), vec![index]);
}

/// A sparse index lists children its repository does not hold; each becomes a protected child
/// once pushed, and nothing of the index is left when it is deleted.
async fn sparse_indexes(store: &dyn MetadataStore) {
    let repo = new_repo(store, "sparse").await;
    let present_label = unique("present");
    let present = push_image(store, &repo, &present_label, 3000, None).await;
    let later_label = unique("later");
    let later = manifest_bytes(&later_label).1;
    let (content, index) = manifest_bytes(&unique("sparse-idx"));
    let size = |label: &str| manifest_bytes(label).0.len() as u64;
    let children = [(present.clone(), size(&present_label)), (later.clone(), size(&later_label))];
    let put =
        || PutManifest { media_type: INDEX, children: &children, ..image_put(&repo, &index, &content, &[], None, 300) };
    let err = store.put_manifest(&ORIGIN, put()).await.unwrap_err();
    assert!(matches!(&err, MetaError::ManifestUnknown(d) if *d == later), "not sparse: {err:?}");
    assert!(store.get_manifest(&repo, &by_digest(&index)).await.unwrap().is_none());

    assert!(store.put_manifest(&ORIGIN, PutManifest { sparse: true, ..put() }).await.unwrap().manifest_created);
    let record = store.get_manifest(&repo, &by_digest(&index)).await.unwrap().unwrap();
    assert_eq!(record.image_size, 3010, "absent children count nothing");
    assert_eq!(store.parents(&repo, &present).await.unwrap(), vec![index.clone()]);

    // The absent child arrives: from now on the index protects it, and the index is as large as
    // this child, its largest now.
    let pushed = push_image(store, &repo, &later_label, 5000, None).await;
    assert_eq!(pushed, later);
    assert_eq!(store.parents(&repo, &later).await.unwrap(), vec![index.clone()]);
    let child_size = store.get_manifest(&repo, &by_digest(&later)).await.unwrap().unwrap().image_size;
    assert!(child_size > 3010, "{child_size}");
    assert_eq!(store.get_manifest(&repo, &by_digest(&index)).await.unwrap().unwrap().image_size, child_size);
    let err = store.delete_manifest(&ORIGIN, &repo, &later).await.unwrap_err();
    assert!(matches!(&err, MetaError::ManifestReferenced { index: i } if *i == index), "{err:?}");

    store.delete_manifest(&ORIGIN, &repo, &index).await.unwrap();
    store.delete_manifest(&ORIGIN, &repo, &later).await.unwrap();
    store.delete_manifest(&ORIGIN, &repo, &present).await.unwrap();
    // A sparse image may name blobs the repository does not hold; a non-sparse one may not.
    let (content, image) = manifest_bytes(&unique("layerless"));
    let absent = [(blob(&unique("absent-layer")), 1234)];
    let put = image_put(&repo, &image, &content, &absent, None, 350);
    let err = store.put_manifest(&ORIGIN, put.clone()).await.unwrap_err();
    assert!(matches!(&err, MetaError::BlobsUnknown(d) if *d == [absent[0].0.clone()]), "not sparse: {err:?}");
    store.put_manifest(&ORIGIN, PutManifest { sparse: true, ..put }).await.unwrap();
    assert_eq!(store.get_manifest(&repo, &by_digest(&image)).await.unwrap().unwrap().image_size, 1234);

    // An index deleted while its child is still absent leaves no record behind: the child,
    // pushed afterwards, is no one's.
    let ghost_label = unique("ghost");
    let ghost = [(manifest_bytes(&ghost_label).1, manifest_bytes(&ghost_label).0.len() as u64)];
    let (content, gone) = manifest_bytes(&unique("gone-idx"));
    let put = PutManifest {
        media_type: INDEX,
        children: &ghost,
        sparse: true,
        ..image_put(&repo, &gone, &content, &[], None, 400)
    };
    store.put_manifest(&ORIGIN, put).await.unwrap();
    store.delete_manifest(&ORIGIN, &repo, &gone).await.unwrap();
    push_image(store, &repo, &ghost_label, 10, None).await;
    assert!(store.parents(&repo, &ghost[0].0).await.unwrap().is_empty());
}

async fn manifest_deletion(store: &dyn MetadataStore) {
    let repo = new_repo(store, "deletion").await;
    let (v1, v2) = (tag("v1"), tag("v2"));
    let image = push_image(store, &repo, &unique("doomed"), 1, Some(&v1)).await;
    let content = store.get_manifest(&repo, &by_digest(&image)).await.unwrap().unwrap().content;
    store.put_manifest(&ORIGIN, image_put(&repo, &image, &content, &[], Some(&v2), 9)).await.unwrap();
    let keeper = push_image(store, &repo, &unique("keeper"), 1, Some(&tag("keep"))).await;

    let ghost = manifest_bytes(&unique("absent")).1;
    let err = store.delete_manifest(&ORIGIN, &repo, &ghost).await.unwrap_err();
    assert!(matches!(&err, MetaError::ManifestUnknown(d) if *d == ghost), "{err:?}");
    let err = store.delete_manifest(&ORIGIN, &new_repo(store, "deletion-other").await, &image).await.unwrap_err();
    assert!(matches!(&err, MetaError::ManifestUnknown(d) if *d == image), "{err:?}");

    store.delete_manifest(&ORIGIN, &repo, &image).await.unwrap();
    assert_eq!(store.get_manifest(&repo, &by_digest(&image)).await.unwrap(), None);
    assert_eq!(store.get_manifest(&repo, &by_tag("v1")).await.unwrap(), None, "its tags go with it");
    assert_eq!(store.list_tags(&repo, None, None).await.unwrap(), vec!["keep"]);
    assert_eq!(store.get_manifest(&repo, &by_digest(&keeper)).await.unwrap().unwrap().digest, keeper);
    let err = store.delete_manifest(&ORIGIN, &repo, &image).await.unwrap_err();
    assert!(matches!(err, MetaError::ManifestUnknown(_)), "{err:?}");

    // Deleting a tag leaves the manifest.
    assert_eq!(store.delete_tag(&ORIGIN, &repo, &tag("keep")).await.unwrap(), Some(keeper.clone()));
    assert_eq!(store.delete_tag(&ORIGIN, &repo, &tag("keep")).await.unwrap(), None);
    assert!(store.list_tags(&repo, None, None).await.unwrap().is_empty());
    assert!(store.get_manifest(&repo, &by_digest(&keeper)).await.unwrap().is_some());
}

async fn all_referrers(
    store: &dyn MetadataStore,
    repo: &RepositoryName,
    subject: &Digest,
) -> Vec<crate::ReferrerRecord> {
    store.referrers(repo, subject, None, 100).await.unwrap()
}

/// Not ASCII: what a referrers listing budgets is bytes.
const REFERRER_ANNOTATIONS: &str = r#"{"kind":"référent ✓ 🚢"}"#;

async fn referrers_and_subjects(store: &dyn MetadataStore) {
    let repo = new_repo(store, "referrers").await;
    let subject = push_image(store, &repo, &unique("subject"), 1, Some(&tag("app"))).await;
    let other_subject = push_image(store, &repo, &unique("other-subject"), 1, None).await;
    let mut pushed = Vec::new();
    for (label, artifact_type) in [
        ("sig", "application/vnd.dev.cosign.sig"),
        ("sbom", "application/spdx+json"),
        ("scan", "application/sarif+json"),
    ] {
        let (content, digest) = manifest_bytes(&unique(label));
        let put = PutManifest {
            artifact_type: Some(artifact_type),
            subject: Some(&subject),
            annotations: Some(REFERRER_ANNOTATIONS),
            ..image_put(&repo, &digest, &content, &[], None, 10)
        };
        store.put_manifest(&ORIGIN, put).await.unwrap();
        pushed.push((digest, artifact_type));
    }
    pushed.sort();
    let found = all_referrers(store, &repo, &subject).await;
    let listed: Vec<_> = found.iter().map(|m| (m.digest.clone(), m.artifact_type.as_deref().unwrap())).collect();
    let expected: Vec<_> = pushed.iter().map(|(d, t)| (d.clone(), *t)).collect();
    assert_eq!(listed, expected, "sorted by digest");
    let stored = store.get_manifest(&repo, &by_digest(&pushed[0].0)).await.unwrap().unwrap();
    assert_eq!(
        (found[0].size, found[0].media_type.as_str()),
        (stored.content.len() as u64, stored.media_type.as_str())
    );
    assert_eq!(found[0].annotations_len, REFERRER_ANNOTATIONS.len() as u64, "bytes, not characters");
    assert_eq!(found[0].annotations.as_deref(), Some(REFERRER_ANNOTATIONS), "short ones come along");
    assert_eq!(store.annotations(&repo, &pushed[0].0).await.unwrap().as_deref(), Some(REFERRER_ANNOTATIONS));
    // Pages: after a digest, at most so many.
    let page = store.referrers(&repo, &subject, Some(&pushed[0].0), 1).await.unwrap();
    assert_eq!(page.iter().map(|m| &m.digest).collect::<Vec<_>>(), [&pushed[1].0]);
    assert!(store.referrers(&repo, &subject, Some(&pushed[2].0), 10).await.unwrap().is_empty());
    assert!(all_referrers(store, &repo, &other_subject).await.is_empty());
    let elsewhere = new_repo(store, "referrers-other").await;
    assert!(store.referrers(&elsewhere, &subject, None, 10).await.unwrap().is_empty());

    // A referrer may come before its subject, and a subject may go before its referrers.
    let unborn = manifest_bytes(&unique("later-subject")).1;
    let (content, early) = manifest_bytes(&unique("early-referrer"));
    store
        .put_manifest(
            &ORIGIN,
            PutManifest { subject: Some(&unborn), ..image_put(&repo, &early, &content, &[], None, 10) },
        )
        .await
        .unwrap();
    let referrer = all_referrers(store, &repo, &unborn).await;
    assert_eq!((referrer.len(), referrer[0].annotations_len), (1, 0), "one, without annotations");
    assert_eq!(store.annotations(&repo, &early).await.unwrap(), None);
    // Long annotations stay out of the listing's records, and are read one manifest at a time.
    let long = format!(r#"{{"note":"{}"}}"#, "x".repeat(crate::INLINE_ANNOTATIONS as usize));
    let (content, wordy) = manifest_bytes(&unique("wordy-referrer"));
    let put = PutManifest {
        subject: Some(&unborn),
        annotations: Some(&long),
        ..image_put(&repo, &wordy, &content, &[], None, 10)
    };
    store.put_manifest(&ORIGIN, put).await.unwrap();
    let listed = all_referrers(store, &repo, &unborn).await;
    let record = listed.iter().find(|r| r.digest == wordy).unwrap();
    assert_eq!((record.annotations.as_deref(), record.annotations_len), (None, long.len() as u64));
    assert_eq!(store.annotations(&repo, &wordy).await.unwrap(), Some(long));
    store.delete_manifest(&ORIGIN, &repo, &subject).await.unwrap();
    assert_eq!(all_referrers(store, &repo, &subject).await.len(), 3);
}

async fn tag_listing(store: &dyn MetadataStore) {
    let repo = new_repo(store, "tags").await;
    assert!(store.list_tags(&repo, None, None).await.unwrap().is_empty(), "empty repository");
    let absent = repo_name(&unique("tagless"));
    assert!(store.list_tags(&absent, None, None).await.unwrap().is_empty(), "unknown repository");

    let names = ["b", "B", "a", "A", "_x", "1", "a.b", "a-b", "a_b", "Z9", "z"];
    let image = push_image(store, &repo, &unique("tagged"), 1, None).await;
    let content = store.get_manifest(&repo, &by_digest(&image)).await.unwrap().unwrap().content;
    for n in names {
        store.put_manifest(&ORIGIN, image_put(&repo, &image, &content, &[], Some(&tag(n)), 5)).await.unwrap();
    }
    let mut bytewise: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    bytewise.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(bytewise, ["1", "A", "B", "Z9", "_x", "a", "a-b", "a.b", "a_b", "b", "z"]);
    assert_eq!(store.list_tags(&repo, None, None).await.unwrap(), bytewise);

    assert_eq!(store.list_tags(&repo, None, Some(3)).await.unwrap(), bytewise[..3]);
    assert_eq!(store.list_tags(&repo, Some("B"), Some(3)).await.unwrap(), bytewise[3..6], "`last` is exclusive");
    assert_eq!(store.list_tags(&repo, Some("a-b"), None).await.unwrap(), bytewise[7..]);
    assert_eq!(store.list_tags(&repo, Some("Z"), Some(2)).await.unwrap(), ["Z9", "_x"], "`last` need not be a tag");
    assert_eq!(store.list_tags(&repo, None, Some(names.len())).await.unwrap(), bytewise, "exact page");
    assert_eq!(store.list_tags(&repo, Some("a_b"), Some(5)).await.unwrap(), ["b", "z"], "short last page");
    assert!(store.list_tags(&repo, Some("z"), Some(5)).await.unwrap().is_empty(), "after the last tag");
    assert!(store.list_tags(&repo, None, Some(0)).await.unwrap().is_empty());
}

async fn images(store: &dyn MetadataStore) {
    let repo = new_repo(store, "listing").await;
    assert!(store.list_images(&repo, None, 10).await.unwrap().is_empty());
    let mut pushed = Vec::new();
    for i in 0..5 {
        pushed.push(push_image(store, &repo, &unique(&format!("list-img{i}")), i, None).await);
    }
    let tagged = pushed[2].clone();
    let content = store.get_manifest(&repo, &by_digest(&tagged)).await.unwrap().unwrap().content;
    for t in ["zeta", "Alpha", "mid"] {
        store.put_manifest(&ORIGIN, image_put(&repo, &tagged, &content, &[], Some(&tag(t)), 5)).await.unwrap();
    }
    pushed.sort();

    let first = store.list_images(&repo, None, 2).await.unwrap();
    let second = store.list_images(&repo, Some(&first[1].manifest.digest), 2).await.unwrap();
    let third = store.list_images(&repo, Some(&second[1].manifest.digest), 2).await.unwrap();
    assert_eq!(third.len(), 1, "short last page");
    let all: Vec<_> = first.iter().chain(&second).chain(&third).collect();
    assert_eq!(all.iter().map(|i| i.manifest.digest.clone()).collect::<Vec<_>>(), pushed, "sorted by digest, no gaps");
    for image in &all {
        let want: Vec<String> =
            if image.manifest.digest == tagged { vec!["Alpha".into(), "mid".into(), "zeta".into()] } else { vec![] };
        assert_eq!(image.tags, want, "{}", image.manifest.digest);
        assert_eq!(
            image.manifest.content,
            store.get_manifest(&repo, &by_digest(&image.manifest.digest)).await.unwrap().unwrap().content
        );
    }
    assert_eq!(store.list_images(&repo, None, 5).await.unwrap().len(), 5, "exact page");
    assert!(store.list_images(&repo, Some(&pushed[4]), 5).await.unwrap().is_empty(), "after the last image");
    assert!(store.list_images(&repo, None, 0).await.unwrap().is_empty());

    let one = store.get_image(&repo, &tagged).await.unwrap().unwrap();
    assert_eq!(one.tags, ["Alpha", "mid", "zeta"]);
    assert_eq!(one.manifest, store.get_manifest(&repo, &by_digest(&tagged)).await.unwrap().unwrap());
    let untagged = pushed.iter().find(|d| **d != tagged).unwrap();
    assert_eq!(store.get_image(&repo, untagged).await.unwrap().unwrap().tags, Vec::<String>::new());
    assert_eq!(store.get_image(&repo, &blob("no such image")).await.unwrap(), None);
}

async fn pulls(store: &dyn MetadataStore) {
    let repo = new_repo(store, "pulls").await;
    let (a, b) = (
        push_image(store, &repo, &unique("pull-a"), 1, None).await,
        push_image(store, &repo, &unique("pull-b"), 1, None).await,
    );
    let last_pull = |d: &Digest| {
        let d = d.clone();
        let repo = repo.clone();
        async move { store.get_manifest(&repo, &by_digest(&d)).await.unwrap().unwrap().last_pulled_at }
    };
    assert_eq!(last_pull(&a).await, None);

    let elsewhere = repo_name(&unique("pulls-missing"));
    let gone = manifest_bytes(&unique("never")).1;
    store
        .record_pulls(&[
            (repo.clone(), a.clone(), 500),
            (repo.clone(), a.clone(), 300),
            (repo.clone(), b.clone(), 100),
            (repo.clone(), gone, 900),
            (elsewhere, b.clone(), 900),
        ])
        .await
        .unwrap();
    assert_eq!(last_pull(&a).await, Some(500), "the latest of a batch wins whatever the order");
    assert_eq!(last_pull(&b).await, Some(100), "pulls of other repositories' manifests do not leak");

    store.record_pulls(&[(repo.clone(), a.clone(), 400), (repo.clone(), b.clone(), 700)]).await.unwrap();
    assert_eq!(last_pull(&a).await, Some(500), "an older pull never moves the time back");
    assert_eq!(last_pull(&b).await, Some(700));
    store.record_pulls(&[]).await.unwrap();
    assert_eq!(store.get_image(&repo, &b).await.unwrap().unwrap().manifest.last_pulled_at, Some(700));
}

/// Archiving and restoring: an index takes its children along (archiving only the untagged ones
/// no other STANDARD index lists), a child of a STANDARD index cannot be archived alone, a push restores,
/// and each image that changed has its event.
async fn storage_classes(store: &dyn MetadataStore) {
    use StorageClass::{Archive, Standard};
    let watcher = Watcher::new(store).await;
    let repo = new_repo(store, "archive").await;
    let amd64 = push_image(store, &repo, &unique("amd64"), 5000, None).await;
    let arm64 = push_image(store, &repo, &unique("arm64"), 7000, None).await;
    let tagged = push_image(store, &repo, &unique("tagged"), 9000, Some(&tag("own"))).await;
    let children = [amd64.clone(), arm64.clone(), tagged.clone()];
    let index = push_index(store, &repo, &unique("idx"), &children).await.unwrap();
    let other = push_index(store, &repo, &unique("idx-other"), std::slice::from_ref(&arm64)).await.unwrap();
    watcher.take(&[&repo]).await;
    let class = async |digest: &Digest| {
        let m = store.get_manifest(&repo, &by_digest(digest)).await.unwrap().unwrap();
        (m.storage_class, m.last_archived_at, m.last_activated_at)
    };
    let changed = |changes: Vec<crate::StorageClassChange>| changes.into_iter().map(|c| c.digest).collect::<Vec<_>>();
    let sorted = |mut digests: Vec<Digest>| {
        digests.sort();
        digests
    };

    let err = store.update_storage_class(&ORIGIN, &repo, &amd64, Archive, 10).await.unwrap_err();
    assert!(matches!(&err, MetaError::ManifestReferenced { index: i } if *i == index), "{err:?}");
    assert_eq!(class(&amd64).await, (Standard, None, None), "a refused archive changes nothing");
    let ghost = blob("never-pushed");
    let err = store.update_storage_class(&ORIGIN, &repo, &ghost, Archive, 10).await.unwrap_err();
    assert!(matches!(&err, MetaError::ManifestUnknown(d) if *d == ghost), "{err:?}");
    let gone = repo_name(&unique("archive-missing"));
    let err = store.update_storage_class(&ORIGIN, &gone, &amd64, Archive, 10).await.unwrap_err();
    assert!(matches!(err, MetaError::RepositoryNotFound(_)), "{err:?}");

    // The index goes with the child only it lists; arm64 stays for the other index.
    let archived = store.update_storage_class(&ORIGIN, &repo, &index, Archive, 20).await.unwrap();
    assert_eq!(changed(archived), sorted(vec![index.clone(), amd64.clone()]));
    assert_eq!(class(&index).await, (Archive, Some(20), None));
    assert_eq!(class(&amd64).await, (Archive, Some(20), None));
    assert_eq!(class(&arm64).await, (Standard, None, None));
    assert_eq!(class(&tagged).await, (Standard, None, None), "a tagged child is an image of its own");
    assert!(store.update_storage_class(&ORIGIN, &repo, &index, Archive, 25).await.unwrap().is_empty(), "no-op");
    let listed = store.get_image(&repo, &index).await.unwrap().unwrap();
    assert_eq!(listed.manifest.storage_class, Archive, "listings carry the class");

    // Once no STANDARD index lists it, arm64 can be archived by itself.
    store.update_storage_class(&ORIGIN, &repo, &other, Archive, 30).await.unwrap();
    assert_eq!(class(&arm64).await, (Archive, Some(30), None), "the other index took it along");

    // Restoring an index restores everything it lists.
    let restored = store.update_storage_class(&ORIGIN, &repo, &index, Standard, 40).await.unwrap();
    assert_eq!(changed(restored), sorted(vec![index.clone(), amd64.clone(), arm64.clone()]));
    assert_eq!(class(&amd64).await, (Standard, Some(20), Some(40)));
    assert_eq!(class(&other).await, (Archive, Some(30), None), "another index stays archived");

    // Pushing an archived image again restores it.
    let (content, _) = manifest_bytes("push-restores");
    let digest = Digest::sha256_of(&content);
    store.put_manifest(&ORIGIN, image_put(&repo, &digest, &content, &[], None, 50)).await.unwrap();
    store.update_storage_class(&ORIGIN, &repo, &digest, Archive, 60).await.unwrap();
    let again = store.put_manifest(&ORIGIN, image_put(&repo, &digest, &content, &[], None, 70)).await.unwrap();
    assert!(again.restored && !again.manifest_created, "{again:?}");
    assert_eq!(class(&digest).await, (Standard, Some(60), Some(70)));
    let once_more = store.put_manifest(&ORIGIN, image_put(&repo, &digest, &content, &[], None, 80)).await.unwrap();
    assert!(!once_more.restored, "nothing left to restore");

    let events: Vec<(EventKind, Option<Digest>)> =
        watcher.take(&[&repo]).await.into_iter().map(|e| (e.kind, e.digest)).collect();
    let mut expected = vec![];
    expected
        .extend(sorted(vec![index.clone(), amd64.clone()]).into_iter().map(|d| (EventKind::ImageArchived, Some(d))));
    expected
        .extend(sorted(vec![other.clone(), arm64.clone()]).into_iter().map(|d| (EventKind::ImageArchived, Some(d))));
    let restored = sorted(vec![index.clone(), amd64.clone(), arm64.clone()]);
    expected.extend(restored.into_iter().map(|d| (EventKind::ImageRestored, Some(d))));
    expected.push((EventKind::ManifestPushed, Some(digest.clone())));
    expected.push((EventKind::ImageArchived, Some(digest.clone())));
    expected.push((EventKind::ImageRestored, Some(digest.clone())));
    assert_eq!(events, expected);
    watcher.finish().await;
}

async fn console_sign_outs(store: &dyn MetadataStore) {
    let (gone, kept) = (unique("session-gone"), unique("session-kept"));
    assert!(!store.console_session_signed_out(&gone).await.unwrap());
    store.sign_out_console_session(&gone, 2_000, 1_000).await.unwrap();
    store.sign_out_console_session(&gone, 2_000, 1_000).await.unwrap();
    assert!(store.console_session_signed_out(&gone).await.unwrap(), "signing out twice is once");
    assert!(!store.console_session_signed_out(&kept).await.unwrap(), "only that session");
    // An hour past its expiry the record may go: the cookie is refused as expired anyway, even
    // by a server whose clock is a little behind.
    store.sign_out_console_session(&kept, 10_000_000, 2_000 + 3_599_000).await.unwrap();
    assert!(store.console_session_signed_out(&gone).await.unwrap(), "kept within the hour");
    store.sign_out_console_session(&kept, 10_000_000, 2_000 + 3_601_000).await.unwrap();
    assert!(!store.console_session_signed_out(&gone).await.unwrap(), "dropped an hour after its expiry");
    assert!(store.console_session_signed_out(&kept).await.unwrap());
}

async fn upload_sessions(store: &dyn MetadataStore) {
    let repo = new_repo(store, "uploads").await;
    let session =
        |id: &str, at| UploadSession { id: id.to_owned(), repo: repo.to_string(), created_at: at, updated_at: at };
    let (old, young) = (unique("old-upload"), unique("young-upload"));
    assert_eq!(store.get_upload(&old).await.unwrap(), None);

    let missing = repo_name(&unique("upload-nowhere"));
    let stray = UploadSession { repo: missing.to_string(), ..session(&unique("stray"), 1) };
    let err = store.create_upload(&stray).await.unwrap_err();
    assert!(matches!(&err, MetaError::RepositoryNotFound(n) if n == missing.as_str()), "{err:?}");
    assert_eq!(store.get_upload(&stray.id).await.unwrap(), None);

    store.create_upload(&session(&old, 1_000)).await.unwrap();
    store.create_upload(&session(&young, 1_000)).await.unwrap();
    assert_eq!(store.get_upload(&old).await.unwrap(), Some(session(&old, 1_000)));

    store.touch_upload(&young, 5_000).await.unwrap();
    assert_eq!(
        store.get_upload(&young).await.unwrap(),
        Some(UploadSession { updated_at: 5_000, ..session(&young, 1_000) })
    );

    let ours = |list: Vec<UploadSession>| list.into_iter().filter(|s| s.id == old || s.id == young).collect::<Vec<_>>();
    assert!(ours(store.stale_uploads(1_000).await.unwrap()).is_empty(), "`before` is exclusive");
    assert_eq!(ours(store.stale_uploads(1_001).await.unwrap()), vec![session(&old, 1_000)]);
    assert_eq!(
        ours(store.stale_uploads(4_000).await.unwrap()),
        vec![session(&old, 1_000)],
        "touching keeps a session fresh"
    );
    assert_eq!(ours(store.stale_uploads(6_000).await.unwrap()).len(), 2);
    let of_repo = store.repository_uploads(repo.as_str()).await.unwrap();
    let mut both = vec![old.as_str(), young.as_str()];
    both.sort();
    assert_eq!(of_repo.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), both, "same age: by id");
    assert!(store.repository_uploads("uploads-elsewhere").await.unwrap().is_empty());

    assert!(store.delete_upload(&old).await.unwrap());
    assert!(!store.delete_upload(&old).await.unwrap());
    assert_eq!(store.get_upload(&old).await.unwrap(), None);
    store.touch_upload(&old, 9_000).await.unwrap();
    assert_eq!(store.get_upload(&old).await.unwrap(), None, "touching a finished session does not revive it");
    assert_eq!(
        ours(store.stale_uploads(i64::MAX).await.unwrap()).iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        vec![young.clone()]
    );

    let (done_a, done_b, kept) = (unique("done-a"), unique("done-b"), unique("kept"));
    for id in [&done_a, &done_b, &kept] {
        store.create_upload(&session(id, 1_000)).await.unwrap();
    }
    store.delete_uploads(&[done_a.clone(), old.clone(), done_b.clone(), young.clone()]).await.unwrap();
    for gone in [&done_a, &done_b, &young] {
        assert_eq!(store.get_upload(gone).await.unwrap(), None, "{gone} is deleted in the batch");
    }
    assert_eq!(store.get_upload(&kept).await.unwrap(), Some(session(&kept, 1_000)), "an unlisted session stays");
    store.delete_uploads(&[]).await.unwrap();
    assert!(store.delete_upload(&kept).await.unwrap());
}

async fn users(store: &dyn MetadataStore) {
    let user = |name: &str, key: &str| UserRecord {
        name: name.to_owned(),
        access_key_id: key.to_owned(),
        secret_ciphertext: format!("sealed:{key}").into_bytes(),
        created_at: 42,
        key_status: AccessKeyStatus::Active,
    };
    let (zed, amy) = (unique("zed"), unique("amy"));
    let (zed_key, amy_key) = (unique("AKZED"), unique("AKAMY"));
    let generation = store.credentials_generation().await.unwrap();

    store.create_user(&user(&zed, &zed_key), &[]).await.unwrap();
    let after_create = store.credentials_generation().await.unwrap();
    assert_ne!(after_create, generation);
    store.create_user(&user(&amy, &amy_key), &[]).await.unwrap();
    let after_second = store.credentials_generation().await.unwrap();
    assert_ne!(after_second, after_create);

    let zed_upper = zed.to_ascii_uppercase();
    for clash in
        [user(&zed, &unique("AKOTHER")), user(&zed_upper, &unique("AKUPPER")), user(&unique("other"), &amy_key)]
    {
        let err = store.create_user(&clash, &[managed("P")]).await.unwrap_err();
        assert!(matches!(&err, MetaError::UserExists(n) if *n == clash.name), "{err:?}");
        assert_eq!(
            store.user_by_access_key(&clash.access_key_id).await.unwrap().map(|u| u.name),
            (clash.access_key_id == amy_key).then(|| amy.clone())
        );
    }
    assert_eq!(store.credentials_generation().await.unwrap(), after_second, "failed creates change nothing");

    assert_eq!(store.user_by_name(&zed).await.unwrap(), Some(user(&zed, &zed_key)));
    assert_eq!(store.user_by_access_key(&amy_key).await.unwrap(), Some(user(&amy, &amy_key)));
    assert_eq!(store.user_by_name(&unique("nobody")).await.unwrap(), None);
    assert_eq!(store.user_by_access_key(&unique("AKNONE")).await.unwrap(), None);

    let listed: Vec<String> =
        store.list_users().await.unwrap().into_iter().map(|u| u.name).filter(|n| *n == zed || *n == amy).collect();
    assert_eq!(listed, vec![amy.clone(), zed.clone()], "sorted by name");
    let everyone: Vec<String> = store.list_users().await.unwrap().into_iter().map(|u| u.name).collect();
    assert!(everyone.windows(2).all(|w| w[0] < w[1]));

    assert!(store.delete_user(&zed).await.unwrap());
    let after_delete = store.credentials_generation().await.unwrap();
    assert_ne!(after_delete, after_second);
    assert!(!store.delete_user(&zed).await.unwrap());
    assert_eq!(store.credentials_generation().await.unwrap(), after_delete, "deleting nobody changes nothing");
    assert_eq!(store.user_by_name(&zed).await.unwrap(), None);
    assert_eq!(store.user_by_access_key(&zed_key).await.unwrap(), None);

    // A key is deactivated and activated again; each change moves the generation, a no-op does not.
    let before = store.credentials_generation().await.unwrap();
    assert_eq!(store.set_access_key_status(&amy, AccessKeyStatus::Inactive).await.unwrap(), AccessKeyStatus::Active);
    let after_deactivate = store.credentials_generation().await.unwrap();
    assert_ne!(after_deactivate, before);
    let inactive = UserRecord { key_status: AccessKeyStatus::Inactive, ..user(&amy, &amy_key) };
    assert_eq!(store.user_by_access_key(&amy_key).await.unwrap(), Some(inactive.clone()));
    assert!(store.list_users().await.unwrap().contains(&inactive));
    assert_eq!(store.set_access_key_status(&amy, AccessKeyStatus::Inactive).await.unwrap(), AccessKeyStatus::Inactive);
    assert_eq!(
        store.credentials_generation().await.unwrap(),
        after_deactivate,
        "setting the same status changes nothing"
    );
    let nobody = unique("nobody");
    let err = store.set_access_key_status(&nobody, AccessKeyStatus::Active).await.unwrap_err();
    assert!(matches!(&err, MetaError::UserUnknown(n) if *n == nobody), "{err:?}");
    assert_eq!(store.set_access_key_status(&amy, AccessKeyStatus::Active).await.unwrap(), AccessKeyStatus::Inactive);
    assert_eq!(store.user_by_name(&amy).await.unwrap(), Some(user(&amy, &amy_key)));

    // The name and the key are free again.
    store.create_user(&user(&zed, &zed_key), &[]).await.unwrap();
    assert!(store.delete_user(&zed).await.unwrap());
    assert!(store.delete_user(&amy).await.unwrap());
}

/// Registry settings: set, replaced, removed; each change moves the generation, a no-op does not.
/// (Settings are registry-wide, so this check uses names of its own and removes them again.)
async fn registry_settings(store: &dyn MetadataStore) {
    let name = unique("setting");
    let of = async || store.registry_settings().await.unwrap().into_iter().find(|(n, _)| *n == name).map(|(_, v)| v);
    let before = store.registry_settings_generation().await.unwrap();
    assert_eq!(store.put_registry_setting(&name, Some("V1")).await.unwrap(), None);
    assert_eq!(store.put_registry_setting(&name, Some("V2")).await.unwrap(), Some("V1".into()));
    assert_eq!(of().await, Some("V2".into()));
    let after_put = store.registry_settings_generation().await.unwrap();
    assert_ne!(after_put, before);
    assert_eq!(store.put_registry_setting(&name, None).await.unwrap(), Some("V2".into()));
    let after_delete = store.registry_settings_generation().await.unwrap();
    assert_ne!(after_delete, after_put);
    assert_eq!(store.put_registry_setting(&name, None).await.unwrap(), None);
    assert_eq!(store.registry_settings_generation().await.unwrap(), after_delete, "removing nothing changes nothing");
    assert_eq!(of().await, None);
}

fn managed(name: &str) -> UserPolicy {
    UserPolicy { name: name.to_owned(), document: None }
}

/// A user's identity policies: created with the user, attached (replacing one of the same name),
/// detached, gone with the user; every change moves the credentials generation.
async fn user_policies(store: &dyn MetadataStore) {
    let name = unique("pol");
    let record = UserRecord {
        name: name.clone(),
        access_key_id: unique("AKPOL"),
        secret_ciphertext: b"sealed".to_vec(),
        created_at: 1,
        key_status: AccessKeyStatus::Active,
    };
    let own = |document: &str| UserPolicy { name: "team-a".into(), document: Some(document.to_owned()) };
    let of = async |name: &str| -> Vec<UserPolicy> {
        let all = store.list_user_policies().await.unwrap();
        all.into_iter().filter(|(user, _)| user == name).map(|(_, policy)| policy).collect()
    };
    store.create_user(&record, &[managed("PullOnly"), own("{\"v\":1}")]).await.unwrap();
    assert_eq!(of(&name).await, vec![managed("PullOnly"), own("{\"v\":1}")]);

    let before = store.credentials_generation().await.unwrap();
    store.attach_user_policy(&name, &own("{\"v\":2}")).await.unwrap();
    store.attach_user_policy(&name, &managed("Admin")).await.unwrap();
    assert_eq!(of(&name).await, vec![managed("Admin"), managed("PullOnly"), own("{\"v\":2}")], "sorted, replaced");
    let after_attach = store.credentials_generation().await.unwrap();
    assert_ne!(after_attach, before);

    assert!(store.detach_user_policy(&name, "PullOnly").await.unwrap());
    assert!(!store.detach_user_policy(&name, "PullOnly").await.unwrap());
    let after_detach = store.credentials_generation().await.unwrap();
    assert_ne!(after_detach, after_attach);
    assert_eq!(of(&name).await, vec![managed("Admin"), own("{\"v\":2}")]);

    let nobody = unique("nobody");
    let err = store.attach_user_policy(&nobody, &managed("Admin")).await.unwrap_err();
    assert!(matches!(&err, MetaError::UserUnknown(n) if *n == nobody), "{err:?}");
    let err = store.detach_user_policy(&nobody, "Admin").await.unwrap_err();
    assert!(matches!(&err, MetaError::UserUnknown(_)), "{err:?}");
    assert_eq!(store.credentials_generation().await.unwrap(), after_detach, "failed changes change nothing");

    assert!(store.delete_user(&name).await.unwrap());
    assert!(of(&name).await.is_empty(), "a user's policies go with it");
}

/// Many pushes racing for one tag all succeed, one after the other: every push sees where the
/// previous one left the tag, so the reported previous targets chain through all of them.
async fn concurrent_pushes_of_one_tag(store: &dyn MetadataStore) {
    const PUSHERS: usize = 20;
    let repo = new_repo(store, "race").await;
    let layer = blob("race-layer");
    store.link_blob(&repo, &layer, 77, 1).await.unwrap();
    let blobs = [(layer, 77)];
    let hot = tag("hot");
    let manifests: Vec<(Vec<u8>, Digest)> =
        (0..PUSHERS).map(|i| manifest_bytes(&unique(&format!("race{i}")))).collect();

    let (repo_ref, hot_ref) = (&repo, by_tag("hot"));
    let hot_ref = &hot_ref;
    let pushes = manifests.iter().enumerate().map(|(i, (content, digest))| {
        let put = image_put(repo_ref, digest, content, &blobs, Some(&hot), i as i64);
        async move {
            // Readers run alongside the writers and must never fail either.
            let (outcome, read) = tokio::join!(store.put_manifest(&ORIGIN, put), store.get_manifest(repo_ref, hot_ref));
            read.unwrap();
            outcome.unwrap()
        }
    });
    let outcomes = join_all(pushes).await;
    assert!(outcomes.iter().all(|o| o.manifest_created));
    let previous: Vec<&Digest> = outcomes.iter().filter_map(|o| o.previous_tag_targets[0].as_ref()).collect();
    assert_eq!(previous.len(), PUSHERS - 1, "exactly one push found the tag absent");
    let current = store.get_manifest(&repo, &by_tag("hot")).await.unwrap().unwrap().digest;
    let mut seen: BTreeSet<&Digest> = previous.into_iter().collect();
    assert!(seen.insert(&current), "the final target was nobody's previous target");
    let all: BTreeSet<&Digest> = manifests.iter().map(|(_, d)| d).collect();
    assert_eq!(seen, all, "the previous targets chain through every push");

    // The same manifest from many clients at once is created exactly once.
    let (content, digest) = &manifests[0];
    let same = (0..PUSHERS)
        .map(|i| store.put_manifest(&ORIGIN, image_put(&repo, digest, content, &blobs, Some(&hot), 1000 + i as i64)));
    let outcomes: Vec<PutOutcome> = join_all(same).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(outcomes.iter().filter(|o| o.manifest_created).count(), 0, "it already existed");
    assert_eq!(
        outcomes.iter().filter(|o| o.previous_tag_targets[0].as_ref() != Some(digest)).count(),
        1,
        "one push moved the tag"
    );
    assert_eq!(store.get_manifest(&repo, &by_tag("hot")).await.unwrap().unwrap().digest, *digest);

    let fresh = manifest_bytes(&unique("race-fresh"));
    let racers =
        (0..PUSHERS).map(|i| store.put_manifest(&ORIGIN, image_put(&repo, &fresh.1, &fresh.0, &blobs, None, i as i64)));
    let created = join_all(racers).await.into_iter().map(Result::unwrap).filter(|o| o.manifest_created).count();
    assert_eq!(created, 1, "a new manifest pushed concurrently is created exactly once");
    assert_eq!(store.list_images(&repo, None, 100).await.unwrap().len(), PUSHERS + 1);
}

/// The bookkeeping of online GC (ARCHITECTURE.md, "Garbage collection"). Times start far above
/// the other checks' and every digest is unique to the run, so what earlier checks and runs left
/// in the store changes nothing asserted here.
async fn garbage_collection(store: &dyn MetadataStore) {
    const T: i64 = 1_000_000_000;
    let (repo, other) = (new_repo(store, "gc").await, new_repo(store, "gc-other").await);
    let label = unique("gc");
    let [used, spare, shared, relinked] =
        ["used", "spare", "shared", "relinked"].map(|s| blob(&format!("{label}-{s}")));
    for d in [&used, &spare, &shared, &relinked] {
        store.link_blob(&repo, d, 5, T).await.unwrap();
    }
    store.link_blob(&other, &shared, 5, T).await.unwrap();
    let (content, manifest) = manifest_bytes(&label);
    store.put_manifest(&ORIGIN, image_put(&repo, &manifest, &content, &[(used.clone(), 5)], None, T)).await.unwrap();
    let (other_content, other_manifest) = manifest_bytes(&format!("{label}-other"));
    let other_blobs = [(shared.clone(), 5)];
    store
        .put_manifest(&ORIGIN, image_put(&other, &other_manifest, &other_content, &other_blobs, None, T))
        .await
        .unwrap();
    let linked = async |r: &RepositoryName, d: &Digest| store.linked_blob(r, d).await.unwrap().is_some();

    // Links no manifest of their repository needs go once untouched for the grace period.
    assert!(store.release_unreferenced_links(T + 10, T + 10, true).await.unwrap() >= 3);
    assert!(linked(&repo, &spare).await, "a dry run removes nothing");
    store.link_blob(&repo, &relinked, 5, T + 20).await.unwrap();
    store.release_unreferenced_links(T + 10, T + 30, false).await.unwrap();
    assert!(linked(&repo, &used).await, "a manifest needs it");
    assert!(!linked(&repo, &spare).await && !linked(&repo, &shared).await, "nothing needs them");
    assert!(linked(&other, &shared).await, "needed by a manifest of its own repository");
    assert!(linked(&repo, &relinked).await, "re-linking restarts the grace period");

    // A manifest delete releases its blobs; their grace period starts when GC first sees them.
    store.delete_manifest(&ORIGIN, &repo, &manifest).await.unwrap();
    store.release_unreferenced_links(T + 100, T + 100, false).await.unwrap();
    store.release_unreferenced_links(T + 100, T + 200, false).await.unwrap();
    assert!(linked(&repo, &used).await, "released at T+100, not before it");
    store.release_unreferenced_links(T + 101, T + 300, false).await.unwrap();
    assert!(!linked(&repo, &used).await);

    // Blobs found in storage without a link become candidates, due after the grace period.
    let found = [used.clone(), shared.clone(), spare.clone()];
    assert_eq!(store.note_unlinked_blobs(&found, T + 400, true).await.unwrap(), vec![used.clone(), spare.clone()]);
    assert!(!store.due_blob_candidates(i64::MAX, 0).await.unwrap().contains(&used), "a dry run notes nothing");
    assert_eq!(store.note_unlinked_blobs(&found, T + 400, false).await.unwrap(), vec![used.clone(), spare.clone()]);
    store.note_unlinked_blobs(&found, T + 500, false).await.unwrap();
    let watched = [used.clone(), spare.clone(), shared.clone()];
    let due = async |before: i64, stalled_before: i64| {
        let due = store.due_blob_candidates(before, stalled_before).await.unwrap();
        watched.clone().map(|d| due.contains(&d))
    };
    assert_eq!(due(T + 400, 0).await, [false, false, false], "grace period not over");
    assert_eq!(due(T + 401, 0).await, [true, true, false], "noting again keeps the first sighting");

    // A push about to link a blob ends its candidacy.
    assert!(store.cancel_blob_collection(&spare).await.unwrap());
    assert!(store.cancel_blob_collection(&blob(&unique("never-seen"))).await.unwrap());
    assert_eq!(due(T + 401, 0).await, [true, false, false]);
    assert!(!store.begin_blob_deletion(&spare, T + 401, 0, T + 600).await.unwrap());

    // While GC deletes a blob's data, pushes of it wait; a deletion whose GC died is due again.
    assert!(!store.begin_blob_deletion(&used, T + 400, 0, T + 600).await.unwrap(), "not due yet");
    assert!(store.begin_blob_deletion(&used, T + 401, 0, T + 600).await.unwrap());
    assert!(!store.begin_blob_deletion(&used, T + 401, 0, T + 601).await.unwrap(), "already being deleted");
    assert!(!store.cancel_blob_collection(&used).await.unwrap(), "a push must wait for the deletion");
    assert_eq!(due(T + 401, T + 600).await, [false, false, false]);
    assert_eq!(due(T + 401, T + 601).await, [true, false, false], "stalled deletion");
    store.finish_blob_deletion(&used, T + 600).await.unwrap();
    assert!(store.cancel_blob_collection(&used).await.unwrap(), "deleted: the push writes the data anew");
    assert_eq!(due(i64::MAX, i64::MAX).await, [false, false, false]);

    // A candidate linked again stops being one when GC would begin deleting it.
    store.note_unlinked_blobs(std::slice::from_ref(&spare), T + 700, false).await.unwrap();
    store.link_blob(&other, &spare, 5, T + 710).await.unwrap();
    assert!(!store.begin_blob_deletion(&spare, T + 800, 0, T + 800).await.unwrap());
    assert_eq!(due(i64::MAX, i64::MAX).await, [false, false, false]);

    // Deleting a repository unlinks everything it held.
    store.delete_repository(&ORIGIN, &other, true).await.unwrap();
    assert_eq!(store.note_unlinked_blobs(&[shared.clone(), spare.clone()], T + 900, true).await.unwrap().len(), 2);
    store.delete_repository(&ORIGIN, &repo, true).await.unwrap();
}

/// A blob's link stays while a manifest of its repository needs it; the link tells whether
/// only archived manifests need it.
async fn blobs_needed_by_manifests(store: &dyn MetadataStore) {
    let repo = new_repo(store, "needed").await;
    let label = unique("needed");
    let image = push_image(store, &repo, &label, 7, None).await;
    let (layer, spare) = (blob(&format!("{label}-layer")), blob(&unique("spare")));
    store.link_blob(&repo, &spare, 3, 1).await.unwrap();
    let link = |size, needed_by| Some(BlobLink { size, needed_by });
    assert_eq!(store.blob_link(&repo, &layer).await.unwrap(), link(7, Some(StorageClass::Standard)));
    assert_eq!(store.blob_link(&repo, &spare).await.unwrap(), link(3, None));
    let elsewhere = new_repo(store, "needed-elsewhere").await;
    assert_eq!(store.blob_link(&elsewhere, &layer).await.unwrap(), None, "per repository");

    store.update_storage_class(&ORIGIN, &repo, &image, StorageClass::Archive, 2).await.unwrap();
    assert_eq!(store.blob_link(&repo, &layer).await.unwrap(), link(7, Some(StorageClass::Archive)));
    // Another STANDARD image with the same layer makes it pullable again.
    let (content, twin) = manifest_bytes(&format!("{label}-twin"));
    let blobs = [(layer.clone(), 7)];
    store.put_manifest(&ORIGIN, image_put(&repo, &twin, &content, &blobs, None, 100)).await.unwrap();
    assert_eq!(store.blob_link(&repo, &layer).await.unwrap(), link(7, Some(StorageClass::Standard)));
    store.delete_manifest(&ORIGIN, &repo, &twin).await.unwrap();
    store.update_storage_class(&ORIGIN, &repo, &image, StorageClass::Standard, 3).await.unwrap();

    let err = store.unlink_blob(&ORIGIN, &repo, &layer).await.unwrap_err();
    assert!(
        matches!(&err, MetaError::BlobInUse { digest, manifest } if *digest == layer && *manifest == image),
        "{err:?}"
    );
    assert_eq!(store.linked_blob(&repo, &layer).await.unwrap(), Some(7), "a refused unlink changes nothing");
    assert!(store.unlink_blob(&ORIGIN, &repo, &spare).await.unwrap(), "a blob no manifest needs goes");

    store.delete_manifest(&ORIGIN, &repo, &image).await.unwrap();
    assert_eq!(store.blob_link(&repo, &layer).await.unwrap(), link(7, None));
    assert!(store.unlink_blob(&ORIGIN, &repo, &layer).await.unwrap());
}

/// A descriptor's size is the size of the blob it names, or the manifest is refused.
async fn declared_sizes_must_match(store: &dyn MetadataStore) {
    let repo = new_repo(store, "sizes").await;
    let layer = blob(&unique("sized-layer"));
    store.link_blob(&repo, &layer, 1000, 1).await.unwrap();
    let (content, digest) = manifest_bytes(&unique("size-liar"));
    let t = tag("liar");
    for declared in [0, 999, 1001] {
        let blobs = [(layer.clone(), declared)];
        let err =
            store.put_manifest(&ORIGIN, image_put(&repo, &digest, &content, &blobs, Some(&t), 1)).await.unwrap_err();
        assert!(
            matches!(&err, MetaError::BlobSizeMismatch { digest: d, declared: n, stored: 1000 } if *d == layer && *n == declared),
            "{err:?}"
        );
    }
    assert_eq!(store.get_manifest(&repo, &by_digest(&digest)).await.unwrap(), None);
    assert!(store.list_tags(&repo, None, None).await.unwrap().is_empty());
    let blobs = [(layer, 1000)];
    store.put_manifest(&ORIGIN, image_put(&repo, &digest, &content, &blobs, Some(&t), 1)).await.unwrap();
    assert_eq!(store.get_manifest(&repo, &by_tag("liar")).await.unwrap().unwrap().image_size, 1000);
}

/// A push sets all its tags or none.
async fn tags_move_together(store: &dyn MetadataStore) {
    let repo = new_repo(store, "tags-together").await;
    let (a, b, c) = (tag("a"), tag("b"), tag("c"));
    let first = push_image(store, &repo, &unique("together-1"), 1, Some(&a)).await;
    let content = store.get_manifest(&repo, &by_digest(&first)).await.unwrap().unwrap().content;
    store.put_manifest(&ORIGIN, image_put(&repo, &first, &content, &[], Some(&b), 2)).await.unwrap();
    let (second_content, second) = manifest_bytes(&unique("together-2"));
    let mutable = |tag| PutTag { tag, immutable: false };

    let refused = PutManifest {
        tags: vec![mutable(&a), PutTag { tag: &b, immutable: true }],
        ..image_put(&repo, &second, &second_content, &[], None, 3)
    };
    let err = store.put_manifest(&ORIGIN, refused).await.unwrap_err();
    assert!(matches!(&err, MetaError::TagImmutable { tag, current, .. } if tag == "b" && *current == first), "{err:?}");
    assert_eq!(store.get_manifest(&repo, &by_tag("a")).await.unwrap().unwrap().digest, first, "a did not move");
    assert_eq!(store.get_manifest(&repo, &by_digest(&second)).await.unwrap(), None);

    let both = PutManifest {
        tags: vec![mutable(&a), mutable(&c), mutable(&a)],
        ..image_put(&repo, &second, &second_content, &[], None, 4)
    };
    let outcome = store.put_manifest(&ORIGIN, both).await.unwrap();
    assert_eq!(outcome.previous_tag_targets, vec![Some(first.clone()), None, Some(first.clone())]);
    for moved in ["a", "c"] {
        assert_eq!(store.get_manifest(&repo, &by_tag(moved)).await.unwrap().unwrap().digest, second);
    }
    assert_eq!(store.get_manifest(&repo, &by_tag("b")).await.unwrap().unwrap().digest, first);
}

/// A consumer registered for one check, whose events it claims and acknowledges at once.
struct Watcher<'s> {
    store: &'s dyn MetadataStore,
    consumer: String,
}

/// What a check compares of an event: kind, repository, digest, tag, previous digest.
type Seen = (EventKind, String, Option<Digest>, Option<String>, Option<Digest>);

fn seen(event: &Event) -> Seen {
    (event.kind, event.repository.clone(), event.digest.clone(), event.tag.clone(), event.previous_digest.clone())
}

impl<'s> Watcher<'s> {
    async fn new(store: &'s dyn MetadataStore) -> Watcher<'s> {
        let consumer = unique("watcher");
        assert!(store.register_consumer(&consumer, 1).await.unwrap());
        assert!(!store.register_consumer(&consumer, 2).await.unwrap(), "registered once");
        Watcher { store, consumer }
    }

    /// Every event recorded since the last call for the repositories in `repos`, in order.
    async fn take(&self, repos: &[&RepositoryName]) -> Vec<Event> {
        let token = unique("take");
        let claimed = self.store.claim_events(&self.consumer, &token, 10_000, 1, 2).await.unwrap();
        let ids: Vec<i64> = claimed.iter().map(|c| c.event.id).collect();
        assert_eq!(self.store.ack_events(&self.consumer, &token, &ids).await.unwrap(), ids.len() as u64);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "in event order");
        let names: Vec<&str> = repos.iter().map(|r| r.as_str()).collect();
        claimed.into_iter().map(|c| c.event).filter(|e| names.contains(&e.repository.as_str())).collect()
    }

    async fn finish(self) {
        assert!(self.store.unregister_consumer(&self.consumer).await.unwrap());
    }
}

/// Every change records exactly its events, with who made it; a change that changes nothing
/// records none.
async fn every_change_records_its_events(store: &dyn MetadataStore) {
    let watcher = Watcher::new(store).await;
    let (repo, pushed_to) = (repo_name(&unique("events")), repo_name(&unique("events-on-push")));
    let e = |kind, repo: &RepositoryName, digest: Option<&Digest>, tag: Option<&str>, previous: Option<&Digest>| {
        (kind, repo.to_string(), digest.cloned(), tag.map(str::to_owned), previous.cloned())
    };

    store.create_repository(&ORIGIN, &repo, "{}", 1).await.unwrap();
    store.ensure_repository(&ORIGIN, &repo, "{}", 1).await.unwrap();
    store.ensure_repository(&ORIGIN, &pushed_to, "{}", 1).await.unwrap();
    let update = SettingsUpdate { settings: "{\"x\":1}", expected_version: 0, changed: &["x", "y"] };
    store.set_repository_settings(&ORIGIN, &repo, update).await.unwrap();
    let events = watcher.take(&[&repo, &pushed_to]).await;
    assert_eq!(
        events.iter().map(seen).collect::<Vec<_>>(),
        [
            e(EventKind::RepositoryCreated, &repo, None, None, None),
            e(EventKind::RepositoryCreated, &pushed_to, None, None, None),
            e(EventKind::SettingsChanged, &repo, None, None, None),
        ]
    );
    assert_eq!(events[2].detail.as_deref(), Some(r#"{"changed":["x","y"]}"#));
    for event in &events {
        assert_eq!(
            (event.actor.as_str(), event.access_key_id.as_ref(), event.request_id.as_str()),
            (ORIGIN.actor.as_str(), ORIGIN.access_key_id.as_ref(), ORIGIN.request_id.as_str())
        );
    }

    let (layer, spare) = (blob(&unique("event-layer")), blob(&unique("event-spare")));
    store.link_blob(&repo, &layer, 4, 1).await.unwrap();
    store.link_blob(&repo, &spare, 4, 1).await.unwrap();
    let blobs = [(layer.clone(), 4)];
    let ((c1, m1), (c2, m2)) = (manifest_bytes(&unique("event-m1")), manifest_bytes(&unique("event-m2")));
    let (v1, latest) = (tag("v1"), tag("latest"));
    let both = vec![PutTag { tag: &v1, immutable: false }, PutTag { tag: &latest, immutable: false }];
    let put = PutManifest { artifact_type: Some("application/x.kind"), ..image_put(&repo, &m1, &c1, &blobs, None, 2) };
    store.put_manifest(&ORIGIN, PutManifest { tags: both, ..put.clone() }).await.unwrap();
    store.put_manifest(&ORIGIN, image_put(&repo, &m2, &c2, &blobs, Some(&latest), 3)).await.unwrap();
    store.put_manifest(&ORIGIN, image_put(&repo, &m2, &c2, &blobs, Some(&latest), 4)).await.unwrap();
    store
        .put_manifest(&ORIGIN, PutManifest { tags: vec![PutTag { tag: &v1, immutable: false }], ..put })
        .await
        .unwrap();
    let events = watcher.take(&[&repo]).await;
    assert_eq!(
        events.iter().map(seen).collect::<Vec<_>>(),
        [
            e(EventKind::ManifestPushed, &repo, Some(&m1), None, None),
            e(EventKind::TagSet, &repo, Some(&m1), Some("v1"), None),
            e(EventKind::TagSet, &repo, Some(&m1), Some("latest"), None),
            e(EventKind::ManifestPushed, &repo, Some(&m2), None, None),
            e(EventKind::TagSet, &repo, Some(&m2), Some("latest"), Some(&m1)),
        ],
        "re-pushing what is there already records nothing"
    );
    assert_eq!(
        (events[0].media_type.as_deref(), events[0].artifact_type.as_deref()),
        (Some(IMAGE), Some("application/x.kind"))
    );
    assert_eq!(events[2].artifact_type.as_deref(), Some("application/x.kind"), "a tag event describes its image");

    store.delete_tag(&ORIGIN, &repo, &v1).await.unwrap();
    store.delete_manifest(&ORIGIN, &repo, &m1).await.unwrap();
    store.delete_manifest(&ORIGIN, &repo, &m2).await.unwrap();
    store.unlink_blob(&ORIGIN, &repo, &spare).await.unwrap();
    store.delete_repository(&ORIGIN, &repo, true).await.unwrap();
    store.delete_repository(&ORIGIN, &pushed_to, false).await.unwrap();
    let events = watcher.take(&[&repo, &pushed_to]).await;
    assert_eq!(
        events.iter().map(seen).collect::<Vec<_>>(),
        [
            e(EventKind::TagDeleted, &repo, Some(&m1), Some("v1"), None),
            e(EventKind::ManifestDeleted, &repo, Some(&m1), None, None),
            e(EventKind::ManifestDeleted, &repo, Some(&m2), None, None),
            e(EventKind::BlobDeleted, &repo, Some(&spare), None, None),
            e(EventKind::RepositoryDeleted, &repo, None, None, None),
            e(EventKind::RepositoryDeleted, &pushed_to, None, None, None),
        ]
    );
    assert_eq!(events[1].detail.as_deref(), Some(r#"{"tags":[]}"#));
    assert_eq!(events[2].detail.as_deref(), Some(r#"{"tags":["latest"]}"#), "the tags that went with it");
    assert_eq!(events[2].media_type.as_deref(), Some(IMAGE));
    watcher.finish().await;
}

/// A change that fails changes nothing, so it records nothing either.
async fn failed_changes_record_nothing(store: &dyn MetadataStore) {
    let repo = new_repo(store, "failing-events").await;
    let watcher = Watcher::new(store).await;
    let label = unique("failing-events");
    let image = push_image(store, &repo, &label, 3, Some(&tag("fixed"))).await;
    let index = push_index(store, &repo, &unique("failing-index"), std::slice::from_ref(&image)).await.unwrap();
    let setup = watcher.take(&[&repo]).await;
    assert_eq!(setup.len(), 3, "pushed, tagged, index pushed: {setup:?}");

    assert!(store.create_repository(&ORIGIN, &repo, "{}", 1).await.is_err());
    let (content, digest) = manifest_bytes(&unique("failing-put"));
    let ghost = [(blob(&unique("ghost")), 1)];
    let fixed = tag("fixed");
    assert!(store.put_manifest(&ORIGIN, image_put(&repo, &digest, &content, &ghost, None, 1)).await.is_err());
    let moved = immutable_tags(image_put(&repo, &digest, &content, &[], Some(&fixed), 1));
    assert!(store.put_manifest(&ORIGIN, moved).await.is_err());
    assert!(store.delete_manifest(&ORIGIN, &repo, &image).await.is_err(), "the index lists it");
    assert!(store.delete_manifest(&ORIGIN, &repo, &digest).await.is_err(), "never stored");
    assert_eq!(store.delete_tag(&ORIGIN, &repo, &tag("absent")).await.unwrap(), None);
    let stale = SettingsUpdate { settings: "{}", expected_version: 41, changed: &["x"] };
    assert!(store.set_repository_settings(&ORIGIN, &repo, stale).await.is_err());
    let layer = blob(&format!("{label}-layer"));
    assert!(store.unlink_blob(&ORIGIN, &repo, &layer).await.is_err(), "the image needs it");
    assert!(!store.unlink_blob(&ORIGIN, &repo, &blob(&unique("unlinked"))).await.unwrap());
    assert!(store.delete_repository(&ORIGIN, &repo, false).await.is_err(), "not empty");
    assert!(watcher.take(&[&repo]).await.is_empty());

    store.delete_manifest(&ORIGIN, &repo, &index).await.unwrap();
    assert_eq!(watcher.take(&[&repo]).await.len(), 1);
    watcher.finish().await;
}

/// A pushed manifest awaits a consumer's delivery until acknowledged (a release leaves it due);
/// one a replication push made never does.
async fn awaited_deliveries(store: &dyn MetadataStore) {
    let consumer = unique("awaited");
    store.register_consumer(&consumer, 1).await.unwrap();
    let (r1, r2) = (repo_name(&unique("awaited-a")), repo_name(&unique("awaited-b")));
    let replicated = Origin { by_replication: true, ..ORIGIN.clone() };
    store.create_repository(&ORIGIN, &r1, "{}", 1).await.unwrap();
    store.create_repository(&ORIGIN, &r2, "{}", 1).await.unwrap();
    let ((content, digest), (other_content, other)) = (manifest_bytes(&unique("a")), manifest_bytes(&unique("b")));
    store.put_manifest(&ORIGIN, image_put(&r1, &digest, &content, &[], None, 10)).await.unwrap();
    store.put_manifest(&replicated, image_put(&r2, &other, &other_content, &[], None, 10)).await.unwrap();
    let awaits = |repo: &RepositoryName, digest: &Digest| {
        let (consumer, repo, digest) = (consumer.clone(), repo.to_string(), digest.to_string());
        async move { store.awaits_delivery(&consumer, &repo, &digest).await.unwrap() }
    };
    assert!(awaits(&r1, &digest).await);
    assert!(!awaits(&r2, &other).await, "made by replication");
    assert!(!awaits(&r2, &digest).await, "another repository");
    assert!(!store.awaits_delivery(&unique("nobody"), r1.as_str(), digest.as_str()).await.unwrap());
    let claimed = store.claim_events(&consumer, "t", 100, 1, 2).await.unwrap();
    let ids: Vec<i64> = claimed.iter().map(|c| c.event.id).collect();
    store.release_events(&consumer, "t", &ids, 0).await.unwrap();
    assert!(awaits(&r1, &digest).await, "released, still due");
    let claimed = store.claim_events(&consumer, "u", 100, 1, 2).await.unwrap();
    let ids: Vec<i64> = claimed.iter().map(|c| c.event.id).collect();
    assert_eq!(store.ack_events(&consumer, "u", &ids).await.unwrap(), ids.len() as u64);
    assert!(!awaits(&r1, &digest).await, "acknowledged");
    assert!(store.unregister_consumer(&consumer).await.unwrap());
    store.delete_repository(&ORIGIN, &r1, true).await.unwrap();
    store.delete_repository(&ORIGIN, &r2, true).await.unwrap();
}

/// Claims lease a consumer's events to one claimer at a time per repository, in order; an
/// acknowledgement or release counts only under the claim's own token; a lease that runs out
/// hands the events to the next claim; a release makes them due again later.
async fn event_claims(store: &dyn MetadataStore) {
    let consumer = unique("claims");
    store.register_consumer(&consumer, 1).await.unwrap();
    let (r1, r2) = (repo_name(&unique("claims-a")), repo_name(&unique("claims-b")));
    let settings = |n: i64| SettingsUpdate { settings: "{}", expected_version: n, changed: &["n"] };
    store.create_repository(&ORIGIN, &r1, "{}", 1).await.unwrap();
    // Made by another registry's replication push: its event says so, for the replicators.
    let replicated = Origin { by_replication: true, ..ORIGIN.clone() };
    store.create_repository(&replicated, &r2, "{}", 1).await.unwrap();
    for n in 0..2 {
        store.set_repository_settings(&ORIGIN, &r1, settings(n)).await.unwrap();
        store.set_repository_settings(&ORIGIN, &r2, settings(n)).await.unwrap();
    }
    let ids = |claimed: &[crate::ClaimedEvent]| claimed.iter().map(|c| c.event.id).collect::<Vec<_>>();
    let repos = |claimed: &[crate::ClaimedEvent]| {
        claimed.iter().map(|c| c.event.repository.clone()).collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>()
    };

    // One claimer takes r1's oldest event; another may not overtake it with r1's later ones.
    assert_eq!(store.pending_events(&consumer).await.unwrap(), 6, "two creations, four settings changes");
    let a = store.claim_events(&consumer, "a", 1, 10, 20).await.unwrap();
    assert_eq!(store.pending_events(&consumer).await.unwrap(), 6, "a leased event is still pending");
    assert_eq!((repos(&a), a[0].event.kind, a[0].attempt), (vec![r1.to_string()], EventKind::RepositoryCreated, 1));
    let b = store.claim_events(&consumer, "b", 100, 10, 20).await.unwrap();
    assert_eq!(repos(&b), vec![r2.to_string()], "r1 is leased to a");
    assert_eq!(b.len(), 3, "r2's events, all of them: {b:?}");
    let by_replication: Vec<bool> = b.iter().map(|c| c.event.by_replication).collect();
    assert_eq!(by_replication, [true, false, false], "only the creation came by replication");
    assert!(store.claim_events(&consumer, "c", 100, 10, 20).await.unwrap().is_empty(), "everything is leased");

    assert_eq!(store.ack_events(&consumer, "b", &ids(&a)).await.unwrap(), 0, "not b's");
    assert_eq!(store.ack_events(&consumer, "a", &ids(&a)).await.unwrap(), 1);
    assert_eq!(store.ack_events(&consumer, "b", &ids(&b)).await.unwrap(), 3);
    assert_eq!(store.pending_events(&consumer).await.unwrap(), 2);

    // A released event is due again at its retry time, with the ones after it.
    let c = store.claim_events(&consumer, "c", 100, 10, 20).await.unwrap();
    assert_eq!((repos(&c), c.len()), (vec![r1.to_string()], 2));
    assert_eq!(store.release_events(&consumer, "c", &ids(&c), 50).await.unwrap(), 2);
    assert!(store.claim_events(&consumer, "d", 100, 49, 60).await.unwrap().is_empty(), "not due before 50");
    let d = store.claim_events(&consumer, "d", 100, 50, 60).await.unwrap();
    assert_eq!((ids(&d), d[0].attempt), (ids(&c), 2));

    // d's lease runs out at 60 (its claimer died): e gets the events, d's late ack counts nothing.
    assert!(store.claim_events(&consumer, "e", 100, 59, 90).await.unwrap().is_empty());
    let e = store.claim_events(&consumer, "e", 100, 60, 90).await.unwrap();
    assert_eq!((ids(&e), e[0].attempt), (ids(&c), 3));
    assert_eq!(store.ack_events(&consumer, "d", &ids(&d)).await.unwrap(), 0);
    assert_eq!(store.release_events(&consumer, "d", &ids(&d), 0).await.unwrap(), 0);
    assert_eq!(store.ack_events(&consumer, "e", &ids(&e)).await.unwrap(), 2);
    assert!(store.claim_events(&consumer, "f", 100, i64::MAX, i64::MAX).await.unwrap().is_empty());

    // Delivered events can be pruned; one a consumer has not acknowledged stays.
    let other = unique("claims-other");
    store.register_consumer(&other, 1).await.unwrap();
    store.delete_repository(&ORIGIN, &r1, true).await.unwrap();
    store.prune_events(i64::MAX).await.unwrap();
    let pending = store.claim_events(&other, "g", 100, 1, 2).await.unwrap();
    assert_eq!(pending.iter().map(|c| c.event.kind).collect::<Vec<_>>(), [EventKind::RepositoryDeleted]);
    assert!(store.unregister_consumer(&other).await.unwrap());
    assert!(!store.unregister_consumer(&other).await.unwrap());
    assert!(store.unregister_consumer(&consumer).await.unwrap());
    assert!(store.claim_events(&consumer, "h", 100, 1, 2).await.unwrap().is_empty(), "gone with its consumer");
    store.delete_repository(&ORIGIN, &r2, true).await.unwrap();
}

/// Cache rules are created once, updated and deleted by prefix, listed sorted; secrets are
/// replaced in place.
/// A consumer that no server claims for any more can be removed, which lets the events it held
/// back be pruned; one registered or claimed for since the cut-off is kept.
async fn consumer_removal(store: &dyn MetadataStore) {
    use crate::ConsumerRemoval::{Active, Removed, Unknown};
    let witness = Watcher::new(store).await;
    let (gone, busy) = (unique("consumer-gone"), unique("consumer-busy"));
    assert!(store.register_consumer(&gone, 1_000).await.unwrap());
    assert!(store.register_consumer(&busy, 1_000).await.unwrap());
    let repo = repo_name(&unique("consumers"));
    store.create_repository(&ORIGIN, &repo, "{}", 1).await.unwrap();
    let far_future = i64::MAX / 2;

    // A claim records itself (at most every CLAIM_RECORD_INTERVAL).
    let now = crate::events::CLAIM_RECORD_INTERVAL * 10;
    store.claim_events(&busy, &unique("token"), 1, now, now + 1).await.unwrap();
    let listed = store.list_consumers().await.unwrap();
    let record = |name: &str| listed.iter().find(|c| c.name == name).cloned().unwrap();
    assert_eq!((record(&busy).registered_at, record(&busy).last_claimed_at), (1_000, Some(now)));
    assert_eq!((record(&gone).last_claimed_at, record(&gone).pending), (None, 1));
    assert!(listed.windows(2).all(|w| w[0].name < w[1].name), "by name");

    assert_eq!(store.remove_idle_consumer(&busy, now).await.unwrap(), Active { last_active: now });
    assert_eq!(store.remove_idle_consumer(&gone, 1_000).await.unwrap(), Active { last_active: 1_000 });
    assert_eq!(store.remove_idle_consumer(&unique("never"), now).await.unwrap(), Unknown);

    // Once the witness delivered it, only the two consumers hold the event back.
    assert!(witness.take(&[&repo]).await.iter().any(|e| e.kind == EventKind::RepositoryCreated));
    store.prune_events(far_future).await.unwrap();
    assert_eq!(store.prune_events(far_future).await.unwrap(), 0, "held back by the two consumers");
    assert_eq!(store.remove_idle_consumer(&gone, now).await.unwrap(), Removed);
    assert_eq!(store.remove_idle_consumer(&busy, now + 1).await.unwrap(), Removed);
    let left = store.list_consumers().await.unwrap();
    assert!(left.iter().all(|c| c.name != gone && c.name != busy));
    assert_eq!(store.pending_events(&gone).await.unwrap(), 0, "its deliveries went with it");
    // In a database no one else uses, nothing holds the event any more (a shared one may have
    // consumers of its own registered before it).
    if left.iter().all(|c| c.name == witness.consumer) {
        assert_eq!(store.prune_events(far_future).await.unwrap(), 1, "the repository's creation is pruned");
    }
    witness.finish().await;
}

async fn pull_through_configuration(store: &dyn MetadataStore) {
    let (a, b) = (unique("ptc-b"), unique("ptc-a"));
    let created = store.create_cache_rule(&a, r#"{"v":1}"#, 10).await.unwrap();
    assert_eq!((created.created_at, created.updated_at, created.document.as_str()), (10, 10, r#"{"v":1}"#));
    assert!(matches!(store.create_cache_rule(&a, "{}", 11).await, Err(MetaError::CacheRuleExists(p)) if p == a));
    store.create_cache_rule(&b, "{}", 12).await.unwrap();
    let updated = store.update_cache_rule(&a, r#"{"v":2}"#, 20).await.unwrap();
    assert_eq!((updated.created_at, updated.updated_at, updated.document.as_str()), (10, 20, r#"{"v":2}"#));
    let missing = unique("ptc-missing");
    assert!(matches!(store.update_cache_rule(&missing, "{}", 1).await, Err(MetaError::CacheRuleNotFound(_))));
    let listed: Vec<String> =
        store.cache_rules().await.unwrap().into_iter().map(|r| r.prefix).filter(|p| *p == a || *p == b).collect();
    assert_eq!(listed, vec![b.clone(), a.clone()], "sorted by prefix");
    assert_eq!(store.delete_cache_rule(&a).await.unwrap().document, r#"{"v":2}"#);
    assert!(matches!(store.delete_cache_rule(&a).await, Err(MetaError::CacheRuleNotFound(_))));
    store.delete_cache_rule(&b).await.unwrap();

    let name = unique("secret");
    assert_eq!(store.upstream_secret(&name).await.unwrap(), None);
    store.put_upstream_secret(&name, b"one", 1).await.unwrap();
    store.put_upstream_secret(&name, b"two", 2).await.unwrap();
    assert_eq!(store.upstream_secret(&name).await.unwrap().as_deref(), Some(&b"two"[..]));

    // Counters add up across flushes (and servers); the latest upstream error stays.
    let rule = unique("ptc-stats");
    let flush = |hits, error: Option<(crate::Millis, &str)>| {
        let delta = crate::CacheStatsDelta {
            hits,
            misses: 1,
            bytes_from_cache: 10,
            bytes_from_upstream: 100,
            last_error: error.map(|(at, m)| (at, m.to_owned())),
        };
        vec![(rule.clone(), delta)]
    };
    store.add_cache_stats(&flush(2, Some((50, "later")))).await.unwrap();
    store.add_cache_stats(&flush(3, Some((40, "earlier, flushed late")))).await.unwrap();
    store.add_cache_stats(&flush(0, None)).await.unwrap();
    let stats = store.cache_stats().await.unwrap().into_iter().find(|(p, _)| *p == rule).unwrap().1;
    assert_eq!(
        (stats.hits, stats.misses, stats.bytes_from_cache, stats.bytes_from_upstream),
        (5, 3, 30, 300),
        "increments add up"
    );
    assert_eq!(stats.last_error, Some((50, "later".to_owned())));
}

async fn creation_templates(store: &dyn MetadataStore) {
    let (a, b) = (unique("rct-b"), unique("rct-a"));
    let created = store.create_template(&a, r#"{"v":1}"#, 10).await.unwrap();
    assert_eq!((created.created_at, created.updated_at, created.document.as_str()), (10, 10, r#"{"v":1}"#));
    assert!(matches!(store.create_template(&a, "{}", 11).await, Err(MetaError::TemplateExists(p)) if p == a));
    store.create_template(&b, "{}", 12).await.unwrap();
    let updated = store.update_template(&a, r#"{"v":2}"#, 20).await.unwrap();
    assert_eq!((updated.created_at, updated.updated_at, updated.document.as_str()), (10, 20, r#"{"v":2}"#));
    let missing = unique("rct-missing");
    assert!(matches!(store.update_template(&missing, "{}", 1).await, Err(MetaError::TemplateNotFound(_))));
    let listed: Vec<String> =
        store.templates().await.unwrap().into_iter().map(|t| t.prefix).filter(|p| *p == a || *p == b).collect();
    assert_eq!(listed, vec![b.clone(), a.clone()], "sorted by prefix");

    // The chooser sees the stored templates, in the creating transaction, and its document is
    // the new repository's settings; the creation is recorded like any other.
    let watcher = Watcher::new(store).await;
    let repo = repo_name(&format!("{a}/app"));
    let chooser = |templates: &[crate::TemplateRecord]| -> Result<String, String> {
        let chosen = templates.iter().find(|t| repo_name(&format!("{}/app", t.prefix)) == repo).ok_or("none")?;
        Ok(chosen.document.clone())
    };
    let (repository, fresh) = store.ensure_repository_from_templates(&ORIGIN, &repo, &chooser, 30).await.unwrap();
    assert!(fresh);
    assert_eq!((repository.settings.as_str(), repository.created_at), (r#"{"v":2}"#, 30));
    assert_eq!(store.get_repository(&repo).await.unwrap().unwrap().settings, r#"{"v":2}"#);
    let events: Vec<Seen> = watcher.take(&[&repo]).await.iter().map(seen).collect();
    assert_eq!(events, [(EventKind::RepositoryCreated, repo.to_string(), None, None, None)]);
    // An existing repository is returned as it is, whatever the templates say now.
    store.update_template(&a, r#"{"v":3}"#, 40).await.unwrap();
    let (again, fresh) = store.ensure_repository_from_templates(&ORIGIN, &repo, &chooser, 41).await.unwrap();
    assert!(!fresh);
    assert_eq!(again.settings, r#"{"v":2}"#);
    // A chooser that refuses creates nothing.
    let refused = repo_name(&unique("rct-refused"));
    let refuse = |_: &[crate::TemplateRecord]| -> Result<String, String> { Err("unusable".into()) };
    let err = store.ensure_repository_from_templates(&ORIGIN, &refused, &refuse, 50).await.unwrap_err();
    assert!(matches!(err, MetaError::TemplateUnusable(ref reason) if reason == "unusable"), "{err}");
    assert!(store.get_repository(&refused).await.unwrap().is_none());

    assert_eq!(store.delete_template(&a).await.unwrap().document, r#"{"v":3}"#);
    assert!(matches!(store.delete_template(&a).await, Err(MetaError::TemplateNotFound(_))));
    store.delete_template(&b).await.unwrap();
    store.delete_repository(&ORIGIN, &repo, true).await.unwrap();
    watcher.finish().await;
}

async fn pull_time_exclusions(store: &dyn MetadataStore) {
    let (a, b) = (unique("arn:aws:iam::123456789012:user/z"), unique("arn:aws:iam::123456789012:role/y"));
    assert_eq!(store.register_pull_exclusion(&a, 5).await.unwrap(), 5);
    assert!(matches!(store.register_pull_exclusion(&a, 6).await, Err(MetaError::ExclusionExists(p)) if p == a));
    store.register_pull_exclusion(&b, 7).await.unwrap();
    let listed: Vec<(String, i64)> =
        store.pull_exclusions().await.unwrap().into_iter().filter(|(p, _)| *p == a || *p == b).collect();
    assert_eq!(listed, vec![(b.clone(), 7), (a.clone(), 5)], "sorted by ARN");
    store.deregister_pull_exclusion(&a).await.unwrap();
    assert!(matches!(store.deregister_pull_exclusion(&a).await, Err(MetaError::ExclusionNotFound(_))));
    store.deregister_pull_exclusion(&b).await.unwrap();
    assert!(store.pull_exclusions().await.unwrap().iter().all(|(p, _)| *p != a && *p != b));
}
