//! The one translation of registry-service outcomes into ECR's: [`RegistryError`] to the
//! exception a whole call fails with, or to the `failures[]` entry of a batch item; and ECR's
//! image identifiers into the service's selectors.

use berth_registry::pull_through::{PullThroughError, UpstreamTrouble};
use berth_registry::pulls::ExclusionError;
use berth_registry::templates::TemplateError;
use berth_registry::{ImageSelector, PolicyKind, RegistryError};
use berth_spec::{Digest, Tag};

use crate::error::EcrError;
use crate::shapes::{
    ImageFailure, ImageFailureCode, ImageIdentifier, RepositoryScanningConfigurationFailure,
    ScanningConfigurationFailureCode,
};

/// What a call was about, for the messages ECR puts in its errors.
pub(crate) struct Scope<'a> {
    pub registry_id: &'a str,
    pub repository: &'a str,
    pub upload_id: Option<&'a str>,
}

/// The exception a whole call fails with.
pub(crate) fn ecr_error(err: RegistryError, scope: &Scope) -> EcrError {
    use RegistryError::*;
    let Scope { registry_id, repository, upload_id } = *scope;
    match err {
        NameUnknown(name) => EcrError::repository_not_found(&name, registry_id),
        RepositoryExists(name) => EcrError::repository_already_exists(&name, registry_id),
        RepositoryNotEmpty(name) => EcrError::repository_not_empty(&name, registry_id),
        BlobUploadUnknown => EcrError::upload_not_found(upload_id.unwrap_or_default(), repository, registry_id),
        BlobUnknown(digest) => EcrError::layer_not_found(digest.as_str(), repository, registry_id),
        ManifestBlobUnknown(digests) => EcrError::layers_not_found(&digests, repository, registry_id),
        ManifestChildUnknown(digest) => EcrError::referenced_images_not_found(digest.as_str(), repository),
        ManifestUnknown(reference) => {
            let id = match reference.parse::<Digest>() {
                Ok(_) => ImageIdentifier { image_digest: Some(reference), image_tag: None },
                Err(_) => ImageIdentifier { image_digest: None, image_tag: Some(reference) },
            };
            EcrError::image_not_found(&id, repository, registry_id)
        }
        // ECR answers a pull of an archived image as if it were not there (404 on its data plane).
        ImageArchived(reference) => EcrError::ImageNotFound(format!(
            "The image '{reference}' in the repository with name '{repository}' is archived; restore it with UpdateImageStorageClass (targetStorageClass STANDARD) to pull it"
        )),
        ArchiveRefused { index } => EcrError::ImageStorageClassUpdateNotSupported(format!(
            "The image is listed by the image index '{index}' in the repository with name '{repository}', which is not archived; archive the index instead"
        )),
        TagDigestMismatch { tag, digest } => EcrError::image_not_found(
            &ImageIdentifier { image_digest: Some(digest.to_string()), image_tag: Some(tag) },
            repository,
            registry_id,
        ),
        ImageAlreadyExists { digest, tag } => {
            EcrError::image_already_exists(digest.as_str(), &tag, repository, registry_id)
        }
        // The registry's message is ECR's own text, which `/v2/` sends too.
        e @ TagImmutable { .. } => EcrError::ImageTagAlreadyExists(e.to_string()),
        ImageDigestMismatch { expected, actual } => {
            EcrError::image_digest_does_not_match(expected.as_str(), actual.as_str())
        }
        LayerPartInvalid { last_valid_byte, reason } => EcrError::InvalidLayerPart {
            message: format!(
                "The layer part size is not valid, or the first byte specified is not consecutive to the last byte of a previous layer part upload: {reason}"
            ),
            registry_id: registry_id.into(),
            repository_name: repository.into(),
            upload_id: upload_id.unwrap_or_default().into(),
            last_valid_byte_received: last_valid_byte,
        },
        LayerPartTooSmall { min } => EcrError::layer_part_too_small(min),
        EmptyUpload => EcrError::empty_upload(upload_id.unwrap_or_default(), repository),
        LayerInvalid(reason) => EcrError::InvalidLayer(reason),
        LayerAlreadyExists(digest) => EcrError::layer_already_exists(digest.as_str(), repository, registry_id),
        LayerInaccessible(digest) => EcrError::layer_inaccessible(digest.as_str(), repository),
        LayerArchived(digest) => EcrError::LayerInaccessible(format!(
            "The layer with digest '{digest}' belongs only to archived images in the repository with name '{repository}'; restore an image that uses it with UpdateImageStorageClass"
        )),
        TooManyTags { limit } => EcrError::too_many_tags(limit),
        ManifestInvalid(reason) => EcrError::invalid_parameter("imageManifest", &reason),
        ManifestTooLarge { limit } => EcrError::invalid_parameter(
            "imageManifest",
            &format!("Member must have length less than or equal to {limit} (bytes, as UTF-8)"),
        ),
        ManifestReferenced { index } => EcrError::InvalidParameter(format!(
            "The image is referenced by the manifest list '{index}' in the repository with name '{repository}'"
        )),
        PolicyInvalid { kind: PolicyKind::Registry, reason } => {
            EcrError::invalid_parameter("PolicyText", &format!("Invalid registry policy provided: {reason}"))
        }
        PrincipalNotFound { .. } => EcrError::invalid_parameter("PolicyText", "Principal not found"),
        PolicyNotFound(PolicyKind::Registry) => EcrError::registry_policy_not_found(registry_id),
        SettingInvalid { member, reason } => EcrError::invalid_parameter(member, &reason),
        PolicyInvalid { kind: PolicyKind::Repository, reason } => {
            EcrError::invalid_parameter("PolicyText", &format!("Invalid repository policy provided: {reason}"))
        }
        PolicyInvalid { reason, .. } => EcrError::invalid_parameter(
            "LifecyclePolicyText",
            &format!("Lifecycle policy validation failure: {reason}"),
        ),
        PolicyNotFound(PolicyKind::Lifecycle) => EcrError::lifecycle_policy_not_found(repository, registry_id),
        PolicyNotFound(PolicyKind::LifecyclePreview) => {
            EcrError::lifecycle_policy_preview_not_found(repository, registry_id)
        }
        PolicyNotFound(PolicyKind::Repository) => EcrError::repository_policy_not_found(repository, registry_id),
        e @ (NameInvalid(_)
        | DigestInvalid(_)
        | BlobUploadInvalid(_)
        | RangeInvalid { .. }
        | PaginationInvalid(_)
        | Unsupported(_)
        | BlobInUse { .. }
        | Denied(_)) => EcrError::InvalidParameter(e.to_string()),
        ReplicationConfigurationInvalid(reason) => EcrError::invalid_parameter("replicationConfiguration", &reason),
        AccessDenied { message, .. } => EcrError::AccessDenied(message),
        e @ SettingsUnreadable { .. } => EcrError::AccessDenied(e.to_string()),
        PullThrough(e) => {
            let message = e.to_string();
            match e {
                PullThroughError::RuleExists(_) => EcrError::PullThroughCacheRuleAlreadyExists(message),
                PullThroughError::RuleNotFound(_) => EcrError::PullThroughCacheRuleNotFound(message),
                PullThroughError::TooManyRules => EcrError::LimitExceeded(message),
                PullThroughError::SecretNotFound(_) => EcrError::SecretNotFound(message),
                PullThroughError::SecretInaccessible(_) => EcrError::UnableToAccessSecret(message),
                PullThroughError::SecretUndecryptable(_) => EcrError::UnableToDecryptSecretValue(message),
                PullThroughError::UpstreamUnsupported(_) => EcrError::UnsupportedUpstreamRegistry(message),
                PullThroughError::PushIntoCache { .. } => EcrError::InvalidParameter(message),
                PullThroughError::ManifestNotCached { .. } => EcrError::ImageNotFound(message),
                PullThroughError::BlobNotCached(_) => EcrError::LayerInaccessible(message),
            }
        }
        Template(e) => {
            let message = e.to_string();
            match e {
                TemplateError::Exists(_) => EcrError::TemplateAlreadyExists(message),
                TemplateError::NotFound(_) => EcrError::TemplateNotFound(message),
                // A stored template that does not parse refuses what it would apply to, as
                // unreadable repository settings do.
                TemplateError::Unusable(_) => EcrError::AccessDenied(message),
            }
        }
        PullExclusion(e) => {
            let message = e.to_string();
            match e {
                ExclusionError::Exists(_) => EcrError::ExclusionAlreadyExists(message),
                ExclusionError::NotFound(_) => EcrError::ExclusionNotFound(message),
            }
        }
        e @ StorageFull => EcrError::StorageFull(e.to_string()),
        Busy(message) => EcrError::Throttling(message),
        Internal(reason) => EcrError::Server(reason),
    }
}

/// The `failures[]` entry for a batch item, or the exception for a problem that is not about
/// the item (the repository vanished, the store failed).
pub(crate) fn image_failure(
    image_id: ImageIdentifier,
    err: RegistryError,
    scope: &Scope,
) -> Result<ImageFailure, EcrError> {
    let (failure_code, failure_reason) = match err {
        RegistryError::ManifestUnknown(_) => (ImageFailureCode::ImageNotFound, "Requested image not found".to_owned()),
        RegistryError::ImageArchived(_) => (
            ImageFailureCode::ImageNotFound,
            "Requested image is archived; restore it with UpdateImageStorageClass to pull it".to_owned(),
        ),
        RegistryError::TagDigestMismatch { .. } => (
            ImageFailureCode::ImageTagDoesNotMatchDigest,
            "Invalid request parameters: image tag does not match the image digest".to_owned(),
        ),
        RegistryError::ManifestReferenced { index } => (
            ImageFailureCode::ImageReferencedByManifestList,
            format!("Requested image referenced by manifest list: [{index}]"),
        ),
        RegistryError::PullThrough(PullThroughError::ManifestNotCached { trouble, message }) => {
            let code = match trouble {
                UpstreamTrouble::AccessDenied => ImageFailureCode::UpstreamAccessDenied,
                UpstreamTrouble::TooManyRequests => ImageFailureCode::UpstreamTooManyRequests,
                UpstreamTrouble::Unavailable => ImageFailureCode::UpstreamUnavailable,
            };
            (code, message)
        }
        other => return Err(ecr_error(other, scope)),
    };
    Ok(ImageFailure { image_id, failure_code, failure_reason })
}

/// The `failures[]` entry for a repository a scanning-configuration batch names, or the exception
/// for a problem that is not about the repository's existence.
pub(crate) fn scanning_failure(
    err: RegistryError,
    scope: &Scope,
) -> Result<RepositoryScanningConfigurationFailure, EcrError> {
    match err {
        RegistryError::NameUnknown(name) => Ok(RepositoryScanningConfigurationFailure {
            failure_reason: format!(
                "The repository with name '{name}' does not exist in the registry with id '{}'",
                scope.registry_id
            ),
            repository_name: name,
            failure_code: ScanningConfigurationFailureCode::RepositoryNotFound,
        }),
        other => Err(ecr_error(other, scope)),
    }
}

/// An identifier as a selector, or the failure ECR reports for it.
pub(crate) fn image_selector(id: &ImageIdentifier) -> Result<ImageSelector, ImageFailure> {
    let failure = |failure_code, failure_reason: &str| ImageFailure {
        image_id: id.clone(),
        failure_code,
        failure_reason: failure_reason.to_owned(),
    };
    let digest = match &id.image_digest {
        None => None,
        // ECR's words, then why (a value can fit the regex and still be no digest: upper-case
        // hex, a wrong length, an algorithm Berth does not hash).
        Some(digest) => Some(digest.parse::<Digest>().map_err(|e| {
            let reason = format!(
                "Invalid request parameters: image digest should satisfy the regex '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+' ({e})"
            );
            failure(ImageFailureCode::InvalidImageDigest, &reason)
        })?),
    };
    let tag = match &id.image_tag {
        None => None,
        Some(tag) => Some(tag.parse::<Tag>().map_err(|_| {
            failure(
                ImageFailureCode::InvalidImageTag,
                "Invalid request parameters: image tag should satisfy the regex '[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}'",
            )
        })?),
    };
    match (tag, digest) {
        (Some(tag), Some(digest)) => Ok(ImageSelector::TagAndDigest(tag, digest)),
        (Some(tag), None) => Ok(ImageSelector::Tag(tag)),
        (None, Some(digest)) => Ok(ImageSelector::Digest(digest)),
        (None, None) => Err(failure(
            ImageFailureCode::MissingDigestAndTag,
            "Invalid request parameters: both tag and digest cannot be null",
        )),
    }
}
