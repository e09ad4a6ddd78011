// Shared pieces of the benchmarks: building and running walsink, starting and stopping
// pg-walsender as a child process (the real node binary, so its pid is the server),
// reading a process's memory (VmRSS, smaps_rollup Pss) and CPU time, finding PostgreSQL's
// walsender processes, CPU pinning, waiting for a quiet machine, LSN arithmetic and small
// statistics.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, runOk, sleep, spawnLogged, tail, waitUntil } from '../test/helpers/proc.ts';
import type { LoggedProcess } from '../test/helpers/proc.ts';
import type { Cluster } from '../test/helpers/pg.ts';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const outDir = path.join(repoRoot, 'bench', 'out');
export const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------
// LSNs
// ---------------------------------------------------------------------------

export function parseLsn(s: string): bigint {
  const m = /^([0-9A-F]+)\/([0-9A-F]+)$/i.exec(s.trim());
  if (!m) throw new Error(`bad LSN ${s}`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

export function formatLsn(v: bigint): string {
  return `${(v >> 32n).toString(16).toUpperCase()}/${(v & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** Segment file name (timeline 1 unless given) of the segment that holds `lsn`. */
export function segmentName(lsn: bigint, segSize: number, tli = 1): string {
  const segno = lsn / BigInt(segSize);
  const perLog = 0x100000000n / BigInt(segSize);
  const hex = (n: bigint | number): string => n.toString(16).toUpperCase().padStart(8, '0');
  return hex(tli) + hex(segno / perLog) + hex(segno % perLog);
}

export function segmentStart(name: string, segSize: number): bigint {
  const log = BigInt(`0x${name.slice(8, 16)}`);
  const seg = BigInt(`0x${name.slice(16, 24)}`);
  return (log * (0x100000000n / BigInt(segSize)) + seg) * BigInt(segSize);
}

// ---------------------------------------------------------------------------
// statistics and formatting
// ---------------------------------------------------------------------------

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export const round = (x: number, digits = 1): number => Number(x.toFixed(digits));

export function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

// ---------------------------------------------------------------------------
// walsink
// ---------------------------------------------------------------------------

export const walsinkSource = path.resolve(repoRoot, '../shared/tools/walsink.c');

/** gcc -O2 walsink.c -lpq into bench/out/walsink; returns the binary's path. */
export async function buildWalsink(): Promise<string> {
  fs.mkdirSync(outDir, { recursive: true });
  const bin = path.join(outDir, 'walsink');
  await runOk('gcc', ['-O2', walsinkSource, '-I/usr/include/postgresql', '-lpq', '-o', bin]);
  return bin;
}

export type WalsinkResult = { bytes: number; seconds: number; MBps: number; firstByteMs: number; hash: string };

export function parseWalsink(out: string): WalsinkResult {
  const m = /bytes=(\d+) seconds=([\d.]+) MBps=([\d.]+) first_byte_ms=([-\d.]+) hash=([0-9a-f]+)/.exec(out);
  if (!m) throw new Error(`unexpected walsink output: ${tail(out, 500)}`);
  return { bytes: Number(m[1]), seconds: Number(m[2]), MBps: Number(m[3]), firstByteMs: Number(m[4]), hash: m[5] };
}

/** One walsink run from start to end (bounded by timeoutMs); throws unless it reached end. */
export async function runWalsink(bin: string, conninfo: string, start: bigint, end: bigint,
  opts: { hash: boolean; timeoutMs?: number; cpu?: number }): Promise<WalsinkResult> {
  const args = [conninfo, formatLsn(start), formatLsn(end), '1', ...(opts.hash ? [] : ['nohash'])];
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const r = opts.cpu === undefined
    ? await run(bin, args, { timeoutMs })
    : await run('taskset', ['-c', String(opts.cpu), bin, ...args], { timeoutMs });
  if (r.code !== 0) throw new Error(`walsink ${args.join(' ')} failed (code ${r.code}): ${tail(r.stderr + r.stdout, 1000)}`);
  return parseWalsink(r.stdout);
}

/** libpq conninfo of a replication connection to 127.0.0.1:port. */
export const replConninfo = (port: number): string =>
  `host=127.0.0.1 port=${port} user=postgres replication=true application_name=walsink`;

// ---------------------------------------------------------------------------
// pg-walsender as a child process
// ---------------------------------------------------------------------------

export type Walsender = { proc: LoggedProcess; pid: number; port: number; args: string[]; stop(): Promise<void> };

/** How many IPv4 TCP sockets with local port `port` are listening / established (from /proc/net/tcp; no connection made). */
export function tcpCount(port: number, state: 'listen' | 'established'): number {
  const want = state === 'listen' ? '0A' : '01';
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  let n = 0;
  for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 3 && f[1].endsWith(`:${hexPort}`) && f[3] === want) n++;
  }
  return n;
}

/**
 * Start `node src/main.ts --source archive ...` with the node binary running this
 * script (node 24 under npm run bench); it is spawned directly, so the child's pid is
 * the server's. Ready when its port listens.
 */
export async function startWalsender(opts: { archiveDir: string; port: number; maxWalSenders: number; workers?: number;
  logLevel?: string; nodeArgs?: string[]; cwd?: string }): Promise<Walsender> {
  const args = [
    ...(opts.nodeArgs ?? []),
    path.join(repoRoot, 'src', 'main.ts'),
    '--source', 'archive', '--archive-dir', opts.archiveDir,
    '--listen', `127.0.0.1:${opts.port}`,
    '--max-wal-senders', String(opts.maxWalSenders),
    '--workers', String(opts.workers ?? 2),
    '--admin-listen', 'off', '--log-level', opts.logLevel ?? 'warn',
    // BENCH_WAL_READ=read: the copying send path, for an A/B against the default (mmap).
    ...(process.env.BENCH_WAL_READ ? ['--wal-read', process.env.BENCH_WAL_READ] : []),
  ];
  const proc = spawnLogged(process.execPath, args, { cwd: opts.cwd ?? outDir, name: 'pg-walsender' });
  const stop = async (): Promise<void> => proc.kill('SIGINT', 10_000);
  try {
    await waitUntil(() => {
      if (proc.hasExited) throw new Error(`pg-walsender exited: ${tail(proc.output(), 2000)}`);
      return tcpCount(opts.port, 'listen') > 0;
    }, 60_000, `pg-walsender listening on ${opts.port}`);
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}\n--- pg-walsender output ---\n${tail(proc.output(), 2000)}`);
  }
  return { proc, pid: proc.child.pid!, port: opts.port, args: [process.execPath, ...args], stop };
}

// ---------------------------------------------------------------------------
// memory
// ---------------------------------------------------------------------------

export type Mem = { rssKiB: number; pssKiB: number };

/** VmRSS from /proc/PID/status and Pss from /proc/PID/smaps_rollup, in KiB. */
export function processMemory(pid: number): Mem {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const rollup = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kib = (text: string, key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text);
    if (!m) throw new Error(`no ${key} for pid ${pid}`);
    return Number(m[1]);
  };
  return { rssKiB: kib(status, 'VmRSS'), pssKiB: kib(rollup, 'Pss') };
}

/** Median of `samples` readings one interval apart (memory settles after connection bursts). */
export async function sampleMemory(pid: number, samples = 3, intervalMs = 1000): Promise<Mem> {
  const got: Mem[] = [];
  for (let i = 0; i < samples; i++) {
    if (i > 0) await sleep(intervalMs);
    got.push(processMemory(pid));
  }
  return { rssKiB: median(got.map((m) => m.rssKiB)), pssKiB: median(got.map((m) => m.pssKiB)) };
}

export function postmasterPid(cluster: Cluster): number {
  return Number(fs.readFileSync(path.join(cluster.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
}

/** Children of the postmaster: pid, state (Z = exited, not yet reaped) and command line ("postgres: walsender ..."). */
export function postmasterChildren(cluster: Cluster): { pid: number; state: string; cmdline: string }[] {
  const pm = postmasterPid(cluster);
  const out: { pid: number; state: string; cmdline: string }[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) !== pm) continue;
      out.push({ pid: Number(e), state, cmdline: fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').replaceAll('\0', ' ').trim() });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** Wait until the postmaster has no walsender child left, exited ones reaped too. */
export function waitNoWalsenders(cluster: Cluster, timeoutMs = 30_000): Promise<void> {
  return waitUntil(() => postmasterChildren(cluster).every((c) => c.state !== 'Z' && !c.cmdline.includes('walsender')),
    timeoutMs, 'PostgreSQL walsenders to exit', 20);
}

/** Set the CPU affinity of every thread of a process (children forked later inherit it). */
export function pinProcess(pid: number, cpus: string): void {
  execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
}

// ---------------------------------------------------------------------------
// CPU time
// ---------------------------------------------------------------------------

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/**
 * CPU seconds (user + system) from /proc/PID/stat: the process's own (all threads),
 * or those of its children it has already reaped (cutime + cstime).
 */
export function cpuSeconds(pid: number | 'self', which: 'own' | 'reapedChildren'): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
  const i = which === 'own' ? 11 : 13; // utime = field 14, cutime = field 16
  return (Number(f[i]) + Number(f[i + 1])) / CLK_TCK;
}

/** Busy CPU seconds of the whole machine so far (/proc/stat: all but idle and iowait). */
export function machineBusySeconds(): number {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = f;
  return (user + nice + system + irq + softirq + steal) / CLK_TCK;
}

/**
 * CPU seconds user-space processes spent so far: user + nice + system time of the
 * machine minus that of kernel threads (children of kthreadd: I/O write-back, softirq
 * threads), which work for the benchmark's own I/O. Differences over a run, minus the
 * CPU of the benchmark's own processes, give what other programs used.
 */
export function userProcessSeconds(): number {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 4).map(Number);
  let kthreads = 0;
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const x = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (e === '2' || x[1] === '2') kthreads += Number(x[11]) + Number(x[12]);
    } catch {
      // exited meanwhile
    }
  }
  return (f[0] + f[1] + f[2] - kthreads) / CLK_TCK;
}

let quietBudgetMs = 120_000;

/**
 * Other processes on this machine (a test suite, a build) distort a timed run: wait
 * until the machine is idle (< 10% busy over 250 ms), at most 120 s over the whole
 * bench. Returns the busy fraction last seen.
 */
export async function waitQuiet(): Promise<number> {
  const cores = os.availableParallelism();
  for (;;) {
    const b0 = machineBusySeconds();
    const t0 = Date.now();
    await sleep(250);
    const busy = (machineBusySeconds() - b0) / (cores * (Date.now() - t0) / 1000);
    if (busy < 0.1 || quietBudgetMs <= 0) return busy;
    quietBudgetMs -= Date.now() - t0;
  }
}

// ---------------------------------------------------------------------------
// machine
// ---------------------------------------------------------------------------

export function machineInfo(): Record<string, unknown> {
  const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
  const meminfo = fs.readFileSync('/proc/meminfo', 'utf8');
  const memKiB = Number(/^MemTotal:\s+(\d+)/m.exec(meminfo)?.[1] ?? 0);
  const sh = (cmd: string, args: string[]): string => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8' }).trim();
    } catch {
      return 'unknown';
    }
  };
  return {
    nproc: Number(sh('nproc', [])),
    cpuModel: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? 'unknown',
    memoryGiB: round(memKiB / MiB, 1),
    kernel: sh('uname', ['-sr']),
  };
}

/** The commit benchmarked, and whether src/ or workers/ had uncommitted changes. */
export function gitInfo(): { commit: string; dirty: boolean } {
  try {
    const commit = execFileSync('git', ['-C', repoRoot, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim();
    const status = execFileSync('git', ['-C', repoRoot, 'status', '--porcelain', '--', 'src', 'workers', 'package.json'],
      { encoding: 'utf8' }).trim();
    return { commit, dirty: status !== '' };
  } catch {
    return { commit: 'unknown', dirty: true };
  }
}
