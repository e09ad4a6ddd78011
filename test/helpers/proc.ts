// Child-process utilities for tests that drive real PostgreSQL binaries.
//
// Rules this module enforces:
// - PostgreSQL refuses to run as root. With `asPostgres: true` a command runs as
//   the `postgres` OS user (`runuser -u postgres -- ...`) when we are root, and
//   directly otherwise.
// - Every child is started in its own process group (detached) so that a kill
//   reaches runuser and everything under it, and is recorded in a module-level
//   registry that kills it on process exit / SIGINT / SIGTERM / SIGHUP.
// - Every wait is bounded and its timeout error carries the relevant output tail.

import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export const PG_BIN = '/usr/lib/postgresql/15/bin';
export const POSTGRES_OS_USER = 'postgres';

export function pgBin(name: string): string {
  return path.join(PG_BIN, name);
}

export const isRoot: boolean = typeof process.getuid === 'function' && process.getuid() === 0;

/** Keep temp dirs after the process ends (debugging): PGWS_KEEP_TMP=1. */
export const keepTmp: boolean = process.env.PGWS_KEEP_TMP === '1';

// ---------------------------------------------------------------------------
// Cleanup registry
// ---------------------------------------------------------------------------

/** A synchronous cleanup action, run from the exit/signal hook. */
export type SyncCleanup = () => void;

const cleanups = new Map<number, SyncCleanup>();
let nextCleanupId = 1;
let hooksInstalled = false;
let cleaningUp = false;

/**
 * Register a synchronous action to run if the process exits (normally, on an
 * uncaught exception, or on SIGINT/SIGTERM/SIGHUP) before it is unregistered.
 * Returns the unregister function. Actions run newest first.
 */
export function registerCleanup(fn: SyncCleanup): () => void {
  installHooks();
  const id = nextCleanupId++;
  cleanups.set(id, fn);
  return () => {
    cleanups.delete(id);
  };
}

/** Run (and forget) every registered cleanup now, synchronously. */
export function runCleanupsSync(): void {
  if (cleaningUp) return;
  cleaningUp = true;
  try {
    const fns = [...cleanups.entries()].reverse();
    cleanups.clear();
    for (const [, fn] of fns) {
      try {
        fn();
      } catch (err) {
        process.stderr.write(`pgws test cleanup failed: ${String(err)}\n`);
      }
    }
  } finally {
    cleaningUp = false;
  }
}

const SIGNAL_EXIT_CODES: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => runCleanupsSync());
  for (const sig of Object.keys(SIGNAL_EXIT_CODES)) {
    process.on(sig, () => {
      runCleanupsSync();
      process.exit(SIGNAL_EXIT_CODES[sig]);
    });
  }
}

// ---------------------------------------------------------------------------
// Environment / command construction
// ---------------------------------------------------------------------------

/**
 * The environment for PostgreSQL tools: the caller's environment without any
 * libpq/PG* variables (PGHOST, PGPORT, PGDATA, PGPASSWORD, ... would silently
 * redirect a tool), with a C locale, plus `extra`.
 */
export function cleanEnv(extra?: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('PG')) continue;
    if (k === 'LANG' || k.startsWith('LC_')) continue;
    env[k] = v;
  }
  env.LC_ALL = 'C';
  env.LANG = 'C';
  return { ...env, ...extra };
}

function buildCommand(cmd: string, args: string[], asPostgres: boolean | undefined): [string, string[]] {
  if (asPostgres && isRoot) return ['runuser', ['-u', POSTGRES_OS_USER, '--', cmd, ...args]];
  return [cmd, args];
}

function describe(cmd: string, args: string[]): string {
  return [cmd, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** Last `maxChars` characters of a string, marked as truncated when cut. */
export function tail(s: string, maxChars = 4000): string {
  return s.length <= maxChars ? s : `[...${s.length - maxChars} chars cut...]\n${s.slice(-maxChars)}`;
}

/** Kill a detached child's whole process group (falls back to the pid). */
function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

// ---------------------------------------------------------------------------
// run()
// ---------------------------------------------------------------------------

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  input?: string;
  /** Default 60 s. On timeout the process group is killed and run() throws. */
  timeoutMs?: number;
  /** Run as the postgres OS user when we are root. */
  asPostgres?: boolean;
}

export interface RunResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/**
 * Run a command to completion, capturing stdout/stderr. Never throws on a
 * non-zero exit; throws on spawn failure or timeout (with the output tail).
 * `env` is merged over cleanEnv().
 */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const [file, argv] = buildCommand(cmd, args, opts.asPostgres);
  const cwd = opts.cwd ?? (opts.asPostgres ? '/' : undefined);
  return new Promise<RunResult>((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn(file, argv, {
        cwd,
        env: cleanEnv(opts.env),
        stdio: ['pipe', 'pipe', 'pipe'],
        detached: true,
      });
    } catch (err) {
      reject(err);
      return;
    }
    const unregister = registerCleanup(() => killGroup(child.pid, 'SIGKILL'));
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (d: Buffer) => out.push(d));
    child.stderr?.on('data', (d: Buffer) => err.push(d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid, 'SIGKILL');
      // 'close' may never fire if a grandchild holds the pipes: settle now.
      finish(null, 'SIGKILL');
    }, timeoutMs);
    let settled = false;
    const finish = (code: number | null, signal: string | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      unregister();
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (timedOut) {
        reject(
          new Error(
            `timed out after ${timeoutMs} ms: ${describe(file, argv)}\n--- stdout tail ---\n${tail(stdout)}\n--- stderr tail ---\n${tail(stderr)}`,
          ),
        );
      } else {
        resolve({ code, signal, stdout, stderr });
      }
    };
    child.on('error', (e) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      unregister();
      reject(new Error(`failed to run ${describe(file, argv)}: ${e.message}`));
    });
    child.on('close', (code, signal) => finish(code, signal));
    child.stdin?.on('error', () => {
      /* EPIPE when the child does not read its input */
    });
    child.stdin?.end(opts.input ?? '');
  });
}

/** run() that throws (with stdout/stderr) unless the exit code is 0. */
export async function runOk(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(
      `command failed (code ${r.code}, signal ${r.signal}): ${describe(cmd, args)}\n--- stdout tail ---\n${tail(r.stdout)}\n--- stderr tail ---\n${tail(r.stderr)}`,
    );
  }
  return r;
}

// ---------------------------------------------------------------------------
// spawnLogged()
// ---------------------------------------------------------------------------

export interface SpawnLoggedOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  asPostgres?: boolean;
  /** Output buffer bound (keeps the last N bytes). Default 1 MiB. */
  maxBuffer?: number;
  /** Also copy output to this stream (e.g. process.stderr) for debugging. */
  echo?: NodeJS.WritableStream;
  /** Label used in error messages. Default: the command's base name. */
  name?: string;
}

export interface ExitInfo {
  code: number | null;
  signal: string | null;
}

export interface LoggedProcess {
  child: ChildProcess;
  name: string;
  /** stdout+stderr interleaved, the last maxBuffer bytes. */
  output(): string;
  /** Resolves with the first match of `re` in the output (past or future). Rejects on timeout or exit. */
  waitFor(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  exited: Promise<ExitInfo>;
  /** True once the process has exited. */
  readonly hasExited: boolean;
  /** Signal the process group (default SIGTERM), SIGKILL after graceMs (default 5 s); resolves on exit. */
  kill(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

export function spawnLogged(cmd: string, args: string[], opts: SpawnLoggedOptions = {}): LoggedProcess {
  const maxBuffer = opts.maxBuffer ?? 1024 * 1024;
  const name = opts.name ?? path.basename(cmd);
  const [file, argv] = buildCommand(cmd, args, opts.asPostgres);
  const child = spawn(file, argv, {
    cwd: opts.cwd ?? (opts.asPostgres ? '/' : undefined),
    env: cleanEnv(opts.env),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const unregister = registerCleanup(() => killGroup(child.pid, 'SIGKILL'));
  let buf = '';
  let dropped = 0;
  const listeners = new Set<() => void>();
  const onData = (d: Buffer): void => {
    opts.echo?.write(d);
    buf += d.toString('utf8');
    if (buf.length > maxBuffer) {
      dropped += buf.length - maxBuffer;
      buf = buf.slice(buf.length - maxBuffer);
    }
    for (const l of [...listeners]) l();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);

  let exitInfo: ExitInfo | null = null;
  let spawnError: Error | null = null;
  const exited = new Promise<ExitInfo>((resolve) => {
    const done = (info: ExitInfo): void => {
      if (exitInfo) return;
      exitInfo = info;
      unregister();
      resolve(info);
      for (const l of [...listeners]) l();
    };
    child.on('error', (e) => {
      spawnError = e;
      done({ code: null, signal: null });
    });
    child.on('close', (code, signal) => done({ code, signal }));
  });

  const output = (): string => (dropped > 0 ? `[...${dropped} chars dropped...]\n${buf}` : buf);

  const waitFor = (re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> => {
    const rx = new RegExp(re.source, re.flags.replace(/[gy]/g, ''));
    return new Promise<RegExpMatchArray>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const check = (): void => {
        const m = buf.match(rx);
        if (m) {
          cleanup();
          resolve(m);
        } else if (exitInfo) {
          cleanup();
          const why = spawnError ? `failed to start (${spawnError.message})` : `exited (code ${exitInfo.code}, signal ${exitInfo.signal})`;
          reject(new Error(`${name} ${why} before printing ${rx}\n--- output tail ---\n${tail(output())}`));
        }
      };
      const cleanup = (): void => {
        listeners.delete(check);
        if (timer) clearTimeout(timer);
      };
      timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${name} to print ${rx}\n--- output tail ---\n${tail(output())}`));
      }, timeoutMs);
      listeners.add(check);
      check();
    });
  };

  const kill = async (signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<void> => {
    if (exitInfo) return;
    killGroup(child.pid, signal);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), graceMs);
    });
    const r = await Promise.race([exited, timedOut]);
    if (timer) clearTimeout(timer);
    if (r === 'timeout') {
      killGroup(child.pid, 'SIGKILL');
      await exited;
    }
  };

  return {
    child,
    name,
    output,
    waitFor,
    exited,
    get hasExited() {
      return exitInfo !== null;
    },
    kill,
  };
}

// ---------------------------------------------------------------------------
// Misc
// ---------------------------------------------------------------------------

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') {
        srv.close();
        reject(new Error('freePort: unexpected address'));
        return;
      }
      const port = addr.port;
      srv.close(() => resolve(port));
    });
  });
}

export function sha256File(file: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const h = createHash('sha256');
    const s = createReadStream(file);
    s.on('error', reject);
    s.on('data', (d) => h.update(d));
    s.on('end', () => resolve(h.digest('hex')));
  });
}

/** sha256 of every regular file directly in `dir` (not recursive): name → hex digest. */
export async function sha256Dir(dir: string, filter?: (name: string) => boolean): Promise<Map<string, string>> {
  const entries = await fsp.readdir(dir, { withFileTypes: true });
  const names = entries
    .filter((e) => e.isFile() && (!filter || filter(e.name)))
    .map((e) => e.name)
    .sort();
  const m = new Map<string, string>();
  for (const n of names) m.set(n, await sha256File(path.join(dir, n)));
  return m;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Poll `fn` until it returns true. Throws `timed out after N ms waiting for <what>`
 * (plus the last error fn threw, if any) when the deadline passes.
 */
export async function waitUntil(
  fn: () => Promise<boolean> | boolean,
  timeoutMs: number,
  what: string,
  intervalMs = 50,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown = null;
  for (;;) {
    try {
      if (await fn()) return;
      lastErr = null;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() >= deadline) {
      const extra = lastErr ? `\nlast error: ${lastErr instanceof Error ? lastErr.message : String(lastErr)}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${extra}`);
    }
    await sleep(intervalMs);
  }
}

/** Base directory for temp dirs: os.tmpdir(), or /tmp when root and os.tmpdir() is not traversable by postgres. */
function tmpBase(): string {
  const base = os.tmpdir();
  if (!isRoot) return base;
  let dir = path.resolve(base);
  for (;;) {
    const st = fs.statSync(dir);
    if ((st.mode & 0o001) === 0) return '/tmp';
    const parent = path.dirname(dir);
    if (parent === dir) return base;
    dir = parent;
  }
}

let pgUid: { uid: number; gid: number } | null = null;
/** uid/gid of the postgres OS user. */
export function postgresIds(): { uid: number; gid: number } {
  if (pgUid) return pgUid;
  const r = spawnSync('id', ['-u', POSTGRES_OS_USER], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', POSTGRES_OS_USER], { encoding: 'utf8' });
  if (r.status !== 0 || g.status !== 0) throw new Error(`no '${POSTGRES_OS_USER}' OS user: ${r.stderr}`);
  pgUid = { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
  return pgUid;
}

export interface TempDirOptions {
  /** chown the directory to the postgres OS user when we are root. */
  forPostgres?: boolean;
  /** Remove on process exit (default true unless PGWS_KEEP_TMP=1). */
  removeOnExit?: boolean;
}

export interface TempDir {
  path: string;
  /** rm -rf the directory and forget its exit hook. */
  remove(): Promise<void>;
}

/** fs.mkdtemp under os.tmpdir(), optionally owned by postgres, removed on exit. */
export async function makeTempDir(prefix: string, opts: TempDirOptions = {}): Promise<TempDir> {
  const dir = await fsp.mkdtemp(path.join(tmpBase(), `pgws-${prefix.replace(/[^\w.-]/g, '_')}-`));
  if (opts.forPostgres && isRoot) {
    const { uid, gid } = postgresIds();
    await fsp.chown(dir, uid, gid);
  }
  const removeOnExit = opts.removeOnExit ?? !keepTmp;
  const unregister = removeOnExit ? registerCleanup(() => fs.rmSync(dir, { recursive: true, force: true })) : () => {};
  return {
    path: dir,
    async remove() {
      unregister();
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
}
