// The replication session on the wire, against a running pg-walsender (demo source):
// startup refusals, the session parameters, result-set shapes of every command, SQL
// refused with the session kept, and START_REPLICATION's error cases in PostgreSQL's
// order. Byte-level shapes come from protocol.md's observations of PostgreSQL 15.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { parseParameterStatus, parseRowDescription, startupMessage, sslRequest, gssEncRequest } from '../../src/protocol/client.ts';
import { formatLsn, parseLsn } from '../../src/protocol/lsn.ts';
import { startWalsender } from '../helpers/server.ts';
import { errorOf, rowOf, tagOf, types, WireClient } from '../helpers/wire.ts';

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgws-cmd-'));
t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
const ws = await startWalsender(['--data-dir', dataDir, '--demo-wal-segment-size', '1MB', '--wal-keep-size', '256MB', '--demo-rate', '256kB',
  '--max-wal-senders', '3'], { t });

t.test('startup: SSLRequest and GSSENCRequest refused, then the PostgreSQL 15 parameter set', async (t) => {
  const c = await WireClient.connect(ws.port);
  c.write(sslRequest());
  t.equal(await c.nextByte(), 'N', 'SSLRequest answered N');
  c.write(gssEncRequest());
  t.equal(await c.nextByte(), 'N', 'GSSENCRequest answered N');
  c.write(startupMessage([['user', 'alice'], ['database', 'replication'], ['replication', 'true'], ['application_name', 'tapper']]));
  const ms = await c.until('Z');
  t.equal(types(ms), 'R' + 'S'.repeat(13) + 'KZ', 'AuthenticationOk, 13 ParameterStatus, BackendKeyData, ReadyForQuery');
  const params = new Map(ms.filter((m) => m.type === 'S').map((m) => { const p = parseParameterStatus(m.body); return [p.name, p.value]; }));
  t.match(params.get('server_version'), /^15\.\d+ \(pg-walsender /, 'server_version of the store\'s major (15)');
  t.equal(params.get('integer_datetimes'), 'on');
  t.equal(params.get('application_name'), 'tapper');
  t.equal(params.get('session_authorization'), 'alice');
  t.equal(params.get('in_hot_standby'), 'off');
  t.equal(ms.at(-1)!.body.toString(), 'I', 'idle');
  c.end();
});

for (const [name, params, code, re] of [
  ['plain connection', [['user', 'u'], ['database', 'db']], '0A000', /only accepts physical replication/],
  ['replication=database', [['user', 'u'], ['database', 'db'], ['replication', 'database']], '0A000', /logical replication/],
  ['replication=maybe', [['user', 'u'], ['replication', 'maybe']], '22023', /invalid value for parameter "replication": "maybe"/],
  ['no user', [['replication', 'true']], '28000', /no PostgreSQL user name specified in startup packet/],
] as const) {
  t.test(`startup refused: ${name}`, async (t) => {
    const c = await WireClient.connect(ws.port);
    c.write(startupMessage(params as unknown as [string, string][]));
    const m = await c.next();
    t.equal(m?.type, 'E');
    const e = errorOf(m!);
    t.equal(e.severity, 'FATAL');
    t.equal(e.code, code);
    t.match(e.message, re);
    await c.closedByServer();
    t.pass('server closed the connection');
  });
}

t.test('IDENTIFY_SYSTEM, SHOW, READ_REPLICATION_SLOT shapes; SQL refused, session kept', async (t) => {
  const c = await WireClient.replication(ws.port);
  c.query('IDENTIFY_SYSTEM');
  let ms = await c.until('Z');
  t.equal(types(ms), 'TDCZ');
  t.same(parseRowDescription(ms[0]!.body).map((f) => [f.name, f.typeOid, f.typeLen]),
    [['systemid', 25, -1], ['timeline', 23, 4], ['xlogpos', 25, -1], ['dbname', 25, -1]]);
  const [sysid, tli, xlogpos, dbname] = rowOf(ms[1]!);
  t.match(sysid, /^\d{15,20}$/);
  t.equal(tli, '1');
  t.ok(parseLsn(xlogpos!) !== null && parseLsn(xlogpos!)! > 0x100000n, 'xlogpos is the flush position');
  t.equal(dbname, null, 'dbname is NULL for a physical connection');
  t.equal(tagOf(ms[2]!), 'IDENTIFY_SYSTEM');

  for (const [q, col, value] of [['SHOW wal_segment_size', 'wal_segment_size', '1MB'], ['SHOW data_directory_mode', 'data_directory_mode', '0700'],
    ['SHOW wal_sender_timeout', 'wal_sender_timeout', '1min'], ['SHOW max_wal_senders', 'max_wal_senders', '3']]) {
    c.query(q!);
    ms = await c.until('Z');
    t.equal(types(ms), 'TDCZ', q);
    t.equal(parseRowDescription(ms[0]!.body)[0]!.name, col);
    t.equal(rowOf(ms[1]!)[0], value, `${q} = ${value}`);
    t.equal(tagOf(ms[2]!), 'SHOW');
  }
  c.query('SHOW nosuch_guc');
  ms = await c.until('Z');
  t.equal(types(ms), 'EZ');
  t.same(errorOf(ms[0]!), { severity: 'ERROR', code: '42704', message: 'unrecognized configuration parameter "nosuch_guc"', detail: undefined });

  for (const sql of ['SELECT 1', 'identify_system', '']) {
    c.query(sql);
    ms = await c.until('Z');
    t.equal(types(ms), 'EZ', `"${sql}" gets an error and the session stays`);
    t.equal(errorOf(ms[0]!).code, '0A000');
    t.equal(errorOf(ms[0]!).message, 'cannot execute SQL commands in WAL sender for physical replication');
  }
  c.query('READ_REPLICATION_SLOT s1');
  ms = await c.until('Z');
  t.equal(types(ms), 'TDCZ');
  t.same(parseRowDescription(ms[0]!.body).map((f) => [f.name, f.typeOid]), [['slot_type', 25], ['restart_lsn', 25], ['restart_tli', 20]]);
  t.same(rowOf(ms[1]!), [null, null, null], 'a missing slot is a row of NULLs');

  c.query('START_REPLICATION SLOT s1 0/100000');
  ms = await c.until('Z');
  t.equal(types(ms), 'EZ');
  t.equal(errorOf(ms[0]!).code, '42704');
  t.equal(errorOf(ms[0]!).message, 'replication slot "s1" does not exist');

  c.query('TIMELINE_HISTORY 1');
  ms = await c.until('Z');
  t.equal(types(ms), 'TEZ', 'row description is sent before the file is opened');
  t.same(parseRowDescription(ms[0]!.body).map((f) => [f.name, f.typmod]), [['filename', 0], ['content', 0]]);
  t.same(errorOf(ms[1]!), { severity: 'ERROR', code: '58P01', message: 'could not open file "pg_wal/00000001.history": No such file or directory', detail: undefined });

  c.query('TIMELINE_HISTORY 0');
  ms = await c.until('Z');
  t.equal(errorOf(ms[0]!).code, '42601');
  c.end();
});

t.test('START_REPLICATION errors arrive after CopyBothResponse, as in PostgreSQL', async (t) => {
  const c = await WireClient.replication(ws.port);
  c.query('START_REPLICATION 7F/0 TIMELINE 1');
  let ms = await c.until('Z');
  t.equal(types(ms), 'WEZ');
  t.same([...ms[0]!.body], [0, 0, 0], 'CopyBothResponse: text format, 0 columns');
  const e = errorOf(ms[1]!);
  t.equal(e.code, 'XX000');
  t.match(e.message, /^requested starting point 7F\/0 is ahead of the WAL flush position of this server \d+\/[0-9A-F]+$/);

  // Segment 0 never existed: the demo WAL starts at the second segment, like initdb's.
  c.query('START_REPLICATION 0/0 TIMELINE 1');
  ms = await c.until('Z');
  t.equal(types(ms), 'WEZ');
  t.same(errorOf(ms[1]!), { severity: 'ERROR', code: '58P01', message: 'requested WAL segment 000000010000000000000000 has already been removed', detail: undefined });

  c.query('START_REPLICATION 0/100000 TIMELINE 7');
  ms = await c.until('Z');
  t.equal(types(ms), 'EZ', 'an unknown timeline is refused before CopyBothResponse');
  t.same(errorOf(ms[0]!), { severity: 'ERROR', code: 'XX000', message: 'requested timeline 7 is not in this server\'s history', detail: undefined });
  c.end();
});

t.test('streaming: contiguous XLogData from the start point, CopyDone ends with both tags', async (t) => {
  const c = await WireClient.replication(ws.port);
  c.query('START_REPLICATION PHYSICAL 0/100000 TIMELINE 1');
  const w = await c.next();
  t.equal(w?.type, 'W');
  let pos = 0x100000n;
  let got = 0;
  while (got < 300_000) {
    const m = (await c.next())!;
    t.equal(m.type, 'd');
    if (m.body[0] !== 0x77) continue;
    const dataStart = m.body.readBigUInt64BE(1);
    t.equal(formatLsn(dataStart), formatLsn(pos), 'contiguous');
    const len = m.body.length - 25;
    t.ok(len <= 131072, 'at most 128 KiB per message');
    pos += BigInt(len);
    got += len;
    if (got >= 300_000) break;
  }
  c.write(Buffer.from([0x63, 0, 0, 0, 4])); // CopyDone
  const rest = await c.until('Z');
  const tail = rest.filter((m) => m.type !== 'd');
  t.equal(types(tail), 'cCCZ', 'CopyDone, START_STREAMING, START_REPLICATION, ReadyForQuery');
  t.same(tail.slice(1, 3).map(tagOf), ['START_STREAMING', 'START_REPLICATION']);
  c.query('IDENTIFY_SYSTEM');
  t.equal(types(await c.until('Z')), 'TDCZ', 'session usable after streaming');
  c.end();
});

t.test('one connection more than max_wal_senders gets 53300 before authentication', async (t) => {
  const held = [await WireClient.replication(ws.port), await WireClient.replication(ws.port), await WireClient.replication(ws.port)];
  const c = await WireClient.connect(ws.port);
  c.write(startupMessage([['user', 'u'], ['replication', 'true']]));
  const m = (await c.next())!;
  t.equal(m.type, 'E', 'no AuthenticationOk first');
  t.same(errorOf(m), { severity: 'FATAL', code: '53300', message: 'number of requested standby connections exceeds max_wal_senders (currently 3)', detail: undefined });
  await c.closedByServer();
  held[0]!.query('IDENTIFY_SYSTEM');
  t.equal(types(await held[0]!.until('Z')), 'TDCZ', 'the others are unaffected');
  for (const h of held) h.end();
});
