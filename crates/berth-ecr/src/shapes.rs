//! Request and response members of the ECR operations Berth serves, named exactly as in
//! `ecr/2015-09-21/service-2.json` (camelCase, except `Tag`'s `Key`/`Value`).
//!
//! Requests ignore members they do not know (as AWS does). Responses leave out absent members,
//! send timestamps as epoch seconds with a fraction and blobs as base64.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A model timestamp: awsJson1_1 SDKs require a JSON number of epoch seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    millis: i64,
}

impl Timestamp {
    pub fn from_millis(millis: i64) -> Self {
        Timestamp { millis }
    }

    pub fn millis(self) -> i64 {
        self.millis
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Self {
        let millis = match time.duration_since(UNIX_EPOCH) {
            Ok(after) => after.as_millis() as i64,
            Err(before) => -(before.duration().as_millis() as i64),
        };
        Timestamp { millis }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.millis as f64 / 1000.0)
    }
}

/// Enums clients send: a value outside the model becomes `Unrecognized`, which validation turns
/// into `InvalidParameterException` (a deserialisation error would be a `SerializationException`).
macro_rules! request_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $wire:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum $name {
            $(#[serde(rename = $wire)] $variant,)*
            /// Not a value of the model; never passes validation.
            #[serde(skip)]
            Unrecognized,
        }

        /// From a JSON string only: serde's derived form would also take `{"VALUE": null}`.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let wire = String::deserialize(deserializer)?;
                Ok(match wire.as_str() {
                    $($wire => $name::$variant,)*
                    _ => $name::Unrecognized,
                })
            }
        }

        impl $name {
            /// The model's values, in the model's order (used in validation messages).
            pub const VALUES: &'static [&'static str] = &[$($wire),*];

            /// The wire value; `Unrecognized` has none and gives "".
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)*
                    $name::Unrecognized => "",
                }
            }
        }
    };
}

/// Enums only Berth sends.
macro_rules! response_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $wire:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum $name {
            $(#[serde(rename = $wire)] $variant,)*
        }
    };
}

request_enum!(ImageTagMutability {
    Mutable = "MUTABLE",
    Immutable = "IMMUTABLE",
    ImmutableWithExclusion = "IMMUTABLE_WITH_EXCLUSION",
    MutableWithExclusion = "MUTABLE_WITH_EXCLUSION",
});

impl ImageTagMutability {
    /// The two modes whose exclusion filters are required (and the only ones that allow them).
    pub fn has_exclusions(self) -> bool {
        matches!(self, ImageTagMutability::ImmutableWithExclusion | ImageTagMutability::MutableWithExclusion)
    }
}

request_enum!(ImageTagMutabilityExclusionFilterType { Wildcard = "WILDCARD" });

request_enum!(TagStatus { Tagged = "TAGGED", Untagged = "UNTAGGED", Any = "ANY" });

request_enum!(ImageStatusFilter {
    Active = "ACTIVE",
    Archived = "ARCHIVED",
    Activating = "ACTIVATING",
    Any = "ANY",
});

request_enum!(EncryptionType { Aes256 = "AES256", Kms = "KMS", KmsDsse = "KMS_DSSE" });

request_enum!(ArtifactStatusFilter {
    Active = "ACTIVE",
    Archived = "ARCHIVED",
    Activating = "ACTIVATING",
    Any = "ANY",
});

response_enum!(
    /// Berth restores within the call, so ACTIVATING is never sent.
    ImageStatus { Active = "ACTIVE", Archived = "ARCHIVED" }
);

request_enum!(TargetStorageClass { Standard = "STANDARD", Archive = "ARCHIVE" });

response_enum!(ArtifactStatus { Active = "ACTIVE", Archived = "ARCHIVED", Activating = "ACTIVATING" });

response_enum!(ImageFailureCode {
    InvalidImageDigest = "InvalidImageDigest",
    InvalidImageTag = "InvalidImageTag",
    ImageTagDoesNotMatchDigest = "ImageTagDoesNotMatchDigest",
    ImageNotFound = "ImageNotFound",
    MissingDigestAndTag = "MissingDigestAndTag",
    ImageReferencedByManifestList = "ImageReferencedByManifestList",
    KmsError = "KmsError",
    UpstreamAccessDenied = "UpstreamAccessDenied",
    UpstreamTooManyRequests = "UpstreamTooManyRequests",
    UpstreamUnavailable = "UpstreamUnavailable",
    ImageInaccessible = "ImageInaccessible",
});

response_enum!(LayerAvailability { Available = "AVAILABLE", Unavailable = "UNAVAILABLE", Archived = "ARCHIVED" });

response_enum!(LayerFailureCode { InvalidLayerDigest = "InvalidLayerDigest", MissingLayerDigest = "MissingLayerDigest" });

request_enum!(RepositoryFilterType { PrefixMatch = "PREFIX_MATCH" });

response_enum!(
    /// Berth reports signatures that exist; it signs nothing, so nothing is ever in progress.
    SigningStatus { Complete = "COMPLETE" }
);

response_enum!(ReplicationStatus { InProgress = "IN_PROGRESS", Complete = "COMPLETE", Failed = "FAILED" });

response_enum!(
    /// Previews finish within the call that starts them: the start answers IN_PROGRESS, as ECR's
    /// does, and every read of the preview COMPLETE.
    LifecyclePolicyPreviewStatus { InProgress = "IN_PROGRESS", Complete = "COMPLETE" }
);

response_enum!(ImageActionType { Expire = "EXPIRE", Transition = "TRANSITION" });

response_enum!(LifecyclePolicyStorageClass { Standard = "STANDARD", Archive = "ARCHIVE" });

response_enum!(
    /// A lifecycle transition's target: the archive is ECR's only one.
    LifecyclePolicyTargetStorageClass { Archive = "ARCHIVE" }
);

response_enum!(
    /// Berth runs no scanner, so the registry's scan type is always BASIC.
    ScanType { Basic = "BASIC" }
);

request_enum!(
    /// A registry scanning rule's frequency (CONTINUOUS_SCAN is ENHANCED scanning's, which
    /// Berth refuses) and a repository's effective one.
    ScanFrequency { ScanOnPush = "SCAN_ON_PUSH", ContinuousScan = "CONTINUOUS_SCAN", Manual = "MANUAL" }
);

request_enum!(ScanningRepositoryFilterType { Wildcard = "WILDCARD" });

response_enum!(ScanningConfigurationFailureCode { RepositoryNotFound = "REPOSITORY_NOT_FOUND" });

request_enum!(UpstreamRegistry {
    Ecr = "ecr",
    EcrPublic = "ecr-public",
    Quay = "quay",
    K8s = "k8s",
    DockerHub = "docker-hub",
    GithubContainerRegistry = "github-container-registry",
    AzureContainerRegistry = "azure-container-registry",
    GitlabContainerRegistry = "gitlab-container-registry",
    Chainguard = "chainguard",
});

impl UpstreamRegistry {
    /// The upstream ECR recognises by the URL's host (it fills in `upstreamRegistry` from the
    /// URL when a request leaves it out); `None` for any other host, a self-hosted registry.
    pub fn of_url(url: &str) -> Option<UpstreamRegistry> {
        // ECR's examples give a bare host (`public.ecr.aws`); the URL parser then finds the host
        // past any `user:password@` and port, lower-cased.
        let parsed = match url.contains("://") {
            true => url::Url::parse(url),
            false => url::Url::parse(&format!("https://{url}")),
        };
        let host = parsed.ok()?.host_str()?.to_owned();
        // `ghcr.io.` is the same host as `ghcr.io` (a fully qualified name).
        let host = host.strip_suffix('.').unwrap_or(&host);
        let ecr_private =
            host.contains(".dkr.ecr.") && (host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn"));
        Some(match host {
            _ if ecr_private => UpstreamRegistry::Ecr,
            "public.ecr.aws" => UpstreamRegistry::EcrPublic,
            "registry-1.docker.io" | "docker.io" | "index.docker.io" => UpstreamRegistry::DockerHub,
            "quay.io" => UpstreamRegistry::Quay,
            "registry.k8s.io" => UpstreamRegistry::K8s,
            "ghcr.io" => UpstreamRegistry::GithubContainerRegistry,
            "registry.gitlab.com" => UpstreamRegistry::GitlabContainerRegistry,
            "cgr.dev" => UpstreamRegistry::Chainguard,
            _ if host.ends_with(".azurecr.io") => UpstreamRegistry::AzureContainerRegistry,
            _ => return None,
        })
    }
}

// ---- structures shared by several operations

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIdentifier {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_tag: Option<String>,
}

/// A resource tag; the only ECR shape with capitalised member names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "Value")]
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageTagMutabilityExclusionFilter {
    pub filter_type: ImageTagMutabilityExclusionFilterType,
    pub filter: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageScanningConfiguration {
    #[serde(default)]
    pub scan_on_push: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionConfiguration {
    pub encryption_type: EncryptionType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Repository {
    pub repository_arn: String,
    pub registry_id: String,
    pub repository_name: String,
    pub repository_uri: String,
    pub created_at: Timestamp,
    pub image_tag_mutability: ImageTagMutability,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_tag_mutability_exclusion_filters: Option<Vec<ImageTagMutabilityExclusionFilter>>,
    pub image_scanning_configuration: ImageScanningConfiguration,
    pub encryption_configuration: EncryptionConfiguration,
}

/// Filter of DescribeImages; ListImages' `ListImagesFilter` has the same members.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImagesFilter {
    pub tag_status: Option<TagStatus>,
    pub image_status: Option<ImageStatusFilter>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageDetail {
    pub registry_id: String,
    pub repository_name: String,
    pub image_digest: String,
    /// Left out for an untagged image, as ECR does (`imageTags==null` queries rely on it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_size_in_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pushed_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_manifest_media_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_media_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_recorded_pull_time: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_manifest_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_status: Option<ImageStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_archived_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_activated_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    pub registry_id: String,
    pub repository_name: String,
    pub image_id: ImageIdentifier,
    /// The exact stored manifest bytes (manifests are UTF-8 JSON).
    pub image_manifest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_manifest_media_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageFailure {
    pub image_id: ImageIdentifier,
    pub failure_code: ImageFailureCode,
    pub failure_reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Layer {
    pub layer_digest: String,
    pub layer_availability: LayerAvailability,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerFailure {
    pub layer_digest: String,
    pub failure_code: LayerFailureCode,
    pub failure_reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationData {
    /// base64 of `AWS:<password>`; the password must not contain ':' (the aws CLI splits on it).
    pub authorization_token: String,
    pub expires_at: Timestamp,
    pub proxy_endpoint: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationConfiguration {
    pub rules: Vec<ReplicationRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationRule {
    pub destinations: Vec<ReplicationDestination>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository_filters: Option<Vec<RepositoryFilter>>,
    /// Only `enabled: false` is taken: Berth does not replicate deletions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_replication: Option<DeleteReplication>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteReplication {
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationDestination {
    pub region: String,
    pub registry_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryFilter {
    pub filter: String,
    pub filter_type: RepositoryFilterType,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryScanningConfiguration {
    pub scan_type: ScanType,
    pub rules: Vec<RegistryScanningRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryScanningRule {
    pub scan_frequency: ScanFrequency,
    pub repository_filters: Vec<ScanningRepositoryFilter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanningRepositoryFilter {
    pub filter: String,
    pub filter_type: ScanningRepositoryFilterType,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryScanningConfiguration {
    pub repository_arn: String,
    pub repository_name: String,
    pub scan_on_push: bool,
    pub scan_frequency: ScanFrequency,
    pub applied_scan_filters: Vec<ScanningRepositoryFilter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryScanningConfigurationFailure {
    pub repository_name: String,
    pub failure_code: ScanningConfigurationFailureCode,
    pub failure_reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectIdentifier {
    pub image_digest: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListImageReferrersFilter {
    pub artifact_types: Option<Vec<String>>,
    pub artifact_status: Option<ArtifactStatusFilter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageReferrer {
    pub digest: String,
    pub media_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_status: Option<ArtifactStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecyclePolicyPreviewFilter {
    pub tag_status: Option<TagStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LifecyclePolicyRuleAction {
    #[serde(rename = "type")]
    pub action_type: ImageActionType,
    #[serde(rename = "targetStorageClass", skip_serializing_if = "Option::is_none")]
    pub target_storage_class: Option<LifecyclePolicyTargetStorageClass>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecyclePolicyPreviewResult {
    /// Left out for an untagged image, as in `ImageDetail`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_tags: Vec<String>,
    pub image_digest: String,
    pub image_pushed_at: Timestamp,
    pub action: LifecyclePolicyRuleAction,
    pub applied_rule_priority: u32,
    pub storage_class: LifecyclePolicyStorageClass,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecyclePolicyPreviewSummary {
    pub expiring_image_total_count: usize,
    /// One entry per target class with at least one image moving there.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transitioning_image_total_counts: Vec<TransitioningImageTotalCount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransitioningImageTotalCount {
    pub target_storage_class: LifecyclePolicyTargetStorageClass,
    pub image_total_count: usize,
}

// ---- requests (one per served operation)

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetAuthorizationTokenRequest {
    /// Deprecated by AWS: answer one entry per id (or one for the default registry).
    pub registry_ids: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateRepositoryRequest {
    pub registry_id: Option<String>,
    pub repository_name: String,
    pub tags: Option<Vec<Tag>>,
    /// Absent means MUTABLE.
    pub image_tag_mutability: Option<ImageTagMutability>,
    pub image_tag_mutability_exclusion_filters: Option<Vec<ImageTagMutabilityExclusionFilter>>,
    pub image_scanning_configuration: Option<ImageScanningConfiguration>,
    pub encryption_configuration: Option<EncryptionConfiguration>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeRepositoriesRequest {
    pub registry_id: Option<String>,
    pub repository_names: Option<Vec<String>>,
    pub next_token: Option<String>,
    pub max_results: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteRepositoryRequest {
    pub registry_id: Option<String>,
    pub repository_name: String,
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeImagesRequest {
    pub registry_id: Option<String>,
    pub repository_name: String,
    pub image_ids: Option<Vec<ImageIdentifier>>,
    pub next_token: Option<String>,
    pub max_results: Option<i64>,
    pub filter: Option<ImagesFilter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListImagesRequest {
    pub registry_id: Option<String>,
    pub repository_name: String,
    pub next_token: Option<String>,
    pub max_results: Option<i64>,
    pub filter: Option<ImagesFilter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchGetImageRequest {
    pub registry_id: Option<String>,
    pub repository_name: String,
    pub image_ids: Vec<ImageIdentifier>,
    pub accepted_media_types: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutImageRequest {
    pub registry_id: Option<String>,
    pub repository_name: String,
    pub image_manifest: String,
    pub image_manifest_media_type: Option<String>,
    pub image_tag: Option<String>,
    pub image_digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchDeleteImageRequest {
    pub registry_id: Option<String>,
    pub repository_name: String,
    pub image_ids: Vec<ImageIdentifier>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchCheckLayerAvailabilityRequest {
    pub registry_id: Option<String>,
    pub repository_name: String,
    pub layer_digests: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitiateLayerUploadRequest {
    pub registry_id: Option<String>,
    pub repository_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadLayerPartRequest {
    pub registry_id: Option<String>,
    pub repository_name: String,
    pub upload_id: String,
    pub part_first_byte: i64,
    pub part_last_byte: i64,
    #[serde(deserialize_with = "base64_blob")]
    pub layer_part_blob: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompleteLayerUploadRequest {
    pub registry_id: Option<String>,
    pub repository_name: String,
    pub upload_id: String,
    pub layer_digests: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetDownloadUrlForLayerRequest {
    pub registry_id: Option<String>,
    pub repository_name: String,
    pub layer_digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagResourceRequest {
    pub resource_arn: String,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UntagResourceRequest {
    pub resource_arn: String,
    pub tag_keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTagsForResourceRequest {
    pub resource_arn: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DescribeRegistryRequest {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct GetRegistryScanningConfigurationRequest {}

/// StartImageScan, DescribeImageSigningStatus and DescribeImageReplicationStatus: one image.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRequest {
    pub registry_id: Option<String>,
    pub repository_name: String,
    pub image_id: ImageIdentifier,
}

/// One image; `maxResults` is checked, then neither it nor `nextToken` is needed: there are
/// never findings. (Members listed, not `#[serde(flatten)]`ed: a flattened member is read by
/// serde itself, outside `strict_json`.)
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeImageScanFindingsRequest {
    pub registry_id: Option<String>,
    pub repository_name: String,
    pub image_id: ImageIdentifier,
    pub max_results: Option<i64>,
}

impl DescribeImageScanFindingsRequest {
    pub fn image(self) -> ImageRequest {
        ImageRequest { registry_id: self.registry_id, repository_name: self.repository_name, image_id: self.image_id }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateImageStorageClassRequest {
    pub registry_id: Option<String>,
    pub repository_name: String,
    pub image_id: ImageIdentifier,
    pub target_storage_class: TargetStorageClass,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateImageStorageClassResponse {
    pub registry_id: String,
    pub repository_name: String,
    pub image_id: ImageIdentifier,
    pub image_status: ImageStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutRegistryScanningConfigurationRequest {
    pub scan_type: Option<ScanTypeInput>,
    pub rules: Option<Vec<RegistryScanningRule>>,
}

request_enum!(ScanTypeInput { Basic = "BASIC", Enhanced = "ENHANCED" });

/// PutSigningConfiguration's body; Berth refuses it whole (it has no signer).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutSigningConfigurationRequest {
    pub signing_configuration: serde_json::Value,
}

/// GetSigningConfiguration and DeleteSigningConfiguration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SigningConfigurationRequest {}

/// What an operation Berth always refuses answers: no value exists, so the type system rules
/// out a made-up result (a fake scan or signature).
#[derive(Debug, Serialize)]
pub enum Refused {}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutReplicationConfigurationRequest {
    pub replication_configuration: ReplicationConfiguration,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutRegistryPolicyRequest {
    pub policy_text: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct GetRegistryPolicyRequest {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DeleteRegistryPolicyRequest {}

/// Get-, Put- and DeleteRegistryPolicy all answer the registry and the policy text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryPolicyResponse {
    pub registry_id: String,
    pub policy_text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GetAccountSettingRequest {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PutAccountSettingRequest {
    pub name: String,
    pub value: String,
}

/// Get- and PutAccountSetting both answer the setting's name and value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountSettingResponse {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutImageScanningConfigurationRequest {
    pub registry_id: Option<String>,
    pub repository_name: String,
    pub image_scanning_configuration: ImageScanningConfiguration,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchGetRepositoryScanningConfigurationRequest {
    pub repository_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListImageReferrersRequest {
    pub registry_id: Option<String>,
    pub repository_name: String,
    pub subject_id: SubjectIdentifier,
    pub filter: Option<ListImageReferrersFilter>,
    pub next_token: Option<String>,
    pub max_results: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutImageTagMutabilityRequest {
    pub registry_id: Option<String>,
    pub repository_name: String,
    pub image_tag_mutability: ImageTagMutability,
    pub image_tag_mutability_exclusion_filters: Option<Vec<ImageTagMutabilityExclusionFilter>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutLifecyclePolicyRequest {
    pub registry_id: Option<String>,
    pub repository_name: String,
    pub lifecycle_policy_text: String,
}

/// GetLifecyclePolicy and DeleteLifecyclePolicy take the same members.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecyclePolicyRequest {
    pub registry_id: Option<String>,
    pub repository_name: String,
}

pub type GetLifecyclePolicyRequest = LifecyclePolicyRequest;
pub type DeleteLifecyclePolicyRequest = LifecyclePolicyRequest;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartLifecyclePolicyPreviewRequest {
    pub registry_id: Option<String>,
    pub repository_name: String,
    /// Absent: preview the repository's policy.
    pub lifecycle_policy_text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetLifecyclePolicyPreviewRequest {
    pub registry_id: Option<String>,
    pub repository_name: String,
    pub image_ids: Option<Vec<ImageIdentifier>>,
    pub next_token: Option<String>,
    pub max_results: Option<i64>,
    pub filter: Option<LifecyclePolicyPreviewFilter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetRepositoryPolicyRequest {
    pub registry_id: Option<String>,
    pub repository_name: String,
    pub policy_text: String,
    /// Sets a policy that would deny the caller `ecr:SetRepositoryPolicy` (refused without it).
    #[serde(default)]
    pub force: bool,
}

/// GetRepositoryPolicy and DeleteRepositoryPolicy take the same members.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryPolicyRequest {
    pub registry_id: Option<String>,
    pub repository_name: String,
}

pub type GetRepositoryPolicyRequest = RepositoryPolicyRequest;
pub type DeleteRepositoryPolicyRequest = RepositoryPolicyRequest;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatePullThroughCacheRuleRequest {
    pub registry_id: Option<String>,
    pub ecr_repository_prefix: String,
    pub upstream_registry_url: String,
    pub upstream_registry: Option<UpstreamRegistry>,
    pub credential_arn: Option<String>,
    pub custom_role_arn: Option<String>,
    pub upstream_repository_prefix: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribePullThroughCacheRulesRequest {
    pub registry_id: Option<String>,
    pub ecr_repository_prefixes: Option<Vec<String>>,
    pub next_token: Option<String>,
    pub max_results: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdatePullThroughCacheRuleRequest {
    pub registry_id: Option<String>,
    pub ecr_repository_prefix: String,
    pub credential_arn: Option<String>,
    pub custom_role_arn: Option<String>,
}

/// DeletePullThroughCacheRule and ValidatePullThroughCacheRule take the same members.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PullThroughCacheRuleRequest {
    pub registry_id: Option<String>,
    pub ecr_repository_prefix: String,
}
pub type DeletePullThroughCacheRuleRequest = PullThroughCacheRuleRequest;
pub type ValidatePullThroughCacheRuleRequest = PullThroughCacheRuleRequest;

request_enum!(RctAppliedFor {
    Replication = "REPLICATION",
    PullThroughCache = "PULL_THROUGH_CACHE",
    CreateOnPush = "CREATE_ON_PUSH",
});

/// The members of CreateRepositoryCreationTemplate and UpdateRepositoryCreationTemplate; serde
/// requires only `prefix`, and Create's validation `appliedFor`. (One structure each request
/// wraps transparently, not `#[serde(flatten)]`: a flattened member is read by serde itself,
/// outside `strict_json`.)
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMembers {
    pub prefix: String,
    pub description: Option<String>,
    pub encryption_configuration: Option<EncryptionConfiguration>,
    pub resource_tags: Option<Vec<Tag>>,
    pub image_tag_mutability: Option<ImageTagMutability>,
    pub image_tag_mutability_exclusion_filters: Option<Vec<ImageTagMutabilityExclusionFilter>>,
    pub repository_policy: Option<String>,
    pub lifecycle_policy: Option<String>,
    pub custom_role_arn: Option<String>,
    pub applied_for: Option<Vec<RctAppliedFor>>,
}

/// CreateRepositoryCreationTemplate: `appliedFor` is required.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct CreateRepositoryCreationTemplateRequest {
    pub members: TemplateMembers,
}

/// UpdateRepositoryCreationTemplate: what is given replaces what the template holds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct UpdateRepositoryCreationTemplateRequest {
    pub members: TemplateMembers,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeRepositoryCreationTemplatesRequest {
    pub prefixes: Option<Vec<String>>,
    pub next_token: Option<String>,
    pub max_results: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteRepositoryCreationTemplateRequest {
    pub prefix: String,
}

/// RegisterPullTimeUpdateExclusion and DeregisterPullTimeUpdateExclusion take the same member.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PullTimeUpdateExclusionRequest {
    pub principal_arn: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPullTimeUpdateExclusionsRequest {
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

// ---- responses

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetAuthorizationTokenResponse {
    pub authorization_data: Vec<AuthorizationData>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateRepositoryResponse {
    pub repository: Repository,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeRepositoriesResponse {
    pub repositories: Vec<Repository>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteRepositoryResponse {
    pub repository: Repository,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeImagesResponse {
    pub image_details: Vec<ImageDetail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListImagesResponse {
    /// One entry per (digest, tag) pair; an untagged image appears once, digest only.
    pub image_ids: Vec<ImageIdentifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchGetImageResponse {
    pub images: Vec<Image>,
    pub failures: Vec<ImageFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PutImageResponse {
    pub image: Image,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchDeleteImageResponse {
    pub image_ids: Vec<ImageIdentifier>,
    pub failures: Vec<ImageFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchCheckLayerAvailabilityResponse {
    pub layers: Vec<Layer>,
    pub failures: Vec<LayerFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitiateLayerUploadResponse {
    pub upload_id: String,
    pub part_size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadLayerPartResponse {
    pub registry_id: String,
    pub repository_name: String,
    pub upload_id: String,
    pub last_byte_received: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompleteLayerUploadResponse {
    pub registry_id: String,
    pub repository_name: String,
    pub upload_id: String,
    pub layer_digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetDownloadUrlForLayerResponse {
    pub download_url: String,
    pub layer_digest: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TagResourceResponse {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UntagResourceResponse {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTagsForResourceResponse {
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PutRegistryScanningConfigurationResponse {
    pub registry_scanning_configuration: RegistryScanningConfiguration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeImageSigningStatusResponse {
    pub repository_name: String,
    pub image_id: ImageIdentifier,
    pub registry_id: String,
    pub signing_statuses: Vec<ImageSigningStatus>,
}

/// A signature found among the image's referrers. Berth has no signing profiles, so
/// `signingProfileArn` is left out; COMPLETE means "a signature is attached", not "verified".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageSigningStatus {
    pub status: SigningStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PutReplicationConfigurationResponse {
    pub replication_configuration: ReplicationConfiguration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeImageReplicationStatusResponse {
    pub repository_name: String,
    pub image_id: ImageIdentifier,
    pub replication_statuses: Vec<ImageReplicationStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageReplicationStatus {
    pub region: String,
    pub registry_id: String,
    pub status: ReplicationStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeRegistryResponse {
    pub registry_id: String,
    pub replication_configuration: ReplicationConfiguration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PutImageScanningConfigurationResponse {
    pub registry_id: String,
    pub repository_name: String,
    pub image_scanning_configuration: ImageScanningConfiguration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetRegistryScanningConfigurationResponse {
    pub registry_id: String,
    pub scanning_configuration: RegistryScanningConfiguration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchGetRepositoryScanningConfigurationResponse {
    pub scanning_configurations: Vec<RepositoryScanningConfiguration>,
    pub failures: Vec<RepositoryScanningConfigurationFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListImageReferrersResponse {
    pub referrers: Vec<ImageReferrer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PutImageTagMutabilityResponse {
    pub registry_id: String,
    pub repository_name: String,
    pub image_tag_mutability: ImageTagMutability,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_tag_mutability_exclusion_filters: Option<Vec<ImageTagMutabilityExclusionFilter>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PutLifecyclePolicyResponse {
    pub registry_id: String,
    pub repository_name: String,
    pub lifecycle_policy_text: String,
}

/// A rule as Create, Describe and Delete answer it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PullThroughCacheRule {
    pub ecr_repository_prefix: String,
    pub upstream_registry_url: String,
    pub created_at: Timestamp,
    pub registry_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_role_arn: Option<String>,
    pub upstream_repository_prefix: String,
    /// As the rule was created with it (a value of `UpstreamRegistry`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_registry: Option<String>,
    pub updated_at: Timestamp,
}

/// A created or deleted rule: as described, without `updatedAt` (not in these responses' models).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatePullThroughCacheRuleResponse {
    pub ecr_repository_prefix: String,
    pub upstream_registry_url: String,
    pub created_at: Timestamp,
    pub registry_id: String,
    /// Always `None` in a deletion's answer, whose model lacks it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_registry: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_role_arn: Option<String>,
    pub upstream_repository_prefix: String,
}

pub type DeletePullThroughCacheRuleResponse = CreatePullThroughCacheRuleResponse;

impl CreatePullThroughCacheRuleResponse {
    pub fn created(rule: PullThroughCacheRule) -> Self {
        CreatePullThroughCacheRuleResponse {
            ecr_repository_prefix: rule.ecr_repository_prefix,
            upstream_registry_url: rule.upstream_registry_url,
            created_at: rule.created_at,
            registry_id: rule.registry_id,
            upstream_registry: rule.upstream_registry,
            credential_arn: rule.credential_arn,
            custom_role_arn: rule.custom_role_arn,
            upstream_repository_prefix: rule.upstream_repository_prefix,
        }
    }

    pub fn deleted(rule: PullThroughCacheRule) -> Self {
        CreatePullThroughCacheRuleResponse { upstream_registry: None, ..Self::created(rule) }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribePullThroughCacheRulesResponse {
    pub pull_through_cache_rules: Vec<PullThroughCacheRule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdatePullThroughCacheRuleResponse {
    pub ecr_repository_prefix: String,
    pub registry_id: String,
    pub updated_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_role_arn: Option<String>,
    pub upstream_repository_prefix: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidatePullThroughCacheRuleResponse {
    pub ecr_repository_prefix: String,
    pub registry_id: String,
    pub upstream_registry_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_role_arn: Option<String>,
    pub upstream_repository_prefix: String,
    pub is_valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// GetLifecyclePolicy's answer; DeleteLifecyclePolicy returns the policy it removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecyclePolicyResponse {
    pub registry_id: String,
    pub repository_name: String,
    pub lifecycle_policy_text: String,
    pub last_evaluated_at: Timestamp,
}

pub type GetLifecyclePolicyResponse = LifecyclePolicyResponse;
pub type DeleteLifecyclePolicyResponse = LifecyclePolicyResponse;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StartLifecyclePolicyPreviewResponse {
    pub registry_id: String,
    pub repository_name: String,
    pub lifecycle_policy_text: String,
    pub status: LifecyclePolicyPreviewStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetLifecyclePolicyPreviewResponse {
    pub registry_id: String,
    pub repository_name: String,
    pub lifecycle_policy_text: String,
    pub status: LifecyclePolicyPreviewStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    pub preview_results: Vec<LifecyclePolicyPreviewResult>,
    pub summary: LifecyclePolicyPreviewSummary,
}

/// The answer of SetRepositoryPolicy, GetRepositoryPolicy and DeleteRepositoryPolicy (the
/// policy removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryPolicyResponse {
    pub registry_id: String,
    pub repository_name: String,
    pub policy_text: String,
}

pub type SetRepositoryPolicyResponse = RepositoryPolicyResponse;
pub type GetRepositoryPolicyResponse = RepositoryPolicyResponse;
pub type DeleteRepositoryPolicyResponse = RepositoryPolicyResponse;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryCreationTemplate {
    pub prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub encryption_configuration: EncryptionConfiguration,
    pub resource_tags: Vec<Tag>,
    pub image_tag_mutability: ImageTagMutability,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_tag_mutability_exclusion_filters: Option<Vec<ImageTagMutabilityExclusionFilter>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_policy: Option<String>,
    pub applied_for: Vec<RctAppliedFor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_role_arn: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What Create, Update and Delete answer: the template (as it is now, or as it was deleted).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryCreationTemplateResponse {
    pub registry_id: String,
    pub repository_creation_template: RepositoryCreationTemplate,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeRepositoryCreationTemplatesResponse {
    pub registry_id: String,
    pub repository_creation_templates: Vec<RepositoryCreationTemplate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterPullTimeUpdateExclusionResponse {
    pub principal_arn: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeregisterPullTimeUpdateExclusionResponse {
    pub principal_arn: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPullTimeUpdateExclusionsResponse {
    pub pull_time_update_exclusions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// Decodes straight from the JSON text, without an intermediate `String` of up to 28 MiB.
fn base64_blob<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
    struct Base64Visitor;

    impl serde::de::Visitor<'_> for Base64Visitor {
        type Value = Bytes;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a base64 string")
        }

        fn visit_str<E: serde::de::Error>(self, encoded: &str) -> Result<Bytes, E> {
            BASE64
                .decode(encoded)
                .map(Bytes::from)
                .map_err(|e| E::custom(format!("layerPartBlob is not valid base64: {e}")))
        }
    }

    deserializer.deserialize_str(Base64Visitor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamps_are_epoch_seconds_with_fraction() {
        assert_eq!(serde_json::to_value(Timestamp::from_millis(1_700_043_200_500)).unwrap(), json!(1_700_043_200.5));
        let whole = serde_json::to_string(&Timestamp::from_millis(1_700_043_200_000)).unwrap();
        assert_eq!(whole, "1700043200.0");
        assert_eq!(Timestamp::from(UNIX_EPOCH + std::time::Duration::from_millis(1234)).millis(), 1234);
    }

    #[test]
    fn responses_omit_absent_members_and_keep_model_names() {
        let detail = ImageDetail {
            registry_id: "000000000000".into(),
            repository_name: "app".into(),
            image_digest: "sha256:aa".into(),
            image_tags: vec![],
            image_size_in_bytes: Some(42),
            image_pushed_at: Some(Timestamp::from_millis(1_000)),
            image_manifest_media_type: Some("application/vnd.oci.image.index.v1+json".into()),
            artifact_media_type: None,
            last_recorded_pull_time: None,
            subject_manifest_digest: None,
            image_status: Some(ImageStatus::Active),
            last_archived_at: None,
            last_activated_at: None,
        };
        assert_eq!(
            serde_json::to_value(&detail).unwrap(),
            json!({
                "registryId": "000000000000",
                "repositoryName": "app",
                "imageDigest": "sha256:aa",
                "imageSizeInBytes": 42,
                "imagePushedAt": 1.0,
                "imageManifestMediaType": "application/vnd.oci.image.index.v1+json",
                "imageStatus": "ACTIVE",
            })
        );
        let tags = ListTagsForResourceResponse { tags: vec![Tag { key: "team".into(), value: "web".into() }] };
        assert_eq!(serde_json::to_value(tags).unwrap(), json!({"tags": [{"Key": "team", "Value": "web"}]}));
        assert_eq!(serde_json::to_value(TagResourceResponse {}).unwrap(), json!({}));
    }

    #[test]
    fn enum_values_outside_the_model_deserialize_as_unrecognized() {
        let request: PutImageTagMutabilityRequest = serde_json::from_value(json!({
            "repositoryName": "app",
            "imageTagMutability": "SOMETIMES",
        }))
        .unwrap();
        assert_eq!(request.image_tag_mutability, ImageTagMutability::Unrecognized);
        let request: PutImageTagMutabilityRequest = serde_json::from_value(json!({
            "repositoryName": "app",
            "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
            "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "dev-*"}],
        }))
        .unwrap();
        assert_eq!(request.image_tag_mutability, ImageTagMutability::ImmutableWithExclusion);
        assert_eq!(
            request.image_tag_mutability_exclusion_filters.unwrap()[0].filter_type,
            ImageTagMutabilityExclusionFilterType::Wildcard
        );
    }

    #[test]
    fn layer_part_blobs_are_base64_decoded() {
        let request: UploadLayerPartRequest = serde_json::from_value(json!({
            "repositoryName": "app",
            "uploadId": "5f0bd0a4-40b8-4a5f-a1d3-7dbe0b8f3d3a",
            "partFirstByte": 0,
            "partLastByte": 4,
            "layerPartBlob": "aGVsbG8=",
        }))
        .unwrap();
        assert_eq!(&request.layer_part_blob[..], b"hello");
        let bad = serde_json::from_value::<UploadLayerPartRequest>(json!({
            "repositoryName": "app", "uploadId": "u", "partFirstByte": 0, "partLastByte": 4,
            "layerPartBlob": "not base64!",
        }));
        assert!(bad.unwrap_err().to_string().contains("layerPartBlob is not valid base64"));
    }
}
