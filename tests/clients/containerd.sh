#!/usr/bin/env bash
# containerd (what EKS nodes run) against berth, through `ctr` and a private containerd daemon:
# two multi-arch images (an OCI index and a Docker manifest list) imported from an OCI layout and
# pushed with `ctr images push`, then pulled per platform into empty namespaces the way a node
# does (HEAD on the tag, GET by digest, only the requested platform's blobs), unpacked and
# mounted to read the files; an --all-platforms pull, a pull by digest, and a push of the pulled
# image into a second repository (cross-repository blob mounts), and a push and pull over HTTPS
# verified against berth's self-signed certificate (certs.d-style hosts.toml).
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${BERTH_SHARED_DIR:-$ROOT/../shared}
source "$ROOT/scripts/lib.sh"
apt_install containerd jq curl
T=$(mktemp -d)
cleanup() {
  local m
  for m in "$T"/mnt-*; do if mountpoint -q "$m" 2>/dev/null; then umount "$m" || true; fi; done
  stop_containerd
  stop_proxy; stop_berth; rm -rf "$T"
}
trap cleanup EXIT
source "$ROOT/tests/clients/lib/common.bash"

start_containerd

start_berth "$T/data" --no-auth
REG=$BERTH_ADDR
start_proxy "$REG" "$T/http.log"
nonce=$RANDOM$RANDOM

# Four single-arch images (OCI and Docker flavours of amd64 and arm64/v8; same layers and
# configs), an OCI index over the OCI pair tagged "oci", a Docker list over the Docker pair
# tagged "docker", all in one OCI layout tar for `ctr images import`.
MKIMG="$SHARED/e2e/multiarch-flow.sh"
for flavor in oci docker; do
  bash "$MKIMG" --mkimg "$T/img-$flavor-amd64" amd64 "$flavor" "$nonce" >"$T/$flavor-amd64.json"
  bash "$MKIMG" --mkimg "$T/img-$flavor-arm64" arm64 "$flavor" "$nonce" v8 >"$T/$flavor-arm64.json"
done
python3 - "$T" <<'EOF' >"$T/facts.json"
import hashlib, json, os, shutil, sys
t = sys.argv[1]
blobs = os.path.join(t, "layout", "blobs", "sha256"); os.makedirs(blobs)
def put(data):
    d = hashlib.sha256(data).hexdigest(); open(os.path.join(blobs, d), "wb").write(data); return "sha256:" + d
refs, facts = [], {}
for flavor, list_type in [("oci", "application/vnd.oci.image.index.v1+json"),
                          ("docker", "application/vnd.docker.distribution.manifest.list.v2+json")]:
    entries = []
    for arch in ["amd64", "arm64"]:
        f = json.load(open(os.path.join(t, "%s-%s.json" % (flavor, arch))))
        for name in os.listdir(f["dir"]):
            if len(name) == 64: shutil.copy(os.path.join(f["dir"], name), blobs)
        put(open(os.path.join(f["dir"], "manifest.json"), "rb").read())
        platform = {"architecture": arch, "os": "linux"}
        if f["variant"]: platform["variant"] = f["variant"]
        entries.append({"mediaType": f["media_type"], "digest": f["digest"], "size": f["size"], "platform": platform})
        facts["%s-%s" % (flavor, arch)] = f
    body = json.dumps({"schemaVersion": 2, "mediaType": list_type, "manifests": entries}).encode()
    digest = put(body)
    facts[flavor] = {"digest": digest, "media_type": list_type, "size": len(body)}
    refs.append({"mediaType": list_type, "digest": digest, "size": len(body),
                 "annotations": {"org.opencontainers.image.ref.name": flavor}})
open(os.path.join(t, "layout", "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
open(os.path.join(t, "layout", "index.json"), "w").write(json.dumps({"schemaVersion": 2, "manifests": refs}))
print(json.dumps(facts))
EOF
fact() { jq -r "$1" "$T/facts.json"; }
tar -C "$T/layout" -cf "$T/layout.tar" .
check "ctr images import --all-platforms (OCI layout)" "${CTR[@]}" -n src images import --all-platforms --no-unpack --base-name import/app "$T/layout.tar"

# Push both lists with their children and blobs.
for tag in oci docker; do
  check "ctr images push --plain-http ($tag list)" "${CTR[@]}" -n src images push --plain-http "$PROXY_ADDR/ctrd/app:$tag" "import/app:$tag"
  code=$(reg_get ctrd/app "$tag" "$T/$tag.json")
  expect "$tag list stored byte-identical" "$code $(sha256_of "$T/$tag.json")" "200 $(fact ".$tag.digest")"
  expect "$tag list Content-Type" "$(header "$T/$tag.json.h" Content-Type)" "$(fact ".$tag.media_type")"
done
for key in oci-amd64 oci-arm64 docker-amd64 docker-arm64; do
  code=$(reg_get ctrd/app "$(fact ".\"$key\".digest")" "$T/child.json")
  expect "child $key served by digest with its media type" "$code $(header "$T/child.json.h" Content-Type)" "200 $(fact ".\"$key\".media_type")"
done
errors=$(jq -sr '[.[] | select(.status >= 400 and .method != "HEAD") | "\(.method) \(.target) \(.status)"] | join("; ")' "$T/http.log")
expect "push: no request refused" "$errors" ""

# Per-platform pulls, each into an empty namespace, through the relay to see what a node sends.
for spec in "oci:arm64:linux/arm64/v8" "docker:amd64:linux/amd64"; do
  IFS=: read -r tag arch platform <<<"$spec"
  ns=pull-$tag-$arch
  : >"$T/http.log"
  if ! check "ctr images pull --platform $platform app:$tag" "${CTR[@]}" -n "$ns" images pull --snapshotter "$SNAP" --plain-http --platform "$platform" "$PROXY_ADDR/ctrd/app:$tag"; then continue; fi
  expect "$ns: first request is HEAD on the tag (no /v2/ ping)" "$(jq -sr '.[0] | "\(.method) \(.target) \(.status)"' "$T/http.log")" "HEAD /v2/ctrd/app/manifests/$tag 200"
  expect "$ns: HEAD answer carries digest, type and length of the list" \
    "$(jq -sr '.[0].resp_headers | "\(.["docker-content-digest"]) \(.["content-type"]) \(.["content-length"])"' "$T/http.log")" \
    "$(fact ".$tag.digest") $(fact ".$tag.media_type") $(fact ".$tag.size")"
  want=$(jq -nr --arg l "$(fact ".$tag.digest")" --arg m "$(fact ".\"$tag-$arch\".digest")" --arg c "$(fact ".\"$tag-$arch\".config_digest")" --arg b "$(fact ".\"$tag-$arch\".layer_digest")" \
    '["GET /v2/ctrd/app/manifests/\($l) 200", "GET /v2/ctrd/app/manifests/\($m) 200", "GET /v2/ctrd/app/blobs/\($c) 200", "GET /v2/ctrd/app/blobs/\($b) 200"] | sort | join(", ")')
  expect "$ns: GETs by digest of the list, its $arch manifest and blobs, nothing else" \
    "$(jq -sr '[.[1:][] | "\(.method) \(.target) \(.status)"] | sort | join(", ")' "$T/http.log")" "$want"
  expect "$ns: image record names the list" "$("${CTR[@]}" -n "$ns" images ls -q) $("${CTR[@]}" -n "$ns" images ls 2>/dev/null | awk 'NR==2 {print $3}')" "$PROXY_ADDR/ctrd/app:$tag $(fact ".$tag.digest")"
  mkdir -p "$T/mnt-$ns"
  if "${CTR[@]}" -n "$ns" images mount --snapshotter "$SNAP" --platform "$platform" "$PROXY_ADDR/ctrd/app:$tag" "$T/mnt-$ns" >"$T/mount.log" 2>&1; then
    expect "$ns: unpacked rootfs has the $arch file" "$(cat "$T/mnt-$ns/hello.txt")" "hello from $arch${platform#linux/"$arch"} nonce=$nonce"
    "${CTR[@]}" -n "$ns" images unmount "$T/mnt-$ns" >/dev/null
  else bad "$ns: ctr images mount"; sed 's/^/    | /' "$T/mount.log"; fi
done

# --all-platforms: every manifest and blob of the index lands in the namespace.
if check "ctr images pull --all-platforms app:oci" "${CTR[@]}" -n all images pull --plain-http --all-platforms "$REG/ctrd/app:oci"; then
  want=$(jq -c '[.oci.digest, (."oci-amd64", ."oci-arm64" | .digest, .config_digest, .layer_digest)] | unique' "$T/facts.json")
  expect "all platforms: content store holds the index, both manifests, configs and layers" \
    "$("${CTR[@]}" -n all content ls -q | jq -Rsc 'split("\n")[:-1] | unique')" "$want"
  layer=$(fact '."oci-arm64".layer_digest')
  expect "all platforms: arm64 layer bytes verify" "sha256:$("${CTR[@]}" -n all content get "$layer" | sha256sum | cut -c1-64)" "$layer"
fi
if check "ctr images pull by index digest" "${CTR[@]}" -n bydigest images pull --plain-http --platform linux/amd64 "$REG/ctrd/app@$(fact .docker.digest)"; then
  expect "pull by digest: image record" "$("${CTR[@]}" -n bydigest images ls 2>/dev/null | awk 'NR==2 {print $3}')" "$(fact .docker.digest)"
fi

# Mirror the fully pulled image into a second repository: blobs are mounted across repositories.
: >"$T/http.log"
if check "ctr images push into a second repository" "${CTR[@]}" -n all images push --plain-http "$PROXY_ADDR/ctrd/mirror:v1" "$REG/ctrd/app:oci"; then
  reg_get ctrd/mirror v1 "$T/mirror.json" >/dev/null
  expect "mirror: same index digest" "$(sha256_of "$T/mirror.json")" "$(fact .oci.digest)"
  expect "mirror: blobs were mounted from ctrd/app (201 each)" \
    "$(jq -sr '[.[] | select(.method == "POST" and (.target | test("mount="))) | .status] | "\(length) \(unique | join(","))"' "$T/http.log")" "4 201"
fi
if "${CTR[@]}" -n none images pull --plain-http "$REG/ctrd/app:nope" >"$T/nope.log" 2>&1; then bad "pull of an unknown tag must fail"
elif grep -q 'not found' "$T/nope.log"; then ok "pull of an unknown tag fails with not found"
else bad "pull of an unknown tag: unexpected error"; sed 's/^/    | /' "$T/nope.log"; fi

# HTTPS with certificate verification, configured the way nodes configure registries: a
# certs.d-style hosts.toml (server https://..., ca = the self-signed certificate of a second
# berth). The relay in front shows the traffic was TLS. (Without hosts.toml, ctr talks plain HTTP
# to loopback registries even with --tlscacert, and berth serves both on one port.)
stop_proxy; stop_berth
start_berth "$T/tls-data" --no-auth --tls-self-signed
: >"$T/http.log"
start_proxy "$BERTH_ADDR" "$T/http.log"
for trust in trusted untrusted; do
  mkdir -p "$T/hosts-$trust/$PROXY_ADDR"
  printf 'server = "https://%s"\n[host."https://%s"]\n' "$PROXY_ADDR" "$PROXY_ADDR" >"$T/hosts-$trust/$PROXY_ADDR/hosts.toml"
done
printf '  ca = "%s"\n' "$T/tls-data/tls/cert.pem" >>"$T/hosts-trusted/$PROXY_ADDR/hosts.toml"
HOSTS=(--hosts-dir "$T/hosts-trusted")
check "ctr images push over verified HTTPS" "${CTR[@]}" -n all images push "${HOSTS[@]}" "$PROXY_ADDR/ctrd/tls:v1" "$REG/ctrd/app:oci"
if check "ctr images pull --platform linux/arm64 over verified HTTPS" "${CTR[@]}" -n tls images pull "${HOSTS[@]}" --platform linux/arm64 "$PROXY_ADDR/ctrd/tls:v1"; then
  expect "TLS pull: image record names the index" "$("${CTR[@]}" -n tls images ls 2>/dev/null | awk 'NR==2 {print $3}')" "$(fact .oci.digest)"
fi
expect "TLS push and pull: every connection was TLS" "$(jq -sr '"\([.[] | select(.tls)] | length > 0) \([.[] | select(.method)] | length)"' "$T/http.log")" "true 0"
if "${CTR[@]}" -n untrusted images pull --hosts-dir "$T/hosts-untrusted" --platform linux/arm64 "$PROXY_ADDR/ctrd/tls:v1" >"$T/untrusted.log" 2>&1; then
  bad "a pull that does not trust the certificate must fail"
elif grep -q 'x509' "$T/untrusted.log"; then ok "a pull that does not trust the certificate fails (x509)"
else bad "untrusted pull failed for another reason"; sed 's/^/    | /' "$T/untrusted.log"; fi

summary containerd
