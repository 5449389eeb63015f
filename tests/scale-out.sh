#!/usr/bin/env bash
# The scale-out configuration end to end: two `berth serve` processes sharing one S3 bucket
# (blobs) and one PostgreSQL database (metadata). Images pushed through one are pulled through
# the other with skopeo; one chunked upload is started on one server and finished on the other.
#
# Needs BERTH_TEST_POSTGRES_URL (scripts/postgres.sh) and BERTH_TEST_S3_ENDPOINT +
# BERTH_TEST_S3_BUCKET (scripts/s3.sh), which scripts/test starts.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${BERTH_SHARED_DIR:-$ROOT/../shared}
source "$ROOT/scripts/lib.sh"
: "${BERTH_TEST_POSTGRES_URL:?start PostgreSQL with scripts/postgres.sh}"
: "${BERTH_TEST_S3_ENDPOINT:?start the S3 server with scripts/s3.sh}"
T=$(mktemp -d)
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do BERTH_PID=$pid stop_berth; done; rm -rf "$T"; }
trap cleanup EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "PASS: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
expect() { if [[ "$2" == "$3" ]]; then ok "$1"; else bad "$1 (got '$2', want '$3')"; fi; }

nonce=$RANDOM$RANDOM
export BERTH_DATABASE_URL=$BERTH_TEST_POSTGRES_URL
export BERTH_S3_BUCKET=${BERTH_TEST_S3_BUCKET:-berth-test} BERTH_S3_ENDPOINT=$BERTH_TEST_S3_ENDPOINT
export BERTH_S3_ALLOW_HTTP=true BERTH_S3_PREFIX=scale-out-$nonce
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-berth-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-berth-test}
export BERTH_ROOT_ACCESS_KEY_ID=AKIASCALEOUTTEST0001 BERTH_ROOT_SECRET_ACCESS_KEY=scale-out-secret-0123456789abcdefghijklm

# Every server of a deployment needs the same master key (secrets in the database are encrypted
# under it; token, session and download-URL keys derive from it). Server one creates it, unless
# BERTH_MASTER_KEY_FILE names one for every server already (as scripts/test does); server two
# gets a copy of server one's keys directory.
start_berth "$T/one"
ONE=$BERTH_ADDR; PIDS+=("$BERTH_PID")
[[ -n ${BERTH_MASTER_KEY_FILE:-} ]] || { mkdir -p "$T/two" && cp -a "$T/one/keys" "$T/two/keys"; }
start_berth "$T/two"
TWO=$BERTH_ADDR; PIDS+=("$BERTH_PID")
ok "two servers on one bucket and one database ($ONE, $TWO)"
TOKEN=$("$BERTH_BIN" token --data-dir "$T/one")
CREDS=AWS:$TOKEN
SK=(skopeo --insecure-policy)
REPO=scale-out/app-$nonce

# Push two single-arch images and an index through server one.
MKIMG="$SHARED/e2e/multiarch-flow.sh"
bash "$MKIMG" --mkimg "$T/amd64" amd64 oci "$nonce" >"$T/amd64.json"
bash "$MKIMG" --mkimg "$T/arm64" arm64 oci "$nonce" v8 >"$T/arm64.json"
for a in amd64 arm64; do
  if "${SK[@]}" copy --dest-tls-verify=false --dest-creds "$CREDS" --preserve-digests "dir:$T/$a" \
    "docker://$ONE/$REPO:$a" >"$T/push.log" 2>&1; then ok "skopeo push $a through server one"
  else bad "skopeo push $a through server one"; cat "$T/push.log"; fi
done
jq -n --slurpfile a "$T/amd64.json" --slurpfile b "$T/arm64.json" '{schemaVersion:2, mediaType:"application/vnd.oci.image.index.v1+json",
  manifests:[{mediaType:$a[0].media_type, digest:$a[0].digest, size:$a[0].size, platform:{architecture:"amd64", os:"linux"}},
             {mediaType:$b[0].media_type, digest:$b[0].digest, size:$b[0].size, platform:{architecture:"arm64", os:"linux", variant:"v8"}}]}' \
  | tr -d '\n' >"$T/index.json"
code=$(curl -s -o /dev/null -w '%{http_code}' -u "$CREDS" -X PUT -H 'Content-Type: application/vnd.oci.image.index.v1+json' \
  --data-binary @"$T/index.json" "http://$ONE/v2/$REPO/manifests/multi")
expect "PUT index through server one -> 201" "$code" 201

# Pull each platform through server two: manifest and layer bytes come back identical.
for spec in "amd64::amd64" "arm64:v8:arm64"; do
  IFS=: read -r arch variant want <<<"$spec"
  ov=(--override-arch "$arch" --override-os linux); [[ -n $variant ]] && ov+=(--override-variant "$variant")
  if "${SK[@]}" "${ov[@]}" copy --src-tls-verify=false --src-creds "$CREDS" "docker://$TWO/$REPO:multi" "dir:$T/pull-$arch" \
    >"$T/pull.log" 2>&1; then
    got=sha256:$(sha256sum <"$T/pull-$arch/manifest.json" | cut -c1-64)
    expect "$arch manifest pulled through server two" "$got" "$(jq -r .digest "$T/$want.json")"
    layer=$(jq -r .layer_digest "$T/$want.json" | cut -c8-)
    expect "$arch layer from server two verifies" "$(sha256sum <"$T/pull-$arch/$layer" | cut -c1-64)" "$layer"
  else bad "skopeo pull $arch through server two"; cat "$T/pull.log"; fi
done

# One chunked upload across both servers: POST and first PATCH on one, second PATCH and PUT on two.
head -c 3000000 /dev/urandom >"$T/blob"
head -c 1000000 "$T/blob" >"$T/part1"; tail -c +1000001 "$T/blob" >"$T/part2"
digest=sha256:$(sha256sum <"$T/blob" | cut -c1-64)
location=$(curl -s -D - -o /dev/null -u "$CREDS" -X POST "http://$ONE/v2/$REPO/blobs/uploads/" |
  tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
location=${location#http*://*/}; location=/${location#/}
code=$(curl -s -o /dev/null -w '%{http_code}' -u "$CREDS" -X PATCH -H 'Content-Type: application/octet-stream' \
  -H 'Content-Range: 0-999999' --data-binary @"$T/part1" "http://$ONE$location")
expect "first chunk on server one -> 202" "$code" 202
range=$(curl -s -D - -o /dev/null -u "$CREDS" "http://$TWO$location" | tr -d '\r' | sed -n 's/^[Rr]ange: //p')
expect "server two sees the upload's progress" "$range" "0-999999"
code=$(curl -s -o /dev/null -w '%{http_code}' -u "$CREDS" -X PATCH -H 'Content-Type: application/octet-stream' \
  -H 'Content-Range: 1000000-2999999' --data-binary @"$T/part2" "http://$TWO$location")
expect "second chunk on server two -> 202" "$code" 202
sep='?'; [[ $location == *\?* ]] && sep='&'
code=$(curl -s -o /dev/null -w '%{http_code}' -u "$CREDS" -X PUT "http://$TWO$location${sep}digest=$digest")
expect "finish on server two -> 201" "$code" 201
got=sha256:$(curl -s -u "$CREDS" "http://$ONE/v2/$REPO/blobs/$digest" | sha256sum | cut -c1-64)
expect "the blob reads back whole through server one" "$got" "$digest"
got=$(curl -s -u "$CREDS" -H 'Range: bytes=1000000-1000009' "http://$ONE/v2/$REPO/blobs/$digest" | od -An -tx1 | tr -d ' \n')
expect "a range of it too" "$got" "$(tail -c +1000001 "$T/blob" | head -c 10 | od -An -tx1 | tr -d ' \n')"
# What PostgreSQL refuses to hold (a NUL, once the path or query is decoded) is a 4xx, not a 500.
expect "an upload id holding a NUL -> 404" "$(curl -s -o /dev/null -w '%{http_code}' -u "$CREDS" "http://$ONE/v2/$REPO/blobs/uploads/%00")" 404
expect "tags/list?last= holding a NUL -> 200" "$(curl -s -o /dev/null -w '%{http_code}' -u "$CREDS" "http://$ONE/v2/$REPO/tags/list?last=a%00b")" 200
expect "_catalog?last= holding a NUL -> 200" "$(curl -s -o /dev/null -w '%{http_code}' -u "$CREDS" "http://$ONE/v2/_catalog?last=%00")" 200

# A third server shares only the master key (--master-key-file), not a copy of the keys
# directory: a layer download URL server one hands out works there too.
start_berth "$T/three" --master-key-file "${BERTH_MASTER_KEY_FILE:-$T/one/keys/master.key}"
THREE=$BERTH_ADDR; PIDS+=("$BERTH_PID")
layer=$(jq -r .layer_digest "$T/amd64.json")
url=$(AWS_ACCESS_KEY_ID=$BERTH_ROOT_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$BERTH_ROOT_SECRET_ACCESS_KEY \
  aws --endpoint-url "http://$ONE" --region us-east-1 ecr get-download-url-for-layer \
  --repository-name "$REPO" --layer-digest "$layer" --query downloadUrl --output text)
path=/${url#http*://*/}
got=sha256:$(curl -s "http://$THREE$path" | sha256sum | cut -c1-64)
expect "server one's download URL works on a server sharing its master key file" "$got" "$layer"

# The data went to the bucket, not to any server's disk (moto answers unsigned listings).
keys=$(curl -s "$BERTH_S3_ENDPOINT/$BERTH_S3_BUCKET?list-type=2&prefix=$BERTH_S3_PREFIX/blobs/" | grep -o '<Key>[^<]*</Key>' | wc -l)
expect "blobs are objects in the bucket (config + layer per image, the chunked one)" "$keys" 5
expect "no blob data on the servers' disks" "$(find "$T/one" "$T/two" "$T/three" -path '*blobs*' | wc -l)" 0

echo; echo "scale-out: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
