//! `subject`, the `OCI-Subject` header and the referrers API.

mod common;

use common::*;
use serde_json::{Value, json};

const SBOM: &str = "application/vnd.example.sbom.v1";
const SIGNATURE: &str = "application/vnd.example.signature.v1";
const CUSTOM_CONFIG: &str = "application/vnd.example.config.v1+json";

/// Pushes an artifact manifest referring to `subject`; returns (bytes, digest).
async fn push_artifact(
    srv: &Server,
    repo: &str,
    subject: &Value,
    artifact_type: Option<&str>,
    config_media_type: &str,
    annotations: Option<Value>,
    tag: Option<&str>,
) -> (Vec<u8>, String) {
    let config = if config_media_type == OCI_EMPTY { b"{}".to_vec() } else { config_json("amd64") };
    let layer = random_bytes(200);
    push_blob(srv, repo, &config).await;
    push_blob(srv, repo, &layer).await;
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config_media_type, &config),
        "layers": [descriptor(artifact_type.unwrap_or(OCTET_STREAM), &layer)],
        "subject": subject,
    });
    if let Some(t) = artifact_type {
        m["artifactType"] = json!(t);
    }
    if let Some(a) = annotations {
        m["annotations"] = a;
    }
    let bytes = serde_json::to_vec(&m).unwrap();
    let digest = sha256_digest(&bytes);
    let reference = tag.map(String::from).unwrap_or_else(|| digest.clone());
    let r = put_manifest(srv, repo, &reference, OCI_MANIFEST, &bytes).await;
    r.expect_status(201);
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(
        r.header("oci-subject"),
        subject["digest"].as_str(),
        "PUT of a manifest with a subject must answer OCI-Subject:\n{}",
        r.describe()
    );
    (bytes, digest)
}

/// `artifact_type` is sent percent-encoded: media types contain '+', which a query decodes as ' '.
async fn referrers(srv: &Server, repo: &str, digest: &str, artifact_type: Option<&str>) -> Resp {
    let mut rb = srv.get(&format!("/v2/{repo}/referrers/{digest}"));
    if let Some(t) = artifact_type {
        rb = rb.query(&[("artifactType", t)]);
    }
    let r = send(rb).await;
    r.expect_status(200);
    assert_eq!(r.header("content-type"), Some(OCI_INDEX), "{}", r.describe());
    let v = r.json();
    assert_eq!(v["schemaVersion"], 2, "{}", r.describe());
    assert_eq!(v["mediaType"], OCI_INDEX, "{}", r.describe());
    assert!(v["manifests"].is_array(), "manifests must be a list: {}", r.describe());
    r
}

fn entry<'a>(list: &'a Value, digest: &str) -> &'a Value {
    list["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["digest"] == digest)
        .unwrap_or_else(|| panic!("{digest} not listed in {list}"))
}

#[tokio::test]
async fn oci_subject_header_only_for_manifests_with_a_subject() {
    let srv = Server::start();
    let config = config_json("amd64");
    push_blob(&srv, "hdr", &config).await;
    let plain = oci_manifest(&descriptor(OCI_CONFIG, &config), &[]);
    let r = put_manifest(&srv, "hdr", "plain", OCI_MANIFEST, &plain).await;
    r.expect_status(201);
    assert_eq!(r.header("oci-subject"), None);
    // push_artifact asserts the header.
    let subject = descriptor(OCI_MANIFEST, &plain);
    push_artifact(&srv, "hdr", &subject, Some(SBOM), OCI_EMPTY, None, None).await;
}

#[tokio::test]
async fn referrers_list_every_referrer_with_its_descriptor() {
    let srv = Server::start();
    let subject = push_image(&srv, "refs", Some("image")).await;
    let subject_desc = subject.descriptor();
    let ann = json!({"org.opencontainers.conformance": "hello conformance test", "org.example.n": "1"});

    let (sbom, sbom_d) =
        push_artifact(&srv, "refs", &subject_desc, Some(SBOM), OCI_EMPTY, Some(ann.clone()), Some("tagged-artifact1"))
            .await;
    let (sig, sig_d) = push_artifact(&srv, "refs", &subject_desc, Some(SIGNATURE), OCI_EMPTY, None, None).await;
    // No artifactType: falls back to the config media type.
    let (legacy, legacy_d) = push_artifact(&srv, "refs", &subject_desc, None, CUSTOM_CONFIG, None, None).await;

    // An index can be a referrer too.
    let child = push_image(&srv, "refs", None).await;
    let mut index: Value =
        serde_json::from_slice(&index_json(OCI_INDEX, &[platform_entry(OCI_MANIFEST, &child.manifest, "amd64")]))
            .unwrap();
    index["artifactType"] = json!(SBOM);
    index["subject"] = subject_desc.clone();
    index["annotations"] = json!({"kind": "index-referrer"});
    let index = serde_json::to_vec(&index).unwrap();
    let r = put_manifest(&srv, "refs", &sha256_digest(&index), OCI_INDEX, &index).await;
    r.expect_status(201);
    assert_eq!(r.header("oci-subject"), Some(subject.digest.as_str()));
    let index_d = sha256_digest(&index);

    // An unrelated manifest is not listed.
    push_image(&srv, "refs", Some("unrelated")).await;

    let r = referrers(&srv, "refs", &subject.digest, None).await;
    let list = r.json();
    assert_eq!(list["manifests"].as_array().unwrap().len(), 4, "{list}");
    assert!(r.header("oci-filters-applied").is_none());

    let e = entry(&list, &sbom_d);
    assert_eq!(e["mediaType"], OCI_MANIFEST);
    assert_eq!(e["size"], sbom.len());
    assert_eq!(e["artifactType"], SBOM);
    assert_eq!(e["annotations"], ann);

    let e = entry(&list, &sig_d);
    assert_eq!(e["size"], sig.len());
    assert_eq!(e["artifactType"], SIGNATURE);
    assert!(e.get("annotations").is_none_or(|a| a.is_null() || a == &json!({})), "{e}");

    let e = entry(&list, &legacy_d);
    assert_eq!(e["size"], legacy.len());
    assert_eq!(e["artifactType"], CUSTOM_CONFIG, "artifactType must fall back to config.mediaType: {e}");

    let e = entry(&list, &index_d);
    assert_eq!(e["mediaType"], OCI_INDEX);
    assert_eq!(e["size"], index.len());
    assert_eq!(e["artifactType"], SBOM);
    assert_eq!(e["annotations"], json!({"kind": "index-referrer"}));
}

#[tokio::test]
async fn artifact_type_filter() {
    let srv = Server::start();
    let subject = push_image(&srv, "filter", Some("image")).await;
    let d = subject.descriptor();
    let (_, sbom1) = push_artifact(&srv, "filter", &d, Some(SBOM), OCI_EMPTY, None, None).await;
    let (_, sbom2) = push_artifact(&srv, "filter", &d, Some(SBOM), OCI_EMPTY, None, None).await;
    push_artifact(&srv, "filter", &d, Some(SIGNATURE), OCI_EMPTY, None, None).await;
    let (_, legacy) = push_artifact(&srv, "filter", &d, None, CUSTOM_CONFIG, None, None).await;

    let r = referrers(&srv, "filter", &subject.digest, Some(SBOM)).await;
    assert_eq!(r.header("oci-filters-applied"), Some("artifactType"), "{}", r.describe());
    let mut got: Vec<String> =
        r.json()["manifests"].as_array().unwrap().iter().map(|e| e["digest"].as_str().unwrap().to_string()).collect();
    got.sort();
    let mut want = vec![sbom1, sbom2];
    want.sort();
    assert_eq!(got, want);

    // The fallback type is what the filter matches on.
    let r = referrers(&srv, "filter", &subject.digest, Some(CUSTOM_CONFIG)).await;
    let list = r.json();
    assert_eq!(list["manifests"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["manifests"][0]["digest"], legacy);

    let r = referrers(&srv, "filter", &subject.digest, Some("application/vnd.none")).await;
    assert_eq!(r.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(r.json()["manifests"], json!([]));
}

#[tokio::test]
async fn unknown_subject_and_unknown_repository_give_an_empty_index() {
    let srv = Server::start();
    push_image(&srv, "present", Some("v1")).await;
    let unknown = sha256_digest(b"nobody refers to this");
    let r = referrers(&srv, "present", &unknown, None).await;
    assert_eq!(r.json()["manifests"], json!([]));
    let r = referrers(&srv, "never/pushed", &unknown, None).await;
    assert_eq!(r.json()["manifests"], json!([]));
    let r = referrers(&srv, "never/pushed", &unknown, Some(SBOM)).await;
    assert_eq!(r.json()["manifests"], json!([]));
}

#[tokio::test]
async fn invalid_digest_is_400() {
    let srv = Server::start();
    push_image(&srv, "present", Some("v1")).await;
    for bad in ["latest", "sha256:abc", "sha256:XYZ"] {
        let r = send(srv.get(&format!("/v2/present/referrers/{bad}"))).await;
        r.expect_status(400);
    }
}

#[tokio::test]
async fn referrer_to_a_missing_subject_is_accepted_and_listed() {
    let srv = Server::start();
    let missing = json!({"mediaType": OCI_MANIFEST, "size": 123, "digest": sha256_digest(b"missing content")});
    let (_, d) =
        push_artifact(&srv, "missing-subject", &missing, Some(SBOM), OCI_EMPTY, None, Some("tagged-artifact")).await;
    let r = referrers(&srv, "missing-subject", missing["digest"].as_str().unwrap(), None).await;
    let list = r.json();
    assert_eq!(list["manifests"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["manifests"][0]["digest"], d);
}

#[tokio::test]
async fn deleted_referrers_disappear_and_lists_are_per_repository() {
    let srv = Server::start();
    let subject = push_image(&srv, "one", Some("image")).await;
    let (_, keep) = push_artifact(&srv, "one", &subject.descriptor(), Some(SBOM), OCI_EMPTY, None, None).await;
    let (_, gone) = push_artifact(&srv, "one", &subject.descriptor(), Some(SBOM), OCI_EMPTY, None, None).await;

    // The same subject digest referenced from another repository.
    let r = send(srv.post(&format!("/v2/two/blobs/uploads/?mount={}&from=one", sha256_digest(&subject.config)))).await;
    r.expect_status(201);
    let r =
        send(srv.post(&format!("/v2/two/blobs/uploads/?mount={}&from=one", sha256_digest(&subject.layers[0])))).await;
    r.expect_status(201);
    push_manifest(&srv, "two", "image", OCI_MANIFEST, &subject.manifest).await;
    let (_, other) = push_artifact(&srv, "two", &subject.descriptor(), Some(SBOM), OCI_EMPTY, None, None).await;

    send(srv.delete(&format!("/v2/one/manifests/{gone}"))).await.expect_status(202);
    let list = referrers(&srv, "one", &subject.digest, None).await.json();
    let digests: Vec<&str> =
        list["manifests"].as_array().unwrap().iter().map(|e| e["digest"].as_str().unwrap()).collect();
    assert_eq!(digests, vec![keep.as_str()]);

    let list = referrers(&srv, "two", &subject.digest, None).await.json();
    let digests: Vec<&str> =
        list["manifests"].as_array().unwrap().iter().map(|e| e["digest"].as_str().unwrap()).collect();
    assert_eq!(digests, vec![other.as_str()]);
}

#[tokio::test]
async fn referrers_survive_the_subject_being_deleted() {
    let srv = Server::start();
    let subject = push_image(&srv, "orphan", Some("image")).await;
    let (_, d) = push_artifact(&srv, "orphan", &subject.descriptor(), Some(SIGNATURE), OCI_EMPTY, None, None).await;
    send(srv.delete(&format!("/v2/orphan/manifests/{}", subject.digest))).await.expect_status(202);
    let list = referrers(&srv, "orphan", &subject.digest, None).await.json();
    assert_eq!(list["manifests"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["manifests"][0]["digest"], d);
}

/// Referrers whose annotations are megabytes come a page at a time (at most 4 MiB of
/// annotations each, at least one referrer), the `Link` header naming the next page, the
/// artifactType filter kept; following the links lists each referrer once, annotations whole.
#[tokio::test]
async fn referrers_with_large_annotations_are_paginated() {
    let srv = Server::start();
    let repo = "refpages/app";
    let subject = push_image(&srv, repo, Some("v1")).await;
    let mut pushed = Vec::new();
    for i in 0..3 {
        let note = format!("{i}{}", "x".repeat(1_500_000));
        let annotations = json!({"org.example.note": note});
        let (_, digest) =
            push_artifact(&srv, repo, &subject.descriptor(), Some(SBOM), OCI_EMPTY, Some(annotations), None).await;
        pushed.push((digest, note));
    }
    push_artifact(&srv, repo, &subject.descriptor(), Some(SIGNATURE), OCI_EMPTY, None, None).await;
    pushed.sort();

    let mut listed = Vec::new();
    let mut path = format!("/v2/{repo}/referrers/{}?artifactType={}", subject.digest, SBOM.replace('+', "%2B"));
    for page in 1.. {
        assert!(page <= 3, "more pages than referrers");
        let r = send(srv.get(&path)).await;
        r.expect_status(200);
        assert_eq!(r.header("oci-filters-applied"), Some("artifactType"), "{}", r.describe());
        let manifests = r.json()["manifests"].as_array().unwrap().clone();
        assert!(
            !manifests.is_empty() && r.text().len() < 4 * 1024 * 1024 + 4096,
            "page {page}: {} bytes",
            r.text().len()
        );
        for m in manifests {
            assert_eq!(m["artifactType"], SBOM);
            listed.push((
                m["digest"].as_str().unwrap().to_owned(),
                m["annotations"]["org.example.note"].as_str().unwrap().to_owned(),
            ));
        }
        let Some(link) = r.header("link") else { break };
        let next = link.strip_prefix('<').and_then(|l| l.split_once(">; rel=\"next\"")).map(|(url, _)| url.to_owned());
        path = next.unwrap_or_else(|| panic!("Link {link:?}"));
        assert!(path.contains("artifactType="), "the filter stays: {path}");
    }
    assert_eq!(listed, pushed, "every referrer once, in digest order, annotations whole");

    // A small page needs no link; a malformed `last` is refused.
    let unfiltered = referrers(&srv, repo, &subject.digest, Some(SIGNATURE)).await;
    assert_eq!((unfiltered.header("link"), unfiltered.json()["manifests"].as_array().unwrap().len()), (None, 1));
    let bad = send(srv.get(&format!("/v2/{repo}/referrers/{}?last=nonsense", subject.digest))).await;
    bad.expect_error(400, "DIGEST_INVALID");
}
