//! ECR errors as the wire sees them: an HTTP status plus `{"__type": ..., "message": ...}`.
//!
//! botocore and the other SDKs pick the exception class from `__type`, so every situation the
//! model names must use the model's shape name; the authentication failures use the names AWS's
//! common JSON front end uses (they are not in the ECR model).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use berth_spec::Digest;

use crate::shapes::ImageIdentifier;

pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// botocore reads it as `ResponseMetadata.RequestId` (header names are case-insensitive).
pub const REQUEST_ID_HEADER: &str = "x-amzn-requestid";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EcrError {
    // ---- modeled exceptions Berth raises
    #[error("{0}")]
    RepositoryNotFound(String),
    #[error("{0}")]
    RepositoryAlreadyExists(String),
    #[error("{0}")]
    RepositoryNotEmpty(String),
    #[error("{0}")]
    ImageNotFound(String),
    #[error("{0}")]
    ImageAlreadyExists(String),
    #[error("{0}")]
    ImageTagAlreadyExists(String),
    #[error("{0}")]
    ImageDigestDoesNotMatch(String),
    #[error("{0}")]
    LayersNotFound(String),
    #[error("{0}")]
    ReferencedImagesNotFound(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    LayerPartTooSmall(String),
    /// The only Berth error with extra members: clients resume from `lastValidByteReceived`.
    #[error("{message}")]
    InvalidLayerPart {
        message: String,
        registry_id: String,
        repository_name: String,
        upload_id: String,
        last_valid_byte_received: i64,
    },
    #[error("{0}")]
    UploadNotFound(String),
    #[error("{0}")]
    InvalidLayer(String),
    #[error("{0}")]
    LayerInaccessible(String),
    #[error("{0}")]
    EmptyUpload(String),
    #[error("{0}")]
    LayerAlreadyExists(String),
    #[error("{0}")]
    RepositoryPolicyNotFound(String),
    #[error("{0}")]
    RegistryPolicyNotFound(String),
    #[error("{0}")]
    LifecyclePolicyNotFound(String),
    #[error("{0}")]
    LifecyclePolicyPreviewNotFound(String),
    #[error("{0}")]
    TooManyTags(String),
    #[error("{0}")]
    InvalidTagParameter(String),
    #[error("{0}")]
    LimitExceeded(String),
    /// The model's only server fault; SDKs retry it, so never use it for a client mistake. Its
    /// detail (a store's or backend's error) is logged, not sent.
    #[error("{0}")]
    Server(String),
    /// A `ServerException` whose message the caller is told: the registry's storage is full,
    /// which an operator must fix and the client may retry after, as `/v2/`'s 507 says.
    #[error("{0}")]
    StorageFull(String),
    /// AWS's common 503 (SDKs retry it): what the caller's credentials are cannot be told now
    /// (the credential store is down), which is not the caller's fault.
    #[error("{0}")]
    ServiceUnavailable(String),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    UnsupportedImageType(String),
    #[error("{0}")]
    ScanNotFound(String),
    #[error("{0}")]
    SigningConfigurationNotFound(String),
    #[error("{0}")]
    PullThroughCacheRuleAlreadyExists(String),
    #[error("{0}")]
    PullThroughCacheRuleNotFound(String),
    #[error("{0}")]
    SecretNotFound(String),
    #[error("{0}")]
    UnableToAccessSecret(String),
    #[error("{0}")]
    UnableToDecryptSecretValue(String),
    #[error("{0}")]
    UnsupportedUpstreamRegistry(String),
    #[error("{0}")]
    TemplateAlreadyExists(String),
    #[error("{0}")]
    TemplateNotFound(String),
    #[error("{0}")]
    ExclusionAlreadyExists(String),
    #[error("{0}")]
    ExclusionNotFound(String),
    #[error("{0}")]
    ImageStorageClassUpdateNotSupported(String),
    /// KMS encryption asked for: Berth has no KMS, and says so rather than record a promise.
    #[error("{0}")]
    Kms(String),
    /// An explicit deny in a repository policy (AWS's common front-end error, HTTP 400).
    #[error("{0}")]
    AccessDenied(String),

    // ---- authentication (AWS's common front-end errors)
    #[error("{0}")]
    MissingAuthenticationToken(String),
    #[error("{0}")]
    UnrecognizedClient(String),
    #[error("{0}")]
    InvalidSignature(String),
    #[error("{0}")]
    IncompleteSignature(String),

    // ---- protocol
    #[error("{0}")]
    UnknownOperation(String),
    #[error("{0}")]
    Serialization(String),
    #[error("{0}")]
    RequestTooLarge(String),
    /// Too much is in flight (AWS's common front-end error; SDKs retry it with backoff).
    #[error("{0}")]
    Throttling(String),
}

impl EcrError {
    pub fn status(&self) -> StatusCode {
        match self {
            EcrError::Server(_) | EcrError::StorageFull(_) => StatusCode::INTERNAL_SERVER_ERROR,
            EcrError::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            // 413 is outside every SDK's retry list, unlike 500/502/503/504.
            EcrError::RequestTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The `__type` SDKs map to an exception class.
    pub fn wire_type(&self) -> &'static str {
        match self {
            EcrError::RepositoryNotFound(_) => "RepositoryNotFoundException",
            EcrError::RepositoryAlreadyExists(_) => "RepositoryAlreadyExistsException",
            EcrError::RepositoryNotEmpty(_) => "RepositoryNotEmptyException",
            EcrError::ImageNotFound(_) => "ImageNotFoundException",
            EcrError::ImageAlreadyExists(_) => "ImageAlreadyExistsException",
            EcrError::ImageTagAlreadyExists(_) => "ImageTagAlreadyExistsException",
            EcrError::ImageDigestDoesNotMatch(_) => "ImageDigestDoesNotMatchException",
            EcrError::LayersNotFound(_) => "LayersNotFoundException",
            EcrError::ReferencedImagesNotFound(_) => "ReferencedImagesNotFoundException",
            EcrError::InvalidParameter(_) => "InvalidParameterException",
            EcrError::AccessDenied(_) => "AccessDeniedException",
            EcrError::PullThroughCacheRuleAlreadyExists(_) => "PullThroughCacheRuleAlreadyExistsException",
            EcrError::PullThroughCacheRuleNotFound(_) => "PullThroughCacheRuleNotFoundException",
            EcrError::SecretNotFound(_) => "SecretNotFoundException",
            EcrError::UnableToAccessSecret(_) => "UnableToAccessSecretException",
            EcrError::UnableToDecryptSecretValue(_) => "UnableToDecryptSecretValueException",
            EcrError::UnsupportedUpstreamRegistry(_) => "UnsupportedUpstreamRegistryException",
            EcrError::TemplateAlreadyExists(_) => "TemplateAlreadyExistsException",
            EcrError::TemplateNotFound(_) => "TemplateNotFoundException",
            EcrError::ExclusionAlreadyExists(_) => "ExclusionAlreadyExistsException",
            EcrError::ExclusionNotFound(_) => "ExclusionNotFoundException",
            EcrError::ImageStorageClassUpdateNotSupported(_) => "ImageStorageClassUpdateNotSupportedException",
            EcrError::Kms(_) => "KmsException",
            EcrError::LayerPartTooSmall(_) => "LayerPartTooSmallException",
            EcrError::InvalidLayerPart { .. } => "InvalidLayerPartException",
            EcrError::UploadNotFound(_) => "UploadNotFoundException",
            EcrError::InvalidLayer(_) => "InvalidLayerException",
            EcrError::LayerInaccessible(_) => "LayerInaccessibleException",
            EcrError::EmptyUpload(_) => "EmptyUploadException",
            EcrError::LayerAlreadyExists(_) => "LayerAlreadyExistsException",
            EcrError::RepositoryPolicyNotFound(_) => "RepositoryPolicyNotFoundException",
            EcrError::RegistryPolicyNotFound(_) => "RegistryPolicyNotFoundException",
            EcrError::LifecyclePolicyNotFound(_) => "LifecyclePolicyNotFoundException",
            EcrError::LifecyclePolicyPreviewNotFound(_) => "LifecyclePolicyPreviewNotFoundException",
            EcrError::TooManyTags(_) => "TooManyTagsException",
            EcrError::InvalidTagParameter(_) => "InvalidTagParameterException",
            EcrError::LimitExceeded(_) => "LimitExceededException",
            EcrError::Server(_) | EcrError::StorageFull(_) => "ServerException",
            EcrError::ServiceUnavailable(_) => "ServiceUnavailable",
            EcrError::Validation(_) => "ValidationException",
            EcrError::UnsupportedImageType(_) => "UnsupportedImageTypeException",
            EcrError::ScanNotFound(_) => "ScanNotFoundException",
            EcrError::SigningConfigurationNotFound(_) => "SigningConfigurationNotFoundException",
            EcrError::MissingAuthenticationToken(_) => "MissingAuthenticationTokenException",
            EcrError::UnrecognizedClient(_) => "UnrecognizedClientException",
            EcrError::InvalidSignature(_) => "InvalidSignatureException",
            EcrError::IncompleteSignature(_) => "IncompleteSignatureException",
            EcrError::UnknownOperation(_) => "UnknownOperationException",
            EcrError::Serialization(_) => "SerializationException",
            EcrError::RequestTooLarge(_) => "RequestEntityTooLargeException",
            EcrError::Throttling(_) => "ThrottlingException",
        }
    }

    /// The JSON error document; only `InvalidLayerPartException` carries members besides
    /// `message`.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("__type".into(), self.wire_type().into());
        body.insert("message".into(), self.to_string().into());
        if let EcrError::InvalidLayerPart {
            registry_id, repository_name, upload_id, last_valid_byte_received, ..
        } = self
        {
            body.insert("registryId".into(), registry_id.as_str().into());
            body.insert("repositoryName".into(), repository_name.as_str().into());
            body.insert("uploadId".into(), upload_id.as_str().into());
            body.insert("lastValidByteReceived".into(), (*last_valid_byte_received).into());
        }
        Value::Object(body)
    }

    /// The response with a given request id, so the router can log and return the same id.
    pub fn into_response_with_id(self, request_id: &str) -> Response {
        let body = self.body().to_string();
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Ok(id) = HeaderValue::from_str(request_id) {
            headers.insert(REQUEST_ID_HEADER, id);
        }
        response
    }

    // ---- messages in AWS's wording, for the errors whose text clients and scripts show

    pub fn repository_not_found(name: &str, registry_id: &str) -> Self {
        EcrError::RepositoryNotFound(format!(
            "The repository with name '{name}' does not exist in the registry with id '{registry_id}'"
        ))
    }

    pub fn repository_already_exists(name: &str, registry_id: &str) -> Self {
        EcrError::RepositoryAlreadyExists(format!(
            "The repository with name '{name}' already exists in the registry with id '{registry_id}'"
        ))
    }

    pub fn repository_not_empty(name: &str, registry_id: &str) -> Self {
        EcrError::RepositoryNotEmpty(format!(
            "The repository with name '{name}' in registry with id '{registry_id}' cannot be deleted because it still contains images"
        ))
    }

    pub fn image_not_found(image_id: &ImageIdentifier, name: &str, registry_id: &str) -> Self {
        let digest = image_id.image_digest.as_deref().unwrap_or("null");
        let tag = image_id.image_tag.as_deref().unwrap_or("null");
        EcrError::ImageNotFound(format!(
            "The image with imageId {{imageDigest:'{digest}', imageTag:'{tag}'}} does not exist within the repository with name '{name}' in the registry with id '{registry_id}'"
        ))
    }

    pub fn image_already_exists(digest: &str, tag: &str, name: &str, registry_id: &str) -> Self {
        EcrError::ImageAlreadyExists(format!(
            "Image with digest '{digest}' and tag '{tag}' already exists in the repository with name '{name}' in registry with id '{registry_id}'"
        ))
    }

    pub fn upload_not_found(upload_id: &str, name: &str, registry_id: &str) -> Self {
        EcrError::UploadNotFound(format!(
            "Upload with id '{upload_id}' could not be found for the repository with name '{name}' in the registry with id '{registry_id}'"
        ))
    }

    /// A `registryId` other than this registry's, where no repository name applies.
    pub fn registry_not_found(registry_id: &str) -> Self {
        EcrError::RepositoryNotFound(format!("The registry with id '{registry_id}' does not exist"))
    }

    pub fn layers_not_found(digests: &[Digest], name: &str, registry_id: &str) -> Self {
        let digests: Vec<&str> = digests.iter().map(Digest::as_str).collect();
        EcrError::LayersNotFound(format!(
            "Layers with digests '[{}]' required for pushing image into repository with name '{name}' in the registry with id '{registry_id}' do not exist",
            digests.join(", ")
        ))
    }

    pub fn layer_not_found(digest: &str, name: &str, registry_id: &str) -> Self {
        EcrError::LayersNotFound(format!(
            "The layer with digest '{digest}' does not exist in the repository with name '{name}' in the registry with id '{registry_id}'"
        ))
    }

    pub fn referenced_images_not_found(digest: &str, name: &str) -> Self {
        EcrError::ReferencedImagesNotFound(format!(
            "The manifest list is referencing an image that does not exist: image with digest '{digest}' is not in the repository with name '{name}'"
        ))
    }

    pub fn image_digest_does_not_match(expected: &str, actual: &str) -> Self {
        EcrError::ImageDigestDoesNotMatch(format!(
            "The image digest '{expected}' does not match the digest '{actual}' of the image manifest"
        ))
    }

    pub fn layer_inaccessible(digest: &str, name: &str) -> Self {
        EcrError::LayerInaccessible(format!(
            "The layer with digest '{digest}' is not associated with an image in the repository with name '{name}'. Unassociated image layers may be cleaned up at any time."
        ))
    }

    pub fn layer_already_exists(digest: &str, name: &str, registry_id: &str) -> Self {
        EcrError::LayerAlreadyExists(format!(
            "Layer with digest '{digest}' already exists in the repository with name '{name}' in registry with id '{registry_id}'"
        ))
    }

    pub fn empty_upload(upload_id: &str, name: &str) -> Self {
        EcrError::EmptyUpload(format!(
            "The upload with id '{upload_id}' in the repository with name '{name}' contains no layer parts"
        ))
    }

    pub fn layer_part_too_small(min_bytes: u64) -> Self {
        EcrError::LayerPartTooSmall(format!(
            "Layer parts must be at least {} MiB in size, except the last part",
            min_bytes / (1024 * 1024)
        ))
    }

    pub fn too_many_tags(limit: usize) -> Self {
        EcrError::TooManyTags(format!(
            "The list of tags on the repository is over the limit. The maximum number of tags that can be applied to a repository is {limit}."
        ))
    }

    pub fn lifecycle_policy_not_found(name: &str, registry_id: &str) -> Self {
        EcrError::LifecyclePolicyNotFound(format!(
            "Lifecycle policy does not exist for the repository with name '{name}' in the registry with id '{registry_id}'"
        ))
    }

    pub fn lifecycle_policy_preview_not_found(name: &str, registry_id: &str) -> Self {
        EcrError::LifecyclePolicyPreviewNotFound(format!(
            "Lifecycle policy preview request does not exist for the repository with name '{name}' in the registry with id '{registry_id}'"
        ))
    }

    pub fn registry_policy_not_found(registry_id: &str) -> Self {
        EcrError::RegistryPolicyNotFound(format!(
            "Registry policy does not exist in the registry with id '{registry_id}'"
        ))
    }

    pub fn repository_policy_not_found(name: &str, registry_id: &str) -> Self {
        EcrError::RepositoryPolicyNotFound(format!(
            "Repository policy does not exist for the repository with name '{name}' in the registry with id '{registry_id}'"
        ))
    }

    /// `Invalid parameter at '<member>' failed to satisfy constraint: '<constraint>'`, the form
    /// ECR uses for every request-validation failure.
    pub fn invalid_parameter(member: &str, constraint: &str) -> Self {
        EcrError::InvalidParameter(format!(
            "Invalid parameter at '{member}' failed to satisfy constraint: '{constraint}'"
        ))
    }
}

impl IntoResponse for EcrError {
    fn into_response(self) -> Response {
        let request_id = uuid::Uuid::new_v4().to_string();
        self.into_response_with_id(&request_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn parts(err: EcrError) -> (StatusCode, axum::http::HeaderMap, Value) {
        let response = err.into_response();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn client_errors_are_400_json_with_type_message_and_request_id() {
        let (status, headers, body) = parts(EcrError::repository_not_found("team/app", "000000000000")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(headers[header::CONTENT_TYPE], CONTENT_TYPE);
        let id = headers[REQUEST_ID_HEADER].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "request id {id:?} is a uuid");
        assert_eq!(body["__type"], "RepositoryNotFoundException");
        assert_eq!(
            body["message"],
            "The repository with name 'team/app' does not exist in the registry with id '000000000000'"
        );
    }

    #[tokio::test]
    async fn only_server_exception_is_a_500() {
        assert_eq!(parts(EcrError::Server("disk gone".into())).await.0, StatusCode::INTERNAL_SERVER_ERROR);
        for err in [
            // ECR answers it 400 (the AWS SDK for Java logs "Status Code: 400"), not the 403 of
            // AWS's common-errors page.
            EcrError::MissingAuthenticationToken("Missing Authentication Token".into()),
            EcrError::InvalidSignature("x".into()),
            EcrError::LimitExceeded("x".into()),
            EcrError::Serialization("x".into()),
        ] {
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{}", err.wire_type());
        }
        let (status, _, body) = parts(EcrError::RequestTooLarge("too large".into())).await;
        assert_eq!(
            (status, body["__type"].as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, Some("RequestEntityTooLargeException"))
        );
    }

    #[tokio::test]
    async fn invalid_layer_part_carries_its_extra_members() {
        let (_, _, body) = parts(EcrError::InvalidLayerPart {
            message: "The layer part size is not valid".into(),
            registry_id: "000000000000".into(),
            repository_name: "app".into(),
            upload_id: "5f0bd0a4-40b8-4a5f-a1d3-7dbe0b8f3d3a".into(),
            last_valid_byte_received: 5242879,
        })
        .await;
        assert_eq!(body["__type"], "InvalidLayerPartException");
        assert_eq!(body["lastValidByteReceived"], 5242879);
        assert_eq!(body["uploadId"], "5f0bd0a4-40b8-4a5f-a1d3-7dbe0b8f3d3a");
        assert_eq!(body["repositoryName"], "app");
    }
}
