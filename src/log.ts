// The process's logger: pino (fastify's own), JSON lines on stdout. Worker threads
// build their own instance with the same level and a thread binding.

import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { pid: process.pid, ...bindings } }, pino.destination({ sync: true }));
}
