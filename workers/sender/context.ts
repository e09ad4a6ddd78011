// What every sender task on one worker thread shares: the shared-memory views, the
// store directory, the logger, the thread's generation watch and a small pool of
// large send buffers (so an idle standby holds no buffer at all).

import { threadId } from 'node:worker_threads';
import { createLogger, followLogLevel, type Logger } from '../../src/log.ts';
import { AuthCache, type AuthWorkerData } from '../../src/auth/material.ts';
import { viewsOf, type SharedViews } from '../../src/shmem/layout.ts';
import { setWalRead } from '../../src/wal/walmap.ts';
import { BatchCache } from './batch-cache.ts';
import { GenerationWatch } from './waker.ts';

export type SenderWorkerData = {
  sab: SharedArrayBuffer;
  storeDir: string;
  /** The store is an archive we do not write: each segment is checked before it is read. */
  archiveStore: boolean;
  dataDir: string; // pg-walsender's own state (replication slots), even when serving an archive
  logLevel: string;
  walRead: 'mmap' | 'read'; // the wal_read setting
  serverVersion: string; // e.g. "0.1.0", shown after the PostgreSQL version
  auth: AuthWorkerData; // hba, users and TLS files, re-read on a reload generation
};

export type SenderContext = {
  views: SharedViews;
  storeDir: string;
  archiveStore: boolean;
  dataDir: string;
  log: Logger;
  watch: GenerationWatch;
  threadId: number;
  serverVersion: string;
  buffers: BufferPool;
  batches: BatchCache;
  auth: AuthCache;
};

/** Free list of equal-sized send buffers, shared by the senders of one thread. */
export class BufferPool {
  readonly size: number;
  private readonly free: Buffer[] = [];
  private readonly keep: number;

  constructor(size: number, keep: number) {
    this.size = size;
    this.keep = keep;
  }

  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  give(buf: Buffer): void {
    if (this.free.length < this.keep) this.free.push(buf);
  }
}

let context: SenderContext | null = null;

export function senderContext(data: SenderWorkerData, batchBytes: number): SenderContext {
  if (!context) {
    setWalRead(data.walRead);
    const views = viewsOf(data.sab);
    const log = createLogger(data.logLevel, { thread: threadId });
    const buffers = new BufferPool(batchBytes, 32); // up to 32 MiB kept: fresh 1 MiB buffers cost page faults
    context = {
      views,
      storeDir: data.storeDir,
      archiveStore: data.archiveStore,
      dataDir: data.dataDir,
      log,
      watch: new GenerationWatch(views),
      threadId,
      serverVersion: data.serverVersion,
      buffers,
      batches: new BatchCache(buffers, 16),
      auth: new AuthCache(data.auth, log),
    };
    followLogLevel(context.log, views); // a reload's log_level reaches this thread
  }
  return context;
}
