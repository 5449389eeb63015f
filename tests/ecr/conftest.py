"""Fixtures for the ECR API suite: a boto3 client against the `berth serve` whose address is in
BERTH_ADDR (tests/clients/ecr-boto3.sh starts it), plus helpers that build images through the ECR
layer API or push them through /v2/ with plain HTTP, as real clients do."""

import base64
import hashlib
import json
import os
import urllib.error
import urllib.request
import uuid

import boto3
import pytest

REGISTRY_ID = "000000000000"
REGION = "us-east-1"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="session")
def addr():
    value = os.environ.get("BERTH_ADDR")
    if not value:
        pytest.fail("BERTH_ADDR is not set: run tests/clients/ecr-boto3.sh")
    return value


@pytest.fixture(scope="session")
def ecr(addr):
    return boto3.client(
        "ecr",
        endpoint_url=f"http://{addr}",
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


@pytest.fixture
def repo(ecr):
    """A fresh repository, deleted (force) afterwards."""
    name = f"pytest/{uuid.uuid4().hex[:12]}"
    ecr.create_repository(repositoryName=name)
    yield name
    try:
        ecr.delete_repository(repositoryName=name, force=True)
    except ecr.exceptions.RepositoryNotFoundException:
        pass


def lower(headers):
    return {k.lower(): v for k, v in headers.items()}


class Http:
    """Unsigned HTTP to berth: /v2/ calls and raw ECR requests. Header names come back lowercase."""

    def __init__(self, addr):
        self.base = f"http://{addr}"

    def request(self, method, path, body=None, headers=None, url=None):
        req = urllib.request.Request(url or self.base + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, lower(resp.headers), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, lower(err.headers), err.read()

    def ecr_raw(self, operation, body: bytes):
        """A raw ECR call (auth is off, so unsigned), for what boto3 will not send."""
        headers = {
            "X-Amz-Target": f"AmazonEC2ContainerRegistry_V20150921.{operation}",
            "Content-Type": "application/x-amz-json-1.1",
        }
        status, _, payload = self.request("POST", "/", body, headers)
        return status, json.loads(payload) if payload else {}

    def push_blob(self, repo, data: bytes) -> str:
        digest = digest_of(data)
        status, _, body = self.request("POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", data,
                                       {"Content-Type": "application/octet-stream"})
        assert status == 201, (status, body)
        return digest

    def put_manifest(self, repo, reference, content: bytes, media_type):
        return self.request("PUT", f"/v2/{repo}/manifests/{reference}", content, {"Content-Type": media_type})

    def get_manifest(self, repo, reference):
        accept = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST,
                            "application/vnd.docker.distribution.manifest.list.v2+json"])
        return self.request("GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept})


@pytest.fixture(scope="session")
def http(addr):
    return Http(addr)


class Images:
    """Builds images in a repository through the ECR layer API and PutImage."""

    def __init__(self, ecr):
        self.ecr = ecr

    def upload_layer(self, repo, data: bytes, part_size=None) -> str:
        upload = self.ecr.initiate_layer_upload(repositoryName=repo)
        part_size = part_size or len(data)
        for first in range(0, len(data), part_size):
            part = data[first:first + part_size]
            self.ecr.upload_layer_part(repositoryName=repo, uploadId=upload["uploadId"], partFirstByte=first,
                                       partLastByte=first + len(part) - 1, layerPartBlob=part)
        digest = digest_of(data)
        done = self.ecr.complete_layer_upload(repositoryName=repo, uploadId=upload["uploadId"], layerDigests=[digest])
        assert done["layerDigest"] == digest
        return digest

    def blobs(self, repo, arch="amd64", nonce=None):
        """A config and a layer uploaded to `repo`; returns their descriptors."""
        nonce = nonce or uuid.uuid4().hex
        config = json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                             "config": {"Labels": {"nonce": nonce}}}).encode()
        layer = b"layer of " + nonce.encode() + os.urandom(64)
        return ({"mediaType": OCI_CONFIG, "digest": self.upload_layer(repo, config), "size": len(config)},
                {"mediaType": OCI_LAYER, "digest": self.upload_layer(repo, layer), "size": len(layer)})

    @staticmethod
    def manifest(config, layer, annotations=None, subject=None, artifact_type=None) -> str:
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]}
        if annotations:
            doc["annotations"] = annotations
        if subject:
            doc["subject"] = subject
        if artifact_type:
            doc["artifactType"] = artifact_type
        return json.dumps(doc, indent=2)

    def put(self, repo, manifest: str, tag=None, **extra) -> str:
        args = {"repositoryName": repo, "imageManifest": manifest, **extra}
        if tag:
            args["imageTag"] = tag
        image = self.ecr.put_image(**args)["image"]
        assert image["imageId"]["imageDigest"] == digest_of(manifest.encode())
        return image["imageId"]["imageDigest"]

    def image(self, repo, tag=None, arch="amd64", nonce=None):
        """A single-platform image put with `tag`; returns (digest, manifest text, config, layer)."""
        config, layer = self.blobs(repo, arch, nonce)
        manifest = self.manifest(config, layer)
        return self.put(repo, manifest, tag), manifest, config, layer

    @staticmethod
    def index(children) -> str:
        """An OCI index over (digest, manifest text, arch) triples."""
        return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": d, "size": len(m.encode()),
             "platform": {"architecture": arch, "os": "linux"}} for d, m, arch in children]})


@pytest.fixture(scope="session")
def images(ecr):
    return Images(ecr)


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
