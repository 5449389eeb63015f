//! What the ECR API needs from the registry service: one method per served operation.
//!
//! Requests arrive deserialised, validated (see [`crate::validate`]) and authorized; enum members
//! never hold `Unrecognized`. The context names the verified signer.

use async_trait::async_trait;

use crate::authorization::Resources;
use crate::error::EcrError;
use crate::shapes::*;
use berth_iam::{RequestContext, Tags};

#[async_trait]
pub trait EcrBackend: Send + Sync + 'static {
    /// `AccessDeniedException` unless the caller may perform `action` on `resources`; the router
    /// asks before every operation. Also the errors an operation gives for resources that cannot
    /// be this registry's (another `registryId`, a malformed name or ARN), as it would give them.
    /// `request_tags` are the tags the request sets ([`crate::authorization::Scoped::request_tags`]).
    async fn authorize(
        &self,
        ctx: &RequestContext,
        action: &'static str,
        resources: Resources<'_>,
        request_tags: Option<&(dyn Tags + Sync)>,
    ) -> Result<(), EcrError>;

    async fn get_authorization_token(
        &self,
        ctx: &RequestContext,
        request: GetAuthorizationTokenRequest,
    ) -> Result<GetAuthorizationTokenResponse, EcrError>;

    async fn create_repository(
        &self,
        ctx: &RequestContext,
        request: CreateRepositoryRequest,
    ) -> Result<CreateRepositoryResponse, EcrError>;

    async fn describe_repositories(
        &self,
        ctx: &RequestContext,
        request: DescribeRepositoriesRequest,
    ) -> Result<DescribeRepositoriesResponse, EcrError>;

    async fn delete_repository(
        &self,
        ctx: &RequestContext,
        request: DeleteRepositoryRequest,
    ) -> Result<DeleteRepositoryResponse, EcrError>;

    async fn describe_images(
        &self,
        ctx: &RequestContext,
        request: DescribeImagesRequest,
    ) -> Result<DescribeImagesResponse, EcrError>;

    async fn list_images(
        &self,
        ctx: &RequestContext,
        request: ListImagesRequest,
    ) -> Result<ListImagesResponse, EcrError>;

    async fn batch_get_image(
        &self,
        ctx: &RequestContext,
        request: BatchGetImageRequest,
    ) -> Result<BatchGetImageResponse, EcrError>;

    async fn put_image(&self, ctx: &RequestContext, request: PutImageRequest) -> Result<PutImageResponse, EcrError>;

    async fn batch_delete_image(
        &self,
        ctx: &RequestContext,
        request: BatchDeleteImageRequest,
    ) -> Result<BatchDeleteImageResponse, EcrError>;

    async fn batch_check_layer_availability(
        &self,
        ctx: &RequestContext,
        request: BatchCheckLayerAvailabilityRequest,
    ) -> Result<BatchCheckLayerAvailabilityResponse, EcrError>;

    async fn initiate_layer_upload(
        &self,
        ctx: &RequestContext,
        request: InitiateLayerUploadRequest,
    ) -> Result<InitiateLayerUploadResponse, EcrError>;

    async fn upload_layer_part(
        &self,
        ctx: &RequestContext,
        request: UploadLayerPartRequest,
    ) -> Result<UploadLayerPartResponse, EcrError>;

    async fn complete_layer_upload(
        &self,
        ctx: &RequestContext,
        request: CompleteLayerUploadRequest,
    ) -> Result<CompleteLayerUploadResponse, EcrError>;

    async fn get_download_url_for_layer(
        &self,
        ctx: &RequestContext,
        request: GetDownloadUrlForLayerRequest,
    ) -> Result<GetDownloadUrlForLayerResponse, EcrError>;

    async fn tag_resource(
        &self,
        ctx: &RequestContext,
        request: TagResourceRequest,
    ) -> Result<TagResourceResponse, EcrError>;

    async fn untag_resource(
        &self,
        ctx: &RequestContext,
        request: UntagResourceRequest,
    ) -> Result<UntagResourceResponse, EcrError>;

    async fn list_tags_for_resource(
        &self,
        ctx: &RequestContext,
        request: ListTagsForResourceRequest,
    ) -> Result<ListTagsForResourceResponse, EcrError>;

    async fn put_replication_configuration(
        &self,
        ctx: &RequestContext,
        request: PutReplicationConfigurationRequest,
    ) -> Result<PutReplicationConfigurationResponse, EcrError>;

    async fn describe_image_replication_status(
        &self,
        ctx: &RequestContext,
        request: ImageRequest,
    ) -> Result<DescribeImageReplicationStatusResponse, EcrError>;

    async fn put_registry_scanning_configuration(
        &self,
        ctx: &RequestContext,
        request: PutRegistryScanningConfigurationRequest,
    ) -> Result<PutRegistryScanningConfigurationResponse, EcrError>;

    async fn start_image_scan(&self, ctx: &RequestContext, request: ImageRequest) -> Result<Refused, EcrError>;

    async fn update_image_storage_class(
        &self,
        ctx: &RequestContext,
        request: UpdateImageStorageClassRequest,
    ) -> Result<UpdateImageStorageClassResponse, EcrError>;

    async fn describe_image_scan_findings(
        &self,
        ctx: &RequestContext,
        request: DescribeImageScanFindingsRequest,
    ) -> Result<Refused, EcrError>;

    async fn put_signing_configuration(
        &self,
        ctx: &RequestContext,
        request: PutSigningConfigurationRequest,
    ) -> Result<Refused, EcrError>;

    async fn get_signing_configuration(
        &self,
        ctx: &RequestContext,
        request: SigningConfigurationRequest,
    ) -> Result<Refused, EcrError>;

    async fn delete_signing_configuration(
        &self,
        ctx: &RequestContext,
        request: SigningConfigurationRequest,
    ) -> Result<Refused, EcrError>;

    async fn describe_image_signing_status(
        &self,
        ctx: &RequestContext,
        request: ImageRequest,
    ) -> Result<DescribeImageSigningStatusResponse, EcrError>;

    async fn describe_registry(
        &self,
        ctx: &RequestContext,
        request: DescribeRegistryRequest,
    ) -> Result<DescribeRegistryResponse, EcrError>;

    async fn put_image_scanning_configuration(
        &self,
        ctx: &RequestContext,
        request: PutImageScanningConfigurationRequest,
    ) -> Result<PutImageScanningConfigurationResponse, EcrError>;

    async fn get_registry_scanning_configuration(
        &self,
        ctx: &RequestContext,
        request: GetRegistryScanningConfigurationRequest,
    ) -> Result<GetRegistryScanningConfigurationResponse, EcrError>;

    async fn put_registry_policy(
        &self,
        ctx: &RequestContext,
        request: PutRegistryPolicyRequest,
    ) -> Result<RegistryPolicyResponse, EcrError>;

    async fn get_registry_policy(
        &self,
        ctx: &RequestContext,
        request: GetRegistryPolicyRequest,
    ) -> Result<RegistryPolicyResponse, EcrError>;

    async fn delete_registry_policy(
        &self,
        ctx: &RequestContext,
        request: DeleteRegistryPolicyRequest,
    ) -> Result<RegistryPolicyResponse, EcrError>;

    async fn get_account_setting(
        &self,
        ctx: &RequestContext,
        request: GetAccountSettingRequest,
    ) -> Result<AccountSettingResponse, EcrError>;

    async fn put_account_setting(
        &self,
        ctx: &RequestContext,
        request: PutAccountSettingRequest,
    ) -> Result<AccountSettingResponse, EcrError>;

    async fn batch_get_repository_scanning_configuration(
        &self,
        ctx: &RequestContext,
        request: BatchGetRepositoryScanningConfigurationRequest,
    ) -> Result<BatchGetRepositoryScanningConfigurationResponse, EcrError>;

    async fn list_image_referrers(
        &self,
        ctx: &RequestContext,
        request: ListImageReferrersRequest,
    ) -> Result<ListImageReferrersResponse, EcrError>;

    async fn put_image_tag_mutability(
        &self,
        ctx: &RequestContext,
        request: PutImageTagMutabilityRequest,
    ) -> Result<PutImageTagMutabilityResponse, EcrError>;

    async fn put_lifecycle_policy(
        &self,
        ctx: &RequestContext,
        request: PutLifecyclePolicyRequest,
    ) -> Result<PutLifecyclePolicyResponse, EcrError>;

    async fn get_lifecycle_policy(
        &self,
        ctx: &RequestContext,
        request: GetLifecyclePolicyRequest,
    ) -> Result<GetLifecyclePolicyResponse, EcrError>;

    async fn delete_lifecycle_policy(
        &self,
        ctx: &RequestContext,
        request: DeleteLifecyclePolicyRequest,
    ) -> Result<DeleteLifecyclePolicyResponse, EcrError>;

    async fn start_lifecycle_policy_preview(
        &self,
        ctx: &RequestContext,
        request: StartLifecyclePolicyPreviewRequest,
    ) -> Result<StartLifecyclePolicyPreviewResponse, EcrError>;

    async fn get_lifecycle_policy_preview(
        &self,
        ctx: &RequestContext,
        request: GetLifecyclePolicyPreviewRequest,
    ) -> Result<GetLifecyclePolicyPreviewResponse, EcrError>;

    async fn set_repository_policy(
        &self,
        ctx: &RequestContext,
        request: SetRepositoryPolicyRequest,
    ) -> Result<SetRepositoryPolicyResponse, EcrError>;

    async fn get_repository_policy(
        &self,
        ctx: &RequestContext,
        request: GetRepositoryPolicyRequest,
    ) -> Result<GetRepositoryPolicyResponse, EcrError>;

    async fn delete_repository_policy(
        &self,
        ctx: &RequestContext,
        request: DeleteRepositoryPolicyRequest,
    ) -> Result<DeleteRepositoryPolicyResponse, EcrError>;

    async fn create_pull_through_cache_rule(
        &self,
        ctx: &RequestContext,
        request: CreatePullThroughCacheRuleRequest,
    ) -> Result<CreatePullThroughCacheRuleResponse, EcrError>;

    async fn describe_pull_through_cache_rules(
        &self,
        ctx: &RequestContext,
        request: DescribePullThroughCacheRulesRequest,
    ) -> Result<DescribePullThroughCacheRulesResponse, EcrError>;

    async fn update_pull_through_cache_rule(
        &self,
        ctx: &RequestContext,
        request: UpdatePullThroughCacheRuleRequest,
    ) -> Result<UpdatePullThroughCacheRuleResponse, EcrError>;

    async fn delete_pull_through_cache_rule(
        &self,
        ctx: &RequestContext,
        request: DeletePullThroughCacheRuleRequest,
    ) -> Result<DeletePullThroughCacheRuleResponse, EcrError>;

    async fn validate_pull_through_cache_rule(
        &self,
        ctx: &RequestContext,
        request: ValidatePullThroughCacheRuleRequest,
    ) -> Result<ValidatePullThroughCacheRuleResponse, EcrError>;

    async fn create_repository_creation_template(
        &self,
        ctx: &RequestContext,
        request: CreateRepositoryCreationTemplateRequest,
    ) -> Result<RepositoryCreationTemplateResponse, EcrError>;

    async fn describe_repository_creation_templates(
        &self,
        ctx: &RequestContext,
        request: DescribeRepositoryCreationTemplatesRequest,
    ) -> Result<DescribeRepositoryCreationTemplatesResponse, EcrError>;

    async fn update_repository_creation_template(
        &self,
        ctx: &RequestContext,
        request: UpdateRepositoryCreationTemplateRequest,
    ) -> Result<RepositoryCreationTemplateResponse, EcrError>;

    async fn delete_repository_creation_template(
        &self,
        ctx: &RequestContext,
        request: DeleteRepositoryCreationTemplateRequest,
    ) -> Result<RepositoryCreationTemplateResponse, EcrError>;

    async fn register_pull_time_update_exclusion(
        &self,
        ctx: &RequestContext,
        request: PullTimeUpdateExclusionRequest,
    ) -> Result<RegisterPullTimeUpdateExclusionResponse, EcrError>;

    async fn deregister_pull_time_update_exclusion(
        &self,
        ctx: &RequestContext,
        request: PullTimeUpdateExclusionRequest,
    ) -> Result<DeregisterPullTimeUpdateExclusionResponse, EcrError>;

    async fn list_pull_time_update_exclusions(
        &self,
        ctx: &RequestContext,
        request: ListPullTimeUpdateExclusionsRequest,
    ) -> Result<ListPullTimeUpdateExclusionsResponse, EcrError>;
}
