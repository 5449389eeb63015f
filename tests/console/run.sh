#!/usr/bin/env bash
# The web console in a real browser (headless Chromium from Debian, driven by Selenium): a fresh
# `berth serve` with authentication on; a multi-arch image pushed by the shared flow (docker CLI +
# skopeo), referrers and a lifecycle policy set with curl and the aws CLI; then console_test.py
# signs in and checks every page against what the real clients say. Screenshots of every page go
# to a directory printed at the end (UPDATE_SCREENSHOTS=1 also copies them to docs/screenshots/).
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${BERTH_SHARED_DIR:-$ROOT/../shared}
source "$ROOT/scripts/lib.sh"
T=$(mktemp -d); trap 'stop_berth; rm -rf "$T"' EXIT
source "$ROOT/tests/clients/lib/common.bash"
MKIMG="$SHARED/e2e/multiarch-flow.sh"
ARTIFACTS=${CONSOLE_ARTIFACTS:-$(mktemp -d /tmp/berth-console-screenshots.XXXXXX)}
mkdir -p "$ARTIFACTS"

export BERTH_ROOT_ACCESS_KEY_ID=AKIACONSOLEROOT00001 BERTH_ROOT_SECRET_ACCESS_KEY=console-root-secret-0123456789abcdefghij
start_berth "$T/data"
REG=$BERTH_ADDR
ROOT_AUTH="$BERTH_ROOT_ACCESS_KEY_ID:$BERTH_ROOT_SECRET_ACCESS_KEY"
export AWS_ACCESS_KEY_ID=$BERTH_ROOT_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$BERTH_ROOT_SECRET_ACCESS_KEY \
  AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
ecr() { aws --endpoint-url "http://$REG" --output json ecr "$@"; }
"$BERTH_BIN" user add reader --policy AmazonEC2ContainerRegistryFullAccess --data-dir "$T/data" >"$T/reader.json"
ok "berth user add reader"

section "a multi-arch image through the shared flow (docker manifest create/push, skopeo)"
WEB=console/web-app
TOKEN=$("$BERTH_BIN" token --data-dir "$T/data")
if REPO=$WEB CROSS_REPO=0 OCI=0 bash "$MKIMG" "$REG" AWS "$TOKEN" >"$T/flow.log" 2>&1; then
  ok "multiarch-flow.sh pushed $WEB:latest ($(tail -1 "$T/flow.log"))"
else bad "multiarch-flow.sh"; tail -30 "$T/flow.log"; fi

# What docker says about it: the index, and each platform's manifest.
export DOCKER_CONFIG=$T/docker
mkdir -p "$DOCKER_CONFIG"
jq -n --arg r "$REG" --arg a "$(printf 'AWS:%s' "$TOKEN" | base64 -w0)" '{auths: {($r): {auth: $a}}}' >"$DOCKER_CONFIG/config.json"
mkdir -p "$T/expect"
check "docker manifest inspect $WEB:latest" sh -c "docker manifest inspect --insecure '$REG/$WEB:latest' >'$T/expect/index.json'" || true
for digest in $(jq -r '.manifests[].digest' "$T/expect/index.json"); do
  check "docker manifest inspect $WEB@${digest:0:19}" \
    sh -c "docker manifest inspect --insecure '$REG/$WEB@$digest' >'$T/expect/$digest.json'" || true
done

# Referrers of the index: a cosign-style signature and an SPDX SBOM (OCI 1.1 subject).
curl -sf -u "$ROOT_AUTH" -H "Accept: $ALL_MANIFEST_TYPES" "http://$REG/v2/$WEB/manifests/latest" >"$T/index.json"
INDEX_DIGEST=$(sha256_of "$T/index.json")
INDEX_SIZE=$(wc -c <"$T/index.json")
INDEX_TYPE=$(jq -r .mediaType "$T/index.json")
EMPTY=sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a
referrer() {  # referrer ARTIFACT_TYPE PAYLOAD: pushes a blob and an artifact manifest whose subject is the index
  local type=$1 payload=$2 blob
  printf '%s' "$payload" >"$T/payload"
  blob=$(sha256_of "$T/payload")
  curl -sf -u "$ROOT_AUTH" -X POST --data-binary @"$T/payload" -H 'Content-Type: application/octet-stream' \
    "http://$REG/v2/$WEB/blobs/uploads/?digest=$blob" >/dev/null
  jq -n --arg t "$type" --arg b "$blob" --argjson n "$(wc -c <"$T/payload")" --arg e "$EMPTY" \
    --arg s "$INDEX_DIGEST" --argjson ss "$INDEX_SIZE" --arg st "$INDEX_TYPE" \
    '{schemaVersion:2, mediaType:"application/vnd.oci.image.manifest.v1+json", artifactType:$t,
      config:{mediaType:"application/vnd.oci.empty.v1+json", digest:$e, size:2},
      layers:[{mediaType:$t, digest:$b, size:$n}], subject:{mediaType:$st, digest:$s, size:$ss}}' >"$T/referrer.json"
  curl -s -o /dev/null -w '%{http_code}' -u "$ROOT_AUTH" -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary @"$T/referrer.json" "http://$REG/v2/$WEB/manifests/$(sha256_of "$T/referrer.json")"
}
expect "PUT a signature referrer of the index -> 201" "$(referrer application/vnd.dev.cosign.artifact.sig.v1+json '{"critical":{"image":{"docker-manifest-digest":"'"$INDEX_DIGEST"'"}}}')" 201
expect "PUT an SBOM referrer of the index -> 201" "$(referrer application/spdx+json '{"spdxVersion":"SPDX-2.3","name":"web-app"}')" 201

section "a repository for lifecycle: tagged images, an index with a tagged child, untagged orphans"
LC=console/lifecycle
nonce=$RANDOM$RANDOM
push() {  # push NAME ARCH REF [VARIANT]: a fresh single-arch image by tag (":t") or by its digest ("@")
  bash "$MKIMG" --mkimg "$T/img/$1" "$2" oci "$nonce-$1" ${4:-} >"$T/img/$1.json"
  local ref=$3
  [[ $ref == @ ]] && ref="@$(jq -r .digest "$T/img/$1.json")"
  skopeo copy --insecure-policy --dest-tls-verify=false --dest-creds "$ROOT_AUTH" --preserve-digests \
    "dir:$T/img/$1" "docker://$REG/$LC$ref" >/dev/null
  sleep 0.05 # distinct push times, so "newest" is well defined
}
mkdir -p "$T/img"
push child-arm arm64 :v0-arm64 v8
push child-amd amd64 @
for v in v1 v2 v3; do push "$v" amd64 ":$v"; done
push u1 amd64 @
push u2 amd64 @
ok "pushed $LC: v0-arm64 (to be a child), an untagged child, v1..v3, two untagged images"
jq -n --slurpfile a "$T/img/child-amd.json" --slurpfile b "$T/img/child-arm.json" '{schemaVersion:2, mediaType:"application/vnd.oci.image.index.v1+json",
  manifests:[{mediaType:$a[0].media_type, digest:$a[0].digest, size:$a[0].size, platform:{architecture:"amd64", os:"linux"}},
             {mediaType:$b[0].media_type, digest:$b[0].digest, size:$b[0].size, platform:{architecture:"arm64", os:"linux", variant:"v8"}}]}' >"$T/lc-index.json"
expect "PUT the index $LC:v4 -> 201" "$(curl -s -o /dev/null -w '%{http_code}' -u "$ROOT_AUTH" -X PUT \
  -H 'Content-Type: application/vnd.oci.image.index.v1+json' --data-binary @"$T/lc-index.json" "http://$REG/v2/$LC/manifests/v4")" 201
cat >"$T/policy.json" <<'JSON'
{"rules":[
 {"rulePriority":1,"description":"archive all but the two newest v* releases","selection":{"tagStatus":"tagged","tagPrefixList":["v"],"countType":"imageCountMoreThan","countNumber":2},"action":{"type":"transition","targetStorageClass":"archive"}},
 {"rulePriority":2,"description":"keep one untagged image","selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}
JSON
# A preview of the rules (ECR's "test rules"), not put: a policy in force would expire them at once.
check "aws ecr start-lifecycle-policy-preview $LC (rules not put)" \
  ecr start-lifecycle-policy-preview --repository-name "$LC" --lifecycle-policy-text "file://$T/policy.json" || true
check "aws ecr get-lifecycle-policy-preview $LC" sh -c "aws --endpoint-url 'http://$REG' --output json ecr get-lifecycle-policy-preview --repository-name '$LC' >'$T/expect/preview.json'" || true
# A policy in force on $WEB that expires nothing there (platforms and referrers are not orphans).
cat >"$T/web-policy.json" <<'JSON'
{"rules":[{"rulePriority":1,"description":"untagged images go after 30 days","selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":30},"action":{"type":"expire"}}]}
JSON
check "aws ecr put-lifecycle-policy $WEB" ecr put-lifecycle-policy --repository-name "$WEB" --lifecycle-policy-text "file://$T/web-policy.json" || true

section "a repository policy: reader may not delete images of $WEB"
ACCOUNT=$(ecr describe-registry | jq -r .registryId)
jq -n --arg p "arn:aws:iam::$ACCOUNT:user/reader" '{Version:"2012-10-17", Statement:[{Sid:"ReaderMayNotDelete", Effect:"Deny",
  Principal:{AWS:[$p]}, Action:["ecr:BatchDeleteImage"]}]}' >"$T/repo-policy.json"
check "aws ecr set-repository-policy $WEB" ecr set-repository-policy --repository-name "$WEB" --policy-text "file://$T/repo-policy.json" || true

section "a pull-through cache rule over console/ (the badge names its upstream)"
check "aws ecr create-pull-through-cache-rule console -> public.ecr.aws" \
  ecr create-pull-through-cache-rule --ecr-repository-prefix console --upstream-registry-url public.ecr.aws || true

# The browser checks compare against what the steps above produced: without them they mean nothing.
if [[ $fail -ne 0 ]]; then summary console; exit 1; fi

section "the console in headless Chromium"
jq -n --arg i "$INDEX_DIGEST" '{index: $i}' >"$T/expect/web.json"
jq -n --arg u1 "$(jq -r .digest "$T/img/u1.json")" '{u1: $u1}' >"$T/expect/lc.json"
if BASE="http://$REG" EXPECT="$T/expect" ARTIFACTS="$ARTIFACTS" \
   ROOT_KEY=$BERTH_ROOT_ACCESS_KEY_ID ROOT_SECRET=$BERTH_ROOT_SECRET_ACCESS_KEY \
   ROOT_TOKEN=$TOKEN READER_KEY=$(jq -r .accessKeyId "$T/reader.json") READER_SECRET=$(jq -r .secretAccessKey "$T/reader.json") \
   BERTH_BIN="$BERTH_BIN" DATA_DIR="$T/data" WEB=$WEB LC=$LC REG=$REG python3 "$ROOT/tests/console/console_test.py" >"$T/browser.log" 2>&1; then
  ok "console_test.py ($(tail -1 "$T/browser.log"))"
else
  bad "console_test.py"
fi
grep -E '^(PASS|FAIL|SKIP)' "$T/browser.log" | sed 's/^/    /'
grep -vE '^(PASS|FAIL|SKIP)' "$T/browser.log" | tail -20 | sed 's/^/    | /'
pass=$((pass + $(grep -c '^PASS' "$T/browser.log" || true)))
fail=$((fail + $(grep -c '^FAIL' "$T/browser.log" || true)))
if [[ ${UPDATE_SCREENSHOTS:-0} == 1 ]]; then
  mkdir -p "$ROOT/docs/screenshots" && cp "$ARTIFACTS"/*.png "$ROOT/docs/screenshots/"
fi
echo "screenshots: $ARTIFACTS"
summary console
