// Catch-up throughput: the same WAL range [START, END) served by PostgreSQL 15's own
// walsender (from its pg_wal) and by pg-walsender (archive source, from the archived
// copies of the same segments), read by the same clients in the same run:
//   - walsink, one stream (a hashed run per server checks both sent identical bytes,
//     then timed runs without hashing so the client's CPU does not cap the figure);
//   - pg_receivewal, one stream, --endpos END into a fresh directory (segments checked
//     against the archive's sha256);
//   - 16 walsink streams at once: aggregate MB/s = total bytes / wall time.
// Runs alternate PostgreSQL, pg-walsender, PostgreSQL, ... and the median is reported.
// MB = 10^6 bytes.

import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { receiveWal, startCluster, type Cluster } from '../test/helpers/pg.ts';
import { sha256File, sleep, tail, type TempDir } from '../test/helpers/proc.ts';
import {
  formatLsn, log, median, MiB, replConninfo, round, runWalsink, segmentName, segmentStart, type Walsender,
} from './lib.ts';

export type WalSet = {
  cluster: Cluster;
  /** A bench-owned directory with hard links to the archived segments SEED..END (what pg-walsender serves). */
  archiveDir: string;
  segSize: number;
  /** The archived segment just before START (pg_receivewal starts after the newest complete segment it finds). */
  seedSegment: string;
  /** Segments of [START, END). */
  segments: string[];
  start: bigint;
  end: bigint;
};

/** One comparison: both medians, every run, ratio = pg-walsender / PostgreSQL. */
export type Comparison = {
  name: string;
  unit: string;
  postgres: number;
  walsender: number;
  ratio: number;
  target: string;
  met: boolean;
  runs: { postgres: number[]; walsender: number[] };
  notes?: string;
};

const SEG_MB = 16;

/**
 * A PostgreSQL 15 cluster (16 MB segments, archiving, wal_keep_size so pg_wal keeps
 * everything, max_wal_senders 220 for the idle benchmark) with >= sizeMiB of real WAL
 * archived; START and END are segment boundaries, END - START = sizeMiB.
 */
export async function prepareWal(tmp: TempDir, sizeMiB: number): Promise<WalSet> {
  const cluster = await startCluster({
    name: 'bench', walSegSizeMB: SEG_MB, archive: true,
    conf: {
      wal_keep_size: `${Math.max(2048, sizeMiB * 3)}MB`, max_wal_size: '4GB',
      max_wal_senders: 220, max_connections: 250, synchronous_commit: 'off',
    },
  });
  try {
    const segSize = cluster.walSegSize;
    log(`generating ${sizeMiB + 3 * SEG_MB} MiB of WAL in PostgreSQL 15 (port ${cluster.port})`);
    await cluster.generateWal(sizeMiB + 3 * SEG_MB);
    await cluster.switchWal();
    const archived = new Set(fs.readdirSync(cluster.archiveDir!).filter((n) => /^[0-9A-F]{24}$/.test(n)));
    const inPgWal = (await cluster.psql("SELECT name FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$' ORDER BY 1"))
      .split('\n').filter((n) => archived.has(n));
    if (inPgWal.length === 0) throw new Error('no archived segment is still in pg_wal');
    const seedSegment = inPgWal[0];
    const start = segmentStart(seedSegment, segSize) + BigInt(segSize);
    const end = start + BigInt(sizeMiB * MiB);
    const segments: string[] = [];
    for (let lsn = start; lsn < end; lsn += BigInt(segSize)) segments.push(segmentName(lsn, segSize));
    for (const s of [seedSegment, ...segments]) {
      if (!inPgWal.includes(s)) throw new Error(`segment ${s} is not both archived and in pg_wal`);
      await cluster.waitArchived(s);
    }
    const archiveDir = path.join(tmp.path, 'archive');
    fs.mkdirSync(archiveDir);
    for (const s of [seedSegment, ...segments]) fs.linkSync(path.join(cluster.archiveDir!, s), path.join(archiveDir, s));
    log(`WAL range ${formatLsn(start)} .. ${formatLsn(end)} (${segments.length} segments, ${segments[0]} .. ${segments.at(-1)})`);
    return { cluster, archiveDir, segSize, seedSegment, segments, start, end };
  } catch (e) {
    await cluster.destroy();
    throw e;
  }
}

export function compare(name: string, unit: string, runs: { postgres: number[]; walsender: number[] },
  targetRatio: number, notes?: string): Comparison {
  const postgres = median(runs.postgres);
  const walsender = median(runs.walsender);
  const ratio = walsender / postgres;
  const c: Comparison = {
    name, unit, postgres: round(postgres), walsender: round(walsender), ratio: round(ratio, 2),
    target: `>= ${targetRatio}x`, met: ratio >= targetRatio, runs, notes,
  };
  log(`${name}: PostgreSQL ${c.postgres} ${unit}, pg-walsender ${c.walsender} ${unit}, ratio ${c.ratio} (target ${c.target}: ${c.met ? 'met' : 'NOT met'})`);
  return c;
}

type Servers = { pgPort: number; ours: Walsender };
const sides = ['postgres', 'walsender'] as const;

/** walsink, one stream: a hashed check run per server, then `runs` alternating timed runs. */
export async function singleWalsink(walsink: string, wal: WalSet, srv: Servers, runs: number): Promise<Comparison> {
  const bytes = Number(wal.end - wal.start);
  const port = { postgres: srv.pgPort, walsender: srv.ours.port };
  const hashes: Record<string, string> = {};
  for (const side of sides) {
    const r = await runWalsink(walsink, replConninfo(port[side]), wal.start, wal.end, { hash: true });
    hashes[side] = r.hash;
    log(`walsink hashed check ${side}: ${r.MBps} MB/s hash=${r.hash}`);
  }
  if (hashes.postgres !== hashes.walsender) throw new Error(`walsink hashes differ: ${JSON.stringify(hashes)}`);
  const got = { postgres: [] as number[], walsender: [] as number[] };
  for (let i = 0; i < runs; i++) {
    for (const side of sides) {
      const r = await runWalsink(walsink, replConninfo(port[side]), wal.start, wal.end, { hash: false });
      got[side].push(round(bytes / 1e6 / r.seconds));
    }
  }
  return compare('catch-up, 1 stream, walsink', 'MB/s', got, 1.5,
    `${bytes / MiB} MiB per run; hash ${hashes.postgres} identical for both servers (hashed check run), timed runs with nohash`);
}

/**
 * pg_receivewal stops only once it has received a position strictly past --endpos
 * (pg_receivewal.c stop_streaming: `endpos < xlogpos`), so "everything up to END" is
 * --endpos END-1: it stops at the END segment boundary with the last segment complete.
 * With --endpos END it would wait forever on a server whose WAL ends at END.
 */
export const receivewalEndpos = (wal: WalSet): bigint => wal.end - 1n;

/** pg_receivewal, one stream into a fresh directory, timed from spawn to exit at --endpos END. */
export async function singleReceivewal(tmpDir: string, wal: WalSet, srv: Servers, runs: number,
  archiveSums: Map<string, string>): Promise<Comparison> {
  const bytes = Number(wal.end - wal.start);
  const port = { postgres: srv.pgPort, walsender: srv.ours.port };
  const got = { postgres: [] as number[], walsender: [] as number[] };
  for (let i = 0; i < runs; i++) {
    for (const side of sides) {
      const dir = path.join(tmpDir, `receivewal-${side}-${i}`);
      fs.mkdirSync(dir);
      fs.copyFileSync(path.join(wal.archiveDir, wal.seedSegment), path.join(dir, wal.seedSegment));
      const t0 = performance.now();
      const p = receiveWal({ host: '127.0.0.1', port: port[side], dir, extraArgs: ['--endpos', formatLsn(receivewalEndpos(wal))] });
      const timer = setTimeout(() => void p.kill('SIGKILL'), 300_000);
      const exit = await p.exited;
      const seconds = (performance.now() - t0) / 1000;
      clearTimeout(timer);
      if (exit.code !== 0) throw new Error(`pg_receivewal from ${side} failed (${JSON.stringify(exit)}): ${tail(p.output(), 2000)}`);
      for (const s of wal.segments) {
        const f = path.join(dir, s);
        if (!fs.existsSync(f) || fs.statSync(f).size !== wal.segSize) throw new Error(`pg_receivewal from ${side}: ${s} missing or incomplete`);
        if ((await sha256File(f)) !== archiveSums.get(s)) throw new Error(`pg_receivewal from ${side}: ${s} differs from the archive`);
      }
      got[side].push(round(bytes / 1e6 / seconds));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  return compare('catch-up, 1 stream, pg_receivewal', 'MB/s', got, 1.5,
    `${bytes / MiB} MiB per run, fsync per segment; every received segment's sha256 equals the archive's (both servers)`);
}

/** `n` walsink streams at once; aggregate MB/s = n x bytes / wall time from first start to last end. */
export async function concurrentWalsink(walsink: string, wal: WalSet, srv: Servers, runs: number, n: number): Promise<Comparison> {
  const bytes = Number(wal.end - wal.start);
  const port = { postgres: srv.pgPort, walsender: srv.ours.port };
  const got = { postgres: [] as number[], walsender: [] as number[] };
  for (let i = 0; i < runs; i++) {
    for (const side of sides) {
      const t0 = performance.now();
      await Promise.all(Array.from({ length: n }, () =>
        runWalsink(walsink, replConninfo(port[side]), wal.start, wal.end, { hash: false, timeoutMs: 600_000 })));
      const seconds = (performance.now() - t0) / 1000;
      got[side].push(round((n * bytes) / 1e6 / seconds));
      await sleep(500); // let the server reap the finished connections
    }
  }
  return compare(`catch-up, ${n} concurrent, walsink`, 'MB/s', got, 1.2,
    `${n} x ${bytes / MiB} MiB per run, aggregate`);
}
