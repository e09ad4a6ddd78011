// The process's logger: pino (fastify's own). JSON lines on stdout, or one readable
// line per entry when stdout is a terminal. Worker threads build their own instance
// with a thread binding and follow the level the main thread publishes in the
// control block, so a reload reaches them too.

import fs from 'node:fs';
import tty from 'node:tty';
import { pino, type Logger } from 'pino';
import { logLevel } from './shmem/control.ts';
import type { SharedViews } from './shmem/layout.ts';

export type { Logger };

export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  const base = { pid: process.pid, ...bindings };
  // isatty(1) looks at the process's fd, so worker threads decide the same way as main.
  if (tty.isatty(1)) return pino({ level, base }, { write: (line: string) => { fs.writeSync(1, readable(line)); } });
  return pino({ level, base }, pino.destination({ sync: true }));
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** One JSON log line as "12:00:00.000 INFO  message key=value ...". */
export function readable(line: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const { level, time, msg, pid: _pid, hostname: _host, err, ...rest } = o;
  const when = new Date(Number(time)).toISOString().slice(11, 23);
  const fields = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  const stack = err && typeof err === 'object' ? `\n    ${String((err as { stack?: unknown }).stack ?? JSON.stringify(err))}` : '';
  return `${when} ${(LEVELS[Number(level)] ?? String(level)).padEnd(5)} ${String(msg ?? '')} ${fields.join(' ')}`.trimEnd() + `${stack}\n`;
}

/** Worker threads: keep `log` at the level published in the control block (checked twice a second). */
export function followLogLevel(log: Logger, views: SharedViews): void {
  const sync = (): void => {
    const level = logLevel(views);
    if (level !== null && level !== log.level) log.level = level;
  };
  sync();
  setInterval(sync, 500).unref();
}
