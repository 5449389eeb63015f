#!/usr/bin/env bash
# A throwaway S3-compatible server (moto, in memory) on loopback for the S3 blob backend's tests.
#
#   source scripts/s3.sh; berth_s3_start   # starts it with an empty bucket, exports
#                                          # BERTH_TEST_S3_ENDPOINT and BERTH_TEST_S3_BUCKET
#   berth_s3_stop                          # stops it and removes its files
#   bash scripts/s3.sh start|stop          # the same from outside; start prints the exports
#
# Idempotent: starting again reuses the server still answering from $BERTH_S3_DIR, stopping
# what is not running does nothing. moto accepts any credentials, but clients must send some
# (without any, the S3 client asks the EC2 instance metadata service): set AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY for the berth processes (not exported here: they would leak into the
# ECR client suites' environment).

BERTH_S3_DIR=${BERTH_S3_DIR:-${TMPDIR:-/tmp}/berth-s3-$(id -u)}
BERTH_S3_BUCKET=berth-test

_berth_s3_install() {
  command -v moto_server >/dev/null 2>&1 && return 0
  echo "s3.sh: installing moto[server]" >&2
  pip install -q 'moto[server]' && command -v moto_server >/dev/null 2>&1
}

_berth_s3_endpoint() {
  local port
  port=$(cat "$BERTH_S3_DIR/port" 2>/dev/null) || return 1
  echo "http://127.0.0.1:$port"
}

_berth_s3_running() {
  local endpoint pid
  endpoint=$(_berth_s3_endpoint) || return 1
  pid=$(cat "$BERTH_S3_DIR/pid" 2>/dev/null) || return 1
  kill -0 "$pid" 2>/dev/null && curl -sf -o /dev/null "$endpoint/$BERTH_S3_BUCKET"
}

_berth_s3_discard() {
  local pid
  if pid=$(cat "$BERTH_S3_DIR/pid" 2>/dev/null); then
    kill -TERM "$pid" 2>/dev/null && for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$BERTH_S3_DIR"/{pid,port,server.log}
  rmdir "$BERTH_S3_DIR" 2>/dev/null || true
}

_berth_s3_free_port() {
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return 0; fi
  done
  return 1
}

_berth_s3_export() {
  export BERTH_TEST_S3_ENDPOINT BERTH_TEST_S3_BUCKET=$BERTH_S3_BUCKET
  BERTH_TEST_S3_ENDPOINT=$(_berth_s3_endpoint) || return 1
  echo "export BERTH_TEST_S3_ENDPOINT=$BERTH_TEST_S3_ENDPOINT BERTH_TEST_S3_BUCKET=$BERTH_TEST_S3_BUCKET"
}

berth_s3_start() {
  _berth_s3_install || { echo "s3.sh: moto_server is not available" >&2; return 1; }
  if _berth_s3_running; then _berth_s3_export; return; fi
  _berth_s3_discard
  mkdir -p "$BERTH_S3_DIR" || return 1
  local port endpoint
  for _ in 1 2 3 4 5; do
    port=$(_berth_s3_free_port) || break
    # setsid: a job of its own, so the caller's Ctrl-C or exit does not leave it half-stopped.
    setsid moto_server -H 127.0.0.1 -p "$port" >"$BERTH_S3_DIR/server.log" 2>&1 </dev/null &
    echo $! >"$BERTH_S3_DIR/pid"
    echo "$port" >"$BERTH_S3_DIR/port"
    endpoint=http://127.0.0.1:$port
    for _ in $(seq 1 100); do
      curl -sf -o /dev/null "$endpoint/" && break
      kill -0 "$(cat "$BERTH_S3_DIR/pid")" 2>/dev/null || break
      sleep 0.1
    done
    # The bucket: moto checks no signatures, so a plain PUT creates it.
    if curl -sf -o /dev/null -X PUT "$endpoint/$BERTH_S3_BUCKET"; then _berth_s3_export; return; fi
    tail -n 20 "$BERTH_S3_DIR/server.log" >&2; _berth_s3_discard; mkdir -p "$BERTH_S3_DIR"
  done
  echo "s3.sh: moto_server did not start" >&2
  return 1
}

berth_s3_stop() {
  _berth_s3_discard
  unset BERTH_TEST_S3_ENDPOINT BERTH_TEST_S3_BUCKET
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  case ${1:-} in
    start) berth_s3_start ;;
    stop) berth_s3_stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
  esac
fi
