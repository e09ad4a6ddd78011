// `npm run bench`: pg-walsender against PostgreSQL 15's own walsender, in one run, on the
// same WAL and with the same clients, over loopback. Builds walsink, prepares >= 512 MiB
// of real WAL in a PostgreSQL 15 cluster (BENCH_QUICK=1: 128 MiB), then measures catch-up
// throughput (walsink and pg_receivewal, 1 stream; walsink, 1 stream with the server and the
// client pinned to CPUs; walsink, 16 streams; BENCH_RUNS timed runs each, default 5) and idle
// memory per standby (200 idle standbys), then the admin API and /metrics (bench/admin.ts),
// then the relay (source upstream: added latency, ingest throughput, fan-out; bench/relay.ts).
// then authentication and TLS (SCRAM connection rate, catch-up over TLS; bench/auth-tls.ts).
// Prints a summary table
// and writes bench/out/results.json.
// Every cluster, server and client is stopped at the end, also on failure.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { concurrentWalsink, pinnedWalsink, prepareWal, receivewalEndpos, singleReceivewal, singleWalsink, type Comparison, type WalSet } from './catchup.ts';
import { idleMemory, type IdleResult } from './idle-memory.ts';
import { stuckStandby } from './stuck-standby.ts';
import { adminBenchmarks, adminSummary } from './admin.ts';
import { relayBenchmarks, relaySummary } from './relay.ts';
import { authTlsBenchmarks, authTlsSummary } from './auth-tls.ts';
import {
  buildWalsink, formatLsn, gitInfo, log, machineInfo, outDir, replConninfo, startWalsender, walsinkSource, type Walsender,
} from './lib.ts';
import { freePort, makeTempDir, pgBin, runOk, sha256Dir } from '../test/helpers/proc.ts';

const quick = process.env.BENCH_QUICK === '1';
const SIZE_MIB = quick ? 128 : 512;
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
// BENCH_ONLY=catchup: the catch-up comparisons alone (for quick A/B of the send path);
// prints them and writes bench/out/results-catchup.json, not results.json.
const catchupOnly = process.env.BENCH_ONLY === 'catchup';
const CONCURRENT = 16;
const IDLE_STANDBYS = 200;

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r: string[]): string => `| ${r.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [line(rows[0]), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.slice(1).map(line)].join('\n');
}

const pct = (x: number): string => `${Math.round(x * 100)}%`;

function summary(catchup: Comparison[], idle: IdleResult): string {
  const rows = [['benchmark', 'PostgreSQL 15', 'pg-walsender', 'ratio', 'target', 'met', 'other programs (max)']];
  for (const c of catchup) {
    const other = Math.max(...c.otherBusy.postgres, ...c.otherBusy.walsender);
    rows.push([`${c.name} (${c.unit})`, String(c.postgres), String(c.walsender), `${c.ratio}x`, c.target, c.met ? 'yes' : 'NO', pct(other)]);
  }
  rows.push([
    `idle memory per standby, ${idle.standbys} standbys (MB)`,
    `${idle.postgres.pssPerStandbyMB} (Pss/walsender)`, `${idle.walsender.rssPerStandbyMB} (RSS delta/standby)`,
    `${idle.ratio}x`, idle.target, idle.met ? 'yes' : 'NO', '-',
  ]);
  const cpu = [['CPU seconds per GB sent (median)', 'PostgreSQL server', 'pg-walsender server', 'client(s) with PostgreSQL', 'client(s) with pg-walsender']];
  for (const c of catchup) {
    cpu.push([c.name, String(c.cpuPerGB.postgres.server), String(c.cpuPerGB.walsender.server),
      String(c.cpuPerGB.postgres.client), String(c.cpuPerGB.walsender.client)]);
  }
  return `${table(rows)}\n\n${table(cpu)}\n\n"other programs": the largest share of the machine's CPU that processes ` +
    'outside the benchmark used during one of the timed runs kept for that figure (a pair of runs above 15% is repeated, up to 3 times).';
}

async function main(): Promise<void> {
  const began = Date.now();
  const git = gitInfo(); // before the run: the code that was measured
  log(`pg-walsender benchmarks${quick ? ' (BENCH_QUICK)' : ''}: ${SIZE_MIB} MiB of WAL, ${RUNS} runs per figure`);
  const walsink = await buildWalsink();
  const pgVersion = (await runOk(pgBin('postgres'), ['--version'])).stdout.trim();
  const tmp = await makeTempDir('bench');
  let wal: WalSet | null = null;
  let ours: Walsender | null = null;
  try {
    wal = await prepareWal(tmp, SIZE_MIB);
    const archiveSums = await sha256Dir(wal.archiveDir);
    ours = await startWalsender({ archiveDir: wal.archiveDir, port: await freePort(), maxWalSenders: CONCURRENT + 16, cwd: tmp.path });
    const srv = { cluster: wal.cluster, ours };
    const catchupServerCommand = ours.args;
    const catchup: Comparison[] = [];
    log('catch-up, 1 stream, walsink');
    catchup.push(await singleWalsink(walsink, wal, srv, RUNS));
    if (os.availableParallelism() >= 2) {
      log('catch-up, 1 stream, walsink, pinned apart and together');
      catchup.push(await pinnedWalsink(walsink, wal, srv, RUNS, 'apart'));
      catchup.push(await pinnedWalsink(walsink, wal, srv, RUNS, 'together'));
    }
    log('catch-up, 1 stream, pg_receivewal');
    catchup.push(await singleReceivewal(tmp.path, wal, srv, RUNS, archiveSums));
    log(`catch-up, ${CONCURRENT} concurrent, walsink`);
    catchup.push(await concurrentWalsink(walsink, wal, srv, RUNS, CONCURRENT));
    if (catchupOnly) {
      const rows = catchup.map((c) => `${c.name}: PostgreSQL ${c.postgres}, pg-walsender ${c.walsender} ${c.unit}, ${c.ratio}x`
        + ` (server CPU s/GB ${c.cpuPerGB.postgres.server} vs ${c.cpuPerGB.walsender.server})`);
      process.stdout.write(`\n${rows.join('\n')}\n`);
      fs.mkdirSync(outDir, { recursive: true });
      fs.writeFileSync(path.join(outDir, 'results-catchup.json'), `${JSON.stringify({ date: new Date().toISOString(), git, quick, catchup }, null, 2)}\n`);
      return;
    }
    log('isolation: 4 walsinks with and without a standby that stops reading');
    const stuck = await stuckStandby(walsink, wal, srv, quick ? 1 : 3);
    await ours.stop();
    ours = null;
    const idle = await idleMemory(walsink, wal, IDLE_STANDBYS, tmp.path);
    log('admin API and metrics: /metrics with 1000 senders, API latency under catch-up load');
    const admin = await adminBenchmarks(walsink, wal, tmp.path);
    log('relay (source upstream): added latency, ingest throughput, fan-out (bench/relay.ts)');
    const relay = await relayBenchmarks(walsink, tmp);
    log('authentication and TLS: SCRAM connection rate, catch-up over TLS (bench/auth-tls.ts)');
    const authTls = await authTlsBenchmarks(walsink, wal, tmp.path, { runs: RUNS, seconds: quick ? 3 : 5 });
    const selectVersion = await wal.cluster.psql('SELECT version()');

    const stuckText = `stuck standby (issue 5): ${stuck.clients} walsinks, aggregate MB/s without -> with one client that never reads: `
      + `PostgreSQL ${stuck.postgres.withoutMBps} -> ${stuck.postgres.withMBps} (${stuck.postgres.ratio}), `
      + `pg-walsender ${stuck.walsender.withoutMBps} -> ${stuck.walsender.withMBps} (${stuck.walsender.ratio}); target >= 0.9: ${stuck.met ? 'met' : 'NOT met'}`;
    const text = `${summary(catchup, idle)}\n\n${stuckText}\n\n${adminSummary(admin)}\n\n${relaySummary(relay)}\n\n${authTlsSummary(authTls)}`;
    const seconds = Math.round((Date.now() - began) / 1000);
    process.stdout.write(`\n${text}\n\nMB = 10^6 bytes. Ratio = pg-walsender / PostgreSQL. Medians of ${RUNS} alternating runs after a warm-up. ` +
      `WAL ${formatLsn(wal.start)}..${formatLsn(wal.end)} (${SIZE_MIB} MiB). Took ${seconds} s.\n`);
    const results = {
      date: new Date().toISOString(),
      quick,
      durationSeconds: seconds,
      machine: machineInfo(),
      node: process.version,
      git,
      runsPerFigure: RUNS,
      postgres: { binary: pgVersion, server: selectVersion },
      wal: {
        start: formatLsn(wal.start), end: formatLsn(wal.end), sizeMiB: SIZE_MIB, segmentSize: wal.segSize,
        segments: [wal.segments[0], wal.segments.at(-1)], seedSegment: wal.seedSegment,
      },
      commands: {
        walsinkBuild: `gcc -O2 ${walsinkSource} -I/usr/include/postgresql -lpq -o ${walsink}`,
        walsink: `${walsink} '${replConninfo(0).replace('port=0', 'port=<port>')}' ${formatLsn(wal.start)} ${formatLsn(wal.end)} 1 [nohash]`,
        pgReceivewal: `${pgBin('pg_receivewal')} -D <fresh dir holding ${wal.seedSegment}> -h 127.0.0.1 -p <port> -U postgres -n -v -w --status-interval=1 --endpos ${formatLsn(receivewalEndpos(wal))}`,
        walsenderCatchup: catchupServerCommand.join(' '),
        walsenderIdle: idle.command.join(' '),
        postgresSettings: wal.cluster.settings,
      },
      catchup,
      idleMemory: idle,
      stuckStandby: stuck,
      admin,
      authTls,
      relay,
      summary: text,
    };
    fs.mkdirSync(outDir, { recursive: true });
    fs.writeFileSync(path.join(outDir, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
    log(`wrote ${path.join(outDir, 'results.json')}`);
  } finally {
    await ours?.stop().catch(() => {});
    await wal?.cluster.destroy().catch(() => {});
    await tmp.remove().catch(() => {});
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`bench failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  },
);
