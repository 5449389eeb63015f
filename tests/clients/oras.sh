#!/usr/bin/env bash
# ORAS against berth, through the `oras` Python SDK (Debian has no oras package): artifacts with
# an artifact type, referrers attached with `subject`, discovery through the referrers API,
# chunked uploads, pull-back byte comparison. The scenario is tests/clients/oras-flow.py.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$ROOT/scripts/lib.sh"
python3 -c 'import oras.provider' 2>/dev/null || pip install -q 'oras>=0.2.25,<0.3'
T=$(mktemp -d); trap 'stop_berth; rm -rf "$T"' EXIT

start_berth "$T/data" --no-auth
mkdir -p "$T/work"
python3 "$ROOT/tests/clients/oras-flow.py" "$BERTH_ADDR" "$T/work"
