// Starts pg-walsender for tests: as a child process (the real entry point, signals and
// exit codes included) or in-process through startServer (for tests that reach into
// the worker pool). Both listen on a free loopback port and are always stopped.

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';
import { startServer, type Server } from '../../src/server.ts';
import { freePort, spawnLogged, type LoggedProcess } from './proc.ts';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const NODE = path.join(REPO_ROOT, 'node_modules/.bin/node');

type Teardown = { teardown(fn: () => unknown): void };

export type WalsenderProcess = {
  port: number;
  proc: LoggedProcess;
  conninfo(extra?: string): string;
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: string | null }>;
};

/** Run `node src/main.ts ARGS --listen 127.0.0.1:<port, default a free one>` and wait until it listens. */
export async function startWalsender(args: string[], opts: { t?: Teardown; env?: NodeJS.ProcessEnv; timeoutMs?: number; port?: number } = {}): Promise<WalsenderProcess> {
  const port = opts.port ?? await freePort();
  const proc = spawnLogged(NODE, [path.join(REPO_ROOT, 'src/main.ts'), '--listen', `127.0.0.1:${port}`,
    '--admin-listen', 'off', ...args], { env: { ...process.env, ...opts.env }, cwd: REPO_ROOT, name: 'pg-walsender' });
  const ws: WalsenderProcess = {
    port,
    proc,
    conninfo: (extra = '') => `host=127.0.0.1 port=${port} user=postgres ${extra}`.trim(),
    async stop(signal: NodeJS.Signals = 'SIGINT') {
      if (!proc.hasExited) proc.child.kill(signal);
      const e = await proc.exited;
      return { code: e.code, signal: e.signal };
    },
  };
  opts.t?.teardown(async () => { if (!proc.hasExited) await proc.kill('SIGKILL'); });
  await proc.waitFor(/listening for replication connections/, opts.timeoutMs ?? 20_000);
  return ws;
}

/** In-process server with test defaults; stopped (fast) at teardown. */
export async function startInProcess(overrides: Partial<Config>, t: Teardown): Promise<Server> {
  const config: Config = {
    source: 'demo', archiveDir: null, dataDir: '', demoRate: 1 << 20, demoWalSegmentSize: 1 << 20,
    upstream: null, upstreamSlot: null, upstreamPasswordFile: null, upstreamTimeoutMs: 60_000,
    listen: { host: '127.0.0.1', port: 0 }, adminListen: null, adminToken: null, adminTokenFile: null, maxWalSenders: 10, walSenderTimeoutMs: 60_000,
    workers: 2, walRead: 'mmap', logLevel: 'warn', configFile: null, hbaFile: null, usersFile: null, sslCertFile: null, sslKeyFile: null,
    authenticationTimeoutMs: 60_000, maxReplicationSlots: 10, walKeepSize: 0, maxSlotWalKeepSize: -1, ...overrides,
  };
  const server = await startServer(config, createLogger(config.logLevel));
  t.teardown(() => server.shutdown('fast'));
  return server;
}
