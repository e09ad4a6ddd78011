#!/usr/bin/env bash
# Builds native/walmap.c into build/walmap.node (N-API, so any Node >= 18 header set
# fits). Needs a C compiler; without one pg-walsender still runs, reading WAL with
# preadv instead of mapping it (see src/wal/walmap.ts). Pass --required to fail
# instead of warning (tests and CI use it, so they never silently test the fallback).
set -u
cd "$(dirname "$0")/.."
required=0; [ "${1:-}" = "--required" ] && required=1
fail() {
  echo "build-native: $*" >&2
  if [ "$required" = 1 ]; then exit 1; fi
  echo "build-native: pg-walsender will read WAL with preadv instead of mmap" >&2
  exit 0
}
out=build/walmap.node
[ -f "$out" ] && [ "$out" -nt native/walmap.c ] && exit 0
cc=${CC:-}
[ -z "$cc" ] && { command -v gcc >/dev/null && cc=gcc || { command -v cc >/dev/null && cc=cc; }; }
[ -n "$cc" ] || fail "no C compiler (gcc or cc) found"
node_bin=$(node -p 'require("fs").realpathSync(process.execPath)' 2>/dev/null || true)
inc=""
# NODE_API_INCLUDE first; then the headers of the npm-pinned Node (devDependency
# "node"), of the node on PATH (official builds ship include/node), and system ones.
for d in ${NODE_API_INCLUDE:-} node_modules/node/node_modules/node-*/include/node "${node_bin%/bin/node}/include/node" /usr/local/include/node /usr/include/node; do
  [ -f "$d/node_api.h" ] && { inc=$d; break; }
done
[ -n "$inc" ] || fail "node_api.h not found"
mkdir -p build
"$cc" -O2 -Wall -Wextra -shared -fPIC -DNODE_GYP_MODULE_NAME=walmap -I"$inc" native/walmap.c -o "$out.tmp" \
  && mv "$out.tmp" "$out" || fail "compiling native/walmap.c failed"
