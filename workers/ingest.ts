// The ingest thread: runs the one WAL source (demo generator, archive watcher or
// upstream receiver) so that WAL I/O never runs on the main thread. It publishes through the control block and talks to the main thread only
// for control: reload, stop, and reporting failure.

import { parentPort, workerData } from 'node:worker_threads';
import { createLogger, followLogLevel } from '../src/log.ts';
import { setSourceState } from '../src/shmem/control.ts';
import { SourceState, viewsOf } from '../src/shmem/layout.ts';
import { ArchiveSource } from '../src/sources/archive.ts';
import { DemoSource } from '../src/sources/demo.ts';
import { UpstreamSource } from '../src/sources/upstream/source.ts';
import { runRetention, type RetentionSettings } from '../src/slots/retention.ts';

export type IngestWorkerData = {
  sab: SharedArrayBuffer;
  source: 'demo' | 'archive' | 'upstream';
  dataDir: string;
  archiveDir: string | null;
  demoRate: number;
  demoWalSegmentSize: number;
  logLevel: string;
  /** WAL retention of the store (demo and upstream sources). */
  retention: RetentionSettings;
  /** Source "upstream": the connection string, replication slot, password file, receive timeout. */
  upstream?: { conninfo: string; slot: string | null; passwordFile: string | null; timeoutMs: number };
};

export type IngestRequest = { type: 'stop' } | { type: 'reload'; demoRate: number };
export type IngestEvent = { type: 'ready' } | { type: 'stopped' } | { type: 'failed'; message: string };

const data = workerData as IngestWorkerData;
const views = viewsOf(data.sab);
const log = createLogger(data.logLevel, { thread: 'ingest', source: data.source });
followLogLevel(log, views); // a reload's log_level reaches this thread
const post = (e: IngestEvent): void => parentPort!.postMessage(e);

// Retention of the store this thread writes (never of an archive directory, which
// belongs to its owner), once a second.
const RETENTION_INTERVAL_MS = 1000;
// A slot to invalidate whose holder was just asked to end is looked at again this soon.
const RETENTION_RECHECK_MS = 50;
const retention = {
  timer: null as NodeJS.Timeout | null,
  recheck: null as NodeJS.Timeout | null,
  pass(): void {
    try {
      const r = runRetention(views, data.dataDir, data.dataDir, data.retention, log);
      if (r?.terminating && !this.recheck) {
        this.recheck = setTimeout(() => { this.recheck = null; this.pass(); }, RETENTION_RECHECK_MS);
      }
    } catch (e) {
      log.error({ err: e }, 'WAL retention pass failed; will retry');
    }
  },
  start(): void {
    if (data.source === 'archive') return;
    this.timer = setInterval(() => this.pass(), RETENTION_INTERVAL_MS);
  },
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.recheck) clearTimeout(this.recheck);
  },
};
retention.start();

let source: DemoSource | ArchiveSource | UpstreamSource;
try {
  if (data.source === 'upstream') {
    // The upstream source keeps its own state (waiting/running) as connections come and go;
    // a failure after startup (an fsync that failed) is reported like a startup failure.
    source = new UpstreamSource({ dataDir: data.dataDir, ...data.upstream!, views, log,
      onFatal: (e) => post({ type: 'failed', message: e.message }) });
    await source.start();
  } else {
    source = data.source === 'demo'
      ? new DemoSource({ dataDir: data.dataDir, rate: data.demoRate, segSize: data.demoWalSegmentSize, views, log })
      : new ArchiveSource({ dir: data.archiveDir!, views, log });
    source.start();
    setSourceState(views, SourceState.RUNNING);
  }
  post({ type: 'ready' });
} catch (e) {
  retention.stop();
  setSourceState(views, SourceState.FAILED);
  log.error({ err: e }, 'WAL source failed to start');
  post({ type: 'failed', message: (e as Error).message });
}

parentPort!.on('message', (m: IngestRequest) => {
  if (m.type === 'stop') {
    retention.stop();
    void Promise.resolve(source?.stop()).finally(() => {
      setSourceState(views, SourceState.STOPPED);
      post({ type: 'stopped' });
      parentPort!.close();
    });
  } else if (m.type === 'reload' && source instanceof DemoSource) {
    source.setRate(m.demoRate);
  }
});
