//! Replication between three real `berth serve` processes on loopback: A replicates `prod/*`
//! to B and C (`[[replication.destinations]]` in A's config file, a rule put through the ECR
//! API). A multi-arch image with a signature referrer pushed to A arrives whole on B and C with
//! identical digests; C, stopped during the push, catches up when it starts again; `dev/*` stays
//! on A; a destination that refuses A's key shows FAILED with the reason and recovers once the
//! key is fixed (A restarted with the right one: the outbox kept the work).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const A_KEY: &str = "AKIAREPLICATIONA0001";
const A_SECRET: &str = "replication-a-secret-0123456789abcdefghij";
const B_KEY: &str = "AKIAREPLICATIONB0001";
const B_SECRET: &str = "replication-b-secret-0123456789abcdefghij";
const C_KEY: &str = "AKIAREPLICATIONC0001";
const C_SECRET: &str = "replication-c-secret-0123456789abcdefghij";
const B_ID: &str = "111111111111";
const C_ID: &str = "222222222222";
const SIGNATURE_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const WAIT: Duration = Duration::from_secs(90);

/// Two distinct loopback ports nothing listens on now (the servers bind them right after).
fn free_ports() -> (u16, u16) {
    let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let second = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (first.local_addr().unwrap().port(), second.local_addr().unwrap().port())
}

fn destination_server(port: u16, key: &str, secret: &str) -> Server {
    Launch::new().listen(&format!("127.0.0.1:{port}")).root_keys(key, secret).start()
}

/// A's config file: B and C as destinations, C with `c_secret`.
fn write_config(path: &Path, b_port: u16, c_port: u16, c_secret: &str) {
    let text = format!(
        r#"
[[replication.destinations]]
region = "eu-west-1"
registry_id = "{B_ID}"
url = "http://127.0.0.1:{b_port}"
access_key_id = "{B_KEY}"
secret_access_key = "{B_SECRET}"

[[replication.destinations]]
region = "eu-west-2"
registry_id = "{C_ID}"
url = "http://127.0.0.1:{c_port}"
access_key_id = "{C_KEY}"
secret_access_key = "{c_secret}"
"#
    );
    std::fs::write(path, text).unwrap();
}

/// One `[[replication.destinations]]` entry of a config file: a Berth on loopback `port`.
fn destination_entry(region: &str, id: &str, port: u16, key: &str, secret: &str) -> String {
    format!(
        "[[replication.destinations]]\nregion = \"{region}\"\nregistry_id = \"{id}\"\n\
         url = \"http://127.0.0.1:{port}\"\naccess_key_id = \"{key}\"\nsecret_access_key = \"{secret}\"\n"
    )
}

fn source_launch(config: &Path) -> Launch {
    Launch::new().root_keys(A_KEY, A_SECRET).args(&["--config", config.to_str().unwrap()])
}

async fn ecr(srv: &Server, operation: &str, body: Value) -> Value {
    let r = ecr_call(srv, A_KEY, A_SECRET, operation, &body.to_string()).await;
    r.expect_status(200);
    r.json()
}

/// Each destination's `(status, failureCode)` of the image, by region.
async fn statuses(a: &Server, repo: &str, digest: &str) -> Vec<(String, String, Option<String>)> {
    let body = json!({"repositoryName": repo, "imageId": {"imageDigest": digest}});
    let out = ecr(a, "DescribeImageReplicationStatus", body).await;
    assert_eq!(out["imageId"]["imageDigest"], digest);
    out["replicationStatuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["region"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
                s["failureCode"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

async fn wait_for_status(a: &Server, repo: &str, digest: &str, region: &str, status: &str) -> Option<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let all = statuses(a, repo, digest).await;
        if let Some((_, _, failure)) = all.iter().find(|(r, s, _)| r == region && s == status) {
            return failure.clone();
        }
        assert!(Instant::now() < deadline, "{repo}@{digest} never reached {status} at {region}: {all:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until `srv` serves the manifest `reference` of `repo`; returns its digest.
async fn wait_for_manifest(srv: &Server, repo: &str, reference: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = send(srv.get(&format!("/v2/{repo}/manifests/{reference}")).header("accept", ALL_MANIFEST_TYPES)).await;
        if r.status() == 200 {
            return r.must_header("docker-content-digest").to_owned();
        }
        assert!(Instant::now() < deadline, "{repo}:{reference} never arrived at {}", srv.base());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A two-platform index tagged `tag`, with a signature referring to the index. Returns
/// (index bytes, index digest, child images, signature digest).
async fn push_signed_multi_arch(a: &Server, repo: &str, tag: &str) -> (Vec<u8>, String, Vec<Image>, String) {
    let amd64 = push_image_arch(a, repo, None, "amd64").await;
    let arm64 = push_image_arch(a, repo, None, "arm64").await;
    let index = index_json(
        OCI_INDEX,
        &[
            platform_entry(OCI_MANIFEST, &amd64.manifest, "amd64"),
            platform_entry(OCI_MANIFEST, &arm64.manifest, "arm64"),
        ],
    );
    let index_digest = push_manifest(a, repo, tag, OCI_INDEX, &index).await;
    let signature_layer = random_bytes(300);
    push_blob(a, repo, b"{}").await;
    push_blob(a, repo, &signature_layer).await;
    let signature = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIGNATURE_TYPE,
        "config": descriptor(OCI_EMPTY, b"{}"),
        "layers": [descriptor(SIGNATURE_TYPE, &signature_layer)],
        "subject": descriptor(OCI_INDEX, &index),
    }))
    .unwrap();
    let signature_digest = sha256_digest(&signature);
    push_manifest(a, repo, &signature_digest, OCI_MANIFEST, &signature).await;
    (index, index_digest, vec![amd64, arm64], signature_digest)
}

/// Everything of the image is at `srv`, byte for byte: index by tag, each platform's manifest
/// and blobs, and the signature through the referrers API.
async fn expect_replica(srv: &Server, repo: &str, tag: &str, index: &[u8], children: &[Image], signature: &str) {
    let digest = sha256_digest(index);
    assert_eq!(wait_for_manifest(srv, repo, tag).await, digest);
    expect_manifest(srv, repo, tag, OCI_INDEX, index, &digest).await;
    for child in children {
        expect_manifest(srv, repo, &child.digest, OCI_MANIFEST, &child.manifest, &child.digest).await;
        expect_blob(srv, repo, &sha256_digest(&child.config), &child.config).await;
        for layer in &child.layers {
            expect_blob(srv, repo, &sha256_digest(layer), layer).await;
        }
    }
    assert_eq!(wait_for_manifest(srv, repo, signature).await, signature);
    let referrers = send(srv.get(&format!("/v2/{repo}/referrers/{digest}"))).await;
    referrers.expect_status(200);
    let listed: Vec<String> = referrers.json()["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, vec![signature.to_owned()], "referrers of {repo}@{digest} at {}", srv.base());
}

#[tokio::test]
async fn replicates_prod_images_to_two_registries_across_outages_and_bad_keys() {
    let (b_port, c_port) = free_ports();
    let b = destination_server(b_port, B_KEY, B_SECRET);
    let mut c = destination_server(c_port, C_KEY, C_SECRET);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("a.toml");
    write_config(&config, b_port, c_port, C_SECRET);
    let mut a = source_launch(&config).start();

    // B creates replicated repositories from its REPLICATION template, not its push one.
    let on_b = |operation: &'static str, body: Value| {
        let b = &b;
        async move {
            let r = ecr_call(b, B_KEY, B_SECRET, operation, &body.to_string()).await;
            r.expect_status(200);
            r.json()
        }
    };
    let template = |prefix: &str, applied_for: &str, via: &str| json!({"prefix": prefix, "appliedFor": [applied_for], "resourceTags": [{"Key": "via", "Value": via}]});
    on_b("CreateRepositoryCreationTemplate", template("prod", "REPLICATION", "replication")).await;
    on_b("CreateRepositoryCreationTemplate", template("ROOT", "CREATE_ON_PUSH", "push")).await;

    // The configuration: validated as ECR does.
    let rule_for = |prefix: &str, destinations: Value| {
        json!({"replicationConfiguration": {"rules": [{
            "destinations": destinations,
            "repositoryFilters": [{"filter": prefix, "filterType": "PREFIX_MATCH"}],
        }]}})
    };
    let rule = |destinations: Value| rule_for("prod/", destinations);
    // A destination this server maps to no registry is accepted, as ECR accepts any; the images
    // its rule covers read FAILED there, saying why.
    let unknown = rule_for("elsewhere/", json!([{"region": "ap-south-1", "registryId": "333333333333"}]));
    assert_eq!(ecr(&a, "PutReplicationConfiguration", unknown.clone()).await, unknown);
    let stray = push_image(&a, "elsewhere/app", Some("v1")).await;
    let found = statuses(&a, "elsewhere/app", &stray.digest).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let (region, status, code) = &found[0];
    assert_eq!((region.as_str(), status.as_str()), ("ap-south-1", "FAILED"), "{found:?}");
    let code = code.as_deref().unwrap_or_default();
    assert!(
        code.starts_with("DESTINATION_NOT_CONFIGURED: ") && code.contains("[[replication.destinations]]"),
        "{code}"
    );
    let to_self = rule(json!([{"region": "us-east-1", "registryId": "000000000000"}]));
    ecr_call(&a, A_KEY, A_SECRET, "PutReplicationConfiguration", &to_self.to_string()).await.expect_status(400);
    let bad_filter = json!({"replicationConfiguration": {"rules": [{
        "destinations": [{"region": "eu-west-1", "registryId": B_ID}],
        "repositoryFilters": [{"filter": "prod/", "filterType": "WILDCARD"}],
    }]}});
    ecr_call(&a, A_KEY, A_SECRET, "PutReplicationConfiguration", &bad_filter.to_string()).await.expect_status(400);
    let both = rule(json!([{"region": "eu-west-1", "registryId": B_ID}, {"region": "eu-west-2", "registryId": C_ID}]));
    let put = ecr(&a, "PutReplicationConfiguration", both.clone()).await;
    assert_eq!(put, both);
    let described = ecr(&a, "DescribeRegistry", json!({})).await;
    assert_eq!(described["replicationConfiguration"], both["replicationConfiguration"]);

    // C is down while the image is pushed.
    assert!(c.stop().success());
    let (index, index_digest, children, signature) = push_signed_multi_arch(&a, "prod/app", "v1").await;
    let dev = push_image(&a, "dev/app", Some("v1")).await;

    expect_replica(&b, "prod/app", "v1", &index, &children, &signature).await;
    let described = on_b("DescribeRepositories", json!({"repositoryNames": ["prod/app"]})).await;
    let arn = described["repositories"][0]["repositoryArn"].clone();
    let tags = on_b("ListTagsForResource", json!({"resourceArn": arn})).await;
    assert_eq!(tags["tags"], json!([{"Key": "via", "Value": "replication"}]));
    // A signature pushed as a referrer is not verified: DescribeImageSigningStatus (ECR's managed
    // signing, which Berth does not have) does not take it for a COMPLETE signing.
    let signing =
        ecr(&a, "DescribeImageSigningStatus", json!({"repositoryName": "prod/app", "imageId": {"imageTag": "v1"}}));
    assert_eq!(signing.await["signingStatuses"], json!([]));
    wait_for_status(&a, "prod/app", &index_digest, "eu-west-1", "COMPLETE").await;
    // The first image sent (a platform) fails; the rest of the repository waits behind it.
    let failure = wait_for_status(&a, "prod/app", &children[0].digest, "eu-west-2", "FAILED").await;
    assert!(failure.as_deref().is_some_and(|f| f.starts_with("DESTINATION_UNAVAILABLE")), "{failure:?}");
    wait_for_status(&a, "prod/app", &index_digest, "eu-west-2", "IN_PROGRESS").await;
    // dev/* matches no rule: never sent anywhere, no status.
    assert!(statuses(&a, "dev/app", &dev.digest).await.is_empty());
    send(b.get("/v2/dev/app/manifests/v1")).await.expect_status(404);

    // C comes back and catches up from the outbox.
    c.start_again();
    expect_replica(&c, "prod/app", "v1", &index, &children, &signature).await;
    wait_for_status(&a, "prod/app", &index_digest, "eu-west-2", "COMPLETE").await;
    send(c.get("/v2/dev/app/manifests/v1")).await.expect_status(404);

    // A's key for C goes bad: FAILED with the reason, B unaffected.
    write_config(&config, b_port, c_port, "not-the-secret-0123456789abcdefghijklmn");
    a.restart_with(source_launch(&config));
    let v2 = push_image(&a, "prod/app", Some("v2")).await;
    // Reported at once for each destination (IN_PROGRESS until its replicator takes the push).
    let right_after = statuses(&a, "prod/app", &v2.digest).await;
    let regions: Vec<&str> = right_after.iter().map(|(region, _, _)| region.as_str()).collect();
    assert_eq!(regions, ["eu-west-1", "eu-west-2"], "{right_after:?}");
    assert_eq!(wait_for_manifest(&b, "prod/app", "v2").await, v2.digest);
    let failure = wait_for_status(&a, "prod/app", &v2.digest, "eu-west-2", "FAILED").await;
    assert!(failure.as_deref().is_some_and(|f| f.starts_with("DESTINATION_UNAUTHORIZED")), "{failure:?}");
    send(c.get("/v2/prod/app/manifests/v2")).await.expect_status(404);

    // Fixed: the work kept in A's outbox goes through.
    write_config(&config, b_port, c_port, C_SECRET);
    a.restart_with(source_launch(&config));
    assert_eq!(wait_for_manifest(&c, "prod/app", "v2").await, v2.digest);
    expect_manifest(&c, "prod/app", "v2", OCI_MANIFEST, &v2.manifest, &v2.digest).await;
    wait_for_status(&a, "prod/app", &v2.digest, "eu-west-2", "COMPLETE").await;
    let both_complete = vec![
        ("eu-west-1".to_owned(), "COMPLETE".to_owned(), None),
        ("eu-west-2".to_owned(), "COMPLETE".to_owned(), None),
    ];
    assert_eq!(statuses(&a, "prod/app", &v2.digest).await, both_complete);

    // C's entry leaves A's configuration file: what C received stays its status, once.
    std::fs::write(&config, destination_entry("eu-west-1", B_ID, b_port, B_KEY, B_SECRET)).unwrap();
    a.restart_with(source_launch(&config));
    assert_eq!(statuses(&a, "prod/app", &v2.digest).await, both_complete);
}

/// As on ECR, a tag the destination holds immutable on another image is left out: the image is
/// replicated without it (COMPLETE). An event the destination refuses for what it is (here: an
/// index whose child A lacks, which A's `--sparse-indexes` took and B does not) is given up after
/// a few attempts and reads FAILED; it does not hold up the later pushes of its repository.
#[tokio::test]
async fn a_refused_image_stays_failed_an_immutable_tag_is_left_out_and_later_pushes_go_on() {
    let (b_port, _) = free_ports();
    let b = destination_server(b_port, B_KEY, B_SECRET);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("a.toml");
    std::fs::write(&config, destination_entry("eu-west-1", B_ID, b_port, B_KEY, B_SECRET)).unwrap();
    let a = source_launch(&config).args(&["--sparse-indexes"]).start();
    let immutable = json!({"repositoryName": "prod/app", "imageTagMutability": "IMMUTABLE"});
    ecr_call(&b, B_KEY, B_SECRET, "CreateRepository", &immutable.to_string()).await.expect_status(200);
    let rule = json!({"replicationConfiguration": {"rules": [{
        "destinations": [{"region": "eu-west-1", "registryId": B_ID}],
        "repositoryFilters": [{"filter": "prod/", "filterType": "PREFIX_MATCH"}]}]}});
    ecr(&a, "PutReplicationConfiguration", rule).await;

    let first = push_image(&a, "prod/app", Some("v1")).await;
    wait_for_status(&a, "prod/app", &first.digest, "eu-west-1", "COMPLETE").await;
    let moved = push_image(&a, "prod/app", Some("v1")).await;
    wait_for_status(&a, "prod/app", &moved.digest, "eu-west-1", "COMPLETE").await;
    assert_eq!(wait_for_manifest(&b, "prod/app", &moved.digest).await, moved.digest, "the image is there");
    assert_eq!(wait_for_manifest(&b, "prod/app", "v1").await, first.digest, "B's immutable v1 is unchanged");

    let absent_child = serde_json::to_vec(&json!({"schemaVersion": 2, "note": "never pushed"})).unwrap();
    let sparse = index_json(OCI_INDEX, &[platform_entry(OCI_MANIFEST, &absent_child, "amd64")]);
    let sparse_digest = push_manifest(&a, "prod/app", "sparse", OCI_INDEX, &sparse).await;
    let later = push_image(&a, "prod/app", Some("v2")).await;
    assert_eq!(wait_for_manifest(&b, "prod/app", "v2").await, later.digest, "the later push arrives");
    wait_for_status(&a, "prod/app", &later.digest, "eu-west-1", "COMPLETE").await;
    let failure = wait_for_status(&a, "prod/app", &sparse_digest, "eu-west-1", "FAILED").await.unwrap();
    assert!(failure.starts_with("DESTINATION_REFUSED") && failure.contains("MANIFEST_BLOB_UNKNOWN"), "{failure}");
}

/// A tagged image arrives at the destination in one manifest push, by its tag, so the
/// destination's audit trail (and its webhooks) record one push of it, as ECR's replicas do.
#[tokio::test]
async fn a_tagged_image_arrives_in_one_manifest_push() {
    let (b_port, _) = free_ports();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("b-audit.jsonl");
    let b = Launch::new()
        .listen(&format!("127.0.0.1:{b_port}"))
        .root_keys(B_KEY, B_SECRET)
        .args(&["--audit-log", audit.to_str().unwrap()])
        .start();
    let config = dir.path().join("a.toml");
    std::fs::write(&config, destination_entry("eu-west-1", B_ID, b_port, B_KEY, B_SECRET)).unwrap();
    let a = source_launch(&config).start();
    let rule = json!({"replicationConfiguration": {"rules": [{
        "destinations": [{"region": "eu-west-1", "registryId": B_ID}]}]}});
    ecr(&a, "PutReplicationConfiguration", rule).await;

    let image = push_image(&a, "prod/app", Some("v1")).await;
    wait_for_status(&a, "prod/app", &image.digest, "eu-west-1", "COMPLETE").await;
    assert_eq!(wait_for_manifest(&b, "prod/app", "v1").await, image.digest);
    let manifest_puts = || {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|record| record["eventName"] == "PutImage")
            .map(|record| record["requestParameters"].clone())
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + WAIT;
    while manifest_puts().is_empty() {
        assert!(Instant::now() < deadline, "B's audit trail never recorded the push");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let puts = manifest_puts();
    assert_eq!(puts.len(), 1, "one manifest push at B: {puts:?}");
    assert_eq!(puts[0]["imageTag"], "v1", "{puts:?}");
}

/// As on ECR, an image is replicated once per push, never onward: A replicates to B and B to C;
/// what B receives from A goes no further, while what is pushed to B itself reaches C.
#[tokio::test]
async fn an_image_is_replicated_once_per_push_never_onward() {
    let (b_port, c_port) = free_ports();
    let c = destination_server(c_port, C_KEY, C_SECRET);
    let dir = tempfile::tempdir().unwrap();
    let (a_config, b_config) = (dir.path().join("a.toml"), dir.path().join("b.toml"));
    std::fs::write(&a_config, destination_entry("eu-west-1", B_ID, b_port, B_KEY, B_SECRET)).unwrap();
    std::fs::write(&b_config, destination_entry("eu-west-2", C_ID, c_port, C_KEY, C_SECRET)).unwrap();
    let b = Launch::new()
        .listen(&format!("127.0.0.1:{b_port}"))
        .root_keys(B_KEY, B_SECRET)
        .args(&["--config", b_config.to_str().unwrap()])
        .start();
    let a = source_launch(&a_config).start();
    let rule = |region: &str, id: &str| {
        json!({"replicationConfiguration": {"rules": [{"destinations": [{"region": region, "registryId": id}]}]}})
            .to_string()
    };
    ecr(&a, "PutReplicationConfiguration", serde_json::from_str(&rule("eu-west-1", B_ID)).unwrap()).await;
    ecr_call(&b, B_KEY, B_SECRET, "PutReplicationConfiguration", &rule("eu-west-2", C_ID)).await.expect_status(200);

    let from_a = push_image(&a, "prod/app", Some("from-a")).await;
    wait_for_status(&a, "prod/app", &from_a.digest, "eu-west-1", "COMPLETE").await;
    assert_eq!(wait_for_manifest(&b, "prod/app", "from-a").await, from_a.digest);
    // Pushed to B after A's image arrived: B's events of the repository go out in order, so once
    // this one is at C, A's image was passed over.
    let on_b = push_image(&b, "prod/app", Some("on-b")).await;
    assert_eq!(wait_for_manifest(&c, "prod/app", "on-b").await, on_b.digest, "B's own push reaches C");
    for reference in [from_a.digest.as_str(), "from-a"] {
        let r = send(c.get(&format!("/v2/prod/app/manifests/{reference}")).header("accept", ALL_MANIFEST_TYPES)).await;
        r.expect_status(404);
    }
    let body = json!({"repositoryName": "prod/app", "imageId": {"imageDigest": from_a.digest}}).to_string();
    let status = ecr_call(&b, B_KEY, B_SECRET, "DescribeImageReplicationStatus", &body).await;
    status.expect_status(200);
    assert_eq!(status.json()["replicationStatuses"], json!([]), "B sends A's image nowhere");
}

/// A multi-arch image in a pull-through cache repository replicates whole, as ECR (which caches
/// an index's every image) would send it: the platforms no client pulled yet are fetched from the
/// upstream for the destination.
#[tokio::test]
async fn a_cached_multi_arch_image_replicates_whole() {
    let upstream = Server::start();
    let (amd, arm, _, index_digest) = push_two_platform_index(&upstream, "lib/multi", "v1").await;
    let (b_port, _) = free_ports();
    let b = destination_server(b_port, B_KEY, B_SECRET);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("a.toml");
    std::fs::write(&config, destination_entry("eu-west-1", B_ID, b_port, B_KEY, B_SECRET)).unwrap();
    let a = source_launch(&config).start();
    let rule = json!({"ecrRepositoryPrefix": "hub", "upstreamRegistryUrl": upstream.base(), "upstreamRepositoryPrefix": "lib"});
    ecr(&a, "CreatePullThroughCacheRule", rule).await;
    let replication = json!({"replicationConfiguration": {"rules": [{
        "destinations": [{"region": "eu-west-1", "registryId": B_ID}],
        "repositoryFilters": [{"filter": "hub/", "filterType": "PREFIX_MATCH"}]}]}});
    ecr(&a, "PutReplicationConfiguration", replication).await;

    // A client pulls the index by tag and one platform.
    let accept = format!("{OCI_MANIFEST}, {OCI_INDEX}");
    let r = send(a.get("/v2/hub/multi/manifests/v1").header("accept", &accept)).await;
    r.expect_status(200);
    expect_manifest(&a, "hub/multi", &amd.digest, OCI_MANIFEST, &amd.manifest, &amd.digest).await;

    assert_eq!(wait_for_manifest(&b, "hub/multi", "v1").await, index_digest);
    wait_for_status(&a, "hub/multi", &index_digest, "eu-west-1", "COMPLETE").await;
    for image in [&amd, &arm] {
        expect_manifest(&b, "hub/multi", &image.digest, OCI_MANIFEST, &image.manifest, &image.digest).await;
        expect_blob(&b, "hub/multi", &sha256_digest(&image.layers[0]), &image.layers[0]).await;
    }
}

/// ECR's `deleteReplication` is taken only off: Berth does not replicate deletions, and says so
/// rather than store a promise nothing keeps.
#[tokio::test]
async fn delete_replication_is_refused_when_enabled() {
    let srv = Launch::new().root_keys(A_KEY, A_SECRET).start();
    let rule = |enabled: bool| {
        json!({"replicationConfiguration": {"rules": [{
            "destinations": [{"region": "eu-west-1", "registryId": "111111111111"}],
            "deleteReplication": {"enabled": enabled}}]}})
    };
    let r = ecr_call(&srv, A_KEY, A_SECRET, "PutReplicationConfiguration", &rule(true).to_string()).await;
    assert_eq!(r.status(), 400, "{}", r.describe());
    assert_eq!(r.json()["__type"], "InvalidParameterException");
    assert!(r.json()["message"].as_str().unwrap().contains("not image deletions"), "{}", r.describe());
    let described = ecr(&srv, "DescribeRegistry", json!({})).await;
    assert_eq!(described["replicationConfiguration"]["rules"], json!([]), "nothing stored: {described}");

    let stored = ecr(&srv, "PutReplicationConfiguration", rule(false)).await;
    assert_eq!(stored["replicationConfiguration"]["rules"][0]["destinations"][0]["region"], "eu-west-1");
}

/// As on ECR, a configuration applies to the images pushed after it, and an image goes by the
/// rules in force when it was pushed: one pushed before the rule stays home, and one pushed while
/// the rule sent its repository there arrives once the destination is back, though the rule was
/// removed meanwhile.
#[tokio::test]
async fn images_go_by_the_rules_in_force_when_they_were_pushed() {
    let (b_port, _) = free_ports();
    let mut b = destination_server(b_port, B_KEY, B_SECRET);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("a.toml");
    std::fs::write(&config, destination_entry("eu-west-1", B_ID, b_port, B_KEY, B_SECRET)).unwrap();
    let a = source_launch(&config).start();
    let before = push_image(&a, "prod/app", Some("before")).await;
    let rule = json!({"replicationConfiguration": {"rules": [{
        "destinations": [{"region": "eu-west-1", "registryId": B_ID}]}]}});
    ecr(&a, "PutReplicationConfiguration", rule).await;
    let after = push_image(&a, "prod/app", Some("after")).await;
    assert_eq!(wait_for_manifest(&b, "prod/app", "after").await, after.digest);
    let r =
        send(b.get(&format!("/v2/prod/app/manifests/{}", before.digest)).header("accept", ALL_MANIFEST_TYPES)).await;
    r.expect_status(404);
    assert_eq!(statuses(&a, "prod/app", &before.digest).await, vec![], "pushed before the configuration");

    b.stop();
    let during = push_image(&a, "prod/app", Some("during")).await;
    ecr(&a, "PutReplicationConfiguration", json!({"replicationConfiguration": {"rules": []}})).await;
    b.start_again();
    assert_eq!(wait_for_manifest(&b, "prod/app", "during").await, during.digest, "sent by the rule of its push");
    wait_for_status(&a, "prod/app", &during.digest, "eu-west-1", "COMPLETE").await;
}
