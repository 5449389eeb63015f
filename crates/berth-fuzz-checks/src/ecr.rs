//! ECR JSON 1.1 request bodies: decoding into each operation's input shape, then validation.

use berth_ecr::shapes::*;
use berth_ecr::validate::Validate;
use serde::de::DeserializeOwned;

/// Decodes `body` as the router does (an all-whitespace body is `{}`) and validates what
/// decodes; neither may panic, and validation is a pure function of the request.
fn decode_and_validate<T: DeserializeOwned + Validate>(body: &[u8]) {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    if let Ok(request) = serde_json::from_slice::<T>(body) {
        let first = request.validate().map_err(|e| format!("{e:?}"));
        assert_eq!(first, request.validate().map_err(|e| format!("{e:?}")));
    }
}

macro_rules! shapes {
    ($($shape:ident),* $(,)?) => {
        const SHAPES: &[fn(&[u8])] = &[$(decode_and_validate::<$shape>,)*];
    };
}

shapes![
    GetAuthorizationTokenRequest,
    CreateRepositoryRequest,
    DescribeRepositoriesRequest,
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
    TagResourceRequest,
    UntagResourceRequest,
    ListTagsForResourceRequest,
    DescribeRegistryRequest,
    PutImageScanningConfigurationRequest,
    GetRegistryScanningConfigurationRequest,
    BatchGetRepositoryScanningConfigurationRequest,
    ListImageReferrersRequest,
    PutImageTagMutabilityRequest,
    PutLifecyclePolicyRequest,
    LifecyclePolicyRequest,
    StartLifecyclePolicyPreviewRequest,
    GetLifecyclePolicyPreviewRequest,
    SetRepositoryPolicyRequest,
    RepositoryPolicyRequest,
    ImageRequest,
    DescribeImageScanFindingsRequest,
];

/// The first byte picks the operation's input shape (every one Berth serves), the rest is the
/// JSON body.
pub fn ecr_json(data: &[u8]) {
    let Some((selector, body)) = data.split_first() else { return };
    SHAPES[usize::from(*selector) % SHAPES.len()](body);
}
