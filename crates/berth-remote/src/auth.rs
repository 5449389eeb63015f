//! Authentication to one registry: learning its scheme from `WWW-Authenticate`, Basic, and the
//! Bearer token flow (Docker Hub, GHCR, quay, distribution's token auth) with a token cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, StatusCode, Url};
use serde::Deserialize;
use tokio::time::Instant;

use crate::credentials::{Credentials, Secret};
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::transport::Transport;

/// The repositories and actions a request needs, as token services name them
/// (`repository:library/nginx:pull`). Sorted, so equal needs share one cached token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Scope(Vec<String>);

impl Scope {
    /// What `/v2/` needs: no repository.
    pub(crate) fn registry() -> Scope {
        Scope(Vec::new())
    }

    pub(crate) fn pull(name: &str) -> Scope {
        Scope(vec![format!("repository:{name}:pull")])
    }

    pub(crate) fn push(name: &str) -> Scope {
        Scope(vec![format!("repository:{name}:pull,push")])
    }

    /// Pushing to `name` and reading `from` (a cross-repository mount).
    pub(crate) fn mount(name: &str, from: &str) -> Scope {
        Scope::push(name).with(&format!("repository:{from}:pull"))
    }

    fn with(mut self, scope: &str) -> Scope {
        for item in scope.split(' ').filter(|s| !s.is_empty()) {
            if !self.0.iter().any(|have| have == item) {
                self.0.push(item.to_owned());
            }
        }
        self.0.sort();
        self
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String>, error: Option<String> },
}

/// The challenges of all `WWW-Authenticate` headers that Berth can answer.
fn challenges(headers: &HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(parse_challenges)
        .collect()
}

/// RFC 9110's `challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ]`, several per header
/// value. A parameter is `name=token` or `name="quoted string"` (Bearer scopes hold commas).
fn parse_challenges(value: &str) -> Vec<Challenge> {
    let mut found = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if rest.is_empty() {
            return found;
        }
        let scheme_end = rest.find([' ', ',']).unwrap_or(rest.len());
        let scheme = &rest[..scheme_end];
        rest = &rest[scheme_end..];
        let mut params: HashMap<String, String> = HashMap::new();
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            // A parameter is `name=`; anything else starts the next challenge.
            let Some(eq) = rest.find('=') else { break };
            let name = &rest[..eq];
            if name.is_empty() || name.contains([' ', ',', '"']) {
                break;
            }
            let after = &rest[eq + 1..];
            let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next().map(|(_, c)| c)),
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            };
            params.insert(name.to_ascii_lowercase(), value);
            rest = remainder;
        }
        if scheme.eq_ignore_ascii_case("basic") {
            found.push(Challenge::Basic);
        } else if scheme.eq_ignore_ascii_case("bearer")
            && let Some(realm) = params.remove("realm")
        {
            found.push(Challenge::Bearer {
                realm,
                service: params.remove("service"),
                scope: params.remove("scope"),
                error: params.remove("error"),
            });
        }
    }
}

/// What the registry wants, learned from its first challenge.
#[derive(Clone, Debug)]
enum Scheme {
    /// Nothing asked for yet: requests go without credentials until a 401 says otherwise.
    Unknown,
    Basic,
    Bearer {
        realm: Url,
        service: Option<String>,
    },
}

/// The `Authorization` a request carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Authorization {
    Basic,
    Bearer(Secret),
}

struct Token {
    value: Secret,
    /// Shortly before the service said it expires, so it is not used while it runs out.
    renew_at: Instant,
}

/// Tokens fetched for one scope; the async mutex makes concurrent requests that need a token
/// wait for one fetch instead of each fetching their own.
type TokenSlot = Arc<tokio::sync::Mutex<Option<Token>>>;

/// The authentication state of one [`crate::Remote`].
pub(crate) struct Auth {
    credentials: Credentials,
    scheme: Mutex<Scheme>,
    tokens: Mutex<HashMap<Scope, TokenSlot>>,
}

/// What the distribution spec's token document holds (`token` or the OAuth2 `access_token`).
#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// The spec's default when a token service leaves `expires_in` out.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
const TOKEN_BODY_LIMIT: usize = 1024 * 1024;

impl Auth {
    pub(crate) fn new(credentials: Credentials) -> Auth {
        Auth { credentials, scheme: Mutex::new(Scheme::Unknown), tokens: Mutex::default() }
    }

    pub(crate) fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    fn scheme(&self) -> Scheme {
        self.scheme.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_scheme(&self, scheme: Scheme) {
        *self.scheme.lock().unwrap_or_else(|p| p.into_inner()) = scheme;
    }

    fn slot(&self, scope: &Scope) -> TokenSlot {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.entry(scope.clone()).or_default().clone()
    }

    /// What to send with a request needing `scope`, as far as the registry's scheme is known.
    pub(crate) async fn authorization(&self, transport: &Transport, scope: &Scope) -> Result<Option<Authorization>> {
        match self.scheme() {
            Scheme::Unknown => Ok(None),
            Scheme::Basic => Ok(self.credentials.username().map(|_| Authorization::Basic)),
            Scheme::Bearer { realm, service } => {
                self.token(transport, &realm, service.as_deref(), scope, None, None).await.map(Some)
            }
        }
    }

    /// After a 401 to a request that carried `sent`: what to retry with, or `None` if a retry
    /// cannot succeed (the caller then reports the 401).
    pub(crate) async fn after_unauthorized(
        &self,
        transport: &Transport,
        endpoint: &Endpoint,
        scope: &Scope,
        sent: Option<&Authorization>,
        headers: &HeaderMap,
    ) -> Result<Option<Authorization>> {
        let challenges = challenges(headers);
        let bearer = challenges.iter().find_map(|c| match c {
            Challenge::Bearer { realm, service, scope, error } => Some((realm, service, scope, error)),
            Challenge::Basic => None,
        });
        if let Some((realm, service, challenge_scope, error)) = bearer {
            let realm = token_realm(endpoint, realm)?;
            self.set_scheme(Scheme::Bearer { realm: realm.clone(), service: service.clone() });
            // A token we sent was refused: expired or revoked early, or lacking scope
            // (`error="insufficient_scope"`): fetch a new one covering what the challenge names.
            let stale = match sent {
                Some(Authorization::Bearer(token)) => Some(token),
                _ => None,
            };
            if stale.is_some() && error.as_deref() == Some("insufficient_scope") && challenge_scope.is_none() {
                return Ok(None);
            }
            let token =
                self.token(transport, &realm, service.as_deref(), scope, challenge_scope.as_deref(), stale).await?;
            return Ok(Some(token).filter(|next| Some(next) != sent));
        }
        if challenges.contains(&Challenge::Basic) {
            self.set_scheme(Scheme::Basic);
            let can_retry = self.credentials.username().is_some() && sent != Some(&Authorization::Basic);
            return Ok(can_retry.then_some(Authorization::Basic));
        }
        Ok(None)
    }

    /// Forgets the token `sent` for `scope` (a request that cannot be retried was refused with
    /// it), so the next request fetches a fresh one.
    pub(crate) fn forget(&self, scope: &Scope, sent: Option<&Authorization>) {
        let Some(Authorization::Bearer(sent)) = sent else { return };
        if let Ok(mut slot) = self.slot(scope).try_lock()
            && slot.as_ref().is_some_and(|t| &t.value == sent)
        {
            *slot = None;
        }
    }

    /// A valid token for `scope` (+ `extra`, a challenge's scope): cached, or fetched once for
    /// all concurrent callers. `stale` is a token the registry just refused: never returned again.
    async fn token(
        &self,
        transport: &Transport,
        realm: &Url,
        service: Option<&str>,
        scope: &Scope,
        extra: Option<&str>,
        stale: Option<&Secret>,
    ) -> Result<Authorization> {
        let slot = self.slot(scope);
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref()
            && token.renew_at > Instant::now()
            && Some(&token.value) != stale
        {
            return Ok(Authorization::Bearer(token.value.clone()));
        }
        let wanted = match extra {
            Some(extra) => scope.clone().with(extra),
            None => scope.clone(),
        };
        let token = self.fetch_token(transport, realm, service, &wanted).await?;
        let value = token.value.clone();
        *cached = Some(token);
        Ok(Authorization::Bearer(value))
    }

    async fn fetch_token(
        &self,
        transport: &Transport,
        realm: &Url,
        service: Option<&str>,
        scope: &Scope,
    ) -> Result<Token> {
        let mut url = realm.clone();
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            for item in &scope.0 {
                query.append_pair("scope", item);
            }
        }
        let started = Instant::now();
        let request = self.apply(transport.http.get(url), Some(&Authorization::Basic));
        let request = request.build().map_err(Error::transport)?;
        tracing::debug!(realm = %realm_for_log(realm), scope = ?scope.0, "fetching a registry token");
        let response = transport.execute(request, None).await?;
        if response.status() != StatusCode::OK {
            return Err(match transport.error_from(response).await {
                Error::Unauthorized { message } => Error::Unauthorized { message: format!("token service: {message}") },
                Error::Denied { message } => Error::Denied { message: format!("token service: {message}") },
                other => other,
            });
        }
        let body = transport.read_body(response, TOKEN_BODY_LIMIT).await?;
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| Error::InvalidResponse(format!("token service: not a token document: {e}")))?;
        let value = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::InvalidResponse("token service: the answer holds no token".into()))?;
        let lifetime = parsed.expires_in.filter(|&s| s > 0).map(Duration::from_secs).unwrap_or(DEFAULT_TOKEN_LIFETIME);
        let margin = (lifetime / 2).min(Duration::from_secs(30));
        Ok(Token { value: Secret::new(value), renew_at: started + lifetime - margin })
    }

    /// Adds `authorization` to a request (the credentials of this registry, so only for its own
    /// origin or its token realm).
    pub(crate) fn apply(&self, request: RequestBuilder, authorization: Option<&Authorization>) -> RequestBuilder {
        match (authorization, &self.credentials) {
            (Some(Authorization::Basic), Credentials::Basic { username, password }) => {
                request.basic_auth(username, Some(password.expose()))
            }
            (Some(Authorization::Bearer(token)), _) => request.bearer_auth(token.expose()),
            _ => request,
        }
    }
}

/// The realm a Bearer challenge names, refused if it would send credentials in the clear from a
/// registry reached over https.
fn token_realm(endpoint: &Endpoint, realm: &str) -> Result<Url> {
    let url = Url::parse(realm).map_err(|_| Error::InvalidResponse(format!("token realm {realm:?} is not a URL")))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if !endpoint.is_https() => Ok(url),
        _ => Err(Error::InvalidResponse(format!(
            "token realm {} is not https; credentials are not sent there",
            realm_for_log(&url)
        ))),
    }
}

fn realm_for_log(realm: &Url) -> String {
    format!("{}://{}{}", realm.scheme(), realm.host_str().unwrap_or(""), realm.path())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn bearer(realm: &str, service: Option<&str>, scope: Option<&str>, error: Option<&str>) -> Challenge {
        Challenge::Bearer {
            realm: realm.into(),
            service: service.map(Into::into),
            scope: scope.map(Into::into),
            error: error.map(Into::into),
        }
    }

    #[test]
    fn docker_hubs_challenge() {
        let value = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#;
        assert_eq!(
            parse_challenges(value),
            vec![bearer(
                "https://auth.docker.io/token",
                Some("registry.docker.io"),
                Some("repository:library/nginx:pull"),
                None
            )]
        );
    }

    #[test]
    fn insufficient_scope_with_commas_inside_quotes() {
        let value = r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:o/r:pull,push",error="insufficient_scope""#;
        assert_eq!(
            parse_challenges(value),
            vec![bearer(
                "https://ghcr.io/token",
                Some("ghcr.io"),
                Some("repository:o/r:pull,push"),
                Some("insufficient_scope")
            )]
        );
    }

    #[test]
    fn basic_unquoted_escapes_and_several_challenges() {
        assert_eq!(parse_challenges(r#"Basic realm="Berth""#), vec![Challenge::Basic]);
        assert_eq!(parse_challenges("basic realm=Registry"), vec![Challenge::Basic]);
        assert_eq!(
            parse_challenges(r#"Basic realm="a \"quoted\" realm", Bearer realm="http://127.0.0.1:1/token",service=s"#),
            vec![Challenge::Basic, bearer("http://127.0.0.1:1/token", Some("s"), None, None)]
        );
        // A Bearer challenge without realm cannot be answered; unknown schemes are skipped.
        assert_eq!(parse_challenges(r#"Bearer service="x""#), vec![]);
        assert_eq!(parse_challenges(r#"Negotiate abc=, Basic realm="r""#), vec![Challenge::Basic]);
        assert_eq!(parse_challenges(""), vec![]);
        assert_eq!(parse_challenges(", Basic realm=x"), vec![Challenge::Basic]);
        assert_eq!(parse_challenges("Negotiate YIIB, Basic"), vec![Challenge::Basic]);
    }

    #[test]
    fn any_header_value_parses_without_panicking() {
        const ALPHABET: [&str; 10] = ["Bearer", "Basic", " ", ",", "=", "\"", "\\", "realm", "é", "x"];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..5000 {
            let mut value = String::new();
            for _ in 0..(state % 24) {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                value.push_str(ALPHABET[(state >> 33) as usize % ALPHABET.len()]);
            }
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            parse_challenges(&value);
        }
    }

    #[test]
    fn challenges_come_from_every_header() {
        let mut headers = HeaderMap::new();
        headers.append(WWW_AUTHENTICATE, HeaderValue::from_static("Negotiate"));
        headers.append(WWW_AUTHENTICATE, HeaderValue::from_static(r#"Basic realm="x""#));
        assert_eq!(challenges(&headers), vec![Challenge::Basic]);
    }

    #[test]
    fn scopes_merge_and_sort() {
        assert_eq!(Scope::mount("a", "b").0, vec!["repository:a:pull,push", "repository:b:pull"]);
        assert_eq!(
            Scope::pull("a").with("repository:a:pull repository:c:pull").0,
            vec!["repository:a:pull", "repository:c:pull"]
        );
        assert_eq!(Scope::mount("b", "a"), Scope::push("b").with("repository:a:pull"));
    }

    #[test]
    fn an_http_realm_is_refused_for_an_https_registry() {
        let https: Endpoint = "registry.example".parse().unwrap();
        assert!(token_realm(&https, "https://auth.example/token").is_ok());
        assert!(matches!(token_realm(&https, "http://auth.example/token"), Err(Error::InvalidResponse(_))));
        assert!(matches!(token_realm(&https, "/token"), Err(Error::InvalidResponse(_))));
        let loopback: Endpoint = "http://127.0.0.1:5000".parse().unwrap();
        assert!(token_realm(&loopback, "http://127.0.0.1:5001/token").is_ok());
    }
}
