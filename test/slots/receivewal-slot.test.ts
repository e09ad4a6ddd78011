// Replication slots with real pg_receivewal: --create-slot, streaming with the slot
// (restart_lsn follows its flush reports), stopped and restarted into an empty
// directory it resumes at the slot's position with no gap; the slot survives kill -9
// of the server with its restart_lsn; the commands' shapes and errors on the wire.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { parseLsn } from '../../src/protocol/lsn.ts';
import { receiveWal, waitForSegments } from '../helpers/pg.ts';
import { makeTempDir, pgBin, run, sha256File, waitUntil } from '../helpers/proc.ts';
import { startWalsender } from '../helpers/server.ts';
import { errorOf, rowOf, tagOf, types, WireClient } from '../helpers/wire.ts';

const MB = 1 << 20;
const segName = (segno: number): string => `00000001000000000000${segno.toString(16).toUpperCase().padStart(4, '0')}`;

async function readSlot(port: number, name: string): Promise<(string | null)[]> {
  const c = await WireClient.replication(port);
  c.query(`READ_REPLICATION_SLOT ${name}`);
  const row = rowOf((await c.until('Z'))[1]!);
  c.end();
  return row;
}

t.test('slot commands on the wire', async (t) => {
  const data = await makeTempDir('pgws-slotcmd-');
  t.teardown(() => data.remove());
  const ws = await startWalsender(['--data-dir', data.path, '--demo-wal-segment-size', '1MB', '--max-replication-slots', '2'], { t });
  const c = await WireClient.replication(ws.port);
  c.query('CREATE_REPLICATION_SLOT "s1" PHYSICAL RESERVE_WAL');
  let ms = await c.until('Z');
  t.equal(types(ms), 'TDCZ');
  t.same(rowOf(ms[1]!), ['s1', '0/0', null, null], 'slot_name, consistent_point 0/0, NULL snapshot and plugin');
  t.equal(tagOf(ms[2]!), 'CREATE_REPLICATION_SLOT');
  c.query('CREATE_REPLICATION_SLOT s1 PHYSICAL');
  ms = await c.until('Z');
  t.same(errorOf(ms[0]!), { severity: 'ERROR', code: '42710', message: 'replication slot "s1" already exists', detail: undefined });
  c.query('CREATE_REPLICATION_SLOT "t1" TEMPORARY PHYSICAL ( RESERVE_WAL)');
  t.equal(types(await c.until('Z')), 'TDCZ', 'new option syntax, as pg_basebackup sends it');
  c.query('CREATE_REPLICATION_SLOT s3 PHYSICAL');
  t.equal(errorOf((await c.until('Z'))[0]!).code, '53400', 'all replication slots are in use');
  const s1 = await readSlot(ws.port, 's1');
  t.equal(s1[0], 'physical');
  t.ok(parseLsn(s1[1]!) !== null, 'RESERVE_WAL gives a restart_lsn');
  t.equal(s1[2], '1');

  const other = await WireClient.replication(ws.port);
  other.query('START_REPLICATION SLOT s1 0/100000 TIMELINE 1');
  t.equal((await other.next())?.type, 'W');
  c.query('DROP_REPLICATION_SLOT s1');
  ms = await c.until('Z');
  t.equal(errorOf(ms[0]!).code, '55006');
  t.match(errorOf(ms[0]!).message, /^replication slot "s1" is active for PID \d+$/);
  c.query('IDENTIFY_SYSTEM');
  await c.until('Z');
  c.query('DROP_REPLICATION_SLOT s1 WAIT');
  let answered = false;
  const dropped = c.until('Z').finally(() => { answered = true; });
  await new Promise((r) => setTimeout(r, 300));
  t.notOk(answered, 'DROP ... WAIT has not answered while the slot is active');
  other.end(); // releases the slot: the waiting DROP finishes
  ms = await dropped;
  t.equal(types(ms), 'CZ', 'DROP with WAIT completes once the slot is free');
  t.equal(tagOf(ms[0]!), 'DROP_REPLICATION_SLOT');
  t.same(await readSlot(ws.port, 's1'), [null, null, null], 'gone');
  t.notOk(fs.existsSync(path.join(data.path, 'pg_replslot', 's1')), 'its file is gone');
  t.same((await readSlot(ws.port, 't1'))[0], null, 'the temporary slot went when its session hit an ERROR');
  c.end();
});

t.test('pg_receivewal with a slot resumes at the slot position after a restart; the slot survives kill -9', async (t) => {
  const data = await makeTempDir('pgws-slotrw-');
  const dir1 = await makeTempDir('pgws-slotrw1-');
  const dir2 = await makeTempDir('pgws-slotrw2-');
  t.teardown(() => { data.remove(); dir1.remove(); dir2.remove(); });
  // wal_keep_size keeps every segment here, so all can be compared with what the clients got.
  const args = ['--data-dir', data.path, '--demo-wal-segment-size', '1MB', '--demo-rate', '2MB', '--wal-keep-size', '64MB'];
  let ws = await startWalsender(args, { t });

  const create = await run(pgBin('pg_receivewal'), ['-h', '127.0.0.1', '-p', String(ws.port), '-U', 'postgres', '--create-slot', '-S', 's1', '-D', dir1.path]);
  t.equal(create.code, 0, `--create-slot: ${create.stderr}`);
  t.ok(fs.existsSync(path.join(data.path, 'pg_replslot', 's1', 'state')), 'the slot is on disk');

  const rw1 = receiveWal({ host: '127.0.0.1', port: ws.port, dir: dir1.path, slot: 's1' });
  t.teardown(() => rw1.kill());
  const m = await rw1.waitFor(/starting log streaming at 0\/([0-9A-F]+)/, 15_000);
  const first = parseInt(m[1]!, 16) / MB;
  await waitForSegments(dir1.path, [segName(first), segName(first + 1)], 20_000, { segmentSize: MB, proc: rw1 });
  // With a slot, pg_receivewal reports the end of its last completed segment as flushed.
  await waitUntil(async () => parseLsn((await readSlot(ws.port, 's1'))[1] ?? '0/0')! >= BigInt((first + 2) * MB), 10_000, 'restart_lsn to follow');
  await rw1.kill('SIGINT');
  const restart = (await readSlot(ws.port, 's1'))[1]!;
  // The sender saves the slot when it releases it, once it has seen the client go.
  const stateFile = path.join(data.path, 'pg_replslot', 's1', 'state');
  await waitUntil(() => JSON.parse(fs.readFileSync(stateFile, 'utf8')).restart_lsn === restart, 10_000, 'the slot state to be saved');
  const restartSeg = Number(parseLsn(restart)! / BigInt(MB));

  // kill -9 the server and restart it on the same data directory.
  await ws.proc.kill('SIGKILL');
  ws = await startWalsender(args, { t });
  t.equal((await readSlot(ws.port, 's1'))[1], restart, 'restart_lsn survived kill -9');

  // A new pg_receivewal in an empty directory starts at the slot's restart_lsn.
  const rw2 = receiveWal({ host: '127.0.0.1', port: ws.port, dir: dir2.path, slot: 's1' });
  t.teardown(() => rw2.kill());
  const m2 = await rw2.waitFor(/starting log streaming at 0\/([0-9A-F]+)/, 15_000);
  t.equal(parseInt(m2[1]!, 16) / MB, restartSeg, 'streaming starts at the slot position');
  await waitForSegments(dir2.path, [segName(restartSeg), segName(restartSeg + 1)], 20_000, { segmentSize: MB, proc: rw2 });
  const complete1 = fs.readdirSync(dir1.path).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort();
  const lastOf1 = parseInt(complete1.at(-1)!.slice(16), 16);
  t.ok(restartSeg <= lastOf1 + 1, 'no gap between the two runs');
  for (const n of [...complete1, segName(restartSeg), segName(restartSeg + 1)]) {
    const have = fs.existsSync(path.join(dir2.path, n)) ? dir2.path : dir1.path;
    t.equal(await sha256File(path.join(have, n)), await sha256File(path.join(data.path, n)), `${n} byte-identical`);
  }
});
