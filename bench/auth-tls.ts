// Authentication and TLS (issue 5), pg-walsender against PostgreSQL 15 with the same
// clients, alternating runs after a quiet-machine wait, medians reported:
//   - connection set-up rate with SCRAM-SHA-256: connrate (bench/connrate.c, libpq)
//     loops connect + IDENTIFY_SYSTEM + close for a fixed time, with 1 and 4 clients;
//     both servers hold the same verifier (PostgreSQL's, copied from pg_authid);
//   - catch-up throughput over TLS: walsink with sslmode=require, against PostgreSQL
//     with ssl=on and against pg-walsender with the same certificate (test CA, RSA
//     2048); a hashed run per server first checks both sent identical bytes.
// Runs from bench/run.ts after the other benchmarks (same WAL), or alone:
//   node bench/auth-tls.ts   (prepares its own WAL; BENCH_QUICK=1 for a short run)

import fs from 'node:fs';
import path from 'node:path';
import { makeTestPki, type TestPki } from '../test/auth/certs.ts';
import { freePort, makeTempDir, postgresIds, run, runOk, spawnLogged, tail, waitUntil } from '../test/helpers/proc.ts';
import { prepareWal, type WalSet } from './catchup.ts';
import {
  buildWalsink, cpuSeconds, formatLsn, log, machineInfo, median, outDir, postmasterPid, repoRoot, round, runWalsink,
  tcpCount, waitNoWalsenders, waitQuiet, type Walsender,
} from './lib.ts';

const PASSWORD = 'bench-password';
const ROLE = 'benchscram';

export type Figure = {
  name: string;
  unit: string;
  postgres: number;
  walsender: number;
  ratio: number;
  target: string;
  met: boolean;
  runs: { postgres: number[]; walsender: number[] };
  /** Median server CPU seconds per unit of work (per 1000 connections, or per GB). */
  serverCpu: { postgres: number; walsender: number; per: string };
};

export type AuthTlsResult = { figures: Figure[]; commands: Record<string, string>; tlsHash: string };

/** gcc -O2 bench/connrate.c -lpq into bench/out/connrate. */
async function buildConnrate(): Promise<string> {
  fs.mkdirSync(outDir, { recursive: true });
  const bin = path.join(outDir, 'connrate');
  await runOk('gcc', ['-O2', path.join(repoRoot, 'bench', 'connrate.c'), '-I/usr/include/postgresql', '-lpq', '-o', bin]);
  return bin;
}

/** ssl=on with the test certificate, a SCRAM role and an hba line for it; returns an undo. */
async function configurePostgres(wal: WalSet, pki: TestPki): Promise<{ verifier: string; undo: () => Promise<void> }> {
  const c = wal.cluster;
  const { uid, gid } = postgresIds();
  for (const [from, to] of [[pki.serverCert, 'bench-server.crt'], [pki.serverKey, 'bench-server.key']] as const) {
    const dst = path.join(c.dataDir, to);
    fs.copyFileSync(from, dst);
    fs.chmodSync(dst, 0o600);
    fs.chownSync(dst, uid, gid);
  }
  const hbaFile = path.join(c.dataDir, 'pg_hba.conf');
  const hbaBefore = fs.readFileSync(hbaFile, 'utf8');
  fs.writeFileSync(hbaFile, `host replication ${ROLE} 127.0.0.1/32 scram-sha-256\n${hbaBefore}`);
  await c.updateConf({ ssl: 'on', ssl_cert_file: 'bench-server.crt', ssl_key_file: 'bench-server.key' });
  await c.reload();
  await c.psql(`DROP ROLE IF EXISTS ${ROLE}; CREATE ROLE ${ROLE} LOGIN REPLICATION PASSWORD '${PASSWORD}'`);
  const verifier = await c.psql(`SELECT rolpassword FROM pg_authid WHERE rolname = '${ROLE}'`);
  return {
    verifier,
    undo: async () => {
      fs.writeFileSync(hbaFile, hbaBefore);
      await c.updateConf({ ssl: null, ssl_cert_file: null, ssl_key_file: null });
      await c.reload();
    },
  };
}

/** pg-walsender on the same archive, with hba, users (PostgreSQL's verifier) and the certificate. */
async function startOurs(wal: WalSet, pki: TestPki, verifier: string, dir: string): Promise<Walsender> {
  fs.writeFileSync(path.join(dir, 'hba.conf'), `host replication ${ROLE} 127.0.0.1/32 scram-sha-256\nhost replication postgres 127.0.0.1/32 trust\n`);
  fs.writeFileSync(path.join(dir, 'users'), `${ROLE} ${verifier} replication\npostgres - replication\n`);
  const port = await freePort();
  const args = [path.join(repoRoot, 'src', 'main.ts'), '--source', 'archive', '--archive-dir', wal.archiveDir,
    '--listen', `127.0.0.1:${port}`, '--max-wal-senders', '64', '--workers', '2', '--admin-listen', 'off', '--log-level', 'warn',
    '--hba-file', path.join(dir, 'hba.conf'), '--users-file', path.join(dir, 'users'),
    '--ssl-cert-file', pki.serverCert, '--ssl-key-file', pki.serverKey];
  const proc = spawnLogged(process.execPath, args, { cwd: dir, name: 'pg-walsender' });
  const stop = async (): Promise<void> => proc.kill('SIGINT', 10_000);
  try {
    await waitUntil(() => {
      if (proc.hasExited) throw new Error(`pg-walsender exited: ${tail(proc.output(), 2000)}`);
      return tcpCount(port, 'listen') > 0;
    }, 60_000, `pg-walsender listening on ${port}`);
  } catch (e) {
    await stop();
    throw e;
  }
  return { proc, pid: proc.child.pid!, port, args: [process.execPath, ...args], stop };
}

type Side = 'postgres' | 'walsender';
type Sample = { value: number; serverCpuS: number; work: number };

/** Alternating timed runs, PostgreSQL first; the server's CPU is measured around each. */
async function alternate(wal: WalSet, ours: Walsender, runs: number,
  fn: (side: Side, port: number) => Promise<{ value: number; work: number }>): Promise<Record<Side, Sample[]>> {
  const got: Record<Side, Sample[]> = { postgres: [], walsender: [] };
  const pm = postmasterPid(wal.cluster);
  for (let i = 0; i < runs; i++) {
    for (const side of ['postgres', 'walsender'] as Side[]) {
      if (side === 'postgres') await waitNoWalsenders(wal.cluster);
      await waitQuiet();
      const cpu = (): number => (side === 'walsender' ? cpuSeconds(ours.pid, 'own') : cpuSeconds(pm, 'reapedChildren'));
      const c0 = cpu();
      const r = await fn(side, side === 'postgres' ? wal.cluster.port : ours.port);
      if (side === 'postgres') await waitNoWalsenders(wal.cluster);
      got[side].push({ ...r, serverCpuS: cpu() - c0 });
    }
  }
  return got;
}

function figure(name: string, unit: string, s: Record<Side, Sample[]>, per: string, perWork: number): Figure {
  const pg = median(s.postgres.map((x) => x.value));
  const ours = median(s.walsender.map((x) => x.value));
  const cpu = (side: Side): number => round(median(s[side].map((x) => (x.serverCpuS / x.work) * perWork)), 3);
  const f: Figure = {
    name, unit, postgres: round(pg), walsender: round(ours), ratio: round(ours / pg, 2), target: '>= 1x', met: ours / pg >= 1,
    runs: { postgres: s.postgres.map((x) => round(x.value)), walsender: s.walsender.map((x) => round(x.value)) },
    serverCpu: { postgres: cpu('postgres'), walsender: cpu('walsender'), per },
  };
  log(`${name}: PostgreSQL ${f.postgres} ${unit}, pg-walsender ${f.walsender} ${unit}, ratio ${f.ratio} (${f.met ? 'met' : 'NOT met'}); ` +
    `runs ${JSON.stringify(f.runs)}; server CPU s ${per}: ${JSON.stringify(f.serverCpu)}`);
  return f;
}

export async function authTlsBenchmarks(walsink: string, wal: WalSet, tmpPath: string,
  opts: { runs: number; seconds: number }): Promise<AuthTlsResult> {
  const dir = path.join(tmpPath, 'auth-tls');
  fs.mkdirSync(dir, { recursive: true });
  const pki = await makeTestPki(dir);
  const connrate = await buildConnrate();
  const pg = await configurePostgres(wal, pki);
  let ours: Walsender | null = null;
  try {
    ours = await startOurs(wal, pki, pg.verifier, dir);
    const figures: Figure[] = [];
    const scramConn = (port: number): string => `host=127.0.0.1 port=${port} user=${ROLE} replication=true sslmode=disable`;
    for (const par of [1, 4]) {
      log(`connection set-up rate, SCRAM-SHA-256, ${par} client(s), ${opts.seconds} s per run`);
      const s = await alternate(wal, ours, opts.runs, async (_side, port) => {
        const r = await run(connrate, [scramConn(port), String(opts.seconds), String(par)], { env: { PGPASSWORD: PASSWORD }, timeoutMs: 120_000 });
        const m = /connections=(\d+) failed=(\d+) seconds=([\d.]+) per_second=([\d.]+)/.exec(r.stdout);
        if (r.code !== 0 || !m || m[2] !== '0') throw new Error(`connrate failed: ${tail(r.stdout + r.stderr, 1000)}`);
        return { value: Number(m[4]), work: Number(m[1]) };
      });
      figures.push(figure(`connection set-up rate, SCRAM-SHA-256, ${par} client${par > 1 ? 's' : ''} (connect + IDENTIFY_SYSTEM)`,
        'conn/s', s, 'per 1000 connections', 1000));
    }
    const tlsConn = (port: number): string => `host=127.0.0.1 port=${port} user=postgres replication=true application_name=walsink sslmode=require`;
    const hashes: Partial<Record<Side, string>> = {};
    for (const [side, port] of [['postgres', wal.cluster.port], ['walsender', ours.port]] as const) {
      hashes[side] = (await runWalsink(walsink, tlsConn(port), wal.start, wal.end, { hash: true })).hash;
    }
    if (hashes.postgres !== hashes.walsender) throw new Error(`walsink hashes over TLS differ: ${JSON.stringify(hashes)}`);
    log(`catch-up over TLS, 1 stream, walsink sslmode=require (hash ${hashes.postgres} from both)`);
    const bytes = Number(wal.end - wal.start);
    const s = await alternate(wal, ours, opts.runs, async (_side, port) => {
      const r = await runWalsink(walsink, tlsConn(port), wal.start, wal.end, { hash: false });
      return { value: r.MBps, work: bytes / 1e9 };
    });
    figures.push(figure('catch-up over TLS, 1 stream, walsink sslmode=require', 'MB/s', s, 'per GB', 1));
    return {
      figures,
      tlsHash: hashes.postgres!,
      commands: {
        connrateBuild: `gcc -O2 bench/connrate.c -I/usr/include/postgresql -lpq -o ${connrate}`,
        connrate: `PGPASSWORD=... ${connrate} '${scramConn(0).replace('port=0', 'port=<port>')}' ${opts.seconds} <1|4>`,
        walsinkTls: `${walsink} '${tlsConn(0).replace('port=0', 'port=<port>')}' ${formatLsn(wal.start)} ${formatLsn(wal.end)} 1 nohash`,
        walsender: ours.args.join(' '),
        postgres: `ssl=on (RSA 2048 test certificate), hba "host replication ${ROLE} 127.0.0.1/32 scram-sha-256", password_encryption=scram-sha-256`,
      },
    };
  } finally {
    await ours?.stop().catch(() => {});
    await pg.undo().catch(() => {});
  }
}

export function authTlsSummary(r: AuthTlsResult): string {
  const rows = [['benchmark', 'PostgreSQL 15', 'pg-walsender', 'ratio', 'target', 'met', 'server CPU s (PG / ours)']];
  for (const f of r.figures) {
    rows.push([`${f.name} (${f.unit})`, String(f.postgres), String(f.walsender), `${f.ratio}x`, f.target, f.met ? 'yes' : 'NO',
      `${f.serverCpu.postgres} / ${f.serverCpu.walsender} ${f.serverCpu.per}`]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((x) => x[i]!.length)));
  const line = (x: string[]): string => `| ${x.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(rows[0]!), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.slice(1).map(line)].join('\n');
}

if (import.meta.main) {
  const quick = process.env.BENCH_QUICK === '1';
  const runs = Number(process.env.BENCH_RUNS ?? (quick ? 3 : 5));
  const sizeMiB = quick ? 128 : 512;
  const tmp = await makeTempDir('bench-auth');
  let wal: WalSet | null = null;
  try {
    const walsink = await buildWalsink();
    wal = await prepareWal(tmp, sizeMiB);
    const result = await authTlsBenchmarks(walsink, wal, tmp.path, { runs, seconds: quick ? 3 : 5 });
    const text = authTlsSummary(result);
    process.stdout.write(`\n${text}\n\nMB = 10^6 bytes. Medians of ${runs} alternating runs. WAL ${formatLsn(wal.start)}..${formatLsn(wal.end)} (${sizeMiB} MiB).\n`);
    fs.writeFileSync(path.join(outDir, 'auth-tls.json'), `${JSON.stringify({
      date: new Date().toISOString(), quick, machine: machineInfo(), node: process.version, sizeMiB, ...result, summary: text,
    }, null, 2)}\n`);
  } finally {
    await wal?.cluster.destroy().catch(() => {});
    await tmp.remove().catch(() => {});
  }
  process.exit(0);
}
