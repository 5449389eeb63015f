//! The console router over a real registry (SQLite + filesystem) and the real authenticator,
//! driven request by request: sign-in, sessions, CSRF and origin checks, and that every action
//! goes through the same authorization as the APIs.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use berth_auth::{AuthMode, Authenticator, Credentials, Identities, MasterKey, RootKeys, TokenIssuer};
use berth_console::{ConsoleConfig, router};
use berth_iam::{ConnectionInfo, CredentialKind, Identity, RequestContext};
use berth_meta::{SqliteStore, UserPolicy};
use berth_registry::pull_through::UpstreamSettings;
use berth_registry::{Registry, RegistryConfig};
use berth_spec::{Digest, Reference, RepositoryName};
use berth_storage::FsBlobStore;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use tower::ServiceExt;

const ROOT_KEY: &str = "AKIACONSOLETEST00001";
const ROOT_SECRET: &str = "console-test-secret-0123456789abcdefghij";
const ORIGIN: &str = "http://registry.test";

struct Server {
    dir: tempfile::TempDir,
    registry: Arc<Registry>,
    auth: Arc<Authenticator>,
    app: Router,
    reader: Credentials,
}

async fn app(dir: &std::path::Path, auth_disabled: bool) -> (Arc<Registry>, Arc<Authenticator>, Router) {
    let meta = Arc::new(SqliteStore::open(&dir.join("metadata.db")).await.unwrap());
    let blobs = Arc::new(FsBlobStore::open(dir).await.unwrap());
    let registry = Registry::new(blobs, meta.clone(), RegistryConfig::default());
    let key = MasterKey::load_or_create(dir).unwrap();
    let identities = Arc::new(Identities::new(meta, &key));
    identities.bootstrap_root(dir, Some(RootKeys::new(ROOT_KEY, ROOT_SECRET).unwrap())).await.unwrap();
    let mode = if auth_disabled { AuthMode::Disabled } else { AuthMode::Required };
    let auth = Arc::new(Authenticator::new(identities, TokenIssuer::new(&key, Duration::from_secs(3600)), mode));
    let config = ConsoleConfig {
        public_url: ORIGIN.into(),
        auth_disabled,
        session_key: key.console_session_key(),
        session_lifetime: Duration::from_secs(12 * 3600),
        gc_interval: None,
        gc_grace: Duration::from_secs(86_400),
    };
    let app = router(registry.clone(), auth.clone(), config);
    (registry, auth, app)
}

/// What every user held before identity policies existed, and what these tests assume.
fn full_access() -> UserPolicy {
    UserPolicy { name: berth_iam::managed::FULL_ACCESS.into(), document: None }
}

async fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (registry, auth, app) = app(dir.path(), false).await;
    let reader = auth.identities().create_user("reader", &[full_access()]).await.unwrap();
    Server { dir, registry, auth, app, reader }
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    /// `name=value` of a cookie this reply sets.
    fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookie(name).map(|c| c.split(';').next().unwrap().to_owned())
    }

    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    fn location(&self) -> &str {
        self.headers.get(header::LOCATION).map_or("", |v| v.to_str().unwrap())
    }

    /// The first form's CSRF token on the page.
    fn csrf(&self) -> String {
        let at =
            self.body.find(r#"name="csrf" value=""#).expect("the page has a form") + r#"name="csrf" value=""#.len();
        self.body[at..].split('"').next().unwrap().to_owned()
    }
}

async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    Reply { status, headers, body }
}

fn get(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path).header(header::HOST, "registry.test").header(header::COOKIE, cookie).body(Body::empty()).unwrap()
}

fn post(path: &str, cookie: &str) -> axum::http::request::Builder {
    Request::post(path)
        .header(header::HOST, "registry.test")
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
}

fn form(fields: &[(&str, &str)]) -> Body {
    let encoded: Vec<String> = fields
        .iter()
        .map(|(k, v)| {
            let escape = |s: &str| {
                s.bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
                        other => format!("%{other:02X}"),
                    })
                    .collect::<String>()
            };
            format!("{}={}", escape(k), escape(v))
        })
        .collect();
    Body::from(encoded.join("&"))
}

async fn submit(app: &Router, path: &str, cookie: &str, fields: &[(&str, &str)]) -> Reply {
    send(app, post(path, cookie).body(form(fields)).unwrap()).await
}

/// Signs in through the form; returns the session cookie (`berth_console=...`).
async fn sign_in(app: &Router, user: &str, secret: &str) -> Result<String, Reply> {
    let page = send(app, get("/console/sign-in", "")).await;
    assert_eq!(page.status, StatusCode::OK);
    let nonce = page.cookie("berth_console_sign_in").expect("the sign-in page sets its nonce cookie");
    let csrf = page.csrf();
    let reply = submit(
        app,
        "/console/sign-in",
        &nonce,
        &[("csrf", &csrf), ("next", "/console/repositories"), ("access_key_id", user), ("secret_access_key", secret)],
    )
    .await;
    match reply.cookie("berth_console") {
        Some(cookie) if reply.status == StatusCode::SEE_OTHER => Ok(cookie),
        _ => Err(reply),
    }
}

fn root_ctx() -> RequestContext {
    RequestContext {
        identity: Identity::Root { access_key_id: ROOT_KEY.into(), via: CredentialKind::AccessKey },
        ..RequestContext::server("test", "test-request".into())
    }
}

/// Pushes a one-layer image tagged `tag` into `repo`; returns its digest.
async fn push_image(registry: &Registry, repo: &RepositoryName, tag: &str) -> Digest {
    let ctx = root_ctx();
    let upload = async |data: Vec<u8>| {
        let digest = Digest::sha256_of(&data);
        let size = data.len();
        let body = futures::stream::once(async move { Ok(Bytes::from(data)) }).boxed();
        registry.upload_monolithic(&ctx, repo, &digest, body).await.unwrap();
        (digest, size)
    };
    let (config, config_size) = upload(
        br#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/app"],"Env":["A=1"]},"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec(),
    )
    .await;
    let (layer, layer_size) = upload(format!("layer of {tag}").into_bytes()).await;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":{layer_size}}}]}}"#
    );
    let reference = Reference::Tag(tag.parse().unwrap());
    registry.put_manifest(&ctx, repo, &reference, None, manifest.as_bytes()).await.unwrap().digest
}

async fn exists(registry: &Registry, repo: &RepositoryName, digest: &Digest) -> bool {
    registry.get_manifest(repo, &Reference::Digest(digest.clone()), None).await.is_ok()
}

#[tokio::test]
async fn sign_in_starts_a_strict_http_only_session() {
    let server = server().await;
    let page = send(&server.app, get("/console/repositories", "")).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "no session: to the sign-in page");
    assert_eq!(page.location(), "/console/sign-in?next=/console/repositories");

    let signed_in = send(&server.app, get("/console/sign-in", "")).await;
    let nonce = signed_in.set_cookie("berth_console_sign_in").unwrap();
    assert!(nonce.contains("HttpOnly") && nonce.contains("SameSite=Strict") && !nonce.contains("Secure"), "{nonce}");
    assert_eq!(
        signed_in.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().split(';').next(),
        Some("default-src 'none'")
    );
    assert_eq!(signed_in.headers[header::X_FRAME_OPTIONS], "DENY");

    let cookie = sign_in(&server.app, ROOT_KEY, ROOT_SECRET).await.unwrap();
    let page = send(&server.app, get("/console/repositories", &cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Signed in as <strong>root</strong>"));
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store", "pages are never cached");

    let wrong = sign_in(&server.app, ROOT_KEY, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY").await.unwrap_err();
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("not valid") && !wrong.body.contains("wJalrXUtnFEMI"), "the secret is not echoed");
    let unknown = sign_in(&server.app, "AKIAUNKNOWNUNKNOWN00", ROOT_SECRET).await.unwrap_err();
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);

    // A registry token signs in too, for as long as the token lasts (an hour here), not for a
    // session's 12 hours.
    let token = server.auth.issue_token("reader").await.unwrap().token;
    let page = send(&server.app, get("/console/sign-in", "")).await;
    let nonce = page.cookie("berth_console_sign_in").unwrap();
    let reply = submit(&server.app, "/console/sign-in", &nonce, &[("csrf", &page.csrf()), ("token", &token)]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let session = reply.set_cookie("berth_console").unwrap();
    let max_age: u64 = session.split("Max-Age=").nth(1).and_then(|v| v.split(';').next()).unwrap().parse().unwrap();
    assert!((3590..=3600).contains(&max_age) && session.contains("Path=/console"), "{session}");
    let page = send(&server.app, get("/console/repositories", session.split(';').next().unwrap())).await;
    assert!(page.body.contains("Signed in as <strong>reader</strong>"));
}

/// A repository's images come 50 to a page, so a large repository's page stays small.
#[tokio::test]
async fn a_repositorys_images_are_paged() {
    let server = server().await;
    let repo: RepositoryName = "many/app".parse().unwrap();
    for i in 0..53 {
        push_image(&server.registry, &repo, &format!("v{i}")).await;
    }
    let cookie = sign_in(&server.app, ROOT_KEY, ROOT_SECRET).await.unwrap();
    let cards = |page: &Reply| page.body.matches("class=\"card image-card\"").count();
    let first = send(&server.app, get("/console/repositories/many/app", &cookie)).await;
    assert_eq!(cards(&first), 50);
    assert!(first.body.contains("53 images") && first.body.contains("1–50 shown"), "{}", first.body);
    assert!(first.body.contains(r#"href="/console/repositories/many/app?page=2">Next page"#), "{}", first.body);
    assert!(!first.body.contains("Previous page"));
    let second = send(&server.app, get("/console/repositories/many/app?page=2", &cookie)).await;
    assert_eq!(cards(&second), 3);
    assert!(second.body.contains("51–53 shown") && second.body.contains("?page=1\">Previous page"), "{}", second.body);
    assert!(!second.body.contains("Next page"));
    let past = send(&server.app, get("/console/repositories/many/app?page=99", &cookie)).await;
    assert_eq!(cards(&past), 3, "a page past the last shows the last");
}

/// An image under many tags shows 20 on its card (each a form and a pull command), and a
/// lifecycle judgement of many images comes 100 rows to a page: pages stay small however large
/// the repository.
#[tokio::test]
async fn many_tags_and_lifecycle_rows_are_cut_to_pages() {
    let server = server().await;
    let repo: RepositoryName = "big/app".parse().unwrap();
    for i in 0..105 {
        push_image(&server.registry, &repo, &format!("v{i}")).await;
    }
    let record = server.registry.get_manifest(&repo, &Reference::Tag("v0".parse().unwrap()), None).await.unwrap();
    for i in 0..24 {
        let tag = Reference::Tag(format!("extra{i:02}").parse().unwrap());
        server.registry.put_manifest(&root_ctx(), &repo, &tag, None, &record.content).await.unwrap();
    }
    let cookie = sign_in(&server.app, ROOT_KEY, ROOT_SECRET).await.unwrap();
    let page = send(&server.app, get("/console/repositories/big/app?page=3", &cookie)).await;
    let chips = page.body.matches("class=\"tag\" data-tag=").count();
    assert!(page.body.contains(">+5 more</a>"), "25 tags, 20 shown: {}", page.body);
    assert_eq!(chips, 20 + 4, "the big card's 20 and the page's four other images' one each");
    let image =
        send(&server.app, get(&format!("/console/repositories/big/app/-/images/{}", record.digest), &cookie)).await;
    assert!(image.body.contains("extra23") && !image.body.contains("more</span>"), "the image page names all 25");

    let policy = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":100},"action":{"type":"expire"}}]}"#;
    server.registry.put_lifecycle_policy(&root_ctx(), &repo, policy).await.unwrap();
    let rows = |page: &Reply| page.body.matches("class=\"verdict-row").count();
    let first = send(&server.app, get("/console/repositories/big/app/-/lifecycle", &cookie)).await;
    assert_eq!(rows(&first), 100);
    assert!(first.body.contains("of 105 manifests") && first.body.contains("Manifests 1–100 of 105"), "{}", first.body);
    assert!(first.body.contains("lifecycle?view=policy&#38;page=2\">Next page"), "{}", first.body);
    let second = send(&server.app, get("/console/repositories/big/app/-/lifecycle?view=policy&page=2", &cookie)).await;
    assert_eq!(rows(&second), 5);
    assert!(second.body.contains("Previous page") && !second.body.contains("Next page"), "{}", second.body);
}

#[tokio::test]
async fn head_is_answered_as_get_and_a_method_a_page_does_not_take_gets_405() {
    let server = server().await;
    let cookie = sign_in(&server.app, ROOT_KEY, ROOT_SECRET).await.unwrap();
    let with = |method: Method, path: &str, cookie: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "registry.test")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap()
    };
    let head = send(&server.app, with(Method::HEAD, "/console/repositories", &cookie)).await;
    assert_eq!(head.status, StatusCode::OK, "{}", head.body);
    let sign_in_page = send(&server.app, with(Method::HEAD, "/console/sign-in", "")).await;
    assert_eq!(sign_in_page.status, StatusCode::OK, "the sign-in page, not a redirect to itself");
    for (method, path, allow) in [
        (Method::DELETE, "/console/repositories", "GET, HEAD"),
        (Method::PUT, "/console/sign-in", "GET, HEAD, POST"),
        (Method::GET, "/console/admin/users", "POST"),
    ] {
        let reply = send(&server.app, with(method.clone(), path, &cookie)).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(reply.headers[header::ALLOW], allow, "{method} {path}");
    }
}

#[tokio::test]
async fn the_sign_in_form_needs_its_nonce_and_this_origin() {
    let server = server().await;
    let page = send(&server.app, get("/console/sign-in", "")).await;
    let nonce = page.cookie("berth_console_sign_in").unwrap();
    let csrf = page.csrf();
    let fields = [("csrf", csrf.as_str()), ("access_key_id", ROOT_KEY), ("secret_access_key", ROOT_SECRET)];
    let without_nonce = submit(&server.app, "/console/sign-in", "", &fields).await;
    assert_eq!(without_nonce.status, StatusCode::FORBIDDEN, "login CSRF: a form not from this browser's sign-in page");
    let other = send(&server.app, get("/console/sign-in", "")).await.cookie("berth_console_sign_in").unwrap();
    assert_eq!(submit(&server.app, "/console/sign-in", &other, &fields).await.status, StatusCode::FORBIDDEN);
    let cross =
        post("/console/sign-in", &nonce).header(header::ORIGIN, "http://evil.test").body(form(&fields)).unwrap();
    assert_eq!(send(&server.app, cross).await.status, StatusCode::FORBIDDEN);
    let same = post("/console/sign-in", &nonce).header(header::ORIGIN, ORIGIN).body(form(&fields)).unwrap();
    assert_eq!(send(&server.app, same).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn over_tls_the_cookies_are_secure() {
    let server = server().await;
    let mut request = get("/console/sign-in", "");
    request.extensions_mut().insert(ConnectionInfo { peer: "127.0.0.1:40000".parse().unwrap(), tls: true });
    let page = send(&server.app, request).await;
    assert!(page.set_cookie("berth_console_sign_in").unwrap().ends_with("; Secure"));
    // Behind a TLS-terminating proxy the connection is plain, and the edge (trusting the
    // proxy's `X-Forwarded-Proto`) says the browser used TLS.
    let mut request = get("/console/sign-in", "");
    request.extensions_mut().insert(ConnectionInfo { peer: "127.0.0.1:40000".parse().unwrap(), tls: false });
    request.extensions_mut().insert(RequestContext {
        request_id: "behind-a-proxy".into(),
        received_at: std::time::SystemTime::now(),
        source_ip: None,
        secure_transport: true,
        user_agent: None,
        identity: Identity::Anonymous,
    });
    let page = send(&server.app, request).await;
    assert!(page.set_cookie("berth_console_sign_in").unwrap().ends_with("; Secure"));
}

#[tokio::test]
async fn sessions_survive_a_restart_and_end_with_their_user() {
    let server = server().await;
    let cookie =
        sign_in(&server.app, server.reader.access_key_id.as_str(), &server.reader.secret_access_key).await.unwrap();
    // Another server (or a restart) on the same data dir and master key accepts the session.
    let (_, _, restarted) = app(server.dir.path(), false).await;
    let page = send(&restarted, get("/console/repositories", &cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Signed in as <strong>reader</strong>"));

    // A changed byte breaks the signature.
    let tampered = format!("{}A", &cookie[..cookie.len() - 1]);
    let tampered = if tampered == cookie { format!("{}B", &cookie[..cookie.len() - 1]) } else { tampered };
    assert_eq!(send(&server.app, get("/console/repositories", &tampered)).await.status, StatusCode::SEE_OTHER);

    // Removing the user ends its sessions, and re-creating the name does not revive them.
    server.auth.identities().remove_user("reader").await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    server.auth.identities().create_user("reader", &[full_access()]).await.unwrap();
    let page = send(&server.app, get("/console/repositories", &cookie)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(page.location().starts_with("/console/sign-in"));
}

#[tokio::test]
async fn signing_out_ends_the_session_on_every_server_and_in_every_copy_of_its_cookie() {
    let server = server().await;
    let (reader, secret) = (&server.reader.access_key_id, &server.reader.secret_access_key);
    let cookie = sign_in(&server.app, reader, secret).await.unwrap();
    let other = sign_in(&server.app, reader, secret).await.unwrap();
    let page = send(&server.app, get("/console/repositories", &cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    let reply = submit(&server.app, "/console/sign-out", &cookie, &[("csrf", &page.csrf())]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(reply.set_cookie("berth_console").is_some_and(|c| c.contains("Max-Age=0")), "{reply:?}");

    // A copy of the cookie kept from before, on this server or another.
    let (_, _, another_server) = app(server.dir.path(), false).await;
    for app in [&server.app, &another_server] {
        let page = send(app, get("/console/repositories", &cookie)).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        assert!(page.location().starts_with("/console/sign-in"));
    }
    // The user's other sessions go on.
    assert_eq!(send(&server.app, get("/console/repositories", &other)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_deactivated_key_ends_its_sessions_until_the_root_activates_it_again() {
    let server = server().await;
    let reader = &server.reader;
    let reader_cookie = sign_in(&server.app, &reader.access_key_id, &reader.secret_access_key).await.unwrap();
    let root_cookie = sign_in(&server.app, ROOT_KEY, ROOT_SECRET).await.unwrap();
    let admin = send(&server.app, get("/console/admin", &root_cookie)).await;
    assert!(admin.body.contains("Deactivate key"), "the root is offered the toggle");
    let csrf = admin.csrf();
    let path = "/console/admin/users/key";

    // The reader may not change keys, not even its own.
    let reader_csrf = send(&server.app, get("/console/repositories", &reader_cookie)).await.csrf();
    let fields = [("csrf", reader_csrf.as_str()), ("name", "reader"), ("status", "Inactive"), ("confirmed", "yes")];
    assert_eq!(submit(&server.app, path, &reader_cookie, &fields).await.status, StatusCode::FORBIDDEN);
    // Nor may the root lock itself out, and a status must be IAM's.
    let own = [("csrf", csrf.as_str()), ("name", "root"), ("status", "Inactive"), ("confirmed", "yes")];
    assert_eq!(submit(&server.app, path, &root_cookie, &own).await.status, StatusCode::BAD_REQUEST);
    let odd = [("csrf", csrf.as_str()), ("name", "reader"), ("status", "Paused"), ("confirmed", "yes")];
    assert_eq!(submit(&server.app, path, &root_cookie, &odd).await.status, StatusCode::BAD_REQUEST);
    assert!(server.auth.identities().user("reader").await.unwrap().unwrap().is_active());
    // A user named as one that exists, in another case, is a conflict like the same name.
    let twin = submit(&server.app, "/console/admin/users", &root_cookie, &[("csrf", &csrf), ("name", "READER")]).await;
    assert_eq!(twin.status, StatusCode::CONFLICT, "{}", twin.body);
    assert!(twin.body.contains("already exists"), "{}", twin.body);

    // Deactivating asks first; confirmed, the reader's session and sign-in stop.
    let ask = [("csrf", csrf.as_str()), ("name", "reader"), ("status", "Inactive")];
    let confirm = submit(&server.app, path, &root_cookie, &ask).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("Deactivate the access key"), "{}", confirm.body);
    assert!(server.auth.identities().user("reader").await.unwrap().unwrap().is_active(), "not before confirming");
    let done = submit(&server.app, path, &root_cookie, &[ask.as_slice(), &[("confirmed", "yes")]].concat()).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert!(!server.auth.identities().user("reader").await.unwrap().unwrap().is_active());
    let page = send(&server.app, get("/console/repositories", &reader_cookie)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "the reader's session ended");
    assert!(sign_in(&server.app, &reader.access_key_id, &reader.secret_access_key).await.is_err());
    let admin = send(&server.app, get("/console/admin", &root_cookie)).await;
    assert!(admin.body.contains("Activate key") && admin.body.contains("badge inactive"), "{}", admin.body);

    // Activating needs no confirmation and brings the session back.
    let activate = [("csrf", csrf.as_str()), ("name", "reader"), ("status", "Active")];
    assert_eq!(submit(&server.app, path, &root_cookie, &activate).await.status, StatusCode::SEE_OTHER);
    let page = send(&server.app, get("/console/repositories", &reader_cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "the session works again");
}

#[tokio::test]
async fn forms_need_the_session_token_and_this_origin_and_a_confirmation() {
    let server = server().await;
    let repo: RepositoryName = "app".parse().unwrap();
    let digest = push_image(&server.registry, &repo, "v1").await;
    let cookie = sign_in(&server.app, ROOT_KEY, ROOT_SECRET).await.unwrap();
    let page = send(&server.app, get("/console/repositories/app", &cookie)).await;
    assert!(page.body.contains("delete-image"), "root sees the delete button");
    let csrf = page.csrf();
    let path = "/console/repositories/app/-/delete-image";
    let digest_text = digest.to_string();

    let missing = submit(&server.app, path, &cookie, &[("digest", &digest_text), ("confirmed", "yes")]).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN, "no CSRF token");
    let other_session = sign_in(&server.app, ROOT_KEY, ROOT_SECRET).await.unwrap();
    let other_csrf = send(&server.app, get("/console/repositories/app", &other_session)).await.csrf();
    assert_ne!(other_csrf, csrf);
    let fields = [("csrf", other_csrf.as_str()), ("digest", &digest_text), ("confirmed", "yes")];
    assert_eq!(
        submit(&server.app, path, &cookie, &fields).await.status,
        StatusCode::FORBIDDEN,
        "another session's token"
    );
    let fields = [("csrf", csrf.as_str()), ("digest", &digest_text), ("confirmed", "yes")];
    for (name, value) in [
        ("origin", "http://evil.test"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        let request = post(path, &cookie).header(name, value).body(form(&fields)).unwrap();
        assert_eq!(send(&server.app, request).await.status, StatusCode::FORBIDDEN, "{name}: {value}");
    }
    assert!(exists(&server.registry, &repo, &digest).await, "nothing was deleted by a refused form");

    let unconfirmed = submit(&server.app, path, &cookie, &[("csrf", &csrf), ("digest", &digest_text)]).await;
    assert_eq!(unconfirmed.status, StatusCode::OK);
    assert!(unconfirmed.body.contains("Delete image?") && unconfirmed.body.contains(r#"name="confirmed" value="yes""#));
    assert!(exists(&server.registry, &repo, &digest).await, "a confirmation page deletes nothing");

    let request = post(path, &cookie)
        .header(header::ORIGIN, "http://registry.test")
        .header("sec-fetch-site", "same-origin")
        .body(form(&fields))
        .unwrap();
    let done = send(&server.app, request).await;
    assert_eq!((done.status, done.location()), (StatusCode::SEE_OTHER, "/console/repositories/app?done=deleted"));
    assert!(!exists(&server.registry, &repo, &digest).await);
}

#[tokio::test]
async fn a_denied_action_has_no_button_and_a_forged_post_changes_nothing() {
    let server = server().await;
    let repo: RepositoryName = "app".parse().unwrap();
    let digest = push_image(&server.registry, &repo, "v1").await;
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Sid":"NoDeletes","Effect":"Deny","Principal":{"AWS":"arn:aws:iam::000000000000:user/reader"},"Action":["ecr:BatchDeleteImage","ecr:PutImageTagMutability"]}]}"#;
    server.registry.set_repository_policy(&root_ctx(), &repo, policy, false).await.unwrap();
    let cookie = sign_in(&server.app, &server.reader.access_key_id, &server.reader.secret_access_key).await.unwrap();

    let page = send(&server.app, get("/console/repositories/app", &cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(&digest.to_string()), "the reader sees the image");
    assert!(!page.body.contains("delete-image"), "but no delete button");
    assert!(!page.body.contains("chip-remove"), "nor tag-remove buttons");
    assert!(!page.body.contains("toggle-mutability"), "nor the mutability toggle");
    assert!(page.body.contains("add-tag"), "PutImage is not denied: adding tags is offered");

    let csrf = page.csrf();
    let digest_text = digest.to_string();
    for (action, extra) in
        [("delete-image", ("tag", "")), ("remove-tag", ("tag", "v1")), ("tag-mutability", ("mutability", "IMMUTABLE"))]
    {
        let fields = [("csrf", csrf.as_str()), ("digest", digest_text.as_str()), extra, ("confirmed", "yes")];
        let reply = submit(&server.app, &format!("/console/repositories/app/-/{action}"), &cookie, &fields).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{action}");
        assert!(reply.body.contains("explicit deny"), "{action}: the service's reason: {}", reply.body);
    }
    assert!(exists(&server.registry, &repo, &digest).await, "nothing deleted");
    let tags = server.registry.list_tags(&repo, None, None).await.unwrap().0;
    assert_eq!(tags, ["v1"], "the tag stays");
    let settings = server.registry.describe_repository(&repo).await.unwrap().settings;
    assert!(!settings.tag_is_immutable("v1"), "mutability unchanged");

    // Adding a tag re-puts the manifest the console reads for the caller: without BatchGetImage
    // a caller who may PutImage could otherwise point tags at images it may not read.
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Sid":"NoReads","Effect":"Deny","Principal":{"AWS":"arn:aws:iam::000000000000:user/reader"},"Action":["ecr:BatchGetImage","ecr:GetRepositoryPolicy"]}]}"#;
    server.registry.set_repository_policy(&root_ctx(), &repo, policy, false).await.unwrap();
    let page = send(&server.app, get("/console/repositories/app", &cookie)).await;
    assert!(!page.body.contains("add-tag"), "no add-tag form without BatchGetImage");
    let fields = [("csrf", csrf.as_str()), ("digest", digest_text.as_str()), ("tag", "hijack"), ("confirmed", "yes")];
    let reply = submit(&server.app, "/console/repositories/app/-/add-tag", &cookie, &fields).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(server.registry.list_tags(&repo, None, None).await.unwrap().0, ["v1"], "no tag added");
    // Who may not read the policy learns from the permissions page what the API would say, not
    // which statement denied.
    let page = send(&server.app, get("/console/repositories/app/-/permissions", &cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("explicit deny"), "{}", page.body);
    assert!(!page.body.contains("NoReads") && !page.body.contains("Statement[0]"), "{}", page.body);

    let admin = send(&server.app, get("/console/admin", &cookie)).await;
    assert_eq!(admin.status, StatusCode::FORBIDDEN, "only the root administers");
    let create = submit(&server.app, "/console/admin/users", &cookie, &[("csrf", &csrf), ("name", "mallory")]).await;
    assert_eq!(create.status, StatusCode::FORBIDDEN);
    assert!(server.auth.identities().user("mallory").await.unwrap().is_none());
}

/// The permissions page names a deciding statement only to whom may read every policy it could
/// come from: ReadOnly reads repository policies but not the registry's.
#[tokio::test]
async fn registry_policy_statements_show_only_to_who_may_read_the_registry_policy() {
    let server = server().await;
    let repo: RepositoryName = "team/app".parse().unwrap();
    push_image(&server.registry, &repo, "v1").await;
    let reader = UserPolicy { name: berth_iam::managed::READ_ONLY.into(), document: None };
    let reader = server.auth.identities().create_user("ro", &[reader]).await.unwrap();
    let deny = r#"{"Version":"2012-10-17","Statement":[{"Sid":"HiddenRegistryDeny","Effect":"Deny","Principal":{"AWS":"arn:aws:iam::000000000000:user/ro"},"Action":"ecr:BatchGetImage","Resource":"*"}]}"#;
    server.registry.put_registry_policy(deny).await.unwrap();
    let cookie = sign_in(&server.app, &reader.access_key_id, &reader.secret_access_key).await.unwrap();
    let page = send(&server.app, get("/console/repositories/team/app/-/permissions", &cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("explicit deny"), "{}", page.body);
    assert!(!page.body.contains("HiddenRegistryDeny") && !page.body.contains("registry policy"), "{}", page.body);
    let root = sign_in(&server.app, ROOT_KEY, ROOT_SECRET).await.unwrap();
    let page = send(&server.app, get("/console/repositories/team/app/-/permissions", &root)).await;
    assert!(page.body.contains("HiddenRegistryDeny"), "the root reads every policy: {}", page.body);
}

#[tokio::test]
async fn a_cache_rules_upstream_shows_only_to_who_may_describe_the_rules() {
    let server = server().await;
    let repo: RepositoryName = "hub/app".parse().unwrap();
    push_image(&server.registry, &repo, "v1").await;
    let upstream = UpstreamSettings {
        upstream_registry_url: "http://127.0.0.1:9".into(),
        upstream_registry: None,
        upstream_repository_prefix: "ROOT".into(),
        credential_arn: None,
        custom_role_arn: None,
    };
    let ctx = berth_iam::RequestContext::server("test", "test".into());
    server.registry.create_cache_rule(&ctx, "hub", upstream).await.unwrap();
    let viewer = UserPolicy { name: berth_iam::managed::READ_ONLY.into(), document: None };
    let viewer = server.auth.identities().create_user("viewer", &[viewer]).await.unwrap();
    let viewer = sign_in(&server.app, &viewer.access_key_id, &viewer.secret_access_key).await.unwrap();
    let root = sign_in(&server.app, ROOT_KEY, ROOT_SECRET).await.unwrap();
    for path in ["/console/repositories", "/console/repositories/hub/app"] {
        let page = send(&server.app, get(path, &viewer)).await;
        assert!(page.body.contains("pull-through cache"), "{path}: {}", page.body);
        assert!(!page.body.contains("127.0.0.1:9"), "{path}: ReadOnly has no DescribePullThroughCacheRules");
        let page = send(&server.app, get(path, &root)).await;
        assert!(page.body.contains("cache: http://127.0.0.1:9"), "{path}: {}", page.body);
    }
}

/// The console shows a user what the API would answer them: a pull reads an image by digest but
/// not its tags or push time (`DescribeImages`), and describing repositories does not tell
/// which have a lifecycle or repository policy.
#[tokio::test]
async fn pages_show_only_what_the_api_would_answer_the_visitor() {
    let server = server().await;
    let repo: RepositoryName = "app".parse().unwrap();
    let digest = push_image(&server.registry, &repo, "release-7").await;
    let lifecycle = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":5},"action":{"type":"expire"}}]}"#;
    server.registry.put_lifecycle_policy(&root_ctx(), &repo, lifecycle).await.unwrap();
    let policy = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/reader"},"Action":"ecr:BatchGetImage"}]}"#;
    server.registry.set_repository_policy(&root_ctx(), &repo, policy, false).await.unwrap();
    let image_path = format!("/console/repositories/app/-/images/{digest}");

    let puller = UserPolicy { name: berth_iam::managed::PULL_ONLY.into(), document: None };
    let puller = server.auth.identities().create_user("puller", &[puller]).await.unwrap();
    let puller = sign_in(&server.app, &puller.access_key_id, &puller.secret_access_key).await.unwrap();
    let page = send(&server.app, get(&image_path, &puller)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(&digest.to_string()));
    assert!(!page.body.contains("release-7"), "no tags without DescribeImages: {}", page.body);
    assert!(!page.body.contains("Pushed") && !page.body.contains("Last pulled"), "{}", page.body);
    // An index's platforms: the puller may pull them, so they show (not "not in this repository").
    let child = server.registry.get_manifest(&repo, &Reference::Digest(digest.clone()), None).await.unwrap();
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{digest}","size":{},"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
        child.content.len()
    );
    let multi = Reference::Tag("multi".parse().unwrap());
    let index = server.registry.put_manifest(&root_ctx(), &repo, &multi, None, index.as_bytes()).await.unwrap().digest;
    let page = send(&server.app, get(&format!("/console/repositories/app/-/images/{index}"), &puller)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("amd64") && !page.body.contains("not in this repository"), "{}", page.body);
    let reader = sign_in(&server.app, &server.reader.access_key_id, &server.reader.secret_access_key).await.unwrap();
    let page = send(&server.app, get(&image_path, &reader)).await;
    assert!(page.body.contains("release-7") && page.body.contains("Pushed"), "{}", page.body);

    let lister = r#"{"Statement":[{"Effect":"Allow","Action":["ecr:GetAuthorizationToken","ecr:DescribeRepositories"],"Resource":"*"}]}"#;
    let lister = UserPolicy { name: "lister".into(), document: Some(lister.into()) };
    let lister = server.auth.identities().create_user("lister", &[lister]).await.unwrap();
    let lister = sign_in(&server.app, &lister.access_key_id, &lister.secret_access_key).await.unwrap();
    for path in ["/console/repositories", "/console/repositories/app"] {
        let page = send(&server.app, get(path, &lister)).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        assert!(!page.body.contains("lifecycle policy"), "{path}: {}", page.body);
        assert!(!page.body.contains("repository policy"), "{path}: {}", page.body);
        let page = send(&server.app, get(path, &reader)).await;
        assert!(page.body.contains("lifecycle policy") && page.body.contains("repository policy"), "{path}");
    }
}

#[tokio::test]
async fn every_page_renders_for_the_root() {
    let server = server().await;
    let repo: RepositoryName = "team/app".parse().unwrap();
    let digest = push_image(&server.registry, &repo, "v1").await;
    let cookie = sign_in(&server.app, ROOT_KEY, ROOT_SECRET).await.unwrap();
    for path in [
        "/console/repositories".to_owned(),
        "/console/repositories?q=team".to_owned(),
        "/console/repositories/team/app".to_owned(),
        format!("/console/repositories/team/app/-/images/{digest}"),
        "/console/repositories/team/app/-/lifecycle".to_owned(),
        "/console/repositories/team/app/-/permissions".to_owned(),
        "/console/admin".to_owned(),
    ] {
        let page = send(&server.app, get(&path, &cookie)).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        assert!(page.body.starts_with("<!doctype html>"), "{path}");
    }
    let image = send(&server.app, get(&format!("/console/repositories/team/app/-/images/{digest}"), &cookie)).await;
    assert!(image.body.contains("<code>/app</code>"), "the entrypoint from the config");
    for (path, status) in [
        ("/console/repositories/team/other".to_owned(), StatusCode::NOT_FOUND),
        (format!("/console/repositories/team/app/-/images/{}", Digest::sha256_of(b"nothing")), StatusCode::NOT_FOUND),
        ("/console/nowhere".to_owned(), StatusCode::NOT_FOUND),
    ] {
        assert_eq!(send(&server.app, get(&path, &cookie)).await.status, status, "{path}");
    }
    let css = send(&server.app, get("/console/assets/console.css", "")).await;
    assert_eq!(
        (css.status, css.headers[header::CONTENT_TYPE].to_str().unwrap()),
        (StatusCode::OK, "text/css; charset=utf-8")
    );
}

#[tokio::test]
async fn with_authentication_off_visitors_browse_anonymously() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, app) = app(dir.path(), true).await;
    let start = send(&app, get("/console/sign-in", "")).await;
    assert_eq!(start.status, StatusCode::SEE_OTHER);
    let cookie = start.cookie("berth_console").expect("an anonymous session");
    let page = send(&app, get("/console/repositories", &cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Signed in as <strong>anonymous</strong>"));
    assert_eq!(send(&app, get("/console/admin", &cookie)).await.status, StatusCode::FORBIDDEN);
}

/// A form posted after its session ended (expired while the page was open, or signed out in
/// another tab) sends the visitor to sign in and then back to the page the form was on: the
/// form's target answers POST only.
#[tokio::test]
async fn a_form_posted_without_a_session_resumes_at_its_page() {
    let server = server().await;
    for (path, page) in [
        ("/console/repositories/team/app/-/add-tag", "/console/repositories/team/app"),
        ("/console/admin/users/delete", "/console/admin"),
        ("/console/sign-out", "/console/repositories"),
    ] {
        let reply = submit(&server.app, path, "", &[("tag", "v2")]).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(reply.location(), format!("/console/sign-in?next={page}"), "{path}");
    }
    let page = send(&server.app, get("/console/repositories?after=x", "")).await;
    assert_eq!(page.location(), "/console/sign-in?next=/console/repositories%3Fafter%3Dx", "a GET keeps its query");
}

/// Several tabs on the sign-in page (each sent there when the session ended) all sign in: a
/// second sign-in page keeps the browser's nonce, and a form whose nonce a sign-in in another
/// tab used up goes on to its page once that session exists.
#[tokio::test]
async fn sign_in_forms_open_in_several_tabs_all_work() {
    let server = server().await;
    let first = send(&server.app, get("/console/sign-in", "")).await;
    let nonce = first.cookie("berth_console_sign_in").unwrap();
    let second = send(&server.app, get("/console/sign-in?next=/console/admin", &nonce)).await;
    assert_eq!(second.set_cookie("berth_console_sign_in"), None, "the second page leaves the browser's nonce as it is");
    fn fields(csrf: &str) -> [(&str, &str); 4] {
        [("csrf", csrf), ("next", "/console/admin"), ("access_key_id", ROOT_KEY), ("secret_access_key", ROOT_SECRET)]
    }
    let (first_csrf, second_csrf) = (first.csrf(), second.csrf());
    let (first_fields, second_fields) = (fields(&first_csrf), fields(&second_csrf));
    let signed_in = submit(&server.app, "/console/sign-in", &nonce, &first_fields).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER, "the first tab's form still works: {}", signed_in.body);
    let session = signed_in.cookie("berth_console").unwrap();
    // The browser now sends the session and no sign-in nonce (the sign-in cleared it).
    let again = submit(&server.app, "/console/sign-in", &session, &second_fields).await;
    assert_eq!((again.status, again.location()), (StatusCode::SEE_OTHER, "/console/admin"));
    let stranger = submit(&server.app, "/console/sign-in", "", &second_fields).await;
    assert_eq!(stranger.status, StatusCode::FORBIDDEN, "without a session the used-up form is still refused");
    // A used-up form naming someone else is refused, not taken as the session's user.
    let other = [
        ("csrf", second_csrf.as_str()),
        ("next", "/console/admin"),
        ("access_key_id", "AKIAOTHERUSER0000001"),
        ("secret_access_key", "x"),
    ];
    let as_other = submit(&server.app, "/console/sign-in", &session, &other).await;
    assert_eq!(as_other.status, StatusCode::FORBIDDEN, "{}", as_other.body);
}

/// No tab or link leads to a "Not allowed" page: a visitor who may list and delete images but
/// neither pull them nor read lifecycle policies sees digests as text and no Lifecycle tab.
#[tokio::test]
async fn tabs_and_links_lead_only_to_pages_the_visitor_may_open() {
    let server = server().await;
    let repo: RepositoryName = "app".parse().unwrap();
    let digest = push_image(&server.registry, &repo, "v1").await;
    let document = r#"{"Statement":[{"Effect":"Allow","Action":["ecr:GetAuthorizationToken","ecr:DescribeRepositories","ecr:DescribeImages","ecr:ListImages","ecr:BatchDeleteImage"],"Resource":"*"}]}"#;
    let cleaner = UserPolicy { name: "cleaner".into(), document: Some(document.into()) };
    let cleaner = server.auth.identities().create_user("cleaner", &[cleaner]).await.unwrap();
    let cleaner = sign_in(&server.app, &cleaner.access_key_id, &cleaner.secret_access_key).await.unwrap();
    let page = send(&server.app, get("/console/repositories/app", &cleaner)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(&digest.to_string()), "{}", page.body);
    assert!(!page.body.contains("/-/images/"), "no link to an image page it may not open: {}", page.body);
    assert!(!page.body.contains("/-/lifecycle"), "no Lifecycle tab: {}", page.body);
    assert!(page.body.contains("/-/permissions"), "{}", page.body);
    let root = sign_in(&server.app, ROOT_KEY, ROOT_SECRET).await.unwrap();
    let page = send(&server.app, get("/console/repositories/app", &root)).await;
    assert!(page.body.contains("/-/images/") && page.body.contains("/-/lifecycle"), "{}", page.body);
}
