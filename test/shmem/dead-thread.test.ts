// A worker thread can be terminated at any instruction, also inside a critical section
// of the shared memory. Reading the flush position must not leave anything behind that
// blocks the other threads, and the main thread must still be able to reclaim the
// WalSnd slot of a sender whose thread died holding the slot's lock.

import { Worker } from 'node:worker_threads';
import t from 'tap';
import { publishIdentity } from '../../src/shmem/control.ts';
import { createSharedMemory, type SharedViews } from '../../src/shmem/layout.ts';
import { activeWalSndCount, claimWalSnd, reclaimWalSnds } from '../../src/shmem/walsnd.ts';

const who = { connId: 1, threadId: 7, clientAddr: '127.0.0.1', clientPort: 40001, applicationName: 'a', backendStart: 1n };

// Worker bodies (eval'd as ES modules with type stripping off: plain JavaScript).
const shmem = new URL('../../src/shmem/', import.meta.url).href;
const loopBody = (call: string): string => `
  import { workerData, parentPort } from 'node:worker_threads';
  import { viewsOf } from '${shmem}layout.ts';
  import { readFlush } from '${shmem}control.ts';
  import { setWalSndSent } from '${shmem}walsnd.ts';
  const v = viewsOf(workerData.sab);
  parentPort.postMessage('running');
  for (let i = 1n; ; i++) ${call};
`;
// Reports 'loaded' first, so the deadline below covers the call alone, not the thread's
// start-up (which takes seconds on a loaded 2-core CI machine).
const oneShot = (call: string): string => `
  import { workerData, parentPort } from 'node:worker_threads';
  import { viewsOf } from '${shmem}layout.ts';
  import { readFlush } from '${shmem}control.ts';
  import { claimWalSnd } from '${shmem}walsnd.ts';
  const v = viewsOf(workerData.sab);
  parentPort.postMessage('loaded');
  parentPort.postMessage(String(${call}));
`;

// execArgv []: not tap's import hooks, which make every thread start several times slower.
function worker(body: string, sab: SharedArrayBuffer): Worker {
  return new Worker(new URL(`data:text/javascript,${encodeURIComponent(body)}`), { workerData: { sab }, execArgv: [] });
}

/** Start a worker running `call` in a loop and terminate it a few milliseconds later, mid-loop. */
async function killMidLoop(v: SharedViews, call: string): Promise<void> {
  const w = worker(loopBody(call), v.sab);
  await new Promise((resolve) => w.once('message', resolve));
  await new Promise((resolve) => setTimeout(resolve, 3));
  await w.terminate();
}

/** Run `call` once on a fresh worker; its result, or 'blocked' if the call (not the thread's start) took over 5 s. */
async function onOtherThread(v: SharedViews, call: string): Promise<string> {
  const w = worker(oneShot(call), v.sab);
  const messages: string[] = [];
  let deadline: NodeJS.Timeout | undefined;
  const startDeadline = setTimeout(() => w.emit('error', new Error('the thread did not start within 60 s')), 60_000);
  try {
    return await new Promise<string>((resolve, reject) => {
      w.once('error', reject);
      w.on('message', (m: string) => {
        messages.push(m);
        if (messages.length > 1) return resolve(m);
        clearTimeout(startDeadline);
        deadline = setTimeout(() => resolve('blocked'), 5000);
      });
    });
  } finally {
    clearTimeout(startDeadline);
    clearTimeout(deadline);
    await w.terminate();
  }
}

const RUNS = 20;

t.test('a reader terminated while reading the flush position blocks no other thread', async (t) => {
  let blocked = 0;
  for (let run = 0; run < RUNS; run++) {
    const v = createSharedMemory(1);
    publishIdentity(v, { sysid: 1n, segSize: 1 << 20, pageMagic: 0xd110 }, { flushLsn: 0x300000n, timeline: 1 });
    await killMidLoop(v, 'readFlush(v)');
    if ((await onOtherThread(v, 'readFlush(v).flushLsn')) !== String(0x300000n)) blocked++;
  }
  t.equal(blocked, 0, `another thread still reads the flush position (${RUNS} terminated readers)`);
});

t.test('the slot of a thread that died holding its lock is reclaimed and can be claimed again', async (t) => {
  let leaked = 0;
  for (let run = 0; run < RUNS; run++) {
    const v = createSharedMemory(1);
    t.equal(claimWalSnd(v, who), 0);
    await killMidLoop(v, 'setWalSndSent(v, 0, i, i)');
    // What the main thread does once the task is gone: retry, then take the lock over.
    let freed = false;
    for (let attempt = 0; attempt < 200 && !freed; attempt++) freed = reclaimWalSnds(v, who.connId, attempt >= 100);
    if (!freed || activeWalSndCount(v) !== 0) { leaked++; continue; }
    const claim = "claimWalSnd(v, { connId: 2, threadId: 8, clientAddr: '', clientPort: 0, applicationName: 'b', backendStart: 1n })";
    if ((await onOtherThread(v, claim)) !== '0') leaked++;
  }
  t.equal(leaked, 0, `every slot freed and claimable again (${RUNS} terminated senders)`);
});
