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
  grep -q '\\"DELETE\\"' "$T/events.jsonl" 2>/dev/null && break
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
summary webhooks
