#!/usr/bin/env bash
# Both OCI distribution-spec conformance suites (../shared/conformance, prebuilt) against fresh
# `berth serve` instances, every optional workflow on: v1.1.1 without auth (its client drops
# query parameters when it retries after a 401), main with Basic credentials and sparse indexes
# allowed. Fails unless both report no failure.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${BERTH_SHARED_DIR:-$ROOT/../shared}
source "$ROOT/scripts/lib.sh"
T=$(mktemp -d); trap 'stop_berth; rm -rf "$T"' EXIT
status=0

start_berth "$T/v1" --no-auth
OCI_RESULTS_DIR="$T/v1-results" OCI_REPORT_DIR="$T/v1-results" \
  bash "$SHARED/conformance/run.sh" "http://$BERTH_ADDR" >"$T/v1-suite.log" 2>&1 || status=1
grep -E '^FAIL ' "$T/v1-suite.log" || true
tail -1 "$T/v1-suite.log"
stop_berth

ID=AKIACONFORMANCE00001
SECRET=conformance-secret-$RANDOM$RANDOM-0000000000
BERTH_ROOT_ACCESS_KEY_ID=$ID BERTH_ROOT_SECRET_ACCESS_KEY=$SECRET start_berth "$T/main" --sparse-indexes
OCI_USERNAME=$ID OCI_PASSWORD=$SECRET OCI_RESULTS_DIR="$T/main-results" \
  bash "$SHARED/conformance/run-main.sh" "http://$BERTH_ADDR" >"$T/main-suite.log" 2>&1 || status=1
grep -E '^FAIL ' "$T/main-suite.log" || true
tail -1 "$T/main-suite.log"
exit $status
