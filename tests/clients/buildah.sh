#!/usr/bin/env bash
# buildah against berth: images assembled from scratch (from/copy/config), committed straight to
# the registry as Docker v2s2 and pushed as OCI; a manifest list put together from the pushed
# images (`manifest add docker://...` reads them back from berth) and pushed; a multi-platform
# `buildah build --platform ... --manifest` pushed with --all; per-platform `buildah from` of the
# results into separate storage, checked by image ID and file content.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$ROOT/scripts/lib.sh"
apt_install buildah jq curl
T=$(mktemp -d); trap 'stop_berth; rm -rf "$T"' EXIT
source "$ROOT/tests/clients/lib/common.bash"
containers_env

start_berth "$T/data" --no-auth
REG=$BERTH_ADDR
nonce=$RANDOM$RANDOM
TLS=--tls-verify=false
# A second, empty image store: pulls into it must fetch everything from berth.
FRESH=(buildah --root "$T/pull/root" --runroot "$T/pull/run")
DOCKER_V2=application/vnd.docker.distribution.manifest.v2+json
OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json

# content_of IMAGE: /hello.txt of IMAGE in the fresh store, through a working container.
content_of() {
  local c m
  c=$("${FRESH[@]}" from -q "$1") && m=$("${FRESH[@]}" mount "$c") && cat "$m/hello.txt"
  "${FRESH[@]}" rm "$c" >/dev/null
}

# amd64: committed directly to berth as Docker v2s2. arm64/v8: committed locally (OCI), then pushed.
for spec in amd64: arm64:v8; do
  IFS=: read -r arch variant <<<"$spec"
  printf 'hello from %s nonce=%s\n' "$arch" "$nonce" >"$T/hello-$arch.txt"
  c=$(buildah from scratch)
  buildah copy -q "$c" "$T/hello-$arch.txt" /hello.txt >/dev/null
  buildah config --os linux --arch "$arch" ${variant:+--variant "$variant"} --label "berth.test.arch=$arch" "$c"
  if [[ $arch == amd64 ]]; then
    check "buildah commit --format docker straight to docker://berth" buildah commit -q $TLS --format docker "$c" "docker://$REG/buildah/app:amd64"
  else
    buildah commit -q "$c" localhost/app:arm64 >/dev/null
    check "buildah push --digestfile (OCI)" buildah push -q $TLS --digestfile "$T/arm64.dig" localhost/app:arm64 "docker://$REG/buildah/app:arm64"
  fi
  buildah rm "$c" >/dev/null
done
declare -A DIG
for arch in amd64 arm64; do
  reg_get buildah/app "$arch" "$T/app-$arch.json" >/dev/null
  DIG[$arch]=$(header "$T/app-$arch.json.h" Docker-Content-Digest)
  cfg=$(jq -r .config.digest "$T/app-$arch.json")
  curl -s "http://$REG/v2/buildah/app/blobs/$cfg" >"$T/cfg-$arch.json"
  expect "app:$arch config blob hashes to its digest" "$(sha256_of "$T/cfg-$arch.json")" "$cfg"
  expect "app:$arch config architecture" "$(jq -r .architecture "$T/cfg-$arch.json")" "$arch"
done
expect "commit --format docker stored a Docker v2s2 manifest" "$(header "$T/app-amd64.json.h" Content-Type)" "$DOCKER_V2"
expect "push of an OCI image stored an OCI manifest" "$(header "$T/app-arm64.json.h" Content-Type)" "$OCI_MANIFEST"
expect "push --digestfile names the stored manifest" "${DIG[arm64]}" "$(cat "$T/arm64.dig")"
expect "arm64 config keeps variant v8" "$(jq -r .variant "$T/cfg-arm64.json")" v8

# A list assembled from the images in berth (manifest add reads manifest + config remotely), then
# pushed: one index that mixes a Docker v2s2 and an OCI entry.
buildah manifest create localhost/applist >/dev/null
for arch in amd64 arm64; do
  check "buildah manifest add docker://berth/buildah/app:$arch" buildah manifest add $TLS localhost/applist "docker://$REG/buildah/app:$arch"
done
buildah manifest inspect localhost/applist >"$T/local-list.json"
expect "manifest add took the digests berth serves" "$(jq -c '[.manifests[].digest] | sort' "$T/local-list.json")" "$(printf '%s\n' "${DIG[@]}" | jq -Rsc 'split("\n")[:-1] | sort')"
expect "manifest add read platforms from the config blobs" "$(jq -c '[.manifests[].platform | [.architecture, .variant // ""] | join("/")] | sort' "$T/local-list.json")" '["amd64/","arm64/v8"]'
if check "buildah manifest push --all (mixed Docker/OCI entries)" buildah manifest push -q --all $TLS --digestfile "$T/list.dig" localhost/applist "docker://$REG/buildah/app:latest"; then
  reg_get buildah/app latest "$T/list.json" >/dev/null
  expect "pushed list digest matches buildah's" "$(sha256_of "$T/list.json")" "$(cat "$T/list.dig")"
  expect "list entries keep their media types" "$(jq -c '[.manifests[] | .mediaType] | sort' "$T/list.json")" "[\"$DOCKER_V2\",\"$OCI_MANIFEST\"]"
fi

# Multi-platform build: one Containerfile, two platforms, file chosen by TARGETARCH.
mkdir -p "$T/mctx"
for arch in amd64 arm64; do printf 'built for %s nonce=%s\n' "$arch" "$nonce" >"$T/mctx/hello-$arch.txt"; done
printf 'FROM scratch\nARG TARGETARCH\nCOPY hello-${TARGETARCH}.txt /hello.txt\n' >"$T/mctx/Containerfile"
check "buildah build --platform linux/amd64,linux/arm64/v8 --manifest" buildah build -q --platform linux/amd64,linux/arm64/v8 --manifest localhost/built "$T/mctx"
check "buildah manifest push --all --format v2s2 (built list)" buildah manifest push -q --all $TLS --format v2s2 --digestfile "$T/built.dig" localhost/built "docker://$REG/buildah/built:v1"
reg_get buildah/built v1 "$T/built.json" >/dev/null
expect "built list is a Docker manifest list" "$(header "$T/built.json.h" Content-Type)" application/vnd.docker.distribution.manifest.list.v2+json
expect "built list digest matches buildah's" "$(sha256_of "$T/built.json")" "$(cat "$T/built.dig")"

# Per-platform pulls into the empty store.
for spec in "amd64::app:latest:hello from amd64" "arm64:v8:app:latest:hello from arm64" \
            "amd64::built:v1:built for amd64" "arm64:v8:built:v1:built for arm64"; do
  IFS=: read -r arch variant repo tag want <<<"$spec"
  ref=$REG/buildah/$repo:$tag
  if "${FRESH[@]}" pull -q $TLS --arch "$arch" ${variant:+--variant "$variant"} "$ref" >"$T/pulled.id" 2>"$T/pull.log"; then
    got_arch=$("${FRESH[@]}" inspect --type image --format '{{.OCIv1.Architecture}}' "$(cat "$T/pulled.id")")
    expect "pull --arch $arch $repo:$tag: architecture" "$got_arch" "$arch"
    expect "pull --arch $arch $repo:$tag: content" "$(content_of "$(cat "$T/pulled.id")")" "$want nonce=$nonce"
    "${FRESH[@]}" rmi -f "$(cat "$T/pulled.id")" >/dev/null
  else bad "buildah pull --arch $arch $ref"; sed 's/^/    | /' "$T/pull.log"; fi
done
if "${FRESH[@]}" from -q $TLS "docker://$REG/buildah/app@${DIG[arm64]}" >"$T/ctr" 2>"$T/from.log"; then
  m=$("${FRESH[@]}" mount "$(cat "$T/ctr")")
  expect "buildah from docker://...@digest" "$(cat "$m/hello.txt")" "hello from arm64 nonce=$nonce"
else bad "buildah from by digest"; sed 's/^/    | /' "$T/from.log"; fi
if "${FRESH[@]}" pull -q $TLS "$REG/buildah/app:nope" >/dev/null 2>&1; then bad "pull of an unknown tag must fail"
else ok "pull of an unknown tag fails"; fi

summary buildah
