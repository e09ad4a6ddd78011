#!/bin/bash
# The standby of dashboards/compose.yaml: on its first start, a base backup from the
# primary; then it streams WAL from pg-walsender (primary_conninfo), falling back to
# the archive (restore_command) like any standby would.
set -euo pipefail
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA" && chown postgres:postgres "$PGDATA" && chmod 700 "$PGDATA"
  until gosu postgres pg_basebackup -h primary -U replicator -D "$PGDATA" -X stream -R; do
    echo "waiting for the primary..."; sleep 2
  done
  cat >> "$PGDATA/postgresql.auto.conf" <<CONF
primary_conninfo = 'host=pg-walsender port=5433 user=replicator password=replicator application_name=standby1'
restore_command = 'cp /archive/%f %p'
CONF
fi
exec docker-entrypoint.sh postgres
