#!/usr/bin/env bash
# Replication with the real aws CLI and skopeo: server A replicates prod/* to server B
# ([[replication.destinations]] in A's config file, the rule put with put-replication-configuration);
# a multi-arch index pushed to A with skopeo is tracked with describe-image-replication-status until
# COMPLETE and then pulled per platform from B with skopeo, byte-identical; dev/* stays on A;
# A killed -9 while an image is in flight to B finishes after a restart.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${BERTH_SHARED_DIR:-$ROOT/../shared}
source "$ROOT/scripts/lib.sh"
python3 -c 'import awscli' 2>/dev/null || pip install -q awscli
T=$(mktemp -d)
B_PID=
cleanup() {
  stop_berth
  # B may be frozen (SIGSTOP) by the kill -9 section: resume it so it can stop.
  [[ -z $B_PID ]] || { kill -CONT "$B_PID" 2>/dev/null; kill -TERM "$B_PID" 2>/dev/null; wait "$B_PID" 2>/dev/null; } || true
  rm -rf "$T"
}
trap cleanup EXIT
source "$ROOT/tests/clients/lib/common.bash"
MKIMG="$SHARED/e2e/multiarch-flow.sh"
SK=(skopeo --insecure-policy)
nonce=$RANDOM$RANDOM

# B: the destination, with its own root key.
B_CREDS="AKIAREPLB${nonce:0:6}:replication-b-secret-$nonce"
BERTH_ROOT_ACCESS_KEY_ID=${B_CREDS%%:*} BERTH_ROOT_SECRET_ACCESS_KEY=${B_CREDS#*:} start_berth "$T/b"
B_PID=$BERTH_PID; B=$BERTH_ADDR; BERTH_PID=

# A: the source, mapping (eu-west-1, 111111111111) to B.
cat >"$T/a.toml" <<TOML
[[replication.destinations]]
region = "eu-west-1"
registry_id = "111111111111"
url = "http://$B"
access_key_id = "${B_CREDS%%:*}"
secret_access_key = "${B_CREDS#*:}"
TOML
export BERTH_ROOT_ACCESS_KEY_ID=AKIAREPLA${nonce:0:6} BERTH_ROOT_SECRET_ACCESS_KEY=replication-a-secret-$nonce
start_berth "$T/a" --config "$T/a.toml"
A=$BERTH_ADDR
export AWS_ACCESS_KEY_ID=$BERTH_ROOT_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$BERTH_ROOT_SECRET_ACCESS_KEY \
  AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
A_CREDS="$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY"
ecr() { aws --endpoint-url "http://$A" --output json ecr "$@"; }

section "put-replication-configuration"
# A destination A's config file does not map is accepted, as ECR accepts any (nothing goes there).
check "an unmapped destination is accepted" ecr put-replication-configuration --replication-configuration \
  '{"rules":[{"destinations":[{"region":"ap-south-1","registryId":"333333333333"}]}]}'
OWN=$(ecr describe-registry | jq -r .registryId)
rc=0; ecr put-replication-configuration --replication-configuration \
  "{\"rules\":[{\"destinations\":[{\"region\":\"us-east-1\",\"registryId\":\"$OWN\"}]}]}" >/dev/null 2>"$T/err" || rc=$?
if [[ $rc -eq 255 ]] && grep -q InvalidParameterException "$T/err"; then ok "A itself as the destination -> InvalidParameterException"
else bad "A itself as the destination (exit $rc: $(head -c 300 "$T/err"))"; fi
RULES='{"rules":[{"destinations":[{"region":"eu-west-1","registryId":"111111111111"}],"repositoryFilters":[{"filter":"prod/","filterType":"PREFIX_MATCH"}]}]}'
check "put-replication-configuration (prod/ to eu-west-1/111111111111)" \
  ecr put-replication-configuration --replication-configuration "$RULES"
expect "describe-registry shows the rule" "$(ecr describe-registry | jq -c .replicationConfiguration)" "$(jq -c . <<<"$RULES")"

section "a multi-arch push to A reaches B"
bash "$MKIMG" --mkimg "$T/amd64" amd64 oci "$nonce" >"$T/amd64.json"
bash "$MKIMG" --mkimg "$T/arm64" arm64 oci "$nonce" v8 >"$T/arm64.json"
for arch in amd64 arm64; do
  "${SK[@]}" copy -q --dest-tls-verify=false --dest-creds "$A_CREDS" "dir:$T/$arch" "docker://$A/prod/web:$arch"
done
jq -n --slurpfile a "$T/amd64.json" --slurpfile b "$T/arm64.json" '{schemaVersion:2, mediaType:"application/vnd.oci.image.index.v1+json",
  manifests:[{mediaType:$a[0].media_type, digest:$a[0].digest, size:$a[0].size, platform:{architecture:"amd64", os:"linux"}},
             {mediaType:$b[0].media_type, digest:$b[0].digest, size:$b[0].size, platform:{architecture:"arm64", os:"linux", variant:"v8"}}]}' \
  | tr -d '\n' >"$T/index.json"
code=$(curl -s -o /dev/null -w '%{http_code}' -u "$A_CREDS" -X PUT -H 'Content-Type: application/vnd.oci.image.index.v1+json' \
  --data-binary @"$T/index.json" "http://$A/v2/prod/web/manifests/v1")
expect "PUT the index prod/web:v1 to A" "$code" 201
IDX=$(sha256_of "$T/index.json")
"${SK[@]}" copy -q --dest-tls-verify=false --dest-creds "$A_CREDS" "dir:$T/amd64" "docker://$A/dev/web:v1"

status=
for _ in $(seq 1 240); do
  status=$(ecr describe-image-replication-status --repository-name prod/web --image-id imageTag=v1 \
    | jq -r '.replicationStatuses[] | select(.region == "eu-west-1" and .registryId == "111111111111") | .status')
  [[ $status == COMPLETE ]] && break
  sleep 0.5
done
expect "describe-image-replication-status: COMPLETE at eu-west-1" "$status" COMPLETE
raw=$("${SK[@]}" inspect --tls-verify=false --creds "$B_CREDS" --raw "docker://$B/prod/web:v1" | sha256sum | cut -c1-64)
expect "B serves the same index bytes" "sha256:$raw" "$IDX"
for spec in "amd64::amd64" "arm64:v8:arm64"; do
  IFS=: read -r arch variant want <<<"$spec"
  ov=(--override-arch "$arch" --override-os linux); [[ -n $variant ]] && ov+=(--override-variant "$variant")
  if "${SK[@]}" "${ov[@]}" copy -q --src-tls-verify=false --src-creds "$B_CREDS" "docker://$B/prod/web:v1" "dir:$T/pull-$arch"; then
    expect "skopeo pulls $arch from B" "$(sha256_of "$T/pull-$arch/manifest.json")" "$(jq -r .digest "$T/$want.json")"
    layer=$(jq -r .layer_digest "$T/$want.json" | cut -c8-)
    expect "$arch layer from B verifies" "$(sha256sum <"$T/pull-$arch/$layer" | cut -c1-64)" "$layer"
  else bad "skopeo --override-arch $arch copy from B"; fi
done
expect "dev/web is not replicated (no status)" \
  "$(ecr describe-image-replication-status --repository-name dev/web --image-id imageTag=v1 | jq '.replicationStatuses | length')" 0
code=$(curl -s -o /dev/null -w '%{http_code}' -u "$B_CREDS" "http://$B/v2/dev/web/manifests/v1")
expect "B has no dev/web" "$code" 404

section "kill -9 of A mid-replication: restarted, it finishes (B frozen so the item stays in flight)"
# B is stopped (SIGSTOP: its socket still accepts, nothing answers), so A's replicator holds the
# first image's claim with a request open to B. A is killed -9 then, B resumes, A restarts on the
# same data directory and, once the dead claim's lease (120 s) ran out, delivers everything.
kill -STOP "$B_PID"
for arch in amd64 arm64; do
  "${SK[@]}" copy -q --dest-tls-verify=false --dest-creds "$A_CREDS" "dir:$T/$arch" "docker://$A/prod/crash:$arch"
done
code=$(curl -s -o /dev/null -w '%{http_code}' -u "$A_CREDS" -X PUT -H 'Content-Type: application/vnd.oci.image.index.v1+json' \
  --data-binary @"$T/index.json" "http://$A/v2/prod/crash/manifests/v1")
expect "PUT the index prod/crash:v1 to A while B is frozen" "$code" 201
replication_status() {  # replication_status REPO TAG: A's status of it at eu-west-1/111111111111
  ecr describe-image-replication-status --repository-name "$1" --image-id "imageTag=$2" \
    | jq -r '[.replicationStatuses[] | select(.region == "eu-west-1" and .registryId == "111111111111") | .status][0] // "NONE"'
}
in_flight=
for _ in $(seq 1 100); do
  in_flight=$(replication_status prod/crash amd64)
  [[ $in_flight == IN_PROGRESS ]] && break
  sleep 0.1
done
expect "the first image is IN_PROGRESS at the kill (in flight to B)" "$in_flight" IN_PROGRESS
kill -KILL "$BERTH_PID"; wait "$BERTH_PID" 2>/dev/null || true; BERTH_PID=
kill -CONT "$B_PID"
start_berth "$T/a" --config "$T/a.toml"
A=$BERTH_ADDR
status=
for _ in $(seq 1 400); do
  status=$(replication_status prod/crash v1)
  [[ $status == COMPLETE ]] && break
  sleep 0.5
done
expect "after the restart, describe-image-replication-status of prod/crash:v1: COMPLETE" "$status" COMPLETE
for tag in amd64 arm64; do
  expect "prod/crash:$tag COMPLETE too" "$(replication_status prod/crash "$tag")" COMPLETE
done
raw=$("${SK[@]}" inspect --tls-verify=false --creds "$B_CREDS" --raw "docker://$B/prod/crash:v1" | sha256sum | cut -c1-64)
expect "B serves the index with A's digest" "sha256:$raw" "$IDX"
if "${SK[@]}" copy -q --all --src-tls-verify=false --src-creds "$B_CREDS" "docker://$B/prod/crash:v1" "oci:$T/crash-pulled:v1"; then
  ok "skopeo copy --all of prod/crash:v1 from B (every child and blob is there)"
  for arch in amd64 arm64; do
    layer=$(jq -r .layer_digest "$T/$arch.json" | cut -c8-)
    expect "$arch layer from B verifies" "$(sha256sum <"$T/crash-pulled/blobs/sha256/$layer" | cut -c1-64)" "$layer"
  done
else bad "skopeo copy --all of prod/crash:v1 from B"; fi

section "scanning and signing: honest answers, no fake results"
# ecr_err DESC EXCEPTION ARGS...: the CLI fails (exit 255) naming EXCEPTION.
ecr_err() {
  local desc=$1 want=$2; shift 2
  local rc=0; ecr "$@" >"$T/out.json" 2>"$T/err" || rc=$?
  if [[ $rc -eq 255 ]] && grep -q "An error occurred ($want)" "$T/err"; then ok "$desc -> $want"
  else bad "$desc -> $want (exit $rc: $(head -c 300 "$T/err"))"; fi
}
ecr_err "start-image-scan (no scanner)" ValidationException start-image-scan --repository-name prod/web --image-id imageTag=v1
ecr_err "describe-image-scan-findings (no scan ran)" ScanNotFoundException \
  describe-image-scan-findings --repository-name prod/web --image-id imageTag=v1
expect "put-registry-scanning-configuration BASIC without rules is echoed" \
  "$(ecr put-registry-scanning-configuration --scan-type BASIC | jq -c .registryScanningConfiguration)" '{"scanType":"BASIC","rules":[]}'
ecr_err "put-registry-scanning-configuration ENHANCED" ValidationException put-registry-scanning-configuration --scan-type ENHANCED
ecr_err "get-signing-configuration" SigningConfigurationNotFoundException get-signing-configuration
expect "describe-image-signing-status of an unsigned image" \
  "$(ecr describe-image-signing-status --repository-name prod/web --image-id imageTag=v1 | jq -c .signingStatuses)" '[]'

summary replication
