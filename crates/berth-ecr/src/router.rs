//! The front of the ECR API: `POST` with `X-Amz-Target`, answered in JSON 1.1.
//!
//! Order of checks, as AWS's front end does it: the target names an operation, the signature
//! covers the request, the body is JSON of the operation's input, the input satisfies the model;
//! only then does the backend run.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use serde::de::DeserializeOwned;

use berth_iam::{ConnectionInfo, Identity, RequestContext};

use crate::backend::EcrBackend;
use crate::endpoint::Endpoint;
use crate::error::{CONTENT_TYPE, EcrError, REQUEST_ID_HEADER};
use crate::sigv4::{self, Principal, SecretLookup, SignedRequest};
use crate::validate::Validate;

/// Largest request body read: an `UploadLayerPart` of 20 MiB is ~28 MiB of base64 in JSON.
pub const MAX_BODY_BYTES: usize = 30 * 1024 * 1024;

/// The principal recorded for requests when authentication is off and none is claimed.
pub const ANONYMOUS: &str = "anonymous";

#[derive(Clone)]
pub enum Authentication {
    /// Every request must carry a valid SigV4 signature by a known access key.
    SigV4(Arc<dyn SecretLookup>),
    /// Signatures are not checked (`--no-auth` on loopback); the claimed access key id, if any,
    /// still names the principal.
    Disabled,
}

#[derive(Clone)]
pub struct EcrService {
    backend: Arc<dyn EcrBackend>,
    authentication: Authentication,
}

impl EcrService {
    pub fn new(backend: Arc<dyn EcrBackend>, authentication: Authentication) -> Self {
        EcrService { backend, authentication }
    }
}

/// `POST /` to [`handle`]. The handler must see the path the client signed, so mount this at the
/// root rather than nested under a prefix.
pub fn router(service: EcrService) -> Router {
    Router::new().route("/", post(handle)).with_state(service)
}

/// Serves one ECR API call. The response carries the verified [`Principal`] in its extensions
/// so an access log around the router can attribute the request.
pub async fn handle(State(service): State<EcrService>, request: Request) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let endpoint = Endpoint::from_headers(request.headers());
    let operation = endpoint.as_ref().ok().map(|e| e.name());
    let (principal, outcome) = match endpoint {
        Ok(endpoint) => serve(&service, &request_id, endpoint, request).await,
        Err(err) => (None, Err(err)),
    };
    let access_key_id = principal.as_ref().map(|p| p.access_key_id.as_str());
    let mut response = match outcome {
        Ok(body) => {
            tracing::debug!(request_id, operation, access_key_id, "ECR call");
            let mut response = (StatusCode::OK, body).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            if let Ok(id) = HeaderValue::from_str(&request_id) {
                headers.insert(REQUEST_ID_HEADER, id);
            }
            response
        }
        Err(err) => {
            if matches!(err, EcrError::Server(_)) {
                tracing::warn!(request_id, operation, access_key_id, error = err.wire_type(), "{err}");
            } else {
                tracing::info!(request_id, operation, access_key_id, error = err.wire_type(), "{err}");
            }
            err.into_response_with_id(&request_id)
        }
    };
    if let Some(principal) = principal {
        response.extensions_mut().insert(principal);
    }
    response
}

/// Authenticates and runs the call; the principal is returned once known, even on failure.
async fn serve(
    service: &EcrService,
    request_id: &str,
    endpoint: Endpoint,
    request: Request,
) -> (Option<Principal>, Result<Vec<u8>, EcrError>) {
    let received_at = SystemTime::now();
    let (parts, body) = request.into_parts();
    let body = match read_body(&parts.headers, body).await {
        Ok(body) => body,
        Err(err) => return (None, Err(err)),
    };
    let principal = match &service.authentication {
        Authentication::SigV4(secrets) => {
            let signed = SignedRequest { method: &parts.method, uri: &parts.uri, headers: &parts.headers, body: &body };
            match sigv4::verify(&signed, SystemTime::now(), secrets.as_ref()).await {
                Ok(principal) => principal,
                Err(err) => return (None, Err(err)),
            }
        }
        Authentication::Disabled => sigv4::claimed_principal(&parts.headers).unwrap_or_else(|| Principal {
            access_key_id: ANONYMOUS.into(),
            region: String::new(),
            identity: Identity::Anonymous,
        }),
    };
    let ctx = RequestContext {
        request_id: request_id.to_owned(),
        received_at,
        source_ip: parts.extensions.get::<ConnectionInfo>().map(|c| c.peer.ip()),
        secure_transport: parts.extensions.get::<ConnectionInfo>().is_some_and(|c| c.tls),
        user_agent: parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
        identity: principal.identity.clone(),
    };
    let outcome = dispatch(service.backend.as_ref(), &ctx, endpoint, &body).await;
    (Some(principal), outcome)
}

async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, EcrError> {
    let too_large = || EcrError::RequestTooLarge(format!("Request body is larger than {MAX_BODY_BYTES} bytes"));
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(err) => Err(EcrError::Serialization(format!("Could not read the request body: {err}"))),
    }
}

/// Deserialises, validates, runs and serialises one operation.
async fn call<Req, Resp, Fut>(body: &[u8], run: impl FnOnce(Req) -> Fut) -> Result<Vec<u8>, EcrError>
where
    Req: DeserializeOwned + Validate,
    Resp: Serialize,
    Fut: Future<Output = Result<Resp, EcrError>>,
{
    let request: Req = decode(body)?;
    request.validate()?;
    let response = run(request).await?;
    serde_json::to_vec(&response).map_err(|e| EcrError::Server(format!("Could not encode the response: {e}")))
}

/// A malformed body is `SerializationException`, as AWS answers; a missing required member is
/// reported like the other constraint failures.
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, EcrError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    serde_json::from_slice(body).map_err(|err| {
        let message = err.to_string();
        match message.strip_prefix("missing field `").and_then(|rest| rest.split_once('`')) {
            Some((member, _)) => EcrError::invalid_parameter(member, "Member must not be null"),
            None => EcrError::Serialization(message),
        }
    })
}

macro_rules! dispatch_table {
    ($endpoint:expr, $body:expr, $backend:expr, $ctx:expr; $($op:ident => $method:ident),* $(,)?) => {
        match $endpoint {
            $(Endpoint::$op => call($body, |request| $backend.$method($ctx, request)).await,)*
            other => Err(EcrError::NotImplemented(other)),
        }
    };
}

async fn dispatch(
    backend: &dyn EcrBackend,
    ctx: &RequestContext,
    endpoint: Endpoint,
    body: &[u8],
) -> Result<Vec<u8>, EcrError> {
    dispatch_table!(endpoint, body, backend, ctx;
        GetAuthorizationToken => get_authorization_token,
        CreateRepository => create_repository,
        DescribeRepositories => describe_repositories,
        DeleteRepository => delete_repository,
        DescribeImages => describe_images,
        ListImages => list_images,
        BatchGetImage => batch_get_image,
        PutImage => put_image,
        BatchDeleteImage => batch_delete_image,
        BatchCheckLayerAvailability => batch_check_layer_availability,
        InitiateLayerUpload => initiate_layer_upload,
        UploadLayerPart => upload_layer_part,
        CompleteLayerUpload => complete_layer_upload,
        GetDownloadUrlForLayer => get_download_url_for_layer,
        TagResource => tag_resource,
        UntagResource => untag_resource,
        ListTagsForResource => list_tags_for_resource,
        DescribeRegistry => describe_registry,
        PutImageScanningConfiguration => put_image_scanning_configuration,
        GetRegistryScanningConfiguration => get_registry_scanning_configuration,
        BatchGetRepositoryScanningConfiguration => batch_get_repository_scanning_configuration,
        ListImageReferrers => list_image_referrers,
        PutImageTagMutability => put_image_tag_mutability,
        PutLifecyclePolicy => put_lifecycle_policy,
        GetLifecyclePolicy => get_lifecycle_policy,
        DeleteLifecyclePolicy => delete_lifecycle_policy,
        StartLifecyclePolicyPreview => start_lifecycle_policy_preview,
        GetLifecyclePolicyPreview => get_lifecycle_policy_preview,
        SetRepositoryPolicy => set_repository_policy,
        GetRepositoryPolicy => get_repository_policy,
        DeleteRepositoryPolicy => delete_repository_policy,
    )
}
