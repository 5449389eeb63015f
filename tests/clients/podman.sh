#!/usr/bin/env bash
# podman against berth: two single-arch images built with `podman build` (FROM scratch, so no
# network and no container runtime), pushed alone (chunked PATCH uploads, gzip and zstd), then as a
# manifest list (`manifest push --all`, OCI index and Docker list), pulled back per platform into
# separate storage and checked by image ID and file content; last, a push and pull over HTTPS
# verified against berth's self-signed certificate.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$ROOT/scripts/lib.sh"
apt_install podman jq curl
T=$(mktemp -d); trap 'stop_proxy; stop_berth; rm -rf "$T"' EXIT
source "$ROOT/tests/clients/lib/common.bash"
containers_env

start_berth "$T/data" --no-auth
REG=$BERTH_ADDR
nonce=$RANDOM$RANDOM
TLS=--tls-verify=false
# A second, empty image store: pulls into it must fetch everything from berth.
PULL=(podman --root "$T/pull/root" --runroot "$T/pull/run")

# Build one image per platform.
declare -A ID
for spec in amd64: arm64:v8; do
  IFS=: read -r arch variant <<<"$spec"
  mk_context "$T/ctx-$arch" "$arch" "$nonce"
  vflag=(); [[ -n $variant ]] && vflag=(--variant "$variant")
  if podman build -q --arch "$arch" "${vflag[@]}" --os linux -t "localhost/podtest:$arch" "$T/ctx-$arch" >"$T/build.log" 2>&1; then
    ID[$arch]=$(podman image inspect --format '{{.Id}}' "localhost/podtest:$arch")
    ok "podman build $arch${variant:+/$variant}"
  else bad "podman build $arch"; cat "$T/build.log"; summary podman; exit 1; fi
done

# Single image push, through a logging relay: podman streams the layer it compresses on the fly as
# a chunked PATCH body (no Content-Length), the config with a Content-Length; the digest it
# reports is what berth serves, byte for byte.
start_proxy "$REG" "$T/http.log"
check "podman push single image" podman push -q $TLS --digestfile "$T/single.dig" localhost/podtest:amd64 "$PROXY_ADDR/podman/single:v1"
expect "PATCH uploads: one chunked, one with Content-Length, both 202" \
  "$(jq -sr '[.[] | select(.method == "PATCH") | "\(if .req_chunked then "chunked" else "length" end)/\(.status)"] | sort | join(",")' "$T/http.log")" "chunked/202,length/202"
expect "uploads closed by PUT ?digest= answered 201" \
  "$(jq -sr '[.[] | select(.method == "PUT" and (.target | test("/blobs/uploads/.*[?&]digest=sha256(:|%3A)"))) | .status] | unique | join(",")' "$T/http.log")" 201
stop_proxy
code=$(reg_get podman/single v1 "$T/single.json")
expect "GET pushed manifest -> 200" "$code" 200
expect "Docker-Content-Digest equals podman's digest" "$(header "$T/single.json.h" Docker-Content-Digest)" "$(cat "$T/single.dig")"
expect "manifest bytes hash to that digest" "$(sha256_of "$T/single.json")" "$(cat "$T/single.dig")"
expect "config digest is the local image ID" "$(jq -r .config.digest "$T/single.json")" "sha256:${ID[amd64]}"

# A manifest list of both images, pushed with its images as an OCI index and as a Docker list.
podman manifest create localhost/podlist >/dev/null
for arch in amd64 arm64; do podman manifest add localhost/podlist "containers-storage:localhost/podtest:$arch" >/dev/null; done
for fmt in oci v2s2; do
  check "podman manifest push --all --format $fmt" podman manifest push -q --all $TLS --format "$fmt" --digestfile "$T/list-$fmt.dig" localhost/podlist "docker://$REG/podman/multi:$fmt" || continue
  reg_get podman/multi "$fmt" "$T/list-$fmt.json" >/dev/null
  want_type=application/vnd.oci.image.index.v1+json; [[ $fmt == v2s2 ]] && want_type=application/vnd.docker.distribution.manifest.list.v2+json
  expect "$fmt list: Content-Type" "$(header "$T/list-$fmt.json.h" Content-Type)" "$want_type"
  expect "$fmt list: digest matches podman's" "$(sha256_of "$T/list-$fmt.json")" "$(cat "$T/list-$fmt.dig")"
  expect "$fmt list: platforms" "$(jq -c '[.manifests[].platform | [.os, .architecture, .variant // ""] | join("/")] | sort' "$T/list-$fmt.json")" '["linux/amd64/","linux/arm64/v8"]'
  # Every child is served by digest with the media type the list claims, and names its platform's config.
  n=0
  while read -r dig mt arch; do
    c=$(reg_get podman/multi "$dig" "$T/child.json")
    [[ $c == 200 && $(header "$T/child.json.h" Content-Type) == "$mt" && $(sha256_of "$T/child.json") == "$dig" ]] || continue
    cfg=$(jq -r .config.digest "$T/child.json")
    [[ $(curl -s "http://$REG/v2/podman/multi/blobs/$cfg" | jq -r .architecture) == "$arch" ]] && n=$((n + 1))
  done < <(jq -r '.manifests[] | "\(.digest) \(.mediaType) \(.platform.architecture)"' "$T/list-$fmt.json")
  expect "$fmt list: both children served by digest with matching type and config" "$n" 2
done

# podman's own remote inspect (no TLS flag in 4.3: plain HTTP comes from registries.conf). It shows
# every list with a Docker list media type, so compare the entries.
containers_insecure_registry "$REG"
if podman manifest inspect "$REG/podman/multi:oci" >"$T/inspect.json" 2>"$T/inspect.log"; then
  expect "podman manifest inspect (remote) shows the stored entries" "$(jq -cS .manifests "$T/inspect.json")" "$(jq -cS .manifests "$T/list-oci.json")"
else bad "podman manifest inspect remote"; cat "$T/inspect.log"; fi

# Per-platform pulls into the empty store: image ID and file content are those of that platform.
for spec in "amd64::oci" "arm64:v8:oci" "arm64:v8:v2s2"; do
  IFS=: read -r arch variant fmt <<<"$spec"
  vflag=(); [[ -n $variant ]] && vflag=(--variant "$variant")
  ref=$REG/podman/multi:$fmt
  if "${PULL[@]}" pull -q $TLS --arch "$arch" "${vflag[@]}" "$ref" >"$T/pulled.id" 2>"$T/pull.log"; then
    expect "pull --arch $arch from the $fmt list: image ID" "$(cat "$T/pulled.id")" "${ID[$arch]}"
    m=$("${PULL[@]}" image mount "$(cat "$T/pulled.id")")
    expect "pull --arch $arch from the $fmt list: content" "$(cat "$m/hello.txt")" "hello from $arch nonce=$nonce"
    "${PULL[@]}" image unmount "$(cat "$T/pulled.id")" >/dev/null
    "${PULL[@]}" rmi -f "$(cat "$T/pulled.id")" >/dev/null
  else bad "pull --arch $arch $ref"; cat "$T/pull.log"; fi
done
if "${PULL[@]}" pull -q $TLS --arch amd64 "$REG/podman/multi@$(cat "$T/list-oci.dig")" >"$T/pulled.id" 2>"$T/pull.log"; then
  expect "pull by index digest --arch amd64" "$(cat "$T/pulled.id")" "${ID[amd64]}"
else bad "pull by index digest"; cat "$T/pull.log"; fi
if "${PULL[@]}" pull -q $TLS --arch s390x "$REG/podman/multi:oci" >/dev/null 2>&1; then
  bad "pull --arch s390x must fail (not in the list)"
else ok "pull --arch s390x fails (not in the list)"; fi

# Tag listing through podman search, and a push into a second repository of blobs berth already has.
if podman search $TLS --list-tags --format json "$REG/podman/multi" >"$T/tags" 2>"$T/search.log"; then
  expect "podman search --list-tags" "$(jq -c '.[0].Tags | sort' "$T/tags")" '["oci","v2s2"]'
else bad "podman search --list-tags"; cat "$T/search.log"; fi
check "podman push into a second repository (existing blobs)" podman push -q $TLS localhost/podtest:amd64 "$REG/podman/copy:v1"
reg_get podman/copy v1 "$T/copy.json" >/dev/null
expect "second repository serves the same config" "$(jq -r .config.digest "$T/copy.json")" "sha256:${ID[amd64]}"

# zstd layers (OCI media type ...tar+zstd) are stored and served like any other blob. A fresh image
# (podman would reuse the gzip blob berth already has), and last: podman 4.3 then offers the zstd
# blob for later pushes even into Docker v2s2 manifests, which it rejects itself.
mk_context "$T/ctx-zstd" arm64 "zstd-$nonce"
podman build -q --arch arm64 --variant v8 -t localhost/podtest:zstd "$T/ctx-zstd" >/dev/null
check "podman push --compression-format zstd" podman push -q $TLS --compression-format zstd localhost/podtest:zstd "$REG/podman/zstd:v1"
reg_get podman/zstd v1 "$T/zstd.json" >/dev/null
expect "zstd layer media type kept" "$(jq -r '.layers[0].mediaType' "$T/zstd.json")" application/vnd.oci.image.layer.v1.tar+zstd
if "${PULL[@]}" pull -q $TLS "$REG/podman/zstd:v1" >/dev/null 2>"$T/pull.log"; then
  m=$("${PULL[@]}" image mount "$REG/podman/zstd:v1")
  expect "zstd image pulls back with its content" "$(cat "$m/hello.txt")" "hello from arm64 nonce=zstd-$nonce"
  "${PULL[@]}" image unmount "$REG/podman/zstd:v1" >/dev/null
else bad "pull zstd image"; cat "$T/pull.log"; fi

# HTTPS with certificate verification: a berth with a self-signed certificate, trusted through
# --cert-dir (podman's per-registry CA directory), for a push and a pull; the relay in front shows
# the traffic was TLS.
stop_berth
start_berth "$T/tls-data" --no-auth --tls-self-signed
: >"$T/http.log"
start_proxy "$BERTH_ADDR" "$T/http.log"
mkdir -p "$T/certs" && cp "$T/tls-data/tls/cert.pem" "$T/certs/ca.crt"
check "podman push over verified HTTPS (--cert-dir)" podman push -q --cert-dir "$T/certs" localhost/podtest:arm64 "$PROXY_ADDR/podman/tls:v1"
if "${PULL[@]}" pull -q --cert-dir "$T/certs" "$PROXY_ADDR/podman/tls:v1" >"$T/pulled.id" 2>"$T/pull.log"; then
  expect "podman pull over verified HTTPS: image ID" "$(cat "$T/pulled.id")" "${ID[arm64]}"
else bad "podman pull over verified HTTPS"; cat "$T/pull.log"; fi
expect "TLS push and pull: every connection was TLS" "$(jq -sr '"\([.[] | select(.tls)] | length > 0) \([.[] | select(.method)] | length)"' "$T/http.log")" "true 0"
if podman pull -q --root "$T/untrusted/root" --runroot "$T/untrusted/run" "$BERTH_ADDR/podman/tls:v1" >/dev/null 2>"$T/untrusted.log"; then
  bad "a pull that does not trust the certificate must fail"
elif grep -q 'x509' "$T/untrusted.log"; then ok "a pull that does not trust the certificate fails (x509)"
else bad "untrusted pull failed for another reason"; cat "$T/untrusted.log"; fi

summary podman
