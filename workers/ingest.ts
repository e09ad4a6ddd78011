// The ingest thread: runs the one WAL source (demo generator or archive watcher; the
// upstream receiver will live here too) so that WAL I/O never runs on the main
// thread. It publishes through the control block and talks to the main thread only
// for control: reload, stop, and reporting failure.

import { parentPort, workerData } from 'node:worker_threads';
import { createLogger } from '../src/log.ts';
import { setSourceState } from '../src/shmem/control.ts';
import { SourceState, viewsOf } from '../src/shmem/layout.ts';
import { ArchiveSource } from '../src/sources/archive.ts';
import { DemoSource } from '../src/sources/demo.ts';

export type IngestWorkerData = {
  sab: SharedArrayBuffer;
  source: 'demo' | 'archive';
  dataDir: string;
  archiveDir: string | null;
  demoRate: number;
  demoWalSegmentSize: number;
  logLevel: string;
};

export type IngestRequest = { type: 'stop' } | { type: 'reload'; demoRate: number };
export type IngestEvent = { type: 'ready' } | { type: 'stopped' } | { type: 'failed'; message: string };

const data = workerData as IngestWorkerData;
const views = viewsOf(data.sab);
const log = createLogger(data.logLevel, { thread: 'ingest', source: data.source });
const post = (e: IngestEvent): void => parentPort!.postMessage(e);

let source: DemoSource | ArchiveSource;
try {
  source = data.source === 'demo'
    ? new DemoSource({ dataDir: data.dataDir, rate: data.demoRate, segSize: data.demoWalSegmentSize, views, log })
    : new ArchiveSource({ dir: data.archiveDir!, views, log });
  source.start();
  setSourceState(views, SourceState.RUNNING);
  post({ type: 'ready' });
} catch (e) {
  setSourceState(views, SourceState.FAILED);
  log.error({ err: e }, 'WAL source failed to start');
  post({ type: 'failed', message: (e as Error).message });
}

parentPort!.on('message', (m: IngestRequest) => {
  if (m.type === 'stop') {
    source?.stop();
    setSourceState(views, SourceState.STOPPED);
    post({ type: 'stopped' });
    parentPort!.close();
  } else if (m.type === 'reload' && source instanceof DemoSource) {
    source.setRate(m.demoRate);
  }
});
