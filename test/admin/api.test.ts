// The admin API against an in-process server, through fastify's inject: health and
// readiness, senders and the oldest sent position, terminate with FATAL 57P01, the
// token rules of mutating routes, JSON errors, the OpenAPI document covering every
// route, and the connection counters in /metrics.

import t from 'tap';
import { buildAdminApp } from '../../src/admin/app.ts';
import { startupMessage } from '../../src/protocol/client.ts';
import { makeTempDir, waitUntil } from '../helpers/proc.ts';
import { startInProcess } from '../helpers/server.ts';
import { errorOf, WireClient } from '../helpers/wire.ts';
import { inProcessDeps, lsnToNumber, parseMetrics, TOKEN } from './helpers.ts';

type Json = Record<string, unknown>;

async function setup(t: { teardown(fn: () => unknown): void }, maxWalSenders = 10) {
  const dir = await makeTempDir('pgws-admin-api-');
  t.teardown(() => dir.remove());
  // wal_keep_size: the tests stream from the first segment, which retention would remove.
  const server = await startInProcess({ dataDir: dir.path, maxWalSenders, walKeepSize: 256 << 20 }, t);
  return server;
}

t.test('health, readiness, status; readiness fails once shutting down', async (t) => {
  const server = await setup(t);
  const app = buildAdminApp(inProcessDeps(server));
  t.teardown(() => app.close());
  t.same((await app.inject('/healthz')).json(), { status: 'ok' });
  const ready = await app.inject('/readyz');
  t.equal(ready.statusCode, 200);
  t.same(ready.json(), { status: 'ready' });
  const status = (await app.inject('/api/v1/status')).json() as Json;
  t.match(status, {
    source: { kind: 'demo', state: 'running' }, system_identifier: /^\d+$/, timeline: 1, flush_lsn: /^[0-9A-F]+\/[0-9A-F]+$/,
    senders: { active: 0, max_wal_senders: 10 }, ready: true, shutting_down: false, version: /^\d+\.\d+\.\d+/,
  });
  t.ok((status.store as Json).retained_bytes as number > 0, 'store size measured');
  t.ok(status.uptime_seconds as number >= 0);

  await server.shutdown('fast');
  const notReady = await app.inject('/readyz');
  t.equal(notReady.statusCode, 503);
  t.same(notReady.json(), { statusCode: 503, error: 'Service Unavailable', message: 'shutting down' });
  t.equal((await app.inject('/healthz')).statusCode, 200, 'still alive');
});

t.test('senders, oldest sent position, terminate one with 57P01', async (t) => {
  const server = await setup(t);
  const app = buildAdminApp(inProcessDeps(server, { adminToken: TOKEN }));
  t.teardown(() => app.close());
  t.same((await app.inject('/api/v1/senders/oldest-sent-lsn')).json(), { oldest_sent_lsn: null }, 'null with no sender');

  const idle = await WireClient.replication(server.port, { application_name: 'idle1' });
  const a = await WireClient.replication(server.port, { application_name: 'streamer' });
  a.query('START_REPLICATION 0/100000 TIMELINE 1');
  t.equal((await a.next())?.type, 'W');
  await waitUntil(async () => ((await app.inject('/api/v1/senders')).json() as Json[]).some((s) => s.sent_lsn !== null), 5000, 'sent');

  const rows = (await app.inject('/api/v1/senders')).json() as Json[];
  t.equal(rows.length, 2);
  const s = rows.find((r) => r.application_name === 'streamer')!;
  const i = rows.find((r) => r.application_name === 'idle1')!;
  t.match(s, { client_addr: '127.0.0.1', state: /catchup|streaming/, sync_state: 'async', slot_name: null, write_lsn: null });
  t.match(i, { state: 'startup', sent_lsn: null, bytes_sent: 0 });
  t.ok((s.bytes_sent as number) > 0);
  const one = (await app.inject(`/api/v1/senders/${s.id}`)).json() as Json;
  const fixed = ({ id, application_name, client_addr, client_port, backend_start }: Json) => ({ id, application_name, client_addr, client_port, backend_start });
  t.same(fixed(one), fixed(s), 'one sender by id (its positions move on)');

  const oldest = (await app.inject('/api/v1/senders/oldest-sent-lsn')).json() as Json;
  t.ok(lsnToNumber(oldest.oldest_sent_lsn as string) >= 0x100000, 'the streaming sender\'s position (the idle one has none)');

  const del = await app.inject({ method: 'DELETE', url: `/api/v1/senders/${s.id}`, headers: { authorization: `Bearer ${TOKEN}` } });
  t.equal(del.statusCode, 200);
  t.same(del.json(), { id: s.id, terminated: true });
  let m = await a.next();
  while (m && m.type !== 'E') m = await a.next();
  t.same(m && errorOf(m), { severity: 'FATAL', code: '57P01', message: 'terminating connection due to administrator command', detail: undefined });
  await a.closedByServer();
  await waitUntil(async () => ((await app.inject('/api/v1/senders')).json() as Json[]).length === 1, 5000, 'slot freed');
  t.notOk(idle.closed, 'the other session is untouched');
  const gone = await app.inject({ method: 'DELETE', url: `/api/v1/senders/${s.id}`, headers: { authorization: `Bearer ${TOKEN}` } });
  t.equal(gone.statusCode, 404);
  t.match(gone.json(), { statusCode: 404, message: `no active sender with id ${s.id}` });
  t.equal((await app.inject(`/api/v1/senders/${s.id}`)).statusCode, 404);
  idle.end();
});

t.test('mutating routes: 401 without or with a wrong token, 200 with it', async (t) => {
  const server = await setup(t);
  const deps = inProcessDeps(server, { adminToken: TOKEN });
  const app = buildAdminApp(deps);
  t.teardown(() => app.close());
  const routes = [
    { method: 'POST' as const, url: '/api/v1/reload', body: undefined, ok: 200, call: 'reload' },
    { method: 'POST' as const, url: '/api/v1/shutdown', body: { mode: 'drain' }, ok: 202, call: 'shutdown drain' },
    { method: 'DELETE' as const, url: '/api/v1/senders/999', body: undefined, ok: 404, call: null },
  ];
  for (const r of routes) {
    for (const authorization of [undefined, 'Bearer wrong-token-wrong-token', `Basic ${TOKEN}`, `Bearer ${TOKEN}x`]) {
      const res = await app.inject({ method: r.method, url: r.url, payload: r.body, headers: authorization ? { authorization } : {} });
      t.equal(res.statusCode, 401, `${r.method} ${r.url} with ${authorization ?? 'no header'}`);
      t.equal(res.headers['www-authenticate'], 'Bearer realm="pg-walsender"');
      t.match(res.json(), { statusCode: 401, error: 'Unauthorized', message: /token/ });
    }
    t.same(deps.calls, [], 'nothing done without the token');
    const res = await app.inject({ method: r.method, url: r.url, payload: r.body, headers: { authorization: `Bearer ${TOKEN}` } });
    t.equal(res.statusCode, r.ok, `${r.method} ${r.url} with the token`);
    if (r.call) {
      await new Promise((resolve) => setImmediate(resolve));
      t.same(deps.calls.splice(0), [r.call]);
    }
  }
  const fast = await app.inject({ method: 'POST', url: '/api/v1/shutdown', payload: { mode: 'fast' }, headers: { authorization: `Bearer ${TOKEN}` } });
  t.same(fast.json(), { mode: 'fast' });
  const bad = await app.inject({ method: 'POST', url: '/api/v1/shutdown', payload: { mode: 'smart' }, headers: { authorization: `Bearer ${TOKEN}` } });
  t.equal(bad.statusCode, 400, 'the body is validated against its schema');
  t.match(bad.json(), { statusCode: 400, error: 'Bad Request', message: /mode/ });
  const failing = buildAdminApp(inProcessDeps(server, { adminToken: TOKEN, reload: () => { throw new Error('bad value for setting "log_level"'); } }));
  t.teardown(() => failing.close());
  const r422 = await failing.inject({ method: 'POST', url: '/api/v1/reload', headers: { authorization: `Bearer ${TOKEN}` } });
  t.equal(r422.statusCode, 422);
  t.match(r422.json(), { message: /current settings kept: bad value for setting "log_level"/ });
});

t.test('without a configured token, mutating routes are disabled whatever the request carries', async (t) => {
  const server = await setup(t);
  const deps = inProcessDeps(server);
  const app = buildAdminApp(deps);
  t.teardown(() => app.close());
  for (const [method, url, payload] of [['POST', '/api/v1/reload'], ['POST', '/api/v1/shutdown', { mode: 'fast' }], ['DELETE', '/api/v1/senders/1']] as const) {
    for (const headers of [{}, { authorization: 'Bearer ' }, { authorization: 'Bearer anything-at-all-here' }]) {
      const res = await app.inject({ method, url, payload, headers });
      t.equal(res.statusCode, 403, `${method} ${url}`);
      t.match(res.json(), { statusCode: 403, message: /disabled: no admin token is configured/ });
    }
  }
  t.same(deps.calls, []);
  t.equal((await app.inject('/api/v1/senders')).statusCode, 200, 'read-only routes stay open');
});

t.test('every route that is not a GET in /openapi.json: 401 without the token, 403 with none configured, nothing done', async (t) => {
  const server = await setup(t);
  const withToken = inProcessDeps(server, { adminToken: TOKEN, dataDir: server.storeDir });
  const noToken = inProcessDeps(server, { dataDir: server.storeDir });
  const [a, b] = [buildAdminApp(withToken), buildAdminApp(noToken)];
  t.teardown(() => Promise.all([a.close(), b.close()]));
  const doc = (await a.inject('/openapi.json')).json() as { paths: Record<string, Record<string, Json>> };
  // A slot the drop route would remove if it let the request through.
  const created = await a.inject({ method: 'POST', url: '/api/v1/slots', headers: { authorization: `Bearer ${TOKEN}` }, payload: { name: 'keepme' } });
  t.equal(created.statusCode, 201);
  const bodies: Record<string, unknown> = { '/api/v1/shutdown': { mode: 'fast' }, '/api/v1/slots': { name: 'made_without_token' } };
  let checked = 0;
  for (const [p, methods] of Object.entries(doc.paths)) {
    for (const m of Object.keys(methods).filter((x) => x !== 'get')) {
      const url = p.replace('{id}', '1').replace('{name}', 'keepme');
      const method = m.toUpperCase() as 'POST' | 'DELETE';
      for (const headers of [{}, { authorization: 'Bearer wrong-token-wrong-token' }]) {
        const r401 = await a.inject({ method, url, payload: bodies[p] as object | undefined, headers });
        t.equal(r401.statusCode, 401, `${method} ${p} with the token configured, ${headers.authorization ?? 'no header'}`);
      }
      const r403 = await b.inject({ method, url, payload: bodies[p] as object | undefined, headers: { authorization: `Bearer ${TOKEN}` } });
      t.equal(r403.statusCode, 403, `${method} ${p} with no token configured`);
      checked++;
    }
  }
  t.ok(checked >= 5, `${checked} mutating operations checked`);
  t.same([...withToken.calls, ...noToken.calls], [], 'no reload or shutdown happened');
  const slots = ((await a.inject('/api/v1/slots')).json() as Json[]).map((s) => s.slot_name);
  t.same(slots, ['keepme'], 'no slot created or dropped without the token');
});

t.test('errors are JSON; /openapi.json documents every route with its schemas', async (t) => {
  const server = await setup(t);
  const app = buildAdminApp(inProcessDeps(server, { adminToken: TOKEN }));
  t.teardown(() => app.close());
  const nf = await app.inject('/api/v2/nothing');
  t.equal(nf.statusCode, 404);
  t.match(nf.headers['content-type'], /application\/json/);
  t.same(nf.json(), { statusCode: 404, error: 'Not Found', message: 'no route GET /api/v2/nothing' });
  const badId = await app.inject('/api/v1/senders/abc');
  t.equal(badId.statusCode, 400);
  t.match(badId.json(), { statusCode: 400, message: /id/ });

  const doc = (await app.inject('/openapi.json')).json() as { openapi: string; paths: Record<string, Record<string, Json>> };
  t.equal(doc.openapi, '3.0.3');
  const ops = Object.entries(doc.paths).flatMap(([p, methods]) => Object.keys(methods).map((m) => `${m.toUpperCase()} ${p}`)).sort();
  t.same(ops, [
    'DELETE /api/v1/senders/{id}', 'GET /api/v1/senders', 'GET /api/v1/senders/oldest-sent-lsn', 'GET /api/v1/senders/{id}',
    'GET /api/v1/status', 'GET /healthz', 'GET /metrics', 'GET /openapi.json', 'GET /readyz', 'POST /api/v1/reload', 'POST /api/v1/shutdown',
    'GET /api/v1/slots', 'POST /api/v1/slots', 'DELETE /api/v1/slots/{name}',
  ].sort(), 'every route, nothing else');
  for (const [p, methods] of Object.entries(doc.paths)) {
    for (const [m, op] of Object.entries(methods)) {
      const responses = op.responses as Record<string, { content: Record<string, { schema: Json }> }>;
      t.ok(Object.keys(responses).length > 0 && Object.values(responses).every((r) => Object.values(r.content)[0]?.schema),
        `${m} ${p}: every response has a schema`);
      const mutating = m !== 'get';
      t.equal(op.security !== undefined, mutating, `${m} ${p}: bearer token ${mutating ? 'required' : 'not required'}`);
      if (mutating) t.ok(responses['401'] && responses['403'], `${m} ${p}: documents its 401 and 403 answers`);
    }
  }
  const senderSchema = (doc.paths['/api/v1/senders']!.get!.responses as Json)['200'] as { content: { 'application/json': { schema: { items: Json } } } };
  const props = senderSchema.content['application/json'].schema.items.properties as Record<string, Json>;
  for (const col of ['id', 'application_name', 'client_addr', 'client_port', 'backend_start', 'state', 'sent_lsn', 'write_lsn', 'flush_lsn',
    'replay_lsn', 'write_lag', 'flush_lag', 'replay_lag', 'reply_time', 'sync_state', 'slot_name', 'bytes_sent']) {
    t.ok(props[col], `sender schema has ${col}`);
  }
  t.same(props.sent_lsn!.nullable, true, 'nullable in OpenAPI 3.0 form');
  t.same(doc.paths['/api/v1/senders/{id}']!.delete!.parameters, [{ name: 'id', in: 'path', required: true, schema: { type: 'integer', minimum: 1, description: 'Sender id (connection id)' } }]);
});

t.test('/metrics: connection counters by reason, sent bytes, per-standby series', async (t) => {
  const server = await setup(t, 2);
  const app = buildAdminApp(inProcessDeps(server));
  t.teardown(() => app.close());
  const a = await WireClient.replication(server.port, { application_name: 'a' });
  const b = await WireClient.replication(server.port, { application_name: 'b' });
  const full = await WireClient.connect(server.port);
  full.write(startupMessage([['user', 'postgres'], ['replication', 'true']]));
  t.match(errorOf((await full.next())!), { code: '53300' });
  const sql = await WireClient.connect(server.port);
  sql.write(startupMessage([['user', 'postgres'], ['database', 'postgres']]));
  t.match(errorOf((await sql.next())!), { code: '0A000' });
  a.query('START_REPLICATION 0/100000 TIMELINE 1');
  t.equal((await a.next())?.type, 'W');
  t.equal((await a.next())?.type, 'd', 'WAL received: the sender has recorded what it sent');
  const res = await app.inject('/metrics');
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  const m = parseMetrics(res.body);
  const refused = (reason: string) => m.samples.get('pgws_connections_refused_total')!.find((s) => s.labels.reason === reason)!.value;
  t.equal(m.samples.get('pgws_connections_accepted_total')![0]!.value, 4);
  t.equal(refused('too_many_senders'), 1);
  t.equal(refused('not_physical_replication'), 1);
  t.equal(refused('authentication_failed'), 0);
  t.equal(m.samples.get('pgws_authentication_failures_total')![0]!.value, 0);
  t.equal(m.samples.get('pgws_senders_active')![0]!.value, 2);
  t.equal(m.samples.get('pgws_max_wal_senders')![0]!.value, 2);
  t.ok(m.samples.get('pgws_sent_bytes_total')![0]!.value > 0);
  const bytes = m.samples.get('pgws_standby_sent_bytes_total')!;
  t.same(bytes.map((s) => s.labels.application_name).sort(), ['a', 'b']);
  t.same(Object.keys(bytes[0]!.labels).sort(), ['application_name', 'client_addr', 'sender_id', 'slot_name', 'state']);
  t.same(m.samples.get('pgws_standby_sent_lsn_bytes')!.map((s) => s.labels.application_name), ['a'], 'no sent position for the idle session');
  t.ok(m.types.has('process_cpu_user_seconds_total') && m.types.has('nodejs_eventloop_lag_seconds'), 'default process metrics');
  a.end();
  b.end();
});
