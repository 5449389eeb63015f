#!/usr/bin/env bash
# Pull-through cache rules with the real `aws ecr` CLI, against real upstreams on loopback: Debian's
# docker-registry with htpasswd (Basic auth) and without auth. Credentials go in with
# `berth secret put`; ValidatePullThroughCacheRule asks the upstream and says why it refused.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$ROOT/scripts/lib.sh"
python3 -c 'import awscli' 2>/dev/null || pip install -q awscli
T=$(mktemp -d)
UPSTREAM_PIDS=()
trap 'stop_berth; for p in "${UPSTREAM_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$T"' EXIT
source "$ROOT/tests/clients/lib/common.bash"

# start_upstream NAME [USER PASSWORD]: docker-registry on a free loopback port; sets UPSTREAM.
start_upstream() {
  local dir=$T/$1 port auth=""
  mkdir -p "$dir"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  if [[ $# -eq 3 ]]; then
    htpasswd -Bbn "$2" "$3" >"$dir/htpasswd"
    auth=$'auth:\n  htpasswd:\n    realm: berth-test\n    path: '"$dir/htpasswd"
  fi
  cat >"$dir/config.yml" <<YAML
version: 0.1
log:
  level: warn
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

start_berth "$T/data" --no-auth
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

summary pull-through
