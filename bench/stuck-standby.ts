// Measures isolation from a standby that stops reading (issue 5): aggregate catch-up
// throughput of N walsink clients without, then with, one extra replication client
// that starts streaming and never reads. Same WAL, same clients, both servers; the
// figure per server is with / without (target for pg-walsender: >= 0.9, "within 10%").

import net from 'node:net';
import { query, startupMessage } from '../src/protocol/client.ts';
import type { Servers, WalSet } from './catchup.ts';
import { formatLsn, log, median, replConninfo, round, runWalsink } from './lib.ts';

export type StuckResult = {
  clients: number;
  runs: number;
  postgres: { withoutMBps: number; withMBps: number; ratio: number };
  walsender: { withoutMBps: number; withMBps: number; ratio: number };
  target: string;
  met: boolean;
};

/** A replication client that asks for WAL and then never reads a byte of it. */
function stuckClient(port: number, start: bigint): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.write(startupMessage([['user', 'postgres'], ['database', 'replication'], ['replication', 'true'], ['application_name', 'stuck']]));
      s.write(query(`START_REPLICATION ${formatLsn(start)} TIMELINE 1`));
      s.pause(); // Node stops reading once its small buffer is full: the kernel's fill, then the server's
      resolve(s);
    });
    s.on('error', reject);
  });
}

async function aggregate(walsink: string, port: number, wal: WalSet, n: number): Promise<number> {
  const t0 = performance.now();
  await Promise.all(Array.from({ length: n }, () =>
    runWalsink(walsink, replConninfo(port), wal.start, wal.end, { hash: false, timeoutMs: 600_000 })));
  return (n * Number(wal.end - wal.start)) / 1e6 / ((performance.now() - t0) / 1000);
}

export async function stuckStandby(walsink: string, wal: WalSet, srv: Servers, runs: number, n = 4): Promise<StuckResult> {
  const ports = { postgres: srv.cluster.port, walsender: srv.ours.port };
  const samples = { postgres: { without: [] as number[], with: [] as number[] }, walsender: { without: [] as number[], with: [] as number[] } };
  for (let r = 0; r < runs; r++) {
    for (const side of ['postgres', 'walsender'] as const) {
      samples[side].without.push(await aggregate(walsink, ports[side], wal, n));
      const stuck = await stuckClient(ports[side], wal.start);
      await new Promise((res) => setTimeout(res, 300)); // let its buffers fill
      samples[side].with.push(await aggregate(walsink, ports[side], wal, n));
      stuck.destroy();
    }
  }
  const summarize = (s: { without: number[]; with: number[] }) => {
    const withoutMBps = round(median(s.without));
    const withMBps = round(median(s.with));
    return { withoutMBps, withMBps, ratio: round(withMBps / withoutMBps, 2) };
  };
  const result: StuckResult = {
    clients: n, runs, postgres: summarize(samples.postgres), walsender: summarize(samples.walsender),
    target: 'pg-walsender with / without >= 0.9', met: false,
  };
  result.met = result.walsender.ratio >= 0.9;
  log(`stuck standby: ${n} walsinks, pg-walsender ${result.walsender.withoutMBps} -> ${result.walsender.withMBps} MB/s (${result.walsender.ratio}), `
    + `PostgreSQL ${result.postgres.withoutMBps} -> ${result.postgres.withMBps} MB/s (${result.postgres.ratio})`);
  return result;
}

if (import.meta.main) { // run alone: node bench/stuck-standby.ts (BENCH_QUICK=1: 128 MiB of WAL)
  const { prepareWal } = await import('./catchup.ts');
  const { buildWalsink, startWalsender, outDir } = await import('./lib.ts');
  const { freePort, makeTempDir } = await import('../test/helpers/proc.ts');
  const fs = await import('node:fs');
  const path = await import('node:path');
  const quick = process.env.BENCH_QUICK === '1';
  const tmp = await makeTempDir('bench-stuck');
  let wal: WalSet | null = null;
  let ours: Awaited<ReturnType<typeof startWalsender>> | null = null;
  try {
    const walsink = await buildWalsink();
    wal = await prepareWal(tmp, quick ? 128 : 512);
    ours = await startWalsender({ archiveDir: wal.archiveDir, port: await freePort(), maxWalSenders: 32 });
    const result = await stuckStandby(walsink, wal, { cluster: wal.cluster, ours }, Number(process.env.BENCH_RUNS ?? 3));
    fs.writeFileSync(path.join(outDir, 'stuck-standby.json'), `${JSON.stringify({ date: new Date().toISOString(), quick, ...result }, null, 2)}\n`);
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await ours?.stop().catch(() => {});
    await wal?.cluster.destroy().catch(() => {});
    await tmp.remove().catch(() => {});
  }
  process.exit(0);
}
