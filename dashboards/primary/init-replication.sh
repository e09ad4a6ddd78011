#!/bin/bash
# Runs once at the primary's first start (docker-entrypoint-initdb.d): a replication
# role for the standby's base backup, replication connections from the compose
# network, and a first archived segment so pg-walsender has WAL to serve.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD 'replicator';
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
psql --username "$POSTGRES_USER" -c 'SELECT pg_reload_conf()' -c 'SELECT pg_switch_wal()' >/dev/null
