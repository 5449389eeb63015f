#!/usr/bin/env bash
# Soak: a mixed workload (pushes, pulls, deletes, tag lists, lifecycle expiry, online GC) on two
# servers sharing S3 (moto) and PostgreSQL, for --minutes (default 20; CI runs 1), with a phase of
# hostile clients in the middle (tests/soak/hostile.py: bodies without credentials or with forged
# signatures, oversized, junk, trickled and cut-off manifests, abandoned uploads). Checks that
# nothing friendly failed, every pulled manifest and layer was the pushed one, every hostile
# request got its 4xx, and each server's RSS stayed bounded under the attack and came back after
# it (descriptors too); prints per-minute p99 latencies. The full report (samples every second)
# goes to --report FILE.
#
#   tests/soak/run.sh [--minutes 20] [--report soak.json]
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$ROOT/scripts/lib.sh"
source "$ROOT/scripts/postgres.sh"
source "$ROOT/scripts/s3.sh"
MINUTES=20
T=$(mktemp -d)
REPORT=$T/soak.json
while (($#)); do
  case $1 in
    --minutes) MINUTES=$2; shift 2 ;;
    --report) REPORT=$2; shift 2 ;;
    *) echo "usage: $0 [--minutes N] [--report FILE]" >&2; exit 2 ;;
  esac
done
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  [[ -n ${DB:-} ]] && psql "$BERTH_TEST_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1
  rm -rf "$T"
}
trap cleanup EXIT
berth_postgres_start >/dev/null
berth_s3_start >/dev/null
DB=soak_$$
psql "$BERTH_TEST_POSTGRES_URL" -qc "CREATE DATABASE $DB" >/dev/null
head -c 32 /dev/urandom >"$T/master.key" && chmod 600 "$T/master.key"
export AWS_ACCESS_KEY_ID=berth-test AWS_SECRET_ACCESS_KEY=berth-test  # moto's, for the servers' S3
export BERTH_ROOT_ACCESS_KEY_ID=AKIASOAKROOT00000001 BERTH_ROOT_SECRET_ACCESS_KEY=soak-root-secret-$$-0123456789
export SOAK_KEY_ID=$BERTH_ROOT_ACCESS_KEY_ID SOAK_SECRET=$BERTH_ROOT_SECRET_ACCESS_KEY
COMMON=(--database-url "${BERTH_TEST_POSTGRES_URL%/*}/$DB" --master-key-file "$T/master.key"
  --s3-bucket "$BERTH_TEST_S3_BUCKET" --s3-endpoint "$BERTH_TEST_S3_ENDPOINT" --s3-allow-http --s3-prefix "soak-$$"
  --gc-interval-secs 20 --gc-grace-secs 10 --lifecycle-interval-secs 15)
start_berth "$T/a" "${COMMON[@]}"; A=$BERTH_ADDR; PIDS+=("$BERTH_PID"); PID_A=$BERTH_PID
start_berth "$T/b" "${COMMON[@]}"; B=$BERTH_ADDR; PIDS+=("$BERTH_PID"); PID_B=$BERTH_PID
BERTH_PID=
# Each repository keeps its newest 25 images; the deleter removes older ones too.
python3 -c 'import awscli' 2>/dev/null || pip install -q awscli
export AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
ecr() { AWS_ACCESS_KEY_ID=$SOAK_KEY_ID AWS_SECRET_ACCESS_KEY=$SOAK_SECRET aws --endpoint-url "http://$A" ecr "$@"; }
for i in 0 1 2 3; do
  ecr create-repository --repository-name "soak/app$i" >/dev/null
  ecr put-lifecycle-policy --repository-name "soak/app$i" --lifecycle-policy-text \
    '{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":25},"action":{"type":"expire"}}]}' >/dev/null
done
echo "soak: $MINUTES min on $A and $B (S3 + PostgreSQL), report in $REPORT"
if python3 "$ROOT/tests/soak/workload.py" "$MINUTES" "$A" "$PID_A" "$B" "$PID_B" "$REPORT"; then
  echo "soak: passed"
else
  echo "soak: FAILED (errors or growth; see $REPORT)"; tail -n 5 "$T/a.log" "$T/b.log"; exit 1
fi
