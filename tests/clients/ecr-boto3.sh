#!/usr/bin/env bash
# boto3 against berth's ECR API: tests/ecr/test_ecr.py (pytest) against a fresh `berth serve`.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$ROOT/scripts/lib.sh"
python3 -c 'import boto3' 2>/dev/null || pip install -q boto3
python3 -c 'import pytest' 2>/dev/null || pip install -q pytest
T=$(mktemp -d); trap 'stop_berth; rm -rf "$T"' EXIT

start_berth "$T/data" --no-auth
# test_ecr.py's repository policies name user ci; a policy naming no existing user is refused.
"$BERTH_BIN" user add ci --policy AmazonEC2ContainerRegistryFullAccess --data-dir "$T/data" >/dev/null
rc=0
BERTH_ADDR=$BERTH_ADDR python3 -m pytest -q -p no:cacheprovider "$ROOT/tests/ecr" "$@" || rc=$?
# Exit 5 means pytest collected nothing: a suite that ran no test has not passed.
if [[ $rc -eq 5 ]]; then echo "ecr-boto3: pytest collected no tests" >&2; exit 1; fi
if [[ $rc -ne 0 ]]; then echo "--- berth log (tail)"; tail -40 "$T/data.log"; fi
exit $rc
