#!/usr/bin/env bash
# skopeo against berth: a multi-arch index copied whole (`copy --all`, which mounts blobs across
# repositories and PUTs children by digest), then pulled per platform with --override-arch.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${BERTH_SHARED_DIR:-$ROOT/../shared}
source "$ROOT/scripts/lib.sh"
T=$(mktemp -d); trap 'stop_berth; rm -rf "$T"' EXIT
MKIMG="$SHARED/e2e/multiarch-flow.sh"
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "PASS: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
expect() { if [[ "$2" == "$3" ]]; then ok "$1"; else bad "$1 (got '$2', want '$3')"; fi; }

start_berth "$T/data" --no-auth
REG=$BERTH_ADDR
SK=(skopeo --insecure-policy)
nonce=$RANDOM$RANDOM

# Two single-arch OCI images, pushed by digest into repo "src".
bash "$MKIMG" --mkimg "$T/amd64" amd64 oci "$nonce" >"$T/amd64.json"
bash "$MKIMG" --mkimg "$T/arm64" arm64 oci "$nonce" v8 >"$T/arm64.json"
for a in amd64 arm64; do
  "${SK[@]}" copy --dest-tls-verify=false --preserve-digests "dir:$T/$a" "docker://$REG/skopeo/src:$a" >/dev/null
done
ok "pushed two single-arch images"

# An OCI index over them, PUT with curl.
idx=$(jq -n --slurpfile a "$T/amd64.json" --slurpfile b "$T/arm64.json" '{schemaVersion:2, mediaType:"application/vnd.oci.image.index.v1+json",
  manifests:[{mediaType:$a[0].media_type, digest:$a[0].digest, size:$a[0].size, platform:{architecture:"amd64", os:"linux"}},
             {mediaType:$b[0].media_type, digest:$b[0].digest, size:$b[0].size, platform:{architecture:"arm64", os:"linux", variant:"v8"}}]}')
printf '%s' "$idx" >"$T/index.json"
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/vnd.oci.image.index.v1+json' \
  --data-binary @"$T/index.json" "http://$REG/v2/skopeo/src/manifests/multi")
expect "PUT index -> 201" "$code" 201
IDX_DIG=sha256:$(sha256sum <"$T/index.json" | cut -c1-64)

# copy --all into another repository: blobs are mounted, children PUT by digest.
if "${SK[@]}" copy --all --src-tls-verify=false --dest-tls-verify=false "docker://$REG/skopeo/src:multi" "docker://$REG/skopeo/dst:multi" >"$T/copy.log" 2>&1; then
  ok "skopeo copy --all src:multi -> dst:multi"
else bad "skopeo copy --all"; cat "$T/copy.log"; fi
raw=$("${SK[@]}" inspect --tls-verify=false --raw "docker://$REG/skopeo/dst:multi" | sha256sum | cut -c1-64)
expect "copied index is byte-identical" "sha256:$raw" "$IDX_DIG"

# Per-platform pulls from the copy.
for spec in "amd64::amd64" "arm64:v8:arm64"; do
  IFS=: read -r arch variant want <<<"$spec"
  ov=(--override-arch "$arch" --override-os linux); [[ -n $variant ]] && ov+=(--override-variant "$variant")
  rm -rf "$T/pull-$arch"
  if "${SK[@]}" "${ov[@]}" copy --src-tls-verify=false "docker://$REG/skopeo/dst:multi" "dir:$T/pull-$arch" >/dev/null 2>&1; then
    got=sha256:$(sha256sum <"$T/pull-$arch/manifest.json" | cut -c1-64)
    expect "--override-arch $arch pulls the $arch manifest" "$got" "$(jq -r .digest "$T/$want.json")"
    layer=$(jq -r .layer_digest "$T/$want.json" | cut -c8-)
    expect "$arch layer verifies" "$(sha256sum <"$T/pull-$arch/$layer" | cut -c1-64)" "$layer"
  else bad "skopeo --override-arch $arch copy"; fi
done

# The whole index to an OCI layout, and inspect + tags list through skopeo.
if "${SK[@]}" copy --all --src-tls-verify=false "docker://$REG/skopeo/dst@$IDX_DIG" "oci:$T/layout:multi" >/dev/null 2>&1; then
  expect "oci layout has both platform manifests" "$(ls "$T/layout/blobs/sha256" | wc -l)" 7
else bad "skopeo copy --all to an oci layout"; fi
tags=$("${SK[@]}" list-tags --tls-verify=false "docker://$REG/skopeo/dst" | jq -c .Tags)
expect "skopeo list-tags" "$tags" '["multi"]'
if "${SK[@]}" --override-arch s390x copy --src-tls-verify=false "docker://$REG/skopeo/dst:multi" "dir:$T/none" >/dev/null 2>&1; then
  bad "a platform that is not in the index must not pull"; else ok "s390x pull fails (not in the index)"; fi

# skopeo delete by digest of a child still referenced by the index is refused (409).
if "${SK[@]}" delete --tls-verify=false "docker://$REG/skopeo/dst@$(jq -r .digest "$T/amd64.json")" >"$T/del.log" 2>&1; then
  bad "deleting a child of an index must be refused"; else ok "deleting a referenced child is refused"; fi
"${SK[@]}" delete --tls-verify=false "docker://$REG/skopeo/dst@$IDX_DIG" && ok "index deleted" || bad "delete index"
"${SK[@]}" delete --tls-verify=false "docker://$REG/skopeo/dst@$(jq -r .digest "$T/amd64.json")" && ok "child deleted after its index" || bad "delete child"

echo; echo "skopeo: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
