#!/usr/bin/env bash
# Pull-through cache rules with the real `aws ecr` CLI, against real upstreams on loopback: Debian's
# docker-registry with htpasswd (Basic auth) and without auth. Credentials go in with
# `berth secret put`; ValidatePullThroughCacheRule asks the upstream and says why it refused.
#
# Then pulls through the cache (the data plane) with skopeo, the docker CLI, podman and containerd:
# a multi-arch index served whole with each platform filled when pulled, Basic auth upstream, a
# moved tag followed after the (shortened) re-check interval, 20 concurrent pulls of a cold 64 MiB
# layer fetched once (counted in the upstream's access log), the upstream stopped (cached pulls
# work, uncached ones fail saying why), pushes into the cache refused, `berth cache status`.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${BERTH_SHARED_DIR:-$ROOT/../shared}
source "$ROOT/scripts/lib.sh"
python3 -c 'import awscli' 2>/dev/null || pip install -q awscli
T=$(mktemp -d)
UPSTREAM_PIDS=()
CTRD_PID=
trap 'stop_berth; for p in "${UPSTREAM_PIDS[@]}" $CTRD_PID; do kill "$p" 2>/dev/null || true; done; rm -rf "$T"' EXIT
source "$ROOT/tests/clients/lib/common.bash"

# start_upstream NAME [USER PASSWORD]: docker-registry on a free loopback port; sets UPSTREAM.
# Its log has one access line per request ("GET /v2/... HTTP/1.1"): $T/NAME/log.
start_upstream() {
  local dir=$T/$1 port auth=""
  mkdir -p "$dir"
  port=$(free_port)
  if [[ $# -eq 3 ]]; then
    htpasswd -Bbn "$2" "$3" >"$dir/htpasswd"
    auth=$'auth:\n  htpasswd:\n    realm: berth-test\n    path: '"$dir/htpasswd"
  fi
  cat >"$dir/config.yml" <<YAML
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: 127.0.0.1:$port
$auth
YAML
  docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  UPSTREAM_PIDS+=($!)
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/v2/" && break; sleep 0.1; done
  UPSTREAM=http://127.0.0.1:$port
}

if ! have docker-registry || ! have htpasswd; then
  skip "docker-registry or htpasswd not installed"; summary pull-through; exit 0
fi
start_upstream private alice s3cret-pw
PRIVATE=$UPSTREAM
start_upstream public
PUBLIC=$UPSTREAM

# Cached tags are checked upstream after 10 s instead of ECR's 24 h (room for a skopeo copy and
# inspect within it on a busy machine).
start_berth "$T/data" --no-auth --cache-tag-recheck-secs 10
REG=$BERTH_ADDR
# aws CLI v1 would otherwise fetch a parameter that is an http(s) URL and send its content.
printf '[default]\ncli_follow_urlparam = false\n' >"$T/aws-config"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 \
  AWS_CONFIG_FILE=$T/aws-config AWS_SHARED_CREDENTIALS_FILE=/dev/null
ecr() { aws --endpoint-url "http://$REG" --output json ecr "$@"; }
ecr_ok() {
  local desc=$1; shift
  if ecr "$@" >"$T/out.json" 2>"$T/err"; then ok "$desc"; else bad "$desc"; sed 's/^/    | /' "$T/err"; fi
}
ecr_err() {
  local desc=$1 want=$2; shift 2
  local rc=0; ecr "$@" >"$T/out.json" 2>"$T/err" || rc=$?
  if [[ $rc -eq 255 ]] && grep -q "An error occurred ($want)" "$T/err"; then ok "$desc -> $want"
  else bad "$desc -> $want (exit $rc: $(head -c 300 "$T/err"))"; fi
}
j() { jq -r "$@" "$T/out.json"; }
secret_put() { printf '%s\n' "$3" | "$BERTH_BIN" secret put "$1" --username "$2" --password-stdin --data-dir "$T/data"; }

section "berth secret put"
ARN=$(secret_put private alice s3cret-pw)
expect "prints the secretsmanager ARN" "$ARN" "arn:aws:secretsmanager:us-east-1:000000000000:secret:ecr-pullthroughcache/private"
WRONG=$(secret_put wrong alice not-the-password)
rc=0; printf '' | "$BERTH_BIN" secret put empty --username a --password-stdin --data-dir "$T/data" 2>"$T/err" || rc=$?
[[ $rc -ne 0 ]] && grep -q "empty" "$T/err" && ok "an empty password is refused" || bad "empty password (exit $rc)"
rc=0; echo pw | "$BERTH_BIN" secret put 'bad name' --username a --password-stdin --data-dir "$T/data" 2>"$T/err" || rc=$?
[[ $rc -ne 0 ]] && grep -q "invalid secret name" "$T/err" && ok "a name outside Secrets Manager's characters is refused" \
  || bad "bad name (exit $rc)"
if grep -qa s3cret-pw "$T/data/metadata.db"* 2>/dev/null; then bad "the password is in the database in plaintext"
else ok "the password is not stored in plaintext"; fi

section "CreatePullThroughCacheRule"
ecr_ok "create (private upstream, Basic auth)" create-pull-through-cache-rule --ecr-repository-prefix private \
  --upstream-registry-url "$PRIVATE" --credential-arn "$ARN"
expect "ecrRepositoryPrefix" "$(j .ecrRepositoryPrefix)" private
expect "upstreamRegistryUrl as given" "$(j .upstreamRegistryUrl)" "$PRIVATE"
expect "credentialArn" "$(j .credentialArn)" "$ARN"
expect "upstreamRepositoryPrefix defaults to ROOT" "$(j .upstreamRepositoryPrefix)" ROOT
expect "registryId" "$(j .registryId)" 000000000000
[[ $(j '.createdAt | floor') -gt 0 ]] && ok "createdAt" || bad "createdAt $(j .createdAt)"
ecr_err "the same prefix again" PullThroughCacheRuleAlreadyExistsException create-pull-through-cache-rule \
  --ecr-repository-prefix private/ --upstream-registry-url "$PUBLIC"
ecr_ok "create (public upstream, anonymous, ROOT of an upstream prefix)" create-pull-through-cache-rule \
  --ecr-repository-prefix public --upstream-registry-url "$PUBLIC" --upstream-repository-prefix library
expect "upstreamRepositoryPrefix" "$(j .upstreamRepositoryPrefix)" library
ecr_ok "create with ROOT" create-pull-through-cache-rule --ecr-repository-prefix ROOT --upstream-registry-url "$PUBLIC"
ecr_err "a secret that was never put" SecretNotFoundException create-pull-through-cache-rule \
  --ecr-repository-prefix nosecret --upstream-registry-url "$PRIVATE" \
  --credential-arn "arn:aws:secretsmanager:us-east-1:000000000000:secret:ecr-pullthroughcache/never-put"
ecr_err "a secret of another account" UnableToAccessSecretException create-pull-through-cache-rule \
  --ecr-repository-prefix other --upstream-registry-url "$PRIVATE" \
  --credential-arn "arn:aws:secretsmanager:us-east-1:111111111111:secret:ecr-pullthroughcache/private"
ecr_err "a credentialArn outside ECR's pattern" InvalidParameterException create-pull-through-cache-rule \
  --ecr-repository-prefix other --upstream-registry-url "$PRIVATE" \
  --credential-arn "arn:aws:secretsmanager:us-east-1:000000000000:secret:someone-elses/secret-name"
ecr_err "plain http to a non-loopback host" UnsupportedUpstreamRegistryException create-pull-through-cache-rule \
  --ecr-repository-prefix remote --upstream-registry-url http://registry.example.com
ecr_err "a prefix that is no repository name" InvalidParameterException create-pull-through-cache-rule \
  --ecr-repository-prefix Upper --upstream-registry-url "$PUBLIC"
ecr_err "an upstreamRegistry outside the model" InvalidParameterException create-pull-through-cache-rule \
  --ecr-repository-prefix other --upstream-registry-url "$PUBLIC" --upstream-registry dockerhub
ecr_err "a customRoleArn of another account" InvalidParameterException create-pull-through-cache-rule \
  --ecr-repository-prefix other --upstream-registry-url "$PUBLIC" --custom-role-arn arn:aws:iam::111111111111:role/x

section "DescribePullThroughCacheRules"
ecr_ok "describe all" describe-pull-through-cache-rules
expect "three rules, sorted" "$(j '[.pullThroughCacheRules[].ecrRepositoryPrefix] | join(",")')" "ROOT,private,public"
ecr_ok "describe by prefix (trailing slash)" describe-pull-through-cache-rules --ecr-repository-prefixes private/
expect "the named rule" "$(j '.pullThroughCacheRules[0].upstreamRegistryUrl')" "$PRIVATE"
ecr_err "describe a missing prefix" PullThroughCacheRuleNotFoundException describe-pull-through-cache-rules \
  --ecr-repository-prefixes missing
ecr_ok "describe one per page" describe-pull-through-cache-rules --max-items 1
expect "page through with the CLI's paginator" "$(j '.pullThroughCacheRules | length')" 1
[[ $(j .NextToken) != null ]] && ok "a next token" || bad "no next token"
ecr_ok "named prefixes, one per page" describe-pull-through-cache-rules --ecr-repository-prefixes public private \
  --page-size 1
expect "every page's rules, in order" "$(j '[.pullThroughCacheRules[].ecrRepositoryPrefix] | join(",")')" "private,public"
ecr_err "update: a customRoleArn of another account" InvalidParameterException update-pull-through-cache-rule \
  --ecr-repository-prefix private --custom-role-arn arn:aws:iam::111111111111:role/x

section "ValidatePullThroughCacheRule"
ecr_ok "validate the private rule" validate-pull-through-cache-rule --ecr-repository-prefix private
expect "isValid with the right password" "$(j .isValid)" true
ecr_ok "validate the anonymous public rule" validate-pull-through-cache-rule --ecr-repository-prefix public
expect "isValid anonymous" "$(j .isValid)" true
ecr_ok "update: the wrong password" update-pull-through-cache-rule --ecr-repository-prefix private --credential-arn "$WRONG"
expect "update answers the new credentialArn" "$(j .credentialArn)" "$WRONG"
ecr_ok "validate with the wrong password" validate-pull-through-cache-rule --ecr-repository-prefix private
expect "not valid" "$(j .isValid)" false
j .failure | grep -q "authentication failed" && ok "failure says why: $(j .failure)" || bad "failure: $(j .failure)"
j .failure | grep -q "not-the-password" && bad "the failure leaks the password" || ok "the failure does not leak the password"
ecr_ok "update: no credentials" update-pull-through-cache-rule --ecr-repository-prefix private
ecr_ok "validate anonymously against the htpasswd upstream" validate-pull-through-cache-rule --ecr-repository-prefix private
expect "not valid without credentials" "$(j .isValid)" false
ecr_err "update with a secret that was never put" SecretNotFoundException update-pull-through-cache-rule \
  --ecr-repository-prefix private --credential-arn "arn:aws:secretsmanager:us-east-1:000000000000:secret:ecr-pullthroughcache/gone"
ecr_err "validate a missing rule" PullThroughCacheRuleNotFoundException validate-pull-through-cache-rule \
  --ecr-repository-prefix missing
kill "${UPSTREAM_PIDS[1]}"; wait "${UPSTREAM_PIDS[1]}" 2>/dev/null || true
ecr_ok "validate while the upstream is down" validate-pull-through-cache-rule --ecr-repository-prefix public
expect "not valid" "$(j .isValid)" false
j .failure | grep -q "cannot reach" && ok "failure says the upstream is unreachable" || bad "failure: $(j .failure)"

section "DeletePullThroughCacheRule"
ecr_ok "delete" delete-pull-through-cache-rule --ecr-repository-prefix public
expect "answers the deleted rule" "$(j .upstreamRepositoryPrefix)" library
ecr_err "delete again" PullThroughCacheRuleNotFoundException delete-pull-through-cache-rule --ecr-repository-prefix public
ecr_ok "describe after delete" describe-pull-through-cache-rules
expect "two rules left" "$(j '[.pullThroughCacheRules[].ecrRepositoryPrefix] | join(",")')" "ROOT,private"

section "Pulling through the cache: a multi-arch index"
start_upstream images
IMAGES=$UPSTREAM
SK=(skopeo --insecure-policy)
MKIMG="$SHARED/e2e/multiarch-flow.sh"
nonce=$RANDOM$RANDOM
bash "$MKIMG" --mkimg "$T/amd64" amd64 oci "$nonce" >"$T/amd64.json"
bash "$MKIMG" --mkimg "$T/arm64" arm64 oci "$nonce" v8 >"$T/arm64.json"
for a in amd64 arm64; do
  "${SK[@]}" copy -q --dest-tls-verify=false --preserve-digests "dir:$T/$a" "docker://${IMAGES#http://}/library/app:$a"
  "${SK[@]}" copy -q --dest-tls-verify=false --dest-creds alice:s3cret-pw --preserve-digests "dir:$T/$a" \
    "docker://${PRIVATE#http://}/team/app:$a"
done
jq -n --slurpfile a "$T/amd64.json" --slurpfile b "$T/arm64.json" '{schemaVersion:2, mediaType:"application/vnd.oci.image.index.v1+json",
  manifests:[{mediaType:$a[0].media_type, digest:$a[0].digest, size:$a[0].size, platform:{architecture:"amd64", os:"linux"}},
             {mediaType:$b[0].media_type, digest:$b[0].digest, size:$b[0].size, platform:{architecture:"arm64", os:"linux", variant:"v8"}}]}' \
  | tr -d '\n' >"$T/index.json"
IDX=sha256:$(sha256sum <"$T/index.json" | cut -c1-64)
for tag in multi never; do
  curl -sf -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.index.v1+json' --data-binary @"$T/index.json" \
    "$IMAGES/v2/library/app/manifests/$tag" || bad "PUT the index upstream as $tag"
done
curl -sf -o /dev/null -u alice:s3cret-pw -X PUT -H 'Content-Type: application/vnd.oci.image.index.v1+json' \
  --data-binary @"$T/index.json" "$PRIVATE/v2/team/app/manifests/multi" || bad "PUT the index to the htpasswd upstream"
ecr_ok "a rule for the images upstream" create-pull-through-cache-rule --ecr-repository-prefix cache \
  --upstream-registry-url "$IMAGES" --upstream-repository-prefix library
upstream_gets() { grep -c "\"GET $1 HTTP" "$T/images/log" || true; }

raw=$("${SK[@]}" inspect --tls-verify=false --raw "docker://$REG/cache/app:multi" | sha256sum | cut -c1-64)
expect "skopeo inspect --raw: the index under its upstream digest, byte for byte" "sha256:$raw" "$IDX"
rm -rf "$T/pull-arm64"
if "${SK[@]}" --override-arch arm64 --override-variant v8 copy -q --src-tls-verify=false "docker://$REG/cache/app:multi" "dir:$T/pull-arm64"; then
  expect "skopeo --override-arch arm64: the arm64 child" "sha256:$(sha256sum <"$T/pull-arm64/manifest.json" | cut -c1-64)" "$(jq -r .digest "$T/arm64.json")"
  layer=$(jq -r .layer_digest "$T/arm64.json" | cut -c8-)
  expect "skopeo: the arm64 layer verifies" "$(sha256sum <"$T/pull-arm64/$layer" | cut -c1-64)" "$layer"
else bad "skopeo --override-arch arm64 copy through the cache"; fi
# Every platform is cached (as on ECR): the amd64 child no client pulled yet arrives in the background.
want=$(printf '%s\n' "$IDX" "$(jq -r .digest "$T/arm64.json")" "$(jq -r .digest "$T/amd64.json")" | sort | paste -sd,)
for _ in $(seq 1 100); do
  ecr describe-images --repository-name cache/app >"$T/out.json" 2>"$T/err" || true
  [[ $(j '[.imageDetails[].imageDigest] | sort | join(",")') == "$want" ]] && break
  sleep 0.2
done
expect "describe-images: the index whole and both platforms" "$(j '[.imageDetails[].imageDigest] | sort | join(",")')" "$want"

if have docker; then
  export DOCKER_CONFIG=$T/docker; mkdir -p "$DOCKER_CONFIG"
  if docker manifest inspect --insecure "$REG/cache/app:multi" >"$T/docker-inspect.json" 2>"$T/err"; then
    expect "docker manifest inspect: both platforms listed" \
      "$(jq -r '[.manifests[].platform.architecture] | join(",")' "$T/docker-inspect.json")" "amd64,arm64"
  else bad "docker manifest inspect through the cache: $(head -c 300 "$T/err")"; fi
else skip "docker CLI not installed"; fi

if have podman; then
  containers_env
  if podman pull -q --tls-verify=false --arch amd64 "$REG/cache/app:multi" >"$T/podman.id" 2>"$T/err"; then
    expect "podman pull --arch amd64: an amd64 image" \
      "$(podman image inspect --format '{{.Architecture}}' "$(cat "$T/podman.id")")" amd64
  else bad "podman pull through the cache: $(head -c 300 "$T/err")"; fi
else skip "podman not installed"; fi

if have containerd && have ctr; then
  mkdir -p "$T/ctrd"
  printf '%s\n' 'version = 2' "root = \"$T/ctrd/root\"" "state = \"$T/ctrd/state\"" \
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]' '[grpc]' "  address = \"$T/ctrd/containerd.sock\"" \
    '[ttrpc]' "  address = \"$T/ctrd/containerd-ttrpc.sock\"" >"$T/ctrd/config.toml"
  containerd --config "$T/ctrd/config.toml" >"$T/ctrd.log" 2>&1 &
  CTRD_PID=$!
  CTR=(ctr --address "$T/ctrd/containerd.sock")
  for _ in $(seq 1 100); do "${CTR[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
  if "${CTR[@]}" -n cache images pull --plain-http --platform linux/arm64/v8 "$REG/cache/app:multi" >"$T/ctr.log" 2>&1; then
    expect "ctr images pull --platform linux/arm64: the image record names the index" \
      "$("${CTR[@]}" -n cache images ls 2>/dev/null | awk 'NR==2 {print $3}')" "$IDX"
  else bad "ctr images pull through the cache: $(tail -c 300 "$T/ctr.log")"; fi
else skip "containerd not installed"; fi
expect "the amd64 layer was fetched upstream once (in the background; docker, podman)" \
  "$(upstream_gets "/v2/library/app/blobs/$(jq -r .layer_digest "$T/amd64.json")")" 1
expect "the arm64 layer was fetched upstream once (skopeo, containerd)" \
  "$(upstream_gets "/v2/library/app/blobs/$(jq -r .layer_digest "$T/arm64.json")")" 1

section "Pulling through the cache: Basic auth upstream"
ecr_ok "the private rule with the right secret again" update-pull-through-cache-rule --ecr-repository-prefix private --credential-arn "$ARN"
raw=$("${SK[@]}" inspect --tls-verify=false --raw "docker://$REG/private/team/app:multi" 2>"$T/err" | sha256sum | cut -c1-64)
expect "skopeo through the htpasswd upstream" "sha256:$raw" "$IDX"
ecr_ok "the private rule with the wrong secret" update-pull-through-cache-rule --ecr-repository-prefix private --credential-arn "$WRONG"
if "${SK[@]}" inspect --tls-verify=false --raw "docker://$REG/private/team/other:v1" >/dev/null 2>"$T/err"; then
  bad "a pull with the wrong secret must fail"
else grep -q "authentication failed" "$T/err" && ok "a wrong secret: the pull fails saying why" || bad "wrong secret: $(head -c 300 "$T/err")"; fi
ecr_err "nothing was cached with it" RepositoryNotFoundException describe-repositories --repository-names private/team/other

section "Pulling through the cache: a moved tag, a cold large layer"
"${SK[@]}" copy -q --dest-tls-verify=false "dir:$T/amd64" "docker://${IMAGES#http://}/library/moving:v1"
first=$("${SK[@]}" inspect --tls-verify=false --raw "docker://$REG/cache/moving:v1" | sha256sum | cut -c1-64)
"${SK[@]}" copy -q --dest-tls-verify=false "dir:$T/arm64" "docker://${IMAGES#http://}/library/moving:v1"
now=$("${SK[@]}" inspect --tls-verify=false --raw "docker://$REG/cache/moving:v1" | sha256sum | cut -c1-64)
expect "within the interval the cached tag is served" "$now" "$first"
sleep 11
now=$("${SK[@]}" inspect --tls-verify=false --raw "docker://$REG/cache/moving:v1" | sha256sum | cut -c1-64)
expect "after the interval the moved tag is followed" "sha256:$now" "$(jq -r .digest "$T/arm64.json")"

head -c $((64 << 20)) /dev/urandom >"$T/big"
BIG=sha256:$(sha256sum <"$T/big" | cut -c1-64)
loc=$(curl -sf -D - -o /dev/null -X POST "$IMAGES/v2/library/big/blobs/uploads/" | sed -n 's/^[Ll]ocation: *//p' | tr -d '\r')
[[ $loc == /* ]] && loc=$IMAGES$loc
sep='?'; [[ $loc == *\?* ]] && sep='&'
curl -sf -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$T/big" "$loc${sep}digest=$BIG" \
  || bad "pushing the 64 MiB layer upstream"
pulls=()
for i in $(seq 1 20); do
  curl -s -w '%{http_code}' -o "$T/big-$i" "http://$REG/v2/cache/big/blobs/$BIG" >"$T/big-$i.code" &
  pulls+=($!)
done
wait "${pulls[@]}"
n=0; for i in $(seq 1 20); do
  [[ $(cat "$T/big-$i.code") == 200 && sha256:$(sha256sum <"$T/big-$i" | cut -c1-64) == "$BIG" ]] && n=$((n + 1))
done
expect "20 concurrent pulls of a cold 64 MiB layer all verify" "$n" 20
expect "...fetched from the upstream exactly once" "$(upstream_gets "/v2/library/big/blobs/$BIG")" 1
rm -f "$T"/big*

section "Pulling through the cache: pushes refused, the upstream stopped"
if "${SK[@]}" copy -q --dest-tls-verify=false "dir:$T/amd64" "docker://$REG/cache/app:mine" 2>"$T/err"; then
  bad "a push into the cache namespace must be refused"
else grep -qi "denied" "$T/err" && ok "skopeo push into the cache namespace: denied" || bad "push: $(head -c 300 "$T/err")"; fi
code=$(curl -s -o "$T/out.json" -w '%{http_code}' -X POST "http://$REG/v2/cache/app/blobs/uploads/")
expect "POST an upload into the cache namespace -> 403" "$code" 403
grep -q "'cache'" "$T/out.json" && ok "the refusal names the rule" || bad "refusal: $(cat "$T/out.json")"
kill "${UPSTREAM_PIDS[2]}"; wait "${UPSTREAM_PIDS[2]}" 2>/dev/null || true
sleep 11
rm -rf "$T/pull-arm64"
if "${SK[@]}" --override-arch arm64 --override-variant v8 copy -q --src-tls-verify=false "docker://$REG/cache/app:multi" "dir:$T/pull-arm64" 2>"$T/err"; then
  ok "upstream down: the cached platform still pulls (tag served from the cache)"
else bad "cached pull with the upstream down: $(head -c 300 "$T/err")"; fi
code=$(curl -s -o "$T/out.json" -w '%{http_code}' -H 'Accept: application/vnd.oci.image.index.v1+json' "http://$REG/v2/cache/app/manifests/never")
expect "upstream down: an uncached tag -> 404" "$code" 404
jq -r '.errors[0].code' "$T/out.json" | grep -q MANIFEST_UNKNOWN && grep -q "not cached" "$T/out.json" \
  && ok "...MANIFEST_UNKNOWN saying it is not cached and why" || bad "uncached: $(cat "$T/out.json")"
grep -q "pull-through cache upstream failed" "$T/data.log" && ok "the upstream failure is logged" || bad "no warning logged"

section "berth cache status"
stop_berth
"$BERTH_BIN" cache status --data-dir "$T/data" >"$T/out.json"
expect "the cache rule's counters" \
  "$(j '.rules[] | select(.ecrRepositoryPrefix == "cache") | (.hits > 0) and (.misses > 0) and (.bytesFromUpstream > 67108864)')" true
j '.rules[] | select(.ecrRepositoryPrefix == "cache") | .lastUpstreamError.message' | grep -q "cannot reach" \
  && ok "the last upstream error: $(j '.rules[] | select(.ecrRepositoryPrefix == "cache") | .lastUpstreamError.at')" \
  || bad "last error: $(cat "$T/out.json")"

summary pull-through
