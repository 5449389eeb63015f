#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the PostgreSQL metadata backend's tests.
#
#   source scripts/postgres.sh; berth_postgres_start   # starts it, exports BERTH_TEST_POSTGRES_URL
#   berth_postgres_stop                                # stops it and removes its files
#   bash scripts/postgres.sh start|stop                # the same from outside; start prints
#                                                      # `export BERTH_TEST_POSTGRES_URL=...`
#
# Idempotent: starting again reuses the server already serving from $BERTH_POSTGRES_DIR (anything
# else found there is replaced by a new cluster), stopping what is not running does nothing.
# Installs Debian's postgresql when it is missing and we are root. PostgreSQL refuses to run as
# root, so as root the cluster belongs to the `postgres` system user the package creates. The database collates with ICU's en-US on purpose: the backend must
# sort byte-wise whatever the database's locale, and a C-locale database would hide it if not.

BERTH_POSTGRES_DIR=${BERTH_POSTGRES_DIR:-${TMPDIR:-/tmp}/berth-postgres-$(id -u)}
BERTH_POSTGRES_DB=berth_test
BERTH_POSTGRES_USER=berth

# The newest installed server's bin directory: Debian keeps the server programs out of PATH
# (/usr/local/bin's initdb, pg_ctl and postgres are only links into it on the dev machines, and
# absent on a fresh one); elsewhere, wherever PATH has pg_ctl.
_berth_pg_bindir() {
  local dirs
  dirs=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V)
  if [[ -n $dirs ]]; then printf '%s\n' "${dirs##*$'\n'}"; return; fi
  dirs=$(command -v pg_ctl) && dirname "$(readlink -f "$dirs")"
}

_berth_pg_install() {
  [[ -n $(_berth_pg_bindir) ]] && return 0
  if [[ $(id -u) -ne 0 ]]; then
    echo "postgres.sh: PostgreSQL is not installed and we are not root: apt-get install postgresql" >&2
    return 1
  fi
  echo "postgres.sh: installing postgresql" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

# Runs a server program as the cluster's owner.
_berth_pg_as_owner() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Serving on the port it was started on (a postmaster.pid alone can outlive a killed server).
_berth_pg_running() {
  local port
  port=$(cat "$BERTH_POSTGRES_DIR/port" 2>/dev/null) || return 1
  "$(_berth_pg_bindir)/pg_isready" -q -h 127.0.0.1 -p "$port"
}

# Stops whatever server the directory holds, then removes what start made (only that, in case
# the directory was pointed somewhere shared).
_berth_pg_discard() {
  local bin dir=$BERTH_POSTGRES_DIR
  bin=$(_berth_pg_bindir)
  if [[ -f $dir/data/postmaster.pid ]]; then
    _berth_pg_as_owner "$bin/pg_ctl" stop -D "$dir/data" -m fast -w -t 30 >/dev/null 2>&1 ||
      _berth_pg_as_owner "$bin/pg_ctl" stop -D "$dir/data" -m immediate -w -t 10 >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"/{data,sock,port,initdb.log,server.log}
  rmdir "$dir" 2>/dev/null || true
}

# A loopback port nothing listens on: bash's /dev/tcp connect fails on it.
_berth_pg_free_port() {
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return 0; fi
  done
  return 1
}

_berth_pg_export_url() {
  local port
  port=$(cat "$BERTH_POSTGRES_DIR/port") || return 1
  export BERTH_TEST_POSTGRES_URL="postgres://$BERTH_POSTGRES_USER@127.0.0.1:$port/$BERTH_POSTGRES_DB"
  echo "export BERTH_TEST_POSTGRES_URL=$BERTH_TEST_POSTGRES_URL"
}

berth_postgres_start() {
  _berth_pg_install || return 1
  local bin dir=$BERTH_POSTGRES_DIR port
  bin=$(_berth_pg_bindir)
  if _berth_pg_running; then _berth_pg_export_url; return; fi

  # Not serving: whatever an earlier run left (crashed, killed) is thrown away for a new cluster.
  _berth_pg_discard
  mkdir -p "$dir/data" "$dir/sock" || return 1
  if [[ $(id -u) -eq 0 ]]; then chown -R postgres:postgres "$dir" || return 1; fi
  chmod 700 "$dir/data"
  # trust: only loopback and the private socket directory can reach this server.
  _berth_pg_as_owner "$bin/initdb" -D "$dir/data" -U "$BERTH_POSTGRES_USER" --auth=trust \
    --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
    { echo "postgres.sh: initdb failed:" >&2; cat "$dir/initdb.log" >&2; return 1; }

  # A port picked free may still be taken before the server binds it: try a few.
  local started=
  for _ in 1 2 3 4 5; do
    port=$(_berth_pg_free_port) || break
    if _berth_pg_as_owner "$bin/pg_ctl" start -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-k $dir/sock -p $port -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
      >/dev/null; then
      started=1; break
    fi
  done
  if [[ -z $started ]]; then
    echo "postgres.sh: the server did not start; log:" >&2; tail -n 30 "$dir/server.log" >&2; return 1
  fi
  echo "$port" >"$dir/port" || return 1

  local psql=("$bin/psql" -h 127.0.0.1 -p "$port" -U "$BERTH_POSTGRES_USER" -d postgres -qtA -v ON_ERROR_STOP=1)
  "${psql[@]}" -c "CREATE DATABASE $BERTH_POSTGRES_DB TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'" ||
    { echo "postgres.sh: no ICU collation here, the database collates as C" >&2
      "${psql[@]}" -c "CREATE DATABASE $BERTH_POSTGRES_DB"; } || return 1
  _berth_pg_export_url
}

berth_postgres_stop() {
  [[ -n $(_berth_pg_bindir) ]] || return 0
  _berth_pg_discard
  unset BERTH_TEST_POSTGRES_URL
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  case ${1:-} in
    start) berth_postgres_start ;;
    stop) berth_postgres_stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
  esac
fi
