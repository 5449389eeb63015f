//! PROTOCOL TESTS of the ECR front door: signature checking, target routing, body decoding,
//! validation and error encoding, driven by the real boto3 and aws CLI where possible.
//!
//! The backend here is an in-test double that records which calls got through and answers a few
//! of them; it exists only to observe the protocol layer. Whether the operations behave like ECR
//! is tested against the real registry service, not here.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use berth_ecr::shapes::*;
use berth_ecr::{
    Authentication, EcrBackend, EcrError, EcrService, Resources, SecretLookup, SigningKey, handle, router,
};
use berth_iam::{CredentialKind, Identity, RequestContext, Tags};
use http_body_util::BodyExt;
use serde_json::{Value, json};

const AKID: &str = "AKIABERTHPROTOCOL001";
const SECRET: &str = "protocol/test+secret0123456789abcdefghij";
const REGISTRY: &str = "000000000000";

#[derive(Default)]
struct ProtocolBackend {
    /// `<Operation> by <caller>` for every call that reached the backend.
    calls: Mutex<Vec<String>>,
    /// `<action> on <resources>` for every authorization the router asked for.
    authorizations: Mutex<Vec<String>>,
    /// The action this backend refuses.
    denied_action: Option<&'static str>,
}

impl ProtocolBackend {
    fn record(&self, operation: &str, ctx: &RequestContext) {
        let call = format!("{operation} by {}", ctx.identity.user_name().unwrap_or("anonymous"));
        self.calls.lock().unwrap().push(call);
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn repository(
        name: &str,
        mutability: ImageTagMutability,
        filters: Option<Vec<ImageTagMutabilityExclusionFilter>>,
    ) -> Repository {
        Repository {
            repository_arn: format!("arn:aws:ecr:eu-west-1:{REGISTRY}:repository/{name}"),
            registry_id: REGISTRY.into(),
            repository_name: name.into(),
            repository_uri: format!("127.0.0.1:5000/{name}"),
            created_at: Timestamp::from_millis(1_700_043_200_500),
            image_tag_mutability: mutability,
            image_tag_mutability_exclusion_filters: filters,
            image_scanning_configuration: ImageScanningConfiguration::default(),
            encryption_configuration: EncryptionConfiguration {
                encryption_type: EncryptionType::Aes256,
                kms_key: None,
            },
        }
    }
}

/// Implements `EcrBackend` with the given methods; the operations the protocol tests never reach
/// answer with a client error naming themselves. (`#[async_trait]` sits inside the macro so it
/// sees the generated methods.)
macro_rules! protocol_backend {
    ({ $($exercised:tt)* } $($method:ident($request:ty) -> $response:ty;)*) => {
        #[async_trait]
        impl EcrBackend for ProtocolBackend {
            $($exercised)*

            $(async fn $method(&self, ctx: &RequestContext, _: $request) -> Result<$response, EcrError> {
                self.record(stringify!($method), ctx);
                Err(EcrError::Validation(format!("{} is not part of the protocol tests", stringify!($method))))
            })*
        }
    };
}

protocol_backend! {{
    async fn authorize(
        &self,
        _: &RequestContext,
        action: &'static str,
        resources: Resources<'_>,
        _: Option<&(dyn Tags + Sync)>,
    ) -> Result<(), EcrError> {
        self.authorizations.lock().unwrap().push(format!("{action} on {resources:?}"));
        if self.denied_action == Some(action) {
            return Err(EcrError::AccessDenied(format!("not allowed: {action}")));
        }
        Ok(())
    }

    async fn describe_repositories(
        &self,
        ctx: &RequestContext,
        request: DescribeRepositoriesRequest,
    ) -> Result<DescribeRepositoriesResponse, EcrError> {
        self.record("DescribeRepositories", ctx);
        if let Some(missing) = request.repository_names.iter().flatten().find(|name| *name == "missing") {
            return Err(EcrError::repository_not_found(missing, REGISTRY));
        }
        Ok(DescribeRepositoriesResponse {
            repositories: vec![Self::repository("team/app", ImageTagMutability::Mutable, None)],
            next_token: None,
        })
    }

    async fn create_repository(
        &self,
        ctx: &RequestContext,
        request: CreateRepositoryRequest,
    ) -> Result<CreateRepositoryResponse, EcrError> {
        self.record("CreateRepository", ctx);
        let mutability = request.image_tag_mutability.unwrap_or(ImageTagMutability::Mutable);
        let filters = request.image_tag_mutability_exclusion_filters;
        Ok(CreateRepositoryResponse { repository: Self::repository(&request.repository_name, mutability, filters) })
    }

    async fn upload_layer_part(
        &self,
        ctx: &RequestContext,
        request: UploadLayerPartRequest,
    ) -> Result<UploadLayerPartResponse, EcrError> {
        self.record("UploadLayerPart", ctx);
        assert_eq!(&request.layer_part_blob[..], b"hello", "botocore's base64 blob arrives decoded");
        Ok(UploadLayerPartResponse {
            registry_id: REGISTRY.into(),
            repository_name: request.repository_name,
            upload_id: request.upload_id,
            last_byte_received: request.part_first_byte + request.layer_part_blob.len() as i64 - 1,
        })
    }

    async fn batch_get_image(
        &self,
        ctx: &RequestContext,
        request: BatchGetImageRequest,
    ) -> Result<BatchGetImageResponse, EcrError> {
        self.record("BatchGetImage", ctx);
        let failures = request
            .image_ids
            .into_iter()
            .map(|image_id| ImageFailure {
                image_id,
                failure_code: ImageFailureCode::ImageNotFound,
                failure_reason: "Requested image not found".into(),
            })
            .collect();
        Ok(BatchGetImageResponse { images: vec![], failures })
    }
}
        get_authorization_token(GetAuthorizationTokenRequest) -> GetAuthorizationTokenResponse;
        delete_repository(DeleteRepositoryRequest) -> DeleteRepositoryResponse;
        describe_images(DescribeImagesRequest) -> DescribeImagesResponse;
        list_images(ListImagesRequest) -> ListImagesResponse;
        put_image(PutImageRequest) -> PutImageResponse;
        batch_delete_image(BatchDeleteImageRequest) -> BatchDeleteImageResponse;
        batch_check_layer_availability(BatchCheckLayerAvailabilityRequest) -> BatchCheckLayerAvailabilityResponse;
        initiate_layer_upload(InitiateLayerUploadRequest) -> InitiateLayerUploadResponse;
        complete_layer_upload(CompleteLayerUploadRequest) -> CompleteLayerUploadResponse;
        get_download_url_for_layer(GetDownloadUrlForLayerRequest) -> GetDownloadUrlForLayerResponse;
        tag_resource(TagResourceRequest) -> TagResourceResponse;
        untag_resource(UntagResourceRequest) -> UntagResourceResponse;
        list_tags_for_resource(ListTagsForResourceRequest) -> ListTagsForResourceResponse;
        describe_registry(DescribeRegistryRequest) -> DescribeRegistryResponse;
        put_replication_configuration(PutReplicationConfigurationRequest) -> PutReplicationConfigurationResponse;
        describe_image_replication_status(ImageRequest) -> DescribeImageReplicationStatusResponse;
        update_image_storage_class(UpdateImageStorageClassRequest) -> UpdateImageStorageClassResponse;
        put_registry_scanning_configuration(PutRegistryScanningConfigurationRequest) -> PutRegistryScanningConfigurationResponse;
        start_image_scan(ImageRequest) -> Refused;
        describe_image_scan_findings(DescribeImageScanFindingsRequest) -> Refused;
        put_signing_configuration(PutSigningConfigurationRequest) -> Refused;
        get_signing_configuration(SigningConfigurationRequest) -> Refused;
        delete_signing_configuration(SigningConfigurationRequest) -> Refused;
        describe_image_signing_status(ImageRequest) -> DescribeImageSigningStatusResponse;
        put_image_scanning_configuration(PutImageScanningConfigurationRequest) -> PutImageScanningConfigurationResponse;
        get_registry_scanning_configuration(GetRegistryScanningConfigurationRequest) -> GetRegistryScanningConfigurationResponse;
        put_registry_policy(PutRegistryPolicyRequest) -> RegistryPolicyResponse;
        get_registry_policy(GetRegistryPolicyRequest) -> RegistryPolicyResponse;
        delete_registry_policy(DeleteRegistryPolicyRequest) -> RegistryPolicyResponse;
        get_account_setting(GetAccountSettingRequest) -> AccountSettingResponse;
        put_account_setting(PutAccountSettingRequest) -> AccountSettingResponse;
        batch_get_repository_scanning_configuration(BatchGetRepositoryScanningConfigurationRequest) -> BatchGetRepositoryScanningConfigurationResponse;
        list_image_referrers(ListImageReferrersRequest) -> ListImageReferrersResponse;
        put_image_tag_mutability(PutImageTagMutabilityRequest) -> PutImageTagMutabilityResponse;
        put_lifecycle_policy(PutLifecyclePolicyRequest) -> PutLifecyclePolicyResponse;
        get_lifecycle_policy(GetLifecyclePolicyRequest) -> GetLifecyclePolicyResponse;
        delete_lifecycle_policy(DeleteLifecyclePolicyRequest) -> DeleteLifecyclePolicyResponse;
        start_lifecycle_policy_preview(StartLifecyclePolicyPreviewRequest) -> StartLifecyclePolicyPreviewResponse;
        get_lifecycle_policy_preview(GetLifecyclePolicyPreviewRequest) -> GetLifecyclePolicyPreviewResponse;
        set_repository_policy(SetRepositoryPolicyRequest) -> SetRepositoryPolicyResponse;
        get_repository_policy(GetRepositoryPolicyRequest) -> GetRepositoryPolicyResponse;
        delete_repository_policy(DeleteRepositoryPolicyRequest) -> DeleteRepositoryPolicyResponse;
    create_pull_through_cache_rule(CreatePullThroughCacheRuleRequest) -> CreatePullThroughCacheRuleResponse;
    describe_pull_through_cache_rules(DescribePullThroughCacheRulesRequest) -> DescribePullThroughCacheRulesResponse;
    update_pull_through_cache_rule(UpdatePullThroughCacheRuleRequest) -> UpdatePullThroughCacheRuleResponse;
    delete_pull_through_cache_rule(DeletePullThroughCacheRuleRequest) -> DeletePullThroughCacheRuleResponse;
    validate_pull_through_cache_rule(ValidatePullThroughCacheRuleRequest) -> ValidatePullThroughCacheRuleResponse;
    create_repository_creation_template(CreateRepositoryCreationTemplateRequest) -> RepositoryCreationTemplateResponse;
    describe_repository_creation_templates(DescribeRepositoryCreationTemplatesRequest) -> DescribeRepositoryCreationTemplatesResponse;
    update_repository_creation_template(UpdateRepositoryCreationTemplateRequest) -> RepositoryCreationTemplateResponse;
    delete_repository_creation_template(DeleteRepositoryCreationTemplateRequest) -> RepositoryCreationTemplateResponse;
    register_pull_time_update_exclusion(PullTimeUpdateExclusionRequest) -> RegisterPullTimeUpdateExclusionResponse;
    deregister_pull_time_update_exclusion(PullTimeUpdateExclusionRequest) -> DeregisterPullTimeUpdateExclusionResponse;
    list_pull_time_update_exclusions(ListPullTimeUpdateExclusionsRequest) -> ListPullTimeUpdateExclusionsResponse;
}

fn secrets() -> Arc<dyn SecretLookup> {
    Arc::new(|id: &str| {
        (id == AKID).then(|| SigningKey {
            secret: SECRET.to_owned(),
            identity: Identity::User { name: "ci".into(), access_key_id: AKID.into(), via: CredentialKind::SigV4 },
        })
    })
}

/// Serves the protocol layer on a loopback port; returns its endpoint URL.
async fn serve(backend: Arc<ProtocolBackend>) -> String {
    let app = router(EcrService::new(backend, Authentication::SigV4(secrets())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    endpoint
}

fn python_has_boto3() -> bool {
    Command::new("python3").args(["-c", "import boto3"]).output().is_ok_and(|o| o.status.success())
}

fn assert_error(results: &Value, case: &str, code: &str, status: u16) -> String {
    let result = &results[case];
    assert_eq!(result["error"], code, "{case}: {result}");
    assert_eq!(result["status"], status, "{case}: {result}");
    assert_eq!(result["headers"]["content-type"], "application/x-amz-json-1.1", "{case}");
    assert!(result["headers"]["x-amzn-requestid"].as_str().is_some_and(|id| id.len() == 36), "{case}: {result}");
    result["message"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_boto3_round_trips_signatures_errors_and_shapes() {
    if !python_has_boto3() {
        eprintln!("SKIPPED: python3 with boto3 is not installed");
        return;
    }
    let backend = Arc::new(ProtocolBackend::default());
    let endpoint = serve(backend.clone()).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/boto3_protocol.py");
    let output =
        tokio::process::Command::new("python3").arg(script).args([&endpoint, AKID, SECRET]).output().await.unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let results: Value = serde_json::from_slice(&output.stdout).unwrap();

    // Success: signature accepted, timestamps parsed by botocore as datetimes, ids echoed.
    let describe = &results["describe"];
    assert_eq!(describe["ok"]["repositories"][0]["createdAt"], 1_700_043_200.5, "{describe}");
    assert_eq!(
        describe["ok"]["repositories"][0]["repositoryArn"],
        format!("arn:aws:ecr:eu-west-1:{REGISTRY}:repository/team/app")
    );
    assert_eq!(describe["headers"]["content-type"], "application/x-amz-json-1.1");
    assert_eq!(describe["request_id"], describe["headers"]["x-amzn-requestid"]);
    assert!(results["session_token"]["ok"]["repositories"].is_array(), "{}", results["session_token"]);

    let created = &results["create_exclusion"]["ok"]["repository"];
    assert_eq!(created["imageTagMutability"], "IMMUTABLE_WITH_EXCLUSION", "{created}");
    assert_eq!(created["imageTagMutabilityExclusionFilters"], json!([{"filterType": "WILDCARD", "filter": "dev-*"}]));
    assert_eq!(created["encryptionConfiguration"], json!({"encryptionType": "AES256"}));
    assert_eq!(results["upload_part"]["ok"]["lastByteReceived"], 4);
    assert_eq!(
        results["batch_get"]["ok"],
        json!({"images": [], "failures": [{"imageId": {"imageTag": "nope"}, "failureCode": "ImageNotFound", "failureReason": "Requested image not found"}]})
    );

    // Modeled errors reach boto3 as their exception classes.
    let message = assert_error(&results, "describe_missing", "RepositoryNotFoundException", 400);
    assert_eq!(
        message,
        format!("The repository with name 'missing' does not exist in the registry with id '{REGISTRY}'")
    );
    assert_eq!(results["describe_missing"]["modeled"], "RepositoryNotFoundException");
    let message = assert_error(&results, "create_bad_name", "InvalidParameterException", 400);
    assert!(message.starts_with("Invalid parameter at 'repositoryName' failed to satisfy constraint"), "{message}");
    let message = assert_error(&results, "create_bad_mutability", "InvalidParameterException", 400);
    assert!(
        message.contains(
            "Member must satisfy enum value set: [MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION, MUTABLE_WITH_EXCLUSION]"
        ),
        "{message}"
    );
    assert_error(&results, "list_too_many", "InvalidParameterException", 400);

    // Authentication failures.
    assert_error(&results, "wrong_secret", "InvalidSignatureException", 400);
    let message = assert_error(&results, "unknown_key", "UnrecognizedClientException", 400);
    assert_eq!(message, "The security token included in the request is invalid.");
    let message = assert_error(&results, "unsigned", "MissingAuthenticationTokenException", 400);
    assert_eq!(message, "Missing Authentication Token");

    // Bodies boto3 cannot produce.
    let raw = |case: &str| {
        (results[case]["status"].as_u64().unwrap(), results[case]["body"]["__type"].as_str().unwrap().to_owned())
    };
    assert_eq!(raw("raw_malformed_json"), (400, "SerializationException".into()));
    assert_eq!(raw("raw_wrong_type"), (400, "SerializationException".into()));
    for case in ["raw_array", "raw_enum_object", "raw_lone_surrogate"] {
        assert_eq!(raw(case), (400, "SerializationException".into()), "{case}");
    }
    assert_eq!(raw("raw_missing_member"), (400, "InvalidParameterException".into()));
    assert_eq!(
        results["raw_missing_member"]["body"]["message"],
        "Invalid parameter at 'repositoryName' failed to satisfy constraint: 'Member must not be null'"
    );
    assert_eq!(raw("raw_unknown_operation"), (400, "UnknownOperationException".into()));
    assert_eq!(results["raw_unknown_operation"]["content_type"], "application/x-amz-json-1.1");

    // Only signed, well-formed, valid calls of served operations reached the backend.
    let by = "by ci";
    let mut expected: Vec<String> = ["DescribeRepositories"; 3]
        .iter()
        .chain(&["CreateRepository", "UploadLayerPart", "BatchGetImage"])
        .map(|op| format!("{op} {by}"))
        .collect();
    let mut calls = backend.calls();
    expected.sort();
    calls.sort();
    assert_eq!(calls, expected);

    // Each of them was authorized first, with its operation's permissions on the resources its
    // request names.
    let mut authorizations = backend.authorizations.lock().unwrap().clone();
    authorizations.sort();
    let describe = r#"ecr:DescribeRepositories on Repositories { registry_id: None, names: ["missing"] }"#;
    assert!(authorizations.contains(&describe.to_owned()), "{authorizations:?}");
    assert!(
        authorizations.contains(&r#"ecr:UploadLayerPart on Repository { registry_id: None, name: "app" }"#.to_owned()),
        "{authorizations:?}"
    );
    // CreateRepository's tags need ecr:TagResource besides.
    let tagging = r#"ecr:TagResource on Repository { registry_id: None, name: "team/app" }"#;
    assert!(authorizations.contains(&tagging.to_owned()), "{authorizations:?}");
    assert_eq!(authorizations.len(), calls.len() + 1, "{authorizations:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_aws_cli_prints_modeled_errors_and_responses() {
    if Command::new("aws").arg("--version").output().is_err() {
        eprintln!("SKIPPED: the aws CLI is not installed");
        return;
    }
    let backend = Arc::new(ProtocolBackend::default());
    let endpoint = serve(backend).await;
    let aws = |args: &[&str]| {
        let mut command = tokio::process::Command::new("aws");
        command
            .args(["ecr", "--endpoint-url", &endpoint, "--region", "us-west-2", "--output", "json"])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", AKID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE");
        async move { command.output().await.unwrap() }
    };

    let missing = aws(&["describe-repositories", "--repository-names", "missing"]).await;
    assert_eq!(missing.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains(
            "An error occurred (RepositoryNotFoundException) when calling the DescribeRepositories operation: The repository with name 'missing' does not exist in the registry with id '000000000000'"
        ),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );

    let created = aws(&[
        "create-repository",
        "--repository-name",
        "team/app",
        "--image-tag-mutability",
        "MUTABLE_WITH_EXCLUSION",
        "--image-tag-mutability-exclusion-filters",
        "filterType=WILDCARD,filter=release-*",
    ])
    .await;
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    assert_eq!(created["repository"]["imageTagMutabilityExclusionFilters"][0]["filter"], "release-*");

    let bad =
        aws(&["list-images", "--repository-name", "app", "--filter", "tagStatus=SOMETIMES", "--no-paginate"]).await;
    assert_eq!(bad.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("(InvalidParameterException)"));
}

async fn call(
    service: EcrService,
    target: Option<&str>,
    headers: &[(&str, &str)],
    body: &'static str,
) -> (StatusCode, Value, Option<RequestContext>) {
    let mut request = Request::post("/").body(Body::from(body)).unwrap();
    if let Some(target) = target {
        let value = HeaderValue::from_str(&format!("AmazonEC2ContainerRegistry_V20150921.{target}")).unwrap();
        request.headers_mut().insert("x-amz-target", value);
    }
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
    }
    let response = handle(State(service), request).await;
    let ctx = response.extensions().get::<RequestContext>().cloned();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap(), ctx)
}

/// Every operation of the model is routed to its backend method: none answers 501 or
/// `UnsupportedOperationException`. With an empty body each either reaches the backend (the
/// operations whose members are all optional) or is refused by the model's own checks.
#[tokio::test]
async fn protocol_every_operation_reaches_its_handler() {
    let backend = Arc::new(ProtocolBackend::default());
    let open = EcrService::new(backend.clone(), Authentication::Disabled);
    let mut reached = 0;
    for endpoint in berth_ecr::Endpoint::ALL {
        let calls_before = backend.calls().len();
        let (status, body, _) = call(open.clone(), Some(endpoint.name()), &[], "{}").await;
        let kind = body["__type"].as_str().unwrap_or_default().to_owned();
        assert_ne!(status, StatusCode::NOT_IMPLEMENTED, "{}", endpoint.name());
        assert_ne!(kind, "UnsupportedOperationException", "{}", endpoint.name());
        if backend.calls().len() > calls_before {
            reached += 1;
        } else {
            assert_eq!(
                (status, kind.as_str()),
                (StatusCode::BAD_REQUEST, "InvalidParameterException"),
                "{} neither reached the backend nor failed the model's checks: {body}",
                endpoint.name()
            );
            assert!(body["message"].as_str().unwrap().contains("Member must"), "{}: {body}", endpoint.name());
        }
    }
    assert!(reached > 10, "only {reached} operations reached the backend with an empty body");
}

#[tokio::test]
async fn protocol_front_door_limits_and_disabled_authentication() {
    let backend = Arc::new(ProtocolBackend::default());
    let signed = EcrService::new(backend.clone(), Authentication::SigV4(secrets()));

    let (status, body, _) = call(signed.clone(), None, &[], "{}").await;
    assert_eq!((status, body["__type"].as_str()), (StatusCode::BAD_REQUEST, Some("UnknownOperationException")));

    // Each operation's body limit applies before a byte is read.
    let open = EcrService::new(backend.clone(), Authentication::Disabled);
    for (operation, limit) in [
        ("UploadLayerPart", berth_ecr::endpoint::UPLOAD_LAYER_PART_BODY_BYTES),
        ("PutImage", berth_ecr::endpoint::PUT_IMAGE_BODY_BYTES),
        ("DescribeImages", berth_ecr::endpoint::SMALL_BODY_BYTES),
    ] {
        let too_big = (limit + 1).to_string();
        let (status, body, _) = call(open.clone(), Some(operation), &[("content-length", &too_big)], "{}").await;
        assert_eq!(
            (status, body["__type"].as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, Some("RequestEntityTooLargeException")),
            "{operation}"
        );
    }
    assert!(backend.calls().is_empty());

    // With authentication off every caller is anonymous, whatever key it claims.
    let (status, body, ctx) = call(open.clone(), Some("DescribeRepositories"), &[], "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ctx.unwrap().identity, Identity::Anonymous);
    let claimed =
        "AWS4-HMAC-SHA256 Credential=AKIACLAIMED/20261127/us-east-1/ecr/aws4_request, SignedHeaders=host, Signature=00";
    let (status, _, ctx) = call(
        open,
        Some("DescribeRepositories"),
        &[("authorization", claimed), ("x-amz-date", "20261127T000000Z")],
        "{}",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ctx.unwrap().identity, Identity::Anonymous);
    let calls: BTreeMap<String, usize> = backend.calls().into_iter().fold(BTreeMap::new(), |mut m, c| {
        *m.entry(c).or_default() += 1;
        m
    });
    assert_eq!(calls, BTreeMap::from([("DescribeRepositories by anonymous".to_owned(), 2)]));
}

#[tokio::test]
async fn protocol_denied_calls_never_reach_the_backend() {
    let backend = Arc::new(ProtocolBackend { denied_action: Some("ecr:CreateRepository"), ..Default::default() });
    let open = EcrService::new(backend.clone(), Authentication::Disabled);
    let (status, body, _) = call(open.clone(), Some("CreateRepository"), &[], r#"{"repositoryName":"app"}"#).await;
    assert_eq!((status, body["__type"].as_str()), (StatusCode::BAD_REQUEST, Some("AccessDeniedException")));
    // Malformed input is refused before authorization.
    let (_, body, _) = call(open.clone(), Some("CreateRepository"), &[], r#"{"repositoryName":"A B"}"#).await;
    assert_eq!(body["__type"], "InvalidParameterException");
    let (status, _, _) = call(open, Some("DescribeRepositories"), &[], "{}").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(backend.calls(), ["DescribeRepositories by anonymous"]);
    assert_eq!(
        *backend.authorizations.lock().unwrap(),
        [
            r#"ecr:CreateRepository on Repository { registry_id: None, name: "app" }"#,
            "ecr:DescribeRepositories on AllRepositories { registry_id: None }"
        ]
    );
}
