//! Service errors as OCI error responses: `{"errors":[{"code","message","detail"}]}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_registry::RegistryError;
use berth_registry::pull_through::PullThroughError;
use berth_registry::templates::TemplateError;

/// An error on the `/v2/` plane: the service's, or one in the request's own shape.
#[derive(Debug)]
pub enum OciError {
    Registry(RegistryError),
    /// A single-valued query parameter given more than once (see `query.rs`).
    RepeatedParameter(String),
    /// A PATCH whose `Content-Range` is malformed or disagrees with its body; `offset` is where
    /// the upload stands, so the client can resume.
    ChunkRangeInvalid {
        reason: String,
        offset: u64,
    },
}

impl From<RegistryError> for OciError {
    fn from(e: RegistryError) -> Self {
        OciError::Registry(e)
    }
}

impl std::fmt::Display for OciError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OciError::Registry(e) => e.fmt(f),
            OciError::RepeatedParameter(key) => {
                write!(f, "query parameter {key:?} was given more than once; it takes one value")
            }
            OciError::ChunkRangeInvalid { reason, offset } => write!(f, "{reason}; the upload holds {offset} bytes"),
        }
    }
}

impl OciError {
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use RegistryError::*;
        let service_error = match self {
            OciError::Registry(e) => e,
            // The code of the parameter's own kind of mistake, so clients see a familiar one.
            OciError::RepeatedParameter(key) => {
                let code = match key.as_str() {
                    "n" | "last" => "PAGINATION_NUMBER_INVALID",
                    "digest" | "mount" => "DIGEST_INVALID",
                    "from" => "NAME_INVALID",
                    _ => "UNSUPPORTED",
                };
                return (StatusCode::BAD_REQUEST, code);
            }
            // The distribution spec answers a chunk that does not fit the upload with a 416.
            OciError::ChunkRangeInvalid { .. } => return (StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID"),
        };
        match service_error {
            NameInvalid(_) => (StatusCode::BAD_REQUEST, "NAME_INVALID"),
            NameUnknown(_) => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
            RepositoryExists(_) | RepositoryNotEmpty(_) => (StatusCode::CONFLICT, "DENIED"),
            BlobUnknown(_) => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
            // A manifest needs the blob: deleting it would break the image (the spec allows 405).
            BlobInUse { .. } => (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
            BlobUploadUnknown => (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
            BlobUploadInvalid(_) => (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
            DigestInvalid(_) => (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
            RangeInvalid { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID"),
            ManifestInvalid(_) => (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
            ManifestUnknown(_) => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
            // ECR answers a pull of an archived image 404; the message says it is archived.
            ImageArchived(_) => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
            // The spec: a manifest refused for a descriptor naming what does not exist "MUST
            // result in one or more MANIFEST_BLOB_UNKNOWN errors" — an index's child included.
            ManifestChildUnknown(_) => (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"),
            ManifestBlobUnknown(_) => (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"),
            ManifestReferenced { .. } => (StatusCode::CONFLICT, "DENIED"),
            // Raised only by UpdateImageStorageClass (ECR plane).
            ArchiveRefused { .. } => (StatusCode::CONFLICT, "DENIED"),
            ManifestTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID"),
            TagImmutable { .. } => (StatusCode::BAD_REQUEST, "TAG_INVALID"),
            PaginationInvalid(_) => (StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID"),
            // Raised only by ECR API operations; mapped here so every error has an OCI form.
            ImageDigestMismatch { .. } | LayerInvalid(_) => (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
            TagDigestMismatch { .. } => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
            LayerInaccessible(_) | LayerArchived(_) => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
            LayerPartInvalid { .. } | LayerPartTooSmall { .. } | EmptyUpload => {
                (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID")
            }
            ImageAlreadyExists { .. } | LayerAlreadyExists(_) | TooManyTags { .. } => (StatusCode::CONFLICT, "DENIED"),
            // Unreadable settings deny all but the root's repair, as an unreadable policy does.
            Denied(_) | AccessDenied { .. } | SettingsUnreadable { .. } => (StatusCode::FORBIDDEN, "DENIED"),
            // ECR-plane operations only; never raised on /v2/.
            PolicyInvalid { .. }
            | PrincipalNotFound { .. }
            | PolicyNotFound(_)
            | ReplicationConfigurationInvalid(_)
            | SettingInvalid { .. } => (StatusCode::BAD_REQUEST, "UNSUPPORTED"),
            Unsupported(_) => (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
            // What is neither cached nor obtainable upstream is unknown, as distribution's proxy
            // answers; the message says why (never a 5xx: the upstream's trouble is not ours).
            PullThrough(PullThroughError::ManifestNotCached { .. }) => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
            PullThrough(PullThroughError::BlobNotCached(_)) => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
            PullThrough(PullThroughError::PushIntoCache { .. }) => (StatusCode::FORBIDDEN, "DENIED"),
            // Pull-through cache rule management is on the ECR plane only.
            PullThrough(_) => (StatusCode::BAD_REQUEST, "UNSUPPORTED"),
            // A push whose creation template does not parse creates nothing, as unreadable
            // settings refuse pushes; template management itself is on the ECR plane only.
            Template(TemplateError::Unusable(_)) => (StatusCode::FORBIDDEN, "DENIED"),
            Template(_) | PullExclusion(_) => (StatusCode::BAD_REQUEST, "UNSUPPORTED"),
            // Said as it is: the client can do nothing but retry later, the operator must act.
            StorageFull => (StatusCode::INSUFFICIENT_STORAGE, "UNKNOWN"),
            Busy(_) => (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        }
    }

    /// A server-side failure whose message may carry a store's or backend's detail: logged, and
    /// sent only as a request id to quote.
    fn detail_withheld(&self) -> bool {
        self.status_and_code().0.is_server_error() && !matches!(self, OciError::Registry(RegistryError::StorageFull))
    }
}

/// Builds an OCI error body.
pub fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({ "errors": [{ "code": code, "message": message, "detail": null }] }).to_string()
}

impl OciError {
    /// The response to request `request_id`. A server-side failure's detail (a store's or
    /// backend's error) is logged with the id and never sent: the client gets the id to quote.
    pub fn into_response_with_id(self, request_id: &str) -> Response {
        if self.detail_withheld() {
            tracing::error!(request_id, error = %self, "request failed");
            return self.internal(&format!("internal server error; request id {request_id}"));
        }
        self.into_response()
    }

    fn internal(&self, message: &str) -> Response {
        let (status, code) = self.status_and_code();
        let mut response = (status, error_body(code, message)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if self.detail_withheld() {
            tracing::error!(error = %self, "request failed");
            return self.internal("internal server error");
        }
        let mut response = (status, error_body(code, &self.to_string())).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let OciError::Registry(RegistryError::RangeInvalid { size })
        | OciError::ChunkRangeInvalid { offset: size, .. } = self
        {
            // Lets a client resume an upload, and says how large a blob is for ranged reads.
            headers.insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_store_is_said_as_such_and_other_server_failures_are_not_detailed() {
        let full = OciError::Registry(RegistryError::StorageFull);
        assert_eq!(full.status_and_code(), (StatusCode::INSUFFICIENT_STORAGE, "UNKNOWN"));
        assert!(!full.detail_withheld(), "the message says what to do and reveals nothing");
        let internal = OciError::Registry(RegistryError::Internal("storage: /data/blobs: EIO".into()));
        assert!(internal.detail_withheld());
        assert_eq!(full.into_response_with_id("r1").status(), StatusCode::INSUFFICIENT_STORAGE);
    }
}
