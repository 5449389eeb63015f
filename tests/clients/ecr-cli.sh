#!/usr/bin/env bash
# The real `aws ecr` CLI against berth: every served operation with its happy path and main errors
# (auth off, dummy keys), skopeo and curl on /v2/ for the shared model; then with authentication
# (root keys from the environment): get-login-password as curl/docker credentials, SigV4
# failures, the shared multi-arch flow with its ECR hook, and a repository policy denying one user's
# pushes (skopeo and put-image refused, pulls and other users unaffected).
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${BERTH_SHARED_DIR:-$ROOT/../shared}
source "$ROOT/scripts/lib.sh"
python3 -c 'import awscli' 2>/dev/null || pip install -q awscli
T=$(mktemp -d); trap 'stop_berth; rm -rf "$T"' EXIT
source "$ROOT/tests/clients/lib/common.bash"
MKIMG="$SHARED/e2e/multiarch-flow.sh"

start_berth "$T/data" --no-auth
REG=$BERTH_ADDR
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 \
  AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
ecr() { aws --endpoint-url "http://$REG" --output json ecr "$@"; }
# ecr_ok DESC ARGS...: the call succeeds; its JSON is in $T/out.json.
ecr_ok() {
  local desc=$1; shift
  if ecr "$@" >"$T/out.json" 2>"$T/err"; then ok "$desc"; else bad "$desc"; sed 's/^/    | /' "$T/err"; fi
}
# ecr_err DESC EXCEPTION ARGS...: the CLI fails (exit 255) naming EXCEPTION.
ecr_err() {
  local desc=$1 want=$2; shift 2
  local rc=0; ecr "$@" >"$T/out.json" 2>"$T/err" || rc=$?
  if [[ $rc -eq 255 ]] && grep -q "An error occurred ($want)" "$T/err"; then ok "$desc -> $want"
  else bad "$desc -> $want (exit $rc: $(head -c 300 "$T/err"))"; fi
}
j() { jq -r "$@" "$T/out.json"; }
SK=(skopeo --insecure-policy)
nonce=$RANDOM$RANDOM
R=cli/app

section "GetAuthorizationToken"
pw=$(ecr get-login-password)
[[ -n $pw && $pw != *:* ]] && ok "get-login-password prints a password without ':'" || bad "get-login-password ($pw)"
ecr_ok "get-authorization-token" get-authorization-token
expect "token decodes to AWS:<password>" "$(j '.authorizationData[0].authorizationToken' | base64 -d)" "AWS:$pw"
expect "proxyEndpoint is this registry" "$(j '.authorizationData[0].proxyEndpoint')" "http://$REG"
expires=$(j '.authorizationData[0].expiresAt | floor')
(( expires - $(date +%s) > 12 * 3600 - 120 )) && ok "token expires in 12 hours" || bad "expiresAt $expires"
expect "curl with Basic AWS:<password> gets /v2/" "$(curl -s -o /dev/null -w '%{http_code}' -u "AWS:$pw" "http://$REG/v2/")" 200
login=$(ecr get-login --no-include-email 2>/dev/null)
expect "get-login prints a docker login command" "$login" "docker login -u AWS -p $pw http://$REG"
ecr_ok "describe-registry" describe-registry
expect "registry id" "$(j .registryId)" 000000000000

section "repositories"
ecr_ok "create-repository $R (IMMUTABLE, tagged)" create-repository --repository-name "$R" \
  --image-tag-mutability IMMUTABLE --tags Key=team,Value=web
expect "repositoryUri" "$(j .repository.repositoryUri)" "$REG/$R"
expect "repositoryArn" "$(j .repository.repositoryArn)" "arn:aws:ecr:us-east-1:000000000000:repository/$R"
expect "encryption defaults to AES256" "$(j .repository.encryptionConfiguration.encryptionType)" AES256
ARN=$(j .repository.repositoryArn)
ecr_err "create-repository again" RepositoryAlreadyExistsException create-repository --repository-name "$R"
ecr_err "create-repository with an upper-case name" InvalidParameterException create-repository --repository-name Cli/App
ecr_ok "describe-repositories --repository-names" describe-repositories --repository-names "$R"
expect "described mutability" "$(j '.repositories[0].imageTagMutability')" IMMUTABLE
ecr_err "describe-repositories of a missing one" RepositoryNotFoundException describe-repositories --repository-names cli/none
for i in 1 2 3 4 5; do ecr create-repository --repository-name "cli/many-$i" >/dev/null; done
ecr_ok "describe-repositories --page-size 2 (follows nextToken)" describe-repositories --page-size 2
expect "all repositories over pages of 2" "$(j '[.repositories[].repositoryName] | join(",")')" \
  "$(ecr describe-repositories --no-paginate | jq -r '[.repositories[].repositoryName] | join(",")')"
expect "6 repositories" "$(j '.repositories | length')" 6
ecr_ok "describe-repositories --max-items 4 --page-size 3" describe-repositories --max-items 4 --page-size 3
expect "4 items and a NextToken" "$(j '(.repositories | length | tostring) + " " + (.NextToken != null | tostring)')" "4 true"
ecr_ok "describe-repositories --starting-token" describe-repositories --starting-token "$(j .NextToken)" --page-size 3
expect "the remaining 2" "$(j '[.repositories[].repositoryName] | join(",")')" "cli/many-4,cli/many-5"

section "resource tags"
ecr_ok "tag-resource" tag-resource --resource-arn "$ARN" --tags Key=env,Value=prod Key=team,Value=platform
ecr_ok "untag-resource" untag-resource --resource-arn "$ARN" --tag-keys env
ecr_ok "list-tags-for-resource" list-tags-for-resource --resource-arn "$ARN"
expect "tags merged then removed" "$(j -c .tags)" '[{"Key":"team","Value":"platform"}]'
ecr_err "tag-resource with a bad ARN" InvalidParameterException tag-resource --resource-arn arn:aws:ecr:us-east-1:0:repo --tags Key=a,Value=b

section "scanning configuration (Berth runs no scanner: BASIC, no registry rules, scanOnPush as stored)"
ecr_ok "get-registry-scanning-configuration" get-registry-scanning-configuration
expect "BASIC with no rules" "$(j -c '[.registryId, .scanningConfiguration]')" '["000000000000",{"scanType":"BASIC","rules":[]}]'
ecr create-repository --repository-name cli/scanned --image-scanning-configuration scanOnPush=true >/dev/null
ecr_ok "batch-get-repository-scanning-configuration (one scan-on-push repository, one missing)" \
  batch-get-repository-scanning-configuration --repository-names cli/scanned cli/none
expect "cli/scanned scans on push" "$(j -c '.scanningConfigurations')" \
  '[{"repositoryArn":"arn:aws:ecr:us-east-1:000000000000:repository/cli/scanned","repositoryName":"cli/scanned","scanOnPush":true,"scanFrequency":"SCAN_ON_PUSH","appliedScanFilters":[]}]'
expect "cli/none is a REPOSITORY_NOT_FOUND failure" "$(j -r '.failures[] | .repositoryName + " " + .failureCode')" \
  "cli/none REPOSITORY_NOT_FOUND"
ecr_ok "put-image-scanning-configuration scanOnPush=false" put-image-scanning-configuration \
  --repository-name cli/scanned --image-scanning-configuration scanOnPush=false
expect "echoed" "$(j -c .imageScanningConfiguration)" '{"scanOnPush":false}'
ecr_ok "batch-get-repository-scanning-configuration after the change" \
  batch-get-repository-scanning-configuration --repository-names cli/scanned
expect "cli/scanned is MANUAL now" "$(j -r '.scanningConfigurations[] | (.scanOnPush | tostring) + " " + .scanFrequency')" "false MANUAL"
ecr_err "batch-get-repository-scanning-configuration of 26 names" InvalidParameterException \
  batch-get-repository-scanning-configuration --repository-names $(printf 'cli/r%s ' {1..26})
ecr delete-repository --repository-name cli/scanned >/dev/null

section "a /v2/ push (skopeo) seen by the ECR API"
bash "$MKIMG" --mkimg "$T/amd64" amd64 oci "$nonce" >"$T/amd64.json"
bash "$MKIMG" --mkimg "$T/arm64" arm64 oci "$nonce" v8 >"$T/arm64.json"
"${SK[@]}" copy -q --dest-tls-verify=false --preserve-digests "dir:$T/amd64" "docker://$REG/$R:v1" && ok "skopeo push $R:v1" || bad "skopeo push"
"${SK[@]}" copy -q --dest-tls-verify=false --preserve-digests "dir:$T/arm64" "docker://$REG/$R@$(jq -r .digest "$T/arm64.json")" \
  && ok "skopeo push arm64 by digest" || bad "skopeo push arm64"
ecr_ok "describe-images" describe-images --repository-name "$R" --image-ids imageTag=v1
expect "v1 digest" "$(j '.imageDetails[0].imageDigest')" "$(jq -r .digest "$T/amd64.json")"
expect "v1 size is config + layer" "$(j '.imageDetails[0].imageSizeInBytes')" "$(jq '.config_size + .layer_size' "$T/amd64.json")"
expect "v1 media types" "$(j '.imageDetails[0] | .imageManifestMediaType + " " + .artifactMediaType')" \
  "application/vnd.oci.image.manifest.v1+json application/vnd.oci.image.config.v1+json"
ecr_ok "list-images --filter tagStatus=UNTAGGED" list-images --repository-name "$R" --filter tagStatus=UNTAGGED
expect "the arm64 image is untagged" "$(j -c .imageIds)" "[{\"imageDigest\":\"$(jq -r .digest "$T/arm64.json")\"}]"

section "layer API + put-image, pulled through /v2/"
cat >"$T/config.json" <<EOF
{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Labels":{"nonce":"$nonce"}}}
EOF
head -c 6000000 /dev/urandom >"$T/layer.bin"
head -c $((5 * 1024 * 1024)) "$T/layer.bin" >"$T/part1"; tail -c +$((5 * 1024 * 1024 + 1)) "$T/layer.bin" >"$T/part2"
upload_layer() {  # upload_layer FILE... -> digest of their concatenation (one part per file)
  local id first=0 f size digest
  id=$(ecr initiate-layer-upload --repository-name "$R" | jq -r .uploadId)
  for f in "$@"; do
    size=$(stat -c %s "$f")
    ecr upload-layer-part --repository-name "$R" --upload-id "$id" --part-first-byte $first \
      --part-last-byte $((first + size - 1)) --layer-part-blob "fileb://$f" >/dev/null
    first=$((first + size))
  done
  digest=sha256:$(cat "$@" | sha256sum | cut -c1-64)
  ecr complete-layer-upload --repository-name "$R" --upload-id "$id" --layer-digests "$digest" | jq -r .layerDigest
}
CFG=$(upload_layer "$T/config.json"); LAYER=$(upload_layer "$T/part1" "$T/part2")
expect "two-part layer upload completes" "$LAYER" "$(sha256_of "$T/layer.bin")"
printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"$CFG\",\"size\":$(stat -c %s "$T/config.json")},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"$LAYER\",\"size\":$(stat -c %s "$T/layer.bin")}]}" >"$T/manifest.json"
MDIG=$(sha256_of "$T/manifest.json")
ecr_ok "put-image --image-tag from-api" put-image --repository-name "$R" --image-tag from-api --image-manifest "file://$T/manifest.json"
expect "put-image digest is sha256 of the bytes" "$(j .image.imageId.imageDigest)" "$MDIG"
expect "skopeo inspect --raw returns the exact bytes" \
  "$("${SK[@]}" inspect --tls-verify=false --raw "docker://$REG/$R:from-api" | sha256sum | cut -c1-64)" "${MDIG#sha256:}"
if "${SK[@]}" copy -q --src-tls-verify=false "docker://$REG/$R:from-api" "dir:$T/pulled" 2>"$T/err"; then
  expect "skopeo pulls the API-uploaded layer intact" "$(sha256sum <"$T/pulled/${LAYER#sha256:}" | cut -c1-64)" "${LAYER#sha256:}"
else bad "skopeo pull of $R:from-api"; cat "$T/err"; fi
ecr_err "put-image of the same digest and tag" ImageAlreadyExistsException put-image --repository-name "$R" \
  --image-tag from-api --image-manifest "file://$T/manifest.json"
ecr_err "put-image with a wrong --image-digest" ImageDigestDoesNotMatchException put-image --repository-name "$R" \
  --image-manifest "file://$T/manifest.json" --image-digest "sha256:$(printf 0%.0s {1..64})"
ecr_err "put-image of invalid JSON" InvalidParameterException put-image --repository-name "$R" --image-manifest '{oops'

section "retag: batch-get-image | put-image"
MANIFEST=$(ecr batch-get-image --repository-name "$R" --image-ids imageTag=from-api --query 'images[].imageManifest' --output text)
ecr_ok "put-image --image-tag retagged with the fetched manifest" put-image --repository-name "$R" \
  --image-tag retagged --image-manifest "$MANIFEST"
ecr_ok "describe-images" describe-images --repository-name "$R" --image-ids "imageDigest=$MDIG"
expect "one image, both tags" "$(j -c '.imageDetails[0].imageTags')" '["from-api","retagged"]'

section "tag immutability on both planes"
ecr_err "put-image moving immutable tag v1" ImageTagAlreadyExistsException put-image --repository-name "$R" \
  --image-tag v1 --image-manifest "file://$T/manifest.json"
code=$(curl -s -o "$T/put.json" -w '%{http_code}' -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
  --data-binary "@$T/manifest.json" "http://$REG/v2/$R/manifests/v1")
expect "/v2/ PUT moving v1 -> 400 TAG_INVALID naming the tag" \
  "$code $(jq -r '.errors[0].code' "$T/put.json") $(jq -r '.errors[0].message | test("\\bv1\\b")' "$T/put.json")" "400 TAG_INVALID true"
ecr_ok "put-image-tag-mutability MUTABLE_WITH_EXCLUSION release-*" put-image-tag-mutability --repository-name "$R" \
  --image-tag-mutability MUTABLE_WITH_EXCLUSION --image-tag-mutability-exclusion-filters filterType=WILDCARD,filter='release-*'
expect "echoed filters" "$(j -c .imageTagMutabilityExclusionFilters)" '[{"filterType":"WILDCARD","filter":"release-*"}]'
"${SK[@]}" copy -q --dest-tls-verify=false "dir:$T/arm64" "docker://$REG/$R:v1" && ok "skopeo moves v1 now" || bad "skopeo push v1 after MUTABLE_WITH_EXCLUSION"
ecr_ok "put-image release-1" put-image --repository-name "$R" --image-tag release-1 --image-manifest "file://$T/manifest.json"
if "${SK[@]}" copy -q --dest-tls-verify=false "dir:$T/arm64" "docker://$REG/$R:release-1" 2>"$T/err"; then
  bad "skopeo must not move release-1"; else ok "skopeo cannot move release-1 (immutable by exclusion)"; fi
ecr_err "put-image-tag-mutability with a bad mode" InvalidParameterException put-image-tag-mutability \
  --repository-name "$R" --image-tag-mutability SOMETIMES

section "multi-arch index: children protected"
idx=$(jq -cn --slurpfile a "$T/amd64.json" --slurpfile b "$T/arm64.json" '{schemaVersion:2, mediaType:"application/vnd.oci.image.index.v1+json",
  manifests:[{mediaType:$a[0].media_type, digest:$a[0].digest, size:$a[0].size, platform:{architecture:"amd64", os:"linux"}},
             {mediaType:$b[0].media_type, digest:$b[0].digest, size:$b[0].size, platform:{architecture:"arm64", os:"linux", variant:"v8"}}]}')
ecr_ok "put-image of an index" put-image --repository-name "$R" --image-tag multi --image-manifest "$idx"
IDX=$(j .image.imageId.imageDigest)
ecr_ok "describe-images of the index" describe-images --repository-name "$R" --image-ids imageTag=multi
expect "index size is its largest child" "$(j '.imageDetails[0].imageSizeInBytes')" \
  "$(jq -s 'map(.config_size + .layer_size) | max' "$T/amd64.json" "$T/arm64.json")"
ecr_ok "batch-delete-image of a child (HTTP 200)" batch-delete-image --repository-name "$R" \
  --image-ids "imageDigest=$(jq -r .digest "$T/amd64.json")"
expect "failure ImageReferencedByManifestList" "$(j '.failures[0].failureCode')" ImageReferencedByManifestList
ecr_ok "batch-delete-image untags retagged" batch-delete-image --repository-name "$R" --image-ids imageTag=retagged
expect "deleted id" "$(j -c '.imageIds')" "[{\"imageDigest\":\"$MDIG\",\"imageTag\":\"retagged\"}]"

section "pagination of images"
ecr_ok "list-images --page-size 2" list-images --repository-name "$R" --page-size 2
expect "same ids as one page" "$(j -c .imageIds)" "$(ecr list-images --repository-name "$R" --no-paginate | jq -c .imageIds)"
(( $(j '.imageIds | length') > 2 )) && ok "more than one page of ids" || bad "too few images to page"
ecr_ok "describe-images --page-size 1" describe-images --repository-name "$R" --page-size 1
expect "same details as one page" "$(j -c '[.imageDetails[].imageDigest]')" \
  "$(ecr describe-images --repository-name "$R" --no-paginate | jq -c '[.imageDetails[].imageDigest]')"
ecr_err "describe-images with a lower-case filter" InvalidParameterException describe-images --repository-name "$R" --filter tagStatus=tagged
ecr_err "list-images with a forged token" InvalidParameterException list-images --repository-name "$R" --no-paginate --next-token abc

section "layers: availability and download URLs"
ecr_ok "batch-check-layer-availability" batch-check-layer-availability --repository-name "$R" \
  --layer-digests "$LAYER" "sha256:$(printf a%.0s {1..64})"
expect "available with its size" "$(j -r '.layers[0] | .layerAvailability + " " + (.layerSize | tostring)')" "AVAILABLE $(stat -c %s "$T/layer.bin")"
expect "missing one is a failure" "$(j -r '.failures[0].failureCode')" MissingLayerDigest
ecr_ok "get-download-url-for-layer" get-download-url-for-layer --repository-name "$R" --layer-digest "$LAYER"
URL=$(j -r .downloadUrl)
expect "the URL serves the layer" "$(curl -s "$URL" | sha256sum | cut -c1-64)" "${LAYER#sha256:}"
[[ ${URL: -1} == 0 ]] && TAMPERED=${URL%?}1 || TAMPERED=${URL%?}0
expect "a tampered URL is refused" "$(curl -s -o /dev/null -w '%{http_code}' "$TAMPERED")" 403
ORPHAN=$(printf 'orphan %s' "$nonce" >"$T/orphan" && upload_layer "$T/orphan")
ecr_err "get-download-url-for-layer of an unreferenced layer" LayerInaccessibleException get-download-url-for-layer \
  --repository-name "$R" --layer-digest "$ORPHAN"
ecr_err "complete-layer-upload of an unknown upload" UploadNotFoundException complete-layer-upload --repository-name "$R" \
  --upload-id 00000000-0000-4000-8000-000000000000 --layer-digests "$LAYER"

section "referrers"
printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"artifactType\":\"application/spdx+json\",\"config\":{\"mediaType\":\"application/vnd.oci.empty.v1+json\",\"digest\":\"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\",\"size\":2},\"layers\":[{\"mediaType\":\"application/spdx+json\",\"digest\":\"$ORPHAN\",\"size\":$(stat -c %s "$T/orphan")}],\"subject\":{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"$MDIG\",\"size\":$(stat -c %s "$T/manifest.json")}}" >"$T/sbom.json"
ecr_ok "put-image of an SBOM referring to from-api" put-image --repository-name "$R" --image-manifest "file://$T/sbom.json"
ecr_ok "list-image-referrers" list-image-referrers --repository-name "$R" --subject-id "imageDigest=$MDIG"
expect "the SBOM is listed" "$(j -r '.referrers[0] | .artifactType + " " + .digest')" \
  "application/spdx+json $(sha256_of "$T/sbom.json")"
SIGTYPE=application/vnd.dev.cosign.artifact.sig.v1+json
printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"artifactType\":\"$SIGTYPE\",\"config\":{\"mediaType\":\"application/vnd.oci.empty.v1+json\",\"digest\":\"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\",\"size\":2},\"layers\":[{\"mediaType\":\"$SIGTYPE\",\"digest\":\"$ORPHAN\",\"size\":$(stat -c %s "$T/orphan")}],\"subject\":{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"$MDIG\",\"size\":$(stat -c %s "$T/manifest.json")},\"annotations\":{\"pushed-by\":\"curl\"}}" >"$T/sig.json"
SIG=$(sha256_of "$T/sig.json")
expect "curl PUT /v2/ of a signature referring to from-api" "$(curl -s -o /dev/null -w '%{http_code}' -X PUT \
  -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "@$T/sig.json" "http://$REG/v2/$R/manifests/$SIG")" 201
ecr_ok "list-image-referrers after the /v2/ push" list-image-referrers --repository-name "$R" --subject-id "imageDigest=$MDIG"
expect "the same referrers as GET /v2/.../referrers" "$(j -c '[.referrers[].digest] | sort')" \
  "$(curl -s "http://$REG/v2/$R/referrers/$MDIG" | jq -c '[.manifests[].digest] | sort')"
ecr_ok "list-image-referrers --filter artifactTypes=<signature>" list-image-referrers --repository-name "$R" \
  --subject-id "imageDigest=$MDIG" --filter "artifactTypes=$SIGTYPE"
expect "only the curl-pushed signature, ACTIVE, with its annotations" \
  "$(j -c '[.referrers[] | [.digest, .artifactType, .artifactStatus, .annotations."pushed-by"]]')" "[[\"$SIG\",\"$SIGTYPE\",\"ACTIVE\",\"curl\"]]"
ecr_ok "list-image-referrers --max-results 1" list-image-referrers --repository-name "$R" \
  --subject-id "imageDigest=$MDIG" --max-results 1
first=$(j '.referrers[0].digest')
ecr_ok "list-image-referrers --next-token" list-image-referrers --repository-name "$R" \
  --subject-id "imageDigest=$MDIG" --max-results 1 --next-token "$(j .nextToken)"
expect "the second page holds the other referrer and ends the listing" "$(j -c '[(.referrers | length), .referrers[0].digest != "'"$first"'", has("nextToken")]')" \
  "[1,true,false]"
ecr_err "list-image-referrers in a missing repository" RepositoryNotFoundException list-image-referrers \
  --repository-name cli/none --subject-id "imageDigest=$MDIG"

section "archive storage class: update-image-storage-class, refused pulls on both planes, restore"
# Earlier sections moved tags around: find which child carries a tag of its own.
ecr describe-images --repository-name "$R" --image-ids "imageDigest=$(jq -r .digest "$T/amd64.json")" \
  "imageDigest=$(jq -r .digest "$T/arm64.json")" >"$T/kids.json"
TAGGED_CHILD=$(jq -r '[.imageDetails[] | select(.imageTags != null) | .imageDigest][0]' "$T/kids.json")
UNTAGGED_CHILD=$(jq -r '[.imageDetails[] | select(.imageTags == null) | .imageDigest][0]' "$T/kids.json")
[[ $TAGGED_CHILD == sha256:* && $UNTAGGED_CHILD == sha256:* ]] && ok "the index has a tagged and an untagged child" || bad "children: $TAGGED_CHILD $UNTAGGED_CHILD"
ecr_err "archiving a child of a STANDARD index" ImageStorageClassUpdateNotSupportedException \
  update-image-storage-class --repository-name "$R" --image-id "imageDigest=$UNTAGGED_CHILD" --target-storage-class ARCHIVE
ecr_err "an unknown storage class" InvalidParameterException \
  update-image-storage-class --repository-name "$R" --image-id imageTag=multi --target-storage-class GLACIER
ecr_err "archiving a missing image" ImageNotFoundException \
  update-image-storage-class --repository-name "$R" --image-id imageTag=none --target-storage-class ARCHIVE
ecr_ok "update-image-storage-class ARCHIVE of the index" update-image-storage-class --repository-name "$R" \
  --image-id imageTag=multi --target-storage-class ARCHIVE
expect "answers ARCHIVED with the digest" "$(j '.imageStatus + " " + .imageId.imageDigest')" "ARCHIVED $IDX"
ecr_ok "describe-images --image-ids of the archived index" describe-images --repository-name "$R" --image-ids imageTag=multi
expect "imageStatus ARCHIVED, lastArchivedAt set" "$(j '.imageDetails[0] | .imageStatus + " " + (.lastArchivedAt != null | tostring)')" "ARCHIVED true"
ecr_ok "describe-images --filter imageStatus=ARCHIVED" describe-images --repository-name "$R" --filter imageStatus=ARCHIVED
expect "the index and its untagged child are archived" "$(j '[.imageDetails[].imageDigest] | sort | join(",")')" \
  "$(printf '%s\n' "$IDX" "$UNTAGGED_CHILD" | sort | paste -sd,)"
ecr_ok "describe-images (ACTIVE by default)" describe-images --repository-name "$R"
expect "archived images are not among the active ones" "$(j --arg i "$IDX" --arg a "$UNTAGGED_CHILD" '[.imageDetails[] | select(.imageDigest == $i or .imageDigest == $a)] | length')" 0
expect "the tagged child (its own image) stays ACTIVE" "$(j --arg a "$TAGGED_CHILD" '[.imageDetails[] | select(.imageDigest == $a) | .imageStatus] | join(",")')" ACTIVE
ecr_ok "list-images --filter imageStatus=ARCHIVED,tagStatus=TAGGED" list-images --repository-name "$R" --filter imageStatus=ARCHIVED,tagStatus=TAGGED
expect "lists the archived index by its tag" "$(j -c .imageIds)" "[{\"imageDigest\":\"$IDX\",\"imageTag\":\"multi\"}]"
if "${SK[@]}" inspect --raw --tls-verify=false "docker://$REG/$R:multi" >"$T/out.raw" 2>"$T/err"; then
  bad "skopeo inspect of an archived image must fail"
else grep -q "archived" "$T/err" && ok "skopeo inspect of the archived index is refused (says archived)" \
  || bad "skopeo inspect failed otherwise: $(head -c 300 "$T/err")"; fi
expect "/v2/ GET of the archived index by digest: 404" "$(curl -s -o "$T/out.json" -w '%{http_code}' -H 'Accept: application/vnd.oci.image.index.v1+json' "http://$REG/v2/$R/manifests/$IDX")" 404
expect "... MANIFEST_UNKNOWN" "$(j '.errors[0].code')" MANIFEST_UNKNOWN
expect "/v2/ HEAD of the archived child: 404" "$(curl -s -I -o /dev/null -w '%{http_code}' "http://$REG/v2/$R/manifests/$UNTAGGED_CHILD")" 404
expect "/v2/ of the tagged child still pulls" "$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/$R/manifests/$TAGGED_CHILD")" 200
ecr_ok "batch-get-image of the archived index (HTTP 200)" batch-get-image --repository-name "$R" --image-ids imageTag=multi
expect "failure ImageNotFound, no image" "$(j '.failures[0].failureCode + " " + (.images | length | tostring)')" "ImageNotFound 0"
ecr_ok "update-image-storage-class ARCHIVE again (no change)" update-image-storage-class --repository-name "$R" \
  --image-id "imageDigest=$IDX" --target-storage-class ARCHIVE
expect "still ARCHIVED" "$(j .imageStatus)" ARCHIVED
ecr_ok "update-image-storage-class STANDARD restores at once" update-image-storage-class --repository-name "$R" \
  --image-id imageTag=multi --target-storage-class STANDARD
expect "answers ACTIVE (never ACTIVATING)" "$(j .imageStatus)" ACTIVE
"${SK[@]}" copy -q --all --src-tls-verify=false "docker://$REG/$R:multi" "dir:$T/restored" \
  && ok "skopeo copy --all of the restored index" || bad "skopeo copy --all after the restore"
ecr_ok "describe-images of the restored child" describe-images --repository-name "$R" --image-ids "imageDigest=$UNTAGGED_CHILD"
expect "ACTIVE with lastArchivedAt and lastActivatedAt" "$(j '.imageDetails[0] | .imageStatus + " " + (.lastArchivedAt != null and .lastActivatedAt != null | tostring)')" "ACTIVE true"

section "delete-repository"
ecr_err "delete-repository of a non-empty repository" RepositoryNotEmptyException delete-repository --repository-name "$R"
ecr_ok "delete-repository --force" delete-repository --repository-name "$R" --force
expect "/v2/ no longer has it" "$(curl -s -o /dev/null -w '%{http_code}' "http://$REG/v2/$R/tags/list")" 404
ecr_err "describe-images after the delete" RepositoryNotFoundException describe-images --repository-name "$R"

section "repository creation templates: create-on-push (skopeo) applies the most specific one"
cat >"$T/tpl-life.json" <<'EOF_JSON'
{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":5},"action":{"type":"expire"}}]}
EOF_JSON
cat >"$T/tpl-policy.json" <<'EOF_JSON'
{"Version":"2012-10-17","Statement":[{"Sid":"PullForAll","Effect":"Allow","Principal":"*","Action":["ecr:BatchGetImage"]}]}
EOF_JSON
ecr_ok "create-repository-creation-template ROOT" create-repository-creation-template --prefix ROOT \
  --applied-for CREATE_ON_PUSH --resource-tags Key=from,Value=root
expect "registryId and prefix" "$(j '.registryId + " " + .repositoryCreationTemplate.prefix')" "000000000000 ROOT"
ecr_ok "create-repository-creation-template tpl/ (all settings)" create-repository-creation-template --prefix tpl/ \
  --description "team template" --applied-for CREATE_ON_PUSH REPLICATION \
  --image-tag-mutability IMMUTABLE_WITH_EXCLUSION --image-tag-mutability-exclusion-filters filterType=WILDCARD,filter=latest \
  --resource-tags Key=team,Value=tpl --lifecycle-policy "file://$T/tpl-life.json" \
  --repository-policy "file://$T/tpl-policy.json" --encryption-configuration encryptionType=AES256
expect "prefix without its slash, appliedFor" "$(j -c '[.repositoryCreationTemplate.prefix, .repositoryCreationTemplate.appliedFor]')" \
  '["tpl",["CREATE_ON_PUSH","REPLICATION"]]'
ecr_err "the same prefix again" TemplateAlreadyExistsException create-repository-creation-template --prefix tpl --applied-for CREATE_ON_PUSH
ecr_err "an upper-case prefix" InvalidParameterException create-repository-creation-template --prefix Tpl --applied-for CREATE_ON_PUSH
ecr_err "a lifecycle policy that does not validate" InvalidParameterException create-repository-creation-template \
  --prefix tpl/bad --applied-for CREATE_ON_PUSH --lifecycle-policy '{"rules":[]}'
ecr_err "an unknown appliedFor" InvalidParameterException create-repository-creation-template --prefix tpl/bad --applied-for SOMETIMES
"${SK[@]}" copy -q --dest-tls-verify=false "dir:$T/amd64" "docker://$REG/tpl/app:v1" && ok "skopeo pushes tpl/app:v1 (create-on-push)" || bad "skopeo push tpl/app"
ecr_ok "describe-repositories tpl/app" describe-repositories --repository-names tpl/app
expect "tag mutability from the template" "$(j -c '.repositories[0] | [.imageTagMutability, .imageTagMutabilityExclusionFilters]')" \
  '["IMMUTABLE_WITH_EXCLUSION",[{"filterType":"WILDCARD","filter":"latest"}]]'
ecr_ok "get-lifecycle-policy tpl/app" get-lifecycle-policy --repository-name tpl/app
expect "lifecycle policy from the template (compact, as ECR answers)" "$(j -r .lifecyclePolicyText)" "$(jq -c . "$T/tpl-life.json")"
ecr_ok "get-repository-policy tpl/app" get-repository-policy --repository-name tpl/app
expect "repository policy from the template" "$(j -r .policyText | jq -cS .)" "$(jq -cS . "$T/tpl-policy.json")"
ecr_ok "list-tags-for-resource tpl/app" list-tags-for-resource --resource-arn arn:aws:ecr:us-east-1:000000000000:repository/tpl/app
expect "resource tags of the most specific template only" "$(j -c .tags)" '[{"Key":"team","Value":"tpl"}]'
"${SK[@]}" copy -q --dest-tls-verify=false "dir:$T/amd64" "docker://$REG/elsewhere/app:v1" && ok "skopeo pushes elsewhere/app:v1" || bad "skopeo push elsewhere/app"
ecr_ok "list-tags-for-resource elsewhere/app" list-tags-for-resource --resource-arn arn:aws:ecr:us-east-1:000000000000:repository/elsewhere/app
expect "ROOT's tags where no other template matches" "$(j -c .tags)" '[{"Key":"from","Value":"root"}]'
ecr_err "elsewhere/app has no lifecycle policy" LifecyclePolicyNotFoundException get-lifecycle-policy --repository-name elsewhere/app
ecr_ok "update-repository-creation-template tpl" update-repository-creation-template --prefix tpl --description renamed --applied-for REPLICATION
expect "updated members, the rest kept" "$(j -c '.repositoryCreationTemplate | [.description, .appliedFor, .imageTagMutability]')" \
  '["renamed",["REPLICATION"],"IMMUTABLE_WITH_EXCLUSION"]'
ecr_err "update of a missing template" TemplateNotFoundException update-repository-creation-template --prefix nothing --description x
"${SK[@]}" copy -q --dest-tls-verify=false "dir:$T/amd64" "docker://$REG/tpl/later:v1" && ok "skopeo pushes tpl/later:v1" || bad "skopeo push tpl/later"
ecr_ok "list-tags-for-resource tpl/later" list-tags-for-resource --resource-arn arn:aws:ecr:us-east-1:000000000000:repository/tpl/later
expect "tpl now serves replication only: ROOT applies to pushes" "$(j -c .tags)" '[{"Key":"from","Value":"root"}]'
ecr_ok "describe-repository-creation-templates" describe-repository-creation-templates
expect "both, by prefix" "$(j -c '[.repositoryCreationTemplates[].prefix]')" '["ROOT","tpl"]'
ecr_ok "describe-repository-creation-templates --prefixes tpl" describe-repository-creation-templates --prefixes tpl
expect "the one named" "$(j -r '.repositoryCreationTemplates[0].description')" renamed
ecr_ok "delete-repository-creation-template tpl" delete-repository-creation-template --prefix tpl
expect "answers the deleted template" "$(j -r .repositoryCreationTemplate.prefix)" tpl
ecr_ok "delete-repository-creation-template ROOT" delete-repository-creation-template --prefix ROOT
ecr_err "delete again" TemplateNotFoundException delete-repository-creation-template --prefix ROOT
ecr_ok "describe-repository-creation-templates (none left)" describe-repository-creation-templates
expect "no templates" "$(j -c .repositoryCreationTemplates)" '[]'
ecr_ok "tpl/app keeps its settings" describe-repositories --repository-names tpl/app
expect "still IMMUTABLE_WITH_EXCLUSION" "$(j -r '.repositories[0].imageTagMutability')" IMMUTABLE_WITH_EXCLUSION
for r in tpl/app tpl/later elsewhere/app; do ecr delete-repository --repository-name "$r" --force >/dev/null; done

section "--no-create-on-push: repositories come from create-repository"
stop_berth
start_berth "$T/strict" --no-auth --no-create-on-push
REG=$BERTH_ADDR
if "${SK[@]}" copy -q --dest-tls-verify=false "dir:$T/amd64" "docker://$REG/strict/app:v1" 2>"$T/err"; then
  bad "a push to an unknown repository must fail"
else
  grep -q 'NAME_UNKNOWN\|name unknown' "$T/err" && ok "push to an unknown repository fails with NAME_UNKNOWN" || bad "push error: $(head -c 300 "$T/err")"
fi
ecr_ok "create-repository strict/app" create-repository --repository-name strict/app
"${SK[@]}" copy -q --dest-tls-verify=false "dir:$T/amd64" "docker://$REG/strict/app:v1" && ok "then the push works" || bad "push after create-repository"
ecr_ok "describe-images" describe-images --repository-name strict/app
expect "the pushed image is listed" "$(j -c '[.imageDetails[].imageTags]')" '[["v1"]]'
ecr_err "initiate-layer-upload never creates a repository" RepositoryNotFoundException initiate-layer-upload --repository-name strict/other
# As on ECR: a CREATE_ON_PUSH creation template makes pushes under its prefix create repositories.
ecr_ok "create-repository-creation-template auto (CREATE_ON_PUSH)" create-repository-creation-template \
  --prefix auto --applied-for CREATE_ON_PUSH --image-tag-mutability IMMUTABLE
"${SK[@]}" copy -q --dest-tls-verify=false "dir:$T/amd64" "docker://$REG/auto/app:v1" && ok "a push under the template's prefix creates auto/app" || bad "push auto/app"
ecr_ok "describe-repositories auto/app" describe-repositories --repository-names auto/app
expect "with the template's settings" "$(j -r '.repositories[0].imageTagMutability')" IMMUTABLE
"${SK[@]}" copy -q --dest-tls-verify=false "dir:$T/amd64" "docker://$REG/autox/app:v1" 2>/dev/null && bad "autox/app is not under auto/" || ok "a name outside the prefix is still refused"

section "lifecycle policies: preview, expiry (--lifecycle-interval-secs 5), multi-arch kept whole; repository policies"
stop_berth
start_berth "$T/life" --no-auth --lifecycle-interval-secs 5
REG=$BERTH_ADDR
L=cli/life
ecr_ok "create-repository $L" create-repository --repository-name "$L"
life_push() {  # life_push NAME REF: a fresh amd64 image pushed by skopeo as $L:REF (or @digest); prints its digest
  bash "$MKIMG" --mkimg "$T/life-$1" amd64 oci "$nonce-$1" >"$T/life-$1.json"
  local ref=$2; [[ -n $ref ]] || ref=@$(jq -r .digest "$T/life-$1.json")
  [[ $ref == @* ]] || ref=:$ref
  "${SK[@]}" copy -q --dest-tls-verify=false --preserve-digests "dir:$T/life-$1" "docker://$REG/$L$ref" >&2
  jq -r .digest "$T/life-$1.json"
}
declare -A LD
for v in v1 v2 v3; do LD[$v]=$(life_push "$v" "$v"); done
for arch in amd64 arm64; do
  "${SK[@]}" copy -q --dest-tls-verify=false --preserve-digests "dir:$T/$arch" "docker://$REG/$L@$(jq -r .digest "$T/$arch.json")"
  LD[$arch]=$(jq -r .digest "$T/$arch.json")
done
ecr_ok "put-image of a multi-arch index" put-image --repository-name "$L" --image-tag multi --image-manifest "$idx"
LD[multi]=$(j .image.imageId.imageDigest)
for o in o1 o2; do LD[$o]=$(life_push "$o" ""); done
names_of() { local d n out=(); for d in "$@"; do for n in "${!LD[@]}"; do [[ ${LD[$n]} == "$d" ]] && out+=("$n"); done; done; printf '%s\n' "${out[@]}" | sort | paste -sd,; }
cat >"$T/lp.json" <<'EOF_LP'
{"rules": [
  {"rulePriority": 1, "description": "keep the newest v* image",
   "selection": {"tagStatus": "tagged", "tagPrefixList": ["v"], "countType": "imageCountMoreThan", "countNumber": 1},
   "action": {"type": "expire"}},
  {"rulePriority": 2, "description": "keep one untagged image that no index lists",
   "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1},
   "action": {"type": "expire"}}
]}
EOF_LP
ecr_err "get-lifecycle-policy without one" LifecyclePolicyNotFoundException get-lifecycle-policy --repository-name "$L"
ecr_err "delete-lifecycle-policy without one" LifecyclePolicyNotFoundException delete-lifecycle-policy --repository-name "$L"
ecr_err "get-lifecycle-policy-preview before any" LifecyclePolicyPreviewNotFoundException get-lifecycle-policy-preview --repository-name "$L"
ecr_err "start-lifecycle-policy-preview without text or policy" LifecyclePolicyNotFoundException start-lifecycle-policy-preview --repository-name "$L"
ecr_ok "start-lifecycle-policy-preview --lifecycle-policy-text" start-lifecycle-policy-preview --repository-name "$L" --lifecycle-policy-text "file://$T/lp.json"
expect "preview status: IN_PROGRESS as ECR answers a start" "$(j .status)" IN_PROGRESS
ecr wait lifecycle-policy-preview-complete --repository-name "$L" && ok "aws ecr wait lifecycle-policy-preview-complete" || bad "wait lifecycle-policy-preview-complete"
ecr_ok "get-lifecycle-policy-preview" get-lifecycle-policy-preview --repository-name "$L"
expect "preview expires v1 v2 by rule 1 and the older orphan by rule 2; the index and its untagged children stay" \
  "$(names_of $(j -r '.previewResults[].imageDigest'))" "o1,v1,v2"
expect "appliedRulePriority per image" "$(j -r '[.previewResults[] | (.imageTags // ["-"] | join("+")) + ":" + (.appliedRulePriority | tostring)] | sort | join(" ")')" "-:2 v1:1 v2:1"
expect "summary.expiringImageTotalCount" "$(j .summary.expiringImageTotalCount)" 3
expect "action EXPIRE" "$(j -r '[.previewResults[].action.type] | unique | join(",")')" EXPIRE
ecr_ok "get-lifecycle-policy-preview --page-size 1 (follows nextToken)" get-lifecycle-policy-preview --repository-name "$L" --page-size 1
expect "same 3 results over pages of 1" "$(j '.previewResults | length')" 3
ecr_ok "describe-images" describe-images --repository-name "$L"
expect "a preview deletes nothing" "$(j '.imageDetails | length')" 8
printf '{"rules":[{"rulePriority":1,"description":"tagged needs a prefix or pattern list here","selection":{"tagStatus":"tagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}' >"$T/bad-lp.json"
ecr_err "put-lifecycle-policy of an invalid policy" InvalidParameterException put-lifecycle-policy --repository-name "$L" --lifecycle-policy-text "file://$T/bad-lp.json"
grep -q "Lifecycle policy validation failure: .*requires tagPrefixList or tagPatternList" "$T/err" && ok "the message says why" || bad "message: $(cat "$T/err")"
ecr_ok "put-lifecycle-policy" put-lifecycle-policy --repository-name "$L" --lifecycle-policy-text "file://$T/lp.json"
ecr_ok "get-lifecycle-policy" get-lifecycle-policy --repository-name "$L"
expect "the text as put, compact as ECR answers it" "$(j -r .lifecyclePolicyText)" "$(jq -c . "$T/lp.json")"
survivors() { ecr describe-images --repository-name "$L" | jq -r '.imageDetails[].imageDigest'; }
for _ in $(seq 1 40); do [[ $(names_of $(survivors)) == "amd64,arm64,multi,o2,v3" ]] && break; sleep 1; done
expect "describe-images after the run: v1, v2, o1 expired; the index and both children kept" "$(names_of $(survivors))" "amd64,arm64,multi,o2,v3"
ecr_ok "get-lifecycle-policy" get-lifecycle-policy --repository-name "$L"
[[ $(j '.lastEvaluatedAt | floor') -gt $(( $(date +%s) - 120 )) ]] && ok "lastEvaluatedAt is recent" || bad "lastEvaluatedAt: $(j .lastEvaluatedAt)"
"${SK[@]}" copy -q --all --src-tls-verify=false "docker://$REG/$L:multi" "dir:$T/life-pulled" && ok "skopeo copy --all of the kept index works" || bad "skopeo copy --all $L:multi"
LD[v4]=$(life_push v4 v4)
for _ in $(seq 1 40); do [[ $(names_of $(survivors)) == "amd64,arm64,multi,o2,v4" ]] && break; sleep 1; done
expect "the next periodic run (no new put) expires v3 after v4 arrives" "$(names_of $(survivors))" "amd64,arm64,multi,o2,v4"
ecr_ok "delete-lifecycle-policy" delete-lifecycle-policy --repository-name "$L"
expect "returns the deleted text (compact)" "$(j -r .lifecyclePolicyText)" "$(jq -c . "$T/lp.json")"
ecr_err "get-lifecycle-policy after the delete" LifecyclePolicyNotFoundException get-lifecycle-policy --repository-name "$L"
ecr_err "put-lifecycle-policy to a missing repository" RepositoryNotFoundException put-lifecycle-policy --repository-name cli/none --lifecycle-policy-text "file://$T/lp.json"

section "lifecycle transitions to the archive: preview, run, layers ARCHIVED, restore by push"
LD[v5]=$(life_push v5 v5)
cat >"$T/lp-archive.json" <<'EOF_LP'
{"rules": [
  {"rulePriority": 1, "description": "archive every v* image but the newest",
   "selection": {"tagStatus": "tagged", "tagPatternList": ["v*"], "countType": "imageCountMoreThan", "countNumber": 1},
   "action": {"type": "transition", "targetStorageClass": "archive"}},
  {"rulePriority": 2, "description": "archive what nobody pulled for a year",
   "selection": {"tagStatus": "any", "countType": "sinceImagePulled", "countUnit": "days", "countNumber": 365},
   "action": {"type": "transition", "targetStorageClass": "archive"}},
  {"rulePriority": 3, "description": "delete what sat in the archive for 90 days",
   "selection": {"tagStatus": "any", "storageClass": "archive", "countType": "sinceImageTransitioned", "countUnit": "days", "countNumber": 90},
   "action": {"type": "expire"}}
]}
EOF_LP
printf '{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"sinceImagePulled","countUnit":"days","countNumber":30},"action":{"type":"expire"}}]}' >"$T/bad-lp.json"
ecr_err "sinceImagePulled with expire is refused" InvalidParameterException put-lifecycle-policy --repository-name "$L" --lifecycle-policy-text "file://$T/bad-lp.json"
grep -q "sinceImagePulled' is only allowed with the action 'transition'" "$T/err" && ok "... and says why" || bad "message: $(cat "$T/err")"
printf '{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":30},"action":{"type":"expire"}}]}' >"$T/bad-lp.json"
ecr_err "expiring archived images before 90 days is refused" InvalidParameterException put-lifecycle-policy --repository-name "$L" --lifecycle-policy-text "file://$T/bad-lp.json"
ecr_ok "start-lifecycle-policy-preview of the archive policy" start-lifecycle-policy-preview --repository-name "$L" --lifecycle-policy-text "file://$T/lp-archive.json"
ecr_ok "get-lifecycle-policy-preview" get-lifecycle-policy-preview --repository-name "$L"
expect "v4 moves: TRANSITION to ARCHIVE from STANDARD by rule 1" \
  "$(j -r '[.previewResults[] | (.imageTags | join("+")) + " " + .action.type + " " + .action.targetStorageClass + " " + .storageClass + " " + (.appliedRulePriority | tostring)] | join(";")')" \
  "v4 TRANSITION ARCHIVE STANDARD 1"
expect "summary: nothing expires, one image transitions to ARCHIVE" \
  "$(j -c '[.summary.expiringImageTotalCount, .summary.transitioningImageTotalCounts]')" '[0,[{"targetStorageClass":"ARCHIVE","imageTotalCount":1}]]'
ecr_ok "put-lifecycle-policy (archive policy)" put-lifecycle-policy --repository-name "$L" --lifecycle-policy-text "file://$T/lp-archive.json"
archived_now() { ecr describe-images --repository-name "$L" --filter imageStatus=ARCHIVED | jq -r '.imageDetails[].imageDigest'; }
for _ in $(seq 1 40); do [[ $(names_of $(archived_now)) == v4 ]] && break; sleep 1; done
expect "the run archives v4 only" "$(names_of $(archived_now))" v4
ecr_ok "describe-images of v4" describe-images --repository-name "$L" --image-ids imageTag=v4 --filter imageStatus=ANY
expect "ARCHIVED with lastArchivedAt" "$(j '.imageDetails[0] | .imageStatus + " " + (.lastArchivedAt != null | tostring)')" "ARCHIVED true"
V4_LAYER=$(jq -r .layer_digest "$T/life-v4.json"); V5_LAYER=$(jq -r .layer_digest "$T/life-v5.json")
ecr_ok "batch-check-layer-availability of v4's and v5's layers" batch-check-layer-availability --repository-name "$L" --layer-digests "$V4_LAYER" "$V5_LAYER"
expect "v4's layer ARCHIVED, v5's AVAILABLE" "$(j -r --arg a "$V4_LAYER" '[.layers[] | (if .layerDigest == $a then "v4" else "v5" end) + "=" + .layerAvailability] | sort | join(" ")')" "v4=ARCHIVED v5=AVAILABLE"
expect "each with the media type its image's manifest gives it" "$(j -r '[.layers[].mediaType | test("^application/vnd\\.")] | all')" true
expect "/v2/ GET of v4's layer: 404" "$(curl -s -o "$T/out.json" -w '%{http_code}' "http://$REG/v2/$L/blobs/$V4_LAYER")" 404
expect "... BLOB_UNKNOWN saying archived" "$(j -r '.errors[0].code + " " + (.errors[0].message | test("archived") | tostring)')" "BLOB_UNKNOWN true"
ecr_err "get-download-url-for-layer of v4's layer" LayerInaccessibleException get-download-url-for-layer --repository-name "$L" --layer-digest "$V4_LAYER"
ecr_ok "delete-lifecycle-policy (archive policy), so no run archives v4 again" delete-lifecycle-policy --repository-name "$L"
"${SK[@]}" copy -q --dest-tls-verify=false --preserve-digests "dir:$T/life-v4" "docker://$REG/$L:v4" \
  && ok "skopeo pushes v4 again" || bad "skopeo push of v4 again"
ecr_ok "describe-images of v4 after the push" describe-images --repository-name "$L" --image-ids imageTag=v4
expect "pushing an archived image restores it" "$(j '.imageDetails[0].imageStatus')" ACTIVE
expect "... and its layer pulls again" "$(curl -s -o /dev/null -w '%{http_code}' "http://$REG/v2/$L/blobs/$V4_LAYER")" 200

# The policy names user ci: a policy naming no existing user is refused (ECR: "Principal not found").
"$BERTH_BIN" user add ci --policy AmazonEC2ContainerRegistryFullAccess --data-dir "$T/life" >/dev/null
cat >"$T/policy.json" <<'EOF_POLICY'
{"Version": "2012-10-17", "Statement": [{"Sid": "ci-pull", "Effect": "Allow",
  "Principal": {"AWS": ["arn:aws:iam::000000000000:user/ci"]}, "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]}]}
EOF_POLICY
ecr_err "get-repository-policy without one" RepositoryPolicyNotFoundException get-repository-policy --repository-name "$L"
ecr_err "delete-repository-policy without one" RepositoryPolicyNotFoundException delete-repository-policy --repository-name "$L"
ecr_ok "set-repository-policy" set-repository-policy --repository-name "$L" --policy-text "file://$T/policy.json"
expect "echoed policy" "$(j -r .policyText | jq -cS .)" "$(jq -cS . "$T/policy.json")"
ecr_ok "get-repository-policy" get-repository-policy --repository-name "$L"
expect "the policy as set" "$(j -r .policyText | jq -cS .)" "$(jq -cS . "$T/policy.json")"
ecr_err "set-repository-policy of invalid JSON" InvalidParameterException set-repository-policy --repository-name "$L" --policy-text '{"Statement": ['
grep -q "Invalid repository policy provided: the policy is not valid JSON" "$T/err" && ok "the message says why" || bad "message: $(cat "$T/err")"
ecr_ok "set-repository-policy --force" set-repository-policy --repository-name "$L" --force \
  --policy-text '{"Statement": {"Effect": "Deny", "Principal": "*", "Action": "ecr:DeleteRepository"}}'
ecr_ok "delete-repository-policy" delete-repository-policy --repository-name "$L"
# ECR answers a policy re-serialized by Jackson's pretty printer, as AWS's examples show.
expect "returns the deleted policy, laid out as ECR does" "$(j -r .policyText)" "$(printf '%s\n' '{' \
  '  "Statement" : {' '    "Effect" : "Deny",' '    "Principal" : "*",' '    "Action" : "ecr:DeleteRepository"' '  }' '}')"
ecr_err "get-repository-policy after the delete" RepositoryPolicyNotFoundException get-repository-policy --repository-name "$L"

section "with authentication: get-login-password, SigV4 and the shared multi-arch flow"
stop_berth
export BERTH_ROOT_ACCESS_KEY_ID=AKIABERTHECRCLI${nonce:0:4} BERTH_ROOT_SECRET_ACCESS_KEY=ecr-cli-secret/$nonce
start_berth "$T/auth"
REG=$BERTH_ADDR
export AWS_ACCESS_KEY_ID=$BERTH_ROOT_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$BERTH_ROOT_SECRET_ACCESS_KEY
pw=$(ecr get-login-password)
expect "curl -u AWS:<get-login-password> gets /v2/" "$(curl -s -o /dev/null -w '%{http_code}' -u "AWS:$pw" "http://$REG/v2/")" 200
expect "without credentials /v2/ is 401" "$(curl -s -o /dev/null -w '%{http_code}' "http://$REG/v2/")" 401
expect "a wrong password is 401" "$(curl -s -o /dev/null -w '%{http_code}' -u "AWS:${pw}x" "http://$REG/v2/")" 401
AWS_SECRET_ACCESS_KEY=wrong-secret ecr_err "a wrong secret key" InvalidSignatureException describe-repositories
AWS_ACCESS_KEY_ID=AKIANOBODY0000000000 ecr_err "an unknown access key" UnrecognizedClientException describe-repositories
if ECR_ENDPOINT="http://$REG" bash "$SHARED/e2e/multiarch-flow.sh" "$REG" >"$T/flow.log" 2>&1; then
  ok "multiarch-flow.sh with ECR_ENDPOINT: $(tail -1 "$T/flow.log")"
else
  bad "multiarch-flow.sh with ECR_ENDPOINT"; grep -E '^FAIL' "$T/flow.log" | sed 's/^/    /'; tail -3 "$T/flow.log"
fi
grep -E '^PASS:.*(ecr|ECR)' "$T/flow.log" | sed 's/^/    /'


section "a repository policy's explicit Deny refuses one user's pushes on /v2/ (skopeo) and the ECR API"
G=cli/guarded
ci=$("$BERTH_BIN" user add ci --policy AmazonEC2ContainerRegistryFullAccess --data-dir "$T/auth")
CI_ID=$(jq -r .accessKeyId <<<"$ci") CI_SECRET=$(jq -r .secretAccessKey <<<"$ci")
for _ in $(seq 1 50); do [[ $(curl -s -o /dev/null -w '%{http_code}' -u "$CI_ID:$CI_SECRET" "http://$REG/v2/") == 200 ]] && break; sleep 0.1; done
ROOT_CREDS="$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY"
"${SK[@]}" copy -q --dest-tls-verify=false --dest-creds "$ROOT_CREDS" "dir:$T/amd64" "docker://$REG/$G:v1" \
  && ok "root pushes $G:v1" || bad "root push of $G:v1"
cat >"$T/deny-ci.json" <<'EOF_POLICY'
{"Version": "2012-10-17", "Statement": [{"Sid": "NoPushForCi", "Effect": "Deny",
  "Principal": {"AWS": "arn:aws:iam::000000000000:user/ci"},
  "Action": ["ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload"]}]}
EOF_POLICY
ecr_ok "set-repository-policy denying ci's pushes" set-repository-policy --repository-name "$G" --policy-text "file://$T/deny-ci.json"
if "${SK[@]}" copy -q --dest-tls-verify=false --dest-creds "$CI_ID:$CI_SECRET" "dir:$T/arm64" "docker://$REG/$G:ci" 2>"$T/err"; then
  bad "skopeo push by ci must be refused"
else
  grep -qi "denied" "$T/err" && ok "skopeo push by ci is refused (denied)" || bad "skopeo push by ci failed otherwise: $(head -c 300 "$T/err")"
fi
AWS_ACCESS_KEY_ID=$CI_ID AWS_SECRET_ACCESS_KEY=$CI_SECRET ecr_err "put-image by ci" AccessDeniedException \
  put-image --repository-name "$G" --image-tag ci --image-manifest "file://$T/amd64/manifest.json"
grep -q "User: arn:aws:iam::000000000000:user/ci is not authorized to perform: ecr:PutImage on resource: arn:aws:ecr:us-east-1:000000000000:repository/$G with an explicit deny" "$T/err" \
  && ok "the message names user, action and repository as AWS does" || bad "message: $(cat "$T/err")"
"${SK[@]}" copy -q --src-tls-verify=false --src-creds "$CI_ID:$CI_SECRET" "docker://$REG/$G:v1" "dir:$T/ci-pulled" \
  && ok "ci still pulls $G:v1" || bad "skopeo pull by ci"
"${SK[@]}" copy -q --dest-tls-verify=false --dest-creds "$ROOT_CREDS" "dir:$T/arm64" "docker://$REG/$G:root" \
  && ok "root, not named by the policy, still pushes" || bad "root push under ci's deny"
ecr_ok "delete-repository-policy" delete-repository-policy --repository-name "$G"
"${SK[@]}" copy -q --dest-tls-verify=false --dest-creds "$CI_ID:$CI_SECRET" "dir:$T/arm64" "docker://$REG/$G:ci" \
  && ok "without the policy ci pushes again" || bad "skopeo push by ci after the policy was deleted"

section "pull-time update exclusions: ci's pulls leave lastRecordedPullTime alone"
P=cli/pulltime
"${SK[@]}" copy -q --dest-tls-verify=false --dest-creds "$ROOT_CREDS" "dir:$T/amd64" "docker://$REG/$P:v1" \
  && ok "root pushes $P:v1" || bad "root push of $P:v1"
CI_ARN=arn:aws:iam::000000000000:user/ci
ecr_ok "register-pull-time-update-exclusion ci" register-pull-time-update-exclusion --principal-arn "$CI_ARN"
expect "principalArn echoed with createdAt" "$(j -r '.principalArn + " " + (.createdAt | type)')" "$CI_ARN number"
ecr_err "register it again" ExclusionAlreadyExistsException register-pull-time-update-exclusion --principal-arn "$CI_ARN"
ecr_err "the root is no user or role" InvalidParameterException register-pull-time-update-exclusion --principal-arn arn:aws:iam::000000000000:root
ecr_ok "list-pull-time-update-exclusions" list-pull-time-update-exclusions
expect "ci listed" "$(j -c .pullTimeUpdateExclusions)" "[\"$CI_ARN\"]"
"${SK[@]}" copy -q --src-tls-verify=false --src-creds "$CI_ID:$CI_SECRET" "docker://$REG/$P:v1" "dir:$T/pt1" \
  && ok "ci pulls $P:v1" || bad "skopeo pull by ci"
ecr_ok "describe-images $P" describe-images --repository-name "$P"
expect "no lastRecordedPullTime after ci's pull" "$(j -r '.imageDetails[0].lastRecordedPullTime // "none"')" none
ecr_ok "deregister-pull-time-update-exclusion ci" deregister-pull-time-update-exclusion --principal-arn "$CI_ARN"
ecr_err "deregister again" ExclusionNotFoundException deregister-pull-time-update-exclusion --principal-arn "$CI_ARN"
"${SK[@]}" copy -q --src-tls-verify=false --src-creds "$CI_ID:$CI_SECRET" "docker://$REG/$P:v1" "dir:$T/pt2" \
  && ok "ci pulls $P:v1 again" || bad "skopeo pull by ci"
ecr_ok "describe-images $P" describe-images --repository-name "$P"
[[ $(j -r '.imageDetails[0].lastRecordedPullTime | type') == number ]] && ok "ci's pull is recorded once the exclusion is gone" \
  || bad "lastRecordedPullTime: $(j -c '.imageDetails[0]')"

summary ecr-cli
