"""Every ECR operation Berth serves, through boto3 against a real `berth serve` (auth off): happy
paths, the documented errors, pagination, and the one model shared with /v2/."""

import base64
import json
import os
import re
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import (DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, REGION,
                      REGISTRY_ID, Images, digest_of, error_code)

MIB = 1024 * 1024


def raises(ecr, exception, call, **kwargs):
    with pytest.raises(ClientError) as excinfo:
        call(**kwargs)
    assert error_code(excinfo) == exception, excinfo.value.response["Error"]
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return excinfo.value.response["Error"]["Message"]


def arn(name):
    return f"arn:aws:ecr:{REGION}:{REGISTRY_ID}:repository/{name}"


# ---- GetAuthorizationToken, DescribeRegistry


def test_authorization_token_is_aws_colon_password_for_12_hours(ecr, addr, http):
    data = ecr.get_authorization_token()["authorizationData"]
    assert len(data) == 1
    user, password = base64.b64decode(data[0]["authorizationToken"]).decode().split(":")
    assert user == "AWS" and password and not re.search(r"\s", password)
    assert data[0]["proxyEndpoint"] == f"http://{addr}"
    remaining = data[0]["expiresAt"].timestamp() - time.time()
    assert 12 * 3600 - 120 < remaining <= 12 * 3600
    # The password is usable as Basic credentials on /v2/ (auth is off here, so any would be).
    basic = base64.b64encode(f"AWS:{password}".encode()).decode()
    status, headers, _ = http.request("GET", "/v2/", headers={"Authorization": f"Basic {basic}"})
    assert status == 200 and headers.get("docker-distribution-api-version") == "registry/2.0"
    two = ecr.get_authorization_token(registryIds=[REGISTRY_ID, "123456789012"])["authorizationData"]
    assert len(two) == 2


def test_describe_registry(ecr):
    registry = ecr.describe_registry()
    assert registry["registryId"] == REGISTRY_ID
    assert registry["replicationConfiguration"] == {"rules": []}


def test_registry_scanning_configuration_is_basic_without_rules_until_some_are_put(ecr):
    out = ecr.get_registry_scanning_configuration()
    assert out["registryId"] == REGISTRY_ID
    assert out["scanningConfiguration"] == {"scanType": "BASIC", "rules": []}


def test_batch_get_repository_scanning_configuration(ecr, repo):
    scanned = f"pytest/scan-{uuid.uuid4().hex[:8]}"
    missing = f"pytest/none-{uuid.uuid4().hex[:8]}"
    ecr.create_repository(repositoryName=scanned, imageScanningConfiguration={"scanOnPush": True})
    try:
        out = ecr.batch_get_repository_scanning_configuration(repositoryNames=[scanned, repo, missing, scanned])
        assert out["scanningConfigurations"] == [
            {"repositoryArn": arn(scanned), "repositoryName": scanned, "scanOnPush": True,
             "scanFrequency": "SCAN_ON_PUSH", "appliedScanFilters": []},
            {"repositoryArn": arn(repo), "repositoryName": repo, "scanOnPush": False,
             "scanFrequency": "MANUAL", "appliedScanFilters": []},
        ]
        assert out["failures"] == [{
            "repositoryName": missing, "failureCode": "REPOSITORY_NOT_FOUND",
            "failureReason": f"The repository with name '{missing}' does not exist in the registry with id "
                             f"'{REGISTRY_ID}'"}]
        # PutImageScanningConfiguration changes what both reads report.
        put = ecr.put_image_scanning_configuration(repositoryName=repo, imageScanningConfiguration={"scanOnPush": True})
        assert put == {**put, "registryId": REGISTRY_ID, "repositoryName": repo,
                       "imageScanningConfiguration": {"scanOnPush": True}}
        assert ecr.describe_repositories(repositoryNames=[repo])["repositories"][0]["imageScanningConfiguration"] == \
            {"scanOnPush": True}
        again = ecr.batch_get_repository_scanning_configuration(repositoryNames=[repo])["scanningConfigurations"]
        assert [(c["scanOnPush"], c["scanFrequency"]) for c in again] == [(True, "SCAN_ON_PUSH")]
        raises(ecr, "RepositoryNotFoundException", ecr.put_image_scanning_configuration, repositoryName=missing,
               imageScanningConfiguration={"scanOnPush": True})
        # The repository's policy is asked for ecr:BatchGetRepositoryScanningConfiguration.
        deny = json.dumps({"Statement": {"Effect": "Deny", "Principal": "*",
                                         "Action": "ecr:BatchGetRepositoryScanningConfiguration"}})
        ecr.set_repository_policy(repositoryName=scanned, policyText=deny)
        message = raises(ecr, "AccessDeniedException", ecr.batch_get_repository_scanning_configuration,
                         repositoryNames=[repo, scanned])
        assert "ecr:BatchGetRepositoryScanningConfiguration" in message, message
    finally:
        ecr.delete_repository(repositoryName=scanned)
    message = raises(ecr, "InvalidParameterException", ecr.batch_get_repository_scanning_configuration,
                     repositoryNames=[f"pytest/r{i}" for i in range(26)])
    assert "Member must have length less than or equal to 25" in message
    message = raises(ecr, "InvalidParameterException", ecr.batch_get_repository_scanning_configuration,
                     repositoryNames=[repo, "Not/Lower"])
    assert message.startswith("Invalid parameter at 'repositoryNames.2.member'"), message


def test_basic_registry_scanning_rules_are_kept_and_decide_each_repository(ecr):
    base = f"pytest/rules-{uuid.uuid4().hex[:8]}"
    prod, dev = f"{base}/prod-api", f"{base}/dev-api"
    for name in (prod, dev):
        ecr.create_repository(repositoryName=name, imageScanningConfiguration={"scanOnPush": name == dev})
    # What Terraform's aws_ecr_registry_scanning_configuration sends for basic scan-on-push.
    rules = [{"scanFrequency": "SCAN_ON_PUSH", "repositoryFilters": [{"filter": f"{base}/prod-*", "filterType": "WILDCARD"}]},
             {"scanFrequency": "MANUAL", "repositoryFilters": [{"filter": "*", "filterType": "WILDCARD"}]}]
    try:
        put = ecr.put_registry_scanning_configuration(scanType="BASIC", rules=rules)
        assert put["registryScanningConfiguration"] == {"scanType": "BASIC", "rules": rules}
        assert ecr.get_registry_scanning_configuration()["scanningConfiguration"] == {"scanType": "BASIC", "rules": rules}
        configs = ecr.batch_get_repository_scanning_configuration(repositoryNames=[prod, dev])["scanningConfigurations"]
        assert [(c["repositoryName"], c["scanOnPush"], c["scanFrequency"], c["appliedScanFilters"]) for c in configs] == [
            (prod, True, "SCAN_ON_PUSH", rules[0]["repositoryFilters"]),
            (dev, False, "MANUAL", rules[1]["repositoryFilters"]),
        ], "the registry's rules decide, not the repositories' own scanOnPush"
        # ENHANCED (Inspector) and its CONTINUOUS_SCAN are refused, and change nothing.
        raises(ecr, "ValidationException", ecr.put_registry_scanning_configuration, scanType="ENHANCED", rules=rules)
        continuous = [{**rules[0], "scanFrequency": "CONTINUOUS_SCAN"}]
        raises(ecr, "ValidationException", ecr.put_registry_scanning_configuration, scanType="BASIC", rules=continuous)
        bad_filter = [{**rules[0], "repositoryFilters": [{"filter": "Prod/API", "filterType": "WILDCARD"}]}]
        raises(ecr, "InvalidParameterException", ecr.put_registry_scanning_configuration, scanType="BASIC",
               rules=bad_filter)
        assert ecr.get_registry_scanning_configuration()["scanningConfiguration"]["rules"] == rules
    finally:
        ecr.put_registry_scanning_configuration(scanType="BASIC", rules=[])
        for name in (prod, dev):
            ecr.delete_repository(repositoryName=name)
    assert ecr.get_registry_scanning_configuration()["scanningConfiguration"] == {"scanType": "BASIC", "rules": []}


# ---- repositories


def test_create_repository_echoes_ecr_defaults(ecr, addr):
    name = f"pytest/create-{uuid.uuid4().hex[:8]}"
    repo = ecr.create_repository(repositoryName=name, tags=[{"Key": "team", "Value": "web"}])["repository"]
    try:
        assert repo["repositoryArn"] == arn(name)
        assert repo["registryId"] == REGISTRY_ID
        assert repo["repositoryUri"] == f"{addr}/{name}"
        assert repo["imageTagMutability"] == "MUTABLE"
        assert repo["imageScanningConfiguration"] == {"scanOnPush": False}
        assert repo["encryptionConfiguration"] == {"encryptionType": "AES256"}
        assert abs(repo["createdAt"].timestamp() - time.time()) < 60
        assert ecr.list_tags_for_resource(resourceArn=arn(name))["tags"] == [{"Key": "team", "Value": "web"}]
        raises(ecr, "RepositoryAlreadyExistsException", ecr.create_repository, repositoryName=name)
        described = ecr.describe_repositories(repositoryNames=[name])["repositories"]
        assert described == [repo]
    finally:
        ecr.delete_repository(repositoryName=name)


def test_create_repository_settings_and_kms(ecr):
    name = f"pytest/settings-{uuid.uuid4().hex[:8]}"
    key = "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    repo = ecr.create_repository(
        repositoryName=name,
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "dev-*"}],
        imageScanningConfiguration={"scanOnPush": True},
        encryptionConfiguration={"encryptionType": "AES256"},
    )["repository"]
    try:
        assert repo["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
        assert repo["imageTagMutabilityExclusionFilters"] == [{"filterType": "WILDCARD", "filter": "dev-*"}]
        assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repo["encryptionConfiguration"] == {"encryptionType": "AES256"}
        assert ecr.describe_repositories(repositoryNames=[name])["repositories"][0] == repo
    finally:
        ecr.delete_repository(repositoryName=name)
    message = raises(ecr, "InvalidParameterException", ecr.create_repository, repositoryName=f"{name}-x",
                     encryptionConfiguration={"encryptionType": "AES256", "kmsKey": key})
    assert "kmsKey" in message
    # Berth has no KMS: asking for it is refused (CreateRepository's modeled KmsException),
    # saying so, and nothing is created (for repositories and the templates that would create them).
    for encryption in ({"encryptionType": "KMS", "kmsKey": key}, {"encryptionType": "KMS"},
                       {"encryptionType": "KMS_DSSE"}):
        message = raises(ecr, "KmsException", ecr.create_repository, repositoryName=f"{name}-kms",
                         encryptionConfiguration=encryption)
        assert "Berth has no KMS" in message, message
        # The template operations model no KmsException.
        message = raises(ecr, "InvalidParameterException", ecr.create_repository_creation_template,
                         prefix=f"{name}-kms", appliedFor=["CREATE_ON_PUSH"], encryptionConfiguration=encryption)
        assert "Berth has no KMS" in message, message
    raises(ecr, "RepositoryNotFoundException", ecr.describe_repositories, repositoryNames=[f"{name}-kms"])
    templates = ecr.describe_repository_creation_templates()["repositoryCreationTemplates"]
    assert all(t["prefix"] != f"{name}-kms" for t in templates)


def test_create_repository_rejects_bad_input(ecr):
    for bad in ["Upper/Case", "trailing-", "a//b", "x" * 257]:
        message = raises(ecr, "InvalidParameterException", ecr.create_repository, repositoryName=bad)
        assert "repositoryName" in message
    raises(ecr, "InvalidParameterException", ecr.create_repository, repositoryName="pytest/x",
           imageTagMutability="SOMETIMES")
    message = raises(ecr, "InvalidParameterException", ecr.create_repository, repositoryName="pytest/x",
                     imageTagMutability="MUTABLE_WITH_EXCLUSION")
    assert "imageTagMutabilityExclusionFilters" in message
    raises(ecr, "TooManyTagsException", ecr.create_repository, repositoryName="pytest/x",
           tags=[{"Key": f"k{i}", "Value": "v"} for i in range(51)])
    raises(ecr, "InvalidTagParameterException", ecr.create_repository, repositoryName="pytest/x",
           tags=[{"Key": "aws:reserved", "Value": "v"}])
    raises(ecr, "RepositoryNotFoundException", ecr.create_repository, repositoryName="pytest/x",
           registryId="123456789012")
    raises(ecr, "InvalidParameterException", ecr.create_repository, repositoryName="pytest/x", registryId="12345")
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.describe_repositories(repositoryNames=["pytest/x"])


def test_describe_repositories_by_name(ecr, repo):
    other = f"{repo}-b"
    ecr.create_repository(repositoryName=other)
    try:
        found = ecr.describe_repositories(repositoryNames=[other, repo])["repositories"]
        assert [r["repositoryName"] for r in found] == [other, repo]
        message = raises(ecr, "RepositoryNotFoundException", ecr.describe_repositories,
                         repositoryNames=[repo, "pytest/absent"])
        assert message == ("The repository with name 'pytest/absent' does not exist in the registry with id "
                           f"'{REGISTRY_ID}'")
        raises(ecr, "InvalidParameterException", ecr.describe_repositories, repositoryNames=[repo], maxResults=5)
        raises(ecr, "RepositoryNotFoundException", ecr.describe_repositories, repositoryNames=[repo],
               registryId="123456789012")
    finally:
        ecr.delete_repository(repositoryName=other)


def test_describe_repositories_pages_stably(ecr):
    prefix = f"pytest/page-{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}/r{i}" for i in (1, 3, 5, 7, 9)]
    for name in names:
        ecr.create_repository(repositoryName=name)
    added = []
    try:
        everything = [r["repositoryName"] for r in ecr.describe_repositories(maxResults=1000)["repositories"]]
        assert everything == sorted(everything)
        assert set(names) <= set(everything)
        # Page with 2 per page; after the first page that reaches our repositories, add one before
        # the cursor and one after it.
        seen, token, inserted = [], None, False
        while True:
            page = ecr.describe_repositories(maxResults=2, **({"nextToken": token} if token else {}))
            assert len(page["repositories"]) <= 2
            seen += [r["repositoryName"] for r in page["repositories"]]
            token = page.get("nextToken")
            if not inserted and any(n.startswith(prefix) for n in seen):
                for extra in (f"{prefix}/r0", f"{prefix}/r99"):
                    ecr.create_repository(repositoryName=extra)
                    added.append(extra)
                inserted = True
            if not token:
                break
        assert len(seen) == len(set(seen)), "no repository twice"
        assert set(everything) <= set(seen), "no repository skipped"
        assert f"{prefix}/r99" in seen and f"{prefix}/r0" not in seen
        # The paginator of boto3 (what `aws ecr describe-repositories --page-size` does).
        paged = [r["repositoryName"] for p in ecr.get_paginator("describe_repositories").paginate(
            PaginationConfig={"PageSize": 3}) for r in p["repositories"]]
        assert [n for n in paged if n.startswith(prefix)] == sorted(names + added)
        raises(ecr, "InvalidParameterException", ecr.describe_repositories, nextToken="not-a-token")
    finally:
        for name in names + added:
            ecr.delete_repository(repositoryName=name)


def test_delete_repository(ecr, images):
    name = f"pytest/delete-{uuid.uuid4().hex[:8]}"
    created = ecr.create_repository(repositoryName=name)["repository"]
    images.image(name, "v1")
    message = raises(ecr, "RepositoryNotEmptyException", ecr.delete_repository, repositoryName=name)
    assert message == (f"The repository with name '{name}' in registry with id '{REGISTRY_ID}' cannot be deleted "
                       "because it still contains images")
    deleted = ecr.delete_repository(repositoryName=name, force=True)["repository"]
    assert deleted == created
    raises(ecr, "RepositoryNotFoundException", ecr.delete_repository, repositoryName=name)
    raises(ecr, "RepositoryNotFoundException", ecr.describe_images, repositoryName=name)


# ---- PutImage, DescribeImages, BatchGetImage


def test_put_image_and_describe(ecr, repo, images, http):
    config, layer = images.blobs(repo)
    manifest = images.manifest(config, layer)
    digest = images.put(repo, manifest, "v1")
    [detail] = ecr.describe_images(repositoryName=repo)["imageDetails"]
    assert detail["imageDigest"] == digest
    assert detail["imageTags"] == ["v1"]
    assert detail["registryId"] == REGISTRY_ID and detail["repositoryName"] == repo
    assert detail["imageSizeInBytes"] == config["size"] + layer["size"]
    assert detail["imageManifestMediaType"] == OCI_MANIFEST
    assert detail["artifactMediaType"] == OCI_CONFIG
    assert detail["imageStatus"] == "ACTIVE"
    assert abs(detail["imagePushedAt"].timestamp() - time.time()) < 60
    assert "lastRecordedPullTime" not in detail
    # A pull through either plane shows up at once (buffered in memory, flushed later).
    status, _, body = http.get_manifest(repo, "v1")
    assert status == 200 and body == manifest.encode()
    [detail] = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "v1"}])["imageDetails"]
    assert abs(detail["lastRecordedPullTime"].timestamp() - time.time()) < 60
    # Re-putting the same digest under a new tag keeps the first push time.
    images.put(repo, manifest, "v2")
    [again] = ecr.describe_images(repositoryName=repo)["imageDetails"]
    assert again["imageTags"] == ["v1", "v2"] and again["imagePushedAt"] == detail["imagePushedAt"]


def test_put_image_errors(ecr, repo, images):
    config, layer = images.blobs(repo)
    manifest = images.manifest(config, layer)
    digest = images.put(repo, manifest, "v1")
    message = raises(ecr, "ImageAlreadyExistsException", ecr.put_image, repositoryName=repo,
                     imageManifest=manifest, imageTag="v1")
    assert message == (f"Image with digest '{digest}' and tag 'v1' already exists in the repository with name "
                       f"'{repo}' in registry with id '{REGISTRY_ID}'")
    # Without a tag, re-putting a known digest is a no-op that succeeds.
    assert images.put(repo, manifest) == digest
    raises(ecr, "ImageDigestDoesNotMatchException", ecr.put_image, repositoryName=repo, imageManifest=manifest,
           imageDigest="sha256:" + "0" * 64)
    assert images.put(repo, manifest, "v3", imageDigest=digest) == digest
    missing = {"mediaType": OCI_CONFIG, "digest": digest_of(b"never uploaded"), "size": 14}
    message = raises(ecr, "LayersNotFoundException", ecr.put_image, repositoryName=repo,
                     imageManifest=images.manifest(missing, layer), imageTag="broken")
    assert missing["digest"] in message
    # Every missing blob is named at once, so a client copying them by hand needs one round.
    missing_layer = {"mediaType": OCI_LAYER, "digest": digest_of(b"never uploaded either"), "size": 21}
    message = raises(ecr, "LayersNotFoundException", ecr.put_image, repositoryName=repo,
                     imageManifest=images.manifest(missing, missing_layer), imageTag="broken")
    assert f"Layers with digests '[{missing['digest']}, {missing_layer['digest']}]'" in message
    message = raises(ecr, "InvalidParameterException", ecr.put_image, repositoryName=repo,
                     imageManifest="{not json", imageTag="bad")
    assert message == "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Invalid JSON syntax'"
    no_media_type = json.dumps({"schemaVersion": 2, "config": config, "layers": [layer]})
    message = raises(ecr, "InvalidParameterException", ecr.put_image, repositoryName=repo,
                     imageManifest=no_media_type)
    assert "imageManifestMediaType" in message
    put = ecr.put_image(repositoryName=repo, imageManifest=no_media_type, imageManifestMediaType=OCI_MANIFEST)
    assert put["image"]["imageManifestMediaType"] == OCI_MANIFEST
    raises(ecr, "InvalidParameterException", ecr.put_image, repositoryName=repo, imageManifest=manifest,
           imageTag="bad:tag")
    raises(ecr, "InvalidParameterException", ecr.put_image, repositoryName=repo, imageManifest=manifest,
           imageManifestMediaType=DOCKER_MANIFEST)
    raises(ecr, "RepositoryNotFoundException", ecr.put_image, repositoryName=f"{repo}-absent",
           imageManifest=manifest)


@pytest.mark.parametrize("what,edit,says", [
    ("a layer size of 2^63", lambda doc, text: text.replace('"size": %d' % doc["layers"][0]["size"], '"size": %d' % 2**63),
     "2^63-1"),
    ("sizes summing past 2^63",
     lambda doc, text: json.dumps({**doc, "layers": [dict(doc["layers"][0], size=2**62)] * 2}), "total more than"),
    ("no layers", lambda doc, text: json.dumps({k: v for k, v in doc.items() if k != "layers"}), "layers"),
    ("a duplicate key", lambda doc, text: text.replace('"layers":', '"layers": [], "layers":', 1), "twice"),
    ("a duplicate annotation", lambda doc, text: json.dumps({**doc, "annotations": {"a": "1"}})[:-2] + ', "a": "2"}}',
     "twice"),
    ("nesting 100 levels deep",
     lambda doc, text: json.dumps({**doc, "x": 0}).replace('"x": 0', '"x": ' + "[" * 100 + "]" * 100), "deeper than 64"),
])
def test_put_image_refuses_what_clients_would_read_differently(ecr, repo, images, what, edit, says):
    """Client mistakes are InvalidParameterException (SDKs do not retry it), never a ServerException."""
    config, layer = images.blobs(repo)
    manifest = images.manifest(config, layer)
    bad = edit(json.loads(manifest), manifest)
    assert bad != manifest, what
    message = raises(ecr, "InvalidParameterException", ecr.put_image, repositoryName=repo, imageManifest=bad,
                     imageTag="bad")
    assert says in message, (what, message)
    assert ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "bad"}])["images"] == []


def test_docker_v2_manifest_by_ecr_api(ecr, repo, images):
    config = json.dumps({"architecture": "arm64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    config_digest = images.upload_layer(repo, config.encode())
    layer = os.urandom(300)
    layer_digest = images.upload_layer(repo, layer)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                           "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": config_digest},
                           "layers": [{"mediaType": DOCKER_LAYER, "size": len(layer), "digest": layer_digest}]})
    images.put(repo, manifest, "docker")
    [detail] = ecr.describe_images(repositoryName=repo)["imageDetails"]
    assert detail["imageManifestMediaType"] == DOCKER_MANIFEST
    assert detail["artifactMediaType"] == DOCKER_CONFIG
    # ECR's manifest conversion: by tag, a client accepting only OCI gets the image as OCI (same
    # blobs, the image's own digest); by digest, or accepting Docker schema 2, the bytes pushed.
    digest = detail["imageDigest"]
    [converted] = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "docker"}],
                                      acceptedMediaTypes=[OCI_MANIFEST])["images"]
    assert converted["imageManifestMediaType"] == OCI_MANIFEST
    assert converted["imageId"] == {"imageDigest": digest, "imageTag": "docker"}
    oci = json.loads(converted["imageManifest"])
    assert oci["mediaType"] == OCI_MANIFEST
    assert oci["config"] == {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config),
                             "digest": config_digest}
    assert oci["layers"] == [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": len(layer),
                              "digest": layer_digest}]
    for ids, accepted in [([{"imageDigest": digest}], [OCI_MANIFEST]), ([{"imageTag": "docker"}], [DOCKER_MANIFEST])]:
        [image] = ecr.batch_get_image(repositoryName=repo, imageIds=ids, acceptedMediaTypes=accepted)["images"]
        assert (image["imageManifest"], image["imageManifestMediaType"]) == (manifest, DOCKER_MANIFEST), ids


def test_batch_get_image_and_the_retag_idiom(ecr, repo, images):
    digest, manifest, _, _ = images.image(repo, "v1")
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}], acceptedMediaTypes=[OCI_MANIFEST])
    assert got["failures"] == []
    [image] = got["images"]
    assert image["imageManifest"] == manifest, "the exact stored bytes"
    assert image["imageId"] == {"imageDigest": digest, "imageTag": "v1"}
    assert image["imageManifestMediaType"] == OCI_MANIFEST
    # Retag: batch-get-image then put-image with the same bytes under another tag.
    put = ecr.put_image(repositoryName=repo, imageManifest=image["imageManifest"], imageTag="release",
                        imageManifestMediaType=image["imageManifestMediaType"])
    assert put["image"]["imageId"] == {"imageDigest": digest, "imageTag": "release"}
    [detail] = ecr.describe_images(repositoryName=repo)["imageDetails"]
    assert detail["imageTags"] == ["release", "v1"]

    other_digest, _, _, _ = images.image(repo, "other")
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[
        {"imageDigest": digest},
        {"imageDigest": digest, "imageTag": "release"},
        {"imageTag": "absent"},
        {},
        {"imageDigest": "sha256:nothex"},
        {"imageDigest": digest, "imageTag": "other"},
        {"imageDigest": "sha256:" + "a" * 64},
        {"imageDigest": digest, "imageTag": "absent"},
        {"imageDigest": "sha256:" + "a" * 64, "imageTag": "release"},
    ])
    assert [i["imageId"] for i in got["images"]] == [
        {"imageDigest": digest}, {"imageDigest": digest, "imageTag": "release"}]
    codes = [(f["imageId"], f["failureCode"]) for f in got["failures"]]
    assert codes == [
        ({"imageTag": "absent"}, "ImageNotFound"),
        ({}, "MissingDigestAndTag"),
        ({"imageDigest": "sha256:nothex"}, "InvalidImageDigest"),
        ({"imageDigest": digest, "imageTag": "other"}, "ImageTagDoesNotMatchDigest"),
        ({"imageDigest": "sha256:" + "a" * 64}, "ImageNotFound"),
        # One of the two missing: not found, as BatchDeleteImage says (below).
        ({"imageDigest": digest, "imageTag": "absent"}, "ImageNotFound"),
        ({"imageDigest": "sha256:" + "a" * 64, "imageTag": "release"}, "ImageNotFound"),
    ]
    assert all(f["failureReason"] for f in got["failures"])
    [invalid] = [f["failureReason"] for f in got["failures"] if f["failureCode"] == "InvalidImageDigest"]
    assert "lowercase hex" in invalid, "the reason says why a value fitting ECR's regex is no digest"
    assert other_digest != digest
    raises(ecr, "RepositoryNotFoundException", ecr.batch_get_image, repositoryName=f"{repo}-absent",
           imageIds=[{"imageTag": "v1"}])


def test_batch_get_image_answers_an_id_once_and_bounds_its_answer(ecr, repo, images):
    _, manifest, _, _ = images.image(repo, "v1")
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}] * 3)
    assert [i["imageId"]["imageTag"] for i in got["images"]] == ["v1"], "an id asked for twice is answered once"
    # Five tags of a 3.5 MiB manifest: more than the 16 MiB one answer carries.
    big = json.loads(manifest)
    for i in range(5):
        # Five images, so that each tag's pull time is its own.
        big["annotations"] = {"pad": "x" * (3_500_000), "n": str(i)}
        ecr.put_image(repositoryName=repo, imageManifest=json.dumps(big), imageTag=f"big{i}")
    four = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": f"big{i}"} for i in range(4)])
    assert len(four["images"]) == 4
    raises(ecr, "LimitExceededException", ecr.batch_get_image, repositoryName=repo,
           imageIds=[{"imageTag": f"big{i}"} for i in range(5)])
    # The refused call pulled nothing: big4, asked for only there, has no pull time.
    [detail] = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "big4"}])["imageDetails"]
    assert "lastRecordedPullTime" not in detail, detail
    [detail] = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "big3"}])["imageDetails"]
    assert "lastRecordedPullTime" in detail, "the answered call pulled"


def test_describe_images_by_id_fails_whole_call_on_a_missing_one(ecr, repo, images):
    digest, _, _, _ = images.image(repo, "v1")
    found = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "v1"}, {"imageDigest": digest}])
    assert [d["imageDigest"] for d in found["imageDetails"]] == [digest], "one detail per digest"
    message = raises(ecr, "ImageNotFoundException", ecr.describe_images, repositoryName=repo,
                     imageIds=[{"imageTag": "v1"}, {"imageTag": "nope"}])
    assert message == (f"The image with imageId {{imageDigest:'null', imageTag:'nope'}} does not exist within the "
                       f"repository with name '{repo}' in the registry with id '{REGISTRY_ID}'")
    raises(ecr, "InvalidParameterException", ecr.describe_images, repositoryName=repo,
           imageIds=[{"imageTag": "v1"}], maxResults=10)
    raises(ecr, "InvalidParameterException", ecr.describe_images, repositoryName=repo, imageIds=[{}])
    raises(ecr, "InvalidParameterException", ecr.describe_images, repositoryName=repo,
           filter={"tagStatus": "tagged"})
    raises(ecr, "RepositoryNotFoundException", ecr.describe_images, repositoryName=repo, registryId="123456789012")


# ---- multi-arch: indexes and their children


def test_index_children_sizes_and_protection(ecr, repo, images):
    amd = images.image(repo, arch="amd64")
    arm = images.image(repo, arch="arm64")
    index = Images.index([(amd[0], amd[1], "amd64"), (arm[0], arm[1], "arm64")])
    index_digest = images.put(repo, index, "multi")
    details = {d["imageDigest"]: d for d in ecr.describe_images(repositoryName=repo)["imageDetails"]}
    assert details[index_digest]["imageManifestMediaType"] == OCI_INDEX
    assert details[index_digest]["imageSizeInBytes"] == max(details[amd[0]]["imageSizeInBytes"],
                                                            details[arm[0]]["imageSizeInBytes"])
    assert "artifactMediaType" not in details[index_digest]
    assert "imageTags" not in details[amd[0]], "children are untagged"
    untagged = ecr.list_images(repositoryName=repo, filter={"tagStatus": "UNTAGGED"})["imageIds"]
    assert sorted(i["imageDigest"] for i in untagged) == sorted([amd[0], arm[0]])
    assert all("imageTag" not in i for i in untagged)
    tagged = ecr.describe_images(repositoryName=repo, filter={"tagStatus": "TAGGED"})["imageDetails"]
    assert [d["imageDigest"] for d in tagged] == [index_digest]

    gone = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "b" * 64, "size": 10, "platform": {
        "architecture": "s390x", "os": "linux"}}
    broken = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [gone]})
    raises(ecr, "ReferencedImagesNotFoundException", ecr.put_image, repositoryName=repo, imageManifest=broken)

    refused = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": amd[0]}])
    assert refused["imageIds"] == []
    [failure] = refused["failures"]
    assert failure["failureCode"] == "ImageReferencedByManifestList"
    assert index_digest in failure["failureReason"]
    # Removing an image's last tag deletes the image (ECR's documented rule): so a child's last
    # tag is refused like the child, and stays; a second tag can go.
    images.put(repo, amd[1], "amd-only")
    refused = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "amd-only"}])
    assert [f["failureCode"] for f in refused["failures"]] == ["ImageReferencedByManifestList"], refused
    assert refused["failures"][0]["imageId"] == {"imageTag": "amd-only"}
    images.put(repo, amd[1], "amd-too")
    deleted = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "amd-too"}])
    assert deleted["imageIds"] == [{"imageDigest": amd[0], "imageTag": "amd-too"}] and deleted["failures"] == []
    [kept] = ecr.describe_images(repositoryName=repo, imageIds=[{"imageDigest": amd[0]}])["imageDetails"]
    assert kept["imageTags"] == ["amd-only"]
    # Deleting the index's last tag deletes the index; then the children can go.
    deleted = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "multi"}])
    assert deleted == {"imageIds": [{"imageDigest": index_digest, "imageTag": "multi"}], "failures": [],
                       "ResponseMetadata": deleted["ResponseMetadata"]}
    deleted = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": amd[0]},
                                                                     {"imageDigest": arm[0]}])
    assert deleted["failures"] == [] and len(deleted["imageIds"]) == 2
    assert ecr.describe_images(repositoryName=repo)["imageDetails"] == []


# ---- UpdateImageStorageClass (the archive storage class)


def test_archive_refuses_pulls_on_both_planes_until_restored(ecr, repo, images, http):
    amd = images.image(repo, arch="amd64")
    arm = images.image(repo, arch="arm64")
    index_digest = images.put(repo, Images.index([(amd[0], amd[1], "amd64"), (arm[0], arm[1], "arm64")]), "multi")

    # A child of a STANDARD index cannot go alone; a bad class is refused by the model.
    raises(ecr, "ImageStorageClassUpdateNotSupportedException", ecr.update_image_storage_class,
           repositoryName=repo, imageId={"imageDigest": amd[0]}, targetStorageClass="ARCHIVE")
    raises(ecr, "InvalidParameterException", ecr.update_image_storage_class,
           repositoryName=repo, imageId={"imageTag": "multi"}, targetStorageClass="GLACIER")
    raises(ecr, "ImageNotFoundException", ecr.update_image_storage_class,
           repositoryName=repo, imageId={"imageTag": "nope"}, targetStorageClass="ARCHIVE")

    archived = ecr.update_image_storage_class(repositoryName=repo, imageId={"imageTag": "multi"},
                                              targetStorageClass="ARCHIVE")
    assert (archived["imageStatus"], archived["imageId"]) == ("ARCHIVED", {"imageDigest": index_digest,
                                                                         "imageTag": "multi"})
    # DescribeImages shows ACTIVE images unless asked; the index took its untagged children along.
    assert ecr.describe_images(repositoryName=repo)["imageDetails"] == []
    details = ecr.describe_images(repositoryName=repo, filter={"imageStatus": "ARCHIVED"})["imageDetails"]
    assert sorted(d["imageDigest"] for d in details) == sorted([index_digest, amd[0], arm[0]])
    assert all(d["imageStatus"] == "ARCHIVED" and "lastArchivedAt" in d and "lastActivatedAt" not in d
               for d in details)
    assert len(ecr.describe_images(repositoryName=repo, filter={"imageStatus": "ANY"})["imageDetails"]) == 3
    assert ecr.describe_images(repositoryName=repo, filter={"imageStatus": "ACTIVATING"})["imageDetails"] == []
    [by_id] = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "multi"}])["imageDetails"]
    assert by_id["imageStatus"] == "ARCHIVED", "described by id whatever the filter"

    # Pulls are refused: BatchGetImage with a failure, /v2/ with 404 MANIFEST_UNKNOWN.
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "multi"}])
    assert got["images"] == [] and got["failures"][0]["failureCode"] == "ImageNotFound"
    assert "archived" in got["failures"][0]["failureReason"]
    for reference in ("multi", index_digest, arm[0]):
        status, _, body = http.get_manifest(repo, reference)
        assert status == 404, (reference, status)
        assert json.loads(body)["errors"][0]["code"] == "MANIFEST_UNKNOWN"

    restored = ecr.update_image_storage_class(repositoryName=repo, imageId={"imageDigest": index_digest},
                                              targetStorageClass="STANDARD")
    assert restored["imageStatus"] == "ACTIVE", "Berth restores within the call (never ACTIVATING)"
    for reference in ("multi", amd[0], arm[0]):
        assert http.get_manifest(repo, reference)[0] == 200
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "multi"}])
    assert got["failures"] == [] and got["images"][0]["imageId"]["imageDigest"] == index_digest
    details = ecr.describe_images(repositoryName=repo)["imageDetails"]
    assert len(details) == 3 and all(d["imageStatus"] == "ACTIVE" and "lastActivatedAt" in d for d in details)

    # Pushing an archived image again restores it, as on ECR.
    ecr.update_image_storage_class(repositoryName=repo, imageId={"imageTag": "multi"}, targetStorageClass="ARCHIVE")
    images.put(repo, amd[1], "again")
    [child] = ecr.describe_images(repositoryName=repo, imageIds=[{"imageDigest": amd[0]}])["imageDetails"]
    assert child["imageStatus"] == "ACTIVE"


# ---- BatchDeleteImage


def test_batch_delete_untags_and_deletes(ecr, repo, images):
    digest, manifest, _, _ = images.image(repo, "a")
    images.put(repo, manifest, "b")
    images.put(repo, manifest, "c")
    untag = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "a"}])
    assert untag["imageIds"] == [{"imageDigest": digest, "imageTag": "a"}] and untag["failures"] == []
    [detail] = ecr.describe_images(repositoryName=repo)["imageDetails"]
    assert detail["imageTags"] == ["b", "c"], "other tags stay"
    # The pairs ListImages returns delete one by one; the image goes with its last tag.
    pairs = ecr.list_images(repositoryName=repo)["imageIds"]
    assert pairs == [{"imageDigest": digest, "imageTag": "b"}, {"imageDigest": digest, "imageTag": "c"}]
    out = ecr.batch_delete_image(repositoryName=repo, imageIds=pairs + [{"imageTag": "zzz"}, {}])
    assert out["imageIds"] == pairs
    assert [(f["imageId"], f["failureCode"]) for f in out["failures"]] == [
        ({"imageTag": "zzz"}, "ImageNotFound"), ({}, "MissingDigestAndTag")]
    assert ecr.describe_images(repositoryName=repo)["imageDetails"] == []

    digest, manifest, _, _ = images.image(repo, "x")
    images.put(repo, manifest, "y")
    other, _, _, _ = images.image(repo, "z")
    out = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": digest, "imageTag": "z"},
                                                                 {"imageDigest": digest, "imageTag": "absent"},
                                                                 {"imageDigest": "sha256:" + "a" * 64, "imageTag": "z"},
                                                                 {"imageDigest": digest}])
    assert [f["failureCode"] for f in out["failures"]] == [
        "ImageTagDoesNotMatchDigest", "ImageNotFound", "ImageNotFound"], out["failures"]
    assert out["imageIds"] == [{"imageDigest": digest, "imageTag": "x"}, {"imageDigest": digest, "imageTag": "y"}]
    assert [d["imageDigest"] for d in ecr.describe_images(repositoryName=repo)["imageDetails"]] == [other]


# ---- ListImages / DescribeImages pagination


def many_images(images, repo, count):
    """`count` tagged images sharing one config and layer (they differ by an annotation)."""
    config, layer = images.blobs(repo)
    digests = {}
    for i in range(count):
        digests[images.put(repo, images.manifest(config, layer, {"n": str(i)}), f"t{i:02d}")] = f"t{i:02d}"
    return config, layer, digests


def insert_around(images, repo, config, layer, cursor):
    """Puts one image whose digest sorts before `cursor` and one after; returns their digests."""
    before = after = None
    while before is None or after is None:
        manifest = images.manifest(config, layer, {"extra": uuid.uuid4().hex})
        digest = digest_of(manifest.encode())
        if digest < cursor and before is None:
            before = images.put(repo, manifest, "before")
        elif digest > cursor and after is None:
            after = images.put(repo, manifest, "after")
    return before, after


def test_list_images_pages_are_stable_under_inserts(ecr, repo, images):
    config, layer, digests = many_images(images, repo, 7)
    untagged = images.put(repo, images.manifest(config, layer, {"untagged": "yes"}))
    images.put(repo, images.manifest(config, layer, {"n": "0"}), "t00-second")
    expected = sorted([(d, t) for d, t in digests.items()] + [(untagged, None)]
                      + [(k, "t00-second") for k, t in digests.items() if t == "t00"])
    listed = ecr.list_images(repositoryName=repo, maxResults=1000)["imageIds"]
    assert [(i["imageDigest"], i.get("imageTag")) for i in listed] == expected

    first = ecr.list_images(repositoryName=repo, maxResults=3)
    assert len(first["imageIds"]) == 3 and first["nextToken"]
    cursor = first["imageIds"][-1]["imageDigest"]
    before, after = insert_around(images, repo, config, layer, cursor)
    seen, token = list(first["imageIds"]), first["nextToken"]
    while token:
        page = ecr.list_images(repositoryName=repo, maxResults=3, nextToken=token)
        assert len(page["imageIds"]) <= 3
        seen += page["imageIds"]
        token = page.get("nextToken")
    pairs = [(i["imageDigest"], i.get("imageTag")) for i in seen]
    assert len(pairs) == len(set(pairs))
    assert set(expected) <= set(pairs)
    assert (after, "after") in pairs and (before, "before") not in pairs

    tagged = [i for p in ecr.get_paginator("list_images").paginate(
        repositoryName=repo, filter={"tagStatus": "TAGGED"}, PaginationConfig={"PageSize": 2}) for i in p["imageIds"]]
    assert all("imageTag" in i for i in tagged) and len(tagged) == len(expected) + 1  # +2 inserted, -1 untagged
    only_untagged = ecr.list_images(repositoryName=repo, filter={"tagStatus": "UNTAGGED"})["imageIds"]
    assert only_untagged == [{"imageDigest": untagged}]
    assert ecr.list_images(repositoryName=repo, filter={"imageStatus": "ARCHIVED"})["imageIds"] == []
    # A token is bound to its request: another filter refuses it.
    raises(ecr, "InvalidParameterException", ecr.list_images, repositoryName=repo, nextToken=first["nextToken"],
           filter={"tagStatus": "TAGGED"})
    raises(ecr, "InvalidParameterException", ecr.list_images, repositoryName=repo, maxResults=1001)


def test_describe_images_pages_are_stable_under_inserts(ecr, repo, images):
    config, layer, digests = many_images(images, repo, 5)
    first = ecr.describe_images(repositoryName=repo, maxResults=2)
    assert [d["imageDigest"] for d in first["imageDetails"]] == sorted(digests)[:2]
    before, after = insert_around(images, repo, config, layer, first["imageDetails"][-1]["imageDigest"])
    seen, token = [d["imageDigest"] for d in first["imageDetails"]], first["nextToken"]
    while token:
        page = ecr.describe_images(repositoryName=repo, maxResults=2, nextToken=token)
        seen += [d["imageDigest"] for d in page["imageDetails"]]
        token = page.get("nextToken")
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert set(digests) <= set(seen) and after in seen and before not in seen
    everything = [d for p in ecr.get_paginator("describe_images").paginate(repositoryName=repo,
                  PaginationConfig={"PageSize": 4}) for d in p["imageDetails"]]
    assert len(everything) == 7
    last = ecr.describe_images(repositoryName=repo, maxResults=7)
    assert len(last["imageDetails"]) == 7 and "nextToken" not in last, "no token when nothing remains"


# ---- layers


def test_layer_upload_in_parts(ecr, repo, images, http):
    data = os.urandom(5 * MIB + 1234)
    upload = ecr.initiate_layer_upload(repositoryName=repo)
    assert upload["partSize"] == 10 * MIB
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", upload["uploadId"])
    uid = upload["uploadId"]
    part = ecr.upload_layer_part(repositoryName=repo, uploadId=uid, partFirstByte=0, partLastByte=5 * MIB - 1,
                                 layerPartBlob=data[:5 * MIB])
    assert part["lastByteReceived"] == 5 * MIB - 1 and part["uploadId"] == uid
    with pytest.raises(ClientError) as excinfo:
        ecr.upload_layer_part(repositoryName=repo, uploadId=uid, partFirstByte=5 * MIB + 10,
                              partLastByte=5 * MIB + 20, layerPartBlob=b"x" * 11)
    assert error_code(excinfo) == "InvalidLayerPartException"
    assert excinfo.value.response["lastValidByteReceived"] == 5 * MIB - 1
    raises(ecr, "InvalidLayerPartException", ecr.upload_layer_part, repositoryName=repo, uploadId=uid,
           partFirstByte=5 * MIB, partLastByte=5 * MIB + 99, layerPartBlob=b"short")
    ecr.upload_layer_part(repositoryName=repo, uploadId=uid, partFirstByte=5 * MIB, partLastByte=len(data) - 1,
                          layerPartBlob=data[5 * MIB:])
    raises(ecr, "InvalidLayerException", ecr.complete_layer_upload, repositoryName=repo, uploadId=uid,
           layerDigests=["sha256:" + "c" * 64])
    digest = digest_of(data)
    done = ecr.complete_layer_upload(repositoryName=repo, uploadId=uid, layerDigests=[digest])
    assert done == {"registryId": REGISTRY_ID, "repositoryName": repo, "uploadId": uid, "layerDigest": digest,
                    "ResponseMetadata": done["ResponseMetadata"]}
    raises(ecr, "UploadNotFoundException", ecr.complete_layer_upload, repositoryName=repo, uploadId=uid,
           layerDigests=[digest])
    # The layer is an ordinary blob of the repository on /v2/ too.
    status, _, body = http.request("GET", f"/v2/{repo}/blobs/{digest}")
    assert status == 200 and body == data
    again = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    ecr.upload_layer_part(repositoryName=repo, uploadId=again, partFirstByte=0, partLastByte=len(data) - 1,
                          layerPartBlob=data)
    raises(ecr, "LayerAlreadyExistsException", ecr.complete_layer_upload, repositoryName=repo, uploadId=again,
           layerDigests=[digest])


def test_layer_upload_errors(ecr, repo):
    uid = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    raises(ecr, "EmptyUploadException", ecr.complete_layer_upload, repositoryName=repo, uploadId=uid,
           layerDigests=[digest_of(b"")])
    small, rest = os.urandom(MIB), os.urandom(100)
    ecr.upload_layer_part(repositoryName=repo, uploadId=uid, partFirstByte=0, partLastByte=MIB - 1,
                          layerPartBlob=small)
    ecr.upload_layer_part(repositoryName=repo, uploadId=uid, partFirstByte=MIB, partLastByte=MIB + 99,
                          layerPartBlob=rest)
    message = raises(ecr, "LayerPartTooSmallException", ecr.complete_layer_upload, repositoryName=repo,
                     uploadId=uid, layerDigests=[digest_of(small + rest)])
    assert "5 MiB" in message
    unknown = str(uuid.uuid4())
    message = raises(ecr, "UploadNotFoundException", ecr.upload_layer_part, repositoryName=repo, uploadId=unknown,
                     partFirstByte=0, partLastByte=0, layerPartBlob=b"x")
    assert unknown in message
    raises(ecr, "InvalidParameterException", ecr.upload_layer_part, repositoryName=repo, uploadId="not-a-uuid",
           partFirstByte=0, partLastByte=0, layerPartBlob=b"x")
    raises(ecr, "RepositoryNotFoundException", ecr.initiate_layer_upload, repositoryName=f"{repo}-absent")
    # An upload belongs to its repository.
    other = f"{repo}-other"
    ecr.create_repository(repositoryName=other)
    try:
        raises(ecr, "UploadNotFoundException", ecr.complete_layer_upload, repositoryName=other, uploadId=uid,
               layerDigests=[digest_of(small + rest)])
    finally:
        ecr.delete_repository(repositoryName=other, force=True)


def test_batch_check_layer_availability(ecr, repo, images):
    config, layer = images.blobs(repo)
    missing = digest_of(b"absent")
    out = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[
        layer["digest"], missing, "nope", config["digest"]])
    assert out["layers"] == [
        {"layerDigest": layer["digest"], "layerAvailability": "AVAILABLE", "layerSize": layer["size"]},
        {"layerDigest": config["digest"], "layerAvailability": "AVAILABLE", "layerSize": config["size"]}]
    assert [(f["layerDigest"], f["failureCode"]) for f in out["failures"]] == [
        (missing, "MissingLayerDigest"), ("nope", "InvalidLayerDigest")]
    raises(ecr, "RepositoryNotFoundException", ecr.batch_check_layer_availability,
           repositoryName=f"{repo}-absent", layerDigests=[missing])
    # Once an image needs them, each has the media type its descriptor gives it (AWS's example:
    # "mediaType": "application/vnd.docker.container.image.v1+json" for a config).
    images.put(repo, images.manifest(config, layer), "with-types")
    out = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[layer["digest"], config["digest"]])
    assert [(entry["layerDigest"], entry.get("mediaType")) for entry in out["layers"]] == [
        (layer["digest"], layer["mediaType"]), (config["digest"], config["mediaType"])]


def test_download_url_for_layer(ecr, repo, images, http, addr):
    digest, manifest, config, layer = images.image(repo, "v1")
    out = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=layer["digest"])
    assert out["layerDigest"] == layer["digest"]
    url = out["downloadUrl"]
    assert url.startswith(f"http://{addr}/") and "signature=" in url and "expires=" in url
    status, headers, body = http.request("GET", "", url=url)
    assert status == 200 and digest_of(body) == layer["digest"]
    status, _, body = http.request("GET", "", url=url, headers={"Range": "bytes=0-9"})
    assert status == 206 and len(body) == 10
    # The config blob is part of the image too.
    config_url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=config["digest"])["downloadUrl"]
    assert http.request("GET", "", url=config_url)[0] == 200
    tampered_signature = re.sub(r"signature=(.)", lambda m: "signature=" + ("0" if m[1] != "0" else "1"), url)
    assert http.request("GET", "", url=tampered_signature)[0] == 403
    longer = re.sub(r"expires=(\d+)", lambda m: f"expires={int(m[1]) + 3600}", url)
    assert http.request("GET", "", url=longer)[0] == 403
    other_blob = url.replace(layer["digest"], config["digest"])
    assert http.request("GET", "", url=other_blob)[0] == 403
    assert http.request("GET", "", url=url.split("?")[0])[0] == 403

    unreferenced = images.upload_layer(repo, b"uploaded but in no image")
    message = raises(ecr, "LayerInaccessibleException", ecr.get_download_url_for_layer, repositoryName=repo,
                     layerDigest=unreferenced)
    assert unreferenced in message
    raises(ecr, "LayersNotFoundException", ecr.get_download_url_for_layer, repositoryName=repo,
           layerDigest=digest_of(b"never"))
    raises(ecr, "InvalidParameterException", ecr.get_download_url_for_layer, repositoryName=repo,
           layerDigest="sha256:xyz")


# ---- resource tags


def test_resource_tags(ecr, repo):
    resource = arn(repo)
    assert ecr.list_tags_for_resource(resourceArn=resource)["tags"] == []
    ecr.tag_resource(resourceArn=resource, tags=[{"Key": "team", "Value": "web"}, {"Key": "env", "Value": "dev"}])
    ecr.tag_resource(resourceArn=resource, tags=[{"Key": "env", "Value": "prod"}])
    assert ecr.list_tags_for_resource(resourceArn=resource)["tags"] == [
        {"Key": "team", "Value": "web"}, {"Key": "env", "Value": "prod"}]
    ecr.untag_resource(resourceArn=resource, tagKeys=["team", "absent"])
    assert ecr.list_tags_for_resource(resourceArn=resource)["tags"] == [{"Key": "env", "Value": "prod"}]
    ecr.tag_resource(resourceArn=resource, tags=[{"Key": f"k{i}", "Value": "v"} for i in range(49)])
    raises(ecr, "TooManyTagsException", ecr.tag_resource, resourceArn=resource, tags=[{"Key": "one", "Value": "2"}])
    assert len(ecr.list_tags_for_resource(resourceArn=resource)["tags"]) == 50
    message = raises(ecr, "InvalidParameterException", ecr.list_tags_for_resource, resourceArn="arn:aws:s3:::x")
    assert message == "Invalid parameter at 'resourceArn' failed to satisfy constraint: 'Invalid ARN'"
    raises(ecr, "RepositoryNotFoundException", ecr.list_tags_for_resource,
           resourceArn=resource.replace(REGISTRY_ID, "123456789012"))
    raises(ecr, "RepositoryNotFoundException", ecr.tag_resource, resourceArn=arn(f"{repo}-absent"),
           tags=[{"Key": "a", "Value": "b"}])
    raises(ecr, "InvalidTagParameterException", ecr.tag_resource, resourceArn=resource,
           tags=[{"Key": "k" * 129, "Value": "v"}])
    # Berth's ARNs are in the `aws` partition: another partition's ARN names none of its repositories.
    for partition in ["aws-cn", "aws-us-gov"]:
        message = raises(ecr, "InvalidParameterException", ecr.tag_resource,
                         resourceArn=resource.replace("arn:aws:", f"arn:{partition}:"), tags=[{"Key": "p", "Value": "1"}])
        assert "Invalid ARN" in message
    assert {"Key": "p", "Value": "1"} not in ecr.list_tags_for_resource(resourceArn=resource)["tags"]


def test_a_repository_name_ecr_could_not_manage_is_not_created_on_push(ecr, http):
    try:
        config = http.push_blob("pytest-z", b"{}")
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 2}, "layers": []})
        status, _, body = http.put_manifest("z", "v1", manifest.encode(), OCI_MANIFEST)
        error = json.loads(body)["errors"][0]
        assert (status, error["code"]) == (400, "NAME_INVALID") and "shorter than 2" in error["message"], body
        status, _, _ = http.request("POST", "/v2/z/blobs/uploads/")
        assert status == 400, "a blob upload creates nothing either"
        names = [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]]
        assert "z" not in names
    finally:
        ecr.delete_repository(repositoryName="pytest-z", force=True)


# ---- tag mutability, enforced on both planes


def test_tag_mutability_modes_on_both_planes(ecr, repo, images, http):
    config, layer = images.blobs(repo)
    one = images.manifest(config, layer, {"n": "1"})
    two = images.manifest(config, layer, {"n": "2"})
    out = ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="IMMUTABLE")
    assert (out["imageTagMutability"], out["registryId"], out["repositoryName"]) == ("IMMUTABLE", REGISTRY_ID, repo)
    images.put(repo, one, "v1")
    message = raises(ecr, "ImageTagAlreadyExistsException", ecr.put_image, repositoryName=repo, imageManifest=two,
                     imageTag="v1")
    # ECR's words on both planes (since its tag-level immutability).
    ecr_words = f"The image tag 'v1' already exists in the '{repo}' repository and cannot be overwritten " \
                "because the tag is immutable."
    assert message == ecr_words
    raises(ecr, "ImageAlreadyExistsException", ecr.put_image, repositoryName=repo, imageManifest=one, imageTag="v1")
    status, _, body = http.put_manifest(repo, "v1", two.encode(), OCI_MANIFEST)
    error = json.loads(body)["errors"][0]
    assert 400 <= status < 500 and error["code"] == "TAG_INVALID" and error["message"] == ecr_words
    assert http.put_manifest(repo, "v1", one.encode(), OCI_MANIFEST)[0] == 201, "same digest is not a move"

    ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
                                 imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "dev-*"}])
    images.put(repo, one, "dev-1")
    images.put(repo, two, "dev-1")
    raises(ecr, "ImageTagAlreadyExistsException", ecr.put_image, repositoryName=repo, imageManifest=two,
           imageTag="v1")

    out = ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="MUTABLE_WITH_EXCLUSION",
                                       imageTagMutabilityExclusionFilters=[
                                           {"filterType": "WILDCARD", "filter": "release-*"}])
    assert out["imageTagMutabilityExclusionFilters"] == [{"filterType": "WILDCARD", "filter": "release-*"}]
    images.put(repo, two, "v1")
    images.put(repo, one, "release-1")
    status, _, body = http.put_manifest(repo, "release-1", two.encode(), OCI_MANIFEST)
    assert status == 400 and b"TAG_INVALID" in body and b"release-1" in body
    assert http.put_manifest(repo, "latest", two.encode(), OCI_MANIFEST)[0] == 201
    assert http.put_manifest(repo, "latest", one.encode(), OCI_MANIFEST)[0] == 201

    ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="MUTABLE")
    images.put(repo, two, "release-1")
    [described] = ecr.describe_repositories(repositoryNames=[repo])["repositories"]
    assert described["imageTagMutability"] == "MUTABLE"
    assert "imageTagMutabilityExclusionFilters" not in described
    # Deleting a tag is allowed whatever the mode.
    ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="IMMUTABLE")
    assert ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "dev-1"}])["failures"] == []
    raises(ecr, "InvalidParameterException", ecr.put_image_tag_mutability, repositoryName=repo,
           imageTagMutability="IMMUTABLE", imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD",
                                                                               "filter": "x"}])
    raises(ecr, "RepositoryNotFoundException", ecr.put_image_tag_mutability, repositoryName=f"{repo}-absent",
           imageTagMutability="MUTABLE")


# ---- one model for both planes


def test_v2_push_shows_in_ecr_and_ecr_put_pulls_from_v2(ecr, http, images):
    name = f"pytest/v2-{uuid.uuid4().hex[:8]}"
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    layer = os.urandom(1000)
    cfg = {"mediaType": OCI_CONFIG, "digest": http.push_blob(name, config.encode()), "size": len(config)}
    lay = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": http.push_blob(name, layer),
           "size": len(layer)}
    manifest = Images.manifest(cfg, lay)
    status, headers, _ = http.put_manifest(name, "pushed", manifest.encode(), OCI_MANIFEST)
    assert status == 201
    try:
        # The repository created by the push, and its image, at once.
        [repository] = ecr.describe_repositories(repositoryNames=[name])["repositories"]
        assert repository["imageTagMutability"] == "MUTABLE"
        [detail] = ecr.describe_images(repositoryName=name)["imageDetails"]
        assert detail["imageDigest"] == headers["docker-content-digest"] == digest_of(manifest.encode())
        assert detail["imageTags"] == ["pushed"] and detail["imageSizeInBytes"] == len(config) + len(layer)
        got = ecr.batch_get_image(repositoryName=name, imageIds=[{"imageTag": "pushed"}])["images"][0]
        assert got["imageManifest"] == manifest
        url = ecr.get_download_url_for_layer(repositoryName=name, layerDigest=lay["digest"])["downloadUrl"]
        assert http.request("GET", "", url=url)[2] == layer

        # The other way: layer API + PutImage, pulled through /v2/.
        digest, put_manifest, put_config, put_layer = images.image(name, "from-ecr")
        status, headers, body = http.get_manifest(name, "from-ecr")
        assert status == 200 and body == put_manifest.encode() and headers["docker-content-digest"] == digest
        assert headers["content-type"] == OCI_MANIFEST
        status, _, body = http.request("GET", f"/v2/{name}/blobs/{put_layer['digest']}")
        assert status == 200 and digest_of(body) == put_layer["digest"]
        status, _, body = http.request("GET", f"/v2/{name}/tags/list")
        assert json.loads(body)["tags"] == ["from-ecr", "pushed"]
        # Deleting through ECR is seen by /v2/.
        ecr.batch_delete_image(repositoryName=name, imageIds=[{"imageTag": "from-ecr"}])
        assert http.get_manifest(name, "from-ecr")[0] == 404
    finally:
        ecr.delete_repository(repositoryName=name, force=True)
    assert http.get_manifest(name, "pushed")[0] == 404


# ---- referrers


def test_list_image_referrers(ecr, repo, images):
    digest, manifest, config, layer = images.image(repo, "v1")
    subject = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest.encode())}
    sbom = images.put(repo, images.manifest(config, layer, {"kind": "sbom"}, subject, "application/spdx+json"))
    sig = images.put(repo, images.manifest(config, layer, {"kind": "sig"}, subject,
                                           "application/vnd.dev.cosign.artifact.sig.v1+json"))
    out = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": digest})
    refs = {r["digest"]: r for r in out["referrers"]}
    assert set(refs) == {sbom, sig} and "nextToken" not in out
    assert refs[sbom]["artifactType"] == "application/spdx+json"
    assert refs[sbom]["mediaType"] == OCI_MANIFEST and refs[sbom]["artifactStatus"] == "ACTIVE"
    assert refs[sbom]["annotations"] == {"kind": "sbom"} and refs[sbom]["size"] > 0
    only = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": digest},
                                    filter={"artifactTypes": ["application/spdx+json"]})["referrers"]
    assert [r["digest"] for r in only] == [sbom]
    page = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": digest}, maxResults=1)
    rest = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": digest}, maxResults=1,
                                    nextToken=page["nextToken"])
    assert [r["digest"] for r in page["referrers"] + rest["referrers"]] == sorted([sbom, sig])
    assert "nextToken" not in rest
    details = {d["imageDigest"]: d for d in ecr.describe_images(repositoryName=repo)["imageDetails"]}
    assert details[sbom]["subjectManifestDigest"] == digest
    assert details[sbom]["artifactMediaType"] == "application/spdx+json"
    raises(ecr, "InvalidParameterException", ecr.list_image_referrers, repositoryName=repo,
           subjectId={"imageDigest": digest}, maxResults=51)


# ---- the front door: unknown operations and bad input are 4xx, never 500


def test_unknown_operation(http):
    status, body = http.ecr_raw("MakeCoffee", b"{}")
    assert status == 400 and body["__type"] == "UnknownOperationException"


@pytest.mark.parametrize("operation,body", [
    ("DescribeImages", b"{not json"),
    ("DescribeImages", b'{"repositoryName": 42}'),
    ("DescribeImages", b'{"repositoryName": "pytest/x", "maxResults": "many"}'),
    ("DescribeImages", b'{"repositoryName": "pytest/x", "maxResults": 0}'),
    ("ListImages", b'{"repositoryName": "pytest/x", "nextToken": "%%%"}'),
    ("PutImage", b'{"repositoryName": "pytest/x"}'),
    ("PutImage", b'{"repositoryName": "pytest/x", "imageManifest": "[]"}'),
    ("UploadLayerPart", b'{"repositoryName": "pytest/x", "uploadId": "00000000-0000-0000-0000-000000000000", '
                        b'"partFirstByte": -1, "partLastByte": 0, "layerPartBlob": "aGk="}'),
    ("UploadLayerPart", b'{"repositoryName": "pytest/x", "uploadId": "00000000-0000-0000-0000-000000000000", '
                        b'"partFirstByte": 0, "partLastByte": 0, "layerPartBlob": "!!"}'),
    ("CompleteLayerUpload", b'{"repositoryName": "pytest/x", "uploadId": "00000000-0000-0000-0000-000000000000", '
                            b'"layerDigests": ["md5:abc"]}'),
    ("BatchDeleteImage", b'{"repositoryName": "pytest/x", "imageIds": []}'),
    ("TagResource", b'{"resourceArn": "arn:aws:ecr:us-east-1:000000000000:repository/", "tags": []}'),
    ("CreateRepository", b'{"repositoryName": "pytest/x", "encryptionConfiguration": {"encryptionType": "ROT13"}}'),
    ("PutImageTagMutability", b'{"repositoryName": "pytest/x", "imageTagMutability": "MUTABLE", '
                              b'"imageTagMutabilityExclusionFilters": [{"filterType": "REGEX", "filter": "x"}]}'),
    ("ListImageReferrers", b'{"repositoryName": "pytest/x", "subjectId": {"imageDigest": "sha1:abc"}}'),
    ("GetDownloadUrlForLayer", b'{"repositoryName": "pytest/x", "layerDigest": "sha256:' + b"0" * 63 + b'"}'),
    ("DescribeRepositories", b"[]"),
    ("PutLifecyclePolicy", b'{"repositoryName": "pytest/x"}'),
    ("PutLifecyclePolicy", b'{"repositoryName": "pytest/x", "lifecyclePolicyText": 42}'),
    ("GetLifecyclePolicyPreview", b'{"repositoryName": "pytest/x", "maxResults": 0}'),
    ("GetLifecyclePolicyPreview", b'{"repositoryName": "pytest/x", "filter": {"tagStatus": "SOME"}}'),
    ("GetLifecyclePolicyPreview", b'{"repositoryName": "pytest/x", "imageIds": [{"imageTag": "a"}], "maxResults": 5}'),
    ("SetRepositoryPolicy", b'{"repositoryName": "pytest/x"}'),
    ("GetRepositoryPolicy", b'{"repositoryName": "Pytest/X"}'),
    ("BatchGetRepositoryScanningConfiguration", b'{"repositoryNames": []}'),
    ("BatchGetRepositoryScanningConfiguration", b'{}'),
])
def test_bad_input_is_a_client_error(http, operation, body):
    status, payload = http.ecr_raw(operation, body)
    assert 400 <= status < 500, (status, payload)
    assert payload["__type"] in {"InvalidParameterException", "SerializationException",
                                 "RepositoryNotFoundException"}, payload
    assert payload["message"]


# ---- lifecycle policies


def lifecycle_text(*rules):
    """A policy document; `rules` are (tagStatus, selection extras, countType, countNumber)."""
    return json.dumps({"rules": [
        {"rulePriority": priority, "description": f"rule {priority} of a Berth test policy",
         "selection": {"tagStatus": status, **extra, "countType": count_type, "countNumber": number,
                       **({"countUnit": "days"} if count_type == "sinceImagePushed" else {})},
         "action": {"type": "expire"}}
        for priority, (status, extra, count_type, number) in enumerate(rules, start=1)]})


# rule 1 keeps the newest v* image, rule 2 the newest multi* index, rule 3 the newest untagged orphan.
GOVERNED = lifecycle_text(("tagged", {"tagPrefixList": ["v"]}, "imageCountMoreThan", 1),
                          ("tagged", {"tagPatternList": ["multi*"]}, "imageCountMoreThan", 1),
                          ("untagged", {}, "imageCountMoreThan", 1))
# What GOVERNED expires in the repository `governed_images` builds, with the rule that does it:
# the signature and the child that expired images leave behind are judged as the untagged images
# they become, and the untagged rule (keep the newest one, u2) takes them.
GOVERNED_EXPIRES = {"v1": 1, "v2": 1, "sig-of-v1": 3, "multi1": 2, "amd1": 3, "u1": 3}


def governed_images(images, repo):
    """Tagged v1..v3 (v1 with an untagged signature), two multi-arch indexes that share their arm64
    child, and two untagged orphans, pushed in that order; returns name -> digest."""
    made = {}
    for tag in ("v1", "v2", "v3"):
        digest, manifest, config, layer = images.image(repo, tag)
        made[tag] = digest
        if tag == "v1":
            subject = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest.encode())}
            made["sig-of-v1"] = images.put(repo, images.manifest(
                config, layer, {"kind": "sig"}, subject, "application/vnd.dev.cosign.artifact.sig.v1+json"))
    children = {name: images.image(repo, arch=arch) for name, arch in
                (("amd1", "amd64"), ("amd2", "amd64"), ("arm", "arm64"))}
    made.update({name: child[0] for name, child in children.items()})
    for index, amd in (("multi1", "amd1"), ("multi2", "amd2")):
        time.sleep(0.01)  # push order is push time in milliseconds: no two in the same one
        made[index] = images.put(repo, Images.index([(children[amd][0], children[amd][1], "amd64"),
                                                     (children["arm"][0], children["arm"][1], "arm64")]), index)
    for orphan in ("u1", "u2"):
        made[orphan] = images.image(repo)[0]
    return made


def test_lifecycle_policy_put_get_delete(ecr, repo):
    raises(ecr, "LifecyclePolicyNotFoundException", ecr.get_lifecycle_policy, repositoryName=repo)
    message = raises(ecr, "LifecyclePolicyNotFoundException", ecr.delete_lifecycle_policy, repositoryName=repo)
    assert message == f"Lifecycle policy does not exist for the repository with name '{repo}' in the registry " \
                      f"with id '{REGISTRY_ID}'"
    # ECR answers the text without whitespace (its examples put a pretty-printed file), members
    # in the order sent, and lastEvaluatedAt 0 until the policy has run.
    compact = lambda text: json.dumps(json.loads(text), separators=(",", ":"))
    assert compact(GOVERNED) != GOVERNED
    put = ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=GOVERNED)
    assert (put["registryId"], put["repositoryName"], put["lifecyclePolicyText"]) == \
        (REGISTRY_ID, repo, compact(GOVERNED))
    got = ecr.get_lifecycle_policy(repositoryName=repo)
    assert got["lifecyclePolicyText"] == compact(GOVERNED) and got["repositoryName"] == repo
    assert got["lastEvaluatedAt"].timestamp() == 0
    # A preview of the stored policy answers it as GetLifecyclePolicy does (one given is echoed).
    assert ecr.start_lifecycle_policy_preview(repositoryName=repo)["lifecyclePolicyText"] == compact(GOVERNED)
    assert ecr.get_lifecycle_policy_preview(repositoryName=repo)["lifecyclePolicyText"] == compact(GOVERNED)
    other = lifecycle_text(("any", {}, "sinceImagePushed", 365))
    ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=other)
    deleted = ecr.delete_lifecycle_policy(repositoryName=repo)
    assert deleted["lifecyclePolicyText"] == compact(other) and deleted["lastEvaluatedAt"].timestamp() == 0
    raises(ecr, "LifecyclePolicyNotFoundException", ecr.get_lifecycle_policy, repositoryName=repo)
    raises(ecr, "RepositoryNotFoundException", ecr.put_lifecycle_policy, repositoryName="pytest/none",
           lifecyclePolicyText=GOVERNED)
    raises(ecr, "RepositoryNotFoundException", ecr.get_lifecycle_policy, repositoryName="pytest/none")


@pytest.mark.parametrize("policy,says", [
    ('{"rules": [ ' + " " * 100 + "]", "not valid JSON"),
    (json.dumps({"rules": "x" * 100}), "does not match the required type array"),
    (json.dumps({"rules": [], "pad": "x" * 100}), "not allowed by the schema"),
    (json.dumps({"rules": [{"rulePriority": 1, "description": "x" * 80, "selection": {"tagStatus": "untagged",
                 "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}}] * 2}),
     "rulePriority must be unique"),
    (lifecycle_text(("tagged", {}, "imageCountMoreThan", 1)), "requires tagPrefixList or tagPatternList"),
    (lifecycle_text(("tagged", {"tagPrefixList": ["v"], "tagPatternList": ["v*"]}, "imageCountMoreThan", 1)),
     "cannot both be specified"),
    (lifecycle_text(("tagged", {"tagPrefixList": ["v*"]}, "imageCountMoreThan", 1)), "wildcards are only allowed"),
    (lifecycle_text(("tagged", {"tagPatternList": ["*a*b*c*d*"]}, "imageCountMoreThan", 1)), "more than 4 wildcards"),
    (lifecycle_text(("untagged", {"tagPrefixList": ["v"]}, "imageCountMoreThan", 1)), "only allowed with tagStatus"),
    (lifecycle_text(("TAGGED", {"tagPrefixList": ["v"]}, "imageCountMoreThan", 1)), "not found in enum"),
    (lifecycle_text(("untagged", {}, "imageCountMoreThan", 0)), "minimum: 1, found: 0"),
    (lifecycle_text(("untagged", {}, "imageCountMoreThan", 1), ("untagged", {}, "sinceImagePushed", 1)),
     "only one rule is allowed to select untagged images"),
    (lifecycle_text(("any", {}, "imageCountMoreThan", 5), ("untagged", {}, "imageCountMoreThan", 1)),
     "must have the highest rulePriority"),
    (lifecycle_text(("untagged", {"countUnit": "days"}, "imageCountMoreThan", 1)), "countUnit is only allowed"),
    (lifecycle_text(("untagged", {"countUnit": "days"}, "sinceImagePulled", 1)),
     "only allowed with the action 'transition'"),
    (lifecycle_text(("untagged", {"countUnit": "days"}, "sinceImageTransitioned", 90)), "requires storageClass 'archive'"),
    (lifecycle_text(("untagged", {"countUnit": "days", "storageClass": "archive"}, "sinceImageTransitioned", 30)),
     "at least 90 days in the archive"),
    (lifecycle_text(("untagged", {"storageClass": "archive"}, "imageCountMoreThan", 3)),
     "only allowed with countType 'sinceImageTransitioned'"),
])
def test_lifecycle_policy_validation(ecr, repo, policy, says):
    assert len(policy) >= 100, "botocore refuses shorter texts itself"
    message = raises(ecr, "InvalidParameterException", ecr.put_lifecycle_policy, repositoryName=repo,
                     lifecyclePolicyText=policy)
    assert message.startswith("Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: "
                              "'Lifecycle policy validation failure: "), message
    assert says in message, message
    raises(ecr, "InvalidParameterException", ecr.start_lifecycle_policy_preview, repositoryName=repo,
           lifecyclePolicyText=policy)
    raises(ecr, "LifecyclePolicyNotFoundException", ecr.get_lifecycle_policy, repositoryName=repo)


def test_lifecycle_policy_text_length_is_checked_by_the_server(http, repo):
    for text, constraint in (("{}", "greater than or equal to 100"), ("x" * 30721, "less than or equal to 30720")):
        status, body = http.ecr_raw("PutLifecyclePolicy", json.dumps(
            {"repositoryName": repo, "lifecyclePolicyText": text}).encode())
        assert status == 400 and body["__type"] == "InvalidParameterException", body
        assert constraint in body["message"], body


def test_lifecycle_preview_keeps_multi_arch_images_whole(ecr, repo, images):
    raises(ecr, "LifecyclePolicyPreviewNotFoundException", ecr.get_lifecycle_policy_preview, repositoryName=repo)
    raises(ecr, "LifecyclePolicyNotFoundException", ecr.start_lifecycle_policy_preview, repositoryName=repo)
    made = governed_images(images, repo)
    name_of = {digest: name for name, digest in made.items()}
    started = ecr.start_lifecycle_policy_preview(repositoryName=repo, lifecyclePolicyText=GOVERNED)
    assert started["status"] in ("IN_PROGRESS", "COMPLETE") and started["lifecyclePolicyText"] == GOVERNED
    ecr.get_waiter("lifecycle_policy_preview_complete").wait(repositoryName=repo)
    preview = ecr.get_lifecycle_policy_preview(repositoryName=repo)
    assert preview["status"] == "COMPLETE" and preview["lifecyclePolicyText"] == GOVERNED
    results = preview["previewResults"]
    assert {name_of[r["imageDigest"]]: r["appliedRulePriority"] for r in results} == GOVERNED_EXPIRES
    assert preview["summary"]["expiringImageTotalCount"] == len(GOVERNED_EXPIRES)
    by_name = {name_of[r["imageDigest"]]: r for r in results}
    assert by_name["v1"]["imageTags"] == ["v1"] and by_name["multi1"]["imageTags"] == ["multi1"]
    assert "imageTags" not in by_name["amd1"] and "imageTags" not in by_name["sig-of-v1"]
    assert all(r["action"] == {"type": "EXPIRE"} for r in results)
    pushed = {d["imageDigest"]: d["imagePushedAt"] for d in ecr.describe_images(repositoryName=repo)["imageDetails"]}
    assert all(r["imagePushedAt"] == pushed[r["imageDigest"]] for r in results)
    # A preview changes nothing.
    assert len(pushed) == len(made)

    paged = [r for page in ecr.get_paginator("get_lifecycle_policy_preview").paginate(
        repositoryName=repo, PaginationConfig={"PageSize": 2}) for r in page["previewResults"]]
    assert [r["imageDigest"] for r in paged] == [r["imageDigest"] for r in results]
    untagged = ecr.get_lifecycle_policy_preview(repositoryName=repo, filter={"tagStatus": "UNTAGGED"})
    assert sorted(name_of[r["imageDigest"]] for r in untagged["previewResults"]) == ["amd1", "sig-of-v1", "u1"]
    named = ecr.get_lifecycle_policy_preview(repositoryName=repo, imageIds=[{"imageTag": "v2"},
                                                                            {"imageDigest": made["u1"]},
                                                                            {"imageTag": "v3"}])
    assert sorted(name_of[r["imageDigest"]] for r in named["previewResults"]) == ["u1", "v2"]
    raises(ecr, "InvalidParameterException", ecr.get_lifecycle_policy_preview, repositoryName=repo, maxResults=101)

    # Without a text, the preview tries the repository's policy (answered as GetLifecyclePolicy does).
    keep_all = lifecycle_text(("any", {}, "imageCountMoreThan", 1000))
    ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=keep_all)
    assert ecr.start_lifecycle_policy_preview(repositoryName=repo)["lifecyclePolicyText"] == \
        ecr.get_lifecycle_policy(repositoryName=repo)["lifecyclePolicyText"]
    preview = ecr.get_lifecycle_policy_preview(repositoryName=repo)
    assert preview["previewResults"] == [] and preview["summary"]["expiringImageTotalCount"] == 0


def test_lifecycle_policy_expires_images_in_the_background(ecr, repo, images, http):
    made = governed_images(images, repo)
    ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=GOVERNED)
    survivors = {digest for name, digest in made.items() if name not in GOVERNED_EXPIRES}
    deadline = time.time() + 40  # the policy runs at the next maintenance tick (every 10 s)
    while True:
        left = {d["imageDigest"] for d in ecr.describe_images(repositoryName=repo)["imageDetails"]}
        if left == survivors or time.time() > deadline:
            break
        time.sleep(1)
    name_of = {digest: name for name, digest in made.items()}
    assert sorted(name_of[d] for d in left) == sorted(name_of[d] for d in survivors)
    assert "lastEvaluatedAt" in ecr.get_lifecycle_policy(repositoryName=repo)
    assert abs(ecr.get_lifecycle_policy(repositoryName=repo)["lastEvaluatedAt"].timestamp() - time.time()) < 60
    # The kept index still pulls whole, including the child it shared with the expired one.
    status, _, body = http.get_manifest(repo, "multi2")
    assert status == 200
    for child in json.loads(body)["manifests"]:
        assert http.get_manifest(repo, child["digest"])[0] == 200


def test_lifecycle_transition_archives_in_the_background(ecr, repo, images, http):
    """A `transition` rule archives what it selects at the next run; the archived image's layer is
    ARCHIVED for BatchCheckLayerAvailability and refused by /v2/ until a push restores it."""
    old, old_manifest, _, old_layer = images.image(repo, tag="v1")
    new, _, _, new_layer = images.image(repo, tag="v2")
    policy = json.dumps({"rules": [
        {"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["v"],
                                          "countType": "imageCountMoreThan", "countNumber": 1},
         "action": {"type": "transition", "targetStorageClass": "archive"}},
        {"rulePriority": 2, "selection": {"tagStatus": "any", "storageClass": "archive",
                                          "countType": "sinceImageTransitioned", "countUnit": "days",
                                          "countNumber": 90},
         "action": {"type": "expire"}}]})
    ecr.start_lifecycle_policy_preview(repositoryName=repo, lifecyclePolicyText=policy)
    preview = ecr.get_lifecycle_policy_preview(repositoryName=repo)
    assert [(r["imageDigest"], r["action"], r["storageClass"], r["appliedRulePriority"])
            for r in preview["previewResults"]] == [(old, {"type": "TRANSITION", "targetStorageClass": "ARCHIVE"},
                                                     "STANDARD", 1)]
    assert preview["summary"] == {"expiringImageTotalCount": 0, "transitioningImageTotalCounts": [
        {"targetStorageClass": "ARCHIVE", "imageTotalCount": 1}]}

    ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=policy)
    deadline = time.time() + 40  # the policy runs at the next maintenance tick
    while time.time() < deadline:
        details = ecr.describe_images(repositoryName=repo, filter={"imageStatus": "ARCHIVED"})["imageDetails"]
        if details:
            break
        time.sleep(1)
    assert [(d["imageDigest"], d["imageStatus"]) for d in details] == [(old, "ARCHIVED")]
    layers = ecr.batch_check_layer_availability(repositoryName=repo,
                                                layerDigests=[old_layer["digest"], new_layer["digest"]])["layers"]
    assert {layer["layerDigest"]: layer["layerAvailability"] for layer in layers} == {
        old_layer["digest"]: "ARCHIVED", new_layer["digest"]: "AVAILABLE"}
    status, _, body = http.request("GET", f"/v2/{repo}/blobs/{old_layer['digest']}")
    assert status == 404 and json.loads(body)["errors"][0]["code"] == "BLOB_UNKNOWN"
    assert http.request("GET", f"/v2/{repo}/blobs/{new_layer['digest']}")[0] == 200

    ecr.delete_lifecycle_policy(repositoryName=repo)
    images.put(repo, old_manifest, "v1")
    [detail] = ecr.describe_images(repositoryName=repo, imageIds=[{"imageDigest": old}])["imageDetails"]
    assert detail["imageStatus"] == "ACTIVE", "pushing an archived image restores it"
    assert http.request("GET", f"/v2/{repo}/blobs/{old_layer['digest']}")[0] == 200


def test_repository_policy(ecr, repo):
    raises(ecr, "RepositoryPolicyNotFoundException", ecr.get_repository_policy, repositoryName=repo)
    message = raises(ecr, "RepositoryPolicyNotFoundException", ecr.delete_repository_policy, repositoryName=repo)
    assert message == f"Repository policy does not exist for the repository with name '{repo}' in the registry " \
                      f"with id '{REGISTRY_ID}'"
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "pull", "Effect": "Allow", "Principal": {"AWS": [f"arn:aws:iam::{REGISTRY_ID}:user/ci"]},
        "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]}]}, indent=2)
    out = ecr.set_repository_policy(repositoryName=repo, policyText=policy)
    assert (out["registryId"], out["repositoryName"]) == (REGISTRY_ID, repo)
    # ECR answers the policy re-serialized by Jackson's pretty printer, as in AWS's examples.
    expected = ('{\n  "Version" : "2012-10-17",\n  "Statement" : [ {\n    "Sid" : "pull",\n    "Effect" : "Allow",\n'
                '    "Principal" : {\n      "AWS" : [ "arn:aws:iam::%s:user/ci" ]\n    },\n'
                '    "Action" : [ "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer" ]\n  } ]\n}' % REGISTRY_ID)
    assert out["policyText"] == expected
    assert ecr.get_repository_policy(repositoryName=repo)["policyText"] == expected
    # IAM ties a principal to an existing user: a name no user has is refused, as by ECR.
    ghost = json.dumps({"Statement": [{"Effect": "Allow", "Action": "ecr:BatchGetImage",
                                       "Principal": {"AWS": f"arn:aws:iam::{REGISTRY_ID}:user/ghost"}}]})
    message = raises(ecr, "InvalidParameterException", ecr.set_repository_policy, repositoryName=repo,
                     policyText=ghost)
    assert message == "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Principal not found'"
    assert ecr.get_repository_policy(repositoryName=repo)["policyText"] == expected, "nothing changed"
    deny = json.dumps({"Statement": {"Effect": "Deny", "Principal": "*", "Action": "ecr:DeleteRepository"}})
    deny_text = '{\n  "Statement" : {\n    "Effect" : "Deny",\n    "Principal" : "*",\n' \
                '    "Action" : "ecr:DeleteRepository"\n  }\n}'
    assert ecr.set_repository_policy(repositoryName=repo, policyText=deny, force=True)["policyText"] == deny_text
    for bad, says in (("{not json", "not valid JSON"), ('{"Statement": []}', "must not be empty"),
                      ('{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*"}]}',
                       "Principal"),
                      # ECR refuses a Resource in a repository policy (the repository is the resource).
                      ('{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage",'
                       ' "Resource": "*"}}', "Statement: a repository policy names no Resource or NotResource"),
                      ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "ecr:*"}, {"Effect": "Deny",'
                       ' "Principal": "*", "Action": "ecr:*", "NotResource": "*"}]}', "Statement[1]: a repository")):
        message = raises(ecr, "InvalidParameterException", ecr.set_repository_policy, repositoryName=repo,
                         policyText=bad)
        assert message.startswith("Invalid parameter at 'PolicyText' failed to satisfy constraint: "
                                  "'Invalid repository policy provided"), message
        assert says in message, message
    message = raises(ecr, "InvalidParameterException", ecr.set_repository_policy, repositoryName=repo,
                     policyText=json.dumps({"Statement": [], "Sid": "x" * 10240}))
    assert "Member must have length less than or equal to 10240" in message
    assert ecr.get_repository_policy(repositoryName=repo)["policyText"] == deny_text, "refused sets change nothing"
    assert ecr.delete_repository_policy(repositoryName=repo)["policyText"] == deny_text
    raises(ecr, "RepositoryPolicyNotFoundException", ecr.get_repository_policy, repositoryName=repo)
    raises(ecr, "RepositoryNotFoundException", ecr.set_repository_policy, repositoryName="pytest/none",
           policyText=policy)


# ---- repository creation templates, pull-time update exclusions


def _v2_push(http, name, tag):
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    layer = os.urandom(100)
    cfg = {"mediaType": OCI_CONFIG, "digest": http.push_blob(name, config.encode()), "size": len(config)}
    lay = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": http.push_blob(name, layer),
           "size": len(layer)}
    status, _, body = http.put_manifest(name, tag, Images.manifest(cfg, lay).encode(), OCI_MANIFEST)
    assert status == 201, body


def test_creation_templates_apply_the_most_specific_on_push(ecr, http):
    base = f"pytest/tpl-{uuid.uuid4().hex[:8]}"
    lifecycle = json.dumps({"rules": [{"rulePriority": 1, "selection": {
        "tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 3}, "action": {"type": "expire"}}]})
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "Pull", "Effect": "Allow", "Principal": "*", "Action": ["ecr:BatchGetImage"]}]})
    created = ecr.create_repository_creation_template(
        prefix=base + "/", description="outer", appliedFor=["CREATE_ON_PUSH"],
        resourceTags=[{"Key": "level", "Value": "outer"}])
    assert created["registryId"] == REGISTRY_ID
    outer = created["repositoryCreationTemplate"]
    assert outer["prefix"] == base and outer["appliedFor"] == ["CREATE_ON_PUSH"]
    assert outer["imageTagMutability"] == "MUTABLE"
    assert outer["encryptionConfiguration"] == {"encryptionType": "AES256"}
    assert outer["createdAt"] == outer["updatedAt"]
    inner = ecr.create_repository_creation_template(
        prefix=f"{base}/team", appliedFor=["CREATE_ON_PUSH", "REPLICATION"], lifecyclePolicy=lifecycle,
        repositoryPolicy=policy, imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "latest"}],
        resourceTags=[{"Key": "level", "Value": "inner"}], customRoleArn="arn:aws:iam::000000000000:role/ecr",
    )["repositoryCreationTemplate"]
    assert inner["lifecyclePolicy"] == lifecycle and inner["repositoryPolicy"] == policy
    assert inner["customRoleArn"] == "arn:aws:iam::000000000000:role/ecr"
    try:
        raises(ecr, "TemplateAlreadyExistsException", ecr.create_repository_creation_template, prefix=base,
               appliedFor=["CREATE_ON_PUSH"])
        raises(ecr, "InvalidParameterException", ecr.create_repository_creation_template, prefix=f"{base}/x",
               appliedFor=["CREATE_ON_PUSH"], lifecyclePolicy='{"rules": []}')
        raises(ecr, "InvalidParameterException", ecr.create_repository_creation_template, prefix=f"{base}/x",
               appliedFor=["CREATE_ON_PUSH"], imageTagMutability="IMMUTABLE_WITH_EXCLUSION")
        message = raises(ecr, "InvalidParameterException", ecr.create_repository_creation_template,
                         prefix=f"{base}/x", appliedFor=["CREATE_ON_PUSH"],
                         customRoleArn="arn:aws:iam::111111111111:role/ecr")
        assert "this registry's account" in message
        for not_a_role in ["arn:aws:iam::000000000000:user/ecr", "arn:aws-cn:iam::000000000000:role/ecr"]:
            raises(ecr, "InvalidParameterException", ecr.create_repository_creation_template, prefix=f"{base}/x",
                   appliedFor=["CREATE_ON_PUSH"], customRoleArn=not_a_role)
        raises(ecr, "InvalidParameterException", ecr.update_repository_creation_template, prefix=f"{base}/team",
               customRoleArn="arn:aws:iam::111111111111:role/ecr")
        assert not [t for t in ecr.describe_repository_creation_templates()["repositoryCreationTemplates"]
                    if t["prefix"] == f"{base}/x"], "a refused template is not stored"

        # The inner template wins under team/, the outer elsewhere under the base.
        _v2_push(http, f"{base}/team/app", "v1")
        [repository] = ecr.describe_repositories(repositoryNames=[f"{base}/team/app"])["repositories"]
        assert repository["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
        assert repository["imageTagMutabilityExclusionFilters"] == [{"filterType": "WILDCARD", "filter": "latest"}]
        assert ecr.get_lifecycle_policy(repositoryName=f"{base}/team/app")["lifecyclePolicyText"] == \
            json.dumps(json.loads(lifecycle), separators=(",", ":"))
        assert json.loads(ecr.get_repository_policy(repositoryName=f"{base}/team/app")["policyText"]) == \
            json.loads(policy)
        tags = ecr.list_tags_for_resource(resourceArn=repository["repositoryArn"])["tags"]
        assert tags == [{"Key": "level", "Value": "inner"}]
        _v2_push(http, f"{base}/other", "v1")
        tags = ecr.list_tags_for_resource(resourceArn=arn(f"{base}/other"))["tags"]
        assert tags == [{"Key": "level", "Value": "outer"}]
        raises(ecr, "LifecyclePolicyNotFoundException", ecr.get_lifecycle_policy, repositoryName=f"{base}/other")

        # Update replaces what it names and keeps the rest; Describe pages by prefix.
        updated = ecr.update_repository_creation_template(prefix=base, description="renamed")
        assert updated["repositoryCreationTemplate"]["description"] == "renamed"
        assert updated["repositoryCreationTemplate"]["resourceTags"] == [{"Key": "level", "Value": "outer"}]
        raises(ecr, "TemplateNotFoundException", ecr.update_repository_creation_template, prefix=f"{base}/none",
               description="x")
        # An empty policy (as Terraform sends to remove one) leaves the template without it.
        cleared = ecr.update_repository_creation_template(prefix=f"{base}/team", lifecyclePolicy="",
                                                          repositoryPolicy="")["repositoryCreationTemplate"]
        assert "lifecyclePolicy" not in cleared and "repositoryPolicy" not in cleared, cleared
        assert cleared["customRoleArn"] == "arn:aws:iam::000000000000:role/ecr", "the rest is kept"
        # Exclusion filters alone join the stored mode; a mode without exclusions refuses them.
        refiltered = ecr.update_repository_creation_template(
            prefix=f"{base}/team", imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "rel-*"}],
        )["repositoryCreationTemplate"]
        assert refiltered["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION", refiltered
        assert refiltered["imageTagMutabilityExclusionFilters"] == [{"filterType": "WILDCARD", "filter": "rel-*"}]
        message = raises(ecr, "InvalidParameterException", ecr.update_repository_creation_template, prefix=base,
                         imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "rel-*"}])
        assert "not MUTABLE" in message, message
        # The template operations model no tag exceptions: bad tags are invalid parameters.
        for bad in ([{"Key": "k" * 129, "Value": "v"}], [{"Key": f"k{i}", "Value": "v"} for i in range(51)]):
            raises(ecr, "InvalidParameterException", ecr.update_repository_creation_template, prefix=base,
                   resourceTags=bad)
        assert ecr.describe_repository_creation_templates(prefixes=[base])["repositoryCreationTemplates"][0][
            "resourceTags"] == [{"Key": "level", "Value": "outer"}], "a refused update changes nothing"
        _v2_push(http, f"{base}/team/bare", "v1")
        raises(ecr, "LifecyclePolicyNotFoundException", ecr.get_lifecycle_policy, repositoryName=f"{base}/team/bare")
        raises(ecr, "RepositoryPolicyNotFoundException", ecr.get_repository_policy,
               repositoryName=f"{base}/team/bare")
        named = ecr.describe_repository_creation_templates(prefixes=[f"{base}/team", f"{base}/none"])
        assert [t["prefix"] for t in named["repositoryCreationTemplates"]] == [f"{base}/team"]
        paged = ecr.get_paginator("describe_repository_creation_templates").paginate(
            PaginationConfig={"PageSize": 1})
        prefixes = [t["prefix"] for page in paged for t in page["repositoryCreationTemplates"]]
        assert [p for p in prefixes if p.startswith(base)] == [base, f"{base}/team"]
    finally:
        for prefix in (f"{base}/team", base):
            ecr.delete_repository_creation_template(prefix=prefix)
        for name in (f"{base}/team/app", f"{base}/team/bare", f"{base}/other"):
            try:
                ecr.delete_repository(repositoryName=name, force=True)
            except ClientError:
                pass
    raises(ecr, "TemplateNotFoundException", ecr.delete_repository_creation_template, prefix=base)
    # Without templates a pushed repository gets the defaults again.
    _v2_push(http, f"{base}/team/later", "v1")
    try:
        [repository] = ecr.describe_repositories(repositoryNames=[f"{base}/team/later"])["repositories"]
        assert repository["imageTagMutability"] == "MUTABLE"
    finally:
        ecr.delete_repository(repositoryName=f"{base}/team/later", force=True)


def test_pull_time_update_exclusions_round_trip(ecr):
    principal = f"arn:aws:iam::{REGISTRY_ID}:user/pytest-{uuid.uuid4().hex[:8]}"
    registered = ecr.register_pull_time_update_exclusion(principalArn=principal)
    assert registered["principalArn"] == principal and registered["createdAt"].timestamp() > time.time() - 60
    try:
        raises(ecr, "ExclusionAlreadyExistsException", ecr.register_pull_time_update_exclusion,
               principalArn=principal)
        raises(ecr, "InvalidParameterException", ecr.register_pull_time_update_exclusion,
               principalArn=f"arn:aws:iam::{REGISTRY_ID}:root")
        assert principal in ecr.list_pull_time_update_exclusions()["pullTimeUpdateExclusions"]
    finally:
        deregistered = ecr.deregister_pull_time_update_exclusion(principalArn=principal)
    assert deregistered["principalArn"] == principal
    raises(ecr, "ExclusionNotFoundException", ecr.deregister_pull_time_update_exclusion, principalArn=principal)
    assert principal not in ecr.list_pull_time_update_exclusions()["pullTimeUpdateExclusions"]


# ---- replication


def test_replication_to_a_destination_the_server_cannot_reach_is_accepted_and_reads_failed(ecr, http):
    config = {"rules": [{"destinations": [{"region": "us-west-2", "registryId": REGISTRY_ID}],
                         "repositoryFilters": [{"filter": "pytest/repl/", "filterType": "PREFIX_MATCH"}]}]}
    try:
        assert ecr.put_replication_configuration(replicationConfiguration=config)["replicationConfiguration"] == config
        assert ecr.describe_registry()["replicationConfiguration"] == config
        _v2_push(http, "pytest/repl/app", "v1")
        out = ecr.describe_image_replication_status(repositoryName="pytest/repl/app", imageId={"imageTag": "v1"})
        [status] = out["replicationStatuses"]
        assert (status["region"], status["registryId"], status["status"]) == ("us-west-2", REGISTRY_ID, "FAILED")
        assert status["failureCode"].startswith("DESTINATION_NOT_CONFIGURED: "), status
        # Its own region and registry is no destination.
        to_self = {"rules": [{"destinations": [{"region": REGION, "registryId": REGISTRY_ID}]}]}
        raises(ecr, "InvalidParameterException", ecr.put_replication_configuration, replicationConfiguration=to_self)
    finally:
        ecr.put_replication_configuration(replicationConfiguration={"rules": []})
        ecr.delete_repository(repositoryName="pytest/repl/app", force=True)
