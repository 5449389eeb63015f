#!/usr/bin/env python3
"""ORAS (the `oras` Python SDK) against berth: artifacts and referrers.

usage: oras-flow.py REGISTRY_HOST:PORT WORKDIR

A multi-arch image (two OCI manifests and an index) is pushed with the SDK's blob and manifest
calls; then an SBOM artifact is pushed with `Registry.push` (chunked upload, a directory layer,
subject = the index), a signature is attached by digest with an explicit `artifactType`
(subject = the arm64 manifest), and both are found again through the referrers API
(`GET /v2/<name>/referrers/<digest>`, with and without `?artifactType=`), pulled back and
compared byte for byte. Prints PASS/FAIL lines and "oras: N passed, M failed".
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

import oras.oci
import oras.provider

REG, WORK = sys.argv[1], sys.argv[2]
REPO = "oras/app"
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY = {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2,
         "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}
SBOM_TYPE = "application/vnd.example.sbom.config.v1+json"
SIG_TYPE = "application/vnd.example.signature.v1"
NONCE = os.urandom(4).hex()

passed = failed = 0


def expect(desc, got, want):
    global passed, failed
    if got == want:
        passed += 1
        print("PASS: " + desc)
    else:
        failed += 1
        print("FAIL: %s (got %r, want %r)" % (desc, got, want))


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


client = oras.provider.Registry(hostname=REG, insecure=True)
exchanges = []  # every request the SDK made, with berth's answer
client.session.hooks["response"].append(lambda r, *a, **k: exchanges.append(r))
base = "http://%s/v2/%s" % (REG, REPO)


def write(name, data):
    path = os.path.join(WORK, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def upload(name, data, media_type):
    """Uploads one blob through the SDK (POST + PUT ?digest=); returns its descriptor."""
    layer = oras.oci.NewLayer(write(name, data), media_type=media_type)
    r = client.upload_blob(os.path.join(WORK, name), REPO, layer)
    expect("upload %s -> 201" % name, r.status_code, 201)
    return {"mediaType": media_type, "size": len(data), "digest": sha(data)}


def put_manifest(ref, manifest):
    """PUTs a manifest (by tag or digest) as the SDK serialises it; returns (response, digest, size)."""
    body = json.dumps(manifest).encode()  # what requests sends for json=manifest
    if manifest["mediaType"] == MANIFEST:
        sep = "@" if ref.startswith("sha256:") else ":"
        r = client.upload_manifest(manifest, client.get_container("%s/%s%s%s" % (REG, REPO, sep, ref)))
    else:  # the SDK's upload_manifest always says "image manifest"; an index needs its own type
        r = client.do_request("%s/manifests/%s" % (base, ref), "PUT", data=body,
                              headers={"Content-Type": manifest["mediaType"]})
    return r, sha(body), len(body)


def referrers(digest, artifact_type=None):
    url = "%s/referrers/%s" % (base, digest)
    if artifact_type:
        url += "?artifactType=" + artifact_type
    r = client.do_request(url, "GET")
    return r, (r.json() if r.status_code == 200 else None)


# --- A multi-arch image: two single-arch manifests and an index over them.
platforms = {}
for arch in ["amd64", "arm64"]:
    tbuf = io.BytesIO()
    with tarfile.open(fileobj=tbuf, mode="w") as tf:
        content = ("hello from %s nonce=%s\n" % (arch, NONCE)).encode()
        ti = tarfile.TarInfo("hello.txt")
        ti.size = len(content)
        tf.addfile(ti, io.BytesIO(content))
    layer = upload("img/%s-layer.tar.gz" % arch, gzip.compress(tbuf.getvalue(), mtime=0),
                   "application/vnd.oci.image.layer.v1.tar+gzip")
    cfg = json.dumps({"architecture": arch, "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": [sha(tbuf.getvalue())]}}).encode()
    config = upload("img/%s-config.json" % arch, cfg, "application/vnd.oci.image.config.v1+json")
    r, digest, size = put_manifest(arch, {"schemaVersion": 2, "mediaType": MANIFEST,
                                          "config": config, "layers": [layer]})
    expect("PUT %s manifest -> 201 with its digest" % arch,
           (r.status_code, r.headers.get("Docker-Content-Digest")), (201, digest))
    platforms[arch] = {"mediaType": MANIFEST, "digest": digest, "size": size,
                       "platform": {"architecture": arch, "os": "linux"}}
index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [platforms["amd64"], platforms["arm64"]]}
r, index_digest, index_size = put_manifest("v1", index)
expect("PUT index -> 201 with its digest", (r.status_code, r.headers.get("Docker-Content-Digest")), (201, index_digest))
fetched = client.get_manifest("%s/%s:v1" % (REG, REPO))
expect("SDK get_manifest reads the index back", fetched, index)

# --- An SBOM artifact pushed by the high-level push: a file and a directory, chunked uploads in
# 1 KiB PATCHes, config media type as the artifact type, subject = the index.
os.chdir(WORK)
sbom = json.dumps({"spdxVersion": "SPDX-2.3", "name": "app", "nonce": NONCE,
                   "packages": [{"name": "pkg%d" % i, "versionInfo": "1.%d" % i} for i in range(60)]}).encode()
write("sbom/sbom.spdx.json", sbom)
write("sbom/extra/licenses/LICENSE", ("MIT License nonce=%s\n" % NONCE).encode() * 20)
write("sbom/config.json", json.dumps({"generator": "oras-flow"}).encode())
before = len(exchanges)
r = client.push(target="%s/%s:sbom" % (REG, REPO),
                files=["sbom/sbom.spdx.json:application/spdx+json", "sbom/extra"],
                manifest_config="sbom/config.json:" + SBOM_TYPE,
                manifest_annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
                subject=oras.oci.Subject(mediaType=INDEX, digest=index_digest, size=index_size),
                do_chunked=True, chunk_size=1024, quiet=True)
expect("push SBOM artifact -> 201", r.status_code, 201)
sbom_digest = r.headers.get("Docker-Content-Digest")
expect("manifest PUT with a subject answers OCI-Subject", r.headers.get("OCI-Subject"), index_digest)
patches = [x for x in exchanges[before:] if x.request.method == "PATCH"]
sbom_chunks = -(-len(sbom) // 1024)
expect("chunked upload: the SBOM went up in %d PATCHes or more" % sbom_chunks, len(patches) >= sbom_chunks, True)
bad_ranges = []
for x in patches:
    start, end = (int(v) for v in x.request.headers["Content-Range"].split("-"))
    if x.status_code != 202 or x.headers.get("Range") != "0-%d" % end or not x.headers.get("Location"):
        bad_ranges.append((x.request.headers["Content-Range"], x.status_code, x.headers.get("Range")))
expect("every PATCH (Content-Range start-end) -> 202, Range 0-end, Location", bad_ranges, [])

# --- A signature attached by digest, untagged, with an explicit artifactType (image-spec 1.1).
sig_blob = upload("sig/signature.bin", ("signature over arm64 nonce=%s" % NONCE).encode(), "application/vnd.example.signature.blob")
empty_path = write("sig/empty.json", b"{}")
expect("upload the empty config", client.upload_blob(empty_path, REPO, dict(EMPTY)).status_code, 201)
sig = {"schemaVersion": 2, "mediaType": MANIFEST, "artifactType": SIG_TYPE, "config": EMPTY,
       "layers": [sig_blob], "subject": {"mediaType": MANIFEST, "digest": platforms["arm64"]["digest"],
                                          "size": platforms["arm64"]["size"]},
       "annotations": {"org.example.signer": "ci"}}
sig_digest = sha(json.dumps(sig).encode())
r, _, sig_size = put_manifest(sig_digest, sig)
expect("attach signature by digest -> 201, OCI-Subject",
       (r.status_code, r.headers.get("OCI-Subject")), (201, platforms["arm64"]["digest"]))
# A second signature, on the index this time, so the index has two kinds of referrers.
sig2 = dict(sig, subject={"mediaType": INDEX, "digest": index_digest, "size": index_size})
sig2_digest = sha(json.dumps(sig2).encode())
r, _, sig2_size = put_manifest(sig2_digest, sig2)
expect("attach signature to the index -> 201", r.status_code, 201)

# --- Discovery through the referrers API.
r, body = referrers(index_digest)
expect("referrers of the index -> 200, an OCI index", (r.status_code, r.headers.get("Content-Type")), (200, INDEX))
raw = client.do_request("%s/manifests/%s" % (base, sbom_digest), "GET", headers={"Accept": MANIFEST}).content
expect("SBOM manifest served by digest hashes to it", sha(raw), sbom_digest)
sbom_manifest = json.loads(raw)
got = sorted(((m["digest"], m.get("artifactType"), m["mediaType"]) for m in (body or {}).get("manifests", [])))
expect("referrers of the index: the SBOM (type from its config) and the signature", got,
       sorted([(sbom_digest, SBOM_TYPE, MANIFEST), (sig2_digest, SIG_TYPE, MANIFEST)]))
entry = next((m for m in (body or {}).get("manifests", []) if m["digest"] == sbom_digest), {})
expect("referrer entry carries size and annotations",
       (entry.get("size"), entry.get("annotations")), (len(raw), sbom_manifest["annotations"]))
r, body = referrers(index_digest, SIG_TYPE)
expect("referrers ?artifactType= keeps only signatures",
       [m["digest"] for m in (body or {}).get("manifests", [])], [sig2_digest])
expect("filtered answer says OCI-Filters-Applied: artifactType", r.headers.get("OCI-Filters-Applied"), "artifactType")
r, body = referrers(platforms["arm64"]["digest"])
expect("referrers of the arm64 manifest: the signature",
       [(m["digest"], m["size"], m.get("annotations")) for m in (body or {}).get("manifests", [])],
       [(sig_digest, sig_size, sig["annotations"])])
r, body = referrers(platforms["amd64"]["digest"])
expect("referrers of a manifest without any -> 200, empty", (r.status_code, (body or {}).get("manifests")), (200, []))

# A referrer may be pushed before its subject exists; it is listed for that digest anyway.
missing = sha(b"a subject that is pushed later " + NONCE.encode())
orphan = dict(sig, subject={"mediaType": MANIFEST, "digest": missing, "size": 123})
orphan_digest = sha(json.dumps(orphan).encode())
r, _, _ = put_manifest(orphan_digest, orphan)
expect("referrer to a subject not pushed yet -> 201", r.status_code, 201)
r, body = referrers(missing)
expect("referrers of that digest list it", [m["digest"] for m in (body or {}).get("manifests", [])], [orphan_digest])

# --- Pull the artifacts back and compare bytes.
out = os.path.join(WORK, "pulled")
files = client.pull(target="%s/%s:sbom" % (REG, REPO), outdir=out)
expect("pull SBOM artifact: two layers", len(files), 2)
expect("pulled SBOM file is byte-identical", open(os.path.join(out, "sbom.spdx.json"), "rb").read(), sbom)
expect("pulled directory layer unpacks to the same file",
       open(os.path.join(out, "extra", "licenses", "LICENSE"), "rb").read(),
       open(os.path.join(WORK, "sbom", "extra", "licenses", "LICENSE"), "rb").read())
pulled_sig = client.get_manifest("%s/%s@%s" % (REG, REPO, sig_digest))
expect("signature manifest by digest keeps artifactType and subject",
       (pulled_sig.get("artifactType"), pulled_sig.get("subject")), (SIG_TYPE, sig["subject"]))
client.download_blob(REPO, sig_blob["digest"], os.path.join(WORK, "pulled", "sig.bin"))
expect("signature blob is byte-identical", sha(open(os.path.join(WORK, "pulled", "sig.bin"), "rb").read()), sig_blob["digest"])
expect("get_tags lists the tags (not the untagged referrers)", sorted(client.get_tags("%s/%s" % (REG, REPO))),
       ["amd64", "arm64", "sbom", "v1"])

# --- Deleting referrers removes them from the listing.
r = client.do_request("%s/manifests/%s" % (base, sig_digest), "DELETE")
expect("DELETE signature manifest -> 202", r.status_code, 202)
r, body = referrers(platforms["arm64"]["digest"])
expect("arm64 has no referrers after the delete", (body or {}).get("manifests"), [])
expect("SDK delete_tag removes the tagged SBOM", client.delete_tag("%s/%s" % (REG, REPO), "sbom"), True)
r, body = referrers(index_digest)
expect("index keeps only its signature", [m["digest"] for m in (body or {}).get("manifests", [])], [sig2_digest])

print("\noras: %d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
