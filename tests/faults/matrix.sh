#!/usr/bin/env bash
# The fault matrix: real components failing under a real `berth serve` while skopeo pushes.
#   - S3 (moto behind tests/faults/s3-fault-proxy.py) answering 500, 503, SlowDown, resetting
#     connections and stalling on a share of requests;
#   - PostgreSQL restarted in the middle of pushes;
#   - the data dir's filesystem full (a small tmpfs), then freed;
#   - kill -9 during garbage collection, and in the middle of lifecycle expiry (a watcher on the
#     database kills the server once some but not all expired images are gone).
# After each: every push skopeo saw succeed pulls back with the same manifest digest and verified
# blobs (never a wrong success), no tag points at anything incomplete, and the server carries on
# by itself (new pushes work without a restart, except after kill -9, which restarts it).
#
#   tests/faults/matrix.sh [--images N]    # N pushes per fault (default 12)
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$ROOT/scripts/lib.sh"
source "$ROOT/scripts/postgres.sh"
source "$ROOT/scripts/s3.sh"
IMAGES=12
while (($#)); do
  case $1 in
    --images) IMAGES=$2; shift 2 ;;
    *) echo "usage: $0 [--images N]" >&2; exit 2 ;;
  esac
done
apt_install skopeo jq curl
T=$(mktemp -d)
PROXY_PID=
cleanup() {
  stop_berth
  [[ -n $PROXY_PID ]] && kill "$PROXY_PID" 2>/dev/null
  mountpoint -q "$T/small" 2>/dev/null && umount "$T/small"
  rm -rf "$T"
}
trap cleanup EXIT
source "$ROOT/tests/clients/lib/common.bash"
SK=(skopeo --insecure-policy)
# user:secret for the sections whose server wants credentials.
CREDS=

# mkimage DIR SIZE: a one-layer image in skopeo's dir: layout, with SIZE random bytes of layer
# (incompressible, so its size on disk is what was asked). Prints the manifest's digest.
mkimage() {
  python3 - "$1" "$2" <<'EOF'
import hashlib, json, os, sys
out, size = sys.argv[1], int(sys.argv[2])
os.makedirs(out, exist_ok=True)
def blob(data):
    digest = hashlib.sha256(data).hexdigest()
    open(os.path.join(out, digest), "wb").write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}
layer = blob(os.urandom(size))
config = blob(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}).encode())
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": dict(config, mediaType="application/vnd.oci.image.config.v1+json"),
    "layers": [dict(layer, mediaType="application/vnd.oci.image.layer.v1.tar")]}).encode()
open(os.path.join(out, "manifest.json"), "wb").write(manifest)
open(os.path.join(out, "version"), "w").write("Directory Transport Version: 1.1\n")
print("sha256:" + hashlib.sha256(manifest).hexdigest())
EOF
}

# push_all PREFIX COUNT SIZE: pushes COUNT new images as PREFIX-i:v1; the ones skopeo reports
# pushed go to $T/acked (repo digest), the others to $T/refused with skopeo's error.
push_all() {
  local prefix=$1 count=$2 size=$3 i digest
  for i in $(seq 1 "$count"); do
    digest=$(mkimage "$T/img/$prefix-$i" "$size")
    if "${SK[@]}" copy -q --preserve-digests --dest-tls-verify=false "dir:$T/img/$prefix-$i" "docker://$BERTH_ADDR/faults/$prefix-$i:v1" 2>"$T/push.err"; then
      echo "faults/$prefix-$i $digest" >>"$T/acked"
    else
      echo "faults/$prefix-$i $(tr '\n' ' ' <"$T/push.err" | tail -c 300)" >>"$T/refused"
    fi
    rm -rf "$T/img/$prefix-$i"
  done
}

# verify_acked DESC: every acknowledged push pulls back whole, with the digest that was pushed.
verify_acked() {
  local desc=$1 repo digest good=0 wrong=0
  [[ -s $T/acked ]] || { bad "$desc: no push was acknowledged at all"; return; }
  while read -r repo digest; do
    rm -rf "$T/pulled"
    if "${SK[@]}" copy -q --src-tls-verify=false ${CREDS:+--src-creds "$CREDS"} "docker://$BERTH_ADDR/$repo:v1" "dir:$T/pulled" 2>"$T/pull.err" &&
      [[ $(sha256_of "$T/pulled/manifest.json") == "$digest" ]]; then
      good=$((good + 1))
    else
      wrong=$((wrong + 1)); echo "    | $repo: $(head -c 300 "$T/pull.err")"
    fi
  done <"$T/acked"
  expect "$desc: every acknowledged image pulls back whole ($good acknowledged)" "$wrong" 0
}

# no_broken_tags DESC: each repository's tags resolve to manifests whose blobs are all there.
no_broken_tags() {
  local desc=$1 repo tag broken=0
  for repo in $(curl -s ${CREDS:+-u "$CREDS"} "http://$BERTH_ADDR/v2/_catalog?n=10000" | jq -r '.repositories[]'); do
    for tag in $(curl -s ${CREDS:+-u "$CREDS"} "http://$BERTH_ADDR/v2/$repo/tags/list" | jq -r '.tags // [] | .[]'); do
      rm -rf "$T/pulled"
      "${SK[@]}" copy -q --src-tls-verify=false ${CREDS:+--src-creds "$CREDS"} "docker://$BERTH_ADDR/$repo:$tag" "dir:$T/pulled" 2>/dev/null ||
        { broken=$((broken + 1)); echo "    | $repo:$tag does not pull"; }
    done
  done
  expect "$desc: every tag the registry lists pulls whole" "$broken" 0
}

refused_retryably() {
  local desc=$1 n
  n=$(wc -l <"$T/refused" 2>/dev/null || echo 0)
  if [[ $n -eq 0 ]]; then ok "$desc: no push failed"; return; fi
  # A 5xx of any kind (507: the storage is full) says the fault is the server's, not the request's.
  if grep -qE "\b(500|502|503|504|507)\b|internal|unavailable|retry|reset|EOF|timeout" "$T/refused"; then
    ok "$desc: the $n failed pushes failed with server errors a client retries"
  else
    bad "$desc: failed pushes got non-retryable answers:"; sed 's/^/    | /' "$T/refused" | head -5
  fi
}

ready() { [[ $(curl -s -o /dev/null -w '%{http_code}' "http://$BERTH_ADDR/readyz") == 200 ]]; }
wait_ready() { for _ in $(seq 1 100); do ready && return 0; sleep 0.2; done; return 1; }
reset_ledger() { : >"$T/acked"; : >"$T/refused"; }

section "S3 fails on 25% of requests: 500, 503, SlowDown, resets, stalls"
berth_s3_start >/dev/null
python3 "$ROOT/tests/faults/s3-fault-proxy.py" "$BERTH_TEST_S3_ENDPOINT" "$T/proxy.port" &
PROXY_PID=$!
for _ in $(seq 1 50); do [[ -s $T/proxy.port ]] && break; sleep 0.1; done
FAULTS=http://127.0.0.1:$(cat "$T/proxy.port")
AWS_ACCESS_KEY_ID=berth-test AWS_SECRET_ACCESS_KEY=berth-test start_berth "$T/s3" --no-auth \
  --s3-bucket "$BERTH_TEST_S3_BUCKET" --s3-endpoint "$FAULTS" --s3-allow-http --s3-prefix "faults-$$"
reset_ledger
curl -s -X POST -d '{"rate": 0.25, "modes": ["500", "503", "slowdown", "reset", "stall"], "seed": 7}' "$FAULTS/__faults" >/dev/null
push_all s3 "$IMAGES" 300000
echo "    faults injected: $(curl -s "$FAULTS/__faults")"
refused_retryably "S3 faults"
curl -s -X POST -d '{"rate": 0}' "$FAULTS/__faults" >/dev/null
verify_acked "S3 faults"
no_broken_tags "S3 faults"
reset_ledger; push_all s3-after 2 1000
expect "S3 healthy again: pushes work without a restart" "$(wc -l <"$T/acked")" 2
stop_berth
kill "$PROXY_PID"; PROXY_PID=

section "PostgreSQL restarted in the middle of pushes"
berth_postgres_start >/dev/null
# A database of its own, so the restart section neither sees nor disturbs other suites' data.
psql "$BERTH_TEST_POSTGRES_URL" -qc "CREATE DATABASE faults_$$" >/dev/null
PG_URL=${BERTH_TEST_POSTGRES_URL%/*}/faults_$$
start_berth "$T/pg" --no-auth --database-url "$PG_URL"
reset_ledger
push_all pg "$IMAGES" 100000 &
PUSHER=$!
for _ in $(seq 1 100); do [[ $(wc -l <"$T/acked") -ge 2 ]] && break; sleep 0.1; done
PG_BIN=$(_berth_pg_bindir)
_berth_pg_as_owner "$PG_BIN/pg_ctl" restart -D "$BERTH_POSTGRES_DIR/data" -m immediate -w -t 60 >/dev/null
echo "    PostgreSQL restarted (immediate) after $(wc -l <"$T/acked") of $IMAGES pushes"
wait "$PUSHER"
refused_retryably "PostgreSQL restart"
wait_ready && ok "ready again after the database came back" || bad "not ready after the database came back"
verify_acked "PostgreSQL restart"
no_broken_tags "PostgreSQL restart"
reset_ledger; push_all pg-after 2 1000
expect "pushes work again without a restart" "$(wc -l <"$T/acked")" 2
stop_berth
psql "$BERTH_TEST_POSTGRES_URL" -qc "DROP DATABASE faults_$$" >/dev/null || true

section "the data dir's filesystem fills up, then has room again"
mkdir -p "$T/small"
mount -t tmpfs -o size=48m tmpfs "$T/small"
start_berth "$T/small/data" --no-auth --audit-log "$T/small/audit.log"
head -c $((34 << 20)) /dev/urandom >"$T/small/filler"
reset_ledger
push_all full "$IMAGES" $((2 << 20))
[[ -s $T/refused ]] && ok "pushes were refused once the disk was full ($(wc -l <"$T/refused") of $IMAGES)" ||
  bad "the disk never filled up"
refused_retryably "disk full"
grep -q '\b507\b' "$T/refused" && ok "disk full: refused with 507 Insufficient Storage, which says so" ||
  bad "disk full: no refusal was a 507"
verify_acked "disk full"
no_broken_tags "disk full"
rm -f "$T/small/filler"
reset_ledger; push_all full-after 2 $((1 << 20))
expect "with room again, pushes work without a restart" "$(wc -l <"$T/acked")" 2
# Now the metadata database itself meets the full disk (a tag is metadata only): its commits
# fail, and once there is room they work again without a restart (SQLite rolls back on its own
# after SQLITE_FULL; the writer connection must not stay stuck in a transaction it no longer has).
read -r repo digest <"$T/acked"
ct=$(curl -s -D - -o "$T/full-manifest" -H "Accept: $ALL_MANIFEST_TYPES" "http://$BERTH_ADDR/v2/$repo/manifests/$digest" |
  tr -d '\r' | awk 'tolower($1) == "content-type:" {print $2}')
put_tag() {
  curl -s -o /dev/null -w '%{http_code}' -X PUT -H "Content-Type: $ct" --data-binary @"$T/full-manifest" \
    "http://$BERTH_ADDR/v2/$repo/manifests/$1"
}
dd if=/dev/zero of="$T/small/filler" bs=64k 2>/dev/null || true  # until the disk is full
dd if=/dev/zero of="$T/small/filler2" bs=4k 2>/dev/null || true
long=$(printf 'x%.0s' {1..100})
refused=""
for i in $(seq 1 2000); do
  code=$(put_tag "full-$i-$long")
  [[ $code == 201 ]] || { refused=$code; break; }
done
[[ -n $refused ]] && ok "tagging was refused once the database could not grow ($refused after $((i - 1)) tags)" ||
  bad "the database never met the full disk"
# The ECR API says so too (a ServerException, which SDKs retry), rather than an opaque error.
rc=0; AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_DEFAULT_REGION=us-east-1 AWS_MAX_ATTEMPTS=1 \
  aws --endpoint-url "http://$BERTH_ADDR" ecr create-repository --repository-name faults/full-ecr \
  >/dev/null 2>"$T/ecr-full.err" || rc=$?
grep -q "ServerException.*storage is full" "$T/ecr-full.err" &&
  ok "the ECR API's refusal says the storage is full" ||
  bad "the ECR API's refusal (exit $rc): $(head -c 300 "$T/ecr-full.err")"
code=$(curl -s -o "$T/readyz-full" -w '%{http_code}' "http://$BERTH_ADDR/readyz")
[[ $code == 503 ]] && grep -q "full" "$T/readyz-full" && ok "/readyz is not ready while the disk is full" ||
  bad "/readyz on a full disk: $code $(head -c 300 "$T/readyz-full")"
rm -f "$T/small/filler" "$T/small/filler2"
expect "with room again, the database takes writes without a restart" "$(put_tag after-full)" 201
ready && ok "/readyz says ready" || bad "/readyz is not ready after the disk has room again"
# Records the full disk cut short were taken back: every line of the audit log is one record.
bad_lines=$(python3 -c '
import json, sys
bad = 0
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        bad += not isinstance(json.loads(line), dict)
    except ValueError:
        bad += 1
print(bad)' "$T/small/audit.log")
expect "every audit log line is whole JSON after the disk was full ($(wc -l <"$T/small/audit.log") lines)" "$bad_lines" 0
kill -0 "$BERTH_PID" && ok "the server stayed up throughout" || bad "the server died"
stop_berth
umount "$T/small"

section "kill -9 during garbage collection (the gc command, then the server's own pass)"
start_berth "$T/gc" --no-auth --gc-interval-secs 0
reset_ledger
push_all gc "$IMAGES" 50000
# Half the images lose their only tag and manifest: their blobs become garbage.
head -n $((IMAGES / 2)) "$T/acked" >"$T/doomed"; tail -n +$((IMAGES / 2 + 1)) "$T/acked" >"$T/kept"
while read -r repo digest; do
  curl -s -o /dev/null -X DELETE "http://$BERTH_ADDR/v2/$repo/manifests/$digest"
done <"$T/doomed"
cp "$T/kept" "$T/acked"
sleep 1.1  # past the grace period: the doomed blobs are garbage now
"$BERTH_BIN" gc --data-dir "$T/gc" --gc-grace-secs 1 >"$T/gc.out" 2>&1 &
GC=$!
sleep 0.2
kill -9 "$GC" 2>/dev/null || true
wait "$GC" 2>/dev/null || true
verify_acked "kill -9 of berth gc"
no_broken_tags "kill -9 of berth gc"
stop_berth
start_berth "$T/gc" --no-auth --gc-interval-secs 1 --gc-grace-secs 1
sleep 1.2
kill -9 "$BERTH_PID"; wait "$BERTH_PID" 2>/dev/null || true; BERTH_PID=
start_berth "$T/gc" --no-auth --gc-interval-secs 0
verify_acked "kill -9 of the server during its GC pass"
no_broken_tags "kill -9 of the server during its GC pass"
"$BERTH_BIN" gc --data-dir "$T/gc" --gc-grace-secs 1 >"$T/gc.out" 2>&1 && ok "the next GC pass completes" ||
  { bad "the next GC pass failed"; sed 's/^/    | /' "$T/gc.out"; }
verify_acked "after the next GC pass"
# A blob goes in three passes a grace period apart: its link is stamped unreferenced, then
# released (the blob noted), then the blob deleted. The killed passes above may have done none of
# that, so three full passes follow the one above.
for round in 2 3; do
  sleep 1.2
  "$BERTH_BIN" gc --data-dir "$T/gc" --gc-grace-secs 1 >"$T/gc.out" 2>&1 ||
    { bad "GC pass $round failed"; sed 's/^/    | /' "$T/gc.out"; }
done
left=$(find "$T/gc/blobs" -type f -size +40k | wc -l)
expect "the deleted images' layers are gone, the kept ones stay" "$left" $((IMAGES - IMAGES / 2))
stop_berth

section "kill -9 in the middle of lifecycle expiry"
# Enough images that expiring them takes a measurable while (one delete transaction each), so a
# watcher reading the database can kill the server once the first are gone and the rest not.
LC_IMAGES=$((IMAGES * 25)) LC_KEEP=3
export BERTH_ROOT_ACCESS_KEY_ID=AKIAFAULTMATRIXROOT1 BERTH_ROOT_SECRET_ACCESS_KEY=fault-matrix-root-secret-0123456789
export AWS_ACCESS_KEY_ID=$BERTH_ROOT_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$BERTH_ROOT_SECRET_ACCESS_KEY AWS_DEFAULT_REGION=us-east-1
CREDS=$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY
start_berth "$T/lc" --no-create-on-push
python3 -c 'import awscli' 2>/dev/null || pip install -q awscli
aws --endpoint-url "http://$BERTH_ADDR" ecr create-repository --repository-name faults/lc >/dev/null
# LC_IMAGES images tagged t1…tN, pushed in order (the last few apart, so push times rank them):
# one shared layer, a config of their own each. Prints "tag digest" per image.
python3 - "$BERTH_ADDR" "$CREDS" "$LC_IMAGES" >"$T/lc-images" <<'PY'
import base64, hashlib, json, os, sys, time, urllib.request
addr, creds, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
auth = "Basic " + base64.b64encode(creds.encode()).decode()
def call(method, path, body, content_type):
    req = urllib.request.Request(f"http://{addr}/v2/faults/lc/{path}", data=body, method=method,
                                 headers={"Authorization": auth, "Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 201, r.status
def blob(data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    call("POST", f"blobs/uploads/?digest={digest}", data, "application/octet-stream")
    return {"digest": digest, "size": len(data)}
layer = dict(blob(os.urandom(50000)), mediaType="application/vnd.oci.image.layer.v1.tar")
for i in range(1, count + 1):
    config = dict(blob(json.dumps({"architecture": "amd64", "os": "linux", "n": i}).encode()),
                  mediaType="application/vnd.oci.image.config.v1+json")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": config, "layers": [layer]}).encode()
    if i > count - 4:
        time.sleep(0.05)
    call("PUT", f"manifests/t{i}", manifest, "application/vnd.oci.image.manifest.v1+json")
    print(f"t{i} sha256:{hashlib.sha256(manifest).hexdigest()}")
PY
expect "$LC_IMAGES images pushed" "$(wc -l <"$T/lc-images")" "$LC_IMAGES"
# The watcher reads the server's SQLite database (WAL: a reader never blocks the writer) and
# sends SIGKILL the moment the first image is gone.
python3 - "$T/lc/metadata.db" "$BERTH_PID" "$LC_IMAGES" <<'PY' &
import os, signal, sqlite3, sys, time
db, pid, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
count = lambda: connection.execute("SELECT count(*) FROM manifests WHERE repo = 'faults/lc'").fetchone()[0]
deadline = time.monotonic() + 120
while count() == total and time.monotonic() < deadline:
    time.sleep(0.002)
os.kill(pid, signal.SIGKILL)
PY
WATCHER=$!
aws --endpoint-url "http://$BERTH_ADDR" ecr put-lifecycle-policy --repository-name faults/lc --lifecycle-policy-text \
  "{\"rules\":[{\"rulePriority\":1,\"selection\":{\"tagStatus\":\"any\",\"countType\":\"imageCountMoreThan\",\"countNumber\":$LC_KEEP},\"action\":{\"type\":\"expire\"}}]}" >/dev/null
wait "$WATCHER"; wait "$BERTH_PID" 2>/dev/null || true; BERTH_PID=
# What the killed server left on disk, read before a restart touches it.
left=$(sqlite3 "$T/lc/metadata.db" "SELECT count(*) FROM manifests WHERE repo = 'faults/lc'")
logged=$(grep -c 'lifecycle: image expired' "$T/lc.log" || true)
echo "    killed with $left of $LC_IMAGES images left ($((LC_IMAGES - LC_KEEP)) to expire; $logged expiries logged)"
if [[ $left -lt $LC_IMAGES && $left -gt $LC_KEEP ]]; then ok "the kill came in the middle of expiry"
# A watcher kept off the CPU for the whole expiry kills too late: nothing of this case to check.
elif [[ $left -eq $LC_KEEP ]]; then skip "the kill came after expiry had finished (the watcher was not scheduled in time)"
else bad "the kill did not come mid-expiry ($left of $LC_IMAGES left, $LC_KEEP to keep)"; fi
dangling=$(sqlite3 "$T/lc/metadata.db" "SELECT count(*) FROM tags t WHERE repo = 'faults/lc' AND NOT EXISTS
  (SELECT 1 FROM manifests m WHERE m.repo = t.repo AND m.digest = t.digest)")
expect "no tag outlives its image in what the kill left" "$dangling" 0
start_berth "$T/lc" --no-create-on-push --lifecycle-interval-secs 1
count=
for _ in $(seq 1 150); do
  count=$(aws --endpoint-url "http://$BERTH_ADDR" ecr list-images --repository-name faults/lc --query 'length(imageIds)')
  [[ $count == "$LC_KEEP" ]] && break; sleep 0.2
done
expect "expiry finishes after the restart: $LC_KEEP images left" "$count" "$LC_KEEP"
tail -n "$LC_KEEP" "$T/lc-images" >"$T/lc-kept"
expect "the newest $LC_KEEP stay, every other image is gone" \
  "$(aws --endpoint-url "http://$BERTH_ADDR" ecr list-images --repository-name faults/lc \
      --query 'imageIds[].[imageTag,imageDigest]' --output text | sort)" "$(tr ' ' '\t' <"$T/lc-kept" | sort)"
# pull_kept DESC: the kept images pull whole, with their pushed digests.
pull_kept() {
  local tag digest good=0
  while read -r tag digest; do
    rm -rf "$T/pulled"
    "${SK[@]}" copy -q --src-tls-verify=false --src-creds "$CREDS" "docker://$BERTH_ADDR/faults/lc:$tag" "dir:$T/pulled" &&
      [[ $(sha256_of "$T/pulled/manifest.json") == "$digest" ]] && good=$((good + 1))
  done <"$T/lc-kept"
  expect "$1: the kept images pull whole with their pushed digests" "$good" "$LC_KEEP"
}
pull_kept "kill -9 mid-expiry"
no_broken_tags "kill -9 mid-expiry"
stop_berth
# GC keeps exactly the kept images' blobs. Three passes, a grace period apart: the first
# releases the expired images' links (untouched for the grace period), the second sees their
# blobs unlinked, the third deletes them.
for phase in release mark delete; do
  sleep 1.2
  "$BERTH_BIN" gc --data-dir "$T/lc" --gc-grace-secs 1 >"$T/gc.out" 2>&1 ||
    { bad "the $phase GC pass failed"; sed 's/^/    | /' "$T/gc.out"; }
done
sed 's/^/    gc: /' "$T/gc.out"
expect "after GC the blobs left are the kept images' configs and their shared layer" \
  "$(find "$T/lc/blobs" -type f | wc -l)" $((LC_KEEP + 1))
start_berth "$T/lc" --no-create-on-push
pull_kept "after GC"
stop_berth

summary fault-matrix
