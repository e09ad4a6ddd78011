// Relay benchmarks (issue 3), against PostgreSQL 15 on this machine:
// 1. Added latency: under a steady pgbench load, a probe commits on the primary every
//    20 ms and reads pg_current_wal_flush_lsn() after its COMMIT; two stream clients
//    in this process (one on the primary, one on pg-walsender relaying it) timestamp
//    when WAL up to that LSN arrives. Same commits, same clock, measured together:
//    latency = arrival - probe send; added = relay - direct, per commit. Meanwhile a small
//    write + fdatasync in the store's directory every 20 ms shows what the disk's sync costs;
//    a second run with the store on tmpfs (/dev/shm) shows what the relay's software adds.
// 2. Ingest throughput: a bulk load's WAL (reserved by replication slots created
//    before it) streamed from the slot's restart point to the load's end into the
//    relay's store (published = fdatasynced) vs pg_receivewal --synchronous (fsync
//    after each write) from the same point to the same end. After a CHECKPOINT and sync,
//    alternating order, the machine quiet before each run; medians.
// 3. Fan-out: 16 walsink clients (a light libpq replication client) directly on the
//    primary vs 16 on the relay, same pgbench load: CPU seconds of the primary's
//    walsenders and of the whole primary over the window.
// `node bench/relay.ts` runs it alone (BENCH_QUICK=1: shorter); bench/run.ts calls it.

import fs from 'node:fs';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { formatLsn, parseLsn } from '../src/protocol/lsn.ts';
import { query, standbyStatusUpdate } from '../src/protocol/client.ts';
import { copyData } from '../src/protocol/backend.ts';
import { resolveConninfo } from '../src/sources/upstream/conninfo.ts';
import type { UpstreamConnection } from '../src/sources/upstream/connection.ts';
import { connectUpstream } from '../src/sources/upstream/handshake.ts';
import { bytesAt } from '../src/sources/upstream/inbound.ts';
import { startCluster, type Cluster } from '../test/helpers/pg.ts';
import { freePort, makeTempDir, pgBin, run, runOk, sleep, spawnLogged, waitUntil, type LoggedProcess, type TempDir } from '../test/helpers/proc.ts';
import { rowOf, WireClient } from '../test/helpers/wire.ts';
import {
  buildWalsink, cpuSeconds, log, machineInfo, median, postmasterChildren, postmasterPid, repoRoot, round, waitQuiet,
} from './lib.ts';

const quick = process.env.BENCH_QUICK === '1';
const LATENCY_SECONDS = quick ? 10 : 30;
const INGEST_MIB = quick ? 128 : 512;
const INGEST_RUNS = quick ? 3 : 5; // this disk varies a lot from run to run (for pg_receivewal as much as for the relay)
const FANOUT = 16;
const FANOUT_SECONDS = quick ? 10 : 20;
const PGBENCH_TPS = Number(process.env.BENCH_RELAY_TPS ?? 300);

type Relay = { proc: LoggedProcess; port: number; dir: string; stop(): Promise<void> };

async function startRelay(cluster: Cluster, tmp: TempDir, extra: string[] = [], root = tmp.path): Promise<Relay> {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(root, 'pgws-bench-relay-'));
  const proc = spawnLogged(process.execPath, [path.join(repoRoot, 'src/main.ts'), '--source', 'upstream',
    '--upstream', `host=127.0.0.1 port=${cluster.port} user=postgres application_name=relay`, '--data-dir', dir,
    '--listen', `127.0.0.1:${port}`, '--admin-listen', 'off', '--log-level', 'info', '--workers', '2',
    '--max-wal-senders', String(FANOUT + 8), '--wal-keep-size', '1GB', ...extra], { name: 'pg-walsender' });
  await proc.waitFor(/listening for replication connections/, 30_000);
  return { proc, port, dir, stop: async () => { await proc.kill('SIGINT', 10_000); fs.rmSync(dir, { recursive: true, force: true }); } };
}

const percentile = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};

// ---------------------------------------------------------------------------
// stream clients and the probe
// ---------------------------------------------------------------------------

type Stream = { ends: number[]; times: number[]; stop(): void };

/** A replication client from the server's current position; records (end LSN, arrival ms) of every XLogData. */
async function streamClient(port: number, name: string): Promise<Stream> {
  const conn = await connectUpstream(resolveConninfo(`host=127.0.0.1 port=${port} user=postgres application_name=${name}`, { env: {} }));
  const id = await conn.query('IDENTIFY_SYSTEM');
  const [, tli, xlogpos] = id.rows[0]!;
  const ends: number[] = [];
  const times: number[] = [];
  let pos = parseLsn(xlogpos!)!;
  await conn.startCopy(`START_REPLICATION ${formatLsn(pos)} TIMELINE ${tli}`);
  const reply = (): void => conn.write(copyData(standbyStatusUpdate(pos, pos, 0n, 0n, false)));
  conn.setCopyHandler({
    data(parts: Buffer[], length: number): void {
      const now = performance.now();
      const h = bytesAt(parts, 0, Math.min(length, 25));
      if (h[0] === 0x77) {
        pos = h.readBigUInt64BE(1) + BigInt(length - 25);
        ends.push(Number(pos));
        times.push(now);
      } else if (h[0] === 0x6b && length === 18 && bytesAt(parts, 17, 1)[0] === 1) {
        reply();
      }
    },
    other(): void {},
  });
  const timer = setInterval(reply, 1000);
  return { ends, times, stop: () => { clearInterval(timer); conn.close(); } };
}

/** First arrival time of WAL reaching `lsn`, or null. */
function arrival(s: Stream, lsn: number): number | null {
  let lo = 0;
  let hi = s.ends.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (s.ends[mid]! >= lsn) hi = mid; else lo = mid + 1;
  }
  return lo < s.ends.length ? s.times[lo]! : null;
}

async function sqlSession(cluster: Cluster): Promise<UpstreamConnection> {
  return connectUpstream(resolveConninfo(`host=127.0.0.1 port=${cluster.port} user=postgres application_name=probe`, { env: {} }),
    { database: 'postgres' });
}

function pgbench(cluster: Cluster, seconds: number): LoggedProcess {
  return spawnLogged(pgBin('pgbench'), ['-h', cluster.socketDir, '-p', String(cluster.port), '-U', 'postgres', '-n',
    '-c', '4', '-j', '2', '-R', String(PGBENCH_TPS), '-T', String(seconds), '-b', 'simple-update', 'postgres'], { name: 'pgbench' });
}

// ---------------------------------------------------------------------------
// 1. latency
// ---------------------------------------------------------------------------

type Quantiles = { p50: number; p99: number };
export type LatencyResult = { store: string; probes: number; direct: Quantiles; relay: Quantiles; added: Quantiles;
  /** write + fdatasync of a small block in the store's directory, every 20 ms during the run. */
  storeFdatasync: Quantiles;
  /** This process's event-loop delay p99 (1 ms resolution) while it timestamped arrivals: their precision. */
  measurerLoopDelayP99Ms: number; targetMs: number; met: boolean };

/** Small write + fdatasync in `dir` every 20 ms until stopped: the disk's sync latency while we measure. */
function fdatasyncProbe(dir: string): { stop(): Promise<number[]> } {
  const file = path.join(dir, '.bench-fsync-probe');
  const fd = fs.openSync(file, 'w+');
  fs.writeSync(fd, Buffer.alloc(1 << 20), 0, 1 << 20, 0);
  fs.fdatasyncSync(fd);
  const lat: number[] = [];
  let running = true;
  const loop = (async () => {
    const b = Buffer.alloc(512, 1);
    for (let off = 0; running; off = (off + 512) % (1 << 20)) {
      fs.writeSync(fd, b, 0, b.length, off);
      const t0 = performance.now();
      await new Promise<void>((r) => fs.fdatasync(fd, () => r()));
      lat.push(performance.now() - t0);
      await sleep(20);
    }
  })();
  return { async stop() { running = false; await loop; fs.closeSync(fd); fs.rmSync(file); return lat; } };
}

const quantiles = (xs: number[]): Quantiles => ({ p50: round(percentile(xs, 50), 3), p99: round(percentile(xs, 99), 3) });

export async function latency(cluster: Cluster, tmp: TempDir, root: string): Promise<LatencyResult> {
  const relay = await startRelay(cluster, tmp, [], root);
  try {
    await relay.proc.waitFor(/store ready/, 30_000);
    const direct = await streamClient(cluster.port, 'direct');
    const viaRelay = await streamClient(relay.port, 'via-relay');
    const probe = await sqlSession(cluster);
    await probe.query('CREATE TABLE IF NOT EXISTS bench_probe (t timestamptz)');
    await waitQuiet();
    const load = pgbench(cluster, LATENCY_SECONDS + 2);
    const syncProbe = fdatasyncProbe(relay.dir);
    await sleep(1000);
    const loopDelay = monitorEventLoopDelay({ resolution: 1 });
    loopDelay.enable();
    const samples: { sent: number; lsn: number }[] = [];
    const until = Date.now() + LATENCY_SECONDS * 1000;
    while (Date.now() < until) {
      const sent = performance.now();
      probe.write(query('BEGIN; INSERT INTO bench_probe VALUES (now()); COMMIT; SELECT pg_current_wal_flush_lsn()'));
      const r = (await probe.readResults()).find((x) => x.rows.length > 0)!;
      samples.push({ sent, lsn: Number(parseLsn(r.rows[0]![0]!)!) });
      await sleep(20);
    }
    await sleep(500);
    loopDelay.disable();
    const syncLat = await syncProbe.stop();
    await load.exited;
    direct.stop();
    viaRelay.stop();
    probe.close();
    const d: number[] = [];
    const v: number[] = [];
    const added: number[] = [];
    for (const s of samples) {
      const a = arrival(direct, s.lsn);
      const b = arrival(viaRelay, s.lsn);
      if (a === null || b === null) continue;
      d.push(a - s.sent);
      v.push(b - s.sent);
      added.push(b - a);
    }
    const addedQ = quantiles(added);
    return { store: root === tmp.path ? 'disk' : root, probes: added.length, direct: quantiles(d), relay: quantiles(v), added: addedQ,
      storeFdatasync: quantiles(syncLat), measurerLoopDelayP99Ms: round(loopDelay.percentile(99) / 1e6, 2), targetMs: 1, met: addedQ.p99 <= 1 };
  } finally {
    await relay.stop();
  }
}

// ---------------------------------------------------------------------------
// 2. ingest throughput
// ---------------------------------------------------------------------------

export type IngestResult = { mib: number; relayMBps: number[]; receivewalMBps: number[]; medianRelay: number;
  medianReceivewal: number; ratio: number; met: boolean };

async function ingest(cluster: Cluster, tmp: TempDir): Promise<IngestResult> {
  for (let i = 0; i < INGEST_RUNS; i++) {
    await cluster.psql(`SELECT pg_create_physical_replication_slot('relay_${i}', true), pg_create_physical_replication_slot('recv_${i}', true)`);
  }
  const start = parseLsn(await cluster.psql("SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'relay_0'"))!;
  log(`ingest: bulk load of ${INGEST_MIB} MiB on the primary`);
  await cluster.generateWal(INGEST_MIB);
  const end = parseLsn(await cluster.psql('SELECT pg_current_wal_flush_lsn()'))!;
  // The load's dirty pages would otherwise be written back during the first timed runs.
  await cluster.psql('CHECKPOINT');
  await runOk('sync', []);
  const segStart = start - (start % BigInt(cluster.walSegSize));
  const bytes = Number(end - segStart);
  const relayRun = async (i: number): Promise<number> => {
    const relay = await startRelay(cluster, tmp, ['--upstream-slot', `relay_${i}`]);
    try {
      const m = await relay.proc.waitFor(/"time":(\d+)[^\n]*"msg":"started streaming from upstream"/, 30_000);
      await relay.proc.waitFor(/listening for replication connections/, 30_000);
      const c = await WireClient.replication(relay.port);
      let doneAt = 0;
      await waitUntil(async () => {
        c.query('IDENTIFY_SYSTEM');
        const ms = await c.until('Z');
        const flush = parseLsn(rowOf(ms.find((x) => x.type === 'D')!)[2]!)!;
        doneAt = Date.now();
        return flush >= end;
      }, 600_000, 'the relay to store the bulk load', 5);
      c.end();
      return round(bytes / 1e6 / ((doneAt - Number(m[1])) / 1000), 1);
    } finally {
      await relay.stop();
    }
  };
  const receivewalRun = async (i: number): Promise<number> => {
    const dir = fs.mkdtempSync(path.join(tmp.path, 'recv-'));
    try {
      const t0 = Date.now();
      await runOk(pgBin('pg_receivewal'), ['-D', dir, '-h', '127.0.0.1', '-p', String(cluster.port), '-U', 'postgres', '-S', `recv_${i}`,
        '--synchronous', '-n', '-w', '--endpos', formatLsn(end)], { timeoutMs: 600_000 });
      return round(bytes / 1e6 / ((Date.now() - t0) / 1000), 1);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
  const settle = async (): Promise<void> => {
    await runOk('sync', []); // the previous run's files are gone: let the disk finish with them
    await waitQuiet();
  };
  const relayMBps: number[] = [];
  const recvMBps: number[] = [];
  for (let i = 0; i < INGEST_RUNS; i++) {
    // Alternate which goes first, so neither always follows the other's leftovers.
    for (const which of i % 2 === 0 ? ['relay', 'recv'] : ['recv', 'relay']) {
      await settle();
      if (which === 'relay') relayMBps.push(await relayRun(i));
      else recvMBps.push(await receivewalRun(i));
    }
    log(`ingest run ${i + 1}: relay ${relayMBps.at(-1)} MB/s, pg_receivewal --synchronous ${recvMBps.at(-1)} MB/s`);
  }
  for (let i = 0; i < INGEST_RUNS; i++) await cluster.psql(`SELECT pg_drop_replication_slot('relay_${i}'), pg_drop_replication_slot('recv_${i}')`);
  const mr = median(relayMBps);
  const mp = median(recvMBps);
  return { mib: round(bytes / 1048576, 0), relayMBps, receivewalMBps: recvMBps, medianRelay: mr, medianReceivewal: mp,
    ratio: round(mr / mp, 2), met: mr >= mp };
}

// ---------------------------------------------------------------------------
// 3. fan-out
// ---------------------------------------------------------------------------

export type FanoutResult = { standbys: number; seconds: number;
  direct: { walsenders: number; walsenderCpuS: number; primaryCpuS: number };
  viaRelay: { walsenders: number; walsenderCpuS: number; primaryCpuS: number; relayCpuS: number } };

function primaryCpu(cluster: Cluster): { walsenders: number; walsenderCpu: number; total: number } {
  const pm = postmasterPid(cluster);
  let walsenderCpu = 0;
  let total = cpuSeconds(pm, 'own') + cpuSeconds(pm, 'reapedChildren');
  let walsenders = 0;
  for (const c of postmasterChildren(cluster)) {
    let cpu = 0;
    try { cpu = cpuSeconds(c.pid, 'own'); } catch { continue; }
    total += cpu;
    if (c.cmdline.includes('walsender')) { walsenderCpu += cpu; walsenders++; }
  }
  return { walsenders, walsenderCpu, total };
}

async function fanoutRun(cluster: Cluster, walsink: string, port: number, relayPid: number | null) {
  const c = await WireClient.replication(port);
  c.query('IDENTIFY_SYSTEM');
  const start = rowOf((await c.until('Z')).find((m) => m.type === 'D')!)[2]!;
  c.end();
  const sinks: LoggedProcess[] = [];
  for (let i = 0; i < FANOUT; i++) {
    sinks.push(spawnLogged(walsink, [`host=127.0.0.1 port=${port} user=postgres replication=true application_name=sink${i}`,
      start, 'FFFFFF/0', '1', 'nohash'], { name: 'walsink' }));
  }
  await sleep(1500);
  await waitQuiet();
  const before = primaryCpu(cluster);
  const relayBefore = relayPid ? cpuSeconds(relayPid, 'own') : 0;
  const load = pgbench(cluster, FANOUT_SECONDS);
  await load.exited;
  await sleep(1000); // pgbench's backends exit and are reaped: their CPU moves to the postmaster's children total
  const after = primaryCpu(cluster);
  const relayCpu = relayPid ? cpuSeconds(relayPid, 'own') - relayBefore : 0;
  for (const s of sinks) await s.kill('SIGKILL');
  return { walsenders: after.walsenders, walsenderCpuS: round(after.walsenderCpu - before.walsenderCpu, 2),
    primaryCpuS: round(after.total - before.total, 2), relayCpuS: round(relayCpu, 2) };
}

async function fanout(cluster: Cluster, tmp: TempDir, walsink: string): Promise<FanoutResult> {
  const direct = await fanoutRun(cluster, walsink, cluster.port, null);
  await sleep(1000);
  const relay = await startRelay(cluster, tmp);
  try {
    await relay.proc.waitFor(/store ready/, 30_000);
    const viaRelay = await fanoutRun(cluster, walsink, relay.port, relay.proc.child.pid!);
    const { relayCpuS: _unused, ...d } = direct;
    return { standbys: FANOUT, seconds: FANOUT_SECONDS, direct: d, viaRelay };
  } finally {
    await relay.stop();
  }
}

// ---------------------------------------------------------------------------

export type RelayBenchResult = { latency: LatencyResult; latencyTmpfs: LatencyResult | null; ingest: IngestResult;
  fanout: FanoutResult; pgbench: string };

export async function relayBenchmarks(walsink: string, tmp: TempDir): Promise<RelayBenchResult> {
  const cluster = await startCluster({ name: 'bench-relay', walSegSizeMB: 16,
    conf: { max_wal_size: '4GB', checkpoint_timeout: '30min', shared_buffers: '256MB', max_wal_senders: FANOUT + 8 } });
  try {
    await runOk(pgBin('pgbench'), ['-h', cluster.socketDir, '-p', String(cluster.port), '-U', 'postgres', '-i', '-s', '10', '-q', 'postgres'],
      { timeoutMs: 300_000 });
    log(`relay: added latency, ${LATENCY_SECONDS} s at ${PGBENCH_TPS} tps (pgbench simple-update)`);
    const lat = await latency(cluster, tmp, tmp.path);
    // Diagnostic: the same with the store on tmpfs, where fdatasync costs nothing: what the relay's software adds.
    const shm = fs.existsSync('/dev/shm') ? '/dev/shm' : null;
    const latTmpfs = shm ? await latency(cluster, tmp, shm) : null;
    log(`relay: ingest throughput, ${INGEST_MIB} MiB, ${INGEST_RUNS} alternating runs`);
    const ing = await ingest(cluster, tmp);
    log(`relay: fan-out, ${FANOUT} walsink clients, ${FANOUT_SECONDS} s at ${PGBENCH_TPS} tps`);
    const fo = await fanout(cluster, tmp, walsink);
    return { latency: lat, latencyTmpfs: latTmpfs, ingest: ing, fanout: fo, pgbench: `pgbench -n -c 4 -j 2 -R ${PGBENCH_TPS} -b simple-update (scale 10)` };
  } finally {
    await cluster.destroy();
  }
}

export function relaySummary(r: RelayBenchResult): string {
  const l = r.latency;
  const i = r.ingest;
  const f = r.fanout;
  const t = r.latencyTmpfs;
  return [
    `relay added latency (${l.probes} commits, ms): direct p50 ${l.direct.p50} p99 ${l.direct.p99}; via relay p50 ${l.relay.p50} p99 ${l.relay.p99}; ` +
      `added p50 ${l.added.p50} p99 ${l.added.p99} (target p99 <= 1 ms: ${l.met ? 'met' : 'NOT met'}); ` +
      `the store disk's fdatasync meanwhile: p50 ${l.storeFdatasync.p50} p99 ${l.storeFdatasync.p99}; ` +
      `the measuring process's event-loop delay p99 ${l.measurerLoopDelayP99Ms}`,
    ...(t ? [`  same with the store on tmpfs (no disk sync; diagnostic): added p50 ${t.added.p50} p99 ${t.added.p99}`] : []),
    `relay ingest (${i.mib} MiB, MB/s): relay ${i.medianRelay} vs pg_receivewal --synchronous ${i.medianReceivewal} = ${i.ratio}x (target >= 1x: ${i.met ? 'met' : 'NOT met'})`,
    `fan-out ${f.standbys} clients, ${f.seconds} s: primary walsenders ${f.direct.walsenders} -> ${f.viaRelay.walsenders}; ` +
      `walsender CPU ${f.direct.walsenderCpuS} s -> ${f.viaRelay.walsenderCpuS} s; primary CPU ${f.direct.primaryCpuS} s -> ${f.viaRelay.primaryCpuS} s ` +
      `(relay CPU ${f.viaRelay.relayCpuS} s)`,
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const tmp = await makeTempDir('bench-relay');
  try {
    const walsink = await buildWalsink();
    const r = await relayBenchmarks(walsink, tmp);
    process.stdout.write(`${relaySummary(r)}\n`);
    const out = path.join(repoRoot, 'bench', 'out', 'relay.json');
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), quick, machine: machineInfo(), node: process.version,
      postgres: (await run(pgBin('postgres'), ['--version'])).stdout.trim(), ...r }, null, 2)}\n`);
    log(`wrote ${out}`);
  } finally {
    await tmp.remove();
  }
  process.exit(0);
}
