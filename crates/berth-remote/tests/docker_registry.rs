//! Against Debian's `docker-registry` (the reference implementation), with and without htpasswd
//! Basic auth: whole multi-arch images up and down, mounts, chunked uploads, errors.

mod common;

use berth_remote::{Credentials, Error, Mount};
use berth_spec::Digest;
use bytes::Bytes;
use common::image::{
    Blob, by_digest, collect_blob, multiarch, pseudo_random, pull_and_check, push_blob, push_index, tag,
};
use common::{docker_registry, name, remote, stream_of};

#[tokio::test]
async fn a_multiarch_index_round_trips_without_auth() {
    let Some(registry) = docker_registry(None, "a_multiarch_index_round_trips_without_auth") else { return };
    let remote = remote(&registry.url, Credentials::Anonymous);
    remote.ping().await.expect("ping");
    // 2.5 MiB layers with 1 MiB chunks: the PATCH path; the rest go in one PUT.
    let image = multiarch("no-auth", 2_500_000);
    let repo = name("team/app");
    push_index(&remote, &repo, &image, "v1").await.expect("push");
    pull_and_check(&remote, &repo, &image, "v1").await.expect("pull");
    // Pushing again is idempotent (same digests).
    push_index(&remote, &repo, &image, "v1").await.expect("push again");
}

#[tokio::test]
async fn htpasswd_basic_auth_round_trip_and_refusals() {
    let test = "htpasswd_basic_auth_round_trip_and_refusals";
    let Some(registry) = docker_registry(Some(("carol", "carol-pw-9f8e")), test) else { return };
    let repo = name("secured/app");
    let image = multiarch("basic", 300_000);
    let remote = remote(&registry.url, Credentials::basic("carol", "carol-pw-9f8e"));
    push_index(&remote, &repo, &image, "latest").await.expect("push with Basic");
    pull_and_check(&remote, &repo, &image, "latest").await.expect("pull with Basic");

    let wrong = common::remote(&registry.url, Credentials::basic("carol", "not-her-password"));
    let error = wrong.get_manifest(&repo, &tag("latest")).await.unwrap_err();
    assert!(matches!(error, Error::Unauthorized { .. }), "{error:?}");
    assert!(!format!("{error} {error:?}").contains("not-her-password"), "{error:?}");
    assert!(!error.is_unavailable());

    let anonymous = common::remote(&registry.url, Credentials::Anonymous);
    assert!(matches!(anonymous.ping().await, Err(Error::Unauthorized { .. })));
    // A one-shot upload body is never sent before the scheme is known: the POST learns it.
    let blob = Blob::new(pseudo_random("basic-upload", 3_000_000));
    let error = wrong.push_blob(&repo, &blob.digest, 3_000_000, stream_of(blob.bytes.clone(), 65536), None).await;
    assert!(matches!(error, Err(Error::Unauthorized { .. })), "{error:?}");
}

#[tokio::test]
async fn mounts_link_known_blobs_and_fall_back_to_an_upload() {
    let Some(registry) = docker_registry(None, "mounts_link_known_blobs_and_fall_back_to_an_upload") else { return };
    let remote = remote(&registry.url, Credentials::Anonymous);
    let (source, target) = (name("mount/source"), name("mount/target"));
    let blob = Blob::new(pseudo_random("mounted", 200_000));
    push_blob(&remote, &source, &blob).await.expect("push to source");
    assert_eq!(remote.head_blob(&target, &blob.digest).await.unwrap(), None);
    let mount = remote.mount_blob(&target, &blob.digest, &source).await.expect("mount");
    assert!(matches!(mount, Mount::Mounted), "{mount:?}");
    assert_eq!(remote.head_blob(&target, &blob.digest).await.unwrap(), Some(200_000));

    // A blob the source does not have: the registry opens an upload; the blob goes into it.
    let other = Blob::new(pseudo_random("not-mounted", 2_200_000));
    let Mount::Upload(session) = remote.mount_blob(&target, &other.digest, &source).await.expect("mount") else {
        panic!("mounted a blob the source does not have")
    };
    let size = other.bytes.len() as u64;
    remote
        .push_blob(&target, &other.digest, size, stream_of(other.bytes.clone(), 10_000), Some(session))
        .await
        .unwrap();
    assert_eq!(collect_blob(&remote, &target, &other.digest).await.unwrap(), other.bytes);
}

#[tokio::test]
async fn uploads_of_every_size_class() {
    let Some(registry) = docker_registry(None, "uploads_of_every_size_class") else { return };
    let remote = remote(&registry.url, Credentials::Anonymous);
    let repo = name("sizes");
    let chunk = 1024 * 1024;
    // Empty, one byte, exactly one chunk (one PUT), one byte over (PATCH + PATCH), several.
    for size in [0, 1, chunk, chunk + 1, 3 * chunk + 17] {
        let blob = Blob::new(pseudo_random(&format!("size-{size}"), size));
        // Odd piece sizes so chunk boundaries fall inside pieces.
        let body = stream_of(blob.bytes.clone(), 99_991);
        remote.push_blob(&repo, &blob.digest, size as u64, body, None).await.unwrap_or_else(|e| panic!("{size}: {e}"));
        assert_eq!(collect_blob(&remote, &repo, &blob.digest).await.unwrap(), blob.bytes, "size {size}");
    }
}

#[tokio::test]
async fn wrong_content_and_missing_things_are_typed_errors() {
    let Some(registry) = docker_registry(None, "wrong_content_and_missing_things_are_typed_errors") else { return };
    let remote = remote(&registry.url, Credentials::Anonymous);
    let repo = name("errors");
    let blob = Blob::new(pseudo_random("errors", 5000));

    // Bytes that are not the digest: the registry refuses (DIGEST_INVALID), nothing is stored.
    let wrong = Digest::sha256_of(b"something else");
    let error = remote.push_blob(&repo, &wrong, 5000, stream_of(blob.bytes.clone(), 1000), None).await.unwrap_err();
    assert!(
        matches!(&error, Error::Upstream { status: 400, code: Some(code), .. } if code == "DIGEST_INVALID"),
        "{error:?}"
    );
    assert_eq!(remote.head_blob(&repo, &wrong).await.unwrap(), None);

    // A stream shorter than announced fails before the registry commits anything.
    let error =
        remote.push_blob(&repo, &blob.digest, 6000, stream_of(blob.bytes.clone(), 1000), None).await.unwrap_err();
    assert!(matches!(error, Error::InvalidInput(_)), "{error:?}");
    assert_eq!(remote.head_blob(&repo, &blob.digest).await.unwrap(), None);
    // And a failing one says so.
    let failing = futures::stream::iter(vec![Ok(Bytes::from_static(b"abc")), Err("disk unreadable")]);
    let error = remote.push_blob(&repo, &blob.digest, 5000, failing, None).await.unwrap_err();
    assert_eq!(error, Error::Source("disk unreadable".into()));

    // A manifest pushed by a digest that is not its own is refused before sending.
    let manifest_type = "application/vnd.oci.image.manifest.v1+json";
    let error = remote.put_manifest(&repo, &by_digest(&wrong), manifest_type, Bytes::from_static(b"{}")).await;
    assert!(matches!(error, Err(Error::InvalidInput(_))), "{error:?}");
    // A manifest whose blobs are missing: the registry's own error comes through.
    let image = multiarch("missing-blobs", 100);
    let child = &image.children[0].manifest;
    let error = remote
        .put_manifest(
            &repo,
            &by_digest(&child.digest),
            "application/vnd.oci.image.manifest.v1+json",
            child.bytes.clone(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Upstream { status: 400, code: Some(code), .. } if code == "MANIFEST_BLOB_UNKNOWN"),
        "{error:?}"
    );

    let error = remote.get_manifest(&repo, &tag("nope")).await.unwrap_err();
    assert!(matches!(&error, Error::NotFound { code: Some(code), .. } if code == "MANIFEST_UNKNOWN"), "{error:?}");
    assert!(matches!(remote.head_manifest(&repo, &tag("nope")).await, Err(Error::NotFound { .. })));
    let error = remote.get_blob(&repo, &wrong, None).await.unwrap_err();
    assert!(matches!(&error, Error::NotFound { code: Some(code), .. } if code == "BLOB_UNKNOWN"), "{error:?}");
    assert!(matches!(remote.list_tags(&name("never/pushed"), None).await, Err(Error::NotFound { .. })));
}

#[tokio::test]
async fn tags_list_in_pages_and_ranges_read_parts() {
    let Some(registry) = docker_registry(None, "tags_list_in_pages_and_ranges_read_parts") else { return };
    let remote = remote(&registry.url, Credentials::Anonymous);
    let repo = name("tagged");
    let image = multiarch("tags", 1000);
    push_index(&remote, &repo, &image, "t0").await.unwrap();
    let index_type = "application/vnd.oci.image.index.v1+json";
    let mut expected = vec!["t0".to_owned()];
    for i in 1..7 {
        remote.put_manifest(&repo, &tag(&format!("t{i}")), index_type, image.index.bytes.clone()).await.unwrap();
        expected.push(format!("t{i}"));
    }
    for page in [None, Some(1), Some(3), Some(100)] {
        // docker-registry lists an unpaginated answer in storage order.
        let mut tags: Vec<String> =
            remote.list_tags(&repo, page).await.unwrap().iter().map(|t| t.to_string()).collect();
        tags.sort();
        assert_eq!(tags, expected, "page size {page:?}");
    }

    let layer = &image.children[0].layers[0];
    let range = berth_remote::ByteRange { start: 10, end: Some(19) };
    let stream = remote.get_blob(&repo, &layer.digest, Some(range)).await.unwrap();
    let part = stream.content_range().expect("a 206");
    assert_eq!((part.start, part.end, part.total), (10, 19, Some(1000)));
    let bytes: Vec<Bytes> =
        futures::StreamExt::collect::<Vec<_>>(stream).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(bytes.concat(), layer.bytes[10..20]);
}
