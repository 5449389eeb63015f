//! One handler per endpoint and method.

use std::io;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_registry::body_budget::{self, ReadError};
use berth_registry::{ByteRange, ChunkRange, MountOutcome, Registry, RegistryError, Resource, UploadStatus};
use berth_spec::manifest::MAX_MANIFEST_BYTES;
use berth_spec::{Digest, NameError, Reference, RepositoryName, Tag, media};
use berth_storage::ByteStream;
use futures::{StreamExt, TryStreamExt};

use crate::AppState;
use crate::endpoint::{Access, Endpoint, Operation, UploadKind};
use crate::error::{OciError, error_body};
use crate::query::QueryParams;
use berth_auth::AuthError;
use berth_iam::{ConnectionInfo, CredentialKind, Identity, RequestContext, Served, actions};

type HandlerResult = Result<Response, OciError>;

const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
/// Each tag a `PUT .../manifests/<digest>?tag=` applied (distribution spec, tag parameters).
const OCI_TAG: HeaderName = HeaderName::from_static("oci-tag");
const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

/// The distribution API's version header, which every `/v2/` answer carries.
pub fn set_api_version(headers: &mut axum::http::HeaderMap) {
    headers.insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
}

pub(crate) async fn handle(state: AppState, request: Request) -> Response {
    let method = request.method().clone();
    // Routed on the decoded path, as distribution does: `sha256%3A…` is `sha256:…`.
    let path = percent_encoding::percent_decode_str(request.uri().path()).decode_utf8();
    let mut response = match path.as_deref().map(Endpoint::parse) {
        Ok(Some(endpoint)) => route(state, endpoint, request).await,
        Ok(None) => plain_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "no such registry endpoint"),
        Err(_) => plain_error(StatusCode::BAD_REQUEST, "NAME_INVALID", "the path is not UTF-8 once percent-decoded"),
    };
    set_api_version(response.headers_mut());
    if method == Method::HEAD {
        // Content-Length stays the size of what GET would send (RFC 9110): as the handler set
        // it, else the body's own size, which would read 0 once the body is gone.
        if !response.headers().contains_key(header::CONTENT_LENGTH)
            && let Some(len) = axum::body::HttpBody::size_hint(response.body()).exact()
        {
            response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        *response.body_mut() = Body::empty();
    }
    response
}

fn plain_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], error_body(code, message)).into_response()
}

/// Authenticates, checks the operation's declared access, then dispatches. The response carries
/// the request's context (with the caller's identity) and what was served, for the edge's access
/// log, metrics and audit trail.
async fn route(state: AppState, endpoint: Endpoint, mut request: Request) -> Response {
    let mut ctx = request_context(&mut request);
    let allowed_methods = endpoint.allowed_methods();
    let method = request.method().clone();
    let operation = Operation::new(endpoint, &method);
    let mut served = match &operation {
        Some(operation) => operation.served(),
        None => Served::new("Unsupported", "Unsupported", false),
    };
    let outcome = authorize_and_dispatch(&state, &mut ctx, &mut served, operation, request).await;
    let mut response = outcome.unwrap_or_else(|err| {
        let code = err.status_and_code().1;
        if matches!(err, OciError::Registry(RegistryError::AccessDenied { .. } | RegistryError::Denied(_))) {
            served.auth_failure = Some("access_denied");
        }
        let message =
            if err.status_and_code().0.is_server_error() { "internal error".to_owned() } else { err.to_string() };
        served.error = Some((code, message));
        err.into_response_with_id(&ctx.request_id)
    });
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        // A method the endpoint has but refused here (a blob a manifest needs) is not allowed now.
        let allow: Vec<&str> = allowed_methods.split(", ").filter(|m| *m != method.as_str()).collect();
        if let Ok(allow) = HeaderValue::from_str(&allow.join(", ")) {
            response.headers_mut().insert(header::ALLOW, allow);
        }
    }
    response.extensions_mut().insert(ctx);
    response.extensions_mut().insert(served);
    response
}

/// The context the server's edge made for this request (request id, client address, transport),
/// or one from the connection alone when the router runs without that edge.
fn request_context(request: &mut Request) -> RequestContext {
    if let Some(ctx) = request.extensions_mut().remove::<RequestContext>() {
        return ctx;
    }
    let connection = request.extensions().get::<ConnectionInfo>();
    RequestContext {
        request_id: uuid::Uuid::new_v4().to_string(),
        received_at: std::time::SystemTime::now(),
        source_ip: connection.map(|c| c.peer.ip()),
        secure_transport: connection.is_some_and(|c| c.tls),
        user_agent: request.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
        identity: Identity::Anonymous,
    }
}

async fn authorize_and_dispatch(
    state: &AppState,
    ctx: &mut RequestContext,
    served: &mut Served,
    operation: Option<Operation>,
    request: Request,
) -> HandlerResult {
    ctx.identity = match state.auth.authenticate(request.headers()).await {
        Ok(identity) => identity,
        Err(refused) => {
            served.auth_failure = refused.failure_reason();
            served.error = Some(("UNAUTHORIZED", refused.to_string()));
            return Ok(refused.into_response());
        }
    };
    let mode = state.auth.mode();
    let anonymous = ctx.identity == Identity::Anonymous;
    // A caller who could log in but did not is asked to, rather than refused: not an
    // authentication failure (docker's first ping is one), but the audit record of a refused
    // push still says why it did not happen.
    let mut log_in = || {
        served.error = Some(("UNAUTHORIZED", AuthError::CredentialsRequired.to_string()));
        Ok(AuthError::CredentialsRequired.into_response())
    };
    if anonymous && !mode.admits_anonymous() {
        return log_in();
    }
    // A key id and secret stand in for the token GetAuthorizationToken would have given, so a
    // policy denying that action (or allowing it only from some addresses) gates them too.
    if let Identity::User { via: CredentialKind::AccessKey, .. } = ctx.identity {
        state.registry.authorizer().authorize(ctx, &[actions::GET_AUTHORIZATION_TOKEN], Resource::Registry).await?;
    }
    let Some(operation) = operation else {
        if anonymous && mode.reads_credentials() {
            return log_in();
        }
        let method = request.method();
        return Err(RegistryError::Unsupported(format!("method {method} is not supported on this endpoint")).into());
    };
    let query = query_params(&request);
    let start = if query.contains("digest") {
        UploadKind::Monolithic
    } else if query.contains("mount") {
        UploadKind::Mount
    } else {
        UploadKind::Session
    };
    let allowed = match operation.access(start, !has_empty_body(request.headers())) {
        Access::LoggedIn if anonymous && mode.reads_credentials() => return log_in(),
        Access::LoggedIn => Ok(()),
        Access::Actions(actions, resource) => state.registry.authorizer().authorize(ctx, actions, resource).await,
    };
    match allowed {
        Ok(()) => dispatch(state, operation, ctx, query, request).await,
        // Unless a policy denied it explicitly, credentials might get the caller in.
        Err(RegistryError::AccessDenied { explicit: false, .. }) if anonymous && mode.reads_credentials() => log_in(),
        Err(denied) => Err(denied.into()),
    }
}

fn has_empty_body(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() == b"0")
}

/// Runs an operation whose access was checked.
async fn dispatch(
    state: &AppState,
    operation: Operation,
    ctx: &RequestContext,
    query: QueryParams,
    request: Request,
) -> HandlerResult {
    let registry = &*state.registry;
    match operation {
        Operation::Ping => Ok(json_response(StatusCode::OK, "{}".into())),
        Operation::Catalog => catalog(registry, ctx, &query).await,
        Operation::ListTags { name } => tags(registry, &name, &query).await,
        Operation::GetManifest { name, reference, body } => {
            get_manifest(registry, ctx, &name, &reference, body, request.headers()).await
        }
        Operation::PutManifest { name, reference } => {
            put_manifest(registry, ctx, &name, &reference, &query, request).await
        }
        Operation::DeleteManifest { name, reference } => {
            let name = Registry::parse_name(&name)?;
            let reference = existing_reference(registry, &name, &reference).await?;
            registry.delete_manifest(ctx, &name, &reference).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        Operation::HeadBlob { name, digest } => head_blob(registry, ctx, &name, &digest, request.headers()).await,
        Operation::GetBlob { name, digest } => get_blob(registry, ctx, &name, &digest, request.headers()).await,
        Operation::DeleteBlob { name, digest } => {
            registry.delete_blob(ctx, &Registry::parse_name(&name)?, &parse_digest(&digest)?).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        Operation::StartUpload { name } => start_upload(registry, ctx, &name, &query, request).await,
        Operation::UploadStatus { name, id } => {
            let name = Registry::parse_name(&name)?;
            let status = registry.upload_progress(&name, &id).await?;
            Ok(upload_response(StatusCode::NO_CONTENT, &name, &status))
        }
        Operation::PatchUpload { name, id } => patch_upload(registry, &name, &id, request).await,
        Operation::FinishUpload { name, id } => finish_upload(registry, &name, &id, &query, request).await,
        Operation::CancelUpload { name, id } => {
            registry.cancel_upload(&Registry::parse_name(&name)?, &id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Operation::Referrers { name, digest } => referrers(registry, &name, &digest, &query).await,
    }
}

fn query_params(request: &Request) -> QueryParams {
    QueryParams::parse(request.uri().query())
}

fn parse_digest(s: &str) -> Result<Digest, OciError> {
    Ok(s.parse::<Digest>().map_err(RegistryError::from)?)
}

/// The reference of a manifest PUT: a malformed tag is an invalid manifest push.
fn parse_reference(s: &str) -> Result<Reference, OciError> {
    s.parse::<Reference>().map_err(|e| match e {
        NameError::Tag(t) => RegistryError::ManifestInvalid(format!("invalid tag {t:?}")).into(),
        other => RegistryError::from(other).into(),
    })
}

/// The reference of a manifest GET, HEAD or DELETE. Nothing can be stored under a string that
/// is not a tag, so it names an unknown manifest (404, as the distribution spec's conformance
/// suite expects for `.INVALID_MANIFEST_NAME`) once the repository is known to exist; a
/// malformed digest stays a `DIGEST_INVALID`, which tells the client its digest is broken.
async fn existing_reference(registry: &Registry, repo: &RepositoryName, s: &str) -> Result<Reference, OciError> {
    match s.parse::<Reference>() {
        Ok(reference) => Ok(reference),
        Err(NameError::Tag(_)) => {
            registry.repository(repo).await?;
            Err(RegistryError::ManifestUnknown(s.to_owned()).into())
        }
        Err(other) => Err(RegistryError::from(other).into()),
    }
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn request_body(request: Request) -> ByteStream {
    TryStreamExt::map_err(request.into_body().into_data_stream(), io::Error::other).boxed()
}

/// `n` and `last` for paginated lists; `Link` points at the next page.
fn pagination(query: &QueryParams) -> Result<(Option<usize>, Option<String>), OciError> {
    let n = match query.single("n")? {
        None => None,
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            RegistryError::PaginationInvalid(format!("pagination parameter n={v:?} is not a non-negative number"))
        })?),
    };
    Ok((n, query.single("last")?.map(str::to_owned)))
}

fn next_link(path: &str, n: usize, last: Option<&String>) -> HeaderValue {
    header_value(&format!("<{path}?n={n}&last={}>; rel=\"next\"", last.map(String::as_str).unwrap_or("")))
}

async fn catalog(registry: &Registry, ctx: &RequestContext, query: &QueryParams) -> HandlerResult {
    let (n, last) = pagination(query)?;
    let (repos, more) = if n == Some(0) { (vec![], false) } else { registry.catalog(ctx, n, last.as_deref()).await? };
    let mut response = json_response(StatusCode::OK, serde_json::json!({ "repositories": repos }).to_string());
    if let (true, Some(n)) = (more, n) {
        response.headers_mut().insert(header::LINK, next_link("/v2/_catalog", n, repos.last()));
    }
    Ok(response)
}

async fn tags(registry: &Registry, name: &str, query: &QueryParams) -> HandlerResult {
    let repo = Registry::parse_name(name)?;
    let (n, last) = pagination(query)?;
    let (tags, more) = if n == Some(0) {
        registry.repository(&repo).await?;
        (vec![], false)
    } else {
        registry.list_tags(&repo, n, last.as_deref()).await?
    };
    let mut response = json_response(StatusCode::OK, serde_json::json!({ "name": name, "tags": tags }).to_string());
    if let (true, Some(n)) = (more, n) {
        response.headers_mut().insert(header::LINK, next_link(&format!("/v2/{name}/tags/list"), n, tags.last()));
    }
    Ok(response)
}

async fn get_manifest(
    registry: &Registry,
    ctx: &RequestContext,
    name: &str,
    reference: &str,
    is_get: bool,
    request: &HeaderMap,
) -> HandlerResult {
    let repo = Registry::parse_name(name)?;
    let reference = existing_reference(registry, &repo, reference).await?;
    let manifest = registry.pull_manifest(ctx, &repo, &reference, is_get).await?;
    // By tag, a client that does not accept the stored format gets it converted, as from ECR;
    // the digest then names the bytes sent.
    let converted = match reference {
        Reference::Tag(_) => Registry::converted_for(&manifest, &accepted(request)).await,
        Reference::Digest(_) => None,
    };
    let (media_type, content, digest) = match converted {
        Some((media_type, content)) => {
            let digest = Digest::of(manifest.digest.algorithm(), &content);
            (media_type, content, digest)
        }
        None => (manifest.media_type.as_str(), manifest.content.clone(), manifest.digest.clone()),
    };
    if none_match(request, &digest) {
        return Ok(not_modified(&digest, content.len() as u64));
    }
    let headers = [
        (header::CONTENT_TYPE, header_value(media_type)),
        (CONTENT_DIGEST, header_value(digest.as_str())),
        (header::ETAG, etag(&digest)),
        (header::CONTENT_LENGTH, HeaderValue::from(content.len())),
    ];
    Ok((StatusCode::OK, headers, content).into_response())
}

/// The media types the `Accept` headers name, without parameters; those refused with `q=0` left
/// out.
fn accepted(request: &HeaderMap) -> Vec<&str> {
    let refused = |params: &str| {
        params.split(';').filter_map(|p| p.split_once('=')).any(|(name, value)| {
            name.trim().eq_ignore_ascii_case("q") && value.trim().parse::<f32>().is_ok_and(|q| q == 0.0)
        })
    };
    request
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|range| match range.split_once(';') {
            Some((media_type, params)) => (!refused(params)).then_some(media_type.trim()),
            None => Some(range.trim()),
        })
        .filter(|media_type| !media_type.is_empty())
        .collect()
}

/// Manifests and blobs are named by their digest, so it is their strong entity tag, as in
/// distribution.
fn etag(digest: &Digest) -> HeaderValue {
    header_value(&format!("\"{digest}\""))
}

/// Whether `If-None-Match` names `digest` (or is `*`): the client has the content already and
/// gets a 304 (RFC 9110 13.1.2, weak comparison).
fn none_match(request: &HeaderMap, digest: &Digest) -> bool {
    request.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |tag| {
            let tag = tag.trim();
            tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).trim_matches('"') == digest.as_str()
        },
    )
}

/// A 304 carries the validators a 200 would, and no body; a Content-Length, where one is sent,
/// must be the 200's (RFC 9110 8.6).
fn not_modified(digest: &Digest, length: u64) -> Response {
    let headers = [
        (CONTENT_DIGEST, header_value(digest.as_str())),
        (header::ETAG, etag(digest)),
        (header::CONTENT_LENGTH, HeaderValue::from(length)),
    ];
    (StatusCode::NOT_MODIFIED, headers).into_response()
}

async fn put_manifest(
    registry: &Registry,
    ctx: &RequestContext,
    name: &str,
    reference: &str,
    query: &QueryParams,
    request: Request,
) -> HandlerResult {
    let repo = Registry::parse_name(name)?;
    let reference = parse_reference(reference)?;
    let extra_tags = query
        .all("tag")
        .map(|t| t.parse::<Tag>().map_err(|_| RegistryError::ManifestInvalid(format!("invalid tag {t:?} in ?tag="))))
        .collect::<Result<Vec<_>, _>>()?;
    let content_type = manifest_content_type(request.headers())?;
    // A client waiting for `100 Continue` before a body it says is too large is refused at once.
    // One already sending it is read up to the limit first: answering mid-upload would close
    // the connection under it, and it would see a reset instead of the 413.
    let headers = request.headers();
    let waits = headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if waits && declared.is_some_and(|length| length > MAX_MANIFEST_BYTES as u64) {
        return Err(RegistryError::ManifestTooLarge { limit: MAX_MANIFEST_BYTES }.into());
    }
    // Held whole until it parses: every byte counts against the budget of such bodies (100
    // HTTP/2 streams of 4 MiB each would otherwise hold 400 MiB), given back once it is stored.
    let budget = Some((registry.manifest_bodies(), ctx.source_ip));
    let read = body_budget::read_whole(request.into_body().into_data_stream(), MAX_MANIFEST_BYTES, 0, budget).await;
    let (content, _held) = read.map_err(|e| match e {
        ReadError::TooLarge => RegistryError::ManifestTooLarge { limit: MAX_MANIFEST_BYTES },
        ReadError::Exhausted => {
            RegistryError::Busy("too many manifest bytes are arriving at once; retry the push shortly".into())
        }
        ReadError::Body(e) => RegistryError::ManifestInvalid(format!("reading the manifest failed: {e}")),
    })?;
    let outcome =
        registry.put_manifest_with_tags(ctx, &repo, &reference, &extra_tags, content_type.as_deref(), &content).await?;
    let mut response = StatusCode::CREATED.into_response();
    let headers = response.headers_mut();
    // The distribution spec's answer to `?tag=`: one `OCI-Tag` line per tag applied.
    if !extra_tags.is_empty() {
        for tag in &outcome.tags {
            headers.append(OCI_TAG, header_value(tag.as_str()));
        }
    }
    headers.insert(header::LOCATION, header_value(&format!("/v2/{name}/manifests/{}", outcome.digest)));
    headers.insert(CONTENT_DIGEST, header_value(outcome.digest.as_str()));
    if let Some(subject) = outcome.subject {
        headers.insert(OCI_SUBJECT, header_value(subject.as_str()));
    }
    Ok(response)
}

async fn head_blob(
    registry: &Registry,
    ctx: &RequestContext,
    name: &str,
    digest: &str,
    headers: &HeaderMap,
) -> HandlerResult {
    let repo = Registry::parse_name(name)?;
    let digest = parse_digest(digest)?;
    blob_without_body(registry, ctx, &repo, &digest, headers).await
}

/// A blob's answer without its bytes: HEAD's, and GET's when `If-None-Match` names it (304).
async fn blob_without_body(
    registry: &Registry,
    ctx: &RequestContext,
    repo: &RepositoryName,
    digest: &Digest,
    headers: &HeaderMap,
) -> HandlerResult {
    let size = registry.pull_blob_size(ctx, repo, digest).await?;
    if none_match(headers, digest) {
        return Ok(not_modified(digest, size));
    }
    Ok(blob_response(StatusCode::OK, digest, size, Body::empty()))
}

fn blob_response(status: StatusCode, digest: &Digest, length: u64, body: Body) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
        (CONTENT_DIGEST, header_value(digest.as_str())),
        (header::CONTENT_LENGTH, HeaderValue::from(length)),
        (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
        (header::ETAG, etag(digest)),
    ];
    (status, headers, body).into_response()
}

async fn get_blob(
    registry: &Registry,
    ctx: &RequestContext,
    name: &str,
    digest: &str,
    headers: &HeaderMap,
) -> HandlerResult {
    let repo = Registry::parse_name(name)?;
    let digest = parse_digest(digest)?;
    if none_match(headers, &digest) {
        return blob_without_body(registry, ctx, &repo, &digest, headers).await;
    }
    // An unparsable Range is ignored, as RFC 9110 says; a parsable but unsatisfiable one is a 416.
    // So is one under an `If-Range` that is not this blob's entity tag (a date never matches:
    // blobs carry no Last-Modified): the client's partial copy is of something else.
    let range = headers
        .get(header::RANGE)
        .filter(|_| headers.get(header::IF_RANGE).is_none_or(|tag| tag.as_bytes() == etag(&digest).as_bytes()))
        .and_then(|v| v.to_str().ok())
        .and_then(ByteRange::parse);
    let blob = registry.pull_blob(ctx, &repo, &digest, range).await?;
    let body = Body::from_stream(blob.stream);
    Ok(match blob.range {
        None => blob_response(StatusCode::OK, &digest, blob.size, body),
        Some(r) => {
            let content_range = header_value(&format!("bytes {}-{}/{}", r.start, r.end - 1, blob.size));
            let mut response = blob_response(StatusCode::PARTIAL_CONTENT, &digest, r.end - r.start, body);
            response.headers_mut().insert(header::CONTENT_RANGE, content_range);
            response
        }
    })
}

fn upload_response(status: StatusCode, name: &RepositoryName, upload: &UploadStatus) -> Response {
    let mut response = status.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, header_value(&format!("/v2/{name}/blobs/uploads/{}", upload.id)));
    headers.insert(header::RANGE, header_value(&format!("0-{}", upload.offset.saturating_sub(1))));
    headers.insert(UPLOAD_UUID, header_value(&upload.id));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    response
}

fn blob_created(name: &RepositoryName, digest: &Digest) -> Response {
    let mut response = StatusCode::CREATED.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, header_value(&format!("/v2/{name}/blobs/{digest}")));
    headers.insert(CONTENT_DIGEST, header_value(digest.as_str()));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    response
}

async fn start_upload(
    registry: &Registry,
    ctx: &RequestContext,
    name: &str,
    query: &QueryParams,
    request: Request,
) -> HandlerResult {
    let repo = Registry::parse_name(name)?;
    if let Some(mount) = query.single("mount")? {
        let digest = parse_digest(mount)?;
        let from = match query.single("from")?.map(|f| f.parse::<RepositoryName>()) {
            // A malformed `from` cannot hold the blob: a plain upload, as for a missing blob.
            Some(Err(_)) => {
                let status = registry.start_upload(ctx, &repo).await?;
                return Ok(upload_response(StatusCode::ACCEPTED, &repo, &status));
            }
            Some(Ok(from)) => Some(from),
            None => None,
        };
        // Anyone allowed to push may pull too; the source repository's policy still applies.
        return Ok(match registry.mount_blob(ctx, &repo, &digest, from.as_ref()).await? {
            MountOutcome::Mounted { digest } => blob_created(&repo, &digest),
            MountOutcome::Upload(status) => upload_response(StatusCode::ACCEPTED, &repo, &status),
        });
    }
    if let Some(digest) = query.single("digest")? {
        let digest = parse_digest(digest)?;
        registry.upload_monolithic(ctx, &repo, &digest, request_body(request)).await?;
        return Ok(blob_created(&repo, &digest));
    }
    let status = registry.start_upload(ctx, &repo).await?;
    Ok(upload_response(StatusCode::ACCEPTED, &repo, &status))
}

/// A chunk's `Content-Range` (exactly `<start>-<end>`, inclusive: see [`ChunkRange::parse`]),
/// which must agree with `Content-Length`. `Err` says why it is malformed or inconsistent.
fn chunk_range(headers: &HeaderMap) -> Result<Option<ChunkRange>, String> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else { return Ok(None) };
    let text = value.to_str().map_err(|_| "Content-Range is not a visible ASCII header value".to_owned())?;
    let range = ChunkRange::parse(text).map_err(|e| e.to_string())?;
    let content_length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match content_length {
        Some(length) if length != range.len => {
            Err(format!("Content-Range {text:?} announces {} bytes but Content-Length is {length}", range.len))
        }
        _ => Ok(Some(range)),
    }
}

/// The 416 answer to a chunk that does not continue the upload (or whose `Content-Range` is
/// unusable: `reason`), with where the upload stands so the client can resume; the session is
/// left as it was.
async fn range_not_satisfiable(
    registry: &Registry,
    repo: &RepositoryName,
    id: &str,
    reason: Option<String>,
) -> HandlerResult {
    let status = registry.upload_progress(repo, id).await?;
    let error = match reason {
        Some(reason) => OciError::ChunkRangeInvalid { reason, offset: status.offset },
        None => RegistryError::RangeInvalid { size: status.offset }.into(),
    };
    let mut response = error.into_response();
    let resume = upload_response(StatusCode::RANGE_NOT_SATISFIABLE, repo, &status);
    for name in [header::LOCATION, header::RANGE, UPLOAD_UUID] {
        if let Some(v) = resume.headers().get(&name) {
            response.headers_mut().insert(name, v.clone());
        }
    }
    Ok(response)
}

async fn patch_upload(registry: &Registry, name: &str, id: &str, request: Request) -> HandlerResult {
    let repo = Registry::parse_name(name)?;
    let range = match chunk_range(request.headers()) {
        Ok(range) => range,
        Err(reason) => return range_not_satisfiable(registry, &repo, id, Some(reason)).await,
    };
    match registry.append_upload(&repo, id, range, request_body(request)).await {
        Ok(status) => Ok(upload_response(StatusCode::ACCEPTED, &repo, &status)),
        Err(RegistryError::RangeInvalid { .. }) => range_not_satisfiable(registry, &repo, id, None).await,
        Err(e) => Err(e.into()),
    }
}

async fn finish_upload(
    registry: &Registry,
    name: &str,
    id: &str,
    query: &QueryParams,
    request: Request,
) -> HandlerResult {
    let repo = Registry::parse_name(name)?;
    let digest = query.single("digest")?.ok_or_else(|| {
        RegistryError::DigestInvalid("the digest query parameter is required to finish an upload".into())
    })?;
    let digest = parse_digest(digest)?;
    let range = match chunk_range(request.headers()) {
        Ok(range) => range,
        Err(reason) => return range_not_satisfiable(registry, &repo, id, Some(reason)).await,
    };
    let chunk = (!has_empty_body(request.headers())).then(|| request_body(request));
    match registry.finish_upload(&repo, id, &digest, range, chunk).await {
        Ok(digest) => Ok(blob_created(&repo, &digest)),
        Err(RegistryError::RangeInvalid { .. }) => range_not_satisfiable(registry, &repo, id, None).await,
        Err(e) => Err(e.into()),
    }
}

/// A manifest PUT's `Content-Type`, if it sent one: refused when there are several or it is not
/// text (which one would name the manifest's type?), rather than taken as absent.
fn manifest_content_type(headers: &HeaderMap) -> Result<Option<String>, OciError> {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return match headers.contains_key(header::CONTENT_TYPE) {
            true => Err(RegistryError::ManifestInvalid("more than one Content-Type header".into()).into()),
            false => Ok(None),
        };
    };
    let text = value
        .to_str()
        .map_err(|_| RegistryError::ManifestInvalid("the Content-Type header is not ASCII text".into()))?;
    Ok(Some(text.to_owned()))
}

async fn referrers(registry: &Registry, name: &str, digest: &str, query: &QueryParams) -> HandlerResult {
    let repo = Registry::parse_name(name)?;
    let subject = parse_digest(digest)?;
    let filter = query.single("artifactType")?;
    // A page past the first: `last` is the digest the page before ended with (the `Link` below).
    let after = query.single("last")?.map(parse_digest).transpose()?;
    let page = registry.referrers(&repo, &subject, filter.as_slice(), after.as_ref(), usize::MAX).await?;
    let next = page.more.then(|| page.referrers.last().map(|r| r.digest.clone())).flatten();
    let manifests: Vec<serde_json::Value> = page
        .referrers
        .into_iter()
        .map(|r| {
            let mut d = serde_json::json!({ "mediaType": r.media_type, "digest": r.digest, "size": r.size });
            if let Some(t) = r.artifact_type {
                d["artifactType"] = t.into();
            }
            if let Some(a) = r.annotations {
                d["annotations"] = serde_json::to_value(a).expect("annotations serialize");
            }
            d
        })
        .collect();
    let body = serde_json::json!({ "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": manifests });
    let mut response = (StatusCode::OK, [(header::CONTENT_TYPE, media::OCI_INDEX)], body.to_string()).into_response();
    if filter.is_some() {
        response.headers_mut().insert(OCI_FILTERS_APPLIED, HeaderValue::from_static("artifactType"));
    }
    // The referrers of one page carry at most `REFERRERS_PAGE_BYTES` of annotations; the rest
    // follow, as the distribution spec lets a registry paginate them.
    if let Some(last) = next {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("last", last.as_str());
        if let Some(filter) = filter {
            query.append_pair("artifactType", filter);
        }
        let link = format!("</v2/{repo}/referrers/{subject}?{}>; rel=\"next\"", query.finish());
        response.headers_mut().insert(header::LINK, header_value(&link));
    }
    Ok(response)
}
