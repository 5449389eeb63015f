#!/usr/bin/env bash
# A drop-in under ECR's own host names. In private mount and network namespaces (only loopback
# exists, so nothing can reach the real AWS; a private /etc/hosts maps the names to 127.0.0.1) a
# throwaway CA signs a certificate for ACCOUNT.dkr.ecr.REGION.amazonaws.com and
# api.ecr.REGION.amazonaws.com, and `berth serve --listen 127.0.0.1:443,127.0.0.1:80` takes its
# account and region from it. The aws CLI then runs without --endpoint-url, `aws ecr
# get-login-password | docker login` works the documented way, the shared multi-arch flow runs
# with certificate verification on, and docker reads through Amazon's credential helper. Port 80:
# the docker CLI counts a name that resolves to loopback as an insecure registry, and `docker
# manifest push` then speaks plain HTTP to it.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${BERTH_SHARED_DIR:-$ROOT/../shared}
source "$ROOT/scripts/lib.sh"
ACCOUNT=123456789012 REGION=eu-central-1
REGHOST=$ACCOUNT.dkr.ecr.$REGION.amazonaws.com API=api.ecr.$REGION.amazonaws.com
# Another account's registry name, pointed at the same server by mistake.
OTHER_ACCOUNT=210987654321
OTHERHOST=$OTHER_ACCOUNT.dkr.ecr.$REGION.amazonaws.com

if [[ ${BERTH_IN_NAMESPACE:-} != 1 ]]; then
  T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=Berth test CA" \
    -keyout "$T/ca.key" -out "$T/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$REGHOST" -keyout "$T/server.key" -out "$T/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s,DNS:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    "$REGHOST" "$API" >"$T/ext"
  openssl x509 -req -days 2 -in "$T/server.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
    -extfile "$T/ext" -out "$T/server.pem" 2>/dev/null
  cat /etc/ssl/certs/ca-certificates.crt "$T/ca.pem" >"$T/trusted.pem"
  { cat /etc/hosts; echo "127.0.0.1 $REGHOST $API $OTHERHOST"; } >"$T/hosts"
  # As root the namespaces need nothing more; elsewhere an unprivileged user namespace maps root.
  as_root=(); [[ $(id -u) -eq 0 ]] || as_root=(--map-root-user)
  # Private propagation: the /etc/hosts bind mount must not reach the host's mount namespace.
  ns=(unshare --mount --propagation private --net "${as_root[@]}")
  if ! "${ns[@]}" true 2>"$T/unshare.err"; then
    echo "SKIP: this machine refuses private mount and network namespaces: $(cat "$T/unshare.err")"
    echo; echo "ecr-hostnames: 0 passed, 0 failed, 1 skipped"
    exit 0
  fi
  "${ns[@]}" env BERTH_IN_NAMESPACE=1 T="$T" bash "${BASH_SOURCE[0]}"
  exit
fi

ip link set lo up
mount --bind "$T/hosts" /etc/hosts
source "$ROOT/tests/clients/lib/common.bash"
export BERTH_ROOT_ACCESS_KEY_ID=AKIADROPINHOSTNAMES1 BERTH_ROOT_SECRET_ACCESS_KEY=drop-in-secret-0123456789abcdefghijkl
"$BERTH_BIN" serve --listen 127.0.0.1:80,127.0.0.1:443 --data-dir "$T/data" \
  --tls-cert "$T/server.pem" --tls-key "$T/server.key" >"$T/stdout" 2>"$T/server.log" &
BERTH_PID=$!
trap 'kill "$BERTH_PID" 2>/dev/null; wait "$BERTH_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do grep -q 'http://127.0.0.1:80' "$T/stdout" 2>/dev/null && break; sleep 0.1; done
expect "serving https on 443" "$(grep -c 'listening on https://127.0.0.1:443' "$T/stdout")" 1
expect "and plain http on loopback port 80" "$(grep -c 'listening on http://127.0.0.1:80' "$T/stdout")" 1

# The aws CLI as on a workstation: default endpoint resolution, the CA the way AWS documents it.
export AWS_ACCESS_KEY_ID=$BERTH_ROOT_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$BERTH_ROOT_SECRET_ACCESS_KEY
export AWS_DEFAULT_REGION=$REGION AWS_CA_BUNDLE=$T/trusted.pem AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_ENDPOINT_URL AWS_ENDPOINT_URL_ECR
# Go clients (docker, skopeo) and Python's ssl read the trusted roots from here.
export SSL_CERT_FILE=$T/trusted.pem DOCKER_CONFIG=$T/docker NO_PROXY='*'
# No docker daemon: one on the host would resolve the names outside this namespace and log in
# to the real AWS; without one the CLI logs in itself, here.
export DOCKER_HOST=unix://$T/no-docker-daemon.sock

section "aws CLI at https://$API (no --endpoint-url)"
aws ecr create-repository --repository-name my-web-app --output json >"$T/repo.json" 2>"$T/aws.err" || true
expect "repositoryUri is the ECR registry name" "$(jq -r .repository.repositoryUri "$T/repo.json")" "$REGHOST/my-web-app"
expect "repositoryArn has the certificate's account and region" "$(jq -r .repository.repositoryArn "$T/repo.json")" \
  "arn:aws:ecr:$REGION:$ACCOUNT:repository/my-web-app"
aws ecr get-authorization-token --output json >"$T/token.json" 2>>"$T/aws.err" || true
expect "proxyEndpoint is https://$REGHOST" "$(jq -r '.authorizationData[0].proxyEndpoint' "$T/token.json")" "https://$REGHOST"
expect "describe-registry answers as the account" "$(aws ecr describe-registry --query registryId --output text 2>>"$T/aws.err")" "$ACCOUNT"
[[ -s $T/aws.err ]] && sed 's/^/    | /' "$T/aws.err" | tail -5

section "docker login the documented way"
rc=0; env -u SSL_CERT_FILE curl -s -o /dev/null "https://$REGHOST/v2/" || rc=$?
expect "the certificate is checked: curl without the CA fails (exit 60)" "$rc" 60
check "aws ecr get-login-password | docker login --username AWS --password-stdin $REGHOST" \
  sh -c "aws ecr get-login-password --region $REGION | docker login --username AWS --password-stdin $REGHOST"

section "the multi-arch flow under $REGHOST, certificates verified"
PASSWORD=$(aws ecr get-login-password)
if INSECURE=0 ECR_ENDPOINT="https://$API" REPO=my-web-app CROSS_REPO=1 OCI=1 \
  bash "$SHARED/e2e/multiarch-flow.sh" "$REGHOST" AWS "$PASSWORD" >"$T/flow.out" 2>&1; then
  ok "multiarch-flow.sh: $(tail -1 "$T/flow.out")"
else
  bad "multiarch-flow.sh: $(tail -1 "$T/flow.out")"; grep -A3 '^FAIL' "$T/flow.out" | head -20 | sed 's/^/    | /'
fi
section "docker with Amazon's credential helper (docker-credential-ecr-login) instead of a login"
export AWS_ECR_DISABLE_CACHE=true
expect "the helper gets AWS credentials from GetAuthorizationToken" \
  "$(echo "$REGHOST" | docker-credential-ecr-login get 2>"$T/helper.err" | jq -r .Username)" AWS
mkdir -p "$T/helper" && printf '{"credHelpers":{"%s":"ecr-login"}}' "$REGHOST" >"$T/helper/config.json"
expect "docker manifest inspect through the helper reads the pushed list" \
  "$(DOCKER_CONFIG=$T/helper docker manifest inspect "$REGHOST/my-web-app:latest" 2>>"$T/helper.err" | jq -r .mediaType)" \
  application/vnd.docker.distribution.manifest.list.v2+json
[[ -s $T/helper.err ]] && sed 's/^/    | /' "$T/helper.err" | tail -5

section "another account's registry name ($OTHERHOST) pointed here"
aws ecr get-authorization-token --registry-ids "$OTHER_ACCOUNT" "$ACCOUNT" --output json >"$T/tokens.json" 2>"$T/aws.err" || true
expect "a token per registry id asked for, each naming that account's registry" \
  "$(jq -c '[.authorizationData[].proxyEndpoint]' "$T/tokens.json")" "[\"https://$OTHERHOST\",\"https://$REGHOST\"]"
# Plain HTTP on port 80: the certificate does not name the other account's registry.
code() { curl -s -o "$T/other.json" -w '%{http_code}' -u "AWS:$PASSWORD" "$@"; }
expect "its /v2/ answers, as ECR's does for any registry" "$(code "http://$OTHERHOST/v2/")" 200
expect "its repositories are not this account's: 404" "$(code "http://$OTHERHOST/v2/my-web-app/tags/list")" 404
expect "as NAME_UNKNOWN naming the account" "$(jq -r '.errors[0].code + " " + .errors[0].message' "$T/other.json")" \
  "NAME_UNKNOWN $OTHERHOST is the registry of account $OTHER_ACCOUNT, which this server does not hold"
expect "nor can it be pushed to" \
  "$(code -X POST "http://$OTHERHOST/v2/my-web-app/blobs/uploads/")" 404
expect "this account's name on the same port still reads the repository" \
  "$(code "http://$REGHOST/v2/my-web-app/tags/list")" 200
if grep -q 'panicked' "$T/server.log"; then bad "the server log has a panic"; else ok "no panic in the server log"; fi
summary ecr-hostnames
