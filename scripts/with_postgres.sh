#!/usr/bin/env bash
# Run a command (the test suite) next to a throwaway PostgreSQL server:
#
#     scripts/with_postgres.sh .venv/bin/python -m pytest -q tests
#
# A new cluster in a temporary folder (Debian's initdb and pg_ctl from /usr/lib/postgresql/<ver>),
# reachable only through a Unix socket in that folder (no TCP port, so it never clashes with
# another server or another run), trust authentication, no fsync: it holds nothing worth keeping.
# The command sees its URL in $RATINGRL_TEST_POSTGRES (the tests create and drop one database per
# test there). The server is stopped and the folder deleted when the command ends, also when it
# fails or is interrupted; the command's exit status is returned.
#
# initdb refuses to run as root: as root the cluster belongs to the `postgres` system user that
# Debian's package creates. Without PostgreSQL installed (scripts/install_postgresql.sh) the
# command runs without the server, so the PostgreSQL tests are skipped -- except in CI
# (CI=true), where that is an error.
set -euo pipefail

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    if [ "${CI:-}" = "true" ]; then
        echo "with_postgres.sh: no PostgreSQL in /usr/lib/postgresql (run scripts/install_postgresql.sh)" >&2
        exit 1
    fi
    echo "with_postgres.sh: no PostgreSQL installed: its tests will be skipped" >&2
    exec "$@"
fi

dir=$(mktemp -d /tmp/ratingrl-pg.XXXXXX)  # short: a socket path must fit in 107 bytes
owner=()
if [ "$(id -u)" = 0 ]; then
    chown postgres: "$dir"
    owner=(runuser -u postgres --)
fi

stop() {
    "${owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -m fast -t 30 stop >/dev/null 2>&1 \
        || "${owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 \
        || true
    rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"${owner[@]}" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust --no-locale -E UTF8 \
    --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
settings="-c listen_addresses='' -k $dir -p 5432 -c max_connections=200"
settings+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
"${owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$settings" \
    start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }

export RATINGRL_TEST_POSTGRES="postgresql+psycopg://postgres@/postgres?host=$dir&port=5432"
echo "with_postgres.sh: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') at $dir" >&2
status=0
"$@" || status=$?
exit "$status"
