//! The client, one remote registry, and the request loop every operation goes through:
//! credentials attached for the registry's own origin only, one retry after a 401 challenge,
//! redirects followed without credentials.

use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{HeaderMap, LOCATION};
use reqwest::{Method, Response, StatusCode, Url};

use crate::auth::{Auth, Authorization, Scope};
use crate::config::ClientConfig;
use crate::credentials::Credentials;
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::transport::{Transport, UploadProgress};

/// A connection pool and settings for talking to remote registries. Cheap to clone; one per
/// server is enough (a [`Remote`] per upstream or destination shares it).
#[derive(Clone)]
pub struct Client {
    transport: Arc<Transport>,
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Client> {
        Ok(Client { transport: Arc::new(Transport::new(config)?) })
    }

    /// A handle on the registry at `endpoint`, authenticating with `credentials`. Tokens are
    /// cached in the handle: keep it (it is cheap to clone) rather than making one per request.
    pub fn remote(&self, endpoint: Endpoint, credentials: Credentials) -> Remote {
        Remote {
            inner: Arc::new(RemoteInner { transport: self.transport.clone(), endpoint, auth: Auth::new(credentials) }),
        }
    }
}

/// One remote registry with its credentials and token cache. Cheap to clone.
#[derive(Clone)]
pub struct Remote {
    inner: Arc<RemoteInner>,
}

struct RemoteInner {
    transport: Arc<Transport>,
    endpoint: Endpoint,
    auth: Auth,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("endpoint", &self.inner.endpoint)
            .field("credentials", self.inner.auth.credentials())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("config", &self.transport.config).finish_non_exhaustive()
    }
}

/// A request body: replayable (sent again after a 401 challenge) or a one-shot upload stream.
pub(crate) enum Body {
    Empty,
    Bytes(Bytes),
    Upload(reqwest::Body, Arc<UploadProgress>),
}

/// One request as the operations describe it.
pub(crate) struct Call {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) scope: Scope,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Body,
    /// GET/HEAD of content that registries may serve from elsewhere (blobs behind a CDN).
    pub(crate) follow_redirects: bool,
}

impl Call {
    pub(crate) fn new(method: Method, url: Url, scope: Scope) -> Call {
        Call { method, url, scope, headers: HeaderMap::new(), body: Body::Empty, follow_redirects: false }
    }
}

const MAX_REDIRECTS: usize = 5;

impl Remote {
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// Checks that the registry answers the distribution API and accepts the credentials
    /// (for Bearer registries: that the token service issues a token for them).
    pub async fn ping(&self) -> Result<()> {
        let response = self.send(Call::new(Method::GET, self.endpoint().v2_url(""), Scope::registry())).await?;
        self.expect(response, &[StatusCode::OK]).await.map(drop)
    }

    /// Sends `call`, answering an authentication challenge once, and following redirects when
    /// asked. Any status comes back as a response; see [`Remote::expect`].
    pub(crate) async fn send(&self, call: Call) -> Result<Response> {
        let Call { method, url, scope, headers, body, follow_redirects } = call;
        let (transport, auth, endpoint) = (self.transport(), &self.inner.auth, self.endpoint());
        let (replayable, mut upload) = match body {
            Body::Empty => (None, None),
            Body::Bytes(bytes) => (Some(bytes), None),
            Body::Upload(body, progress) => (None, Some((body, progress))),
        };
        let can_retry = upload.is_none();
        let mut authorization = auth.authorization(transport, &scope).await?;
        let mut retried = false;
        loop {
            let mut request = transport.http.request(method.clone(), url.clone()).headers(headers.clone());
            if endpoint.is_same_origin(&url) {
                request = auth.apply(request, authorization.as_ref());
            }
            let mut progress = None;
            if let Some((body, watch)) = upload.take() {
                request = request.body(body);
                progress = Some(watch);
            } else if let Some(bytes) = &replayable {
                request = request.body(bytes.clone());
            }
            let request = request.build().map_err(Error::transport)?;
            let response = transport.execute(request, progress).await?;
            tracing::debug!(registry = %endpoint, %method, path = url.path(), status = response.status().as_u16());
            if response.status() == StatusCode::UNAUTHORIZED {
                if can_retry && !retried {
                    let next = auth
                        .after_unauthorized(transport, endpoint, &scope, authorization.as_ref(), response.headers())
                        .await?;
                    if let Some(next) = next {
                        authorization = Some(next);
                        retried = true;
                        continue;
                    }
                } else {
                    auth.forget(&scope, authorization.as_ref());
                }
                return Ok(response);
            }
            if follow_redirects && response.status().is_redirection() {
                return self.follow_redirects(&method, headers, response, authorization.as_ref()).await;
            }
            return Ok(response);
        }
    }

    /// Follows `response`'s redirect chain. Hops to another origin never carry the registry's
    /// credentials: Docker Hub, ECR and GHCR send blobs to S3 / a CDN with a signed URL, which
    /// must not see them (and S3 refuses a request with two kinds of authentication).
    async fn follow_redirects(
        &self,
        method: &Method,
        headers: HeaderMap,
        mut response: Response,
        authorization: Option<&Authorization>,
    ) -> Result<Response> {
        for _ in 0..MAX_REDIRECTS {
            if !response.status().is_redirection() || response.status() == StatusCode::NOT_MODIFIED {
                return Ok(response);
            }
            let next = self.location(&response)?;
            tracing::debug!(registry = %self.endpoint(), host = next.host_str().unwrap_or(""), "following a redirect");
            let same_origin = self.endpoint().is_same_origin(&next);
            let mut request = self.transport().http.request(method.clone(), next).headers(headers.clone());
            if same_origin {
                request = self.inner.auth.apply(request, authorization);
            }
            response = self.transport().execute(request.build().map_err(Error::transport)?, None).await?;
        }
        Err(Error::InvalidResponse(format!("more than {MAX_REDIRECTS} redirects")))
    }

    /// `response`'s `Location`, resolved against the URL it answered (registries send relative
    /// and absolute ones).
    pub(crate) fn location(&self, response: &Response) -> Result<Url> {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::InvalidResponse(format!("a {} answer without Location", response.status())))?;
        let url =
            response.url().join(location).map_err(|_| Error::InvalidResponse("a Location that is not a URL".into()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::InvalidResponse(format!("a Location with scheme {}", url.scheme())));
        }
        Ok(url)
    }

    /// `response` if its status is one of `expected`, else the error it describes.
    pub(crate) async fn expect(&self, response: Response, expected: &[StatusCode]) -> Result<Response> {
        if expected.contains(&response.status()) {
            Ok(response)
        } else if response.status().is_redirection() {
            Err(Error::InvalidResponse(format!("an unexpected redirect ({})", response.status())))
        } else {
            Err(self.transport().error_from(response).await)
        }
    }
}
