//! IAM action names: one constant per ECR operation (the names IAM policies use, `ecr:<Operation>`),
//! plus the permission-only actions (`BatchImportUpstreamImage` for pull-through cache imports,
//! `ReplicateImage` for replication); the single source for both planes. The `/v2/` plane maps its requests onto them as AWS documents
//! for ECR's Docker Registry API: manifest GET/HEAD and referrers → [`BATCH_GET_IMAGE`], blob GET →
//! [`GET_DOWNLOAD_URL_FOR_LAYER`], blob HEAD → [`BATCH_CHECK_LAYER_AVAILABILITY`], upload
//! POST/PATCH/PUT → [`INITIATE_LAYER_UPLOAD`]/[`UPLOAD_LAYER_PART`]/[`COMPLETE_LAYER_UPLOAD`],
//! manifest PUT → [`PUT_IMAGE`], DELETE → [`BATCH_DELETE_IMAGE`], tags/list → [`LIST_IMAGES`],
//! `_catalog` → [`DESCRIBE_REPOSITORIES`].

macro_rules! ecr_actions {
    ($($constant:ident = $operation:ident,)*) => {
        $(pub const $constant: &str = concat!("ecr:", stringify!($operation));)*

        /// Every ECR action, in the API's alphabetical order.
        pub const ALL_ECR: &[&str] = &[$($constant,)*];
    };
}

ecr_actions! {
    BATCH_CHECK_LAYER_AVAILABILITY = BatchCheckLayerAvailability,
    BATCH_DELETE_IMAGE = BatchDeleteImage,
    BATCH_GET_IMAGE = BatchGetImage,
    BATCH_GET_REPOSITORY_SCANNING_CONFIGURATION = BatchGetRepositoryScanningConfiguration,
    BATCH_IMPORT_UPSTREAM_IMAGE = BatchImportUpstreamImage,
    COMPLETE_LAYER_UPLOAD = CompleteLayerUpload,
    CREATE_PULL_THROUGH_CACHE_RULE = CreatePullThroughCacheRule,
    CREATE_REPOSITORY = CreateRepository,
    CREATE_REPOSITORY_CREATION_TEMPLATE = CreateRepositoryCreationTemplate,
    DELETE_LIFECYCLE_POLICY = DeleteLifecyclePolicy,
    DELETE_PULL_THROUGH_CACHE_RULE = DeletePullThroughCacheRule,
    DELETE_REGISTRY_POLICY = DeleteRegistryPolicy,
    DELETE_REPOSITORY = DeleteRepository,
    DELETE_REPOSITORY_CREATION_TEMPLATE = DeleteRepositoryCreationTemplate,
    DELETE_REPOSITORY_POLICY = DeleteRepositoryPolicy,
    DELETE_SIGNING_CONFIGURATION = DeleteSigningConfiguration,
    DEREGISTER_PULL_TIME_UPDATE_EXCLUSION = DeregisterPullTimeUpdateExclusion,
    DESCRIBE_IMAGE_REPLICATION_STATUS = DescribeImageReplicationStatus,
    DESCRIBE_IMAGE_SCAN_FINDINGS = DescribeImageScanFindings,
    DESCRIBE_IMAGE_SIGNING_STATUS = DescribeImageSigningStatus,
    DESCRIBE_IMAGES = DescribeImages,
    DESCRIBE_PULL_THROUGH_CACHE_RULES = DescribePullThroughCacheRules,
    DESCRIBE_REGISTRY = DescribeRegistry,
    DESCRIBE_REPOSITORIES = DescribeRepositories,
    DESCRIBE_REPOSITORY_CREATION_TEMPLATES = DescribeRepositoryCreationTemplates,
    GET_ACCOUNT_SETTING = GetAccountSetting,
    GET_AUTHORIZATION_TOKEN = GetAuthorizationToken,
    GET_DOWNLOAD_URL_FOR_LAYER = GetDownloadUrlForLayer,
    GET_LIFECYCLE_POLICY = GetLifecyclePolicy,
    GET_LIFECYCLE_POLICY_PREVIEW = GetLifecyclePolicyPreview,
    GET_REGISTRY_POLICY = GetRegistryPolicy,
    GET_REGISTRY_SCANNING_CONFIGURATION = GetRegistryScanningConfiguration,
    GET_REPOSITORY_POLICY = GetRepositoryPolicy,
    GET_SIGNING_CONFIGURATION = GetSigningConfiguration,
    INITIATE_LAYER_UPLOAD = InitiateLayerUpload,
    LIST_IMAGE_REFERRERS = ListImageReferrers,
    LIST_IMAGES = ListImages,
    LIST_PULL_TIME_UPDATE_EXCLUSIONS = ListPullTimeUpdateExclusions,
    LIST_TAGS_FOR_RESOURCE = ListTagsForResource,
    PUT_ACCOUNT_SETTING = PutAccountSetting,
    PUT_IMAGE = PutImage,
    PUT_IMAGE_SCANNING_CONFIGURATION = PutImageScanningConfiguration,
    PUT_IMAGE_TAG_MUTABILITY = PutImageTagMutability,
    PUT_LIFECYCLE_POLICY = PutLifecyclePolicy,
    PUT_REGISTRY_POLICY = PutRegistryPolicy,
    PUT_REGISTRY_SCANNING_CONFIGURATION = PutRegistryScanningConfiguration,
    PUT_REPLICATION_CONFIGURATION = PutReplicationConfiguration,
    PUT_SIGNING_CONFIGURATION = PutSigningConfiguration,
    REGISTER_PULL_TIME_UPDATE_EXCLUSION = RegisterPullTimeUpdateExclusion,
    REPLICATE_IMAGE = ReplicateImage,
    SET_REPOSITORY_POLICY = SetRepositoryPolicy,
    START_IMAGE_SCAN = StartImageScan,
    START_LIFECYCLE_POLICY_PREVIEW = StartLifecyclePolicyPreview,
    TAG_RESOURCE = TagResource,
    UNTAG_RESOURCE = UntagResource,
    UPDATE_IMAGE_STORAGE_CLASS = UpdateImageStorageClass,
    UPDATE_PULL_THROUGH_CACHE_RULE = UpdatePullThroughCacheRule,
    UPDATE_REPOSITORY_CREATION_TEMPLATE = UpdateRepositoryCreationTemplate,
    UPLOAD_LAYER_PART = UploadLayerPart,
    VALIDATE_PULL_THROUGH_CACHE_RULE = ValidatePullThroughCacheRule,
}

/// Scraping `/metrics` on the registry's port (Berth's own action; the root user always may).
pub const GET_METRICS: &str = "berth:GetMetrics";

/// The IAM action of ECR operation `operation` (`"PutImage"` → `"ecr:PutImage"`), without
/// allocating: the ECR plane resolves its `X-Amz-Target` operation once per request.
pub fn ecr_action(operation: &str) -> Option<&'static str> {
    ALL_ECR.iter().copied().find(|action| action.strip_prefix("ecr:") == Some(operation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_is_ecr_prefixed_and_sorted() {
        assert!(ALL_ECR.iter().all(|a| a.starts_with("ecr:")));
        assert!(ALL_ECR.windows(2).all(|w| w[0] < w[1]), "sorted, unique");
        assert_eq!(ecr_action("PutImage"), Some(PUT_IMAGE));
        assert_eq!(ecr_action("putimage"), None, "operation names are exact");
        assert_eq!(ecr_action("Nope"), None);
    }
}
