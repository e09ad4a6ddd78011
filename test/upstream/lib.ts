// Shared pieces of the upstream (relay) tests: starting pg-walsender as a relay of a
// real PostgreSQL 15 server, standby settings that retry quickly, and waiting for a
// query result on a standby.

import type { Cluster, ConfMap } from '../helpers/pg.ts';
import { makeTempDir, waitUntil, type TempDir } from '../helpers/proc.ts';
import { startWalsender, type WalsenderProcess } from '../helpers/server.ts';

type Teardown = { teardown(fn: () => unknown): void };

/** Standbys (and primaries they inherit from) retry streaming every 500 ms instead of 5 s. */
export const FAST_RETRY: ConfMap = { wal_retrieve_retry_interval: '500ms' };

export type Relay = WalsenderProcess & { dataDir: string };

/** `--source upstream` relaying `conninfo` into `dataDir` (a new temp dir unless given). */
export async function startRelay(t: Teardown, conninfo: string,
  opts: { dataDir?: string; port?: number; extra?: string[]; env?: NodeJS.ProcessEnv } = {}): Promise<Relay> {
  let dir = opts.dataDir;
  if (!dir) {
    const tmp: TempDir = await makeTempDir('pgws-relay-');
    t.teardown(() => tmp.remove());
    dir = tmp.path;
  }
  // wal_keep_size keeps every segment in the store, so tests can compare it with the primary's archive.
  const ws = await startWalsender(['--source', 'upstream', '--upstream', conninfo, '--data-dir', dir,
    '--wal-sender-timeout', '60s', '--wal-keep-size', '1GB', ...(opts.extra ?? [])], { t, port: opts.port, env: opts.env });
  return Object.assign(ws, { dataDir: dir });
}

/** Wait until the relay has published WAL (its IDENTIFY_SYSTEM would answer). */
export async function waitRelayReady(relay: Relay, timeoutMs = 20_000): Promise<void> {
  await relay.proc.waitFor(/store ready/, timeoutMs);
}

/** Wait until `sql` on the standby returns `want` (errors while it starts count as "not yet"). */
export async function waitQuery(c: Cluster, sql: string, want: string, timeoutMs = 60_000): Promise<void> {
  let last = '';
  try {
    await waitUntil(async () => {
      try {
        last = await c.psql(sql, { timeoutMs: 5000 });
      } catch (e) {
        last = String(e);
        return false;
      }
      return last === want;
    }, timeoutMs, `${c.name}: ${sql} = ${want}`, 100);
  } catch (e) {
    throw new Error(`${(e as Error).message} (last: ${last})\n--- ${c.name} log ---\n${await c.logTail(30)}`);
  }
}

/** Count of log lines of the relay matching `re`. */
export function countLines(relay: WalsenderProcess, re: RegExp): number {
  return relay.proc.output().split('\n').filter((l) => re.test(l)).length;
}
