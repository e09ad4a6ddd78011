#!/usr/bin/env bash
# Makes sure the PostgreSQL 15 binaries the tests and benchmarks run against are
# installed (Debian's postgresql-15), and gcc with libc headers for the native walmap
# module (scripts/build-native.sh), plus libpq-dev for the benchmark client.
# Installs them with apt-get when running as root; otherwise says what to install.
set -euo pipefail
PG_BIN=/usr/lib/postgresql/15/bin
missing=()
for b in postgres initdb pg_ctl pg_basebackup pg_receivewal pg_waldump psql pg_controldata; do
  [ -x "$PG_BIN/$b" ] || missing+=("$b")
done
id postgres >/dev/null 2>&1 || missing+=("postgres user")
command -v openssl >/dev/null || missing+=("openssl") # the TLS tests make a test CA with it
command -v gcc >/dev/null || missing+=("gcc")
[ -f /usr/include/x86_64-linux-gnu/sys/mman.h ] || [ -f /usr/include/sys/mman.h ] || [ -n "$(ls /usr/include/*/sys/mman.h 2>/dev/null)" ] || missing+=("libc6-dev")
if [ "${1:-}" = "--bench" ]; then
  [ -f /usr/include/postgresql/libpq-fe.h ] || missing+=("libpq-dev")
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing PostgreSQL 15 (missing: ${missing[*]})" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql-15 postgresql-client-15 libpq-dev gcc libc6-dev openssl >/dev/null
  exit 0
fi
echo "PostgreSQL 15 is needed for the tests (missing: ${missing[*]}): apt-get install postgresql-15 postgresql-client-15 libpq-dev gcc libc6-dev openssl" >&2
exit 1
