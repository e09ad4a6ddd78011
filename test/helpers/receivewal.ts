// pg_receivewal for tests: start it against any server (ours or PostgreSQL) and wait
// for complete segments in its directory. Re-exported by pg.ts.

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { pgBin, spawnLogged, tail, waitUntil } from './proc.ts';
import type { LoggedProcess } from './proc.ts';


export interface ReceiveWalOptions {
  host: string;
  port: number;
  dir: string;
  slot?: string;
  extraArgs?: string[];
  /** Database user. Default 'postgres'. */
  user?: string;
  /** application_name (PGAPPNAME). Default 'pg_receivewal'. */
  appName?: string;
  /** Run as the postgres OS user when root (dir must be writable by it). Default false. */
  asPostgres?: boolean;
  env?: NodeJS.ProcessEnv;
  echo?: NodeJS.WritableStream;
}

/**
 * Start `pg_receivewal -D dir -h host -p port -U user -n -v -w --status-interval=1`
 * (-n = --no-loop: exit on connection loss). The handle's output() has its
 * verbose log; kill() it when done (it is also killed on process exit).
 */
export function receiveWal(opts: ReceiveWalOptions): LoggedProcess {
  const args = [
    '-D', opts.dir,
    '-h', opts.host,
    '-p', String(opts.port),
    '-U', opts.user ?? 'postgres',
    '-n',
    '-v',
    '-w',
    '--status-interval=1',
    ...(opts.slot ? ['-S', opts.slot] : []),
    ...(opts.extraArgs ?? []),
  ];
  return spawnLogged(pgBin('pg_receivewal'), args, {
    asPostgres: opts.asPostgres,
    env: { PGAPPNAME: opts.appName ?? 'pg_receivewal', ...(opts.env ?? {}) },
    echo: opts.echo,
    name: 'pg_receivewal',
  });
}

export interface WaitForSegmentsOptions {
  /** Expected size of segment files in bytes. Default 1 MiB (startCluster's default). */
  segmentSize?: number;
  /** A process whose output tail goes into the timeout error (e.g. receiveWal's handle). */
  proc?: LoggedProcess;
}

/**
 * Wait until every named file exists in `dir` complete: not .partial, and
 * for segment names (24 hex digits) exactly segmentSize bytes.
 */
export async function waitForSegments(
  dir: string,
  names: string[],
  timeoutMs: number,
  opts: WaitForSegmentsOptions = {},
): Promise<void> {
  const size = opts.segmentSize ?? 1024 * 1024;
  const isComplete = async (n: string): Promise<boolean> => {
    try {
      const st = await fsp.stat(path.join(dir, n));
      if (!st.isFile()) return false;
      return /^[0-9A-F]{24}$/.test(n) ? st.size === size : true;
    } catch {
      return false;
    }
  };
  try {
    await waitUntil(
      async () => {
        for (const n of names) if (!(await isComplete(n))) return false;
        return true;
      },
      timeoutMs,
      `${names.join(', ')} in ${dir}`,
      50,
    );
  } catch (err) {
    let listing: string;
    try {
      const entries = await fsp.readdir(dir);
      const parts: string[] = [];
      for (const e of entries.sort()) {
        const st = await fsp.stat(path.join(dir, e)).catch(() => null);
        parts.push(`${e}(${st ? st.size : '?'})`);
      }
      listing = parts.join(' ') || '(empty)';
    } catch (e) {
      listing = String(e);
    }
    const procTail = opts.proc ? `\n--- ${opts.proc.name} output tail ---\n${tail(opts.proc.output())}` : '';
    throw new Error(`${(err as Error).message}\ndir contents: ${listing}${procTail}`);
  }
}
