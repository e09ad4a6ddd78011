// The WalSnd slot array: claim up to max_wal_senders (InitWalSnd), release and
// reclaim, oldestSentPosition (GetOldestWALSendPointer), and consistent snapshots
// while worker threads update their slots flat out.

import { Worker } from 'node:worker_threads';
import t from 'tap';
import { peekFlush, publishFlush, publishIdentity, readFlush, storeIdentity } from '../../src/shmem/control.ts';
import { createSharedMemory, S32, slot32, WalSndState } from '../../src/shmem/layout.ts';
import {
  activeWalSndCount, claimWalSnd, oldestSentPosition, reclaimWalSnds, recordStandbyReply, releaseWalSnd,
  requestTerminate, setWalSndSent, snapshotWalSnds, terminateRequested,
} from '../../src/shmem/walsnd.ts';

const who = (connId: number, applicationName = `app${connId}`) => ({
  connId, threadId: 7, clientAddr: '127.0.0.1', clientPort: 40000 + connId, applicationName, backendStart: 1n,
});

t.test('claim, limit, release, reclaim', async (t) => {
  const v = createSharedMemory(3);
  t.same([claimWalSnd(v, who(1)), claimWalSnd(v, who(2)), claimWalSnd(v, who(3))], [0, 1, 2]);
  t.equal(claimWalSnd(v, who(4)), -1, 'past max_wal_senders');
  releaseWalSnd(v, 1, 2);
  t.equal(claimWalSnd(v, who(5)), 1, 'a freed slot is reused');
  releaseWalSnd(v, 1, 999);
  t.equal(activeWalSndCount(v), 3, 'release by another connection is ignored');
  t.ok(reclaimWalSnds(v, 5), 'main thread reclaims');
  t.equal(activeWalSndCount(v), 2);
  const snap = snapshotWalSnds(v);
  t.same(snap.map((s) => [s.pid, s.state, s.applicationName, s.clientPort]),
    [[1, WalSndState.STARTUP, 'app1', 40001], [3, WalSndState.STARTUP, 'app3', 40003]]);
  t.ok(requestTerminate(v, 3));
  t.ok(terminateRequested(v, 2));
  t.notOk(terminateRequested(v, 0));
});

t.test('a terminate request applies only to the connection it named', async (t) => {
  const v = createSharedMemory(1);
  t.equal(claimWalSnd(v, who(7)), 0);
  t.ok(requestTerminate(v, 7));
  t.ok(terminateRequested(v, 0), 'connection 7 sees its request');
  // The race: the main thread saw connection 7 in slot 0, then 7 ended and 8 claimed
  // the slot, then the main thread's store landed. Replay that store by hand.
  releaseWalSnd(v, 0, 7);
  t.equal(claimWalSnd(v, who(8)), 0);
  t.notOk(terminateRequested(v, 0), 'a fresh claim starts without a request');
  Atomics.store(v.i32, slot32(0, S32.TERMINATE), 7);
  t.notOk(terminateRequested(v, 0), "connection 8 ignores the request meant for 7");
  t.ok(requestTerminate(v, 8));
  t.ok(terminateRequested(v, 0), 'a request naming 8 applies');
});

t.test('long and multi-byte application_name is cut at a character boundary', async (t) => {
  const v = createSharedMemory(1);
  claimWalSnd(v, who(1, 'é'.repeat(40)));
  const name = snapshotWalSnds(v)[0]!.applicationName;
  t.equal(name, 'é'.repeat(31), '63 bytes at most, whole characters');
});

t.test('oldestSentPosition', async (t) => {
  const v = createSharedMemory(4);
  t.equal(oldestSentPosition(v), null, 'no senders');
  claimWalSnd(v, who(1));
  claimWalSnd(v, who(2));
  claimWalSnd(v, who(3));
  t.equal(oldestSentPosition(v), null, 'none streaming yet');
  setWalSndSent(v, 0, 0x3000000n, 10n);
  setWalSndSent(v, 2, 0x1000000n, 10n);
  t.equal(oldestSentPosition(v), 0x1000000n);
  setWalSndSent(v, 2, 0xFFFFFFFF00000000n, 10n);
  t.equal(oldestSentPosition(v), 0x3000000n, 'LSNs above 2^63 compare unsigned');
  recordStandbyReply(v, 0, { write: 1n, flush: 2n, replay: 3n, writeLagUs: 5n, flushLagUs: -1n, replayLagUs: -1n, replyTime: 9n });
  const s = snapshotWalSnds(v)[0]!;
  t.same([s.write, s.flush, s.replay, s.writeLagUs, s.flushLagUs, s.replyTime], [1n, 2n, 3n, 5n, -1n, 9n]);
});

t.test('control block: identity and flush position', async (t) => {
  const v = createSharedMemory(1);
  t.equal(storeIdentity(v), null, 'starting');
  publishIdentity(v, { sysid: 18446744073709551615n, segSize: 1 << 24, pageMagic: 0xd110 }, { flushLsn: 0x1000000n, timeline: 1 });
  t.same(storeIdentity(v), { sysid: 18446744073709551615n, segSize: 1 << 24, pageMagic: 0xd110 }, 'unsigned 64-bit sysid');
  publishFlush(v, { flushLsn: 0x2000000n, timeline: 2 });
  t.same(readFlush(v), { flushLsn: 0x2000000n, timeline: 2 });
  t.same(peekFlush(v), { flushLsn: 0x2000000n, timeline: 2 });
});

t.test('snapshots are never torn while two threads update their slots', async (t) => {
  const v = createSharedMemory(2);
  claimWalSnd(v, who(1));
  claimWalSnd(v, who(2));
  // Each writer keeps write == flush == replay == sent for its slot; a torn read would break that.
  const src = `
    const { workerData } = require('node:worker_threads');
    const i32 = new Int32Array(workerData.sab);
    const i64 = new BigInt64Array(workerData.sab);
    const { lock, base } = workerData;
    const end = Date.now() + 600;
    let n = 0n;
    while (Date.now() < end) {
      n++;
      while (Atomics.compareExchange(i32, lock, 0, 1) !== 0) {}
      for (let f = 0; f < 4; f++) Atomics.store(i64, base + f, n);
      Atomics.store(i32, lock, 0);
    }`;
  const { slot32, slot64, S32 } = await import('../../src/shmem/layout.ts');
  const workers = [0, 1].map((i) => new Worker(src, { eval: true, workerData: { sab: v.sab, lock: slot32(i, S32.LOCK), base: slot64(i, 0) } }));
  let reads = 0;
  let torn = 0;
  const until = Date.now() + 500;
  while (Date.now() < until) {
    for (const s of snapshotWalSnds(v)) {
      reads++;
      if (!(s.sent === s.write && s.write === s.flush && s.flush === s.replay)) torn++;
    }
    await new Promise((r) => setImmediate(r));
  }
  await Promise.all(workers.map((w) => new Promise((r) => w.on('exit', r))));
  t.ok(reads > 100, `${reads} snapshot reads`);
  t.equal(torn, 0, 'no torn snapshot');
});
