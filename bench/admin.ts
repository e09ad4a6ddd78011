// Admin API and metrics benchmarks (issue 4), on the real process over HTTP:
//   1. /metrics scrape time with 1000 WalSnd slots in use: 1000 replication
//      connections that each streamed a little WAL and sent a status reply (so every
//      per-standby family has 1000 series), source paused; target < 50 ms.
//   2. Admin API latency while walsink clients catch up from an archive at >= 1 GB/s
//      aggregate: many sequential requests (senders, status, oldest sent position,
//      healthz; /metrics reported apart) from this process; target p99 < 10 ms. Also the
//      same requests without load, and the server's own event-loop delay (its
//      nodejs_eventloop_lag_p99_seconds after the load).
// Runnable alone (`node bench/admin.ts`, BENCH_QUICK=1 for a short run) and from
// bench/run.ts through adminBenchmarks().

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { prepareWal, type WalSet } from './catchup.ts';
import {
  buildWalsink, formatLsn, log, machineInfo, median, outDir, parseLsn, parseWalsink, replConninfo, repoRoot, round, waitQuiet,
} from './lib.ts';
import { freePort, makeTempDir, run, spawnLogged, tail, type LoggedProcess } from '../test/helpers/proc.ts';
import { WireClient } from '../test/helpers/wire.ts';

const quick = process.env.BENCH_QUICK === '1';
const TOKEN = 'bench-admin-token-0123456789';
const SLOTS = 1000;

export type Latency = { n: number; p50: number; p99: number; max: number };
export type AdminBenchResult = {
  scrape: { senders: number; series: number; bytes: number; runs: number; latency: Latency; target: string; met: boolean; command: string };
  underLoad: {
    clients: number; workers: number; seconds: number; aggregateMBps: number; walsinkRuns: number;
    api: Latency; metrics: Latency; idleApi: Latency; serverEventLoopP99Ms: number | null; probeEventLoopP99Ms: number;
    target: string; met: boolean; command: string; walsink: string;
  };
};

function latency(xs: number[]): Latency {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number): number => round(s[Math.min(s.length - 1, Math.floor(q * s.length))]!, 2);
  return { n: s.length, p50: round(median(s), 2), p99: at(0.99), max: round(s.at(-1)!, 2) };
}

type Server = { proc: LoggedProcess; port: number; adminUrl: string; command: string; stop(): Promise<void> };

/** pg-walsender with the admin API on a free port; the node running this script (24 under npm run bench). */
async function startServer(args: string[], cwd: string): Promise<Server> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const argv = [path.join(repoRoot, 'src', 'main.ts'), ...args, '--listen', `127.0.0.1:${port}`,
    '--admin-listen', `127.0.0.1:${adminPort}`, '--admin-token', TOKEN, '--log-level', 'warn'];
  const proc = spawnLogged(process.execPath, argv, { cwd, name: 'pg-walsender' });
  try {
    await waitHttp(`http://127.0.0.1:${adminPort}/readyz`, proc);
  } catch (e) {
    await proc.kill('SIGKILL');
    throw e;
  }
  return {
    proc, port, adminUrl: `http://127.0.0.1:${adminPort}`, command: [process.execPath, ...argv].join(' ').replace(TOKEN, '<token>'),
    stop: () => proc.kill('SIGINT', 10_000),
  };
}

async function waitHttp(url: string, proc: LoggedProcess): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.hasExited) throw new Error(`pg-walsender exited: ${tail(proc.output(), 2000)}`);
    try {
      if ((await fetch(url)).ok) return;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error(`${url} not ready: ${tail(proc.output(), 2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// node:http with keep-alive, like a scraper: the time until the last byte arrived, without
// decoding the body inside the timed part.
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

async function timed(url: string, init: { method?: string; headers?: Record<string, string> } = {}): Promise<{ ms: number; text: string }> {
  const t0 = performance.now();
  const { status, body } = await new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
    const req = http.request(url, { method: init.method ?? 'GET', headers: init.headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
  const ms = performance.now() - t0;
  const text = body.toString('utf8');
  if (status !== 200) throw new Error(`${url}: HTTP ${status} ${text.slice(0, 200)}`);
  return { ms, text };
}

/** 1. /metrics with 1000 sender slots in use. */
async function scrapeBench(tmpPath: string): Promise<AdminBenchResult['scrape']> {
  const dir = path.join(tmpPath, 'scrape');
  fs.mkdirSync(dir, { recursive: true });
  const conf = path.join(dir, 'pgws.yaml');
  fs.writeFileSync(conf, 'demo_rate: 1MB\n');
  const srv = await startServer(['--config', conf, '--data-dir', path.join(dir, 'wal'), '--demo-wal-segment-size', '16MB',
    '--max-wal-senders', String(SLOTS + 8), '--workers', '2',
    '--wal-sender-timeout', '0'], dir); // these clients never answer keepalives
  const clients: WireClient[] = [];
  try {
    const flushNow = async (): Promise<bigint> => {
      const s = JSON.parse((await timed(`${srv.adminUrl}/api/v1/status`)).text) as { flush_lsn: string | null };
      return s.flush_lsn === null ? 0n : parseLsn(s.flush_lsn);
    };
    const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
    let first = await flushNow();
    while (first === 0n) { await sleep(100); first = await flushNow(); }
    while ((await flushNow()) < first + 0x20000n) await sleep(100);
    fs.writeFileSync(conf, 'demo_rate: 0\n'); // pause: the scrape is measured, not the streaming
    await timed(`${srv.adminUrl}/api/v1/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    await sleep(300); // a tick already under way may still publish
    const end = await flushNow();
    const flush = formatLsn(end);
    // Each connection streams the last 64 KiB or so (page-aligned, within the segment), then replies.
    const seg = 16n << 20n;
    const from = [end - 0x10000n - ((end - 0x10000n) % 8192n), end - (end % seg)].reduce((a, b) => (a > b ? a : b));
    log(`opening ${SLOTS} replication connections (each streams ${formatLsn(from)}..${flush}, then sends a status reply)`);
    for (let i = 0; i < SLOTS; i += 50) {
      const batch = await Promise.all(Array.from({ length: Math.min(50, SLOTS - i) }, (_, j) =>
        WireClient.replication(srv.port, { application_name: `standby${i + j}` })));
      for (const c of batch) c.query(`START_REPLICATION ${formatLsn(from)} TIMELINE 1`);
      clients.push(...batch);
    }
    const reply = Buffer.alloc(39);
    reply.write('d', 0);
    reply.writeUInt32BE(38, 1);
    reply.write('r', 5);
    for (const off of [6, 14, 22]) reply.writeBigUInt64BE(end, off);
    for (const c of clients) c.write(reply);
    const deadline = Date.now() + 60_000;
    for (;;) {
      const rows = JSON.parse((await timed(`${srv.adminUrl}/api/v1/senders`)).text) as { sent_lsn: string | null; replay_lsn: string | null }[];
      if (rows.length === SLOTS && rows.every((r) => r.sent_lsn === flush && r.replay_lsn === flush)) break;
      if (Date.now() > deadline) throw new Error(`senders not settled: ${rows.length} rows`);
      await sleep(200);
    }
    await waitQuiet();
    const times: number[] = [];
    let text = '';
    const runs = quick ? 30 : 100;
    for (let i = 0; i < runs; i++) {
      const r = await timed(`${srv.adminUrl}/metrics`);
      times.push(r.ms);
      text = r.text;
    }
    const series = text.split('\n').filter((l) => l.startsWith('pgws_standby_')).length;
    if (series < SLOTS * 10) throw new Error(`only ${series} per-standby series: the senders did not stay connected`);
    const lat = latency(times);
    log(`/metrics with ${SLOTS} senders: ${series} standby series, ${text.length} bytes, p50 ${lat.p50} ms, p99 ${lat.p99} ms, max ${lat.max} ms`);
    return { senders: SLOTS, series, bytes: text.length, runs, latency: lat, target: '< 50 ms (p50)', met: lat.p50 < 50, command: srv.command };
  } finally {
    for (const c of clients) c.end();
    await srv.stop();
  }
}

/** 2. Admin API latency during >= 1 GB/s of catch-up traffic. */
async function loadBench(walsink: string, wal: WalSet, tmpPath: string): Promise<AdminBenchResult['underLoad']> {
  const clientsN = Number(process.env.BENCH_ADMIN_CLIENTS ?? 4);
  const workers = process.env.BENCH_ADMIN_WORKERS ?? '2';
  const seconds = quick ? 8 : 20;
  const srv = await startServer(['--source', 'archive', '--archive-dir', wal.archiveDir, '--max-wal-senders', '32', '--workers', workers], tmpPath);
  try {
    const routes = ['/api/v1/senders', '/api/v1/status', '/api/v1/senders/oldest-sent-lsn', '/healthz'];
    const measure = async (until: () => boolean, minRequests: number): Promise<{ api: number[]; metrics: number[] }> => {
      const api: number[] = [];
      const metrics: number[] = [];
      for (let i = 0; until() || api.length < minRequests; i++) {
        if (i % 20 === 19) metrics.push((await timed(`${srv.adminUrl}/metrics`)).ms);
        else api.push((await timed(srv.adminUrl + routes[i % routes.length])).ms);
      }
      return { api, metrics };
    };
    await waitQuiet();
    const idle = await measure(() => false, 1000);

    log(`load: ${clientsN} walsink clients looping over ${formatLsn(wal.start)}..${formatLsn(wal.end)} for ${seconds} s`);
    const began = performance.now();
    const stopAt = began + seconds * 1000;
    let bytes = 0;
    let walsinkRuns = 0;
    let lastEnd = began;
    const conninfo = replConninfo(srv.port);
    // Each client is a shell loop of walsink runs, bounded by the deadline. The loops run
    // outside this process: spawning a child blocks its parent's event loop for a few ms,
    // and this process's only job is to probe (its own loop delay is reported).
    const LOOP = 'end=$(( $(date +%s%N) + $5 * 1000000 )); while [ "$(date +%s%N)" -lt "$end" ]; do "$1" "$2" "$3" "$4" 1 nohash || exit 1; done';
    const loop = async (): Promise<void> => {
      const r = await run('bash', ['-c', LOOP, 'walsink-loop', walsink, conninfo, formatLsn(wal.start), formatLsn(wal.end),
        String(Math.round(stopAt - performance.now()))], { timeoutMs: (seconds + 120) * 1000 });
      if (r.code !== 0) throw new Error(`walsink failed: ${tail(r.stderr + r.stdout, 500)}`);
      for (const line of r.stdout.split('\n').filter((l) => l.includes('bytes='))) {
        bytes += parseWalsink(line).bytes;
        walsinkRuns++;
      }
      lastEnd = Math.max(lastEnd, performance.now());
    };
    const load = Promise.all(Array.from({ length: clientsN }, loop));
    await new Promise((r) => setTimeout(r, 500));
    const probeDelay = monitorEventLoopDelay({ resolution: 1 });
    probeDelay.enable();
    const busy = await measure(() => performance.now() < stopAt - 500, 0);
    probeDelay.disable();
    await load;
    const aggregateMBps = round(bytes / 1e6 / ((lastEnd - began) / 1000));
    // prom-client samples the event loop every 10 ms; its percentiles include that interval.
    const m = /^nodejs_eventloop_lag_p99_seconds (\S+)$/m.exec((await timed(`${srv.adminUrl}/metrics`)).text);
    const api = latency(busy.api);
    const res = {
      clients: clientsN, workers: Number(workers), seconds, aggregateMBps, walsinkRuns, api, metrics: latency(busy.metrics), idleApi: latency(idle.api),
      serverEventLoopP99Ms: m ? round(Number(m[1]) * 1000, 2) : null,
      probeEventLoopP99Ms: round(probeDelay.percentile(99) / 1e6, 2),
      target: 'p99 < 10 ms at >= 1000 MB/s', met: api.p99 < 10 && aggregateMBps >= 1000, command: srv.command,
      walsink: `${walsink} '${conninfo}' ${formatLsn(wal.start)} ${formatLsn(wal.end)} 1 nohash  (x${clientsN}, looping)`,
    };
    log(`under load (${aggregateMBps} MB/s, ${walsinkRuns} walsink runs): API p50 ${api.p50} ms p99 ${api.p99} ms max ${api.max} ms ` +
      `(n=${api.n}); /metrics p99 ${res.metrics.p99} ms; idle API p99 ${res.idleApi.p99} ms; server event loop p99 ${res.serverEventLoopP99Ms} ms; probe's own event loop delay p99 ${res.probeEventLoopP99Ms} ms`);
    return res;
  } finally {
    await srv.stop();
  }
}

export async function adminBenchmarks(walsink: string, wal: WalSet, tmpPath: string): Promise<AdminBenchResult> {
  const scrape = await scrapeBench(tmpPath);
  const underLoad = await loadBench(walsink, wal, tmpPath);
  return { scrape, underLoad };
}

export function adminSummary(r: AdminBenchResult): string {
  const s = r.scrape;
  const l = r.underLoad;
  return [
    '| admin benchmark | result | target | met |',
    '|---|---|---|---|',
    `| /metrics, ${s.senders} senders (${s.series} series, ${Math.round(s.bytes / 1024)} KiB) | p50 ${s.latency.p50} ms, p99 ${s.latency.p99} ms, max ${s.latency.max} ms | ${s.target} | ${s.met ? 'yes' : 'NO'} |`,
    `| admin API during catch-up at ${l.aggregateMBps} MB/s (${l.clients} walsink, ${l.workers} sender threads) | p50 ${l.api.p50} ms, p99 ${l.api.p99} ms, max ${l.api.max} ms (n=${l.api.n}) | ${l.target} | ${l.met ? 'yes' : 'NO'} |`,
    `| /metrics during that load | p50 ${l.metrics.p50} ms, p99 ${l.metrics.p99} ms (n=${l.metrics.n}) | - | - |`,
    `| admin API, no load | p50 ${l.idleApi.p50} ms, p99 ${l.idleApi.p99} ms | - | - |`,
    `| server nodejs_eventloop_lag_p99_seconds after the load (includes the 10 ms sampling interval) | ${l.serverEventLoopP99Ms} ms | - | - |`,
    `| the probing process's own event-loop delay p99 (1 ms resolution; it bounds what the probe can see) | ${l.probeEventLoopP99Ms} ms | - | - |`,
  ].join('\n');
}

async function main(): Promise<void> {
  const tmp = await makeTempDir('bench-admin');
  let wal: WalSet | null = null;
  try {
    const walsink = await buildWalsink();
    wal = await prepareWal(tmp, quick ? 128 : 256);
    const r = await adminBenchmarks(walsink, wal, tmp.path);
    process.stdout.write(`\n${adminSummary(r)}\n`);
    fs.mkdirSync(outDir, { recursive: true });
    const file = path.join(outDir, 'admin-results.json');
    fs.writeFileSync(file, `${JSON.stringify({ date: new Date().toISOString(), quick, machine: machineInfo(), node: process.version, ...r }, null, 2)}\n`);
    log(`wrote ${file}`);
  } finally {
    await wal?.cluster.destroy().catch(() => {});
    await tmp.remove().catch(() => {});
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) { // run alone, not imported by bench/run.ts
  main().then(() => process.exit(0), (e: unknown) => {
    process.stderr.write(`bench failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  });
}
