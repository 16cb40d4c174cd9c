#!/bin/sh
# Install Debian's PostgreSQL server for the tests that run on it (scripts/with_postgres.sh starts
# a throwaway cluster with its initdb and pg_ctl). Idempotent: nothing happens when it is there.
set -e
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update && apt-get install -y postgresql)
