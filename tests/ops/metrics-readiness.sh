#!/usr/bin/env bash
# Operating berth: /metrics scraped before and after a skopeo push and pull, parsed with the
# Prometheus project's own text parser (prometheus_client), must move by what happened; the audit
# log records the push; /readyz answers 503 with a JSON reason while PostgreSQL is stopped and 200
# once it is back.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${BERTH_SHARED_DIR:-$ROOT/../shared}
source "$ROOT/scripts/lib.sh"
T=$(mktemp -d)
# Its own cluster, outside $T (mode 700, which the postgres user cannot enter).
export BERTH_POSTGRES_DIR="${TMPDIR:-/tmp}/berth-postgres-ops-$$"
source "$ROOT/scripts/postgres.sh"
trap 'stop_berth; berth_postgres_stop; rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "PASS: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
expect() { if [[ "$2" == "$3" ]]; then ok "$1"; else bad "$1 (got '$2', want '$3')"; fi; }

METRICS=127.0.0.1:$(free_port)
start_berth "$T/data" --no-auth --metrics-listen "$METRICS" --audit-log "$T/audit.log"
REG=$BERTH_ADDR
SK=(skopeo --insecure-policy)

curl -sf "http://$METRICS/metrics" >"$T/before.prom"
bash "$SHARED/e2e/multiarch-flow.sh" --mkimg "$T/img" amd64 oci "$RANDOM$RANDOM" >"$T/img.json"
LAYERS=$(jq '.layers | length' <"$T/img.json" 2>/dev/null || echo 1)
"${SK[@]}" copy --dest-tls-verify=false "dir:$T/img" "docker://$REG/ops/app:v1" >/dev/null && ok "skopeo push" || bad "skopeo push"
"${SK[@]}" copy --src-tls-verify=false "docker://$REG/ops/app:v1" "dir:$T/pulled" >/dev/null && ok "skopeo pull" || bad "skopeo pull"
curl -sf "http://$METRICS/metrics" >"$T/after.prom"

# Differences of the series a push and a pull must move, from the real Prometheus parser.
python3 - "$T/before.prom" "$T/after.prom" >"$T/deltas" <<'PY'
import sys
from prometheus_client.parser import text_string_to_metric_families

def samples(path):
    out = {}
    for family in text_string_to_metric_families(open(path).read()):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            out[key] = out.get(key, 0) + s.value
    return out

before, after = samples(sys.argv[1]), samples(sys.argv[2])
def delta(name, **labels):
    total = 0
    for (n, ls), v in after.items():
        d = dict(ls)
        if n == name and all(d.get(k) == w for k, w in labels.items()):
            total += v - before.get((n, ls), 0)
    return total

print("put_manifest", int(delta("berth_http_requests_total", plane="oci", operation="PutManifest", status="2xx")))
print("get_manifest", int(delta("berth_http_requests_total", plane="oci", operation="GetManifest", status="2xx")))
print("get_blob", int(delta("berth_http_requests_total", plane="oci", operation="GetBlob", status="2xx")))
print("put_latency_count", int(delta("berth_http_request_duration_seconds_count", operation="PutManifest")))
print("put_latency_inf", int(delta("berth_http_request_duration_seconds_bucket", operation="PutManifest", le="+Inf")))
print("received_positive", int(delta("berth_http_received_bytes_total", plane="oci") > 0))
print("sent_positive", int(delta("berth_http_sent_bytes_total", plane="oci") > 0))
print("server_errors", int(delta("berth_http_requests_total", status="5xx")))
print("rss_present", int(any(n == "process_resident_memory_bytes" for n, _ in after)))
PY
d() { awk -v k="$1" '$1 == k {print $2}' "$T/deltas"; }
expect "one manifest PUT counted" "$(d put_manifest)" 1
expect "its latency observed once (count)" "$(d put_latency_count)" 1
expect "its latency observed once (+Inf bucket)" "$(d put_latency_inf)" 1
if [[ $(d get_manifest) -ge 1 ]]; then ok "manifest GETs counted ($(d get_manifest))"; else bad "no manifest GET counted"; fi
# The pull fetches the config and every layer.
if [[ $(d get_blob) -ge $((LAYERS + 1)) ]]; then ok "blob GETs counted ($(d get_blob))"; else bad "blob GETs: $(d get_blob)"; fi
expect "bytes received counted" "$(d received_positive)" 1
expect "bytes sent counted" "$(d sent_positive)" 1
expect "no server error" "$(d server_errors)" 0
expect "process metrics present" "$(d rss_present)" 1

sleep 0.5
expect "audit: one PutImage for ops/app" \
  "$(jq -s '[.[] | select(.eventName == "PutImage" and .requestParameters.repositoryName == "ops/app")] | length' <"$T/audit.log")" 1
expect "audit: reads are not recorded" "$(jq -s '[.[] | select(.eventName == "BatchGetImage")] | length' <"$T/audit.log")" 0
stop_berth

# /readyz follows PostgreSQL.
berth_postgres_start
start_berth "$T/pgdata" --no-auth --database-url "$BERTH_TEST_POSTGRES_URL"
expect "/readyz with PostgreSQL up" "$(curl -s -o /dev/null -w '%{http_code}' "http://$BERTH_ADDR/readyz")" 200
bin=$(_berth_pg_bindir)
_berth_pg_as_owner "$bin/pg_ctl" stop -D "$BERTH_POSTGRES_DIR/data" -m fast -w -t 30 >/dev/null
code=$(curl -s -o "$T/readyz.json" -w '%{http_code}' "http://$BERTH_ADDR/readyz")
expect "/readyz with PostgreSQL stopped" "$code" 503
expect "/readyz names the metadata store" "$(jq -r '.reasons[0] | startswith("metadata store")' <"$T/readyz.json")" true
expect "/healthz still answers" "$(curl -s -o /dev/null -w '%{http_code}' "http://$BERTH_ADDR/healthz")" 200
port=$(cat "$BERTH_POSTGRES_DIR/port")
_berth_pg_as_owner "$bin/pg_ctl" start -D "$BERTH_POSTGRES_DIR/data" -l "$BERTH_POSTGRES_DIR/server.log" -w -t 60 \
  -o "-k $BERTH_POSTGRES_DIR/sock -p $port -c listen_addresses=127.0.0.1 -c fsync=off" >/dev/null
ready=
for _ in $(seq 1 50); do
  [[ $(curl -s -o /dev/null -w '%{http_code}' "http://$BERTH_ADDR/readyz") == 200 ]] && { ready=1; break; }
  sleep 0.2
done
expect "/readyz back to 200 once PostgreSQL is back" "${ready:-0}" 1

echo "metrics-readiness: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
