# Helpers for tests/clients/<client>.sh (sourced after scripts/lib.sh; needs $T, a temp dir).
# Counting, assertions, raw registry reads with curl, and an isolated containers/* setup
# (storage, registries, auth) so podman/buildah never touch the machine's own images or config.

pass=0; fail=0; skipped=0
ok() { pass=$((pass + 1)); echo "PASS: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
skip() { skipped=$((skipped + 1)); echo "SKIP: $*"; }
expect() { if [[ "$2" == "$3" ]]; then ok "$1"; else bad "$1 (got '$2', want '$3')"; fi; }

# check DESC CMD...: PASS when CMD succeeds; on failure shows the tail of its output.
check() {
  local desc=$1; shift
  if "$@" >"$T/last.out" 2>&1; then ok "$desc"; return 0; fi
  bad "$desc"; sed 's/^/    | /' "$T/last.out" | tail -15; return 1
}

# summary CLIENT: the closing line scripts/test and CI read; returns non-zero on any failure.
summary() {
  echo; echo "$1: $pass passed, $fail failed"
  [[ $fail -eq 0 ]]
}

sha256_of() { echo "sha256:$(sha256sum <"$1" | cut -c1-64)"; }

ALL_MANIFEST_TYPES='application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'

# reg_get REPO REF OUT: GET a manifest straight from berth (all types accepted); body to OUT,
# headers to OUT.h. Prints the status code.
reg_get() {
  curl -s -o "$3" -D "$3.h" -w '%{http_code}' -H "Accept: $ALL_MANIFEST_TYPES" "http://$REG/v2/$1/manifests/$2"
}
# header FILE.h NAME: one response header's value from a reg_get header dump.
header() { sed -n "s/^$2: *//Ip" "$1" | tr -d '\r' | tail -1; }

# containers_env: point podman/buildah/skopeo at private storage, config and auth under $T/cs.
# Storage uses the vfs driver (no overlay mounts needed), the containers.conf avoids systemd
# (cgroupfs, file events) and keeps libpod's scratch files inside $T too.
containers_env() {
  local d=$T/cs; mkdir -p "$d"
  cat >"$d/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$d/root"
runroot = "$d/run"
EOF
  cat >"$d/containers.conf" <<EOF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$d/events.log"
tmp_dir = "$d/tmp"
static_dir = "$d/root/libpod"
volume_path = "$d/root/volumes"
[containers]
log_driver = "k8s-file"
EOF
  # Plain HTTP is asked for per command (--tls-verify=false); no short-name search or aliases.
  printf 'unqualified-search-registries = []\nshort-name-mode = "disabled"\n' >"$d/registries.conf"
  echo '{"auths":{}}' >"$d/auth.json"
  export CONTAINERS_STORAGE_CONF=$d/storage.conf CONTAINERS_CONF=$d/containers.conf
  export CONTAINERS_REGISTRIES_CONF=$d/registries.conf REGISTRY_AUTH_FILE=$d/auth.json
  export BUILDAH_ISOLATION=chroot TMPDIR=$d/tmp
  mkdir -p "$d/tmp"
}

# mk_context DIR ARCH NONCE: a build context whose one file names its architecture, so a pull of
# the wrong platform is caught by content, not only by metadata.
mk_context() {
  mkdir -p "$1"
  printf 'hello from %s nonce=%s\n' "$2" "$3" >"$1/hello.txt"
  printf 'FROM scratch\nCOPY hello.txt /hello.txt\nLABEL berth.test.arch=%s\n' "$2" >"$1/Containerfile"
}

# containers_insecure_registry HOST:PORT: plain HTTP for HOST in the private registries.conf, for
# the commands that have no --tls-verify flag.
containers_insecure_registry() {
  printf '[[registry]]\nlocation = "%s"\ninsecure = true\n' "$1" >>"$CONTAINERS_REGISTRIES_CONF"
}

# start_proxy UPSTREAM LOG: a logging relay in front of berth (http-log-proxy.py); sets PROXY_ADDR
# and PROXY_PID. Each exchange becomes one JSON line in LOG (method, target, headers, status).
start_proxy() {
  local out=$T/proxy.out
  : >"$out"
  python3 "$ROOT/tests/clients/lib/http-log-proxy.py" "$1" "$2" >"$out" 2>"$out.err" &
  PROXY_PID=$!
  for _ in $(seq 1 100); do
    PROXY_ADDR=$(sed -n 's/^listening on //p' "$out")
    [[ -n $PROXY_ADDR ]] && return 0
    sleep 0.05
  done
  echo "proxy did not start" >&2; cat "$out.err" >&2; return 1
}
stop_proxy() {
  [[ -n ${PROXY_PID:-} ]] || return 0
  kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; PROXY_PID=
}

# start_containerd: a containerd of our own, everything under $T/ctrd, no CRI plugin, and content
# not shared between namespaces, so every namespace has to fetch its blobs from the registry.
# Sets CTR (the ctr command line for it) and SNAP (a snapshotter that works here).
CTRD_PID=
start_containerd() {
  mkdir -p "$T/ctrd"
  cat >"$T/ctrd/config.toml" <<EOF2
version = 2
root = "$T/ctrd/root"
state = "$T/ctrd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$T/ctrd/containerd.sock"
[ttrpc]
  address = "$T/ctrd/containerd-ttrpc.sock"
[plugins."io.containerd.metadata.v1.bolt"]
  content_sharing_policy = "isolated"
EOF2
  containerd --config "$T/ctrd/config.toml" >"$T/ctrd.log" 2>&1 &
  CTRD_PID=$!
  CTR=(ctr --address "$T/ctrd/containerd.sock")
  for _ in $(seq 1 100); do "${CTR[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
  if ! "${CTR[@]}" version >/dev/null 2>&1; then echo "containerd did not start:"; tail -20 "$T/ctrd.log"; exit 1; fi
  # Unpacking needs a snapshotter: overlayfs where the kernel allows it, else the copying one.
  SNAP=native
  if grep -Eq 'snapshotter.v1 +overlayfs .* ok' <<<"$("${CTR[@]}" plugins ls)"; then SNAP=overlayfs; fi
}
stop_containerd() {
  if [[ -n $CTRD_PID ]]; then kill "$CTRD_PID" 2>/dev/null || true; wait "$CTRD_PID" 2>/dev/null || true; fi
}
