// A sender whose worker thread is terminated mid-stream frees its WalSnd slot (the
// main thread reclaims the slots of a dead thread's connections), and the standbys
// on the other thread continue with contiguous WAL.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { activeWalSndCount, snapshotWalSnds } from '../../src/shmem/walsnd.ts';
import { waitUntil } from '../helpers/proc.ts';
import { startInProcess } from '../helpers/server.ts';
import { WireClient } from '../helpers/wire.ts';

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgws-death-'));
t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));

type Stream = { c: WireClient; pos: bigint; broken: string; done: Promise<void> };

function follow(c: WireClient): Stream {
  const s: Stream = { c, pos: 0x100000n, broken: '', done: Promise.resolve() };
  s.done = (async () => {
    for (;;) {
      const m = await c.next(30_000).catch(() => null);
      if (!m) return;
      if (m.type !== 'd' || m.body[0] !== 0x77) continue;
      if (m.body.readBigUInt64BE(1) !== s.pos) { s.broken = 'gap'; return; }
      s.pos += BigInt(m.body.length - 25);
    }
  })();
  return s;
}

t.test('terminating a worker thread frees its slots; the other thread streams on', async (t) => {
  const server = await startInProcess({ dataDir, workers: 2, demoRate: 1 << 20, maxWalSenders: 10, walKeepSize: 256 << 20 }, t);
  const streams: Stream[] = [];
  for (let i = 0; i < 6; i++) {
    const c = await WireClient.replication(server.port, { application_name: `s${i}` });
    c.query('START_REPLICATION 0/100000 TIMELINE 1');
    t.equal((await c.next())?.type, 'W');
    streams.push(follow(c));
  }
  await waitUntil(() => snapshotWalSnds(server.views).length === 6, 5000, 'six senders in the slot array');
  const byThread = new Map<number, string[]>();
  for (const s of snapshotWalSnds(server.views)) byThread.set(s.threadId, [...(byThread.get(s.threadId) ?? []), s.applicationName]);
  t.equal(byThread.size, 2, 'senders are spread over both threads');
  const [victimThread, victimApps] = [...byThread.entries()][0]!;
  const worker = server.pool.threads.find((w) => w.threadId === victimThread);
  t.ok(worker, 'found the worker thread');
  await worker!.terminate();

  await waitUntil(() => activeWalSndCount(server.views) === 6 - victimApps.length, 5000, 'slots of the dead thread reclaimed');
  t.same(snapshotWalSnds(server.views).filter((s) => s.threadId === victimThread), [], 'no slot left on the dead thread');
  const victims = streams.filter((_, i) => victimApps.includes(`s${i}`));
  const survivors = streams.filter((_, i) => !victimApps.includes(`s${i}`));
  for (const v of victims) await v.c.closedByServer();
  t.pass('the dead thread\'s connections are closed');
  const before = survivors.map((s) => s.pos);
  await new Promise((r) => setTimeout(r, 700));
  survivors.forEach((s, i) => {
    t.equal(s.broken, '', 'no gap');
    t.ok(s.pos > before[i]!, `survivor ${i} still receiving`);
  });
  // A new connection is served by the replacement thread pool.
  const late = await WireClient.replication(server.port);
  late.query('IDENTIFY_SYSTEM');
  t.equal((await late.until('Z')).length, 4, 'new connections are still served');
  for (const s of [...survivors.map((x) => x.c), late]) s.end();
});
