//! The console's one error type, and the one place service errors become console errors. Each
//! renders as a page with its status (see `lib.rs`); nothing a failed request asked for changed.

use axum::http::StatusCode;
use berth_registry::RegistryError;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("{0}")]
    NotFound(String),
    /// The authorization said no (403).
    #[error("{0}")]
    Denied(String),
    /// A form without a valid CSRF token, or posted from another site (403).
    #[error("{0}")]
    Forged(&'static str),
    #[error("{0}")]
    BadRequest(String),
    /// A method the page does not take (405); `allow` lists those it takes.
    #[error("This page accepts {allow} only.")]
    MethodNotAllowed { allow: &'static str },
    /// The request conflicts with the registry's state (an index still lists the image, an
    /// immutable tag, a tag that moved): nothing changed.
    #[error("{0}")]
    Conflict(String),
    /// No valid session: the visitor goes to the sign-in page and comes back to `next`.
    #[error("sign in first")]
    SignInRequired { next: String },
    /// The credential store failed; the visitor should retry.
    #[error("the registry cannot check credentials right now; try again shortly")]
    Unavailable,
    /// Logged with its detail; the page shows no internals.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ConsoleError {
    pub fn status(&self) -> StatusCode {
        match self {
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::Denied(_) | ConsoleError::Forged(_) => StatusCode::FORBIDDEN,
            ConsoleError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ConsoleError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ConsoleError::Conflict(_) => StatusCode::CONFLICT,
            ConsoleError::SignInRequired { .. } => StatusCode::SEE_OTHER,
            ConsoleError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ConsoleError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error code the audit trail records (ECR's exception names where one fits).
    pub fn code(&self) -> &'static str {
        match self {
            ConsoleError::NotFound(_) => "NotFoundException",
            ConsoleError::Denied(_) => "AccessDeniedException",
            ConsoleError::Forged(_) => "ForgedRequest",
            ConsoleError::BadRequest(_) => "InvalidParameterException",
            ConsoleError::MethodNotAllowed { .. } => "MethodNotAllowed",
            ConsoleError::Conflict(_) => "ConflictException",
            ConsoleError::SignInRequired { .. } => "SignInRequired",
            ConsoleError::Unavailable => "ServiceUnavailableException",
            ConsoleError::Internal(_) => "ServerException",
        }
    }

    /// The page's heading.
    pub fn title(&self) -> &'static str {
        match self {
            ConsoleError::NotFound(_) => "Not found",
            ConsoleError::Denied(_) => "Not allowed",
            ConsoleError::Forged(_) => "Form refused",
            ConsoleError::BadRequest(_) | ConsoleError::MethodNotAllowed { .. } => "Not accepted",
            ConsoleError::Conflict(_) => "Refused",
            ConsoleError::SignInRequired { .. } => "Sign in",
            ConsoleError::Unavailable => "Temporarily unavailable",
            ConsoleError::Internal(_) => "Something went wrong",
        }
    }

    /// What the page tells the visitor.
    pub fn message(&self) -> String {
        match self {
            ConsoleError::Internal(_) => "The registry failed to answer; the error is in its log.".into(),
            other => other.to_string(),
        }
    }
}

impl From<RegistryError> for ConsoleError {
    fn from(error: RegistryError) -> Self {
        let message = error.to_string();
        match error {
            RegistryError::NameUnknown(_)
            | RegistryError::ManifestUnknown(_)
            | RegistryError::ImageArchived(_)
            | RegistryError::LayerArchived(_)
            | RegistryError::BlobUnknown(_)
            | RegistryError::BlobUploadUnknown
            | RegistryError::PolicyNotFound(_) => ConsoleError::NotFound(message),
            RegistryError::AccessDenied { .. }
            | RegistryError::Denied(_)
            | RegistryError::SettingsUnreadable { .. } => ConsoleError::Denied(message),
            RegistryError::ManifestReferenced { .. }
            | RegistryError::ArchiveRefused { .. }
            | RegistryError::TagImmutable { .. }
            | RegistryError::ImageAlreadyExists { .. }
            | RegistryError::TagDigestMismatch { .. }
            | RegistryError::RepositoryExists(_)
            | RegistryError::RepositoryNotEmpty(_)
            | RegistryError::LayerAlreadyExists(_)
            | RegistryError::BlobInUse { .. } => ConsoleError::Conflict(message),
            RegistryError::NameInvalid(_)
            | RegistryError::DigestInvalid(_)
            | RegistryError::ManifestInvalid(_)
            | RegistryError::ManifestChildUnknown(_)
            | RegistryError::ManifestBlobUnknown(_)
            | RegistryError::ManifestTooLarge { .. }
            | RegistryError::PaginationInvalid(_)
            | RegistryError::ImageDigestMismatch { .. }
            | RegistryError::BlobUploadInvalid(_)
            | RegistryError::RangeInvalid { .. }
            | RegistryError::LayerPartInvalid { .. }
            | RegistryError::LayerPartTooSmall { .. }
            | RegistryError::EmptyUpload
            | RegistryError::LayerInvalid(_)
            | RegistryError::LayerInaccessible(_)
            | RegistryError::TooManyTags { .. }
            | RegistryError::PolicyInvalid { .. }
            | RegistryError::PrincipalNotFound { .. }
            | RegistryError::ReplicationConfigurationInvalid(_)
            | RegistryError::SettingInvalid { .. }
            | RegistryError::Unsupported(_)
            | RegistryError::PullThrough(_)
            | RegistryError::Template(_)
            | RegistryError::PullExclusion(_) => ConsoleError::BadRequest(message),
            RegistryError::StorageFull | RegistryError::Internal(_) => ConsoleError::Internal(message),
            // Raised only by /v2/ manifest uploads; a retry later is the answer anywhere.
            RegistryError::Busy(_) => ConsoleError::Unavailable,
        }
    }
}

impl From<berth_auth::Error> for ConsoleError {
    fn from(error: berth_auth::Error) -> Self {
        match error {
            berth_auth::Error::InvalidUserName(_) | berth_auth::Error::InvalidPolicy(_) => {
                ConsoleError::BadRequest(error.to_string())
            }
            berth_auth::Error::UserNotFound(_) => ConsoleError::NotFound(error.to_string()),
            // A name taken in another case (names are unique whatever their case).
            taken if taken.is_user_exists() => ConsoleError::Conflict(format!("The name is taken: {taken}.")),
            other => ConsoleError::Internal(other.to_string()),
        }
    }
}
