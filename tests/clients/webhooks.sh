#!/usr/bin/env bash
# Webhooks with real clients: a Python receiver (http.server) on loopback, `berth serve` with a
# `[[webhooks]]` entry, the shared multi-arch flow (docker CLI + skopeo) pushing to hooks/app and
# the aws CLI deleting an image. Every event must arrive signed (HMAC-SHA256 over the body with
# the shared secret), in ECR's EventBridge shape: a PUSH for each platform image, the index's PUSH
# naming its tag, and the delete as a DELETE.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${BERTH_SHARED_DIR:-$ROOT/../shared}
source "$ROOT/scripts/lib.sh"
source "$ROOT/tests/clients/lib/common.bash"
T=$(mktemp -d)
RECEIVER_PID=
trap 'stop_berth; [[ -n $RECEIVER_PID ]] && kill "$RECEIVER_PID" 2>/dev/null; rm -rf "$T"' EXIT

SECRET=webhooks-client-secret
cat >"$T/receiver.py" <<'PY'
import http.server, json, sys
out = open(sys.argv[1], "a")
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        out.write(json.dumps({"signature": self.headers.get("X-Berth-Signature-256"),
                              "id": self.headers.get("X-Berth-Event-Id"), "body": body.decode()}) + "\n")
        out.flush()
        self.send_response(204)
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
print(server.server_address[1], flush=True)
server.serve_forever()
PY
python3 "$T/receiver.py" "$T/events.jsonl" >"$T/port" &
RECEIVER_PID=$!
for _ in $(seq 1 50); do [[ -s $T/port ]] && break; sleep 0.1; done
cat >"$T/berth.toml" <<TOML
[[webhooks]]
name = "receiver"
url = "http://127.0.0.1:$(cat "$T/port")/hook"
secret = "$SECRET"
repository_prefixes = ["hooks/"]
TOML

export BERTH_ROOT_ACCESS_KEY_ID=AKIAWEBHOOKSCLIENT01 BERTH_ROOT_SECRET_ACCESS_KEY=webhooks-client-root-0123456789abcdefghij
start_berth "$T/data" --config "$T/berth.toml"
REG=$BERTH_ADDR
TOKEN=$("$BERTH_BIN" token --data-dir "$T/data")

section "the shared multi-arch flow pushes hooks/app:latest"
if REPO=hooks/app CROSS_REPO=0 OCI=0 bash "$SHARED/e2e/multiarch-flow.sh" "$REG" AWS "$TOKEN" >"$T/flow.log" 2>&1; then
  ok "multiarch-flow.sh pushed hooks/app:latest"
else bad "multiarch-flow.sh"; tail -20 "$T/flow.log"; fi
INDEX=$(curl -sf -u "AWS:$TOKEN" -H "Accept: $ALL_MANIFEST_TYPES" -o /dev/null -D - "http://$REG/v2/hooks/app/manifests/latest" | header /dev/stdin docker-content-digest)
CHILDREN=$(curl -sf -u "AWS:$TOKEN" -H "Accept: $ALL_MANIFEST_TYPES" "http://$REG/v2/hooks/app/manifests/latest" | jq -r '.manifests[].digest' | sort | tr '\n' ' ')

section "the aws CLI deletes the index"
export AWS_ACCESS_KEY_ID=$BERTH_ROOT_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$BERTH_ROOT_SECRET_ACCESS_KEY \
  AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
check "aws ecr batch-delete-image hooks/app@index" \
  aws --endpoint-url "http://$REG" ecr batch-delete-image --repository-name hooks/app --image-ids "imageDigest=$INDEX" || true

section "the receiver's events"
for _ in $(seq 1 100); do
  # The receiver may be mid-line: wait for the DELETE's line to be whole.
  grep -q '\\"DELETE\\"' "$T/events.jsonl" 2>/dev/null && [[ $(tail -c 1 "$T/events.jsonl") == "" ]] && break
  sleep 0.2
done
verdict=$(SECRET=$SECRET INDEX=$INDEX CHILDREN=$CHILDREN python3 - "$T/events.jsonl" <<'PY'
import hashlib, hmac, json, os, sys
events = [json.loads(line) for line in open(sys.argv[1])]
problems = []
for e in events:
    want = "sha256=" + hmac.new(os.environ["SECRET"].encode(), e["body"].encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, e["signature"] or ""):
        problems.append("bad signature")
    body = json.loads(e["body"])
    if (body["detail-type"], body["source"], body["id"]) != ("ECR Image Action", "aws.ecr", e["id"]):
        problems.append(f"not an ECR Image Action: {body}")
details = [json.loads(e["body"])["detail"] for e in events]
pushes = [(d["image-digest"], d.get("image-tag")) for d in details if d["action-type"] == "PUSH"]
for child in os.environ["CHILDREN"].split():
    if child not in [digest for digest, _ in pushes]:
        problems.append(f"no PUSH of platform {child} in {pushes}")
if (os.environ["INDEX"], "latest") not in pushes:
    problems.append(f"no tagged PUSH of the index in {pushes}")
deletes = [d["image-digest"] for d in details if d["action-type"] == "DELETE"]
if deletes != [os.environ["INDEX"]]:
    problems.append(f"deletes {deletes}")
if any(d["repository-name"] != "hooks/app" or d["result"] != "SUCCESS" for d in details):
    problems.append("repository or result")
print("; ".join(problems) or "ok")
PY
)
expect "every event signed, ECR-shaped, as the pushes and the delete happened" "$verdict" ok

section "a webhook removed from the configuration: berth outbox consumers / remove-consumer"
# "gone" points at a closed port, so the push to hooks/old waits for it.
cp "$T/berth.toml" "$T/berth-receiver-only.toml"
cat >>"$T/berth.toml" <<TOML
[[webhooks]]
name = "gone"
url = "http://127.0.0.1:9/hook"
secret = "$SECRET"
TOML
stop_berth
start_berth "$T/data" --config "$T/berth.toml"
REG=$BERTH_ADDR
EMPTY=sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a   # the blob "{}"
code=$(printf '{}' | curl -s -o /dev/null -w '%{http_code}' -u "AWS:$TOKEN" -X POST --data-binary @- "http://$REG/v2/hooks/old/blobs/uploads/?digest=$EMPTY")
expect "the empty config pushed to hooks/old" "$code" 201
artifact='{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example.note","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"'$EMPTY'","size":2},"layers":[{"mediaType":"application/vnd.oci.empty.v1+json","digest":"'$EMPTY'","size":2}]}'
code=$(curl -s -o /dev/null -w '%{http_code}' -u "AWS:$TOKEN" -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'   --data-binary "$artifact" "http://$REG/v2/hooks/old/manifests/v1")
expect "an artifact pushed to hooks/old:v1 (a PUSH event gone cannot deliver)" "$code" 201
stop_berth
cp "$T/berth-receiver-only.toml" "$T/berth.toml"   # "gone" leaves the configuration
start_berth "$T/data" --config "$T/berth.toml"
outbox() { "$BERTH_BIN" outbox "$@" --data-dir "$T/data"; }
pending=$(outbox consumers | jq '.consumers[] | select(.name == "webhook/gone") | .pendingEvents')
(( pending >= 1 )) && ok "berth outbox consumers: webhook/gone holds $pending events" || bad "webhook/gone pending: $pending"
if outbox remove-consumer webhook/gone >"$T/out" 2>&1; then bad "removal within the default 600 s idle time must be refused"
else grep -q "still has it configured" "$T/out" && ok "remove-consumer webhook/gone refused: claimed within 600 s" || bad "$(cat "$T/out")"; fi
if outbox remove-consumer webhook/receiver --idle-secs 10 >"$T/out" 2>&1; then bad "a configured webhook must not be removable"
else grep -q "still has it configured" "$T/out" && ok "remove-consumer of the configured webhook/receiver refused" || bad "$(cat "$T/out")"; fi
sleep 11
outbox remove-consumer webhook/gone --idle-secs 10 >"$T/out" 2>&1 && ok "remove-consumer webhook/gone --idle-secs 10: $(cat "$T/out")" \
  || bad "remove-consumer webhook/gone: $(cat "$T/out")"
expect "webhook/gone is no longer listed" "$(outbox consumers | jq -r '[.consumers[].name] | join(",")')" webhook/receiver
if outbox remove-consumer webhook/gone --idle-secs 10 >"$T/out" 2>&1; then bad "removing it twice"
else grep -q "no consumer is named" "$T/out" && ok "removing it again: no such consumer" || bad "$(cat "$T/out")"; fi
summary webhooks
