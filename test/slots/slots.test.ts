// Replication slots in shared memory and on disk: PostgreSQL's errors for names,
// duplicates, a full array, an active slot; temporary slots stay with their session;
// crash-safe files that load back; and the retention horizon.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { PgError } from '../../src/protocol/errors.ts';
import { createSharedMemory, WalStatus } from '../../src/shmem/layout.ts';
import { loadSlots, removeSlot, saveSlot } from '../../src/slots/persist.ts';
import { createLogger } from '../../src/log.ts';
import { publishIdentity, removalBound } from '../../src/shmem/control.ts';
import { retentionHorizon, runRetention } from '../../src/slots/retention.ts';
import { segmentFileName } from '../../src/wal/segment.ts';
import {
  acquireSlot, createSlot, ensureWalReserved, findSlot, freeSlot, listSlots, markSlotLost, readSlot, releaseSlot, setRestartLsn, temporarySlotsOf,
} from '../../src/slots/slots.ts';

const pgErr = (code: string, message?: string) => ({ constructor: PgError, code, ...(message === undefined ? {} : { message }) });
const slot = (name: string, extra: Partial<Parameters<typeof createSlot>[1]> = {}) =>
  ({ name, temporary: false, activePid: 0, restartLsn: 0n, restartTli: 0, ...extra });

t.test('create, duplicate, full, names', async (t) => {
  const v = createSharedMemory(1, 2);
  t.equal(createSlot(v, slot('s1')), 0);
  t.throws(() => createSlot(v, slot('s1')), pgErr('42710', 'replication slot "s1" already exists'));
  t.equal(createSlot(v, slot('s2')), 1);
  t.throws(() => createSlot(v, slot('s3')), pgErr('53400', 'all replication slots are in use'));
  t.throws(() => createSlot(v, slot('Bad')), pgErr('42602', 'replication slot name "Bad" contains invalid character'));
  t.throws(() => createSlot(v, slot('')), pgErr('42602', 'replication slot name "" is too short'));
  t.throws(() => createSlot(v, slot('x'.repeat(64))), pgErr('42622'));
  const none = createSharedMemory(1, 0);
  t.throws(() => createSlot(none, slot('a')), pgErr('55000', 'replication slots can only be used if max_replication_slots > 0'));
});

t.test('acquire: one active connection per slot', async (t) => {
  const v = createSharedMemory(1, 2);
  createSlot(v, slot('s1'));
  t.throws(() => acquireSlot(v, 'nope', 1), pgErr('42704', 'replication slot "nope" does not exist'));
  const i = acquireSlot(v, 's1', 11);
  t.throws(() => acquireSlot(v, 's1', 12), pgErr('55006', 'replication slot "s1" is active for PID 11'));
  t.equal(acquireSlot(v, 's1', 11), i, 'the holder may acquire again');
  releaseSlot(v, i, 11);
  t.equal(acquireSlot(v, 's1', 12), i, 'free after release');
  freeSlot(v, i, 12);
  t.equal(findSlot(v, 's1'), -1, 'dropped');
});

t.test('temporary slots stay with their session', async (t) => {
  const v = createSharedMemory(1, 3);
  const i = createSlot(v, slot('tmp1', { temporary: true, activePid: 5 }));
  releaseSlot(v, i, 5);
  t.equal(readSlot(v, i)!.activePid, 5, 'still held after release');
  t.same(temporarySlotsOf(v, 5), [i]);
  t.same(temporarySlotsOf(v, 6), []);
});

t.test('restart_lsn follows flush reports, even backwards; lost slots stop following', async (t) => {
  const v = createSharedMemory(1, 1);
  const i = createSlot(v, slot('s1'));
  const v0 = readSlot(v, i)!.version;
  t.ok(setRestartLsn(v, i, 0x3000000n, 1));
  t.notOk(setRestartLsn(v, i, 0x3000000n, 1), 'unchanged is not a change');
  t.ok(setRestartLsn(v, i, 0x2000000n, 1), 'backwards');
  t.ok(readSlot(v, i)!.version > v0, 'version bumped');
  t.ok(markSlotLost(v, i));
  const s = readSlot(v, i)!;
  t.same([s.walStatus, s.restartLsn, s.invalidatedAt], [WalStatus.LOST, 0n, 0x2000000n]);
  t.notOk(setRestartLsn(v, i, 0x5000000n, 1), 'a lost slot keeps no reservation');
});

t.test('persisted slots load back; a dropped one is gone', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgws-slots-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const v = createSharedMemory(1, 4);
  const a = createSlot(v, slot('a'));
  const b = createSlot(v, slot('b'));
  setRestartLsn(v, a, 0x1234568n, 2);
  saveSlot(dir, readSlot(v, a)!);
  saveSlot(dir, readSlot(v, b)!);
  markSlotLost(v, b);
  saveSlot(dir, readSlot(v, b)!);
  t.same(fs.readdirSync(path.join(dir, 'pg_replslot')).sort(), ['a', 'b']);
  t.same(fs.readdirSync(path.join(dir, 'pg_replslot', 'a')), ['state'], 'no temporary file left');
  const loaded = loadSlots(dir);
  t.same(loaded.map((s) => [s.name, s.restartLsn, s.restartTli, s.walStatus, s.invalidatedAt]),
    [['a', 0x1234568n, 2, WalStatus.RESERVED, 0n], ['b', 0n, 0, WalStatus.LOST, 0n]]);
  removeSlot(dir, 'a');
  t.same(loadSlots(dir).map((s) => s.name), ['b']);
  const v2 = createSharedMemory(1, 4);
  for (const s of loadSlots(dir)) createSlot(v2, s);
  t.same(listSlots(v2).map((s) => s.name), ['b']);
});

t.test('loading after a crash: an interrupted first save is no slot; a damaged file is an error, never a lost reservation', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgws-slots-crash-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const v = createSharedMemory(1, 4);
  const a = createSlot(v, slot('a'));
  setRestartLsn(v, a, 0x3000000n, 1);
  saveSlot(dir, readSlot(v, a)!);
  const base = path.join(dir, 'pg_replslot');
  // Killed inside saveSlot: after mkdir, before the rename (CREATE_REPLICATION_SLOT had not answered).
  fs.mkdirSync(path.join(base, 'half'));
  fs.writeFileSync(path.join(base, 'half', 'state.tmp.123.4'), '{"name":"ha');
  // Killed inside a later save of a slot that exists: the old state stands.
  fs.writeFileSync(path.join(base, 'a', 'state.tmp.123.5'), '{"na');
  t.same(loadSlots(dir).map((s) => [s.name, s.restartLsn]), [['a', 0x3000000n]], 'the slot whose creation was cut short does not exist');
  t.same(fs.readdirSync(base), ['a'], 'its directory is removed');
  t.same(fs.readdirSync(path.join(base, 'a')), ['state'], 'a stale temporary file is removed');

  const state = path.join(base, 'a', 'state');
  const good = fs.readFileSync(state, 'utf8');
  fs.writeFileSync(state, good.replace('"0/3000000"', '"0/30zz000"'));
  t.throws(() => loadSlots(dir), { message: /replication slot file ".*a.state".*restart_lsn/ }, 'an unreadable restart_lsn stops the start instead of releasing WAL');
  fs.writeFileSync(state, good);
  t.equal(loadSlots(dir).length, 1);
});

t.test('retention horizon', async (t) => {
  const MB = 1n << 20n;
  t.equal(retentionHorizon(100n * MB, [], null, 0), 100n * MB, 'nothing holds WAL: up to the flush position');
  t.equal(retentionHorizon(100n * MB, [], null, Number(16n * MB)), 84n * MB, 'wal_keep_size');
  t.equal(retentionHorizon(100n * MB, [40n * MB, 60n * MB], null, 0), 40n * MB, 'oldest slot');
  t.equal(retentionHorizon(100n * MB, [40n * MB], 30n * MB, 0), 30n * MB, 'oldest sent position');
  t.equal(retentionHorizon(10n * MB, [], null, Number(64n * MB)), 0n, 'never below 0');
});

t.test('retention keeps WAL from the restart_lsn on disk, not only the newer one in memory', async (t) => {
  // After kill -9 the slot comes back with the restart_lsn of its state file (saved at
  // most once a second): the WAL from there on must still exist (PostgreSQL 18 keeps
  // WAL by the slot's last saved restart_lsn for the same reason).
  const MB = 1 << 20;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgws-slots-ret-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const v = createSharedMemory(1, 2);
  publishIdentity(v, { sysid: 1n, segSize: MB, pageMagic: 0xd110 }, { flushLsn: BigInt(10 * MB + 100), timeline: 1 });
  for (let seg = 1; seg <= 10; seg++) fs.writeFileSync(path.join(dir, segmentFileName(1, BigInt(seg), MB)), '');
  const a = createSlot(v, slot('a'));
  setRestartLsn(v, a, BigInt(2 * MB + 10), 1);
  saveSlot(dir, readSlot(v, a)!);
  setRestartLsn(v, a, BigInt(8 * MB + 10), 1); // confirmed, not saved yet
  const r = runRetention(v, dir, dir, { walKeepSize: 0, maxSlotWalKeepSize: -1 }, createLogger('silent'));
  t.same(r!.removed, [segmentFileName(1, 1n, MB)], 'only the segment before the saved restart_lsn goes');
  saveSlot(dir, readSlot(v, a)!);
  const r2 = runRetention(v, dir, dir, { walKeepSize: 0, maxSlotWalKeepSize: -1 }, createLogger('silent'));
  t.same(r2!.removed.length, 6, 'once saved, the horizon follows');
});

t.test('RESERVE_WAL against a concurrent retention pass (ReplicationSlotReserveWal\'s retry)', async (t) => {
  const MB = 1 << 20;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgws-slots-reserve-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const v = createSharedMemory(1, 4);
  publishIdentity(v, { sysid: 1n, segSize: MB, pageMagic: 0xd110 }, { flushLsn: BigInt(4 * MB + 100), timeline: 1 });
  for (let seg = 1; seg <= 6; seg++) fs.writeFileSync(path.join(dir, segmentFileName(1, BigInt(seg), MB)), '');

  // A pass publishes its bound before it unlinks: with nothing holding WAL it may remove
  // everything below the flush position's segment.
  const r = runRetention(v, dir, dir, { walKeepSize: 0, maxSlotWalKeepSize: -1 }, createLogger('silent'));
  t.same(r!.removed.length, 3, 'segments 1-3 removed');
  t.equal(removalBound(v), 4n, 'the bound it published: below segment 4');

  // A slot that read an older flush position (segment 3, already gone) before it was
  // created moves on to a newer one; one that read segment 4 stays where it is.
  const positions = [{ flushLsn: BigInt(3 * MB + 5), timeline: 1 }, { flushLsn: BigInt(4 * MB + 200), timeline: 1 }];
  const late = createSlot(v, slot('late', { activePid: 1, restartLsn: positions[0]!.flushLsn, restartTli: 1 }));
  const got = ensureWalReserved(v, late, positions[0]!, () => positions[1]!, MB);
  t.equal(got.flushLsn, positions[1]!.flushLsn, 'retried with the newer flush position');
  t.equal(readSlot(v, late)!.restartLsn, positions[1]!.flushLsn, 'and the slot reserves from there');
  const onTime = createSlot(v, slot('ontime', { activePid: 1, restartLsn: BigInt(4 * MB + 50), restartTli: 1 }));
  t.equal(ensureWalReserved(v, onTime, { flushLsn: BigInt(4 * MB + 50), timeline: 1 }, () => { throw new Error('no retry'); }, MB).flushLsn,
    BigInt(4 * MB + 50), 'a segment at or past the bound needs no retry');

  // A position that never gets past the bound is an error, not a loop.
  const stuck = createSlot(v, slot('stuck', { activePid: 1, restartLsn: BigInt(MB), restartTli: 1 }));
  t.throws(() => ensureWalReserved(v, stuck, { flushLsn: BigInt(MB), timeline: 1 }, () => ({ flushLsn: BigInt(MB), timeline: 1 }), MB),
    pgErr('55000'));

  // The pass's second look at the slots: a slot created after the pass first read them
  // (its restart_lsn in segment 5, below the bound of 6 the pass publishes) keeps its segment.
  for (const i of [late, onTime, stuck]) freeSlot(v, i, 1);
  publishIdentity(v, { sysid: 1n, segSize: MB, pageMagic: 0xd110 }, { flushLsn: BigInt(6 * MB + 100), timeline: 1 });
  let boundSeen = -1n;
  const r2 = runRetention(v, dir, dir, { walKeepSize: 0, maxSlotWalKeepSize: -1 }, createLogger('silent'), {
    afterBound: () => {
      boundSeen = removalBound(v);
      createSlot(v, slot('between', { restartLsn: BigInt(5 * MB + 7), restartTli: 1 }));
    },
  });
  t.equal(boundSeen, 6n, 'the pass published bound 6 before its second look');
  t.same(r2!.removed, [segmentFileName(1, 4n, MB)], 'it removed segment 4 only');
  t.ok(fs.existsSync(path.join(dir, segmentFileName(1, 5n, MB))), 'segment 5, reserved by the slot created in between, is kept');
});
