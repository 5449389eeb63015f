//! The operation a request names in `X-Amz-Target`.
//!
//! Every operation of the ECR model has a variant, so a known-but-unserved operation
//! (`NotImplemented`) is told apart from a target that is not ECR at all (`UnknownOperation`).

use axum::http::HeaderMap;

use crate::error::EcrError;

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

impl Endpoint {
    /// Parses `X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.<Operation>`. A missing header,
    /// another service's prefix or an operation the model lacks is `UnknownOperationException`
    /// (HTTP 400), which is how AWS's JSON front end answers an unroutable target.
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
