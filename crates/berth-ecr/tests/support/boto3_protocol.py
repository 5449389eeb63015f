"""Drives the ECR protocol layer with boto3 (and raw botocore-signed requests for bodies boto3
cannot produce). Prints one JSON object: case name -> {"ok": response} or {"error": ...}.

argv: endpoint_url access_key_id secret_access_key
"""
import json
import sys
import urllib.error
import urllib.request
from datetime import datetime

import boto3
import botocore
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

endpoint, key, secret = sys.argv[1:4]
region = "eu-west-1"


def client(access_key=key, secret_key=secret, token=None, unsigned=False):
    config = Config(signature_version=botocore.UNSIGNED) if unsigned else Config()
    return boto3.client(
        "ecr",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        aws_session_token=token,
        config=config,
    )


def plain(value):
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def outcome(call):
    try:
        response = call()
        meta = response.pop("ResponseMetadata")
        return {"ok": plain(response), "headers": meta["HTTPHeaders"], "request_id": meta["RequestId"]}
    except botocore.exceptions.ClientError as e:
        return {
            "error": e.response["Error"]["Code"],
            "message": e.response["Error"].get("Message", ""),
            "status": e.response["ResponseMetadata"]["HTTPStatusCode"],
            "retries": e.response["ResponseMetadata"].get("RetryAttempts"),
            "headers": e.response["ResponseMetadata"]["HTTPHeaders"],
            "modeled": type(e).__name__,
        }


def raw(target, body):
    """A botocore-signed POST with an arbitrary body, sent with urllib."""
    request = AWSRequest(
        method="POST",
        url=endpoint + "/",
        data=body.encode(),
        headers={
            "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921." + target,
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    SigV4Auth(Credentials(key, secret), "ecr", region).add_auth(request)
    prepared = request.prepare()
    sent = urllib.request.Request(prepared.url, data=prepared.body, headers=dict(prepared.headers), method="POST")
    try:
        with urllib.request.urlopen(sent) as response:
            return {"status": response.status, "body": json.loads(response.read())}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": json.loads(e.read()), "content_type": e.headers["Content-Type"]}


ecr = client()
upload_id = "5f0bd0a4-40b8-4a5f-a1d3-7dbe0b8f3d3a"
results = {
    "describe": outcome(lambda: ecr.describe_repositories()),
    "describe_missing": outcome(lambda: ecr.describe_repositories(repositoryNames=["missing"])),
    "create_exclusion": outcome(lambda: ecr.create_repository(
        repositoryName="team/app",
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "dev-*"}],
        tags=[{"Key": "team", "Value": "web"}],
    )),
    "create_bad_name": outcome(lambda: ecr.create_repository(repositoryName="Team/App")),
    "create_bad_mutability": outcome(lambda: ecr.create_repository(repositoryName="app", imageTagMutability="SOMETIMES")),
    "list_too_many": outcome(lambda: ecr.list_images(repositoryName="app", maxResults=1001)),
    "upload_part": outcome(lambda: ecr.upload_layer_part(
        repositoryName="app", uploadId=upload_id, partFirstByte=0, partLastByte=4, layerPartBlob=b"hello",
    )),
    "batch_get": outcome(lambda: ecr.batch_get_image(repositoryName="app", imageIds=[{"imageTag": "nope"}])),
    "session_token": outcome(lambda: client(token="FwoGZXIvYXdzEBYaDH").describe_repositories()),
    "wrong_secret": outcome(lambda: client(secret_key="wrong").describe_repositories()),
    "unknown_key": outcome(lambda: client(access_key="AKIANOBODY").describe_repositories()),
    "unsigned": outcome(lambda: client(unsigned=True).describe_repositories()),
    "raw_malformed_json": raw("DescribeRepositories", '{"repositoryNames": '),
    "raw_wrong_type": raw("DeleteRepository", '{"repositoryName": 5}'),
    "raw_missing_member": raw("CreateRepository", "{}"),
    # What serde alone would take: an array for the object, an enum as a one-key object, a
    # member the operation ignores holding a lone surrogate (once the audit trail lost the call).
    "raw_array": raw("DeleteRepository", '[null, "app"]'),
    "raw_enum_object": raw("PutImageTagMutability", '{"repositoryName": "app", "imageTagMutability": {"IMMUTABLE": null}}'),
    "raw_lone_surrogate": raw("DeleteRepository", '{"repositoryName": "app", "x": "\\udc00"}'),
    "raw_unknown_operation": raw("DescribeEverything", "{}"),
}
json.dump(results, sys.stdout)
