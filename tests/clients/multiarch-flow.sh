#!/usr/bin/env bash
# The documented ECR multi-arch flow (docker login, docker manifest create/inspect/push, skopeo
# per-platform pulls) from ../shared/e2e, verbatim, against a fresh `berth serve`.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${BERTH_SHARED_DIR:-$ROOT/../shared}
source "$ROOT/scripts/lib.sh"
T=$(mktemp -d); trap 'stop_berth; rm -rf "$T"' EXIT

start_berth "$T/data" --no-auth
CROSS_REPO=1 OCI=1 bash "$SHARED/e2e/multiarch-flow.sh" "$BERTH_ADDR"
