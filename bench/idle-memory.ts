// Idle memory per connected standby: N walsink clients (default 200) connect,
// START_REPLICATION at the server's flush position (caught up; walsink's END is
// FFFFFFFF/FFFFFFFF so it never finishes) and sit idle, answering keepalives.
//   - PostgreSQL 15: sum of Pss (/proc/PID/smaps_rollup) over the walsender processes / N,
//     plus the mean VmRSS of one walsender and the whole cluster's Pss growth / N.
//   - pg-walsender: (VmRSS of the node process with N idle standbys - VmRSS with 0
//     standbys after the same warm-up) / N, and the same with Pss.
// The warm-up, for both: one walsink catch-up of the last 64 MiB, then 10 idle
// standbys connected and closed. MB = 10^6 bytes.

import { formatLsn, log, MiB, parseLsn, postmasterChildren, processMemory, replConninfo, round, runWalsink, sampleMemory,
  startWalsender, tcpCount } from './lib.ts';
import { sleep, spawnLogged, tail, waitUntil, freePort, type LoggedProcess } from '../test/helpers/proc.ts';
import type { WalSet } from './catchup.ts';

export type IdleResult = {
  standbys: number;
  postgres: { pssPerStandbyMB: number; rssPerWalsenderMB: number; clusterPssGrowthPerStandbyMB: number; walsenders: number };
  walsender: { rssPerStandbyMB: number; pssPerStandbyMB: number; rssIdleMB: number; rssLoadedMB: number;
    pssIdleMB: number; pssLoadedMB: number };
  ratio: number;
  target: string;
  met: boolean;
  command: string[];
};

const FAR_END = 'FFFFFFFF/FFFFFFFF';
const TARGET_MB = 0.25;
const kibToMB = (k: number): number => (k * 1024) / 1e6;

/** Start n idle walsinks at `from` in batches; returns their handles. */
async function startIdle(walsink: string, port: number, from: bigint, n: number): Promise<LoggedProcess[]> {
  const procs: LoggedProcess[] = [];
  for (let i = 0; i < n; i++) {
    procs.push(spawnLogged(walsink, [replConninfo(port), formatLsn(from), FAR_END, '1', 'nohash'], { name: `idle-${i}` }));
    if (i % 20 === 19) await sleep(100);
  }
  return procs;
}

async function stopAll(procs: LoggedProcess[]): Promise<void> {
  await Promise.all(procs.map((p) => p.kill('SIGKILL', 2000)));
}

function assertAlive(procs: LoggedProcess[]): void {
  const dead = procs.find((p) => p.hasExited);
  if (dead) throw new Error(`idle client ${dead.name} exited: ${tail(dead.output(), 1000)}`);
}

/** How a benchmark knows that k more idle standbys are streaming: mark(), start them, waitFor(k). */
type Readiness = { mark(): Promise<void>; waitFor(k: number, procs: LoggedProcess[]): Promise<void> };

async function warmUp(walsink: string, port: number, wal: WalSet, idleFrom: bigint, ready: Readiness): Promise<void> {
  await runWalsink(walsink, replConninfo(port), wal.end - BigInt(64 * MiB), wal.end, { hash: false });
  await ready.mark();
  const few = await startIdle(walsink, port, idleFrom, 10);
  try {
    await ready.waitFor(10, few);
  } finally {
    await stopAll(few);
  }
}

async function streamingCountPg(wal: WalSet): Promise<number> {
  return Number(await wal.cluster.psql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"));
}

function clusterPssKiB(wal: WalSet): number {
  let sum = 0;
  for (const c of postmasterChildren(wal.cluster)) {
    try {
      sum += processMemory(c.pid).pssKiB;
    } catch {
      // exited meanwhile
    }
  }
  return sum;
}

async function measurePostgres(walsink: string, wal: WalSet, n: number): Promise<IdleResult['postgres']> {
  const { cluster } = wal;
  const from = parseLsn(await cluster.psql('SELECT pg_current_wal_flush_lsn()'));
  const ready: Readiness = {
    mark: async () => {},
    waitFor: (k, procs) => waitUntil(async () => { assertAlive(procs); return (await streamingCountPg(wal)) >= k; },
      120_000, `${k} PostgreSQL walsenders streaming`, 200),
  };
  await warmUp(walsink, cluster.port, wal, from, ready);
  await waitUntil(async () => (await streamingCountPg(wal)) === 0, 30_000, 'warm-up walsenders gone', 200);
  await sleep(1000);
  const before = clusterPssKiB(wal);
  const procs = await startIdle(walsink, cluster.port, from, n);
  try {
    await ready.waitFor(n, procs);
    await sleep(3000);
    assertAlive(procs);
    const senders = postmasterChildren(cluster).filter((c) => c.cmdline.includes('walsender'));
    if (senders.length !== n) throw new Error(`expected ${n} walsender processes, found ${senders.length}`);
    const mems = senders.map((s) => processMemory(s.pid));
    const pss = mems.reduce((a, m) => a + m.pssKiB, 0);
    const rss = mems.reduce((a, m) => a + m.rssKiB, 0);
    const after = clusterPssKiB(wal);
    return {
      pssPerStandbyMB: round(kibToMB(pss / n), 3),
      rssPerWalsenderMB: round(kibToMB(rss / n), 3),
      clusterPssGrowthPerStandbyMB: round(kibToMB((after - before) / n), 3),
      walsenders: senders.length,
    };
  } finally {
    await stopAll(procs);
  }
}

async function measureWalsender(walsink: string, wal: WalSet, n: number, cwd: string):
  Promise<{ mem: IdleResult['walsender']; command: string[] }> {
  const ours = await startWalsender({ archiveDir: wal.archiveDir, port: await freePort(), maxWalSenders: n + 20,
    logLevel: 'info', cwd });
  // Readiness from the server's own log: one "start streaming" line per standby.
  const streamed = (): number => ours.proc.output().split('"msg":"start streaming"').length - 1;
  let base = 0;
  const ready: Readiness = {
    mark: async () => { base = streamed(); },
    waitFor: (k, procs) => waitUntil(() => { assertAlive(procs); return streamed() >= base + k; },
      120_000, `${k} pg-walsender standbys streaming`, 200),
  };
  try {
    await warmUp(walsink, ours.port, wal, wal.end, ready);
    await waitUntil(() => tcpCount(ours.port, 'established') === 0, 30_000, 'warm-up connections closed');
    await sleep(2000);
    const idle = await sampleMemory(ours.pid);
    await ready.mark();
    const procs = await startIdle(walsink, ours.port, wal.end, n);
    try {
      await ready.waitFor(n, procs);
      await sleep(3000);
      assertAlive(procs);
      if (tcpCount(ours.port, 'established') !== n) throw new Error(`expected ${n} established connections`);
      const loaded = await sampleMemory(ours.pid);
      return {
        mem: {
          rssPerStandbyMB: round(kibToMB((loaded.rssKiB - idle.rssKiB) / n), 3),
          pssPerStandbyMB: round(kibToMB((loaded.pssKiB - idle.pssKiB) / n), 3),
          rssIdleMB: round(kibToMB(idle.rssKiB)), rssLoadedMB: round(kibToMB(loaded.rssKiB)),
          pssIdleMB: round(kibToMB(idle.pssKiB)), pssLoadedMB: round(kibToMB(loaded.pssKiB)),
        },
        command: ours.args,
      };
    } finally {
      await stopAll(procs);
    }
  } finally {
    await ours.stop();
  }
}

export async function idleMemory(walsink: string, wal: WalSet, n: number, cwd: string): Promise<IdleResult> {
  log(`idle memory: ${n} idle standbys on PostgreSQL`);
  const postgres = await measurePostgres(walsink, wal, n);
  log(`PostgreSQL: ${postgres.pssPerStandbyMB} MB Pss per walsender (${postgres.rssPerWalsenderMB} MB RSS each)`);
  log(`idle memory: ${n} idle standbys on pg-walsender`);
  const { mem, command } = await measureWalsender(walsink, wal, n, cwd);
  log(`pg-walsender: ${mem.rssPerStandbyMB} MB RSS per standby (${mem.pssPerStandbyMB} MB Pss)`);
  const ratio = round(mem.rssPerStandbyMB / postgres.pssPerStandbyMB, 3);
  return {
    standbys: n, postgres, walsender: mem, ratio, target: `<= ${TARGET_MB} MB per standby`,
    met: mem.rssPerStandbyMB <= TARGET_MB, command,
  };
}
