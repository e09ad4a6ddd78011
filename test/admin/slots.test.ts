// Replication slots through the admin API and the metrics: list (pg_replication_slots'
// columns), create (with the token; persisted), drop (409 while a standby uses it),
// and per-slot series that follow restart_lsn and disappear with the slot.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { buildAdminApp } from '../../src/admin/app.ts';
import { makeTempDir } from '../helpers/proc.ts';
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
  for (let i = 0; i < 50; i++) {
    list = (await app.inject('/api/v1/slots')).json() as Json[];
    if (list[0]?.restart_lsn === '0/180000') break;
    await new Promise((res) => setTimeout(res, 50));
  }
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
  for (let i = 0; i < 50 && dropped.statusCode !== 200; i++) {
    await new Promise((res) => setTimeout(res, 50));
    dropped = await app.inject({ method: 'DELETE', url: '/api/v1/slots/s1', headers: auth });
  }
  t.equal(dropped.statusCode, 200, 'dropped once released');
  t.notOk(fs.existsSync(path.join(dir.path, 'pg_replslot', 's1')), 'file removed');
  t.equal((await app.inject({ method: 'DELETE', url: '/api/v1/slots/s1', headers: auth })).statusCode, 404);
  const after = parseMetrics((await app.inject('/metrics')).body);
  t.equal(value(after, 'pgws_replication_slot_active', labels), undefined, 'the series went with the slot');
});
