#!/usr/bin/env bash
# The documented ECR multi-arch flow (docker login, docker manifest create/inspect/push, skopeo
# per-platform pulls) from ../shared/e2e, verbatim, against a fresh `berth serve`.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${BERTH_SHARED_DIR:-$ROOT/../shared}
source "$ROOT/scripts/lib.sh"
T=$(mktemp -d); trap 'stop_berth; rm -rf "$T"' EXIT

# Auth on (the default): docker login -u AWS with a registry token, as `aws ecr get-login-password` gives.
export BERTH_ROOT_ACCESS_KEY_ID=AKIAMULTIARCHFLOW001 BERTH_ROOT_SECRET_ACCESS_KEY=multiarch-flow-secret-0123456789abcdefghij
start_berth "$T/data"
TOKEN=$("$BERTH_BIN" token --data-dir "$T/data")
CROSS_REPO=1 OCI=1 bash "$SHARED/e2e/multiarch-flow.sh" "$BERTH_ADDR" AWS "$TOKEN"
