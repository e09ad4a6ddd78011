// Real PostgreSQL 15 clusters for tests: primaries, standbys, pg_receivewal.
//
// PostgreSQL refuses to run as root. When the tests run as root (CI does), every
// server-side tool (initdb, pg_ctl, pg_basebackup, pg_controldata) runs as the
// `postgres` OS user via runuser, in a temp dir that user owns. Clients (psql,
// pg_receivewal by default) run as the current user. The postmaster is our own
// child (not daemonized by pg_ctl) so it is reaped, never left a zombie; pg_ctl
// is used for stop/promote/reload.
//
// Every cluster is registered in a process-wide cleanup list: it is stopped
// (`pg_ctl stop -m immediate`, SIGKILL as the last resort) and its temp dir
// removed on process exit or SIGINT/SIGTERM/SIGHUP, even when a test fails.
// Tests should still call `destroy()` in t.teardown (or pass `t` in options).

import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

import {
  POSTGRES_OS_USER,
  cleanEnv,
  freePort,
  isRoot,
  keepTmp,
  makeTempDir,
  pgBin,
  postgresIds,
  registerCleanup,
  run,
  runOk,
  sleep,
  spawnLogged,
  tail,
  waitUntil,
} from './proc.ts';
import type { ExitInfo, LoggedProcess, RunResult, TempDir } from './proc.ts';

export type ConfValue = string | number | boolean;
export type ConfMap = Record<string, ConfValue>;
export type StopMode = 'fast' | 'immediate' | 'smart';

/** Anything with tap's `teardown` (a tap Test). */
export interface TeardownTarget {
  teardown(fn: () => unknown): void;
}

export interface StartClusterOptions {
  /** initdb --wal-segsize in MiB (power of 2, 1..1024). Default 1 (fast tests). */
  walSegSizeMB?: number;
  /** archive_mode=on with an atomic copy into <baseDir>/archive. */
  archive?: boolean;
  /** Extra postgresql.conf settings (override the helper's). */
  conf?: ConfMap;
  /** Extra pg_hba.conf lines, placed BEFORE the defaults (first match wins). */
  hba?: string[];
  /** Include the default trust lines (local + 127.0.0.1/32, incl. replication). Default true. */
  hbaDefaults?: boolean;
  initdbArgs?: string[];
  /** Label used in dir names and messages. Default 'primary'. */
  name?: string;
  /** Start the server (default true); false = initdb + configure only. */
  start?: boolean;
  /** Register destroy() with t.teardown. */
  t?: TeardownTarget;
}

export interface StartStandbyOptions {
  fromPrimary: Cluster;
  /** e.g. `host=127.0.0.1 port=N user=postgres application_name=s1` (pointing at pg-walsender). */
  primaryConninfo: string;
  /** Default true. */
  hotStandby?: boolean;
  /** Settings on top of the primary's `conf` (which the standby inherits). */
  conf?: ConfMap;
  /** pg_basebackup -X. Default 'stream'. */
  walMethod?: 'stream' | 'fetch' | 'none';
  /** Extra pg_basebackup arguments. */
  basebackupArgs?: string[];
  /** restore_command (e.g. `cp <archive>/%f %p`). */
  restoreCommand?: string;
  /** Give the standby its own archive (archive_mode=on, used after promotion). Default false. */
  archive?: boolean;
  /** Start it (default true); false = base backup + configure only. */
  start?: boolean;
  /** Default 'standby'. */
  name?: string;
  t?: TeardownTarget;
}

export interface ClusterStartOptions {
  /** Wait until ready like `pg_ctl -w` (default true); false returns once the postmaster is launched. */
  wait?: boolean;
  timeoutSec?: number;
}

export interface Cluster {
  readonly name: string;
  readonly baseDir: string;
  readonly dataDir: string;
  readonly port: number;
  readonly socketDir: string;
  readonly archiveDir: string | null;
  readonly logFile: string;
  readonly user: 'postgres';
  /** WAL segment size in bytes. */
  readonly walSegSize: number;
  readonly isStandby: boolean;
  /** The helper-managed settings currently written to pgws_test.conf. */
  readonly settings: Readonly<ConfMap>;
  /** libpq key=value string over the unix socket (host=<socketDir>). */
  connString(extra?: Record<string, string>): string;
  /** libpq key=value string over TCP (host=127.0.0.1). */
  tcpConnString(extra?: Record<string, string>): string;
  /** psql -X -A -t -q -v ON_ERROR_STOP=1; trimmed stdout; throws with stderr on failure. */
  psql(sql: string, opts?: { db?: string; replication?: boolean; timeoutMs?: number }): Promise<string>;
  controlData(): Promise<Record<string, string>>;
  systemIdentifier(): Promise<string>;
  /** Forces WAL activity, pg_switch_wal(); waits for the archive when archive mode is on. */
  switchWal(): Promise<{ lsn: string; segment: string }>;
  waitArchived(segmentName: string, timeoutMs?: number): Promise<void>;
  /** Writes at least `mb` MiB of WAL (logged table, wide rows, a commit per batch). */
  generateWal(mb: number): Promise<void>;
  /** pg_current_wal_lsn() (primary) or pg_last_wal_replay_lsn() (standby). */
  currentLsn(): Promise<string>;
  /** Standby: wait until pg_last_wal_replay_lsn() >= lsn. */
  waitReplayed(lsn: string, timeoutMs?: number): Promise<void>;
  isInRecovery(): Promise<boolean>;
  /** True while a live postmaster owns the data dir. */
  isRunning(): boolean;
  start(opts?: ClusterStartOptions): Promise<void>;
  stop(mode?: StopMode): Promise<void>;
  restart(mode?: StopMode): Promise<void>;
  /** pg_ctl reload. */
  reload(): Promise<void>;
  /** Merge settings into pgws_test.conf (null removes one); reload/restart yourself. */
  updateConf(conf: Record<string, ConfValue | null>): Promise<void>;
  /** pg_ctl promote -w. */
  promote(): Promise<void>;
  logTail(n?: number): Promise<string>;
  /** Stop (immediate) if running, rm -rf baseDir. Idempotent. */
  destroy(): Promise<void>;
}

const HELPER_CONF = 'pgws_test.conf';
const PG_CTL_TIMEOUT_SEC = 60;

// ---------------------------------------------------------------------------
// small utilities
// ---------------------------------------------------------------------------

/** Write a file the postgres OS user must own (chown when root). */
async function writePgFile(file: string, content: string, mode = 0o600): Promise<void> {
  await fsp.writeFile(file, content, { mode });
  if (isRoot) {
    const { uid, gid } = postgresIds();
    await fsp.chown(file, uid, gid);
  }
}

async function mkPgDir(dir: string, mode = 0o700): Promise<void> {
  await fsp.mkdir(dir, { mode, recursive: true });
  if (isRoot) {
    const { uid, gid } = postgresIds();
    await fsp.chown(dir, uid, gid);
  }
}

function confLiteral(v: ConfValue): string {
  if (typeof v === 'number') return String(v);
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function connValue(v: string): string {
  return /^[^\s'\\]+$/.test(v) ? v : `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

function buildConnString(params: Record<string, string>): string {
  return Object.entries(params)
    .map(([k, v]) => `${k}=${connValue(v)}`)
    .join(' ');
}

function describeResult(what: string, r: RunResult): string {
  return `${what} failed (code ${r.code}, signal ${r.signal})\n--- stdout ---\n${tail(r.stdout)}\n--- stderr ---\n${tail(r.stderr)}`;
}

function readPid(dataDir: string): number | null {
  try {
    const first = fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0];
    const pid = Number(first);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readTail(file: string, n: number): Promise<string> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch {
    return `(no log at ${file})`;
  }
  const lines = text.split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  return lines.slice(-n).join('\n');
}

/** Synchronous stop used by the exit hook: pg_ctl stop -m immediate, then SIGKILL. */
function stopSync(dataDir: string): void {
  const pid = readPid(dataDir);
  if (pid === null || !pidAlive(pid)) return;
  const args = ['-D', dataDir, '-m', 'immediate', '-w', '-t', '10', 'stop'];
  const [file, argv] = isRoot ? ['runuser', ['-u', POSTGRES_OS_USER, '--', pgBin('pg_ctl'), ...args]] : [pgBin('pg_ctl'), args];
  spawnSync(file, argv, { stdio: 'ignore', timeout: 15_000, cwd: '/', env: cleanEnv() });
  if (pidAlive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

// ---------------------------------------------------------------------------
// the cluster
// ---------------------------------------------------------------------------

interface Postmaster {
  child: ChildProcess;
  exitInfo: ExitInfo | null;
  exited: Promise<ExitInfo>;
}

/** postmaster.pid's status line (8th): starting, stopping, ready, standby; null if absent. */
function readPmStatus(dataDir: string): string | null {
  try {
    const lines = fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n');
    return lines.length >= 8 ? lines[7].trim() || null : null;
  } catch {
    return null;
  }
}

interface ClusterInit {
  name: string;
  tmp: TempDir;
  port: number;
  autoPort: boolean;
  archiveDir: string | null;
  walSegSize: number;
  isStandby: boolean;
  settings: ConfMap;
  userConf: ConfMap;
}

class PgCluster implements Cluster {
  readonly name: string;
  readonly baseDir: string;
  readonly dataDir: string;
  readonly socketDir: string;
  readonly archiveDir: string | null;
  readonly logFile: string;
  readonly user = 'postgres' as const;
  readonly walSegSize: number;
  readonly isStandby: boolean;
  /** user-supplied conf (inherited by standbys) */
  readonly userConf: ConfMap;
  #port: number;
  #autoPort: boolean;
  #settings: ConfMap;
  #tmp: TempDir;
  #unregister: () => void;
  #destroyed = false;
  #postmaster: Postmaster | null = null;

  constructor(init: ClusterInit) {
    this.name = init.name;
    this.#tmp = init.tmp;
    this.baseDir = init.tmp.path;
    this.dataDir = path.join(this.baseDir, 'data');
    this.socketDir = this.baseDir;
    this.archiveDir = init.archiveDir;
    this.logFile = path.join(this.baseDir, 'log', 'postgresql.log');
    this.walSegSize = init.walSegSize;
    this.isStandby = init.isStandby;
    this.userConf = init.userConf;
    this.#port = init.port;
    this.#autoPort = init.autoPort;
    this.#settings = init.settings;
    // Registered after the temp dir, so it runs before the dir is removed.
    const dataDir = this.dataDir;
    this.#unregister = registerCleanup(() => stopSync(dataDir));
  }

  get port(): number {
    return this.#port;
  }

  get settings(): Readonly<ConfMap> {
    return this.#settings;
  }

  connString(extra: Record<string, string> = {}): string {
    return buildConnString({ host: this.socketDir, port: String(this.port), user: this.user, dbname: 'postgres', ...extra });
  }

  tcpConnString(extra: Record<string, string> = {}): string {
    return buildConnString({ host: '127.0.0.1', port: String(this.port), user: this.user, dbname: 'postgres', ...extra });
  }

  async psql(sql: string, opts: { db?: string; replication?: boolean; timeoutMs?: number } = {}): Promise<string> {
    const params: Record<string, string> = { dbname: opts.db ?? 'postgres' };
    if (opts.replication) params.replication = 'true';
    const args = ['-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', '-d', this.connString(params)];
    // Replication connections only take single commands; regular SQL goes via stdin
    // so that multi-statement scripts run statement by statement.
    if (opts.replication) args.push('-c', sql);
    else args.push('-f', '-');
    const r = await run(pgBin('psql'), args, {
      input: opts.replication ? '' : sql,
      timeoutMs: opts.timeoutMs ?? 60_000,
    });
    if (r.code !== 0) {
      throw new Error(`psql on ${this.name} failed (code ${r.code}): ${r.stderr.trim()}\n--- SQL ---\n${tail(sql, 1000)}`);
    }
    return r.stdout.trim();
  }

  async controlData(): Promise<Record<string, string>> {
    const r = await run(pgBin('pg_controldata'), ['-D', this.dataDir], { asPostgres: true });
    if (r.code !== 0) throw new Error(describeResult(`pg_controldata ${this.dataDir}`, r));
    const out: Record<string, string> = {};
    for (const line of r.stdout.split('\n')) {
      const m = /^([^:]+):\s+(.*)$/.exec(line);
      if (m) out[m[1].trim()] = m[2].trim();
    }
    return out;
  }

  async systemIdentifier(): Promise<string> {
    const id = (await this.controlData())['Database system identifier'];
    if (!id) throw new Error(`pg_controldata of ${this.name} has no system identifier`);
    return id;
  }

  async switchWal(): Promise<{ lsn: string; segment: string }> {
    // A non-transactional message guarantees WAL activity since the last switch,
    // so pg_switch_wal() always completes a fresh segment.
    const out = await this.psql(
      "SELECT pg_logical_emit_message(false, 'pgws-test', 'switch');\n" +
        'SELECT lsn, pg_walfile_name(lsn) FROM pg_switch_wal() AS lsn;',
    );
    const last = out.split('\n').pop() ?? '';
    const [lsn, segment] = last.split('|');
    if (!lsn || !segment) throw new Error(`unexpected pg_switch_wal output: ${out}`);
    if (this.archiveDir) await this.waitArchived(segment);
    return { lsn, segment };
  }

  async waitArchived(segmentName: string, timeoutMs = 30_000): Promise<void> {
    const dir = this.archiveDir;
    if (!dir) throw new Error(`cluster ${this.name} has no archive`);
    const file = path.join(dir, segmentName);
    try {
      await waitUntil(() => fs.existsSync(file), timeoutMs, `${segmentName} in ${dir}`, 50);
    } catch (err) {
      let stats = '';
      try {
        stats = await this.psql('SELECT * FROM pg_stat_archiver', { timeoutMs: 5000 });
      } catch (e) {
        stats = String(e);
      }
      let listing = '';
      try {
        listing = (await fsp.readdir(dir)).sort().join(' ');
      } catch (e) {
        listing = String(e);
      }
      throw new Error(
        `${(err as Error).message}\narchive contents: ${listing}\npg_stat_archiver: ${stats}\n--- ${this.name} log tail ---\n${await this.logTail(30)}`,
      );
    }
  }

  async generateWal(mb: number): Promise<void> {
    const bytes = Math.ceil(mb * 1024 * 1024);
    await this.psql(
      `CREATE TABLE IF NOT EXISTS pgws_filler (id bigserial PRIMARY KEY, pad text NOT NULL);
DO $$
DECLARE s pg_lsn := pg_current_wal_insert_lsn();
BEGIN
  WHILE pg_wal_lsn_diff(pg_current_wal_insert_lsn(), s) < ${bytes} LOOP
    INSERT INTO pgws_filler (pad)
      SELECT repeat(md5(random()::text), 30) FROM generate_series(1, 200);
    COMMIT;
  END LOOP;
END $$;`,
      { timeoutMs: 60_000 + mb * 2000 },
    );
  }

  async currentLsn(): Promise<string> {
    return this.psql(
      'SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END',
    );
  }

  async waitReplayed(lsn: string, timeoutMs = 30_000): Promise<void> {
    let last = '';
    try {
      await waitUntil(
        async () => {
          const out = await this.psql(
            `SELECT coalesce(pg_last_wal_replay_lsn()::text, 'none'), coalesce(pg_last_wal_replay_lsn() >= '${lsn}'::pg_lsn, false)`,
            { timeoutMs: 5000 },
          );
          const [at, ok] = out.split('|');
          last = at;
          return ok === 't';
        },
        timeoutMs,
        `${this.name} to replay up to ${lsn}`,
        100,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message} (replayed: ${last})\n--- ${this.name} log tail ---\n${await this.logTail(30)}`);
    }
  }

  async isInRecovery(): Promise<boolean> {
    return (await this.psql('SELECT pg_is_in_recovery()')) === 't';
  }

  isRunning(): boolean {
    const pid = readPid(this.dataDir);
    return pid !== null && pidAlive(pid);
  }

  async writeConf(): Promise<void> {
    const lines = ['# written by test/helpers/pg.ts; later lines win'];
    for (const [k, v] of Object.entries(this.#settings)) lines.push(`${k} = ${confLiteral(v)}`);
    await writePgFile(path.join(this.dataDir, HELPER_CONF), `${lines.join('\n')}\n`);
  }

  async updateConf(conf: Record<string, ConfValue | null>): Promise<void> {
    const next: ConfMap = { ...this.#settings };
    for (const [k, v] of Object.entries(conf)) {
      if (v === null) delete next[k];
      else next[k] = v;
    }
    this.#settings = next;
    await this.writeConf();
  }

  /**
   * Launch the postmaster as OUR child (not daemonized by pg_ctl), so that we
   * reap it when it exits: a pg_ctl-started postmaster is re-parented to init,
   * which may leave it a zombie for seconds after a test. Readiness is what
   * `pg_ctl -w start` checks: postmaster.pid's status line says ready/standby.
   */
  async start(opts: ClusterStartOptions = {}): Promise<void> {
    if (this.#destroyed) throw new Error(`cluster ${this.name} was destroyed`);
    if (this.isRunning()) return;
    const wait = opts.wait ?? true;
    const timeoutMs = (opts.timeoutSec ?? PG_CTL_TIMEOUT_SEC) * 1000;
    for (let attempt = 1; ; attempt++) {
      let logOffset = 0;
      try {
        logOffset = (await fsp.stat(this.logFile)).size;
      } catch {
        await writePgFile(this.logFile, '', 0o640);
      }
      // A stale pid file (crashed or SIGKILLed server) must not look "ready".
      await fsp.rm(path.join(this.dataDir, 'postmaster.pid'), { force: true });
      const pm = this.#spawnPostmaster();
      if (!wait) return;
      let failure = '';
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (pm.exitInfo) {
          failure = `postmaster exited during startup (code ${pm.exitInfo.code}, signal ${pm.exitInfo.signal})`;
          break;
        }
        const status = readPmStatus(this.dataDir);
        if (status === 'ready' || status === 'standby') return;
        if (Date.now() > deadline) {
          failure = `server did not start within ${timeoutMs} ms (status: ${status ?? 'no postmaster.pid'})`;
          break;
        }
        await sleep(50);
      }
      // Never leave a half-started server behind.
      if (!pm.exitInfo) {
        await this.stop('immediate').catch(() => stopSync(this.dataDir));
      }
      let newLog = '';
      try {
        newLog = (await fsp.readFile(this.logFile, 'utf8')).slice(logOffset);
      } catch {
        // none
      }
      const portClash = /could not bind|Address already in use|could not create any TCP\/IP sockets/.test(newLog);
      if (portClash && this.#autoPort && attempt < 4) {
        this.#port = await freePort();
        this.#settings = { ...this.#settings, port: this.#port };
        await this.writeConf();
        continue;
      }
      throw new Error(`start of ${this.name} failed: ${failure}\n--- ${this.name} log tail ---\n${tail(newLog || (await this.logTail(40)))}`);
    }
  }

  #spawnPostmaster(): Postmaster {
    const fd = fs.openSync(this.logFile, 'a');
    let child: ChildProcess;
    try {
      const args = ['-D', this.dataDir];
      const [file, argv] = isRoot
        ? ['runuser', ['-u', POSTGRES_OS_USER, '--', pgBin('postgres'), ...args]]
        : [pgBin('postgres'), args];
      child = spawn(file, argv, { cwd: '/', env: cleanEnv(), stdio: ['ignore', fd, fd], detached: true });
    } finally {
      fs.closeSync(fd);
    }
    const pm: Postmaster = { child, exitInfo: null, exited: Promise.resolve({ code: null, signal: null }) };
    pm.exited = new Promise<ExitInfo>((resolve) => {
      const done = (info: ExitInfo): void => {
        if (pm.exitInfo) return;
        pm.exitInfo = info;
        resolve(info);
      };
      child.on('error', (err) => {
        fs.appendFileSync(this.logFile, `test helper: could not spawn postgres: ${err.message}\n`);
        done({ code: null, signal: null });
      });
      child.on('exit', (code, signal) => done({ code, signal }));
    });
    this.#postmaster = pm;
    return pm;
  }

  /** Wait (bounded) for our postmaster child to be reaped after a stop. */
  async #reapPostmaster(): Promise<void> {
    const pm = this.#postmaster;
    if (!pm || pm.exitInfo) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([pm.exited, new Promise<void>((r) => (timer = setTimeout(r, 10_000)))]);
    clearTimeout(timer);
  }

  async stop(mode: StopMode = 'fast'): Promise<void> {
    if (!this.isRunning()) return;
    const r = await run(pgBin('pg_ctl'), ['-D', this.dataDir, '-m', mode, '-w', '-t', String(PG_CTL_TIMEOUT_SEC), 'stop'], {
      asPostgres: true,
      timeoutMs: (PG_CTL_TIMEOUT_SEC + 30) * 1000,
    });
    if (r.code !== 0 && this.isRunning()) {
      throw new Error(`${describeResult(`pg_ctl stop -m ${mode} of ${this.name}`, r)}\n--- ${this.name} log tail ---\n${await this.logTail(30)}`);
    }
    await this.#reapPostmaster();
  }

  async restart(mode: StopMode = 'fast'): Promise<void> {
    await this.stop(mode);
    await this.start();
  }

  async reload(): Promise<void> {
    const r = await run(pgBin('pg_ctl'), ['-D', this.dataDir, 'reload'], { asPostgres: true });
    if (r.code !== 0) throw new Error(describeResult(`pg_ctl reload of ${this.name}`, r));
  }

  async promote(): Promise<void> {
    const r = await run(pgBin('pg_ctl'), ['-D', this.dataDir, '-w', '-t', String(PG_CTL_TIMEOUT_SEC), 'promote'], {
      asPostgres: true,
      timeoutMs: (PG_CTL_TIMEOUT_SEC + 30) * 1000,
    });
    if (r.code !== 0) {
      throw new Error(`${describeResult(`pg_ctl promote of ${this.name}`, r)}\n--- ${this.name} log tail ---\n${await this.logTail(30)}`);
    }
  }

  logTail(n = 50): Promise<string> {
    return readTail(this.logFile, n);
  }

  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    try {
      if (this.isRunning()) {
        try {
          await this.stop('immediate');
        } catch {
          stopSync(this.dataDir);
        }
      }
    } finally {
      this.#unregister();
      if (!keepTmp) await this.#tmp.remove();
    }
  }
}

// ---------------------------------------------------------------------------
// factories
// ---------------------------------------------------------------------------

function baseSettings(port: number, socketDir: string): ConfMap {
  return {
    port,
    listen_addresses: '127.0.0.1',
    unix_socket_directories: socketDir,
    wal_level: 'replica',
    max_wal_senders: 20,
    max_replication_slots: 20,
    logging_collector: false,
    log_line_prefix: '%m [%p] %q%a ',
    log_replication_commands: true,
    log_checkpoints: true,
  };
}

function archiveSettings(archiveDir: string): ConfMap {
  const dst = (f: string): string => shellQuote(path.join(archiveDir, f));
  return {
    archive_mode: 'on',
    // complete segments only (that is what PostgreSQL archives); copy to a
    // dot-temp name, then rename, so a file in the archive is always whole.
    archive_command: `test ! -f ${dst('%f')} && cp %p ${dst('.%f.tmp')} && mv ${dst('.%f.tmp')} ${dst('%f')}`,
  };
}

function defaultHba(): string[] {
  return [
    'local   all          all                 trust',
    'local   replication  all                 trust',
    'host    all          all   127.0.0.1/32  trust',
    'host    replication  all   127.0.0.1/32  trust',
  ];
}

async function ensureInclude(dataDir: string): Promise<void> {
  const conf = path.join(dataDir, 'postgresql.conf');
  const text = await fsp.readFile(conf, 'utf8');
  if (!text.includes(`include '${HELPER_CONF}'`)) {
    await fsp.appendFile(conf, `\n# test helper settings\ninclude '${HELPER_CONF}'\n`);
  }
}

export async function startCluster(opts: StartClusterOptions = {}): Promise<Cluster> {
  const name = opts.name ?? 'primary';
  const segMB = opts.walSegSizeMB ?? 1;
  if (!Number.isInteger(segMB) || segMB < 1 || segMB > 1024 || (segMB & (segMB - 1)) !== 0) {
    throw new Error(`walSegSizeMB must be a power of 2 in 1..1024, got ${segMB}`);
  }
  const tmp = await makeTempDir(name, { forPostgres: true });
  let cluster: PgCluster | null = null;
  try {
    const dataDir = path.join(tmp.path, 'data');
    await mkPgDir(path.join(tmp.path, 'log'));
    const archiveDir = opts.archive ? path.join(tmp.path, 'archive') : null;
    if (archiveDir) await mkPgDir(archiveDir);

    await runOk(
      pgBin('initdb'),
      [
        '-D', dataDir,
        '-A', 'trust',
        '-U', 'postgres',
        '-E', 'UTF8',
        '--locale=C',
        '--no-sync',
        '--no-instructions',
        `--wal-segsize=${segMB}`,
        ...(opts.initdbArgs ?? []),
      ],
      { asPostgres: true, timeoutMs: 120_000 },
    );

    const port = await freePort();
    const userConf = { ...(opts.conf ?? {}) };
    const settings: ConfMap = {
      ...baseSettings(port, tmp.path),
      ...(archiveDir ? archiveSettings(archiveDir) : {}),
      ...userConf,
    };
    cluster = new PgCluster({
      name,
      tmp,
      port,
      autoPort: opts.conf?.port === undefined,
      archiveDir,
      walSegSize: segMB * 1024 * 1024,
      isStandby: false,
      settings: { ...settings, port: settings.port as number },
      userConf,
    });
    await cluster.writeConf();
    await ensureInclude(dataDir);
    const hba = [
      '# written by test/helpers/pg.ts',
      ...(opts.hba ?? []),
      ...(opts.hbaDefaults === false ? [] : defaultHba()),
    ];
    await writePgFile(path.join(dataDir, 'pg_hba.conf'), `${hba.join('\n')}\n`);

    if (opts.start !== false) await cluster.start();
    const c = cluster;
    opts.t?.teardown(() => c.destroy());
    return cluster;
  } catch (err) {
    if (cluster) await cluster.destroy().catch(() => {});
    else await tmp.remove().catch(() => {});
    throw err;
  }
}

export async function startStandby(opts: StartStandbyOptions): Promise<Cluster> {
  const primary = opts.fromPrimary;
  const name = opts.name ?? 'standby';
  const tmp = await makeTempDir(name, { forPostgres: true });
  let cluster: PgCluster | null = null;
  try {
    const dataDir = path.join(tmp.path, 'data');
    await mkPgDir(path.join(tmp.path, 'log'));
    const archiveDir = opts.archive ? path.join(tmp.path, 'archive') : null;
    if (archiveDir) await mkPgDir(archiveDir);

    await runOk(
      pgBin('pg_basebackup'),
      [
        '-D', dataDir,
        '-X', opts.walMethod ?? 'stream',
        '-h', primary.socketDir,
        '-p', String(primary.port),
        '-U', primary.user,
        '-c', 'fast',
        '--no-sync',
        '-w',
        ...(opts.basebackupArgs ?? []),
      ],
      { asPostgres: true, timeoutMs: 180_000 },
    );

    const port = await freePort();
    const inherited: ConfMap = primary instanceof PgCluster ? { ...primary.userConf } : {};
    delete inherited.port; // the standby gets its own port
    const userConf: ConfMap = { ...inherited, ...(opts.conf ?? {}) };
    const settings: ConfMap = {
      ...baseSettings(port, tmp.path),
      ...(archiveDir ? archiveSettings(archiveDir) : { archive_mode: 'off' }),
      hot_standby: opts.hotStandby ?? true,
      primary_conninfo: opts.primaryConninfo,
      ...(opts.restoreCommand ? { restore_command: opts.restoreCommand } : {}),
      ...userConf,
    };
    cluster = new PgCluster({
      name,
      tmp,
      port: settings.port as number,
      autoPort: opts.conf?.port === undefined,
      archiveDir,
      walSegSize: primary.walSegSize,
      isStandby: true,
      settings,
      userConf,
    });
    await cluster.writeConf(); // replaces the copy of the primary's file
    await ensureInclude(dataDir);
    await writePgFile(path.join(dataDir, 'standby.signal'), '');

    if (opts.start !== false) await cluster.start();
    const c = cluster;
    opts.t?.teardown(() => c.destroy());
    return cluster;
  } catch (err) {
    if (cluster) await cluster.destroy().catch(() => {});
    else await tmp.remove().catch(() => {});
    throw err;
  }
}

export { receiveWal, waitForSegments } from './receivewal.ts';
export type { ReceiveWalOptions, WaitForSegmentsOptions } from './receivewal.ts';
