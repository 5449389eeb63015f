//! What each operation touches, read from its typed request: the router authorizes the
//! operation's action (`ecr:<Operation>`) on these resources after the request decoded and
//! validated, and before the backend runs. Every request shape the router dispatches must
//! implement [`Scoped`], so no served operation can skip the check.

use crate::shapes::*;

/// The resources of one request, as it names them (names and ARNs not yet resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resources<'a> {
    /// Registry-wide calls: IAM's `*`.
    Registry,
    /// A listing over every repository of a registry (`…:repository/*`); the backend then shows
    /// only the repositories the caller may see.
    AllRepositories { registry_id: Option<&'a str> },
    /// One repository of a registry.
    Repository { registry_id: Option<&'a str>, name: &'a str },
    /// Several repositories of a registry; the caller must be allowed on each.
    Repositories { registry_id: Option<&'a str>, names: &'a [String] },
    /// A repository named by its ARN (the tagging operations).
    RepositoryArn(&'a str),
}

/// Implemented by every request shape the router dispatches.
pub trait Scoped {
    fn resources(&self) -> Resources<'_>;

    /// The tags the request sets, which policies see as `aws:RequestTag/<key>` and `aws:TagKeys`
    /// (CreateRepository and TagResource; UntagResource names keys only, so their values are
    /// empty). `None` where the request sets none: the keys are absent.
    fn request_tags(&self) -> Option<Vec<(&str, &str)>> {
        None
    }
}

fn tag_pairs(tags: &[Tag]) -> Vec<(&str, &str)> {
    tags.iter().map(|t| (t.key.as_str(), t.value.as_str())).collect()
}

macro_rules! scoped {
    (registry: $($shape:ty),* $(,)?) => {
        $(impl Scoped for $shape {
            fn resources(&self) -> Resources<'_> {
                Resources::Registry
            }
        })*
    };
    (repository: $($shape:ty),* $(,)?) => {
        $(impl Scoped for $shape {
            fn resources(&self) -> Resources<'_> {
                Resources::Repository { registry_id: self.registry_id.as_deref(), name: &self.repository_name }
            }
        })*
    };
    (arn: $($shape:ty),* $(,)?) => {
        $(impl Scoped for $shape {
            fn resources(&self) -> Resources<'_> {
                Resources::RepositoryArn(&self.resource_arn)
            }
        })*
    };
}

scoped!(registry:
    GetAuthorizationTokenRequest,
    DescribeRegistryRequest,
    GetRegistryScanningConfigurationRequest,
    PutReplicationConfigurationRequest,
    PutRegistryScanningConfigurationRequest,
    PutSigningConfigurationRequest,
    SigningConfigurationRequest,
    PutRegistryPolicyRequest,
    GetRegistryPolicyRequest,
    DeleteRegistryPolicyRequest,
    GetAccountSettingRequest,
    PutAccountSettingRequest,
    CreatePullThroughCacheRuleRequest,
    DescribePullThroughCacheRulesRequest,
    UpdatePullThroughCacheRuleRequest,
    PullThroughCacheRuleRequest,
    CreateRepositoryCreationTemplateRequest,
    UpdateRepositoryCreationTemplateRequest,
    DescribeRepositoryCreationTemplatesRequest,
    DeleteRepositoryCreationTemplateRequest,
    PullTimeUpdateExclusionRequest,
    ListPullTimeUpdateExclusionsRequest,
);

scoped!(repository:
    DeleteRepositoryRequest,
    DescribeImagesRequest,
    ListImagesRequest,
    BatchGetImageRequest,
    PutImageRequest,
    BatchDeleteImageRequest,
    BatchCheckLayerAvailabilityRequest,
    InitiateLayerUploadRequest,
    UploadLayerPartRequest,
    CompleteLayerUploadRequest,
    GetDownloadUrlForLayerRequest,
    PutImageScanningConfigurationRequest,
    ListImageReferrersRequest,
    ImageRequest,
    DescribeImageScanFindingsRequest,
    UpdateImageStorageClassRequest,
    PutImageTagMutabilityRequest,
    PutLifecyclePolicyRequest,
    LifecyclePolicyRequest,
    StartLifecyclePolicyPreviewRequest,
    GetLifecyclePolicyPreviewRequest,
    SetRepositoryPolicyRequest,
    RepositoryPolicyRequest,
);

scoped!(arn: ListTagsForResourceRequest);

impl Scoped for CreateRepositoryRequest {
    fn resources(&self) -> Resources<'_> {
        Resources::Repository { registry_id: self.registry_id.as_deref(), name: &self.repository_name }
    }

    fn request_tags(&self) -> Option<Vec<(&str, &str)>> {
        self.tags.as_deref().map(tag_pairs)
    }
}

impl Scoped for TagResourceRequest {
    fn resources(&self) -> Resources<'_> {
        Resources::RepositoryArn(&self.resource_arn)
    }

    fn request_tags(&self) -> Option<Vec<(&str, &str)>> {
        Some(tag_pairs(&self.tags))
    }
}

impl Scoped for UntagResourceRequest {
    fn resources(&self) -> Resources<'_> {
        Resources::RepositoryArn(&self.resource_arn)
    }

    fn request_tags(&self) -> Option<Vec<(&str, &str)>> {
        Some(self.tag_keys.iter().map(|key| (key.as_str(), "")).collect())
    }
}

impl Scoped for DescribeRepositoriesRequest {
    fn resources(&self) -> Resources<'_> {
        let registry_id = self.registry_id.as_deref();
        match &self.repository_names {
            Some(names) => Resources::Repositories { registry_id, names },
            None => Resources::AllRepositories { registry_id },
        }
    }
}

impl Scoped for BatchGetRepositoryScanningConfigurationRequest {
    fn resources(&self) -> Resources<'_> {
        Resources::Repositories { registry_id: None, names: &self.repository_names }
    }
}
