//! The Bearer token flow against a token service in front of docker-registry: challenge, token
//! reuse, concurrent callers sharing one fetch, expiry, revocation, insufficient scope, refusals.

mod common;

use std::time::Duration;

use berth_remote::{Credentials, Error};
use common::image::{collect_blob, multiarch, pull_and_check, push_index, tag};
use common::token_server::{Config, TokenServer, User};
use common::{docker_registry, name, remote};

const ALICE: (&str, &str) = ("alice", "alice-secret-pw");

#[tokio::test]
async fn the_challenge_flow_pushes_and_pulls_with_one_token_per_scope() {
    let Some(registry) = docker_registry(None, "the_challenge_flow") else { return };
    let gate = TokenServer::start(&registry.url, Config::default()).await;
    let remote = remote(&gate.url, Credentials::basic(ALICE.0, ALICE.1));
    let repo = name("bearer/app");
    let image = multiarch("bearer", 1_500_000);
    push_index(&remote, &repo, &image, "v1").await.expect("push through the token flow");
    // One token for the push scope, one for the pull scope (HEADs during push are pulls).
    let after_push = gate.gate.token_requests();
    assert!((1..=2).contains(&after_push), "{after_push} token requests for one push");
    for _ in 0..5 {
        pull_and_check(&remote, &repo, &image, "v1").await.expect("pull");
    }
    assert_eq!(gate.gate.token_requests(), 2, "pulls reuse the cached pull token");
    let scopes = gate.gate.requested_scopes.lock().unwrap().clone();
    assert!(scopes.contains(&vec!["repository:bearer/app:pull,push".to_owned()]), "{scopes:?}");
    assert!(scopes.contains(&vec!["repository:bearer/app:pull".to_owned()]), "{scopes:?}");
}

#[tokio::test]
async fn concurrent_cold_requests_share_one_token_fetch() {
    let Some(registry) = docker_registry(None, "concurrent_cold_requests") else { return };
    let gate = TokenServer::start(&registry.url, Config::default()).await;
    let repo = name("bearer/concurrent");
    let image = multiarch("concurrent", 1000);
    push_index(&remote(&gate.url, Credentials::basic(ALICE.0, ALICE.1)), &repo, &image, "v1").await.unwrap();

    let fresh = remote(&gate.url, Credentials::basic(ALICE.0, ALICE.1));
    fresh.ping().await.unwrap(); // learns the scheme (one token for the registry scope)
    let before = gate.gate.token_requests();
    let pulls = (0..16).map(|_| {
        let (fresh, repo) = (fresh.clone(), repo.clone());
        tokio::spawn(async move { fresh.get_manifest(&repo, &tag("v1")).await })
    });
    for pull in futures::future::join_all(pulls).await {
        assert_eq!(pull.unwrap().unwrap().digest, image.index.digest);
    }
    assert_eq!(gate.gate.token_requests() - before, 1, "16 concurrent pulls, one token fetch");
}

#[tokio::test]
async fn tokens_are_renewed_before_expiry_and_after_revocation() {
    let Some(registry) = docker_registry(None, "tokens_are_renewed") else { return };
    let config = Config { token_lifetime: Duration::from_secs(2), ..Config::default() };
    let gate = TokenServer::start(&registry.url, config).await;
    let remote = remote(&gate.url, Credentials::basic(ALICE.0, ALICE.1));
    let repo = name("bearer/expiry");
    let image = multiarch("expiry", 1000);
    push_index(&remote, &repo, &image, "v1").await.unwrap();

    remote.get_manifest(&repo, &tag("v1")).await.unwrap();
    let start = gate.gate.token_requests();
    remote.get_manifest(&repo, &tag("v1")).await.unwrap();
    assert_eq!(gate.gate.token_requests(), start, "a fresh token is reused");
    // A 2 s token is renewed once half of it has run out, before the service would refuse it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    remote.get_manifest(&repo, &tag("v1")).await.unwrap();
    assert_eq!(gate.gate.token_requests(), start + 1, "renewed before expiry");

    // The service forgets its tokens (restart, key rotation): the 401 leads to a new token and
    // the request succeeds on its one retry.
    gate.gate.revoke_all();
    let fetched = remote.get_manifest(&repo, &tag("v1")).await.expect("retried with a new token");
    assert_eq!(fetched.digest, image.index.digest);
    assert_eq!(gate.gate.token_requests(), start + 2);
    // A blob (a one-shot stream on the way in, but a replayable GET) too.
    gate.gate.revoke_all();
    let layer = &image.children[0].layers[0];
    assert_eq!(collect_blob(&remote, &repo, &layer.digest).await.unwrap(), layer.bytes);
}

#[tokio::test]
async fn insufficient_scope_fetches_a_token_for_what_the_challenge_names() {
    let Some(registry) = docker_registry(None, "insufficient_scope") else { return };
    // Like ACR, listing tags needs `metadata_read` besides `pull`.
    let config = Config { tag_list_action: Some("metadata_read"), ..Config::default() };
    let gate = TokenServer::start(&registry.url, config).await;
    let remote = remote(&gate.url, Credentials::basic(ALICE.0, ALICE.1));
    let repo = name("bearer/scoped");
    let image = multiarch("scoped", 1000);
    push_index(&remote, &repo, &image, "v1").await.unwrap();
    remote.get_manifest(&repo, &tag("v1")).await.unwrap(); // caches a pull-only token
    let tags = remote.list_tags(&repo, None).await.expect("retried with the wider scope");
    assert_eq!(tags.iter().map(|t| t.as_str()).collect::<Vec<_>>(), ["v1"]);
    let last = gate.gate.requested_scopes.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last, ["repository:bearer/scoped:pull", "repository:bearer/scoped:pull,metadata_read"]);
    // The wider token now serves both.
    let count = gate.gate.token_requests();
    remote.list_tags(&repo, None).await.unwrap();
    remote.get_manifest(&repo, &tag("v1")).await.unwrap();
    assert_eq!(gate.gate.token_requests(), count);
}

#[tokio::test]
async fn refusals_are_unauthorized_or_denied_and_never_show_the_password() {
    let Some(registry) = docker_registry(None, "refusals") else { return };
    let reader = User { name: "reader", password: "reader-pw-77", actions: vec!["pull"] };
    let config = Config { users: vec![Config::default().users[0].clone(), reader], ..Config::default() };
    let gate = TokenServer::start(&registry.url, config).await;
    let repo = name("bearer/refusals");
    let image = multiarch("refusals", 1000);
    push_index(&remote(&gate.url, Credentials::basic(ALICE.0, ALICE.1)), &repo, &image, "v1").await.unwrap();

    // A wrong password: the token service refuses, with its message.
    let wrong = remote(&gate.url, Credentials::basic("alice", "hunter2-wrong"));
    let error = wrong.get_manifest(&repo, &tag("v1")).await.unwrap_err();
    assert_eq!(error, Error::Unauthorized { message: "token service: incorrect username or password".into() });
    assert!(!format!("{error} {error:?} {wrong:?}").contains("hunter2"));
    assert!(matches!(wrong.ping().await, Err(Error::Unauthorized { .. })));

    // Anonymous callers get tokens that grant nothing here.
    let anonymous = remote(&gate.url, Credentials::Anonymous);
    let error = anonymous.get_manifest(&repo, &tag("v1")).await.unwrap_err();
    assert!(matches!(error, Error::Denied { .. }), "{error:?}");

    // A reader may pull but not push: the registry's insufficient_scope after a fresh token.
    let reader = remote(&gate.url, Credentials::basic("reader", "reader-pw-77"));
    pull_and_check(&reader, &repo, &image, "v1").await.unwrap();
    let error = push_index(&reader, &repo, &image, "v2").await.unwrap_err();
    assert!(matches!(error, Error::Denied { .. }), "{error:?}");
}

/// docker-registry 2.8 ignores `n` on tag lists, so this runs the gate in front of Berth.
#[tokio::test]
async fn link_pagination_goes_through_every_page() {
    let Some(binary) = common::berth_binary("link_pagination_goes_through_every_page") else { return };
    let berth = common::berth(&binary, &["--no-auth"]);
    let gate = TokenServer::start(&berth.url, Config::default()).await;
    let remote = remote(&gate.url, Credentials::basic(ALICE.0, ALICE.1));
    let repo = name("bearer/pages");
    let image = multiarch("pages", 1000);
    push_index(&remote, &repo, &image, "a0").await.unwrap();
    for i in 1..5 {
        let index_type = "application/vnd.oci.image.index.v1+json";
        remote.put_manifest(&repo, &tag(&format!("a{i}")), index_type, image.index.bytes.clone()).await.unwrap();
    }
    let tags = remote.list_tags(&repo, Some(2)).await.unwrap();
    assert_eq!(tags.iter().map(|t| t.as_str()).collect::<Vec<_>>(), ["a0", "a1", "a2", "a3", "a4"]);
    assert_eq!(gate.gate.proxied_containing("/tags/list"), 3, "pages of 2, 2 and 1");
}
