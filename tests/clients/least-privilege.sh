#!/usr/bin/env bash
# Least privilege with real clients: users made by `berth user add --policy` can do exactly what
# their policies say. A PullOnly user logs in with `docker login` (password from the aws CLI's
# get-login-password under its own keys), reads with `docker manifest inspect` and pulls with
# skopeo and containerd, but cannot push (skopeo, ctr), describe images or list repositories (aws CLI); a user with a
# custom wildcard policy pushes only to its team's repositories; a user without policies gets no
# token; attaching and detaching a policy on the running server applies at once; boto3 sees the
# same decisions, the registry policy and the account settings; `berth policy simulate` explains.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${BERTH_SHARED_DIR:-$ROOT/../shared}
source "$ROOT/scripts/lib.sh"
python3 -c 'import awscli, boto3' 2>/dev/null || pip install -q awscli boto3
apt_install containerd
T=$(mktemp -d); trap 'stop_containerd; stop_berth; rm -rf "$T"' EXIT
source "$ROOT/tests/clients/lib/common.bash"
MKIMG="$SHARED/e2e/multiarch-flow.sh"
ACCOUNT=000000000000

export BERTH_ROOT_ACCESS_KEY_ID=AKIALEASTPRIVROOT001 BERTH_ROOT_SECRET_ACCESS_KEY=least-privilege-root-secret-0123456789
start_berth "$T/data"
REG=$BERTH_ADDR
export AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export DOCKER_CONFIG=$T/docker; mkdir -p "$DOCKER_CONFIG"; echo '{"auths":{}}' >"$DOCKER_CONFIG/config.json"
SK=(skopeo --insecure-policy)
ROOT_CREDS="$BERTH_ROOT_ACCESS_KEY_ID:$BERTH_ROOT_SECRET_ACCESS_KEY"
# as USER CMD...: run CMD with USER's access key in the AWS_* variables.
as() {
  local keys=$T/$1.json; shift
  AWS_ACCESS_KEY_ID=$(jq -r .accessKeyId "$keys") AWS_SECRET_ACCESS_KEY=$(jq -r .secretAccessKey "$keys") "$@"
}
ecr() { aws --endpoint-url "http://$REG" --output json ecr "$@"; }
# denied DESC USER ARGS...: the aws CLI, as USER, fails with AccessDeniedException.
denied() {
  local desc=$1 user=$2; shift 2
  local rc=0; as "$user" ecr "$@" >"$T/out.json" 2>"$T/err" || rc=$?
  if [[ $rc -eq 255 ]] && grep -q "An error occurred (AccessDeniedException)" "$T/err"; then ok "$desc: AccessDeniedException"
  else bad "$desc must be AccessDeniedException (exit $rc: $(head -c 300 "$T/err"))"; fi
}
allowed() {
  local desc=$1 user=$2; shift 2
  if as "$user" ecr "$@" >"$T/out.json" 2>"$T/err"; then ok "$desc"; else bad "$desc"; sed 's/^/    | /' "$T/err"; fi
}
creds() { printf '%s:%s' "$(jq -r .accessKeyId "$T/$1.json")" "$(jq -r .secretAccessKey "$T/$1.json")"; }
# user_add NAME [--policy P]...: keys to $T/NAME.json, stderr to $T/NAME.err; waits until the
# running server knows the key (403 for a user whose policies do not allow
# ecr:GetAuthorizationToken, which /v2/ needs of access keys as of tokens).
user_add() {
  local name=$1; shift
  "$BERTH_BIN" user add "$name" "$@" --data-dir "$T/data" >"$T/$name.json" 2>"$T/$name.err"
  for _ in $(seq 1 50); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' -u "$(creds "$name")" "http://$REG/v2/") =~ ^(200|403)$ ]] && return 0; sleep 0.1
  done
  bad "user $name was not let in"
}

section "an image pushed by the root"
bash "$MKIMG" --mkimg "$T/img" amd64 oci "$RANDOM$RANDOM" >"$T/img.json"
check "root pushes lp/app:v1 (skopeo)" "${SK[@]}" copy -q --dest-tls-verify=false --dest-creds "$ROOT_CREDS" \
  "dir:$T/img" "docker://$REG/lp/app:v1" || true

section "users with managed policies, a custom policy and none"
user_add node --policy AmazonEC2ContainerRegistryPullOnly
user_add teama --policy "$(cat >"$T/team-a.json" <<EOF
{"Version": "2012-10-17", "Statement": [
  {"Sid": "Login", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
  {"Sid": "TeamA", "Effect": "Allow", "Action": "ecr:*", "Resource": "arn:aws:ecr:us-east-1:$ACCOUNT:repository/team-a/*"}]}
EOF
echo "$T/team-a.json")"
user_add nobody
expect "berth user add without --policy warns on stderr" "$(grep -c 'may do nothing' "$T/nobody.err")" 1
expect "berth user add with --policy says nothing" "$(wc -c <"$T/node.err")" 0
"$BERTH_BIN" user list --data-dir "$T/data" >"$T/users.json"
expect "berth user list shows policies" "$(jq -c '[.[] | {(.userName): .policies}] | add' "$T/users.json")" \
  '{"nobody":[],"node":["AmazonEC2ContainerRegistryPullOnly"],"root":[],"teama":["team-a"]}'

section "PullOnly: docker login + docker manifest inspect + skopeo pull; no push, no describe-images"
pw=$(as node ecr get-login-password) && ok "get-login-password as node (PullOnly)" || bad "get-login-password as node"
check "docker login -u AWS --password-stdin (node's token)" sh -c "printf '%s' \"\$0\" | docker login -u AWS --password-stdin '$REG'" "$pw" || true
check "docker manifest inspect lp/app:v1" sh -c "docker manifest inspect --insecure '$REG/lp/app:v1' >'$T/inspect.json'" || true
expect "docker sees the pushed config" "$(jq -r .config.digest "$T/inspect.json")" "$(jq -r .config_digest "$T/img.json")"
check "skopeo pulls lp/app:v1 as node (docker's credentials)" "${SK[@]}" copy -q --src-tls-verify=false \
  --authfile "$DOCKER_CONFIG/config.json" "docker://$REG/lp/app:v1" "dir:$T/pulled" || true
expect "the pulled layer is the pushed one" "$(sha256_of "$T/pulled/$(jq -r .layer_digest "$T/img.json" | cut -d: -f2)")" "$(jq -r .layer_digest "$T/img.json")"
if "${SK[@]}" copy -q --dest-tls-verify=false --authfile "$DOCKER_CONFIG/config.json" "dir:$T/img" "docker://$REG/lp/app:node" 2>"$T/err"; then
  bad "skopeo push as node (PullOnly) must be refused"
else
  # skopeo first HEADs the blobs it could reuse: a 403 there has no body to say "denied".
  grep -qiE "denied|403 \(Forbidden\)" "$T/err" && ok "skopeo push as node is refused (denied)" || bad "push as node failed otherwise: $(head -c 300 "$T/err")"
fi
expect "and lp/app:node was not stored" "$(curl -s -o /dev/null -w '%{http_code}' -u "$ROOT_CREDS" "http://$REG/v2/lp/app/manifests/node")" 404
denied "describe-images as node" node describe-images --repository-name lp/app
grep -q "User: arn:aws:iam::$ACCOUNT:user/node is not authorized to perform: ecr:DescribeImages on resource: arn:aws:ecr:us-east-1:$ACCOUNT:repository/lp/app because no identity-based policy allows the ecr:DescribeImages action" "$T/err" \
  && ok "the message names user, action, repository and why, as AWS does" || bad "message: $(cat "$T/err")"
denied "describe-repositories as node" node describe-repositories
expect "GET /v2/_catalog as node is 403" "$(curl -s -o /dev/null -w '%{http_code}' -u "AWS:$pw" "http://$REG/v2/_catalog")" 403

section "PullOnly on a node: containerd pulls with the node's token and cannot push"
start_containerd
check "ctr images pull lp/app:v1 as node (AWS + token)" "${CTR[@]}" -n node images pull --plain-http \
  --snapshotter "$SNAP" --platform linux/amd64 --user "AWS:$pw" "$REG/lp/app:v1" || true
expect "containerd holds the pushed layer" "$("${CTR[@]}" -n node content ls -q | grep -c "$(jq -r .layer_digest "$T/img.json")")" 1
if "${CTR[@]}" -n node images push --plain-http --user "AWS:$pw" "$REG/lp/app:ctr" "$REG/lp/app:v1" >"$T/err" 2>&1; then
  bad "ctr push as node (PullOnly) must be refused"
else
  grep -qiE "denied|forbidden|403" "$T/err" && ok "ctr push as node is refused (denied)" || bad "ctr push failed otherwise: $(head -c 300 "$T/err")"
fi
expect "and lp/app:ctr was not stored" "$(curl -s -o /dev/null -w '%{http_code}' -u "$ROOT_CREDS" "http://$REG/v2/lp/app/manifests/ctr")" 404

section "a custom wildcard policy: team-a/* only, including create-on-push"
check "skopeo push team-a/web:v1 as teama (a new repository)" "${SK[@]}" copy -q --dest-tls-verify=false \
  --dest-creds "$(creds teama)" "dir:$T/img" "docker://$REG/team-a/web:v1" || true
if "${SK[@]}" copy -q --dest-tls-verify=false --dest-creds "$(creds teama)" "dir:$T/img" "docker://$REG/team-b/web:v1" 2>"$T/err"; then
  bad "skopeo push team-b/web as teama must be refused"
else
  grep -qiE "denied|403 \(Forbidden\)" "$T/err" && ok "skopeo push team-b/web as teama is refused (denied)" || bad "failed otherwise: $(head -c 300 "$T/err")"
fi
expect "and no team-b/web was created" "$(curl -s -o /dev/null -w '%{http_code}' -u "$ROOT_CREDS" "http://$REG/v2/team-b/web/tags/list")" 404
allowed "describe-images team-a/web as teama" teama describe-images --repository-name team-a/web
expect "teama sees its image" "$(jq '.imageDetails | length' "$T/out.json")" 1
denied "describe-images lp/app as teama" teama describe-images --repository-name lp/app
denied "get-login-password as nobody (no policy)" nobody get-authorization-token
expect "nor can nobody use its keys on /v2/ instead (403)" \
  "$(curl -s -o /dev/null -w '%{http_code}' -u "$(creds nobody)" "http://$REG/v2/lp/app/manifests/v1")" 403

section "policy changes on the running server apply at once"
"$BERTH_BIN" user policy attach nobody AmazonEC2ContainerRegistryReadOnly --data-dir "$T/data" >"$T/attach.json"
expect "attach prints the user's policies" "$(jq -c '[.policies[].policyName]' "$T/attach.json")" '["AmazonEC2ContainerRegistryReadOnly"]'
for _ in $(seq 1 30); do as nobody ecr describe-images --repository-name lp/app >/dev/null 2>&1 && break; sleep 0.1; done
allowed "describe-images as nobody after attaching ReadOnly" nobody describe-images --repository-name lp/app
"$BERTH_BIN" user policy detach nobody AmazonEC2ContainerRegistryReadOnly --data-dir "$T/data" >/dev/null
for _ in $(seq 1 30); do as nobody ecr describe-images --repository-name lp/app >/dev/null 2>&1 || break; sleep 0.1; done
denied "describe-images as nobody after detaching it" nobody describe-images --repository-name lp/app

section "boto3: the same decisions, the registry policy and account settings"
if as teama python3 - "$REG" "$ACCOUNT" "$BERTH_ROOT_ACCESS_KEY_ID" "$BERTH_ROOT_SECRET_ACCESS_KEY" >"$T/boto3.log" 2>&1 <<'EOF'
import json, sys
import boto3
from botocore.exceptions import ClientError
reg, account, root_id, root_secret = sys.argv[1:]
def client(**keys):
    return boto3.client("ecr", endpoint_url=f"http://{reg}", region_name="us-east-1", **keys)
teama, root = client(), client(aws_access_key_id=root_id, aws_secret_access_key=root_secret)
def code(call, **kwargs):
    try:
        call(**kwargs)
        return "OK"
    except ClientError as e:
        return e.response["Error"]["Code"]
assert code(teama.describe_images, repositoryName="team-a/web") == "OK"
assert code(teama.batch_delete_image, repositoryName="lp/app", imageIds=[{"imageTag": "v1"}]) == "AccessDeniedException"
# Listing every repository needs ecr:DescribeRepositories on repository/*, which team-a/* is not.
assert code(teama.describe_repositories) == "AccessDeniedException"
assert [r["repositoryName"] for r in teama.describe_repositories(repositoryNames=["team-a/web"])["repositories"]] == ["team-a/web"]
deny = {"Version": "2012-10-17", "Statement": [{"Sid": "NoDeletes", "Effect": "Deny",
        "Principal": {"AWS": f"arn:aws:iam::{account}:user/teama"}, "Action": "ecr:BatchDeleteImage",
        "Resource": f"arn:aws:ecr:us-east-1:{account}:repository/*"}]}
put = root.put_registry_policy(policyText=json.dumps(deny))
assert put["registryId"] == account and json.loads(put["policyText"]) == deny
assert json.loads(root.get_registry_policy()["policyText"]) == deny
assert code(teama.batch_delete_image, repositoryName="team-a/web", imageIds=[{"imageTag": "v1"}]) == "AccessDeniedException"
root.delete_registry_policy()
assert code(root.get_registry_policy) == "RegistryPolicyNotFoundException"
assert root.get_account_setting(name="BLOB_MOUNTING")["value"] == "ENABLED"
assert root.put_account_setting(name="BASIC_SCAN_TYPE_VERSION", value="CLAIR")["value"] == "CLAIR"
assert root.get_account_setting(name="BASIC_SCAN_TYPE_VERSION")["value"] == "CLAIR"
assert code(root.put_account_setting, name="BLOB_MOUNTING", value="MAYBE") == "InvalidParameterException"
# teama's ecr:* covers team-a/* only, not the registry-wide resource "*".
assert code(teama.put_account_setting, name="BLOB_MOUNTING", value="DISABLED") == "AccessDeniedException"
print("boto3: all checks passed")
EOF
then ok "$(tail -1 "$T/boto3.log")"; else bad "boto3 checks"; sed 's/^/    | /' "$T/boto3.log" | tail -15; fi

section "berth policy simulate explains"
"$BERTH_BIN" policy simulate --data-dir "$T/data" --user teama --action ecr:PutImage --repository team-a/web >"$T/sim1"
grep -q '^allowed' "$T/sim1" && grep -q 'Sid "TeamA"' "$T/sim1" && ok "allowed, by Sid TeamA" || bad "simulate: $(cat "$T/sim1")"
"$BERTH_BIN" policy simulate --data-dir "$T/data" --user teama --action ecr:PutImage --repository lp/app >"$T/sim2"
grep -q '^implicit deny' "$T/sim2" && ok "implicit deny outside team-a" || bad "simulate: $(cat "$T/sim2")"

summary least-privilege
