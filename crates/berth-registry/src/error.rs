//! The service's one error type. Each HTTP plane maps it to its wire format exactly once
//! (OCI error codes on /v2/, `__type` names on the ECR plane).

use std::io::ErrorKind;

use berth_meta::MetaError;
use berth_spec::{Digest, DigestError, ManifestError, NameError};
use berth_storage::StoreError;

/// "blob d" or "blobs d1, d2", as an error message names them.
fn blob_list(digests: &[Digest]) -> String {
    let names: Vec<&str> = digests.iter().map(Digest::as_str).collect();
    format!("{} {}", if names.len() == 1 { "blob" } else { "blobs" }, names.join(", "))
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    NameInvalid(String),
    #[error("repository {0} is not known to this registry")]
    NameUnknown(String),
    #[error("repository {0} already exists")]
    RepositoryExists(String),
    #[error("repository {0} still contains images; delete them first or use force")]
    RepositoryNotEmpty(String),
    #[error("blob {0} is not in this repository")]
    BlobUnknown(Digest),
    #[error("upload session is not known to this registry")]
    BlobUploadUnknown,
    #[error("{0}")]
    BlobUploadInvalid(String),
    #[error("{0}")]
    DigestInvalid(String),
    /// The requested byte range cannot be served; `size` is the blob or upload length.
    #[error("requested range is not satisfiable (size {size})")]
    RangeInvalid { size: u64 },
    #[error("{0}")]
    ManifestInvalid(String),
    #[error("manifest {0} is not in this repository")]
    ManifestUnknown(String),
    /// An index being pushed lists a child that is not in the repository.
    #[error("manifest references manifest {0}, which is not in this repository")]
    ManifestChildUnknown(Digest),
    /// Blobs a manifest being pushed needs that the repository does not hold (all of them).
    #[error("manifest references {}, which {} not in this repository", blob_list(.0), if .0.len() == 1 { "is" } else { "are" })]
    ManifestBlobUnknown(Vec<Digest>),
    /// A blob delete refused: the manifest needs the blob (ECR offers no blob delete at all).
    #[error("blob {digest} is needed by manifest {manifest} in this repository; delete the manifest first")]
    BlobInUse { digest: Digest, manifest: Digest },
    #[error("manifest is referenced by index {index} in this repository; delete the index first")]
    ManifestReferenced { index: Digest },
    /// A pull of an image in the archive storage class (`archive.rs`).
    #[error("manifest {0} is archived; restore it (UpdateImageStorageClass to STANDARD, or push it again) to pull it")]
    ImageArchived(String),
    /// Archiving an image that a STANDARD index lists: the index would no longer pull whole.
    #[error("the image is listed by index {index}, which is not archived; archive the index instead")]
    ArchiveRefused { index: Digest },
    #[error("manifest is larger than the {limit} bytes this registry accepts")]
    ManifestTooLarge { limit: usize },
    /// ECR's words since its tag-level immutability (before: "…because the repository is
    /// immutable."); tools that tell this refusal apart match on "immutable".
    #[error(
        "The image tag '{tag}' already exists in the '{repository}' repository and cannot be overwritten because the tag is immutable."
    )]
    TagImmutable { repository: String, tag: String },
    #[error("{0}")]
    PaginationInvalid(String),
    /// PutImage changed nothing: this digest already carries this tag (ECR refuses the no-op).
    #[error("image {digest} already has tag {tag}")]
    ImageAlreadyExists { digest: Digest, tag: String },
    /// The digest a client announced for a manifest is not the digest of its bytes.
    #[error("manifest content has digest {actual}, not {expected}")]
    ImageDigestMismatch { expected: Digest, actual: Digest },
    /// An image was named by both tag and digest, and the tag is not on that digest.
    #[error("tag {tag} does not point at {digest}")]
    TagDigestMismatch { tag: String, digest: Digest },
    /// A layer part does not continue the upload where it ends, or its length is not its range's.
    #[error("layer part is not valid: {reason}; the last valid byte received is {last_valid_byte}")]
    LayerPartInvalid { last_valid_byte: i64, reason: String },
    #[error("layer parts must be at least {min} bytes, except the last")]
    LayerPartTooSmall { min: u64 },
    #[error("the upload received no data")]
    EmptyUpload,
    #[error("uploaded layer is not valid: {0}")]
    LayerInvalid(String),
    #[error("layer {0} already exists in this repository")]
    LayerAlreadyExists(Digest),
    /// The blob is in the repository but no image of it references it.
    #[error("layer {0} is not referenced by any image in this repository")]
    LayerInaccessible(Digest),
    /// A pull of a blob that only archived images of the repository need (`archive.rs`).
    #[error("layer {0} belongs only to archived images; restore one of them to pull it")]
    LayerArchived(Digest),
    /// The repository's stored settings do not parse; nothing relies on or overwrites them.
    #[error(
        "the settings of repository {repository} cannot be read ({reason}); Berth neither applies nor changes them until they are repaired in the metadata database"
    )]
    SettingsUnreadable { repository: String, reason: String },
    #[error("a repository can have at most {limit} resource tags")]
    TooManyTags { limit: usize },
    /// A lifecycle or repository policy text that does not pass validation.
    #[error("invalid {kind} policy: {reason}")]
    PolicyInvalid { kind: PolicyKind, reason: String },
    /// A repository or registry policy naming a user of this registry that does not exist
    /// (IAM ties a principal to an existing user; ECR answers "Principal not found").
    #[error("invalid {kind} policy: principal user/{user} not found")]
    PrincipalNotFound { kind: PolicyKind, user: String },
    #[error("the repository has no {0}")]
    PolicyNotFound(PolicyKind),
    /// A registry setting's name or value that ECR does not know; `member` names the field.
    #[error("invalid {member}: {reason}")]
    SettingInvalid { member: &'static str, reason: String },
    #[error("{0}")]
    Denied(String),
    /// The caller may not perform the request, in IAM's words (caller and action, the resource's
    /// ARN and why): `explicit` when a policy denied it, not when nothing allowed it.
    #[error("{message}")]
    AccessDenied { message: String, explicit: bool },
    #[error("{0}")]
    Unsupported(String),
    /// A replication configuration ECR would refuse, or one naming a destination the server's
    /// configuration file does not map to a registry.
    #[error("invalid replication configuration: {0}")]
    ReplicationConfigurationInvalid(String),
    /// A pull-through cache rule, its secret or its upstream (`crate::pull_through`).
    #[error(transparent)]
    PullThrough(#[from] crate::pull_through::PullThroughError),
    #[error(transparent)]
    Template(#[from] crate::templates::TemplateError),
    #[error(transparent)]
    PullExclusion(#[from] crate::pulls::ExclusionError),
    /// The blob store's filesystem or the metadata database's disk (or a quota on either) is
    /// full; the failed write was rolled back.
    #[error("the registry's storage is full: nothing of this request was kept; retry once space is freed")]
    StorageFull,
    /// The server holds as much of such requests as it may (see `body_budget`): retry later.
    #[error("{0}")]
    Busy(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The per-repository documents of ECR's governance operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    Lifecycle,
    LifecyclePreview,
    Repository,
    /// The registry's policy (not per repository).
    Registry,
}

impl std::fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PolicyKind::Lifecycle => "lifecycle policy",
            PolicyKind::LifecyclePreview => "lifecycle policy preview",
            PolicyKind::Repository => "repository policy",
            PolicyKind::Registry => "registry policy",
        })
    }
}

impl From<MetaError> for RegistryError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::RepositoryNotFound(n) => RegistryError::NameUnknown(n),
            MetaError::RepositoryExists(n) => RegistryError::RepositoryExists(n),
            MetaError::RepositoryNotEmpty(n) => RegistryError::RepositoryNotEmpty(n),
            MetaError::BlobsUnknown(d) => RegistryError::ManifestBlobUnknown(d),
            MetaError::ManifestUnknown(d) => RegistryError::ManifestChildUnknown(d),
            MetaError::ManifestReferenced { index } => RegistryError::ManifestReferenced { index },
            MetaError::TagImmutable { repository, tag, .. } => RegistryError::TagImmutable { repository, tag },
            e @ (MetaError::BlobSizeMismatch { .. } | MetaError::ChildSizeMismatch { .. }) => {
                RegistryError::ManifestInvalid(e.to_string())
            }
            MetaError::BlobInUse { digest, manifest } => RegistryError::BlobInUse { digest, manifest },
            MetaError::StorageFull => {
                store_failed("metadata");
                RegistryError::StorageFull
            }
            e @ MetaError::Backend(_) => {
                store_failed("metadata");
                RegistryError::Internal(e.to_string())
            }
            e @ (MetaError::UserExists(_)
            | MetaError::UserUnknown(_)
            | MetaError::SettingsConflict(_)
            | MetaError::CacheRuleExists(_)
            | MetaError::CacheRuleNotFound(_)) => RegistryError::Internal(e.to_string()),
            MetaError::TemplateExists(p) => crate::templates::TemplateError::Exists(p).into(),
            MetaError::TemplateNotFound(p) => crate::templates::TemplateError::NotFound(p).into(),
            MetaError::TemplateUnusable(reason) => crate::templates::TemplateError::Unusable(reason).into(),
            MetaError::ExclusionExists(arn) => crate::pulls::ExclusionError::Exists(arn).into(),
            MetaError::ExclusionNotFound(arn) => crate::pulls::ExclusionError::NotFound(arn).into(),
        }
    }
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UploadNotFound(_) => RegistryError::BlobUploadUnknown,
            StoreError::OffsetMismatch { current } => RegistryError::RangeInvalid { size: current },
            StoreError::BlobNotFound(d) => RegistryError::BlobUnknown(d),
            StoreError::RangeNotSatisfiable { size } => RegistryError::RangeInvalid { size },
            StoreError::Body(e) => RegistryError::BlobUploadInvalid(format!("request body ended early: {e}")),
            StoreError::Io(e) if matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded) => {
                tracing::error!("blob storage: {e}");
                store_failed("blobs");
                RegistryError::StorageFull
            }
            StoreError::Io(e) => {
                store_failed("blobs");
                RegistryError::Internal(format!("storage: {e}"))
            }
        }
    }
}

/// Counts a store's own failure (I/O, backend, full storage; not a missing object), on requests
/// and background work alike: what an operator alerts on before users report 5xx.
fn store_failed(store: &'static str) {
    metrics::counter!("berth_store_errors_total", "store" => store).increment(1);
}

impl From<NameError> for RegistryError {
    fn from(e: NameError) -> Self {
        match e {
            NameError::Digest(d) => RegistryError::DigestInvalid(d.to_string()),
            other => RegistryError::NameInvalid(other.to_string()),
        }
    }
}

impl From<DigestError> for RegistryError {
    fn from(e: DigestError) -> Self {
        RegistryError::DigestInvalid(e.to_string())
    }
}

impl From<ManifestError> for RegistryError {
    fn from(e: ManifestError) -> Self {
        match e {
            ManifestError::TooLarge => {
                RegistryError::ManifestTooLarge { limit: berth_spec::manifest::MAX_MANIFEST_BYTES }
            }
            other => RegistryError::ManifestInvalid(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_filesystem_or_quota_is_storage_full_and_other_io_failures_internal() {
        for errno in [28, 122] {
            let error = RegistryError::from(StoreError::Io(std::io::Error::from_raw_os_error(errno)));
            assert!(matches!(error, RegistryError::StorageFull), "errno {errno}: {error:?}");
        }
        let error = RegistryError::from(StoreError::Io(std::io::Error::from_raw_os_error(5)));
        assert!(matches!(error, RegistryError::Internal(_)), "EIO: {error:?}");
    }
}
