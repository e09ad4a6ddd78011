// The main thread's control plane (the "postmaster"): creates the shared memory,
// starts the ingest thread and the sender pool, accepts TCP connections and transfers
// each untouched socket to a sender task (or, with every task busy, refuses it with
// PostgreSQL's "too many clients"), reclaims WalSnd slots of tasks that ended
// abnormally, and runs reload and the two shutdown modes. It never reads WAL and
// never blocks: no Atomics.wait, only bounded spinlock attempts.

import fs from 'node:fs';
import net from 'node:net';
import { Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { AuthControl } from './auth/material.ts';
import type { Config } from './config.ts';
import { refuseTooManyClients } from './dead-end.ts';
import type { Logger } from './log.ts';
import { pgNow } from './protocol/lsn.ts';
import {
  countConnectionRefused, nextConnectionId, requestShutdown, setLogLevel, setStartTime, setWalSenderTimeoutMs,
} from './shmem/control.ts';
import { createSharedMemory, ShutdownMode, type SharedViews } from './shmem/layout.ts';
import { reclaimWalSnds } from './shmem/walsnd.ts';
import { loadSlots } from './slots/persist.ts';
import { createSlot, reclaimSlotsOf } from './slots/slots.ts';
import type { IngestEvent, IngestRequest, IngestWorkerData } from '../workers/ingest.ts';
import type { SenderWorkerData } from '../workers/sender/context.ts';
import type { SenderTask } from '../workers/sender.ts';
import { setWalRead, walReadMethod } from './wal/walmap.ts';

export const VERSION: string = JSON.parse(
  fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
).version;

export type Server = {
  port: number;
  views: SharedViews;
  pool: Piscina;
  storeDir: string;
  /** Resolves when the source has published its identity (or failed). */
  sourceReady: Promise<void>;
  /** Resolves if the source fails after startup: the store can no longer be trusted. */
  sourceFailed: Promise<Error>;
  activeConnections(): number;
  /** True while the replication listener accepts connections (the admin API's readiness). */
  listening(): boolean;
  reload(next: Config): void;
  /** drain: send all WAL to every streaming standby, then close; fast: close at once. */
  shutdown(mode: 'drain' | 'fast'): Promise<void>;
};

export async function startServer(config: Config, log: Logger): Promise<Server> {
  const storeDir = config.source === 'archive' ? config.archiveDir! : config.dataDir;
  // Bad hba/users/certificate files stop the start, before any thread runs.
  const auth = new AuthControl({ hbaFile: config.hbaFile, usersFile: config.usersFile, sslCertFile: config.sslCertFile,
    sslKeyFile: config.sslKeyFile, dataDir: config.dataDir }, config.authenticationTimeoutMs, log);
  const views = createSharedMemory(config.maxWalSenders, config.maxReplicationSlots);
  restoreReplicationSlots(views, config, log);
  setWalSenderTimeoutMs(views, config.walSenderTimeoutMs);
  setLogLevel(views, config.logLevel); // worker threads follow this field
  setStartTime(views, pgNow());

  const ingestData: IngestWorkerData = {
    sab: views.sab, source: config.source, dataDir: config.dataDir, archiveDir: config.archiveDir,
    demoRate: config.demoRate, demoWalSegmentSize: config.demoWalSegmentSize, logLevel: config.logLevel,
    retention: { walKeepSize: config.walKeepSize, maxSlotWalKeepSize: config.maxSlotWalKeepSize },
    upstream: config.source === 'upstream' ? {
      conninfo: config.upstream!, slot: config.upstreamSlot, passwordFile: config.upstreamPasswordFile,
      timeoutMs: config.upstreamTimeoutMs,
    } : undefined,
  };
  const ingest = new Worker(new URL('../workers/ingest.ts', import.meta.url), { workerData: ingestData });
  const sourceReady = new Promise<void>((resolve, reject) => {
    ingest.once('message', (m: IngestEvent) => (m.type === 'failed' ? reject(new Error(m.message)) : resolve()));
    ingest.once('error', reject);
  });
  ingest.on('error', (e) => log.error({ err: e }, 'ingest thread failed'));
  // Startup failures of the source are fatal to the process (bad directory, foreign WAL).
  await sourceReady;
  // A failure after startup (the upstream receiver could not fsync) ends the process.
  const sourceFailed = new Promise<Error>((resolve) => {
    ingest.on('message', (m: IngestEvent) => { if (m.type === 'failed') resolve(new Error(m.message)); });
  });

  const senderData: SenderWorkerData = {
    sab: views.sab, storeDir, archiveStore: config.source === 'archive', dataDir: config.dataDir, logLevel: config.logLevel, walRead: config.walRead, serverVersion: VERSION, auth: auth.workerData(),
  };
  // Every connection is one long-lived task. Like PostgreSQL's MaxLivePostmasterChildren
  // (twice the backends), there is room for twice max_wal_senders plus connections still
  // authenticating or being refused; past it a connection is refused at once, never
  // queued (a queued socket has no authentication_timeout running, so a few silent
  // connections would lock every standby out).
  const tasksPerWorker = Math.ceil((2 * config.maxWalSenders + 64) / config.workers);
  const taskCapacity = tasksPerWorker * config.workers;
  const pool = new Piscina({
    filename: new URL('../workers/sender.ts', import.meta.url).href,
    minThreads: config.workers,
    maxThreads: config.workers,
    concurrentTasksPerWorker: tasksPerWorker,
    idleTimeout: Infinity,
    atomics: 'disabled', // a sync Atomics.wait between tasks would freeze the other connections
    workerData: senderData,
  });

  const tasks = new Set<Promise<void>>();
  let accepting = true;
  const server = net.createServer({ pauseOnConnect: true }, (socket) => {
    if (!accepting) {
      socket.destroy();
      return;
    }
    if (tasks.size >= taskCapacity) {
      refuseTooManyClients(socket, Boolean(auth.paths.sslCertFile && auth.paths.sslKeyFile));
      countConnectionRefused(views, 'too_many_clients');
      log.warn({ clientAddr: socket.remoteAddress, clientPort: socket.remotePort, tasks: tasks.size },
        'sorry, too many clients already');
      return;
    }
    const connId = nextConnectionId(views);
    const task: SenderTask = {
      socket, connId, clientAddr: socket.remoteAddress ?? '', clientPort: socket.remotePort ?? 0,
    };
    const run = pool.run(task, { transferList: [socket as unknown as import('node:worker_threads').TransferListItem] })
      .catch((e: unknown) => log.warn({ connId, err: e }, 'sender task ended abnormally'))
      .finally(() => {
        tasks.delete(run);
        reclaim(views, connId);
      });
    tasks.add(run);
  });
  server.on('error', (e) => log.error({ err: e }, 'listener error'));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.listen.port, config.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;
  log.info({ host: config.listen.host, port, source: config.source, storeDir, workers: config.workers,
    maxWalSenders: config.maxWalSenders }, 'listening for replication connections');
  setWalRead(config.walRead); // the same choice and module load the sender threads make
  const walRead = walReadMethod();
  if (walRead.method === 'mmap') log.info({ walRead: 'mmap' }, 'senders write WAL from segment mappings (native walmap module)');
  else log.info({ walRead: 'read', why: walRead.why }, 'senders copy WAL through read buffers');

  const stopIngest = async (): Promise<void> => {
    const stopped = new Promise<void>((resolve) => {
      const onMessage = (m: IngestEvent): void => { if (m.type === 'stopped') resolve(); };
      ingest.on('message', onMessage);
      ingest.once('exit', () => resolve());
    });
    ingest.postMessage({ type: 'stop' } satisfies IngestRequest);
    await withTimeout(stopped, 10_000);
    await ingest.terminate();
  };

  let shuttingDown: Promise<void> | null = null;
  return {
    port, views, pool, storeDir, sourceReady, sourceFailed,
    activeConnections: () => tasks.size,
    listening: () => accepting && server.listening,
    reload(next: Config): void {
      setWalSenderTimeoutMs(views, next.walSenderTimeoutMs);
      log.level = next.logLevel;
      setLogLevel(views, next.logLevel);
      auth.reload(next.authenticationTimeoutMs); // re-reads hba, users and certificate files
      ingest.postMessage({ type: 'reload', demoRate: next.demoRate } satisfies IngestRequest);
    },
    shutdown(mode: 'drain' | 'fast'): Promise<void> {
      if (mode === 'fast') requestShutdown(views, ShutdownMode.FAST);
      shuttingDown ??= (async () => {
        accepting = false;
        server.close();
        if (mode === 'drain') {
          // The source stops first so the flush position is final, then senders drain to it.
          await stopIngest();
          requestShutdown(views, ShutdownMode.DRAIN);
          const drained = await withTimeout(Promise.allSettled([...tasks]), config.walSenderTimeoutMs || 60_000);
          if (!drained) log.warn({ remaining: tasks.size }, 'drain timed out; closing the remaining connections');
        }
        requestShutdown(views, ShutdownMode.FAST);
        await withTimeout(Promise.allSettled([...tasks]), 5_000);
        await pool.destroy();
        await ingest.terminate();
      })();
      return shuttingDown;
    },
  };
}

/**
 * Free the WalSnd and replication slots of a connection whose task is gone; retry while a
 * lock is busy. WalSnd locks are held for a few stores, so one still busy after a second
 * of retries was left by a thread terminated inside it: take it over.
 */
function reclaim(views: SharedViews, connId: number, attempt = 0): void {
  const walSnds = reclaimWalSnds(views, connId, attempt >= 100);
  if (!reclaimSlotsOf(views, connId, attempt >= 100) || !walSnds) setTimeout(() => reclaim(views, connId, attempt + 1), 10);
}

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => { timer = setTimeout(() => resolve(false), ms); });
  const result = await Promise.race([p.then(() => true as const), timedOut]);
  clearTimeout(timer);
  return result;
}

/** Load the persistent replication slots of the data directory into shared memory. */
function restoreReplicationSlots(views: SharedViews, config: Config, log: Logger): void {
  fs.mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const slots = loadSlots(config.dataDir);
  if (slots.length > config.maxReplicationSlots) {
    throw new Error(`found ${slots.length} replication slots in ${config.dataDir}, but max_replication_slots is ${config.maxReplicationSlots}`);
  }
  for (const s of slots) createSlot(views, s);
  if (slots.length > 0) log.info({ slots: slots.map((s) => s.name) }, 'restored replication slots');
}
