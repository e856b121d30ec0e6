#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests: `start DIR` makes a cluster in DIR (initdb), starts it
# on a Unix socket in DIR (no TCP) and prints its connection URL; `stop DIR` stops it.
# PostgreSQL refuses to run as root: as root, the server runs as the `postgres` user.
# Exit 77 (and a reason on stderr) when PostgreSQL's binaries are absent.
set -euo pipefail
action=$1
dir=$2
bin=${FACEMAG_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  echo "PostgreSQL server binaries absent (Debian package postgresql; or set FACEMAG_PG_BIN)" >&2
  exit 77
fi
as_server() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case $action in
  start)
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then chown postgres "$dir"; fi
    as_server "$bin/initdb" -D "$dir/data" -A trust -U facemag --no-sync >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
    as_server "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
      -o "-k $dir -c listen_addresses= -c fsync=off" start >/dev/null ||
      { cat "$dir/server.log" >&2; exit 1; }
    echo "postgresql://facemag@/postgres?host=$dir"
    ;;
  stop)
    as_server "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    ;;
  *)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
