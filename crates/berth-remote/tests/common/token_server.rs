//! A Bearer token service and the gate in front of a registry, as Docker Hub, GHCR and quay
//! deploy them: `/v2/` answers 401 with `WWW-Authenticate: Bearer realm=…,service=…,scope=…`;
//! `/token` checks Basic credentials and issues a random token for the scopes the user may have;
//! requests with a token covering their repository and action are proxied to the registry behind
//! (docker-registry without auth), bodies streamed both ways. It counts what it was asked.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::TryStreamExt;

#[derive(Clone)]
pub struct User {
    pub name: &'static str,
    pub password: &'static str,
    /// What tokens for this user may grant, e.g. `["pull", "push"]`.
    pub actions: Vec<&'static str>,
}

#[derive(Clone)]
pub struct Config {
    pub users: Vec<User>,
    pub anonymous_actions: Vec<&'static str>,
    pub token_lifetime: Duration,
    /// An extra action `tags/list` needs (as ACR's `metadata_read`): exercises insufficient_scope.
    pub tag_list_action: Option<&'static str>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            users: vec![User { name: "alice", password: "alice-secret-pw", actions: vec!["pull", "push"] }],
            anonymous_actions: Vec::new(),
            token_lifetime: Duration::from_secs(300),
            tag_list_action: None,
        }
    }
}

struct Grant {
    access: HashMap<String, HashSet<String>>,
    expires: Instant,
}

pub struct Gate {
    backend: String,
    public: String,
    config: Config,
    /// `Authorization: Basic …` value → user.
    logins: HashMap<HeaderValue, User>,
    tokens: Mutex<HashMap<String, Grant>>,
    token_requests: AtomicUsize,
    /// The `scope` parameters of each token request.
    pub requested_scopes: Mutex<Vec<Vec<String>>>,
    /// `METHOD path?query` of every request that reached the registry.
    proxied: Mutex<Vec<String>>,
    http: reqwest::Client,
}

impl Gate {
    pub fn token_requests(&self) -> usize {
        self.token_requests.load(Ordering::SeqCst)
    }

    /// Forgets every token issued, as a token service restarting with a new key would.
    pub fn revoke_all(&self) {
        self.tokens.lock().unwrap().clear();
    }

    pub fn proxied_containing(&self, needle: &str) -> usize {
        self.proxied.lock().unwrap().iter().filter(|line| line.contains(needle)).count()
    }
}

pub struct TokenServer {
    pub url: String,
    pub gate: Arc<Gate>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn basic_header(user: &str, password: &str) -> HeaderValue {
    // reqwest computes the header exactly as the client under test will send it.
    let request = reqwest::Client::new().get("http://127.0.0.1/").basic_auth(user, Some(password)).build().unwrap();
    request.headers()[header::AUTHORIZATION].clone()
}

impl TokenServer {
    /// Starts the gate for the registry at `backend` (`http://127.0.0.1:<port>`).
    pub async fn start(backend: &str, config: Config) -> TokenServer {
        super::install_tls_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let public = format!("http://{}", listener.local_addr().unwrap());
        let logins = config.users.iter().map(|u| (basic_header(u.name, u.password), u.clone())).collect();
        let gate = Arc::new(Gate {
            backend: backend.to_owned(),
            public: public.clone(),
            config,
            logins,
            tokens: Mutex::default(),
            token_requests: AtomicUsize::new(0),
            requested_scopes: Mutex::default(),
            proxied: Mutex::default(),
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
        });
        let app = Router::new().route("/token", get(token)).fallback(registry).with_state(gate.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TokenServer { url: public, gate, task }
    }
}

fn json_error(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn token(State(gate): State<Arc<Gate>>, headers: HeaderMap, request: Request) -> Response {
    gate.token_requests.fetch_add(1, Ordering::SeqCst);
    let query = request.uri().query().unwrap_or("");
    let scopes: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned())
        .collect();
    gate.requested_scopes.lock().unwrap().push(scopes.clone());
    let allowed = match headers.get(header::AUTHORIZATION) {
        None => gate.config.anonymous_actions.clone(),
        Some(value) => match gate.logins.get(value) {
            Some(user) => user.actions.clone(),
            None => {
                return json_error(
                    StatusCode::UNAUTHORIZED,
                    serde_json::json!({"details": "incorrect username or password"}),
                );
            }
        },
    };
    let mut access: HashMap<String, HashSet<String>> = HashMap::new();
    for scope in scopes.iter().flat_map(|s| s.split(' ')) {
        let mut parts = scope.splitn(3, ':');
        if let (Some("repository"), Some(name), Some(actions)) = (parts.next(), parts.next(), parts.next()) {
            let granted = actions
                .split(',')
                .filter(|a| allowed.contains(a) || (*a != "pull" && *a != "push" && allowed.contains(&"pull")));
            access.entry(name.to_owned()).or_default().extend(granted.map(str::to_owned));
        }
    }
    let value = uuid::Uuid::new_v4().simple().to_string();
    let lifetime = gate.config.token_lifetime;
    gate.tokens.lock().unwrap().insert(value.clone(), Grant { access, expires: Instant::now() + lifetime });
    let body = serde_json::json!({"token": value, "access_token": value, "expires_in": lifetime.as_secs(), "issued_at": "2025-01-01T00:00:00Z"});
    json_error(StatusCode::OK, body)
}

/// The repository and actions a `/v2/` request needs: `None` for `/v2/` itself.
fn needs(gate: &Gate, method: &axum::http::Method, path: &str, query: &str) -> Option<Vec<(String, Vec<String>)>> {
    let rest = path.strip_prefix("/v2/").filter(|r| !r.is_empty())?;
    let name = ["/manifests/", "/blobs/", "/tags/list", "/referrers/"]
        .iter()
        .find_map(|marker| rest.find(marker).map(|i| &rest[..i]))
        .unwrap_or(rest)
        .to_owned();
    let mut actions = vec!["pull".to_owned()];
    if !matches!(*method, axum::http::Method::GET | axum::http::Method::HEAD) {
        actions.push("push".to_owned());
    }
    if rest.ends_with("/tags/list")
        && let Some(extra) = gate.config.tag_list_action
    {
        actions.push(extra.to_owned());
    }
    let mut needed = vec![(name, actions)];
    if let Some((_, from)) = url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "from") {
        needed.push((from.into_owned(), vec!["pull".to_owned()]));
    }
    Some(needed)
}

async fn registry(State(gate): State<Arc<Gate>>, request: Request) -> Response {
    let (method, path, query) =
        (request.method().clone(), request.uri().path().to_owned(), request.uri().query().unwrap_or("").to_owned());
    let needed = needs(&gate, &method, &path, &query).unwrap_or_default();
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let verdict = {
        let tokens = gate.tokens.lock().unwrap();
        match presented.as_deref().and_then(|t| tokens.get(t)).filter(|g| g.expires > Instant::now()) {
            None => Err(false),
            Some(grant) => {
                let covered = needed.iter().all(|(name, actions)| {
                    grant.access.get(name).is_some_and(|granted| actions.iter().all(|a| granted.contains(a)))
                });
                if covered { Ok(()) } else { Err(true) }
            }
        }
    };
    if let Err(insufficient) = verdict {
        let scope = needed
            .iter()
            .map(|(name, actions)| format!("repository:{name}:{}", actions.join(",")))
            .collect::<Vec<_>>()
            .join(" ");
        let mut challenge = format!(r#"Bearer realm="{}/token",service="berth-test""#, gate.public);
        if !scope.is_empty() {
            challenge.push_str(&format!(r#",scope="{scope}""#));
        }
        if insufficient {
            challenge.push_str(r#",error="insufficient_scope""#);
        }
        let body = serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]});
        let mut response = json_error(StatusCode::UNAUTHORIZED, body);
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_str(&challenge).unwrap());
        return response;
    }
    gate.proxied.lock().unwrap().push(format!("{method} {path}?{query}"));
    proxy(&gate, request).await
}

/// Forwards `request` to the registry behind, streaming both bodies, with `Location` and `Link`
/// pointing back at the gate.
async fn proxy(gate: &Gate, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let target = format!("{}{}", gate.backend, parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let mut headers = parts.headers.clone();
    headers.remove(header::HOST);
    headers.remove(header::AUTHORIZATION);
    let upstream = gate
        .http
        .request(parts.method, target)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await;
    let upstream = match upstream {
        Ok(response) => response,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = upstream.status();
    let mut headers = upstream.headers().clone();
    for hop_by_hop in [header::TRANSFER_ENCODING, header::CONNECTION] {
        headers.remove(hop_by_hop);
    }
    for name in [header::LOCATION, header::LINK] {
        if let Some(value) = headers.get(&name).and_then(|v| v.to_str().ok()) {
            let rewritten = value.replace(&gate.backend, &gate.public);
            headers.insert(name, HeaderValue::from_str(&rewritten).unwrap());
        }
    }
    let body = Body::from_stream(upstream.bytes_stream().map_err(std::io::Error::other));
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
