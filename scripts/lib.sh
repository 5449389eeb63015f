# Helpers shared by scripts/test and tests/clients/*.sh (sourced, not run).

PASS_N=${PASS_N:-0}; FAIL_N=${FAIL_N:-0}
[[ -v FAILED_STEPS ]] || FAILED_STEPS=()
BERTH_BIN=${BERTH_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/berth}

section() { printf '\n=== %s\n' "$*"; }

# step DESC CMD...: runs CMD, counts it as one passed or failed step.
step() {
  local desc=$1; shift
  local start=$SECONDS
  if "$@"; then PASS_N=$((PASS_N + 1)); echo "STEP PASS: $desc ($((SECONDS - start)) s)"
  else
    FAIL_N=$((FAIL_N + 1)); FAILED_STEPS+=("$desc")
    echo "STEP FAIL: $desc ($((SECONDS - start)) s)"; disk_report || true
  fi
}

# Free space where tests write, so a failure from a full disk reads as one in the log.
disk_report() {
  df -h "${TMPDIR:-/tmp}" "${ROOT:-.}" /dev/shm 2>/dev/null | sed 's/^/disk: /'
}

# KiB free on the filesystem holding $1 (empty if df cannot tell).
free_kib() { df -Pk "$1" 2>/dev/null | awk 'NR == 2 { print $4 }'; }

# A scratch directory with at least $1 GiB free: TMPDIR when its disk has the room (the disk is
# what the direct-I/O write path is for), else RAM-backed /dev/shm when it has, else TMPDIR.
roomy_tmpdir() {
  local need_kib=$(($1 * 1024 * 1024)) tmp=${TMPDIR:-/tmp} free
  free=$(free_kib "$tmp")
  if [[ -n $free && $free -ge $need_kib ]]; then echo "$tmp"; return; fi
  free=$(free_kib /dev/shm)
  if [[ -n $free && $free -ge $need_kib ]] && mkdir -p /dev/shm/berth-tests; then
    echo /dev/shm/berth-tests
  else
    echo "$tmp"
  fi
}

finish() {
  echo
  # Named again at the end, where a log cut to its tail still shows them.
  local failed
  for failed in ${FAILED_STEPS[@]+"${FAILED_STEPS[@]}"}; do echo "failed: $failed"; done
  echo "$PASS_N passed, $FAIL_N failed"
  [[ $FAIL_N -eq 0 ]]
  exit $?
}

have() { command -v "$1" >/dev/null 2>&1; }

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  ((${#missing[@]})) || return 0
  if [[ $(id -u) -ne 0 ]]; then echo "missing packages ${missing[*]} and not root: install them first" >&2; return 1; fi
  if [[ ! -f /tmp/.berth-apt-updated ]]; then apt-get update -qq && touch /tmp/.berth-apt-updated; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_test_tools() {
  # apache2-utils: htpasswd, for the docker-registry with Basic auth that berth-remote's tests pull from.
  apt_install skopeo jq curl ca-certificates podman buildah containerd docker-registry apache2-utils
  # ecr-hostnames.sh: a CA and certificate (openssl), loopback in its own network namespace (ip),
  # Amazon's docker credential helper.
  apt_install openssl iproute2 amazon-ecr-credential-helper
  have docker || apt_install docker.io
  python3 -c 'import boto3, awscli' 2>/dev/null || pip install -q awscli boto3
  have moto_server || pip install -q 'moto[server]'
  # The console's browser tests: Debian's Chromium and its WebDriver, Selenium from PyPI.
  apt_install chromium chromium-driver fonts-dejavu-core
  python3 -c 'import selenium' 2>/dev/null || pip install -q selenium
  python3 -c 'import prometheus_client' 2>/dev/null || pip install -q prometheus_client
}

# text_symbols BIN: BIN's function names as the linker sees them (mangled), sorted for `comm`.
text_symbols() { nm --defined-only "$1" | awk '$2 ~ /^[tT]$/ {print $3}' | LC_ALL=C sort -u; }

# free_port: prints a loopback TCP port free right now (for servers that cannot take port 0 and
# say which port they got).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# check_link_order: fails when fewer than 90 % of the functions crates/berth/link-order.txt
# names are in the shipped binary: the file is stale and a server maps more of the code again
# (at 75 % left, idle RSS was 11.7 MiB instead of 8.9; scripts/link-order regenerates it). Any
# change to the binary's crates can renumber the local symbols it lists. The file is in layout
# order, not sorted.
check_link_order() {
  local order=$ROOT/crates/berth/link-order.txt listed found
  listed=$(wc -l <"$order") || return 1
  found=$(text_symbols "$BERTH_BIN" | LC_ALL=C comm -12 - <(LC_ALL=C sort "$order") | wc -l)
  echo "$found of the $listed functions in crates/berth/link-order.txt are in $BERTH_BIN"
  ((found * 10 >= listed * 9))
}

# start_berth DATA_DIR [ARGS...]: starts `berth serve` on a free loopback port in the background;
# sets BERTH_PID and BERTH_ADDR (host:port). Logs go to DATA_DIR.log. A BERTH_LAUNCHER array
# (a command and its arguments, e.g. valgrind's) runs berth under it.
start_berth() {
  local data=$1; shift
  local out; out=$(mktemp)
  ${BERTH_LAUNCHER[@]+"${BERTH_LAUNCHER[@]}"} "$BERTH_BIN" serve --listen 127.0.0.1:0 --data-dir "$data" "$@" >"$out" 2>"$data.log" &
  BERTH_PID=$!
  for _ in $(seq 1 300); do
    if grep -q 'listening on http://' "$out" 2>/dev/null; then
      BERTH_ADDR=$(sed -n 's#.*listening on http://\([^ ]*\).*#\1#p' "$out" | head -1)
      rm -f "$out"; return 0
    fi
    kill -0 "$BERTH_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "berth did not start; log:" >&2; cat "$data.log" >&2; rm -f "$out"; return 1
}

stop_berth() {
  [[ -n ${BERTH_PID:-} ]] || return 0
  kill -TERM "$BERTH_PID" 2>/dev/null || true
  wait "$BERTH_PID" 2>/dev/null || true
  BERTH_PID=
}
