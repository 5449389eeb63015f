//! Least privilege against the real `berth serve`: a user may do exactly what its identity
//! policies (and the repository policy) allow, on `/v2/` and on the ECR API alike; nothing is
//! allowed unless a policy allows it, an explicit `Deny` anywhere wins, the root is never denied,
//! and `berth user policy attach|detach` on a running server's data dir applies within a second.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const ACCOUNT: &str = "123456789012";
const ROOT_KEY_ID: &str = "AKIALEASTPRIVROOT001";
const ROOT_SECRET: &str = "least-privilege-root-secret-0123456789ab";
const FULL: &str = "AmazonEC2ContainerRegistryFullAccess";
const POWER: &str = "AmazonEC2ContainerRegistryPowerUser";
const READ_ONLY: &str = "AmazonEC2ContainerRegistryReadOnly";
const PULL_ONLY: &str = "AmazonEC2ContainerRegistryPullOnly";

fn launch() -> Launch {
    Launch::new().root_keys(ROOT_KEY_ID, ROOT_SECRET).args(&["--registry-id", ACCOUNT])
}

/// A user's keys and an HTTP Basic client for `/v2/`.
struct User {
    name: String,
    key: String,
    secret: String,
    v2: reqwest::Client,
}

impl User {
    async fn ecr(&self, srv: &Server, operation: &str, body: &Value) -> Resp {
        ecr_call(srv, &self.key, &self.secret, operation, &body.to_string()).await
    }

    async fn pull(&self, srv: &Server, repo: &str, reference: &str) -> u16 {
        let url = srv.url(&format!("/v2/{repo}/manifests/{reference}"));
        send(self.v2.get(url).header("accept", ALL_MANIFEST_TYPES)).await.status()
    }

    /// Starts an upload (what a push does first): the response.
    async fn start_push(&self, srv: &Server, repo: &str) -> Resp {
        send(self.v2.post(srv.url(&format!("/v2/{repo}/blobs/uploads/")))).await
    }
}

/// `berth user add NAME --policy P...`, once the server knows the key.
async fn add_user(srv: &Server, name: &str, policies: &[&str]) -> User {
    let mut args = vec!["user", "add", name];
    for policy in policies {
        args.extend(["--policy", policy]);
    }
    let output = srv.cli_output(&args);
    assert!(output.status.success(), "user add: {}", String::from_utf8_lossy(&output.stderr));
    let warned = String::from_utf8_lossy(&output.stderr).contains("may do nothing");
    assert_eq!(warned, policies.is_empty(), "stderr warns exactly when no policy is given");
    let created: Value = serde_json::from_slice(&output.stdout).expect("user add prints JSON");
    let key = created["accessKeyId"].as_str().unwrap().to_owned();
    let secret = created["secretAccessKey"].as_str().unwrap().to_owned();
    let v2 = http_client(Some(&basic(&key, &secret)));
    for _ in 0..100 {
        // 403 once the key is known but its policies do not allow ecr:GetAuthorizationToken
        // (401 before; 429 while the unknown key's tries have spent the address's budget).
        if matches!(send(v2.get(srv.url("/v2/"))).await.status(), 200 | 403) {
            return User { name: name.to_owned(), key, secret, v2 };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("user {name} was not let in");
}

/// A policy file allowing only ecr:GetAuthorizationToken, which a user needs on `/v2/` even
/// where a resource policy grants the rest (as on ECR, where docker logs in with its token).
fn login_only(srv: &Server) -> String {
    let file = srv.data_dir().join("login-only.json");
    let document = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}]});
    std::fs::write(&file, document.to_string()).unwrap();
    file.to_str().unwrap().to_owned()
}

/// Polls `check` until it returns true, for at most 3 s (changes by the CLI apply within 1 s).
async fn eventually<F: AsyncFn() -> bool>(what: &str, check: F) {
    for _ in 0..60 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 3 s");
}

fn denied(r: &Resp) -> bool {
    r.status() == 400 && r.json()["__type"] == "AccessDeniedException"
}

#[tokio::test]
async fn each_managed_policy_allows_exactly_its_actions_on_both_planes() {
    let srv = launch().start();
    push_image(&srv, "team/app", Some("v1")).await;
    let full = add_user(&srv, "full", &[FULL]).await;
    let power = add_user(&srv, "power", &[POWER]).await;
    let read_only = add_user(&srv, "reader", &[READ_ONLY]).await;
    let pull_only = add_user(&srv, "node", &[PULL_ONLY]).await;
    let nobody = add_user(&srv, "nobody", &[]).await;
    let repo = json!({"repositoryName": "team/app"});

    // Pull: all but the user without policies.
    for user in [&full, &power, &read_only, &pull_only] {
        assert_eq!(user.pull(&srv, "team/app", "v1").await, 200, "{} pulls", user.name);
        user.ecr(&srv, "GetAuthorizationToken", &json!({})).await.expect_status(200);
        user.ecr(&srv, "BatchGetImage", &json!({"repositoryName": "team/app", "imageIds": [{"imageTag": "v1"}]}))
            .await
            .expect_status(200);
    }
    assert_eq!(nobody.pull(&srv, "team/app", "v1").await, 403);
    let token = nobody.ecr(&srv, "GetAuthorizationToken", &json!({})).await;
    assert!(denied(&token), "a user without policies gets no token: {}", token.describe());
    assert!(token.json()["message"].as_str().unwrap().contains(&format!(
        "User: arn:aws:iam::{ACCOUNT}:user/nobody is not authorized to perform: ecr:GetAuthorizationToken on resource: * \
         because no identity-based policy allows the ecr:GetAuthorizationToken action"
    )));

    // Describe and list: not PullOnly.
    for user in [&full, &power, &read_only] {
        user.ecr(&srv, "DescribeImages", &repo).await.expect_status(200);
        let catalog = send(user.v2.get(srv.url("/v2/_catalog"))).await;
        assert_eq!(catalog.json()["repositories"], json!(["team/app"]), "{}", user.name);
    }
    let described = pull_only.ecr(&srv, "DescribeImages", &repo).await;
    assert!(denied(&described), "PullOnly cannot describe-images: {}", described.describe());
    send(pull_only.v2.get(srv.url("/v2/_catalog"))).await.expect_error(403, "DENIED");
    let tags = send(pull_only.v2.get(srv.url("/v2/team/app/tags/list"))).await;
    tags.expect_error(403, "DENIED");

    // Push into an existing repository: FullAccess and PowerUser.
    for user in [&full, &power] {
        user.start_push(&srv, "team/app").await.expect_status(202);
    }
    for user in [&read_only, &pull_only, &nobody] {
        user.start_push(&srv, "team/app").await.expect_error(403, "DENIED");
    }

    // Create-on-push needs ecr:CreateRepository on the new repository: PowerUser lacks it.
    power.start_push(&srv, "team/new").await.expect_error(403, "DENIED");
    let described = full.ecr(&srv, "DescribeRepositories", &json!({"repositoryNames": ["team/new"]})).await;
    assert_eq!(described.json()["__type"], "RepositoryNotFoundException", "nothing was created");
    full.start_push(&srv, "team/new").await.expect_status(202);
    full.ecr(&srv, "DescribeRepositories", &json!({"repositoryNames": ["team/new"]})).await.expect_status(200);

    // Administration: FullAccess alone.
    let policy = json!({"repositoryName": "team/app", "lifecyclePolicyText": r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":5},"action":{"type":"expire"}}]}"#});
    for user in [&power, &read_only, &pull_only, &nobody] {
        assert!(denied(&user.ecr(&srv, "PutLifecyclePolicy", &policy).await), "{}", user.name);
        let deleted = send(user.v2.delete(srv.url("/v2/team/app/manifests/v1"))).await;
        deleted.expect_error(403, "DENIED");
    }
    full.ecr(&srv, "PutLifecyclePolicy", &policy).await.expect_status(200);
    assert_eq!(full.pull(&srv, "team/app", "v1").await, 200, "denied deletes changed nothing");
}

#[tokio::test]
async fn custom_wildcard_policies_and_deny_precedence_across_identity_and_repository_policies() {
    let srv = launch().start();
    for repo in ["team-a/app", "team-a/prod", "team-b/app"] {
        push_image(&srv, repo, Some("v1")).await;
    }
    let team_a = format!("arn:aws:ecr:us-east-1:{ACCOUNT}:repository/team-a/*");
    let document = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Login", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken", "ecr:DescribeRepositories"], "Resource": "*"},
        {"Sid": "TeamA", "Effect": "Allow", "Action": "ecr:*", "Resource": team_a},
        {"Sid": "KeepProd", "Effect": "Deny", "Action": "ecr:BatchDeleteImage",
         "Resource": format!("arn:aws:ecr:us-east-1:{ACCOUNT}:repository/team-a/prod")},
        {"Sid": "HideB", "Effect": "Deny", "Action": "ecr:DescribeRepositories",
         "Resource": format!("arn:aws:ecr:us-east-1:{ACCOUNT}:repository/team-b/*")},
    ]});
    let file = srv.data_dir().join("ci-team-a.json");
    std::fs::write(&file, document.to_string()).unwrap();
    let ci = add_user(&srv, "ci", &[file.to_str().unwrap()]).await;
    let listed = srv.cli(&["user", "policy", "list", "ci"]);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["policies"][0]["policyName"], "ci-team-a");
    assert_eq!(listed["policies"][0]["policyDocument"], document);

    // The wildcard covers every team-a repository, including new ones (create-on-push).
    assert_eq!(ci.pull(&srv, "team-a/app", "v1").await, 200);
    ci.start_push(&srv, "team-a/app").await.expect_status(202);
    ci.start_push(&srv, "team-a/fresh").await.expect_status(202);
    assert_eq!(ci.pull(&srv, "team-b/app", "v1").await, 403);
    ci.start_push(&srv, "team-b/app").await.expect_error(403, "DENIED");
    ci.start_push(&srv, "team-b/fresh").await.expect_error(403, "DENIED");

    // Listings show only what the caller may describe.
    let catalog = send(ci.v2.get(srv.url("/v2/_catalog"))).await.json();
    assert_eq!(catalog["repositories"], json!(["team-a/app", "team-a/fresh", "team-a/prod"]));
    let described = ci.ecr(&srv, "DescribeRepositories", &json!({})).await.json();
    let names: Vec<&str> =
        described["repositories"].as_array().unwrap().iter().map(|r| r["repositoryName"].as_str().unwrap()).collect();
    assert_eq!(names, ["team-a/app", "team-a/fresh", "team-a/prod"]);

    // An identity policy's Deny beats its own Allow.
    let delete = json!({"repositoryName": "team-a/prod", "imageIds": [{"imageTag": "v1"}]});
    let refused = ci.ecr(&srv, "BatchDeleteImage", &delete).await;
    assert!(denied(&refused), "{}", refused.describe());
    assert!(refused.json()["message"].as_str().unwrap().ends_with("with an explicit deny in an identity-based policy"));
    assert_eq!(ci.pull(&srv, "team-a/prod", "v1").await, 200, "nothing changed");

    // A repository policy's Deny beats an identity Allow; its Allow grants a user that has no
    // identity policy for the repository.
    let outsider = add_user(&srv, "outsider", &[&login_only(&srv)]).await;
    let repository_policy = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "NoPushByCi", "Effect": "Deny", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/ci")}, "Action": "ecr:PutImage"},
        {"Sid": "ReaderPulls", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/outsider")},
         "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]},
    ]});
    let body = json!({"repositoryName": "team-a/app", "policyText": repository_policy.to_string()});
    ecr_call(&srv, ROOT_KEY_ID, ROOT_SECRET, "SetRepositoryPolicy", &body.to_string()).await.expect_status(200);
    let image = push_image(&srv, "team-a/app", Some("v2")).await;
    let put = send(
        ci.v2
            .put(srv.url("/v2/team-a/app/manifests/v3"))
            .header("content-type", OCI_MANIFEST)
            .body(image.manifest.clone()),
    )
    .await;
    put.expect_error(403, "DENIED");
    assert_eq!(ci.pull(&srv, "team-a/app", "v3").await, 404, "the denied push changed nothing");
    assert_eq!(outsider.pull(&srv, "team-a/app", "v2").await, 200);
    assert_eq!(outsider.pull(&srv, "team-a/prod", "v1").await, 403);

    // `berth policy simulate` names the deciding statements.
    let simulate = |user: &str, action: &str, repo: &str| {
        srv.cli(&[
            "policy",
            "simulate",
            "--user",
            user,
            "--action",
            action,
            "--repository",
            repo,
            "--registry-id",
            ACCOUNT,
        ])
    };
    let explained = simulate("ci", "ecr:BatchDeleteImage", "team-a/prod");
    assert!(explained.contains("explicit deny"), "{explained}");
    assert!(explained.contains(r#"(Sid "KeepProd") of identity policy "ci-team-a""#), "{explained}");
    let explained = simulate("ci", "ecr:PutImage", "team-a/app");
    assert!(explained.contains(r#"(Sid "NoPushByCi") of repository policy"#), "{explained}");
    let explained = simulate("ci", "ecr:BatchGetImage", "team-a/app");
    assert!(
        explained
            .starts_with("ci\necr:BatchGetImage on arn:aws:ecr:us-east-1:123456789012:repository/team-a/app\nallowed")
    );
    assert!(explained.contains(r#"(Sid "TeamA")"#), "{explained}");
    let explained = simulate("ci", "ecr:BatchGetImage", "team-b/app");
    assert!(explained.contains("implicit deny"), "{explained}");
    assert!(
        simulate("root", "ecr:DeleteRepository", "team-a/prod")
            .contains("allowed: the root user (refused only by a resource policy's Deny")
    );
}

/// Tag-based access control as ECR's guide shows it: the tags a request sets are
/// `aws:RequestTag/<key>` and `aws:TagKeys` on CreateRepository, TagResource and UntagResource
/// (whose keys are named without values), so an Allow can demand a tag and a Deny can protect one.
#[tokio::test]
async fn request_tags_reach_the_policy_conditions() {
    let srv = launch().start();
    let document = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "OwnTeamOnly", "Effect": "Allow", "Action": ["ecr:CreateRepository", "ecr:TagResource"],
         "Resource": "*", "Condition": {"StringEquals": {"aws:RequestTag/team": "web"}}},
        {"Sid": "Untag", "Effect": "Allow", "Action": ["ecr:UntagResource", "ecr:GetAuthorizationToken"], "Resource": "*"},
        {"Sid": "KeepOwner", "Effect": "Deny", "Action": ["ecr:TagResource", "ecr:UntagResource"],
         "Resource": "*", "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": ["owner"]}}},
    ]});
    let file = srv.data_dir().join("tagged.json");
    std::fs::write(&file, document.to_string()).unwrap();
    let ci = add_user(&srv, "tagger", &[file.to_str().unwrap()]).await;
    let create = |tags: Value| json!({"repositoryName": "web/app", "tags": tags});

    for tags in [json!([]), json!([{"Key": "team", "Value": "api"}])] {
        let refused = ci.ecr(&srv, "CreateRepository", &create(tags.clone())).await;
        assert!(denied(&refused), "{tags}: {}", refused.describe());
    }
    let refused = ci.ecr(&srv, "CreateRepository", &json!({"repositoryName": "web/app"})).await;
    assert!(denied(&refused), "no tags: the key is absent, {}", refused.describe());
    ci.ecr(&srv, "CreateRepository", &create(json!([{"Key": "team", "Value": "web"}]))).await.expect_status(200);

    let arn = format!("arn:aws:ecr:us-east-1:{ACCOUNT}:repository/web/app");
    let tag = |tags: Value| json!({"resourceArn": arn, "tags": tags});
    ci.ecr(&srv, "TagResource", &tag(json!([{"Key": "team", "Value": "web"}, {"Key": "env", "Value": "dev"}])))
        .await
        .expect_status(200);
    let refused = ci.ecr(&srv, "TagResource", &tag(json!([{"Key": "team", "Value": "api"}]))).await;
    assert!(denied(&refused), "{}", refused.describe());
    root(&srv, "TagResource", &tag(json!([{"Key": "owner", "Value": "ops"}]))).await.expect_status(200);
    let refused = ci
        .ecr(&srv, "TagResource", &tag(json!([{"Key": "team", "Value": "web"}, {"Key": "owner", "Value": "me"}])))
        .await;
    assert!(refused.json()["message"].as_str().unwrap().ends_with("with an explicit deny in an identity-based policy"));
    let untag = |keys: Value| json!({"resourceArn": arn, "tagKeys": keys});
    let refused = ci.ecr(&srv, "UntagResource", &untag(json!(["env", "owner"]))).await;
    assert!(denied(&refused), "{}", refused.describe());
    ci.ecr(&srv, "UntagResource", &untag(json!(["env"]))).await.expect_status(200);

    let listed = root(&srv, "ListTagsForResource", &json!({"resourceArn": arn})).await.json();
    assert_eq!(listed["tags"], json!([{"Key": "team", "Value": "web"}, {"Key": "owner", "Value": "ops"}]));
}

/// On ECR `/v2/` takes only the token GetAuthorizationToken gives; Berth also takes a key id and
/// secret, so a policy that denies that action (or allows it only from elsewhere) gates them too.
#[tokio::test]
async fn access_keys_on_v2_need_what_a_token_would() {
    let srv = launch().start();
    push_image(&srv, "gated", Some("v1")).await;
    let pull =
        json!({"Effect": "Allow", "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], "Resource": "*"});
    let cases = [
        ("no-login", json!([pull])),
        (
            "denied-login",
            json!([pull, {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
                                  {"Effect": "Deny", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}]),
        ),
        (
            "elsewhere",
            json!([pull, {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*",
                                    "Condition": {"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}}]),
        ),
    ];
    for (name, statements) in cases {
        let file = srv.data_dir().join(format!("{name}.json"));
        std::fs::write(&file, json!({"Version": "2012-10-17", "Statement": statements}).to_string()).unwrap();
        let output = srv.cli_output(&["user", "add", name, "--policy", file.to_str().unwrap()]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let created: Value = serde_json::from_slice(&output.stdout).unwrap();
        let client = http_client(Some(&basic(
            created["accessKeyId"].as_str().unwrap(),
            created["secretAccessKey"].as_str().unwrap(),
        )));
        let mut refused = send(client.get(srv.url("/v2/"))).await;
        for _ in 0..100 {
            if !matches!(refused.status(), 401 | 429) {
                break;
            }
            // The server has not seen the new key yet (or throttles the tries meanwhile).
            tokio::time::sleep(Duration::from_millis(50)).await;
            refused = send(client.get(srv.url("/v2/"))).await;
        }
        refused.expect_error(403, "DENIED");
        assert!(refused.text().contains("ecr:GetAuthorizationToken"), "{name}: {}", refused.describe());
        let manifest = send(client.get(srv.url("/v2/gated/manifests/v1")).header("accept", ALL_MANIFEST_TYPES)).await;
        manifest.expect_error(403, "DENIED");
    }
}

#[tokio::test]
async fn policy_changes_on_a_running_server_take_effect_at_once() {
    let srv = launch().start();
    push_image(&srv, "app", Some("v1")).await;
    let late = add_user(&srv, "late", &[]).await;
    assert_eq!(late.pull(&srv, "app", "v1").await, 403);

    let attached: Value = serde_json::from_str(&srv.cli(&["user", "policy", "attach", "late", PULL_ONLY])).unwrap();
    assert_eq!(
        attached["policies"],
        json!([{"policyName": PULL_ONLY, "policyArn": format!("arn:aws:iam::aws:policy/{PULL_ONLY}")}])
    );
    eventually("the attached policy allowing the pull", async || late.pull(&srv, "app", "v1").await == 200).await;
    // The allowed decision was cached; detaching must still take effect.
    assert_eq!(late.pull(&srv, "app", "v1").await, 200);
    srv.cli(&["user", "policy", "detach", "late", PULL_ONLY]);
    eventually("the detached policy no longer allowing the pull", async || late.pull(&srv, "app", "v1").await == 403)
        .await;

    let users: Value = serde_json::from_str(&srv.cli(&["user", "list"])).unwrap();
    let late_listed = users.as_array().unwrap().iter().find(|u| u["userName"] == "late").unwrap();
    assert_eq!(late_listed["policies"], json!([]));
    srv.cli(&["user", "policy", "attach", "late", READ_ONLY]);
    let users: Value = serde_json::from_str(&srv.cli(&["user", "list"])).unwrap();
    let late_listed = users.as_array().unwrap().iter().find(|u| u["userName"] == "late").unwrap();
    assert_eq!(late_listed["policies"], json!([READ_ONLY]));

    // Bad input is refused with a clear message and changes nothing.
    let refused = srv.cli_output(&["user", "policy", "attach", "late", "AmazonEC2ContainerRegistryEverything"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("neither a managed policy"));
    let bad = srv.data_dir().join("bad.json");
    std::fs::write(&bad, r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*"}]}"#).unwrap();
    let refused = srv.cli_output(&["user", "add", "badpolicy", "--policy", bad.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a valid identity policy"));
    let users: Value = serde_json::from_str(&srv.cli(&["user", "list"])).unwrap();
    assert!(users.as_array().unwrap().iter().all(|u| u["userName"] != "badpolicy"), "no user was created");
    let refused = srv.cli_output(&["user", "policy", "detach", "late", PULL_ONLY]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is not attached"));
    let refused = srv.cli_output(&["user", "policy", "attach", "ghost", READ_ONLY]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("user ghost does not exist"));
}

async fn root(srv: &Server, operation: &str, body: &Value) -> Resp {
    ecr_call(srv, ROOT_KEY_ID, ROOT_SECRET, operation, &body.to_string()).await
}

#[tokio::test]
async fn the_registry_policy_governs_every_repository_under_its_scope() {
    let srv = launch().start();
    for repo in ["one/app", "two/app"] {
        push_image(&srv, repo, Some("v1")).await;
    }
    let ci = add_user(&srv, "ci", &[FULL]).await;
    let guest = add_user(&srv, "guest", &[&login_only(&srv)]).await;

    let missing = root(&srv, "GetRegistryPolicy", &json!({})).await;
    missing.expect_status(400);
    assert_eq!(missing.json()["__type"], "RegistryPolicyNotFoundException");
    assert_eq!(
        missing.json()["message"],
        format!("Registry policy does not exist in the registry with id '{ACCOUNT}'")
    );
    let invalid =
        root(&srv, "PutRegistryPolicy", &json!({"policyText": r#"{"Statement":[{"Effect":"Allow"}]}"#})).await;
    assert_eq!(invalid.json()["__type"], "InvalidParameterException", "{}", invalid.describe());

    let everywhere = format!("arn:aws:ecr:us-east-1:{ACCOUNT}:repository/*");
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "CiNeverDeletes", "Effect": "Deny", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/ci")},
         "Action": "ecr:BatchDeleteImage", "Resource": everywhere},
        {"Sid": "GuestPulls", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/guest")},
         "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], "Resource": everywhere},
    ]})
    .to_string();
    let put = root(&srv, "PutRegistryPolicy", &json!({"policyText": policy})).await;
    put.expect_status(200);
    let answered = |body: Value| serde_json::from_str::<Value>(body["policyText"].as_str().unwrap()).unwrap();
    assert_eq!(put.json()["registryId"], ACCOUNT);
    assert_eq!(answered(put.json()), serde_json::from_str::<Value>(&policy).unwrap());
    assert_eq!(answered(root(&srv, "GetRegistryPolicy", &json!({})).await.json()), answered(put.json()));

    // Scope V2 (the default): its Deny beats FullAccess in every repository, its Allow grants.
    for repo in ["one/app", "two/app"] {
        let delete = json!({"repositoryName": repo, "imageIds": [{"imageTag": "v1"}]});
        let refused = ci.ecr(&srv, "BatchDeleteImage", &delete).await;
        assert!(denied(&refused), "{}", refused.describe());
        assert!(
            refused.json()["message"].as_str().unwrap().ends_with("with an explicit deny in a resource-based policy")
        );
        send(ci.v2.delete(srv.url(&format!("/v2/{repo}/manifests/v1")))).await.expect_error(403, "DENIED");
        assert_eq!(guest.pull(&srv, repo, "v1").await, 200, "the registry policy lets guest pull {repo}");
        assert_eq!(ci.pull(&srv, repo, "v1").await, 200, "nothing was deleted");
    }
    let explained = srv.cli(&[
        "policy",
        "simulate",
        "--user",
        "ci",
        "--action",
        "ecr:BatchDeleteImage",
        "--repository",
        "one/app",
        "--registry-id",
        ACCOUNT,
    ]);
    assert!(explained.contains(r#"(Sid "CiNeverDeletes") of registry policy"#), "{explained}");

    // Scope V1: the registry policy governs replication and pull-through actions only.
    let scope = root(&srv, "PutAccountSetting", &json!({"name": "REGISTRY_POLICY_SCOPE", "value": "V1"})).await;
    assert_eq!(scope.json(), json!({"name": "REGISTRY_POLICY_SCOPE", "value": "V1"}));
    assert_eq!(guest.pull(&srv, "one/app", "v1").await, 403);
    ci.ecr(&srv, "BatchDeleteImage", &json!({"repositoryName": "two/app", "imageIds": [{"imageTag": "v1"}]}))
        .await
        .expect_status(200);
    root(&srv, "PutAccountSetting", &json!({"name": "REGISTRY_POLICY_SCOPE", "value": "V2"})).await.expect_status(200);
    assert_eq!(guest.pull(&srv, "one/app", "v1").await, 200);

    let deleted = root(&srv, "DeleteRegistryPolicy", &json!({})).await;
    assert_eq!(answered(deleted.json()), serde_json::from_str::<Value>(&policy).unwrap());
    assert_eq!(guest.pull(&srv, "one/app", "v1").await, 403, "the grant went with the policy");
    let again = root(&srv, "DeleteRegistryPolicy", &json!({})).await;
    assert_eq!(again.json()["__type"], "RegistryPolicyNotFoundException");
    let token = guest.ecr(&srv, "PutRegistryPolicy", &json!({"policyText": policy})).await;
    assert!(denied(&token), "a user without policies may not set the registry policy");
}

#[tokio::test]
async fn account_settings_are_stored_and_blob_mounting_is_honoured_on_v2() {
    let srv = launch().start();
    let image = push_image(&srv, "source/app", Some("v1")).await;
    let layer = sha256_digest(&image.layers[0]);
    let get = async |name: &str| root(&srv, "GetAccountSetting", &json!({"name": name})).await.json();
    assert_eq!(get("BLOB_MOUNTING").await, json!({"name": "BLOB_MOUNTING", "value": "ENABLED"}));
    assert_eq!(get("REGISTRY_POLICY_SCOPE").await["value"], "V2");
    assert_eq!(get("BASIC_SCAN_TYPE_VERSION").await["value"], "AWS_NATIVE");

    let mount = async |target: &str| {
        send(srv.post(&format!("/v2/{target}/blobs/uploads/?mount={layer}&from=source/app"))).await.status()
    };
    assert_eq!(mount("first/app").await, 201, "mounted");
    root(&srv, "PutAccountSetting", &json!({"name": "BLOB_MOUNTING", "value": "DISABLED"})).await.expect_status(200);
    assert_eq!(mount("second/app").await, 202, "an upload session instead of a mount");
    send(srv.head(&format!("/v2/second/app/blobs/{layer}"))).await.expect_status(404);
    root(&srv, "PutAccountSetting", &json!({"name": "BLOB_MOUNTING", "value": "ENABLED"})).await.expect_status(200);
    assert_eq!(mount("third/app").await, 201);

    let echoed = root(&srv, "PutAccountSetting", &json!({"name": "BASIC_SCAN_TYPE_VERSION", "value": "CLAIR"})).await;
    assert_eq!(echoed.json(), json!({"name": "BASIC_SCAN_TYPE_VERSION", "value": "CLAIR"}));
    assert_eq!(get("BASIC_SCAN_TYPE_VERSION").await["value"], "CLAIR");

    let bad_value = root(&srv, "PutAccountSetting", &json!({"name": "BLOB_MOUNTING", "value": "SOMETIMES"})).await;
    assert_eq!(bad_value.json()["__type"], "InvalidParameterException");
    assert!(bad_value.json()["message"].as_str().unwrap().contains("[ENABLED, DISABLED]"));
    let bad_name = root(&srv, "GetAccountSetting", &json!({"name": "NO_SUCH_SETTING"})).await;
    assert_eq!(bad_name.json()["__type"], "InvalidParameterException");
    assert_eq!(get("BLOB_MOUNTING").await["value"], "ENABLED", "refused writes changed nothing");
}

/// IAM binds a resource policy's user principal to the user, not its name: a user removed and
/// created again under the same name is not the principal (its old grants do not come back).
#[tokio::test]
async fn a_user_created_again_under_an_old_name_gets_none_of_the_old_users_grants() {
    let srv = launch().start();
    for repo in ["granted/app", "open/app", "later/app"] {
        push_image(&srv, repo, Some("v1")).await;
    }
    let login = login_only(&srv);
    let pulls_for = |user: &str, resource: Option<&str>| {
        let mut statement = json!({"Sid": "Pulls", "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/{user}")},
            "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]});
        if let Some(resource) = resource {
            statement["Resource"] = json!(resource);
        }
        json!({"Version": "2012-10-17", "Statement": [statement]}).to_string()
    };
    let ghost = add_user(&srv, "ghost", &[&login]).await;
    let grant = json!({"repositoryName": "granted/app", "policyText": pulls_for("ghost", None)});
    root(&srv, "SetRepositoryPolicy", &grant).await.expect_status(200);
    let open = format!("arn:aws:ecr:us-east-1:{ACCOUNT}:repository/open/*");
    let registry = json!({"policyText": pulls_for("ghost", Some(&open))});
    root(&srv, "PutRegistryPolicy", &registry).await.expect_status(200);
    assert_eq!(ghost.pull(&srv, "granted/app", "v1").await, 200, "the repository policy grants ghost");
    assert_eq!(ghost.pull(&srv, "open/app", "v1").await, 200, "so does the registry policy");

    srv.cli(&["user", "remove", "ghost"]);
    let ghost = add_user(&srv, "ghost", &[&login]).await;
    for repo in ["granted/app", "open/app"] {
        eventually(&format!("the new ghost is refused {repo}"), async || ghost.pull(&srv, repo, "v1").await == 403)
            .await;
    }
    // Setting a policy again binds its names to the users of now.
    root(&srv, "SetRepositoryPolicy", &grant).await.expect_status(200);
    assert_eq!(ghost.pull(&srv, "granted/app", "v1").await, 200);
    assert_eq!(ghost.pull(&srv, "open/app", "v1").await, 403, "the registry policy still names the old ghost");

    // A name no user has is refused, as IAM refuses it; once the user exists it is taken.
    let later = json!({"repositoryName": "later/app", "policyText": pulls_for("newcomer", None)});
    let refused = root(&srv, "SetRepositoryPolicy", &later).await;
    refused.expect_status(400);
    assert_eq!(
        refused.json()["message"],
        "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Principal not found'"
    );
    let newcomer = add_user(&srv, "newcomer", &[&login]).await;
    root(&srv, "SetRepositoryPolicy", &later).await.expect_status(200);
    assert_eq!(newcomer.pull(&srv, "later/app", "v1").await, 200);

    // A creation template's policy is bound to the users of when it creates a repository.
    let template =
        json!({"prefix": "tpl", "appliedFor": ["CREATE_ON_PUSH"], "repositoryPolicy": pulls_for("ghost", None)});
    root(&srv, "CreateRepositoryCreationTemplate", &template).await.expect_status(200);
    push_image(&srv, "tpl/app", Some("v1")).await;
    assert_eq!(ghost.pull(&srv, "tpl/app", "v1").await, 200, "the template's policy grants this ghost");
    srv.cli(&["user", "remove", "ghost"]);
    let ghost = add_user(&srv, "ghost", &[&login]).await;
    eventually("a third ghost is refused tpl/app", async || ghost.pull(&srv, "tpl/app", "v1").await == 403).await;
}

/// A push that says it is another registry's replication (Berth's replicator's user agent) is
/// not replicated onward, so the claim needs ecr:ReplicateImage: a PowerUser may push the same
/// manifest plainly, not as replication, until a policy allows ReplicateImage too.
#[tokio::test]
async fn a_push_claiming_replication_needs_replicate_image() {
    let srv = launch().start();
    let image = push_image(&srv, "rep/app", None).await;
    let pusher = add_user(&srv, "pusher", &[POWER]).await;
    let put = |user_agent: Option<&'static str>| {
        let mut request = pusher
            .v2
            .put(srv.url("/v2/rep/app/manifests/v1"))
            .header("content-type", OCI_MANIFEST)
            .body(image.manifest.clone());
        if let Some(agent) = user_agent {
            request = request.header("user-agent", agent);
        }
        send(request)
    };
    let claimed = put(Some("berth-replication/0.1")).await;
    claimed.expect_status(403);
    assert_eq!(claimed.json()["errors"][0]["code"], "DENIED");
    assert!(claimed.text().contains("ecr:ReplicateImage"), "{}", claimed.describe());
    put(None).await.expect_status(201);
    let replicator = srv.data_dir().join("replicate.json");
    let document = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecr:ReplicateImage", "Resource": "*"}]});
    std::fs::write(&replicator, document.to_string()).unwrap();
    srv.cli(&["user", "policy", "attach", "pusher", replicator.to_str().unwrap()]);
    eventually("the replication claim is allowed", async || put(Some("berth-replication/0.1")).await.status() == 201)
        .await;
}

/// A creation template acts later for whoever pushes, so making one needs what it would do: as
/// AWS documents, `ecr:CreateRepository`, plus `ecr:PutLifecyclePolicy` / `ecr:SetRepositoryPolicy`
/// for the policies it carries, on the repositories its prefix covers. A user allowed only the
/// template actions cannot plant a policy granting themself every repository pushed later.
#[tokio::test]
async fn a_creation_template_needs_the_permissions_it_would_exercise() {
    let srv = launch().start();
    let file = srv.data_dir().join("templates-only.json");
    let templates_only = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": [
        "ecr:CreateRepositoryCreationTemplate", "ecr:UpdateRepositoryCreationTemplate",
        "ecr:DescribeRepositoryCreationTemplates", "ecr:DeleteRepositoryCreationTemplate"], "Resource": "*"}]});
    std::fs::write(&file, templates_only.to_string()).unwrap();
    let planter = add_user(&srv, "planter", &[file.to_str().unwrap()]).await;
    let grab = json!({"Version": "2012-10-17", "Statement": [{"Sid": "grab", "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/planter")}, "Action": "ecr:*"}]})
    .to_string();
    let lifecycle = json!({"rules": [{"rulePriority": 1, "description": "keep one",
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
        "action": {"type": "expire"}}]})
    .to_string();
    let template = |prefix: &str, policy: Option<&str>, lifecycle: Option<&str>| {
        let mut body = json!({"prefix": prefix, "appliedFor": ["CREATE_ON_PUSH"]});
        if let Some(policy) = policy {
            body["repositoryPolicy"] = json!(policy);
        }
        if let Some(lifecycle) = lifecycle {
            body["lifecyclePolicy"] = json!(lifecycle);
        }
        body
    };
    for (body, missing) in [
        (template("ROOT", Some(&grab), None), "ecr:CreateRepository"),
        (template("team", None, Some(&lifecycle)), "ecr:CreateRepository"),
        (template("team", None, None), "ecr:CreateRepository"),
    ] {
        let refused = planter.ecr(&srv, "CreateRepositoryCreationTemplate", &body).await;
        assert!(denied(&refused), "{}", refused.describe());
        assert!(refused.json()["message"].as_str().unwrap().contains(missing), "{}", refused.describe());
    }
    root(&srv, "CreateRepositoryCreationTemplate", &template("team", None, None)).await.expect_status(200);
    let update = json!({"prefix": "team", "repositoryPolicy": grab});
    assert!(denied(&planter.ecr(&srv, "UpdateRepositoryCreationTemplate", &update).await));

    // With CreateRepository on team/* (and nothing else) a plain template is allowed; one
    // carrying a repository policy also needs SetRepositoryPolicy there.
    let creator = srv.data_dir().join("team-creator.json");
    let document = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecr:CreateRepository", "Resource": format!("arn:aws:ecr:us-east-1:{ACCOUNT}:repository/team/*")}]});
    std::fs::write(&creator, document.to_string()).unwrap();
    srv.cli(&["user", "policy", "attach", "planter", creator.to_str().unwrap()]);
    eventually("the plain template update is allowed", async || {
        let plain = json!({"prefix": "team", "description": "team repositories"});
        planter.ecr(&srv, "UpdateRepositoryCreationTemplate", &plain).await.status() == 200
    })
    .await;
    let refused = planter.ecr(&srv, "UpdateRepositoryCreationTemplate", &update).await;
    assert!(denied(&refused) && refused.text().contains("ecr:SetRepositoryPolicy"), "{}", refused.describe());
    let elsewhere = planter.ecr(&srv, "CreateRepositoryCreationTemplate", &template("ops", None, None)).await;
    assert!(denied(&elsewhere), "team/* does not cover ops/*: {}", elsewhere.describe());

    // The tags a template would set count as CreateRepository's request tags.
    let no_owner_tags = srv.data_dir().join("no-owner-tags.json");
    let document = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "ecr:CreateRepository",
        "Resource": "*", "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": ["owner"]}}}]});
    std::fs::write(&no_owner_tags, document.to_string()).unwrap();
    srv.cli(&["user", "policy", "attach", "planter", no_owner_tags.to_str().unwrap()]);
    let tagged = |key: &str| json!({"prefix": "team", "resourceTags": [{"Key": key, "Value": "me"}]});
    eventually("a template tagging owner is refused", async || {
        denied(&planter.ecr(&srv, "UpdateRepositoryCreationTemplate", &tagged("owner")).await)
    })
    .await;
    planter.ecr(&srv, "UpdateRepositoryCreationTemplate", &tagged("team")).await.expect_status(200);
    // Judged as the template will stand: once it carries a repository policy (the root's), any
    // update of it (here: more purposes for that policy) needs SetRepositoryPolicy too.
    let admin_policy = json!({"prefix": "team", "repositoryPolicy": grab});
    root(&srv, "UpdateRepositoryCreationTemplate", &admin_policy).await.expect_status(200);
    let widen = json!({"prefix": "team", "appliedFor": ["CREATE_ON_PUSH", "REPLICATION"]});
    let refused = planter.ecr(&srv, "UpdateRepositoryCreationTemplate", &widen).await;
    assert!(denied(&refused) && refused.text().contains("ecr:SetRepositoryPolicy"), "{}", refused.describe());
    let described = root(&srv, "DescribeRepositoryCreationTemplates", &json!({})).await;
    let templates = described.json()["repositoryCreationTemplates"].clone();
    assert_eq!(templates.as_array().unwrap().len(), 1, "{templates}");
    assert_eq!(templates[0]["appliedFor"], json!(["CREATE_ON_PUSH"]), "{templates}");
    assert_eq!(templates[0]["resourceTags"], json!([{"Key": "team", "Value": "me"}]), "{templates}");
}
