// Retention under a steady demo load: old segments go, a slot-holding client that has
// not confirmed keeps its segments until it confirms, a slot past
// max_slot_wal_keep_size becomes lost and the disk stops growing; a full disk pauses
// ingest without crashing or serving corrupt WAL, and ingest resumes once space returns.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { formatLsn, parseLsn } from '../../src/protocol/lsn.ts';
import { isRoot, makeTempDir, sleep, waitUntil } from '../helpers/proc.ts';
import { startWalsender } from '../helpers/server.ts';
import { startWithAdmin } from '../admin/helpers.ts';
import { errorOf, rowOf, types, WireClient, type BackendMessage } from '../helpers/wire.ts';

const MB = 1 << 20;
const segnos = (dir: string): number[] =>
  fs.readdirSync(dir).filter((n) => /^[0-9A-F]{24}(\.partial)?$/.test(n)).map((n) => parseInt(n.slice(16, 24), 16)).sort((a, b) => a - b);

async function query(port: number, q: string): Promise<ReturnType<typeof rowOf> | null> {
  const c = await WireClient.replication(port);
  c.query(q);
  const ms = await c.until('Z');
  c.end();
  const d = ms.find((m) => m.type === 'D');
  return d ? rowOf(d) : null;
}

const flushOf = async (port: number): Promise<bigint> => parseLsn((await query(port, 'IDENTIFY_SYSTEM'))![2]!)!;

/** A standby that reads everything but confirms (flush) only what it is told to. */
async function slotClient(port: number, slot: string, start: string) {
  const c = await WireClient.replication(port);
  c.query(`START_REPLICATION SLOT ${slot} ${start} TIMELINE 1`);
  if ((await c.next())?.type !== 'W') throw new Error('no CopyBothResponse');
  const state = { received: parseLsn(start)!, last: null as BackendMessage | null };
  void (async () => {
    for (;;) {
      const m = await c.next(60_000).catch(() => null);
      if (!m || m.type !== 'd') { state.last = m; return; }
      if (m.body[0] === 0x77) state.received = m.body.readBigUInt64BE(1) + BigInt(m.body.length - 25);
    }
  })();
  const confirm = (flush: bigint): void => {
    const r = Buffer.alloc(34);
    r.write('r', 0);
    r.writeBigUInt64BE(state.received, 1);
    r.writeBigUInt64BE(flush, 9);
    c.write(Buffer.concat([Buffer.from([0x64, 0, 0, 0, 38]), r]));
  };
  return { c, state, confirm };
}

t.test('retention follows the slot; a slot past max_slot_wal_keep_size is lost', async (t) => {
  const data = await makeTempDir('pgws-ret-');
  t.teardown(() => data.remove());
  const ws = await startWalsender(['--data-dir', data.path, '--demo-wal-segment-size', '1MB', '--demo-rate', '4MB',
    '--max-slot-wal-keep-size', '12MB'], { t });
  await waitUntil(async () => (await flushOf(ws.port)) > 3n * BigInt(MB), 10_000, 'some WAL');
  t.equal(types(await (async () => { const c = await WireClient.replication(ws.port); c.query('CREATE_REPLICATION_SLOT s1 PHYSICAL RESERVE_WAL'); const r = await c.until('Z'); c.end(); return r; })()), 'TDCZ');
  const reserved = parseLsn((await query(ws.port, 'READ_REPLICATION_SLOT s1'))![1]!)!;
  const reservedSeg = Number(reserved / BigInt(MB));
  const start = formatLsn(BigInt(reservedSeg * MB));
  const client = await slotClient(ws.port, 's1', start);

  await sleep(2500); // ~10 MB more WAL; the slot still holds everything from its restart_lsn
  let have = segnos(data.path);
  t.ok(have[0]! <= reservedSeg, `segments from the slot's restart_lsn are kept (oldest ${have[0]}, slot at ${reservedSeg})`);
  t.ok(have[0]! > 1, 'segments older than every need were removed');

  // The standby confirms: the horizon moves and older segments go.
  const confirmed = (client.state.received / BigInt(MB)) * BigInt(MB);
  client.confirm(confirmed);
  await waitUntil(() => segnos(data.path)[0]! >= Number(confirmed / BigInt(MB)) - 1, 5000, 'segments before the confirmed flush to go');
  t.pass('confirmed segments removed');
  t.equal((await query(ws.port, 'READ_REPLICATION_SLOT s1'))![1], formatLsn(confirmed), 'restart_lsn follows the confirmation');

  // It stays connected but stops confirming: past 12MB its sender is terminated (as
  // PostgreSQL's checkpointer does to a slot's holder), the released slot is marked lost
  // (on disk before anyone can see it in shared memory) and the disk stops growing.
  await waitUntil(async () => (await query(ws.port, 'READ_REPLICATION_SLOT s1'))![1] === null, 15_000, 'the slot to be marked lost');
  const state = JSON.parse(fs.readFileSync(path.join(data.path, 'pg_replslot', 's1', 'state'), 'utf8'));
  t.equal(state.wal_status, 'lost', 'wal_status "lost" persisted');
  t.equal(state.restart_lsn, null, 'restart_lsn NULL on disk');
  await waitUntil(() => client.state.last !== null, 5000, 'the holder to be told');
  t.equal(client.state.last && errorOf(client.state.last).code, '57P01', 'the holding standby was terminated with 57P01');
  // The disk stops growing: sampled over 3 s, the store stays near what one retention
  // interval produces (4MB/s for 1 s, plus the open segment; slack for a late pass under
  // load), well below the 12MB the slot held, and its oldest segment keeps moving on.
  // (A single sample compared with a fixed 4 depended on the phase of the retention timer.)
  await sleep(1000);
  const counts: number[] = [];
  const oldestBefore = segnos(data.path)[0]!;
  for (let i = 0; i < 30; i++) {
    counts.push(segnos(data.path).length);
    await sleep(100);
  }
  const oldestAfter = segnos(data.path)[0]!;
  t.ok(Math.max(...counts) <= 10, `disk stops growing (${Math.min(...counts)} to ${Math.max(...counts)} segments over 3 s)`);
  t.ok(oldestAfter >= oldestBefore + 2, `old segments keep being removed (oldest ${oldestBefore} then ${oldestAfter})`);
  have = segnos(data.path);
  t.ok(have.every((s, i) => i === 0 || s === have[i - 1]! + 1), 'what remains is contiguous');

  // A standby that starts from the lost slot where it was gets PostgreSQL 15's answer:
  // the slot is acquired (its restart_lsn is not checked), the segment is gone.
  t.same(await query(ws.port, 'READ_REPLICATION_SLOT s1'), ['physical', null, null], 'a lost slot has no restart_lsn');
  const late = await WireClient.replication(ws.port);
  late.query(`START_REPLICATION SLOT s1 ${start} TIMELINE 1`);
  const ms = await late.until('Z');
  t.equal(types(ms), 'WEZ', 'CopyBothResponse, then the error, then ReadyForQuery');
  t.same(errorOf(ms[1]!), { severity: 'ERROR', code: '58P01', detail: undefined,
    message: `requested WAL segment 00000001${'0'.repeat(8)}${reservedSeg.toString(16).toUpperCase().padStart(8, '0')} has already been removed` });
  late.end();
});

t.test('disk full: ingest pauses, stored WAL is served intact, ingest resumes when space returns', { skip: !isRoot && 'needs root to mount a tmpfs' }, async (t) => {
  const base = await makeTempDir('pgws-full-');
  const mnt = path.join(base.path, 'mnt');
  fs.mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', mnt]);
  t.teardown(async () => { try { execFileSync('umount', ['-l', mnt]); } catch { /* already gone */ } await base.remove(); });
  const { ws, admin } = await startWithAdmin(['--data-dir', mnt, '--demo-wal-segment-size', '1MB', '--demo-rate', '4MB'], t);
  // A slot reserving WAL with no standby: retention may not free anything, so the disk fills.
  const c = await WireClient.replication(ws.port);
  c.query('CREATE_REPLICATION_SLOT hold PHYSICAL RESERVE_WAL');
  await c.until('Z');
  c.end();
  await ws.proc.waitFor(/disk full: WAL ingest paused/, 15_000);
  const notReady = await admin.get('/readyz');
  t.equal(notReady.status, 503, 'readyz says so');
  t.match((notReady.json as { message: string }).message, /file system is full/);
  t.match((await admin.get('/metrics')).text, /pgws_source_info\{source="demo",state="disk_full"\} 1/, 'and the metrics');
  const stuck = await flushOf(ws.port);
  await sleep(1500);
  t.equal(formatLsn(await flushOf(ws.port)), formatLsn(stuck), 'the flush position stops while the disk is full');

  // A standby reads everything stored from the slot's segment on: identical to the
  // files, nothing past the flush position.
  const held = Number(parseLsn((await query(ws.port, 'READ_REPLICATION_SLOT hold'))![1]!)! / BigInt(MB));
  const reader = await slotClientNoSlot(ws.port, BigInt(held * MB));
  await waitUntil(() => reader.received >= stuck, 10_000, 'the reader to catch up');
  const bytes = Buffer.concat(reader.data);
  const files = fs.readdirSync(mnt).filter((n) => /^[0-9A-F]{24}(\.partial)?$/.test(n) && parseInt(n.slice(16, 24), 16) >= held).sort();
  const onDisk = Buffer.concat(files.map((f) => fs.readFileSync(path.join(mnt, f))));
  t.ok(onDisk.subarray(0, bytes.length).equals(bytes), `served ${bytes.length} bytes identical to the store`);
  t.equal(formatLsn(reader.received), formatLsn(stuck), 'never past the flush position');
  t.notOk(ws.proc.hasExited, 'still running');

  const d = await WireClient.replication(ws.port);
  d.query('DROP_REPLICATION_SLOT hold');
  t.equal(types(await d.until('Z')), 'CZ');
  d.end();
  await ws.proc.waitFor(/WAL ingest resumed/, 15_000);
  await waitUntil(async () => (await flushOf(ws.port)) > stuck, 10_000, 'the flush position to move again');
  t.pass('ingest resumed by itself');
  t.equal((await admin.get('/readyz')).status, 200, 'ready again');
  reader.c.end();
});

async function slotClientNoSlot(port: number, start: bigint) {
  const c = await WireClient.replication(port);
  c.query(`START_REPLICATION ${formatLsn(start)} TIMELINE 1`);
  if ((await c.next())?.type !== 'W') throw new Error('no CopyBothResponse');
  const st = { c, received: start, data: [] as Buffer[] };
  void (async () => {
    for (;;) {
      const m = await c.next(60_000).catch(() => null);
      if (!m || m.type !== 'd') return;
      if (m.body[0] !== 0x77) continue;
      st.data.push(Buffer.from(m.body.subarray(25)));
      st.received = m.body.readBigUInt64BE(1) + BigInt(m.body.length - 25);
    }
  })();
  return st;
}
