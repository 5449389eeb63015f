#!/usr/bin/env bash
# HTTPS with the certificate `berth serve --tls-self-signed` generates, auth on: skopeo pushes and
# pulls a multi-arch image trusting it through --cert-dir (with --*-tls-verify=true), curl through
# --cacert, the aws CLI through AWS_CA_BUNDLE (ECR calls and get-login-password, whose password
# then pulls with skopeo). The docker CLI is not here: it always speaks plain HTTP to loopback
# registries, so multiarch-flow.sh covers it.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${BERTH_SHARED_DIR:-$ROOT/../shared}
source "$ROOT/scripts/lib.sh"
python3 -c 'import awscli' 2>/dev/null || pip install -q awscli
T=$(mktemp -d); trap 'stop_berth; rm -rf "$T"' EXIT
source "$ROOT/tests/clients/lib/common.bash"
MKIMG="$SHARED/e2e/multiarch-flow.sh"
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

export BERTH_ROOT_ACCESS_KEY_ID=AKIATLSCLIENTS000001 BERTH_ROOT_SECRET_ACCESS_KEY=tls-clients-secret-0123456789abcdefghij
# On loopback one port serves TLS and plain HTTP; every client below is told to use HTTPS.
start_berth "$T/data" --tls-self-signed
REG=$BERTH_ADDR
CERT=$T/data/tls/cert.pem
mkdir -p "$T/certs" "$T/no-certs"
cp "$CERT" "$T/certs/ca.crt" # --cert-dir takes CA certificates as *.crt
TOKEN=$("$BERTH_BIN" token --data-dir "$T/data")
SK=(skopeo --insecure-policy)
PUSH=(--dest-cert-dir "$T/certs" --dest-tls-verify=true --dest-creds "AWS:$TOKEN")
PULL=(--src-cert-dir "$T/certs" --src-tls-verify=true --src-creds "AWS:$TOKEN")
nonce=$RANDOM$RANDOM
if [[ -s $CERT ]]; then ok "self-signed certificate written to $CERT"; else bad "no certificate at $CERT"; fi

section "curl --cacert"
https_code() { curl -s --noproxy '*' -o "$T/body" -D "$T/headers" -w '%{http_code}' --cacert "$CERT" "$@" || true; }
expect "GET /v2/ without credentials -> 401" "$(https_code "https://$REG/v2/")" 401
expect "401 carries the Basic challenge" "$(header "$T/headers" www-authenticate)" 'Basic realm="Berth"'
expect "401 body is UNAUTHORIZED" "$(jq -r '.errors[0].code' "$T/body")" UNAUTHORIZED
expect "GET /v2/ with the token -> 200" "$(https_code -u "AWS:$TOKEN" "https://$REG/v2/")" 200
expect "GET https://localhost:PORT/v2/ -> 200 (certificate names localhost)" \
  "$(https_code -u "AWS:$TOKEN" "https://localhost:${REG##*:}/v2/")" 200
rc=0; curl -s --noproxy '*' -o /dev/null "https://$REG/v2/" || rc=$?
expect "curl without --cacert rejects the certificate (exit 60)" "$rc" 60

section "skopeo over HTTPS with --cert-dir"
bash "$MKIMG" --mkimg "$T/amd64" amd64 oci "$nonce" >"$T/amd64.json"
bash "$MKIMG" --mkimg "$T/arm64" arm64 oci "$nonce" v8 >"$T/arm64.json"
for a in amd64 arm64; do
  check "push $a image (dest-tls-verify=true, AWS token)" \
    "${SK[@]}" copy "${PUSH[@]}" --preserve-digests "dir:$T/$a" "docker://$REG/tls/src:$a"
done
if "${SK[@]}" copy --dest-cert-dir "$T/no-certs" --dest-tls-verify=true --dest-creds "AWS:$TOKEN" \
  "dir:$T/amd64" "docker://$REG/tls/untrusted:amd64" >"$T/untrusted.log" 2>&1; then
  bad "push without the certificate in --cert-dir must fail"
elif grep -qi "certificate" "$T/untrusted.log"; then ok "push without the certificate fails verification"
else bad "push without the certificate failed for another reason: $(tail -c 300 "$T/untrusted.log")"; fi
if "${SK[@]}" copy --dest-cert-dir "$T/certs" --dest-tls-verify=true "dir:$T/amd64" \
  "docker://$REG/tls/anonymous:amd64" >"$T/anon.log" 2>&1; then
  bad "push without credentials must fail"
elif grep -qi "unauthorized\|authentication required" "$T/anon.log"; then ok "push without credentials is refused"
else bad "push without credentials failed for another reason: $(tail -c 300 "$T/anon.log")"; fi

# The index over both images, PUT with curl over HTTPS.
jq -n --slurpfile a "$T/amd64.json" --slurpfile b "$T/arm64.json" '{schemaVersion:2, mediaType:"application/vnd.oci.image.index.v1+json",
  manifests:[{mediaType:$a[0].media_type, digest:$a[0].digest, size:$a[0].size, platform:{architecture:"amd64", os:"linux"}},
             {mediaType:$b[0].media_type, digest:$b[0].digest, size:$b[0].size, platform:{architecture:"arm64", os:"linux", variant:"v8"}}]}' \
  | tr -d '\n' >"$T/index.json"
IDX_DIG=$(sha256_of "$T/index.json")
expect "PUT index over HTTPS -> 201" "$(https_code -u "AWS:$TOKEN" -X PUT \
  -H 'Content-Type: application/vnd.oci.image.index.v1+json' --data-binary @"$T/index.json" \
  "https://$REG/v2/tls/src/manifests/multi")" 201

# Pull the whole multi-arch image to a local OCI layout, then push it from there as a new image.
check "pull multi-arch image (copy --all, src-tls-verify=true) to an OCI layout" \
  "${SK[@]}" copy --all "${PULL[@]}" "docker://$REG/tls/src:multi" "oci:$T/layout:multi"
expect "the layout holds the index and both platforms" "$(ls "$T/layout/blobs/sha256" | wc -l)" 7
check "push multi-arch image (copy --all, dest-tls-verify=true) from the layout" \
  "${SK[@]}" copy --all --preserve-digests "${PUSH[@]}" "oci:$T/layout:multi" "docker://$REG/tls/pushed:multi"
"${SK[@]}" inspect --raw --cert-dir "$T/certs" --tls-verify=true --creds "AWS:$TOKEN" \
  "docker://$REG/tls/pushed:multi" >"$T/pushed-index.json" 2>"$T/inspect.err" || true
expect "pushed index is byte-identical (skopeo inspect --raw over HTTPS)" "$(sha256_of "$T/pushed-index.json")" "$IDX_DIG"
expect "curl GET of the pushed index over HTTPS -> 200" "$(https_code -u "AWS:$TOKEN" \
  -H 'Accept: application/vnd.oci.image.index.v1+json' "https://$REG/v2/tls/pushed/manifests/multi")" 200
expect "curl sees the same bytes" "$(sha256_of "$T/body")" "$IDX_DIG"

# Per-platform pulls of the pushed image, each verified down to the layer.
for spec in "amd64::amd64" "arm64:v8:arm64"; do
  IFS=: read -r arch variant want <<<"$spec"
  ov=(--override-arch "$arch" --override-os linux); [[ -n $variant ]] && ov+=(--override-variant "$variant")
  if check "pull $arch from the multi-arch image over HTTPS" \
    "${SK[@]}" "${ov[@]}" copy "${PULL[@]}" "docker://$REG/tls/pushed:multi" "dir:$T/pull-$arch"; then
    expect "$arch pull got the $arch manifest" "$(sha256_of "$T/pull-$arch/manifest.json")" "$(jq -r .digest "$T/$want.json")"
    layer=$(jq -r .layer_digest "$T/$want.json" | cut -c8-)
    expect "$arch layer verifies" "$(sha256_of "$T/pull-$arch/$layer")" "sha256:$layer"
  fi
done

section "aws CLI with AWS_CA_BUNDLE"
export AWS_ACCESS_KEY_ID=$BERTH_ROOT_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$BERTH_ROOT_SECRET_ACCESS_KEY \
  AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
ecr() { AWS_CA_BUNDLE=$CERT aws --endpoint-url "https://$REG" --output json ecr "$@"; }
if ecr describe-repositories >"$T/repos.json" 2>"$T/aws.err"; then
  expect "describe-repositories over HTTPS lists the pushed repositories" \
    "$(jq -c '[.repositories[].repositoryName | select(startswith("tls/"))] | sort' "$T/repos.json")" '["tls/pushed","tls/src"]'
else bad "describe-repositories over HTTPS: $(tail -c 300 "$T/aws.err")"; fi
if ecr describe-images --repository-name tls/pushed >"$T/images.json" 2>"$T/aws.err"; then
  expect "describe-images shows the index digest" \
    "$(jq -r --arg d "$IDX_DIG" '[.imageDetails[] | select(.imageDigest == $d) | .imageTags[]] | join(",")' "$T/images.json")" multi
else bad "describe-images over HTTPS: $(tail -c 300 "$T/aws.err")"; fi
rc=0; aws --endpoint-url "https://$REG" ecr describe-repositories >/dev/null 2>"$T/aws.err" || rc=$?
if [[ $rc -ne 0 ]] && grep -qi "ssl\|certificate" "$T/aws.err"; then ok "aws without AWS_CA_BUNDLE rejects the certificate"
else bad "aws without AWS_CA_BUNDLE (exit $rc): $(tail -c 300 "$T/aws.err")"; fi
PW=$(ecr get-login-password 2>"$T/aws.err") || true
if [[ -n $PW ]]; then
  ok "get-login-password over HTTPS"
  rm -rf "$T/pull-ecr"
  if check "skopeo pulls arm64 over HTTPS with the get-login-password password" \
    "${SK[@]}" --override-arch arm64 --override-variant v8 --override-os linux copy \
    --src-cert-dir "$T/certs" --src-tls-verify=true --src-creds "AWS:$PW" "docker://$REG/tls/pushed:multi" "dir:$T/pull-ecr"; then
    expect "the password's pull got the arm64 manifest" "$(sha256_of "$T/pull-ecr/manifest.json")" "$(jq -r .digest "$T/arm64.json")"
  fi
  expect "curl with the password -> 200" "$(https_code -u "AWS:$PW" "https://$REG/v2/")" 200
else bad "get-login-password over HTTPS: $(tail -c 300 "$T/aws.err")"; fi

summary tls
