//! The front of the ECR API: `POST` with `X-Amz-Target`, answered in JSON 1.1.
//!
//! Order of checks, as AWS's front end does it, and so that an unauthenticated client cannot make
//! the server read (let alone buffer) a body: the target names an operation; the signature's
//! headers check out (scope, signed headers, clock skew, a known key); the body, bounded by the
//! operation's own limit, is read; the signature covers it; the
//! body is JSON of the operation's input and satisfies the model; the caller may perform the
//! operation's action on the resources it names; only then does the backend run.
//!
//! The body has to be read before its signature can be checked, so a client that knows an access
//! key id (which is no secret) but not its secret can make the server read one. Such bodies share
//! [`UNVERIFIED_BODY_BUDGET`] server-wide, so together they can never exhaust memory.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use berth_iam::{ConnectionInfo, Identity, RequestContext, Served, Tags};
use berth_registry::body_budget::{self, BodyBudget, Held, ReadError};

use crate::authorization::Scoped;
use crate::backend::EcrBackend;
use crate::endpoint::Endpoint;
use crate::error::{CONTENT_TYPE, EcrError, REQUEST_ID_HEADER};
use crate::sigv4::{self, RequestHead, SecretLookup};
use crate::validate::Validate;

#[derive(Clone)]
pub enum Authentication {
    /// Every request must carry a valid SigV4 signature by a known access key.
    SigV4(Arc<dyn SecretLookup>),
    /// Signatures are not checked (`--no-auth` on loopback): every caller is anonymous.
    Disabled,
}

/// Bytes of request bodies whose signature is not checked yet that the server holds at once,
/// across all requests; past it such requests get `ThrottlingException` (SDKs retry it). Room for
/// two of the largest (`UploadLayerPart`, about 26.7 MiB).
pub const UNVERIFIED_BODY_BUDGET: usize = 64 << 20;
/// The part of [`UNVERIFIED_BODY_BUDGET`] one client address may hold: one of the largest bodies,
/// so a client that stalls its bodies (whoever knows a key id gets that far) leaves the other
/// half to everyone else.
pub const UNVERIFIED_BODY_ADDRESS_SHARE: usize = 32 << 20;

#[derive(Clone)]
pub struct EcrService {
    backend: Arc<dyn EcrBackend>,
    authentication: Authentication,
    unverified_bodies: BodyBudget,
}

impl EcrService {
    pub fn new(backend: Arc<dyn EcrBackend>, authentication: Authentication) -> Self {
        let unverified_bodies = BodyBudget::new(UNVERIFIED_BODY_BUDGET, UNVERIFIED_BODY_ADDRESS_SHARE);
        EcrService { backend, authentication, unverified_bodies }
    }
}

/// `POST /` to [`handle`]. The handler must see the path the client signed, so mount this at the
/// root rather than nested under a prefix.
pub fn router(service: EcrService) -> Router {
    Router::new().route("/", post(handle)).with_state(service)
}

/// Serves one ECR API call. It takes the request's [`RequestContext`] from the request's
/// extensions (the server's edge puts one there) and returns it, with the verified signer as its
/// identity, in the response's extensions for the access log.
pub async fn handle(State(service): State<EcrService>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let mut ctx = request_context(&mut parts);
    let endpoint = Endpoint::from_headers(&parts.headers);
    let operation = endpoint.as_ref().ok().map(|e| e.name());
    let mut served = match operation {
        Some(name) => Served::new(name, name, mutates(name)),
        None => Served::new("Unknown", "Unknown", false),
    };
    let outcome = match endpoint {
        Ok(endpoint) => serve(&service, &mut ctx, &mut served, endpoint, parts, body).await,
        Err(err) => Err(err),
    };
    if let Err(err) = &outcome {
        served.auth_failure = auth_failure(err);
        // What authentication errors echo of the Authorization header stays out of the audit trail.
        let message = match (served.auth_failure, err) {
            (_, EcrError::Server(_)) => "internal error".to_owned(),
            (Some(reason), _) if reason != "access_denied" => format!("authentication failed: {reason}"),
            _ => err.to_string(),
        };
        served.error = Some((err.wire_type(), message));
    }
    let request_id = ctx.request_id.as_str();
    let access_key_id = ctx.identity.access_key_id();
    let mut response = match outcome {
        Ok(body) => {
            tracing::debug!(request_id, operation, access_key_id, "ECR call");
            let mut response = (StatusCode::OK, body).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            if let Ok(id) = HeaderValue::from_str(request_id) {
                headers.insert(REQUEST_ID_HEADER, id);
            }
            response
        }
        Err(EcrError::Server(detail)) => {
            // The detail (a store's or backend's error) stays in the log; the client gets the id.
            tracing::warn!(request_id, operation, access_key_id, error = "ServerException", "{detail}");
            EcrError::Server(format!("Internal server error; request id {request_id}"))
                .into_response_with_id(request_id)
        }
        Err(err) => {
            // Without a verified signer anyone can cause these, as often as they like: not at INFO.
            if ctx.identity != Identity::Anonymous {
                tracing::info!(request_id, operation, access_key_id, error = err.wire_type(), "{err}");
            } else {
                tracing::debug!(request_id, operation, error = err.wire_type(), "{err}");
            }
            err.into_response_with_id(request_id)
        }
    };
    response.extensions_mut().insert(ctx);
    response.extensions_mut().insert(served);
    response
}

/// Whether an operation changes anything (so is audited): all but the reads.
fn mutates(operation: &str) -> bool {
    const READS: [&str; 5] = ["Get", "Describe", "List", "BatchGet", "BatchCheck"];
    !READS.iter().any(|prefix| operation.starts_with(prefix))
}

/// Why the caller was refused, for metrics and the audit trail.
fn auth_failure(err: &EcrError) -> Option<&'static str> {
    Some(match err {
        EcrError::MissingAuthenticationToken(_) => "missing_authentication_token",
        EcrError::UnrecognizedClient(_) => "unrecognized_client",
        EcrError::InvalidSignature(_) => "invalid_signature",
        EcrError::IncompleteSignature(_) => "incomplete_signature",
        EcrError::AccessDenied(_) => "access_denied",
        _ => return None,
    })
}

/// The members of a request body the audit trail records: names, references and settings, never
/// layer bytes, manifests or policy documents.
#[derive(serde::Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct AuditedParameters {
    #[serde(skip_serializing_if = "Option::is_none")]
    registry_id: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repository_name: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repository_names: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_ids: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_tag: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_digest: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_manifest_media_type: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upload_id: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    layer_digests: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    part_first_byte: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    part_last_byte: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_tag_mutability: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    force: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_arn: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag_keys: Option<serde_json::Value>,
}

fn audited_parameters(body: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    let parameters: AuditedParameters = serde_json::from_slice(body).unwrap_or_default();
    match serde_json::to_value(parameters) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

/// The context the server's edge made for this request (request id, client address, transport),
/// or one from the connection alone when the router runs without that edge.
fn request_context(parts: &mut Parts) -> RequestContext {
    if let Some(ctx) = parts.extensions.remove::<RequestContext>() {
        return ctx;
    }
    let connection = parts.extensions.get::<ConnectionInfo>();
    RequestContext {
        request_id: uuid::Uuid::new_v4().to_string(),
        received_at: SystemTime::now(),
        source_ip: connection.map(|c| c.peer.ip()),
        secure_transport: connection.is_some_and(|c| c.tls),
        user_agent: parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
        identity: Identity::Anonymous,
    }
}

/// Authenticates and runs the call, setting the context's identity once the signature is verified.
async fn serve(
    service: &EcrService,
    ctx: &mut RequestContext,
    audit: &mut Served,
    endpoint: Endpoint,
    parts: Parts,
    body: Body,
) -> Result<Vec<u8>, EcrError> {
    let limit = endpoint.max_body_bytes();
    let body = match &service.authentication {
        Authentication::SigV4(secrets) => {
            let head = RequestHead { method: &parts.method, uri: &parts.uri, headers: &parts.headers };
            let pending = sigv4::authenticate(head, SystemTime::now(), secrets.as_ref()).await?;
            let budget = (&service.unverified_bodies, ctx.source_ip);
            let (body, held) = read_body(&parts.headers, body, limit, Some(budget)).await?;
            ctx.identity = pending.verify(&body)?;
            drop(held);
            body
        }
        Authentication::Disabled => read_body(&parts.headers, body, limit, None).await?.0,
    };
    require_json_object(&body)?;
    if audit.mutating {
        audit.parameters = audited_parameters(&body);
    }
    dispatch(service.backend.as_ref(), ctx, endpoint, &body).await
}

/// At most `limit` bytes of body; a larger declared length is refused before any is read. With a
/// `budget` (and the client's address), every byte read is charged to it first, held until the
/// caller drops the returned [`Held`] (once the signature is checked); an exhausted budget, or
/// the address's exhausted share of it, refuses the request.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    budget: Option<(&BodyBudget, Option<IpAddr>)>,
) -> Result<(Bytes, Held), EcrError> {
    let too_large = || EcrError::RequestTooLarge(format!("Request body is larger than {limit} bytes"));
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let expected = declared.map_or(0, |len| len as usize);
    body_budget::read_whole(body.into_data_stream(), limit, expected, budget).await.map_err(|e| match e {
        ReadError::TooLarge => too_large(),
        ReadError::Exhausted => {
            EcrError::Throttling("Too many request bytes await signature verification; retry later".into())
        }
        ReadError::Body(err) => EcrError::Serialization(format!("Could not read the request body: {err}")),
    })
}

/// Deserialises, validates, authorizes, runs and serialises one operation.
async fn call<Req, Resp, Fut>(
    backend: &dyn EcrBackend,
    ctx: &RequestContext,
    endpoint: Endpoint,
    body: &[u8],
    run: impl FnOnce(Req) -> Fut,
) -> Result<Vec<u8>, EcrError>
where
    Req: DeserializeOwned + Validate + Scoped,
    Resp: Serialize,
    Fut: Future<Output = Result<Resp, EcrError>>,
{
    let request: Req = decode(body)?;
    request.validate()?;
    let request_tags = request.request_tags();
    let tagging = request_tags.as_ref().is_some_and(|tags| !tags.is_empty());
    let request_tags = request_tags.as_ref().map(|tags| tags as &(dyn Tags + Sync));
    for action in endpoint.permissions(tagging) {
        backend.authorize(ctx, action, request.resources(), request_tags).await?;
    }
    let response = run(request).await?;
    serde_json::to_vec(&response).map_err(|e| EcrError::Server(format!("Could not encode the response: {e}")))
}

/// The body is one JSON object, well-formed throughout (awsJson 1.1), empty standing for `{}`:
/// checked whole, since an operation skips members it does not know without reading them, and
/// one carrying what JSON forbids (invalid UTF-8, a lone surrogate, nesting past serde_json's
/// limit) left the audit trail without the call's parameters while the call ran. A JSON array
/// in place of the object is refused too (serde would read it member by member, in order).
fn require_json_object(body: &[u8]) -> Result<(), EcrError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Ok(()),
        Some(b'{') => {}
        Some(_) => return Err(EcrError::Serialization("The request body must be a JSON object.".into())),
    }
    serde_json::from_slice::<WellFormed>(body)
        .map(|_| ())
        .map_err(|err| EcrError::Serialization(format!("The request body is not valid JSON: {err}")))
}

/// Any JSON value, read only to check that it is well formed: strings are looked at where they
/// lie (serde_json checks their UTF-8 and escapes), not copied — an `UploadLayerPart` body is
/// one string of up to ~27 MiB.
struct WellFormed;

impl<'de> serde::Deserialize<'de> for WellFormed {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(WellFormed)
    }
}

impl<'de> serde::de::Visitor<'de> for WellFormed {
    type Value = WellFormed;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<WellFormed, E> {
        Ok(WellFormed)
    }

    fn visit_i64<E>(self, _: i64) -> Result<WellFormed, E> {
        Ok(WellFormed)
    }

    fn visit_u64<E>(self, _: u64) -> Result<WellFormed, E> {
        Ok(WellFormed)
    }

    fn visit_f64<E>(self, _: f64) -> Result<WellFormed, E> {
        Ok(WellFormed)
    }

    fn visit_str<E>(self, _: &str) -> Result<WellFormed, E> {
        Ok(WellFormed)
    }

    fn visit_unit<E>(self) -> Result<WellFormed, E> {
        Ok(WellFormed)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<WellFormed, A::Error> {
        while seq.next_element::<WellFormed>()?.is_some() {}
        Ok(WellFormed)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<WellFormed, A::Error> {
        while map.next_entry::<WellFormed, WellFormed>()?.is_some() {}
        Ok(WellFormed)
    }
}

/// A malformed body (a structure given as anything but a JSON object among it) is
/// `SerializationException`, as AWS answers; a missing required member is reported like the
/// other constraint failures.
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, EcrError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    crate::strict_json::from_slice(body).map_err(|err| {
        let message = err.to_string();
        match message.strip_prefix("missing field `").and_then(|rest| rest.split_once('`')) {
            Some((member, _)) => EcrError::invalid_parameter(member, "Member must not be null"),
            None => EcrError::Serialization(message),
        }
    })
}

/// Every operation and its backend method. The match has no catch-all, so an operation of the
/// model without a method does not compile: nothing answers "not implemented".
macro_rules! dispatch_table {
    ($($op:ident => $method:ident),* $(,)?) => {
        async fn dispatch(
            backend: &dyn EcrBackend,
            ctx: &RequestContext,
            endpoint: Endpoint,
            body: &[u8],
        ) -> Result<Vec<u8>, EcrError> {
            match endpoint {
                $(Endpoint::$op => call(backend, ctx, endpoint, body, |request| backend.$method(ctx, request)).await,)*
            }
        }
    };
}

dispatch_table!(
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
        PutReplicationConfiguration => put_replication_configuration,
        DescribeImageReplicationStatus => describe_image_replication_status,
        PutRegistryScanningConfiguration => put_registry_scanning_configuration,
        StartImageScan => start_image_scan,
        UpdateImageStorageClass => update_image_storage_class,
        DescribeImageScanFindings => describe_image_scan_findings,
        PutSigningConfiguration => put_signing_configuration,
        GetSigningConfiguration => get_signing_configuration,
        DeleteSigningConfiguration => delete_signing_configuration,
        DescribeImageSigningStatus => describe_image_signing_status,
        PutImageScanningConfiguration => put_image_scanning_configuration,
        GetRegistryScanningConfiguration => get_registry_scanning_configuration,
        PutRegistryPolicy => put_registry_policy,
        GetRegistryPolicy => get_registry_policy,
        DeleteRegistryPolicy => delete_registry_policy,
        GetAccountSetting => get_account_setting,
        PutAccountSetting => put_account_setting,
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
    CreatePullThroughCacheRule => create_pull_through_cache_rule,
    DescribePullThroughCacheRules => describe_pull_through_cache_rules,
    UpdatePullThroughCacheRule => update_pull_through_cache_rule,
    DeletePullThroughCacheRule => delete_pull_through_cache_rule,
    ValidatePullThroughCacheRule => validate_pull_through_cache_rule,
    CreateRepositoryCreationTemplate => create_repository_creation_template,
    DescribeRepositoryCreationTemplates => describe_repository_creation_templates,
    UpdateRepositoryCreationTemplate => update_repository_creation_template,
    DeleteRepositoryCreationTemplate => delete_repository_creation_template,
    RegisterPullTimeUpdateExclusion => register_pull_time_update_exclusion,
    DeregisterPullTimeUpdateExclusion => deregister_pull_time_update_exclusion,
    ListPullTimeUpdateExclusions => list_pull_time_update_exclusions,
);

#[cfg(test)]
mod tests {
    use super::*;

    /// Bodies awaiting their signature share one budget: what one holds, another cannot take,
    /// and it comes back when the holder lets go. One address holds at most its share.
    #[tokio::test]
    async fn unverified_bodies_share_one_budget() {
        let budget = BodyBudget::new(100, 70);
        let headers = HeaderMap::new();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let read = |len: usize, from: IpAddr| {
            read_body(&headers, Body::from(vec![7u8; len]), 1000, Some((&budget, Some(from))))
        };
        let (first, held) = read(60, a).await.unwrap();
        assert_eq!(first.len(), 60);
        assert_eq!(budget.available(), 40);
        let refused = read(20, a).await.unwrap_err();
        assert_eq!(refused.wire_type(), "ThrottlingException", "past the address's share");
        let (_, other) = read(40, b).await.unwrap();
        let refused = read(10, b).await.unwrap_err();
        assert_eq!(refused.wire_type(), "ThrottlingException", "past the whole budget");
        assert_eq!(budget.available(), 0, "a refused body keeps nothing");
        drop((held, other));
        assert_eq!(budget.available(), 100);
        assert!(budget.no_address_charged(), "nothing stays charged");
        let (second, _held) = read(60, a).await.unwrap();
        assert_eq!(second, vec![7u8; 60]);
        // Without a budget (signatures off) only the operation's limit applies.
        let (unbudgeted, none) = read_body(&headers, Body::from(vec![1u8; 500]), 1000, None).await.unwrap();
        assert!(unbudgeted.len() == 500 && !none.holds_any());
        let too_large = read_body(&headers, Body::from(vec![1u8; 1001]), 1000, None).await.unwrap_err();
        assert_eq!(too_large.wire_type(), "RequestEntityTooLargeException");
    }
}
