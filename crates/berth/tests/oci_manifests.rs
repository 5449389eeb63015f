//! Manifest PUT/GET/HEAD/DELETE for every manifest kind, and PUT validation.

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn put_by_tag_and_get_by_tag_and_digest() {
    let srv = Server::start();
    let img = push_image(&srv, "app/web", Some("v1.0")).await;
    expect_manifest(&srv, "app/web", "v1.0", OCI_MANIFEST, &img.manifest, &img.digest).await;
    expect_manifest(&srv, "app/web", &img.digest, OCI_MANIFEST, &img.manifest, &img.digest).await;
}

#[tokio::test]
async fn put_by_digest() {
    let srv = Server::start();
    let img = push_image(&srv, "bydigest", None).await;
    expect_manifest(&srv, "bydigest", &img.digest, OCI_MANIFEST, &img.manifest, &img.digest).await;
    let tags = send(srv.get("/v2/bydigest/tags/list")).await;
    tags.expect_status(200);
    let listed = tags.json()["tags"].as_array().cloned().unwrap_or_default();
    assert!(listed.is_empty(), "a push by digest creates no tag: {listed:?}");
}

/// `PUT /v2/<name>/manifests/<digest>?tag=a&tag=b` (the distribution spec's tag parameters):
/// every tag lands with the manifest and is echoed as an `OCI-Tag` line, for sha256 and sha512.
#[tokio::test]
async fn put_by_digest_with_tag_parameters() {
    let srv = Server::start();
    for (repo, algorithm) in [("tagparam/sha256", "sha256"), ("tagparam/sha512", "sha512")] {
        let img = push_image(&srv, repo, None).await;
        let digest = if algorithm == "sha512" { sha512_digest(&img.manifest) } else { img.digest.clone() };
        let r = send(
            srv.put(&format!("/v2/{repo}/manifests/{digest}?tag=blue&tag=green&tag=blue"))
                .header("content-type", OCI_MANIFEST)
                .body(img.manifest.clone()),
        )
        .await;
        r.expect_status(201);
        let echoed: Vec<&str> = r.headers.get_all("oci-tag").iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(echoed, ["blue", "green"], "{}", r.describe());
        for tag in ["blue", "green"] {
            expect_manifest(&srv, repo, tag, OCI_MANIFEST, &img.manifest, &digest).await;
        }
    }
    // A bad tag among them refuses the whole push.
    let img = push_image(&srv, "tagparam/bad", None).await;
    let r = send(
        srv.put(&format!("/v2/tagparam/bad/manifests/{}?tag=ok&tag=-bad", img.digest))
            .header("content-type", OCI_MANIFEST)
            .body(img.manifest.clone()),
    )
    .await;
    r.expect_error(400, "MANIFEST_INVALID");
    send(srv.get("/v2/tagparam/bad/manifests/ok")).await.expect_status(404);
}

#[tokio::test]
async fn tag_moves_to_the_latest_push() {
    let srv = Server::start();
    let first = push_image(&srv, "moving", Some("latest")).await;
    let second = push_image(&srv, "moving", Some("latest")).await;
    expect_manifest(&srv, "moving", "latest", OCI_MANIFEST, &second.manifest, &second.digest).await;
    // The old manifest stays reachable by digest.
    expect_manifest(&srv, "moving", &first.digest, OCI_MANIFEST, &first.manifest, &first.digest).await;
}

#[tokio::test]
async fn identical_re_put_under_the_same_tag_is_201() {
    let srv = Server::start();
    let img = push_image(&srv, "again", Some("stable")).await;
    for _ in 0..2 {
        let r = put_manifest(&srv, "again", "stable", OCI_MANIFEST, &img.manifest).await;
        r.expect_status(201);
        assert_eq!(r.header("docker-content-digest"), Some(img.digest.as_str()));
    }
    let r = put_manifest(&srv, "again", &img.digest, OCI_MANIFEST, &img.manifest).await;
    r.expect_status(201);
}

#[tokio::test]
async fn oci_index() {
    let srv = Server::start();
    let amd = push_image_arch(&srv, "multi", None, "amd64").await;
    let arm = push_image_arch(&srv, "multi", None, "arm64").await;
    let index = index_json(
        OCI_INDEX,
        &[platform_entry(OCI_MANIFEST, &amd.manifest, "amd64"), platform_entry(OCI_MANIFEST, &arm.manifest, "arm64")],
    );
    let digest = push_manifest(&srv, "multi", "latest", OCI_INDEX, &index).await;
    expect_manifest(&srv, "multi", "latest", OCI_INDEX, &index, &digest).await;
    expect_manifest(&srv, "multi", &digest, OCI_INDEX, &index, &digest).await;
}

/// A sparse index (children absent, as mirroring tools copy a subset of platforms) is refused by
/// default, as on ECR, and stored under its original digest with `--sparse-indexes`; a child
/// pushed afterwards is protected by it.
#[tokio::test]
async fn sparse_indexes_only_when_allowed() {
    // The arm64 image exists only on the test's side: its bytes are what the index lists.
    let elsewhere = Server::start();
    let arm = push_image_arch(&elsewhere, "sparse", None, "arm64").await;
    for (srv, allowed) in [(Server::start(), false), (Server::start_with(&["--sparse-indexes"]), true)] {
        let amd = push_image_arch(&srv, "sparse", None, "amd64").await;
        let index = index_json(
            OCI_INDEX,
            &[
                platform_entry(OCI_MANIFEST, &amd.manifest, "amd64"),
                platform_entry(OCI_MANIFEST, &arm.manifest, "arm64"),
            ],
        );
        if !allowed {
            let r = put_manifest(&srv, "sparse", "latest", OCI_INDEX, &index).await;
            r.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
            send(srv.get("/v2/sparse/manifests/latest")).await.expect_status(404);
            continue;
        }
        let digest = push_manifest(&srv, "sparse", "latest", OCI_INDEX, &index).await;
        expect_manifest(&srv, "sparse", "latest", OCI_INDEX, &index, &digest).await;
        send(srv.get(&format!("/v2/sparse/manifests/{}", arm.digest))).await.expect_status(404);
        // The absent platform arrives later: the index now protects it like any child.
        for blob in [&arm.config, &arm.layers[0]] {
            push_blob(&srv, "sparse", blob).await;
        }
        push_manifest(&srv, "sparse", &arm.digest, OCI_MANIFEST, &arm.manifest).await;
        send(srv.delete(&format!("/v2/sparse/manifests/{}", arm.digest))).await.expect_status(409);
        send(srv.delete(&format!("/v2/sparse/manifests/{digest}"))).await.expect_status(202);
        send(srv.delete(&format!("/v2/sparse/manifests/{}", arm.digest))).await.expect_status(202);
    }
}

#[tokio::test]
async fn empty_index() {
    let srv = Server::start();
    let index = index_json(OCI_INDEX, &[]);
    let digest = push_manifest(&srv, "emptyindex", "index", OCI_INDEX, &index).await;
    expect_manifest(&srv, "emptyindex", "index", OCI_INDEX, &index, &digest).await;
}

#[tokio::test]
async fn nested_index() {
    let srv = Server::start();
    let mut inner = Vec::new();
    for _ in 0..2 {
        let amd = push_image_arch(&srv, "nested", None, "amd64").await;
        let arm = push_image_arch(&srv, "nested", None, "arm64").await;
        let index = index_json(
            OCI_INDEX,
            &[
                platform_entry(OCI_MANIFEST, &amd.manifest, "amd64"),
                platform_entry(OCI_MANIFEST, &arm.manifest, "arm64"),
            ],
        );
        push_manifest(&srv, "nested", &sha256_digest(&index), OCI_INDEX, &index).await;
        inner.push(descriptor(OCI_INDEX, &index));
    }
    let outer = index_json(OCI_INDEX, &inner);
    let digest = push_manifest(&srv, "nested", "index-of-index", OCI_INDEX, &outer).await;
    expect_manifest(&srv, "nested", "index-of-index", OCI_INDEX, &outer, &digest).await;
}

/// Pushes a Docker v2 schema 2 image (config + one layer) by digest.
async fn push_docker_image(srv: &Server, repo: &str, arch: &str) -> Vec<u8> {
    let config = config_json(arch);
    let layer = random_bytes(512);
    push_blob(srv, repo, &config).await;
    push_blob(srv, repo, &layer).await;
    let manifest = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, &config),
        "layers": [descriptor(DOCKER_LAYER, &layer)],
    }))
    .unwrap();
    push_manifest(srv, repo, &sha256_digest(&manifest), DOCKER_MANIFEST, &manifest).await;
    manifest
}

#[tokio::test]
async fn docker_v2_manifest_and_manifest_list() {
    let srv = Server::start();
    let amd = push_docker_image(&srv, "docker/img", "amd64").await;
    let arm = push_docker_image(&srv, "docker/img", "arm64").await;
    let d = sha256_digest(&amd);
    expect_manifest(&srv, "docker/img", &d, DOCKER_MANIFEST, &amd, &d).await;
    let r = put_manifest(&srv, "docker/img", "single", DOCKER_MANIFEST, &amd).await;
    r.expect_status(201);
    expect_manifest(&srv, "docker/img", "single", DOCKER_MANIFEST, &amd, &d).await;

    let list = index_json(
        DOCKER_LIST,
        &[platform_entry(DOCKER_MANIFEST, &amd, "amd64"), platform_entry(DOCKER_MANIFEST, &arm, "arm64")],
    );
    let digest = push_manifest(&srv, "docker/img", "latest", DOCKER_LIST, &list).await;
    expect_manifest(&srv, "docker/img", "latest", DOCKER_LIST, &list, &digest).await;
}

/// As from ECR: by tag, a client that accepts only the other image format gets the manifest
/// converted (same blobs, the digest of the bytes sent); by digest, the stored bytes.
#[tokio::test]
async fn pulls_by_tag_convert_for_a_client_that_takes_only_the_other_format() {
    let srv = Server::start();
    let stored = push_docker_image(&srv, "convert", "amd64").await;
    let stored_digest = sha256_digest(&stored);
    put_manifest(&srv, "convert", "v1", DOCKER_MANIFEST, &stored).await.expect_status(201);
    let accept = format!("{OCI_MANIFEST}, {DOCKER_MANIFEST};q=0");
    let r = send(srv.get("/v2/convert/manifests/v1").header("accept", &accept)).await;
    r.expect_status(200);
    assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
    let digest = sha256_digest(&r.body);
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()), "the digest names the bytes sent");
    assert_ne!(digest, stored_digest);
    let (oci, docker): (Value, Value) = (r.json(), serde_json::from_slice(&stored).unwrap());
    assert_eq!(oci["mediaType"], OCI_MANIFEST);
    assert_eq!(oci["config"]["mediaType"], OCI_CONFIG);
    assert_eq!(oci["layers"][0]["mediaType"], OCI_LAYER);
    for field in ["digest", "size"] {
        assert_eq!(oci["config"][field], docker["config"][field]);
        assert_eq!(oci["layers"][0][field], docker["layers"][0][field]);
    }
    let h = send(srv.head("/v2/convert/manifests/v1").header("accept", OCI_MANIFEST)).await;
    h.expect_status(200);
    assert_eq!(h.header("docker-content-digest"), Some(digest.as_str()), "HEAD agrees with GET");
    assert_eq!(h.header("content-length"), Some(r.body.len().to_string().as_str()));
    let cached = send(
        srv.get("/v2/convert/manifests/v1")
            .header("accept", OCI_MANIFEST)
            .header("if-none-match", format!("\"{digest}\"")),
    )
    .await;
    cached.expect_status(304);

    // By digest, or for a client taking the stored format, or anything: the bytes pushed.
    for (reference, accept) in [(stored_digest.as_str(), OCI_MANIFEST), ("v1", ALL_MANIFEST_TYPES), ("v1", "*/*")] {
        let r = send(srv.get(&format!("/v2/convert/manifests/{reference}")).header("accept", accept)).await;
        r.expect_status(200);
        assert!(r.body == stored, "{reference} with Accept {accept}: {}", r.describe());
        assert_eq!(r.header("docker-content-digest"), Some(stored_digest.as_str()));
    }

    // The reverse: an OCI image for a client that takes only Docker schema 2.
    let img = push_image(&srv, "convert", Some("oci")).await;
    let r = send(srv.get("/v2/convert/manifests/oci").header("accept", DOCKER_MANIFEST)).await;
    r.expect_status(200);
    assert_eq!(r.header("content-type"), Some(DOCKER_MANIFEST));
    let docker: Value = r.json();
    assert_eq!(docker["config"]["mediaType"], DOCKER_CONFIG);
    assert_eq!(docker["layers"][0]["mediaType"], DOCKER_LAYER);
    let oci: Value = serde_json::from_slice(&img.manifest).unwrap();
    assert_eq!(docker["layers"][0]["digest"], oci["layers"][0]["digest"]);
}

#[tokio::test]
async fn mixed_indexes() {
    let srv = Server::start();
    let docker = push_docker_image(&srv, "mixed", "amd64").await;
    let oci = push_image_arch(&srv, "mixed", None, "arm64").await;
    // Podman's default: an OCI index holding Docker manifests.
    let index = index_json(
        OCI_INDEX,
        &[platform_entry(DOCKER_MANIFEST, &docker, "amd64"), platform_entry(OCI_MANIFEST, &oci.manifest, "arm64")],
    );
    let digest = push_manifest(&srv, "mixed", "oci-of-docker", OCI_INDEX, &index).await;
    expect_manifest(&srv, "mixed", "oci-of-docker", OCI_INDEX, &index, &digest).await;
    // docker manifest create with mixed inputs: a Docker list holding an OCI manifest.
    let list = index_json(
        DOCKER_LIST,
        &[platform_entry(DOCKER_MANIFEST, &docker, "amd64"), platform_entry(OCI_MANIFEST, &oci.manifest, "arm64")],
    );
    let digest = push_manifest(&srv, "mixed", "docker-of-oci", DOCKER_LIST, &list).await;
    expect_manifest(&srv, "mixed", "docker-of-oci", DOCKER_LIST, &list, &digest).await;
}

#[tokio::test]
async fn artifact_with_empty_config() {
    let srv = Server::start();
    let empty = b"{}".to_vec();
    let payload = random_bytes(300);
    push_blob(&srv, "artifacts", &empty).await;
    push_blob(&srv, "artifacts", &payload).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom.v1",
        "config": descriptor(OCI_EMPTY, &empty),
        "layers": [descriptor("application/vnd.example.sbom.v1", &payload)],
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    }))
    .unwrap();
    let digest = push_manifest(&srv, "artifacts", "sbom", OCI_MANIFEST, &manifest).await;
    expect_manifest(&srv, "artifacts", "sbom", OCI_MANIFEST, &manifest, &digest).await;

    // Artifact without layers: the empty descriptor as the only layer.
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.marker",
        "config": descriptor(OCI_EMPTY, &empty),
        "layers": [descriptor(OCI_EMPTY, &empty)],
    }))
    .unwrap();
    let digest = push_manifest(&srv, "artifacts", "marker", OCI_MANIFEST, &manifest).await;
    expect_manifest(&srv, "artifacts", "marker", OCI_MANIFEST, &manifest, &digest).await;
}

#[tokio::test]
async fn image_without_layers() {
    let srv = Server::start();
    let config = config_json("amd64");
    push_blob(&srv, "nolayers", &config).await;
    let manifest = oci_manifest(&descriptor(OCI_CONFIG, &config), &[]);
    let digest = push_manifest(&srv, "nolayers", "v1", OCI_MANIFEST, &manifest).await;
    expect_manifest(&srv, "nolayers", "v1", OCI_MANIFEST, &manifest, &digest).await;
}

#[tokio::test]
async fn data_field_and_annotations() {
    let srv = Server::start();
    let config = config_json("amd64");
    let layer = random_bytes(64);
    push_blob(&srv, "datafield", &config).await;
    push_blob(&srv, "datafield", &layer).await;
    let mut config_desc = descriptor(OCI_CONFIG, &config);
    config_desc["data"] = json!(base64(&config));
    let mut layer_desc = descriptor(OCI_LAYER, &layer);
    layer_desc["data"] = json!(base64(&layer));
    layer_desc["annotations"] = json!({"org.example.layer": "first"});
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": [layer_desc],
        "annotations": {"org.opencontainers.image.title": "data", "com.example.n": "1"},
    }))
    .unwrap();
    let digest = push_manifest(&srv, "datafield", "data-field", OCI_MANIFEST, &manifest).await;
    expect_manifest(&srv, "datafield", "data-field", OCI_MANIFEST, &manifest, &digest).await;
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn unknown_fields_and_formatting_are_preserved_byte_for_byte() {
    let srv = Server::start();
    let config = config_json("amd64");
    let layer = random_bytes(64);
    push_blob(&srv, "custom", &config).await;
    push_blob(&srv, "custom", &layer).await;
    // Unusual field order, whitespace, unknown fields at every level, escaped unicode.
    let text = format!(
        "{{\n  \"layers\" : [ {{\"size\":{}, \"digest\":\"{}\",\"x-custom\":{{\"nested\":[1,2,3]}},\"mediaType\":\"{OCI_LAYER}\"}} ],\n\t\"config\":{{\"digest\":\"{}\",\"mediaType\":\"{OCI_CONFIG}\",\"size\":{}}},\n  \"mediaType\": \"{OCI_MANIFEST}\",\n  \"schemaVersion\":2,\n  \"com.example.unknown\": \"caf\\u00e9\",\n  \"zz\": null\n}}\n",
        layer.len(),
        sha256_digest(&layer),
        sha256_digest(&config),
        config.len()
    );
    let manifest = text.into_bytes();
    let digest = push_manifest(&srv, "custom", "custom-fields", OCI_MANIFEST, &manifest).await;
    expect_manifest(&srv, "custom", "custom-fields", OCI_MANIFEST, &manifest, &digest).await;

    // An index with an unknown field on an entry.
    let img = push_image(&srv, "custom", None).await;
    let mut entry = platform_entry(OCI_MANIFEST, &img.manifest, "amd64");
    entry["org.example.extra"] = json!({"keep": true});
    let mut index: Value = serde_json::from_slice(&index_json(OCI_INDEX, &[entry])).unwrap();
    index["extraTopLevel"] = json!([1, "two"]);
    let index = serde_json::to_vec_pretty(&index).unwrap();
    let digest = push_manifest(&srv, "custom", "custom-index", OCI_INDEX, &index).await;
    expect_manifest(&srv, "custom", "custom-index", OCI_INDEX, &index, &digest).await;
}

#[tokio::test]
async fn non_distributable_layers_need_no_blob() {
    let srv = Server::start();
    let config = config_json("amd64");
    let layer = random_bytes(256);
    push_blob(&srv, "nondist", &config).await;
    push_blob(&srv, "nondist", &layer).await;
    let foreign = sha256_digest(&random_bytes(32));
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": [
            {"mediaType": OCI_LAYER_ND, "digest": foreign, "size": 123456,
             "urls": [format!("https://store.example.com/blobs/sha256/{}", &foreign[7..])]},
            {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar",
             "digest": sha256_digest(&random_bytes(32)), "size": 12345},
            descriptor(OCI_LAYER, &layer),
        ],
    }))
    .unwrap();
    let digest = push_manifest(&srv, "nondist", "non-distributable-image", OCI_MANIFEST, &manifest).await;
    expect_manifest(&srv, "nondist", "non-distributable-image", OCI_MANIFEST, &manifest, &digest).await;

    // Docker's foreign layers (Windows base images) are the same idea.
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, &config),
        "layers": [
            {"mediaType": DOCKER_FOREIGN_LAYER, "digest": sha256_digest(&random_bytes(32)), "size": 99,
             "urls": ["https://mcr.microsoft.com/v2/windows/blobs/x"]},
            descriptor(DOCKER_LAYER, &layer),
        ],
    }))
    .unwrap();
    push_manifest(&srv, "nondist", "windows", DOCKER_MANIFEST, &manifest).await;
}

#[tokio::test]
async fn sha512_manifest_reference() {
    let srv = Server::start();
    let img = push_image(&srv, "sha512m", None).await;
    let digest512 = sha512_digest(&img.manifest);
    let r = put_manifest(&srv, "sha512m", &digest512, OCI_MANIFEST, &img.manifest).await;
    r.expect_status(201);
    assert_eq!(r.header("docker-content-digest"), Some(digest512.as_str()), "{}", r.describe());
    expect_manifest(&srv, "sha512m", &digest512, OCI_MANIFEST, &img.manifest, &digest512).await;

    // A sha512 reference that does not match the bytes.
    let other = sha512_digest(b"other");
    put_manifest(&srv, "sha512m", &other, OCI_MANIFEST, &img.manifest).await.expect_error(400, "DIGEST_INVALID");
}

#[tokio::test]
async fn manifest_without_media_type_takes_the_content_type() {
    let srv = Server::start();
    let config = config_json("amd64");
    push_blob(&srv, "nomt", &config).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": [],
    }))
    .unwrap();
    let digest = push_manifest(&srv, "nomt", "v1", OCI_MANIFEST, &manifest).await;
    expect_manifest(&srv, "nomt", "v1", OCI_MANIFEST, &manifest, &digest).await;
}

#[tokio::test]
async fn content_type_parameters_are_ignored() {
    let srv = Server::start();
    let config = config_json("amd64");
    push_blob(&srv, "ctparams", &config).await;
    let manifest = oci_manifest(&descriptor(OCI_CONFIG, &config), &[]);
    let r = put_manifest(&srv, "ctparams", "v1", &format!("{OCI_MANIFEST}; charset=utf-8"), &manifest).await;
    r.expect_status(201);
    let g = send(srv.get("/v2/ctparams/manifests/v1")).await;
    g.expect_status(200);
    assert!(g.header("content-type").unwrap().starts_with(OCI_MANIFEST), "{}", g.describe());
}

#[tokio::test]
async fn content_type_and_media_type_mismatch() {
    let srv = Server::start();
    let img = push_image(&srv, "mismatch", None).await;
    for ct in [OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST] {
        put_manifest(&srv, "mismatch", "bad", ct, &img.manifest).await.expect_error(400, "MANIFEST_INVALID");
    }
    // Two Content-Type headers, or one that is not text, name no type: refused, not ignored.
    let twice = srv
        .request(reqwest::Method::PUT, "/v2/mismatch/manifests/bad")
        .header("content-type", OCI_MANIFEST)
        .header("content-type", "text/plain")
        .body(img.manifest.clone());
    send(twice).await.expect_error(400, "MANIFEST_INVALID");
    let mut not_text = OCI_MANIFEST.as_bytes().to_vec();
    not_text.push(0xff);
    let not_text = reqwest::header::HeaderValue::from_bytes(&not_text).unwrap();
    let put = srv.request(reqwest::Method::PUT, "/v2/mismatch/manifests/bad").header("content-type", not_text);
    send(put.body(img.manifest.clone())).await.expect_error(400, "MANIFEST_INVALID");
    send(srv.get("/v2/mismatch/manifests/bad")).await.expect_error(404, "MANIFEST_UNKNOWN");
}

/// Media types are case-insensitive (RFC 9110 8.3.1): a Content-Type in another case is the same
/// type, and one taken from the header alone is served in lower case.
#[tokio::test]
async fn content_type_case_is_ignored() {
    let srv = Server::start();
    let img = push_image(&srv, "ctcase", None).await;
    put_manifest(&srv, "ctcase", "v1", "Application/Vnd.OCI.Image.Manifest.v1+JSON", &img.manifest)
        .await
        .expect_status(201);
    let child = img.descriptor();
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [child]})).unwrap();
    put_manifest(&srv, "ctcase", "list", "APPLICATION/VND.OCI.IMAGE.INDEX.V1+JSON", &index).await.expect_status(201);
    let g = send(srv.get("/v2/ctcase/manifests/list")).await;
    g.expect_status(200);
    assert_eq!(g.header("content-type"), Some(OCI_INDEX), "{}", g.describe());
}

/// A document with the fields of both kinds would be an image in one repository and an index in
/// another (CVE-2021-41190): refused whichever type it is pushed as, and nothing is stored.
#[tokio::test]
async fn ambiguous_manifests_are_refused() {
    let srv = Server::start();
    let img = push_image(&srv, "ambiguous", Some("base")).await;
    let mut both: Value = serde_json::from_slice(&img.manifest).unwrap();
    both.as_object_mut().unwrap().remove("mediaType");
    both["manifests"] = json!([img.descriptor()]);
    let both = serde_json::to_vec(&both).unwrap();
    for ct in [OCI_MANIFEST, OCI_INDEX] {
        let r = put_manifest(&srv, "ambiguous", "both", ct, &both).await;
        r.expect_error(400, "MANIFEST_INVALID");
        assert!(r.text().contains("a manifest is one kind or the other"), "{}", r.describe());
    }
    send(srv.get("/v2/ambiguous/manifests/both")).await.expect_error(404, "MANIFEST_UNKNOWN");
}

/// A 405 lists what the endpoint serves (RFC 9110 15.5.6).
#[tokio::test]
async fn method_not_allowed_lists_the_allowed() {
    let srv = Server::start();
    for (method, path, allowed) in [
        (reqwest::Method::PATCH, "/v2/a/b/manifests/v1", "GET, HEAD, PUT, DELETE"),
        (reqwest::Method::PUT, "/v2/_catalog", "GET, HEAD"),
        (reqwest::Method::GET, "/v2/a/b/blobs/uploads/", "POST"),
    ] {
        let r = send(srv.request(method, path)).await;
        r.expect_error(405, "UNSUPPORTED");
        assert_eq!(r.header("allow"), Some(allowed), "{}", r.describe());
    }
}

#[tokio::test]
async fn missing_blob_is_manifest_blob_unknown() {
    let srv = Server::start();
    let config = config_json("amd64");
    let layer = random_bytes(100);
    push_blob(&srv, "missing", &config).await;
    // Layer missing.
    let manifest = oci_manifest(&descriptor(OCI_CONFIG, &config), &[descriptor(OCI_LAYER, &layer)]);
    put_manifest(&srv, "missing", "v1", OCI_MANIFEST, &manifest).await.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    // `urls` do not excuse a distributable layer; a foreign (non-distributable) one needs none.
    let mut elsewhere = descriptor(OCI_LAYER, &layer);
    elsewhere["urls"] = json!(["https://example.com/layer"]);
    let manifest = oci_manifest(&descriptor(OCI_CONFIG, &config), std::slice::from_ref(&elsewhere));
    put_manifest(&srv, "missing", "v1", OCI_MANIFEST, &manifest).await.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    elsewhere["mediaType"] = json!("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip");
    let manifest = oci_manifest(&descriptor(OCI_CONFIG, &config), &[elsewhere]);
    let foreign = push_manifest(&srv, "missing", "foreign", OCI_MANIFEST, &manifest).await;
    send(srv.delete(&format!("/v2/missing/manifests/{foreign}"))).await.expect_status(202);
    // Config missing.
    let other_config = config_json("arm64");
    push_blob(&srv, "missing", &layer).await;
    let manifest = oci_manifest(&descriptor(OCI_CONFIG, &other_config), &[descriptor(OCI_LAYER, &layer)]);
    put_manifest(&srv, "missing", "v1", OCI_MANIFEST, &manifest).await.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    // Present only in another repository.
    push_blob(&srv, "other", &other_config).await;
    put_manifest(&srv, "missing", "v1", OCI_MANIFEST, &manifest).await.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    send(srv.get("/v2/missing/manifests/v1")).await.expect_error(404, "MANIFEST_UNKNOWN");
    // Once mounted, the same manifest goes in.
    let r =
        send(srv.post(&format!("/v2/missing/blobs/uploads/?mount={}&from=other", sha256_digest(&other_config)))).await;
    r.expect_status(201);
    push_manifest(&srv, "missing", "v1", OCI_MANIFEST, &manifest).await;

    // Into a repository that does not exist yet: refused without creating it (create-on-push).
    put_manifest(&srv, "never/made", "v1", OCI_MANIFEST, &manifest).await.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    // So is an index whose child is only in another repository.
    let index = index_json(OCI_INDEX, &[platform_entry(OCI_MANIFEST, &manifest, "amd64")]);
    put_manifest(&srv, "never/made", "v1", OCI_INDEX, &index).await.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    send(srv.get("/v2/never/made/tags/list")).await.expect_error(404, "NAME_UNKNOWN");
    let catalog = send(srv.get("/v2/_catalog")).await;
    catalog.expect_status(200);
    assert!(!catalog.text().contains("never/made"), "{}", catalog.describe());
}

/// A descriptor must state the size of the blob it names: a manifest claiming 0 bytes for a
/// 1,000-byte layer (which would make image sizes lie) is MANIFEST_INVALID and stores nothing.
#[tokio::test]
async fn descriptor_size_must_be_the_blob_size() {
    let srv = Server::start();
    let config = config_json("amd64");
    let layer = random_bytes(1000);
    push_blob(&srv, "sizes", &config).await;
    push_blob(&srv, "sizes", &layer).await;
    let mut lying = descriptor(OCI_LAYER, &layer);
    lying["size"] = 0.into();
    let manifest = oci_manifest(&descriptor(OCI_CONFIG, &config), &[lying]);
    let r = put_manifest(&srv, "sizes", "v1", OCI_MANIFEST, &manifest).await;
    r.expect_error(400, "MANIFEST_INVALID");
    assert!(r.text().contains(&sha256_digest(&layer)), "names the blob: {}", r.describe());
    send(srv.get("/v2/sizes/manifests/v1")).await.expect_error(404, "MANIFEST_UNKNOWN");
    let honest = oci_manifest(&descriptor(OCI_CONFIG, &config), &[descriptor(OCI_LAYER, &layer)]);
    push_manifest(&srv, "sizes", "v1", OCI_MANIFEST, &honest).await;
}

#[tokio::test]
async fn missing_child_is_manifest_blob_unknown_naming_the_digest() {
    let srv = Server::start();
    let present = push_image(&srv, "children", None).await;
    // A manifest that exists only in another repository.
    let elsewhere = push_image(&srv, "elsewhere", None).await;
    let index = index_json(
        OCI_INDEX,
        &[
            platform_entry(OCI_MANIFEST, &present.manifest, "amd64"),
            platform_entry(OCI_MANIFEST, &elsewhere.manifest, "arm64"),
        ],
    );
    let r = put_manifest(&srv, "children", "latest", OCI_INDEX, &index).await;
    r.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    assert!(r.text().contains(&elsewhere.digest), "error does not name {}:\n{}", elsewhere.digest, r.describe());
    send(srv.get("/v2/children/manifests/latest")).await.expect_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn digest_reference_must_match_the_bytes() {
    let srv = Server::start();
    let img = push_image(&srv, "digestref", None).await;
    let wrong = sha256_digest(b"not this manifest");
    put_manifest(&srv, "digestref", &wrong, OCI_MANIFEST, &img.manifest).await.expect_error(400, "DIGEST_INVALID");
    send(srv.get(&format!("/v2/digestref/manifests/{wrong}"))).await.expect_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn invalid_manifests_are_manifest_invalid() {
    let srv = Server::start();
    let config = config_json("amd64");
    push_blob(&srv, "invalid", &config).await;
    let cfg = descriptor(OCI_CONFIG, &config);
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("not json", b"{this is not json".to_vec()),
        ("empty body", Vec::new()),
        ("json array", b"[1,2,3]".to_vec()),
        (
            "layers not an array",
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": "x"}))
                .unwrap(),
        ),
        (
            "no config",
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []})).unwrap(),
        ),
        (
            "bad layer digest",
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
            "layers": [{"mediaType": OCI_LAYER, "digest": "sha256:nothex", "size": 1}]}))
            .unwrap(),
        ),
        (
            "negative size",
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
            "layers": [{"mediaType": OCI_LAYER, "digest": sha256_digest(b"x"), "size": -1}]}))
            .unwrap(),
        ),
        (
            "schemaVersion 3",
            serde_json::to_vec(&json!({"schemaVersion": 3, "mediaType": OCI_MANIFEST, "config": cfg, "layers": []}))
                .unwrap(),
        ),
    ];
    for (what, body) in bodies {
        let r = put_manifest(&srv, "invalid", "v1", OCI_MANIFEST, &body).await;
        assert_eq!(r.status(), 400, "{what}: {}", r.describe());
        r.expect_error_code_in(&["MANIFEST_INVALID"]);
    }
    // An index whose manifests field is not a list.
    let r = put_manifest(
        &srv,
        "invalid",
        "v1",
        OCI_INDEX,
        &serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": {}})).unwrap(),
    )
    .await;
    r.expect_error(400, "MANIFEST_INVALID");
    send(srv.get("/v2/invalid/manifests/v1")).await.expect_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn docker_schema1_is_rejected() {
    let srv = Server::start();
    let schema1 = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 1,
        "name": "schema1",
        "tag": "latest",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": sha256_digest(b"a")}],
        "history": [{"v1Compatibility": "{}"}],
        "signatures": [{"header": {"alg": "ES256"}, "signature": "x", "protected": "y"}],
    }))
    .unwrap();
    for ct in [DOCKER_SCHEMA1_SIGNED, "application/vnd.docker.distribution.manifest.v1+json", "application/json"] {
        let r = put_manifest(&srv, "schema1", "latest", ct, &schema1).await;
        r.expect_4xx();
        r.expect_error_code_in(&["MANIFEST_INVALID", "UNSUPPORTED"]);
    }
    send(srv.get("/v2/schema1/manifests/latest")).await.expect_status(404);
}

#[tokio::test]
async fn unknown_content_type_is_rejected() {
    let srv = Server::start();
    let img = push_image(&srv, "ctype", None).await;
    let r = put_manifest(&srv, "ctype", "x", "text/plain", &img.manifest).await;
    r.expect_4xx();
}

/// A manifest padded with annotations to `size` bytes.
async fn padded_manifest(srv: &Server, repo: &str, size: usize) -> Vec<u8> {
    let config = config_json("amd64");
    push_blob(srv, repo, &config).await;
    let mut annotations = serde_json::Map::new();
    let mut i = 0;
    let base = oci_manifest(&descriptor(OCI_CONFIG, &config), &[]).len() + 20;
    let mut total = base;
    while total + 10_100 < size {
        annotations.insert(format!("large-annotation-{i}"), json!("A".repeat(10_000)));
        total += 10_000 + 30;
        i += 1;
    }
    let mut m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, &config), "layers": [], "annotations": annotations});
    let mut bytes = serde_json::to_vec(&m).unwrap();
    let pad = size.saturating_sub(bytes.len() + 12);
    m["annotations"]["pad"] = json!("P".repeat(pad));
    bytes = serde_json::to_vec(&m).unwrap();
    bytes
}

#[tokio::test]
async fn large_manifest_just_under_4_mib_is_accepted() {
    let srv = Server::start();
    let manifest = padded_manifest(&srv, "large", 4 * 1024 * 1024 - 1024).await;
    assert!(manifest.len() <= 4 * 1024 * 1024 && manifest.len() > 4 * 1024 * 1024 - 2048, "{}", manifest.len());
    let digest = push_manifest(&srv, "large", "large-manifest", OCI_MANIFEST, &manifest).await;
    expect_manifest(&srv, "large", "large-manifest", OCI_MANIFEST, &manifest, &digest).await;
}

#[tokio::test]
async fn manifest_over_4_mib_is_rejected() {
    let srv = Server::start();
    let manifest = padded_manifest(&srv, "huge", 4 * 1024 * 1024 + 4096).await;
    assert!(manifest.len() > 4 * 1024 * 1024);
    let put = srv.put("/v2/huge/manifests/too-big").header("content-type", OCI_MANIFEST).body(manifest);
    // A server may answer before reading the whole body and close the connection; the client
    // then sees the reset instead of the 4xx. Either way nothing may be stored.
    match try_send(put).await {
        Ok(r) => {
            r.expect_4xx();
            if r.status() != 413 {
                eprintln!("note: oversized manifest answered {} (413 preferred)", r.status());
            }
        }
        Err(e) => eprintln!("note: oversized manifest PUT ended with a transport error: {e}"),
    }
    send(srv.get("/v2/huge/manifests/too-big")).await.expect_status(404);
}

#[tokio::test]
async fn unknown_manifests() {
    let srv = Server::start();
    push_image(&srv, "known", Some("v1")).await;
    let missing = sha256_digest(b"no such manifest");
    send(srv.get("/v2/known/manifests/nope")).await.expect_error(404, "MANIFEST_UNKNOWN");
    send(srv.get(&format!("/v2/known/manifests/{missing}"))).await.expect_error(404, "MANIFEST_UNKNOWN");
    let h = send(srv.head("/v2/known/manifests/nope")).await;
    h.expect_status(404);
    assert!(h.body.is_empty());
    // In a repository that does not exist.
    let r = send(srv.get("/v2/no/such/repo/manifests/latest")).await;
    r.expect_status(404);
    r.expect_error_code_in(&["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]);
    send(srv.head("/v2/no/such/repo/manifests/latest")).await.expect_status(404);
}

#[tokio::test]
async fn invalid_tags_are_rejected() {
    let srv = Server::start();
    let img = push_image(&srv, "tags", None).await;
    for tag in ["-leading-dash", ".dot", &"t".repeat(129)] {
        let r = put_manifest(&srv, "tags", tag, OCI_MANIFEST, &img.manifest).await;
        r.expect_4xx();
    }
    let r = put_manifest(&srv, "tags", &"t".repeat(128), OCI_MANIFEST, &img.manifest).await;
    r.expect_status(201);
}

#[tokio::test]
async fn delete_by_digest_removes_the_manifest_and_its_tags() {
    let srv = Server::start();
    let img = push_image(&srv, "delete/me", Some("one")).await;
    put_manifest(&srv, "delete/me", "two", OCI_MANIFEST, &img.manifest).await.expect_status(201);
    let keep = push_image(&srv, "delete/me", Some("keep")).await;

    send(srv.delete(&format!("/v2/delete/me/manifests/{}", img.digest))).await.expect_status(202);
    send(srv.get(&format!("/v2/delete/me/manifests/{}", img.digest))).await.expect_error(404, "MANIFEST_UNKNOWN");
    send(srv.head(&format!("/v2/delete/me/manifests/{}", img.digest))).await.expect_status(404);
    send(srv.get("/v2/delete/me/manifests/one")).await.expect_error(404, "MANIFEST_UNKNOWN");
    send(srv.get("/v2/delete/me/manifests/two")).await.expect_error(404, "MANIFEST_UNKNOWN");
    let tags = send(srv.get("/v2/delete/me/tags/list")).await;
    tags.expect_status(200);
    assert_eq!(tags.json()["tags"], json!(["keep"]));
    expect_manifest(&srv, "delete/me", "keep", OCI_MANIFEST, &keep.manifest, &keep.digest).await;

    // Deleting again: gone.
    let r = send(srv.delete(&format!("/v2/delete/me/manifests/{}", img.digest))).await;
    r.expect_error(404, "MANIFEST_UNKNOWN");
    // Pushing it again brings it back.
    push_manifest(&srv, "delete/me", "one", OCI_MANIFEST, &img.manifest).await;
}

#[tokio::test]
async fn delete_by_tag_removes_only_the_tag() {
    let srv = Server::start();
    let img = push_image(&srv, "untag", Some("v1")).await;
    put_manifest(&srv, "untag", "v2", OCI_MANIFEST, &img.manifest).await.expect_status(201);

    send(srv.delete("/v2/untag/manifests/v1")).await.expect_status(202);
    send(srv.get("/v2/untag/manifests/v1")).await.expect_error(404, "MANIFEST_UNKNOWN");
    expect_manifest(&srv, "untag", &img.digest, OCI_MANIFEST, &img.manifest, &img.digest).await;
    expect_manifest(&srv, "untag", "v2", OCI_MANIFEST, &img.manifest, &img.digest).await;
    let tags = send(srv.get("/v2/untag/tags/list")).await;
    assert_eq!(tags.json()["tags"], json!(["v2"]));
    send(srv.delete("/v2/untag/manifests/v1")).await.expect_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn a_child_of_an_index_cannot_be_deleted_before_the_index() {
    let srv = Server::start();
    let child = push_image(&srv, "guarded", None).await;
    let index = index_json(OCI_INDEX, &[platform_entry(OCI_MANIFEST, &child.manifest, "amd64")]);
    let index_digest = push_manifest(&srv, "guarded", "latest", OCI_INDEX, &index).await;

    let r = send(srv.delete(&format!("/v2/guarded/manifests/{}", child.digest))).await;
    r.expect_error(409, "DENIED");
    assert!(r.text().contains(&index_digest), "409 must name the index {index_digest}:\n{}", r.describe());
    expect_manifest(&srv, "guarded", &child.digest, OCI_MANIFEST, &child.manifest, &child.digest).await;

    send(srv.delete(&format!("/v2/guarded/manifests/{index_digest}"))).await.expect_status(202);
    send(srv.delete(&format!("/v2/guarded/manifests/{}", child.digest))).await.expect_status(202);
    send(srv.get(&format!("/v2/guarded/manifests/{}", child.digest))).await.expect_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn a_child_shared_by_two_indexes_needs_both_gone() {
    let srv = Server::start();
    let child = push_image(&srv, "shared", None).await;
    let extra = push_image(&srv, "shared", None).await;
    let a = index_json(OCI_INDEX, &[platform_entry(OCI_MANIFEST, &child.manifest, "amd64")]);
    let b = index_json(
        OCI_INDEX,
        &[
            platform_entry(OCI_MANIFEST, &child.manifest, "amd64"),
            platform_entry(OCI_MANIFEST, &extra.manifest, "arm64"),
        ],
    );
    let a = push_manifest(&srv, "shared", "a", OCI_INDEX, &a).await;
    let b = push_manifest(&srv, "shared", "b", OCI_INDEX, &b).await;
    send(srv.delete(&format!("/v2/shared/manifests/{a}"))).await.expect_status(202);
    let r = send(srv.delete(&format!("/v2/shared/manifests/{}", child.digest))).await;
    r.expect_error(409, "DENIED");
    assert!(r.text().contains(&b), "{}", r.describe());
    send(srv.delete(&format!("/v2/shared/manifests/{b}"))).await.expect_status(202);
    send(srv.delete(&format!("/v2/shared/manifests/{}", child.digest))).await.expect_status(202);
}

#[tokio::test]
async fn a_subject_may_be_deleted_before_its_referrer() {
    let srv = Server::start();
    let subject = push_image(&srv, "subj", Some("v1")).await;
    let empty = b"{}".to_vec();
    push_blob(&srv, "subj", &empty).await;
    let referrer = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": descriptor(OCI_EMPTY, &empty),
        "layers": [descriptor(OCI_EMPTY, &empty)],
        "subject": subject.descriptor(),
    }))
    .unwrap();
    let referrer_digest = push_manifest(&srv, "subj", &sha256_digest(&referrer), OCI_MANIFEST, &referrer).await;

    send(srv.delete(&format!("/v2/subj/manifests/{}", subject.digest))).await.expect_status(202);
    send(srv.get(&format!("/v2/subj/manifests/{}", subject.digest))).await.expect_error(404, "MANIFEST_UNKNOWN");
    expect_manifest(&srv, "subj", &referrer_digest, OCI_MANIFEST, &referrer, &referrer_digest).await;
    send(srv.delete(&format!("/v2/subj/manifests/{referrer_digest}"))).await.expect_status(202);
}

#[tokio::test]
async fn manifests_are_scoped_to_their_repository() {
    let srv = Server::start();
    let img = push_image(&srv, "scope/a", Some("v1")).await;
    push_image(&srv, "scope/b", Some("other")).await;
    send(srv.get(&format!("/v2/scope/b/manifests/{}", img.digest))).await.expect_error(404, "MANIFEST_UNKNOWN");
    send(srv.get("/v2/scope/b/manifests/v1")).await.expect_error(404, "MANIFEST_UNKNOWN");
    // Pushing the manifest into b without its blobs fails; it does not borrow a's.
    put_manifest(&srv, "scope/b", "v1", OCI_MANIFEST, &img.manifest).await.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
}

/// Manifests that Go clients would read differently from Berth, or that overflow the sizes a
/// registry records, are the client's mistake: 400 `MANIFEST_INVALID` naming the problem, and
/// nothing is stored.
#[tokio::test]
async fn ambiguous_or_oversized_manifests_are_client_errors() {
    let srv = Server::start();
    let img = push_image(&srv, "hostile", Some("good")).await;
    let config = descriptor(OCI_CONFIG, &img.config);
    let layer = descriptor(OCI_LAYER, &img.layers[0]);
    let sized = |sizes: &[u64]| {
        let layers: Vec<Value> = sizes
            .iter()
            .map(|size| {
                let mut l = layer.clone();
                l["size"] = json!(size);
                l
            })
            .collect();
        oci_manifest(&config, &layers)
    };
    let good = String::from_utf8(img.manifest.clone()).unwrap();
    let deep = format!(r#"{{"schemaVersion":2,"x":{}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("a size of 2^63", sized(&[1 << 63]), "2^63-1"),
        ("sizes summing past 2^63", sized(&[1 << 62, 1 << 62]), "total more than 2^63-1"),
        ("sizes summing past 2^64", sized(&[i64::MAX as u64, i64::MAX as u64, i64::MAX as u64]), "total"),
        (
            "no layers",
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config})).unwrap(),
            "required field",
        ),
        ("a duplicate top-level key", good.replacen("\"layers\"", "\"layers\":[],\"layers\"", 1).into_bytes(), "twice"),
        ("a duplicate nested key", good.replacen("\"size\"", "\"size\":1,\"size\"", 1).into_bytes(), "twice"),
        ("100,000 levels of nesting", deep.into_bytes(), "deeper than 64"),
    ];
    for (what, body, says) in cases {
        let r = put_manifest(&srv, "hostile", "bad", OCI_MANIFEST, &body).await;
        r.expect_error(400, "MANIFEST_INVALID");
        assert!(r.text().contains(says), "{what}: {}", r.describe());
    }
    send(srv.get("/v2/hostile/manifests/bad")).await.expect_error(404, "MANIFEST_UNKNOWN");
    let r = send(srv.get("/v2/hostile/tags/list")).await;
    assert_eq!(r.json()["tags"], json!(["good"]));
    // An artifact with an explicitly empty layer list is fine.
    let artifact = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/x.test", "config": config, "layers": []
    }))
    .unwrap();
    push_manifest(&srv, "hostile", "artifact", OCI_MANIFEST, &artifact).await;
}

/// What the distribution spec's conformance suite expects: a reference that is not a valid tag
/// names no manifest, so reading or deleting it is 404 `MANIFEST_UNKNOWN` (pushing to it stays
/// a 400), once the repository exists.
#[tokio::test]
async fn an_invalid_reference_names_an_unknown_manifest() {
    let srv = Server::start();
    let img = push_image(&srv, "refs", Some("v1")).await;
    for reference in [".INVALID_MANIFEST_NAME", "-dash", "a".repeat(129).as_str()] {
        let path = format!("/v2/refs/manifests/{reference}");
        send(srv.get(&path)).await.expect_error(404, "MANIFEST_UNKNOWN");
        let h = send(srv.head(&path)).await;
        h.expect_status(404);
        assert!(h.body.is_empty());
        send(srv.delete(&path)).await.expect_error(404, "MANIFEST_UNKNOWN");
        put_manifest(&srv, "refs", reference, OCI_MANIFEST, &img.manifest).await.expect_error(400, "MANIFEST_INVALID");
    }
    send(srv.get("/v2/no/such/repo/manifests/.INVALID_MANIFEST_NAME")).await.expect_error(404, "NAME_UNKNOWN");
    send(srv.get("/v2/refs/manifests/sha256:zz")).await.expect_error(400, "DIGEST_INVALID");
    expect_manifest(&srv, "refs", "v1", OCI_MANIFEST, &img.manifest, &img.digest).await;
}

/// Paths are routed once percent-decoded, as distribution (Go) routes them: `sha256%3A…` names
/// the digest and `%74` is `t` (RFC 3986 6.2.2.2); a path that decodes to no UTF-8 is NAME_INVALID.
#[tokio::test]
async fn percent_encoded_paths_name_what_they_decode_to() {
    let srv = Server::start();
    let image = push_image(&srv, "enc/app", Some("t00")).await;
    let encoded = image.digest.replace(':', "%3A");
    let r = send(srv.get(&format!("/v2/enc/app/manifests/{encoded}")).header("accept", OCI_MANIFEST)).await;
    r.expect_status(200);
    assert_eq!(r.header("docker-content-digest"), Some(image.digest.as_str()));
    send(srv.head("/v2/enc/app/manifests/%74%30%30").header("accept", OCI_MANIFEST)).await.expect_status(200);
    send(srv.get("/v2/enc/%61pp/tags/list")).await.expect_status(200);
    let config = sha256_digest(&image.config).replace(':', "%3A");
    send(srv.get(&format!("/v2/enc/app/blobs/{config}"))).await.expect_status(200);
    send(srv.get("/v2/enc/app/manifests/%FF")).await.expect_error(400, "NAME_INVALID");
}
