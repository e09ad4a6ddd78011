// Replication slots through the admin API and the metrics: list (pg_replication_slots'
// columns), create (with the token; persisted), drop (409 while a standby uses it),
// and per-slot series that follow restart_lsn and disappear with the slot.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { buildAdminApp } from '../../src/admin/app.ts';
import { R32, replSlot32 } from '../../src/shmem/layout.ts';
import { findSlot } from '../../src/slots/slots.ts';
import { makeTempDir, waitUntil } from '../helpers/proc.ts';
import { startInProcess } from '../helpers/server.ts';
import { WireClient } from '../helpers/wire.ts';
import { inProcessDeps, parseMetrics, TOKEN } from './helpers.ts';

type Json = Record<string, unknown>;

/** The sample of `name` whose labels include all of `labels`, or undefined. */
function value(m: ReturnType<typeof parseMetrics>, name: string, labels: Record<string, string>): number | undefined {
  return m.samples.get(name)?.find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

t.test('list, create, drop replication slots; slot metrics', async (t) => {
  const dir = await makeTempDir('pgws-admin-slots-');
  t.teardown(() => dir.remove());
  const server = await startInProcess({ dataDir: dir.path, maxReplicationSlots: 4, walKeepSize: 64 << 20 }, t);
  const app = buildAdminApp(inProcessDeps(server, { adminToken: TOKEN, dataDir: dir.path }));
  t.teardown(() => app.close());
  const auth = { authorization: `Bearer ${TOKEN}` };

  t.same((await app.inject('/api/v1/slots')).json(), [], 'no slots yet');
  t.equal((await app.inject({ method: 'POST', url: '/api/v1/slots', payload: { name: 's1' } })).statusCode, 401, 'token required');
  const created = await app.inject({ method: 'POST', url: '/api/v1/slots', headers: auth, payload: { name: 's1', reserve_wal: true } });
  t.equal(created.statusCode, 201);
  t.match(created.json(), { slot_name: 's1', slot_type: 'physical', temporary: false, active: false, restart_lsn: /^[0-9A-F]+\/[0-9A-F]+$/, wal_status: 'reserved' });
  t.ok(fs.existsSync(path.join(dir.path, 'pg_replslot', 's1', 'state')), 'persisted');
  const dup = await app.inject({ method: 'POST', url: '/api/v1/slots', headers: auth, payload: { name: 's1' } });
  t.equal(dup.statusCode, 409);
  t.equal((dup.json() as Json).message, 'replication slot "s1" already exists');
  const bad = await app.inject({ method: 'POST', url: '/api/v1/slots', headers: auth, payload: { name: 'Bad-Name' } });
  t.equal(bad.statusCode, 400);
  t.match((bad.json() as Json).message, /contains invalid character/);

  // A standby streams with it: active, and restart_lsn follows its flush report.
  const c = await WireClient.replication(server.port);
  c.query('START_REPLICATION SLOT s1 0/100000 TIMELINE 1');
  t.equal((await c.next())?.type, 'W');
  const r = Buffer.alloc(34);
  r.write('r', 0);
  r.writeBigUInt64BE(0x180000n, 1);
  r.writeBigUInt64BE(0x180000n, 9);
  c.write(Buffer.concat([Buffer.from([0x64, 0, 0, 0, 38]), r]));
  let list: Json[] = [];
  await waitUntil(async () => {
    list = (await app.inject('/api/v1/slots')).json() as Json[];
    return list[0]?.restart_lsn === '0/180000';
  }, 10_000, 'restart_lsn to follow the flush report');
  t.match(list, [{ slot_name: 's1', active: true, active_pid: Number, restart_lsn: '0/180000' }]);
  const metrics = parseMetrics((await app.inject('/metrics')).body);
  const labels = { slot_name: 's1', wal_status: 'reserved', temporary: 'false' };
  t.equal(value(metrics, 'pgws_replication_slot_restart_lsn_bytes', labels), 0x180000);
  t.equal(value(metrics, 'pgws_replication_slot_active', labels), 1);
  t.ok(value(metrics, 'pgws_replication_slot_retained_bytes', labels)! > 0, 'retained bytes');
  t.equal(value(metrics, 'pgws_max_replication_slots', {}), 4);

  const busy = await app.inject({ method: 'DELETE', url: '/api/v1/slots/s1', headers: auth });
  t.equal(busy.statusCode, 409, 'in use');
  t.match((busy.json() as Json).message, /^replication slot "s1" is active for PID \d+$/);
  c.end();
  let dropped = busy;
  // The sender releases the slot once it has seen the client go (and saved the slot).
  // 503 is "busy, try again" (a slot lock held by a descheduled thread): a client retries.
  await waitUntil(async () => {
    dropped = await app.inject({ method: 'DELETE', url: '/api/v1/slots/s1', headers: auth });
    return dropped.statusCode !== 409 && dropped.statusCode !== 503;
  }, 10_000, 'the slot to be released');
  t.equal(dropped.statusCode, 200, 'dropped once released');
  t.notOk(fs.existsSync(path.join(dir.path, 'pg_replslot', 's1')), 'file removed');
  t.equal((await app.inject({ method: 'DELETE', url: '/api/v1/slots/s1', headers: auth })).statusCode, 404);
  const after = parseMetrics((await app.inject('/metrics')).body);
  t.equal(value(after, 'pgws_replication_slot_active', labels), undefined, 'the series went with the slot');
});

t.test('concurrent create and drop of one slot: no 500, and disk agrees with memory', async (t) => {
  const dir = await makeTempDir('pgws-admin-slots-race-');
  t.teardown(() => dir.remove());
  const server = await startInProcess({ dataDir: dir.path, maxReplicationSlots: 4 }, t);
  const app = buildAdminApp(inProcessDeps(server, { adminToken: TOKEN, dataDir: dir.path }));
  t.teardown(() => app.close());
  const auth = { authorization: `Bearer ${TOKEN}` };
  for (let round = 0; round < 5; round++) {
    // The drop arrives while the create is still writing the slot's file.
    const creating = app.inject({ method: 'POST', url: '/api/v1/slots', headers: auth, payload: { name: 'race' } });
    while (findSlot(server.views, 'race') < 0) await new Promise((r) => setImmediate(r));
    const dropped = await app.inject({ method: 'DELETE', url: '/api/v1/slots/race', headers: auth });
    const created = await creating;
    t.equal(created.statusCode, 201, `round ${round}: created (${created.body})`);
    t.ok([200, 404, 409].includes(dropped.statusCode), `round ${round}: the drop answers ${dropped.statusCode} ${dropped.body}`);
    const listed = ((await app.inject('/api/v1/slots')).json() as Json[]).some((s) => s.slot_name === 'race');
    const onDisk = fs.existsSync(path.join(dir.path, 'pg_replslot', 'race', 'state'));
    t.equal(onDisk, listed, `round ${round}: a state file exactly when the slot exists (listed: ${listed})`);
    t.equal(listed, dropped.statusCode !== 200, `round ${round}: the slot exists unless the drop succeeded`);
    if (listed) t.equal((await app.inject({ method: 'DELETE', url: '/api/v1/slots/race', headers: auth })).statusCode, 200);
  }
});

t.test('a replication slot lock that stays busy: the admin API answers 503, never hangs the main thread', async (t) => {
  const dir = await makeTempDir('pgws-admin-slots-busy-');
  t.teardown(() => dir.remove());
  const server = await startInProcess({ dataDir: dir.path, maxReplicationSlots: 4 }, t);
  const app = buildAdminApp(inProcessDeps(server, { adminToken: TOKEN, dataDir: dir.path }));
  t.teardown(() => app.close());
  const auth = { authorization: `Bearer ${TOKEN}` };
  t.equal((await app.inject({ method: 'POST', url: '/api/v1/slots', headers: auth, payload: { name: 's1' } })).statusCode, 201);
  // As if a sender thread had died between taking the lock and releasing it.
  const v = server.views;
  const lockWord = replSlot32(v, findSlot(v, 's1'), R32.LOCK);
  Atomics.store(v.i32, lockWord, 1);
  const drop = await app.inject({ method: 'DELETE', url: '/api/v1/slots/s1', headers: auth });
  t.equal(drop.statusCode, 503, `drop: ${drop.body}`);
  t.match(drop.json(), { message: /busy/ });
  t.equal((await app.inject('/api/v1/slots')).statusCode, 200, 'listing still answers');
  t.equal((await app.inject('/metrics')).statusCode, 200, 'metrics still answer');
  Atomics.store(v.i32, lockWord, 0);
  t.equal((await app.inject({ method: 'DELETE', url: '/api/v1/slots/s1', headers: auth })).statusCode, 200, 'works once the lock is free');
  const gate = replSlot32(v, 0, R32.LOCK); // slot creation serializes on entry 0's lock
  Atomics.store(v.i32, gate, 1);
  const create = await app.inject({ method: 'POST', url: '/api/v1/slots', headers: auth, payload: { name: 's2' } });
  t.equal(create.statusCode, 503, `create: ${create.body}`);
  Atomics.store(v.i32, gate, 0);
  t.notOk(fs.existsSync(path.join(dir.path, 'pg_replslot', 's2')), 'nothing written for the refused create');
});
