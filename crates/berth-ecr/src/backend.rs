//! What the ECR API needs from the registry service: one method per served operation.
//!
//! Requests arrive deserialised and validated (see [`crate::validate`]); enum members never
//! hold `Unrecognized`. The principal is the verified signer.

use async_trait::async_trait;

use crate::error::EcrError;
use crate::shapes::*;
use crate::sigv4::Principal;

#[async_trait]
pub trait EcrBackend: Send + Sync + 'static {
    async fn get_authorization_token(
        &self,
        principal: &Principal,
        request: GetAuthorizationTokenRequest,
    ) -> Result<GetAuthorizationTokenResponse, EcrError>;

    async fn create_repository(
        &self,
        principal: &Principal,
        request: CreateRepositoryRequest,
    ) -> Result<CreateRepositoryResponse, EcrError>;

    async fn describe_repositories(
        &self,
        principal: &Principal,
        request: DescribeRepositoriesRequest,
    ) -> Result<DescribeRepositoriesResponse, EcrError>;

    async fn delete_repository(
        &self,
        principal: &Principal,
        request: DeleteRepositoryRequest,
    ) -> Result<DeleteRepositoryResponse, EcrError>;

    async fn describe_images(
        &self,
        principal: &Principal,
        request: DescribeImagesRequest,
    ) -> Result<DescribeImagesResponse, EcrError>;

    async fn list_images(
        &self,
        principal: &Principal,
        request: ListImagesRequest,
    ) -> Result<ListImagesResponse, EcrError>;

    async fn batch_get_image(
        &self,
        principal: &Principal,
        request: BatchGetImageRequest,
    ) -> Result<BatchGetImageResponse, EcrError>;

    async fn put_image(&self, principal: &Principal, request: PutImageRequest) -> Result<PutImageResponse, EcrError>;

    async fn batch_delete_image(
        &self,
        principal: &Principal,
        request: BatchDeleteImageRequest,
    ) -> Result<BatchDeleteImageResponse, EcrError>;

    async fn batch_check_layer_availability(
        &self,
        principal: &Principal,
        request: BatchCheckLayerAvailabilityRequest,
    ) -> Result<BatchCheckLayerAvailabilityResponse, EcrError>;

    async fn initiate_layer_upload(
        &self,
        principal: &Principal,
        request: InitiateLayerUploadRequest,
    ) -> Result<InitiateLayerUploadResponse, EcrError>;

    async fn upload_layer_part(
        &self,
        principal: &Principal,
        request: UploadLayerPartRequest,
    ) -> Result<UploadLayerPartResponse, EcrError>;

    async fn complete_layer_upload(
        &self,
        principal: &Principal,
        request: CompleteLayerUploadRequest,
    ) -> Result<CompleteLayerUploadResponse, EcrError>;

    async fn get_download_url_for_layer(
        &self,
        principal: &Principal,
        request: GetDownloadUrlForLayerRequest,
    ) -> Result<GetDownloadUrlForLayerResponse, EcrError>;

    async fn tag_resource(
        &self,
        principal: &Principal,
        request: TagResourceRequest,
    ) -> Result<TagResourceResponse, EcrError>;

    async fn untag_resource(
        &self,
        principal: &Principal,
        request: UntagResourceRequest,
    ) -> Result<UntagResourceResponse, EcrError>;

    async fn list_tags_for_resource(
        &self,
        principal: &Principal,
        request: ListTagsForResourceRequest,
    ) -> Result<ListTagsForResourceResponse, EcrError>;

    async fn describe_registry(
        &self,
        principal: &Principal,
        request: DescribeRegistryRequest,
    ) -> Result<DescribeRegistryResponse, EcrError>;

    async fn put_image_scanning_configuration(
        &self,
        principal: &Principal,
        request: PutImageScanningConfigurationRequest,
    ) -> Result<PutImageScanningConfigurationResponse, EcrError>;

    async fn get_registry_scanning_configuration(
        &self,
        principal: &Principal,
        request: GetRegistryScanningConfigurationRequest,
    ) -> Result<GetRegistryScanningConfigurationResponse, EcrError>;

    async fn batch_get_repository_scanning_configuration(
        &self,
        principal: &Principal,
        request: BatchGetRepositoryScanningConfigurationRequest,
    ) -> Result<BatchGetRepositoryScanningConfigurationResponse, EcrError>;

    async fn list_image_referrers(
        &self,
        principal: &Principal,
        request: ListImageReferrersRequest,
    ) -> Result<ListImageReferrersResponse, EcrError>;

    async fn put_image_tag_mutability(
        &self,
        principal: &Principal,
        request: PutImageTagMutabilityRequest,
    ) -> Result<PutImageTagMutabilityResponse, EcrError>;

    async fn put_lifecycle_policy(
        &self,
        principal: &Principal,
        request: PutLifecyclePolicyRequest,
    ) -> Result<PutLifecyclePolicyResponse, EcrError>;

    async fn get_lifecycle_policy(
        &self,
        principal: &Principal,
        request: GetLifecyclePolicyRequest,
    ) -> Result<GetLifecyclePolicyResponse, EcrError>;

    async fn delete_lifecycle_policy(
        &self,
        principal: &Principal,
        request: DeleteLifecyclePolicyRequest,
    ) -> Result<DeleteLifecyclePolicyResponse, EcrError>;

    async fn start_lifecycle_policy_preview(
        &self,
        principal: &Principal,
        request: StartLifecyclePolicyPreviewRequest,
    ) -> Result<StartLifecyclePolicyPreviewResponse, EcrError>;

    async fn get_lifecycle_policy_preview(
        &self,
        principal: &Principal,
        request: GetLifecyclePolicyPreviewRequest,
    ) -> Result<GetLifecyclePolicyPreviewResponse, EcrError>;

    async fn set_repository_policy(
        &self,
        principal: &Principal,
        request: SetRepositoryPolicyRequest,
    ) -> Result<SetRepositoryPolicyResponse, EcrError>;

    async fn get_repository_policy(
        &self,
        principal: &Principal,
        request: GetRepositoryPolicyRequest,
    ) -> Result<GetRepositoryPolicyResponse, EcrError>;

    async fn delete_repository_policy(
        &self,
        principal: &Principal,
        request: DeleteRepositoryPolicyRequest,
    ) -> Result<DeleteRepositoryPolicyResponse, EcrError>;
}
