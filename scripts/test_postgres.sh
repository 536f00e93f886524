#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for the storage tests and prints its URL on stdout.
#   url=$(bash scripts/test_postgres.sh start <dir>)   ...   bash scripts/test_postgres.sh stop <dir>
# Installs Debian's postgresql when it is missing. Root runs the server as the `postgres` user
# (PostgreSQL refuses to run as root); anyone else runs it as themselves.
set -euo pipefail
action=${1:?start or stop}
dir=${2:?a directory for the cluster}

if [ "$(id -u)" = 0 ]; then AS_PG=(runuser -u postgres --); SUDO=""; else AS_PG=(); SUDO="sudo"; fi

pg_bin() {
  # The server's own binaries: a client-only install has this folder too, without initdb.
  local initdb
  initdb=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)
  [ -n "$initdb" ] && dirname "$initdb"
}

if [ "$action" = stop ]; then
  if [ -f "$dir/data/postmaster.pid" ]; then
    "${AS_PG[@]}" "$(pg_bin)/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  exit 0
fi

if [ -z "$(pg_bin)" ]; then
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >&2
fi
bin=$(pg_bin)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$dir"
if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
"${AS_PG[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; exit 1; }
# Loopback only, a socket in the throwaway directory, no fsync: nothing here outlives the run.
"${AS_PG[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c fsync=off" start >/dev/null \
  || { cat "$dir/server.log" >&2; exit 1; }
"${AS_PG[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres convergio_test
echo "postgresql+asyncpg://postgres@127.0.0.1:$port/convergio_test"
