//! `tags/list` and `_catalog`: ordering, `n`/`last` pagination and the `Link` header.

mod common;

use common::*;
use serde_json::json;

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a list, got {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Tags out of order, mixing cases, digits and '_' so that byte order differs from a
/// case-insensitive one.
const TAGS: [&str; 8] = ["b", "A", "a", "B", "1.0", "_hidden", "Zeta", "alpha-2"];

fn sorted_tags() -> Vec<String> {
    let mut t: Vec<String> = TAGS.iter().map(|s| s.to_string()).collect();
    t.sort(); // Rust sorts strings byte-wise
    t
}

async fn tagged_repo(srv: &Server, repo: &str) {
    let img = push_image(srv, repo, None).await;
    for tag in TAGS {
        put_manifest(srv, repo, tag, OCI_MANIFEST, &img.manifest).await.expect_status(201);
    }
}

#[tokio::test]
async fn tags_are_sorted_byte_wise() {
    let srv = Server::start();
    tagged_repo(&srv, "sorted/tags").await;
    let r = send(srv.get("/v2/sorted/tags/tags/list")).await;
    r.expect_status(200);
    assert!(r.header("content-type").unwrap_or_default().starts_with("application/json"), "{}", r.describe());
    assert!(r.header("link").is_none(), "no Link without more results: {}", r.describe());
    let v = r.json();
    assert_eq!(v["name"], "sorted/tags");
    assert_eq!(strings(&v["tags"]), sorted_tags());
    assert_eq!(strings(&v["tags"])[..3], ["1.0", "A", "B"]);
}

/// Follows `Link` headers from `first`, checking each page and the Link format; returns all
/// entries and the page sizes.
async fn paginate(srv: &Server, first: &str, field: &str, link_path: &str, n: usize) -> (Vec<String>, Vec<usize>) {
    let mut all = Vec::new();
    let mut pages = Vec::new();
    let mut next = Some(first.to_string());
    while let Some(path) = next.take() {
        let r = send(srv.get(&path)).await;
        r.expect_status(200);
        let page = strings(&r.json()[field]);
        assert!(page.len() <= n, "page larger than n={n}: {page:?}");
        pages.push(page.len());
        if let Some(link) = r.header("link") {
            let last = page.last().expect("a page with a Link is not empty");
            assert_eq!(link, format!("<{link_path}?n={n}&last={last}>; rel=\"next\""), "Link format");
            let target = link.trim_start_matches('<').split('>').next().unwrap().to_string();
            next = Some(target);
        }
        all.extend(page);
        assert!(pages.len() < 100, "pagination does not terminate");
    }
    (all, pages)
}

#[tokio::test]
async fn tags_pagination_with_n_and_link() {
    let srv = Server::start();
    tagged_repo(&srv, "paged").await;
    let (all, pages) = paginate(&srv, "/v2/paged/tags/list?n=3", "tags", "/v2/paged/tags/list", 3).await;
    assert_eq!(all, sorted_tags());
    assert_eq!(pages, vec![3, 3, 2]);

    // An exact multiple: the last full page carries no Link.
    let (all, pages) = paginate(&srv, "/v2/paged/tags/list?n=4", "tags", "/v2/paged/tags/list", 4).await;
    assert_eq!(all, sorted_tags());
    assert_eq!(pages, vec![4, 4]);

    // n larger than the list.
    let (all, pages) = paginate(&srv, "/v2/paged/tags/list?n=100", "tags", "/v2/paged/tags/list", 100).await;
    assert_eq!(all, sorted_tags());
    assert_eq!(pages, vec![8]);
}

#[tokio::test]
async fn tags_last_without_n_and_last_past_the_end() {
    let srv = Server::start();
    tagged_repo(&srv, "lasttag").await;
    let expected: Vec<String> = sorted_tags().into_iter().filter(|t| t.as_str() > "a").collect();
    let r = send(srv.get("/v2/lasttag/tags/list?last=a")).await;
    r.expect_status(200);
    assert_eq!(strings(&r.json()["tags"]), expected);

    // `last` need not be an existing tag.
    let r = send(srv.get("/v2/lasttag/tags/list?n=2&last=Z")).await;
    assert_eq!(strings(&r.json()["tags"]), vec!["Zeta", "_hidden"]);

    let r = send(srv.get("/v2/lasttag/tags/list?last=zzz")).await;
    r.expect_status(200);
    assert!(r.json()["tags"].as_array().is_none_or(|t| t.is_empty()), "{}", r.describe());
    assert!(r.header("link").is_none());
}

#[tokio::test]
async fn tags_of_an_unknown_repository() {
    let srv = Server::start();
    push_image(&srv, "exists", Some("v1")).await;
    send(srv.get("/v2/does/not/exist/tags/list")).await.expect_error(404, "NAME_UNKNOWN");
}

#[tokio::test]
async fn tags_with_bad_pagination_parameters() {
    let srv = Server::start();
    push_image(&srv, "badn", Some("v1")).await;
    for q in ["n=-1", "n=abc", "n=99999999999999999999999"] {
        let r = send(srv.get(&format!("/v2/badn/tags/list?{q}"))).await;
        assert!(r.status() == 200 || r.status() == 400, "{q}: {}", r.describe());
    }
}

#[tokio::test]
async fn catalog_lists_repositories_sorted_with_pagination() {
    let srv = Server::start();
    let repos = ["zeta/app", "alpha", "alpha/sub", "beta-1", "m/n/o"];
    for repo in repos {
        push_image(&srv, repo, Some("v1")).await;
    }
    let mut sorted: Vec<String> = repos.iter().map(|s| s.to_string()).collect();
    sorted.sort();

    let r = send(srv.get("/v2/_catalog")).await;
    r.expect_status(200);
    assert_eq!(r.json()["repositories"], json!(sorted));

    let (all, pages) = paginate(&srv, "/v2/_catalog?n=2", "repositories", "/v2/_catalog", 2).await;
    assert_eq!(all, sorted);
    assert_eq!(pages, vec![2, 2, 1]);

    let r = send(srv.get("/v2/_catalog?n=10&last=alpha/sub")).await;
    assert_eq!(strings(&r.json()["repositories"]), sorted[2..].to_vec());
}

#[tokio::test]
async fn catalog_of_an_empty_registry() {
    let srv = Server::start();
    let r = send(srv.get("/v2/_catalog")).await;
    r.expect_status(200);
    assert!(r.json()["repositories"].as_array().is_none_or(|t| t.is_empty()), "{}", r.describe());
}

#[tokio::test]
async fn a_repository_with_only_untagged_manifests_has_an_empty_tag_list() {
    let srv = Server::start();
    push_image(&srv, "untagged", None).await;
    let r = send(srv.get("/v2/untagged/tags/list")).await;
    r.expect_status(200);
    assert_eq!(r.json()["name"], "untagged");
    assert!(r.json()["tags"].as_array().is_none_or(|t| t.is_empty()), "{}", r.describe());
}

/// A single-valued parameter given twice is refused (400, in the code of that parameter's kind
/// of mistake) rather than guessed at — before, axum's query map failed and every parameter
/// was silently dropped, so `?n=1&n=2` listed everything.
#[tokio::test]
async fn repeated_query_parameters_are_refused() {
    let srv = Server::start();
    push_image(&srv, "twice", Some("a")).await;
    push_image(&srv, "twice", Some("b")).await;
    let img = push_image(&srv, "twice", Some("c")).await;
    for (path, code) in [
        ("/v2/twice/tags/list?n=1&n=2", "PAGINATION_NUMBER_INVALID"),
        ("/v2/twice/tags/list?n=1&last=a&last=b", "PAGINATION_NUMBER_INVALID"),
        ("/v2/_catalog?n=1&n=1", "PAGINATION_NUMBER_INVALID"),
    ] {
        let r = send(srv.get(path)).await;
        r.expect_error(400, code);
        assert!(r.text().contains("more than once"), "{path}: {}", r.describe());
    }
    let digest = sha256_digest(b"x");
    let r = send(srv.post(&format!("/v2/twice/blobs/uploads/?digest={digest}&digest={digest}")).body("x")).await;
    r.expect_error(400, "DIGEST_INVALID");
    let mount = format!("/v2/other/blobs/uploads/?mount={digest}&mount={digest}&from=twice");
    send(srv.post(&mount)).await.expect_error(400, "DIGEST_INVALID");
    let from = format!("/v2/other/blobs/uploads/?mount={digest}&from=twice&from=twice");
    send(srv.post(&from)).await.expect_error(400, "NAME_INVALID");
    let referrers = format!("/v2/twice/referrers/{}?artifactType=a%2Fb&artifactType=c%2Fd", img.digest);
    send(srv.get(&referrers)).await.expect_error(400, "UNSUPPORTED");
    // Nothing was uploaded or mounted, and one value still works.
    send(srv.head(&format!("/v2/twice/blobs/{digest}"))).await.expect_status(404);
    assert_eq!(send(srv.get("/v2/_catalog")).await.json()["repositories"], json!(["twice"]));
    let r = send(srv.get("/v2/twice/tags/list?n=1")).await;
    assert_eq!(r.json()["tags"], json!(["a"]));
}

#[tokio::test]
async fn head_answers_say_how_long_the_get_would_be() {
    let srv = Server::start();
    push_image(&srv, "headlen/app", Some("v1")).await;
    for path in ["/v2/", "/v2/headlen/app/tags/list", "/v2/_catalog", "/v2/headlen/app/manifests/missing"] {
        let (get, head) = (send(srv.get(path)).await, send(srv.head(path)).await);
        assert_eq!(head.status(), get.status(), "{path}");
        let length = get.text().len().to_string();
        assert_eq!(head.header("content-length"), Some(length.as_str()), "{path}: {}", head.describe());
    }
}
