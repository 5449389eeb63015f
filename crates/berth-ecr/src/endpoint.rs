//! The operation a request names in `X-Amz-Target`.
//!
//! Every operation of the ECR model has a variant, so a known-but-unserved operation
//! (`NotImplemented`) is told apart from a target that is not ECR at all (`UnknownOperation`).

use axum::http::HeaderMap;

use crate::error::EcrError;
use crate::validate::{MAX_LAYER_PART_BYTES, MAX_MANIFEST_BYTES};

pub const TARGET_HEADER: &str = "x-amz-target";
pub const TARGET_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921";

macro_rules! endpoints {
    ($($op:ident),* $(,)?) => {
        /// One variant per operation of `ecr/2015-09-21/service-2.json`, spelled as AWS does.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Endpoint {
            $($op,)*
        }

        impl Endpoint {
            pub const ALL: &'static [Endpoint] = &[$(Endpoint::$op,)*];

            pub fn name(self) -> &'static str {
                match self {
                    $(Endpoint::$op => stringify!($op),)*
                }
            }

            /// The IAM action of the operation, `ecr:<Operation>`.
            pub fn action(self) -> &'static str {
                match self {
                    $(Endpoint::$op => concat!("ecr:", stringify!($op)),)*
                }
            }

            fn from_name(name: &str) -> Option<Endpoint> {
                match name {
                    $(stringify!($op) => Some(Endpoint::$op),)*
                    _ => None,
                }
            }
        }
    };
}

endpoints! {
    BatchCheckLayerAvailability,
    BatchDeleteImage,
    BatchGetImage,
    BatchGetRepositoryScanningConfiguration,
    CompleteLayerUpload,
    CreatePullThroughCacheRule,
    CreateRepository,
    CreateRepositoryCreationTemplate,
    DeleteLifecyclePolicy,
    DeletePullThroughCacheRule,
    DeleteRegistryPolicy,
    DeleteRepository,
    DeleteRepositoryCreationTemplate,
    DeleteRepositoryPolicy,
    DeleteSigningConfiguration,
    DeregisterPullTimeUpdateExclusion,
    DescribeImageReplicationStatus,
    DescribeImageScanFindings,
    DescribeImageSigningStatus,
    DescribeImages,
    DescribePullThroughCacheRules,
    DescribeRegistry,
    DescribeRepositories,
    DescribeRepositoryCreationTemplates,
    GetAccountSetting,
    GetAuthorizationToken,
    GetDownloadUrlForLayer,
    GetLifecyclePolicy,
    GetLifecyclePolicyPreview,
    GetRegistryPolicy,
    GetRegistryScanningConfiguration,
    GetRepositoryPolicy,
    GetSigningConfiguration,
    InitiateLayerUpload,
    ListImageReferrers,
    ListImages,
    ListPullTimeUpdateExclusions,
    ListTagsForResource,
    PutAccountSetting,
    PutImage,
    PutImageScanningConfiguration,
    PutImageTagMutability,
    PutLifecyclePolicy,
    PutRegistryPolicy,
    PutRegistryScanningConfiguration,
    PutReplicationConfiguration,
    PutSigningConfiguration,
    RegisterPullTimeUpdateExclusion,
    SetRepositoryPolicy,
    StartImageScan,
    StartLifecyclePolicyPreview,
    TagResource,
    UntagResource,
    UpdateImageStorageClass,
    UpdatePullThroughCacheRule,
    UpdateRepositoryCreationTemplate,
    UploadLayerPart,
    ValidatePullThroughCacheRule,
}

/// Room for the members around the large one (names, ids, offsets) and JSON syntax.
const ENVELOPE_BYTES: usize = 64 * 1024;

/// The largest body an operation can legitimately have, from the model's member limits at their
/// worst JSON encoding. `UploadLayerPart`: a 20 MiB part in base64 (4 bytes per 3, never escaped)
/// ≈ 26.7 MiB. `PutImage`: a 4 MiB manifest as a JSON string, where each character may become a
/// 6-byte `\uXXXX` escape (botocore escapes all non-ASCII) = 24 MiB. Every other operation: 1 MiB,
/// above the largest of them (`BatchCheckLayerAvailability`: 100 digests of up to 1,000
/// characters, each escaped, ≈ 600 KB; lifecycle policies: 30,720 characters ≈ 184 KB).
pub const UPLOAD_LAYER_PART_BODY_BYTES: usize = MAX_LAYER_PART_BYTES.div_ceil(3) * 4 + ENVELOPE_BYTES;
pub const PUT_IMAGE_BODY_BYTES: usize = MAX_MANIFEST_BYTES * 6 + ENVELOPE_BYTES;
pub const SMALL_BODY_BYTES: usize = 1024 * 1024;

impl Endpoint {
    /// The largest request body the operation accepts (see [`UPLOAD_LAYER_PART_BODY_BYTES`]).
    pub fn max_body_bytes(self) -> usize {
        match self {
            Endpoint::UploadLayerPart => UPLOAD_LAYER_PART_BODY_BYTES,
            Endpoint::PutImage => PUT_IMAGE_BODY_BYTES,
            _ => SMALL_BODY_BYTES,
        }
    }

    /// Parses `X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.<Operation>`. A missing header,
    /// another service's prefix or an operation the model lacks is `UnknownOperationException`
    /// (HTTP 400), which is how AWS's JSON front end answers an unroutable target (a call sent
    /// to another path than `/` gets it as 404: `serve.rs`'s `not_found`).
    pub fn from_headers(headers: &HeaderMap) -> Result<Endpoint, EcrError> {
        let Some(value) = headers.get(TARGET_HEADER) else {
            return Err(EcrError::UnknownOperation("Missing X-Amz-Target header".into()));
        };
        let target = value
            .to_str()
            .map_err(|_| EcrError::UnknownOperation("X-Amz-Target is not a valid ASCII header value".into()))?;
        target
            .split_once('.')
            .filter(|(prefix, _)| *prefix == TARGET_PREFIX)
            .and_then(|(_, name)| Endpoint::from_name(name))
            .ok_or_else(|| EcrError::UnknownOperation(format!("Unknown operation {target}")))
    }
}

impl Endpoint {
    /// The IAM actions a call must be allowed: the operation's own, except where ECR documents
    /// another (`ListImageReferrers` needs `ecr:BatchGetImage`), and `ecr:TagResource` besides
    /// when `CreateRepository` tags what it creates (`tagging`), as ECR checks since 2022.
    pub fn permissions(self, tagging: bool) -> Vec<&'static str> {
        match self {
            Endpoint::ListImageReferrers => vec![Endpoint::BatchGetImage.action()],
            Endpoint::CreateRepository if tagging => vec![self.action(), Endpoint::TagResource.action()],
            _ => vec![self.action()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn target(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(TARGET_HEADER, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn every_operation_round_trips_through_its_target() {
        for &endpoint in Endpoint::ALL {
            let parsed = Endpoint::from_headers(&target(&format!("{TARGET_PREFIX}.{}", endpoint.name())));
            assert_eq!(parsed, Ok(endpoint));
        }
    }

    #[test]
    fn unknown_targets_are_unknown_operation() {
        for bad in [
            "AmazonEC2ContainerRegistry_V20150921.DescribeNothing",
            "AmazonEC2ContainerRegistry_V20150921.describeImages",
            "AmazonEC2ContainerRegistry_V20150921.",
            "DynamoDB_20120810.ListTables",
            "DescribeImages",
            "",
        ] {
            let err = Endpoint::from_headers(&target(bad)).unwrap_err();
            assert_eq!(err.wire_type(), "UnknownOperationException", "{bad:?}");
            assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
        }
        let missing = Endpoint::from_headers(&HeaderMap::new()).unwrap_err();
        assert_eq!(missing.wire_type(), "UnknownOperationException");
    }

    #[test]
    fn permissions_are_the_operations_own_except_where_ecr_documents_others() {
        assert_eq!(Endpoint::PutImage.permissions(false), ["ecr:PutImage"]);
        assert_eq!(Endpoint::ListImageReferrers.permissions(false), ["ecr:BatchGetImage"]);
        assert_eq!(Endpoint::CreateRepository.permissions(false), ["ecr:CreateRepository"]);
        assert_eq!(Endpoint::CreateRepository.permissions(true), ["ecr:CreateRepository", "ecr:TagResource"]);
        assert_eq!(Endpoint::TagResource.permissions(true), ["ecr:TagResource"]);
    }

    #[test]
    fn actions_are_the_operations_in_iams_namespace() {
        assert_eq!(Endpoint::PutImage.action(), "ecr:PutImage");
        assert!(Endpoint::ALL.iter().all(|e| e.action().strip_prefix("ecr:") == Some(e.name())));
        // berth-iam, which policies are evaluated with, knows every one of them.
        assert!(Endpoint::ALL.iter().all(|e| berth_iam::actions::ALL_ECR.contains(&e.action())));
    }

    #[test]
    fn body_limits_follow_the_largest_members() {
        assert_eq!(UPLOAD_LAYER_PART_BODY_BYTES, 27_962_028 + 65_536);
        assert_eq!(PUT_IMAGE_BODY_BYTES, 25_165_824 + 65_536);
        assert_eq!(Endpoint::DescribeImages.max_body_bytes(), SMALL_BODY_BYTES);
    }

    /// The enum must list exactly the operations of the model shipped with the installed botocore.
    #[test]
    fn variants_match_the_botocore_model() {
        let script = r#"
import botocore.session
model = botocore.session.get_session().get_service_model('ecr')
print('\n'.join(sorted(model.operation_names)))
"#;
        let output = match std::process::Command::new("python3").args(["-c", script]).output() {
            Ok(output) if output.status.success() => output,
            _ => {
                eprintln!("SKIPPED: python3 with botocore is not available to read the ECR model");
                return;
            }
        };
        let model: Vec<String> = String::from_utf8(output.stdout).unwrap().lines().map(str::to_owned).collect();
        let mut ours: Vec<String> = Endpoint::ALL.iter().map(|e| e.name().to_owned()).collect();
        ours.sort();
        assert_eq!(ours, model);
    }
}
