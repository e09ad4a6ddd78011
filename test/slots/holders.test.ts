// Who holds a replication slot, and when it lets go: a connection whose worker thread
// died releases its slots (a persistent one becomes usable again, a temporary one is
// dropped), as PostgreSQL's crash restart resets every slot's active_pid; a DROP ...
// WAIT that is waiting still obeys pg_terminate_backend (FATAL 57P01); SHOW
// max_replication_slots gives the configured value.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { requestTerminate, snapshotWalSnds } from '../../src/shmem/walsnd.ts';
import { createSharedMemory, R32, replSlot32 } from '../../src/shmem/layout.ts';
import { createSlot, findSlot, readSlot, reclaimSlotsOf } from '../../src/slots/slots.ts';
import { makeTempDir, waitUntil } from '../helpers/proc.ts';
import { startInProcess } from '../helpers/server.ts';
import { errorOf, rowOf, types, WireClient } from '../helpers/wire.ts';

async function command(port: number, q: string): Promise<string> {
  const c = await WireClient.replication(port);
  c.query(q);
  const ms = await c.until('Z');
  c.end();
  return types(ms);
}

t.test('a dead worker thread\'s connections release their replication slots', async (t) => {
  const dir = await makeTempDir('pgws-slot-death-');
  t.teardown(() => dir.remove());
  // One thread: the victim holds every connection made before it is terminated.
  const server = await startInProcess({ dataDir: dir.path, workers: 1, walKeepSize: 64 << 20, maxReplicationSlots: 4 }, t);
  t.equal(await command(server.port, 'CREATE_REPLICATION_SLOT keep PHYSICAL RESERVE_WAL'), 'TDCZ');
  const streamer = await WireClient.replication(server.port, { application_name: 'holder' });
  streamer.query('START_REPLICATION SLOT keep 0/100000 TIMELINE 1');
  t.equal((await streamer.next())?.type, 'W');
  const temp = await WireClient.replication(server.port, { application_name: 'temp' });
  temp.query('CREATE_REPLICATION_SLOT tmp TEMPORARY PHYSICAL RESERVE_WAL');
  t.equal(types(await temp.until('Z')), 'TDCZ');
  t.ok(readSlot(server.views, findSlot(server.views, 'keep'))!.activePid > 0, 'the persistent slot is active');

  await server.pool.threads[0]!.terminate();
  await streamer.closedByServer();
  await temp.closedByServer();
  await waitUntil(() => snapshotWalSnds(server.views).length === 0, 5000, 'the dead thread\'s WalSnd slots reclaimed');
  await waitUntil(() => readSlot(server.views, findSlot(server.views, 'keep'))?.activePid === 0, 5000, 'the persistent slot released');
  t.equal(findSlot(server.views, 'tmp'), -1, 'the temporary slot was dropped with its session');

  const again = await WireClient.replication(server.port);
  again.query('START_REPLICATION SLOT keep 0/100000 TIMELINE 1');
  const m = await again.next();
  t.equal(m?.type, 'W', `a new standby can stream with the slot${m?.type === 'E' ? ` (got ${errorOf(m).message})` : ''}`);
  again.end();
});

t.test('reclaiming a dead connection\'s slot takes over a lock it died holding, only when told to', async (t) => {
  const v = createSharedMemory(1, 2);
  const i = createSlot(v, { name: 'held', temporary: false, activePid: 42, restartLsn: 0n, restartTli: 0 });
  Atomics.store(v.i32, replSlot32(v, i, R32.LOCK), 1); // its thread was terminated inside the lock
  t.notOk(reclaimSlotsOf(v, 42), 'busy: try again later');
  t.equal(readSlot(v, i)!.activePid, 42);
  t.ok(reclaimSlotsOf(v, 42, true), 'taken over after enough retries');
  t.equal(readSlot(v, i)!.activePid, 0, 'released');
  t.equal(Atomics.load(v.i32, replSlot32(v, i, R32.LOCK)), 0, 'and its lock is free');
});

t.test('DROP_REPLICATION_SLOT ... WAIT obeys a terminate request while it waits', async (t) => {
  const dir = await makeTempDir('pgws-slot-dropwait-');
  t.teardown(() => dir.remove());
  const server = await startInProcess({ dataDir: dir.path, walKeepSize: 64 << 20 }, t);
  t.equal(await command(server.port, 'CREATE_REPLICATION_SLOT s1 PHYSICAL RESERVE_WAL'), 'TDCZ');
  const holder = await WireClient.replication(server.port, { application_name: 'holder' });
  holder.query('START_REPLICATION SLOT s1 0/100000 TIMELINE 1');
  t.equal((await holder.next())?.type, 'W');
  const dropper = await WireClient.replication(server.port, { application_name: 'dropper' });
  dropper.query('DROP_REPLICATION_SLOT s1 WAIT');
  await new Promise((r) => setTimeout(r, 300));
  const id = snapshotWalSnds(server.views).find((s) => s.applicationName === 'dropper')!.pid;
  t.ok(requestTerminate(server.views, id), 'terminate the waiting session (DELETE /api/v1/senders/:id)');
  const m = await dropper.next(5000).catch(() => null);
  t.same(m && m.type === 'E' ? errorOf(m) : m?.type ?? null,
    { severity: 'FATAL', code: '57P01', message: 'terminating connection due to administrator command', detail: undefined },
    'the waiting DROP ends with FATAL 57P01');
  await dropper.closedByServer();
  t.ok(findSlot(server.views, 's1') >= 0, 'the slot is still there');
  t.notOk(holder.closed, 'the holder streams on');
  holder.end();
});

t.test('a temporary slot: its session\'s alone, never on disk, dropped when the session ends', async (t) => {
  const dir = await makeTempDir('pgws-slot-temp-');
  t.teardown(() => dir.remove());
  const server = await startInProcess({ dataDir: dir.path, walKeepSize: 64 << 20 }, t);
  const owner = await WireClient.replication(server.port);
  owner.query('CREATE_REPLICATION_SLOT tmp TEMPORARY PHYSICAL (RESERVE_WAL)');
  t.equal(types(await owner.until('Z')), 'TDCZ');
  t.notOk(fs.existsSync(path.join(dir.path, 'pg_replslot', 'tmp')), 'not persisted');
  const other = await WireClient.replication(server.port);
  other.query('START_REPLICATION SLOT tmp 0/100000 TIMELINE 1');
  const ms = await other.until('Z');
  t.match(errorOf(ms[0]!), { code: '55006', message: /^replication slot "tmp" is active for PID \d+$/ }, 'another session cannot use it');
  other.end();
  owner.end();
  await waitUntil(() => findSlot(server.views, 'tmp') < 0, 5000, 'the temporary slot to go with its session');
  t.pass('dropped at session end');
});

t.test('SHOW max_replication_slots', async (t) => {
  const dir = await makeTempDir('pgws-slot-show-');
  t.teardown(() => dir.remove());
  const server = await startInProcess({ dataDir: dir.path, maxReplicationSlots: 7 }, t);
  const c = await WireClient.replication(server.port);
  c.query('SHOW max_replication_slots');
  t.same(rowOf((await c.until('Z'))[1]!), ['7']);
  c.end();
});
