// Malformed and truncated input at every phase gets ErrorResponse 08P01 (and a close
// where the stream can no longer be trusted), never a crash; a standby streaming at
// the same time keeps receiving contiguous WAL throughout.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { query, startupMessage } from '../../src/protocol/client.ts';
import { startWalsender } from '../helpers/server.ts';
import { errorOf, types, WireClient } from '../helpers/wire.ts';

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgws-bad-'));
t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
const ws = await startWalsender(['--data-dir', dataDir, '--demo-wal-segment-size', '1MB', '--wal-keep-size', '256MB', '--demo-rate', '1MB'], { t });

// A well-behaved standby streaming for the whole test.
const good = await WireClient.replication(ws.port);
good.query('START_REPLICATION 0/100000 TIMELINE 1');
await good.next();
let goodPos = 0x100000n;
let goodBroken = '';
const goodLoop = (async () => {
  for (;;) {
    const m = await good.next(30_000).catch(() => null);
    if (!m) return;
    if (m.type !== 'd') { goodBroken = `unexpected ${m.type}`; return; }
    if (m.body[0] !== 0x77) continue;
    if (m.body.readBigUInt64BE(1) !== goodPos) { goodBroken = 'gap'; return; }
    goodPos += BigInt(m.body.length - 25);
  }
})();

const frame = (type: string, body: Buffer): Buffer => {
  const b = Buffer.alloc(5 + body.length);
  b.write(type, 0, 'latin1');
  b.writeInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
};
const int32 = (n: number): Buffer => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b; };

async function expectError(t: Test, c: WireClient, code: string, message: RegExp, close: boolean): Promise<void> {
  const m = await c.next();
  t.equal(m?.type, 'E', 'an ErrorResponse');
  const e = errorOf(m!);
  t.equal(e.code, code);
  t.match(e.message, message);
  if (close) {
    await c.closedByServer();
    t.pass('connection closed');
  }
}

t.test('startup phase', async (t) => {
  for (const [name, bytes, re] of [
    ['length below 8', int32(3), /invalid length of startup packet/],
    ['length above 10000', Buffer.concat([int32(20_000), int32(196608)]), /invalid length of startup packet/],
    ['no terminator', Buffer.concat([int32(8 + 5), int32(196608), Buffer.from('user\0')]), /expected terminator as last byte/],
    ['unknown protocol', Buffer.concat([int32(9), int32(0x00070000), Buffer.from([0])]), /unsupported frontend protocol 7\.0/],
  ] as const) {
    const c = await WireClient.connect(ws.port);
    c.write(bytes as Buffer);
    const expectCode = name === 'unknown protocol' ? '0A000' : '08P01';
    await t.test(name, (t) => expectError(t, c, expectCode, re as RegExp, true));
  }
});

t.test('command phase', async (t) => {
  let c = await WireClient.replication(ws.port);
  c.write(frame('Q', Buffer.from('IDENTIFY_SYSTEM'))); // no NUL terminator
  await expectError(t, c, '08P01', /invalid string in message/, false);
  t.equal((await c.next())?.type, 'Z', 'ERROR: the session goes on');
  c.write(query('IDENTIFY_SYSTEM'));
  t.equal(types(await c.until('Z')), 'TDCZ');
  c.write(frame('P', Buffer.from('\0SELECT 1\0\0\0')));
  await expectError(t, c, '08P01', /extended query protocol not supported in a replication connection/, false);
  c.write(frame('S', Buffer.alloc(0)));
  t.equal((await c.next())?.type, 'Z', 'Sync ends the extended-protocol error');
  c.write(frame('?', Buffer.alloc(0)));
  await expectError(t, c, '08P01', /invalid frontend message type 63/, true);

  c = await WireClient.replication(ws.port);
  c.write(Buffer.concat([Buffer.from('Q'), int32(0x7fffffff)]));
  await expectError(t, c, '08P01', /invalid message length/, true);

  c = await WireClient.replication(ws.port);
  c.write(Buffer.concat([Buffer.from('Q'), int32(2)]));
  await expectError(t, c, '08P01', /invalid message length/, true);
});

t.test('streaming phase', async (t) => {
  const start = async (): Promise<WireClient> => {
    const c = await WireClient.replication(ws.port);
    c.query('START_REPLICATION 0/100000 TIMELINE 1');
    t.equal((await c.next())?.type, 'W');
    return c;
  };
  const skipToError = async (c: WireClient): Promise<void> => {
    for (;;) {
      const m = await c.next();
      if (!m || m.type === 'E') {
        t.ok(m, 'an ErrorResponse');
        const e = errorOf(m!);
        t.equal(e.code, '08P01', e.message);
        await c.closedByServer();
        t.pass('closed');
        return;
      }
    }
  };
  let c = await start();
  c.write(frame('d', Buffer.from('r\0\0\0'))); // truncated standby status update
  await skipToError(c);
  c = await start();
  c.write(frame('d', Buffer.from('zzzz'))); // unknown standby message
  await skipToError(c);
  c = await start();
  c.write(query('IDENTIFY_SYSTEM')); // a Query inside COPY
  await skipToError(c);
});

t.test('the good standby was never disturbed', async (t) => {
  const before = goodPos;
  await new Promise((r) => setTimeout(r, 600));
  t.equal(goodBroken, '', 'no gap, no unexpected message');
  t.ok(goodPos > before, 'still receiving WAL');
  t.notOk(ws.proc.hasExited, 'server still running');
  good.end();
  await goodLoop;
});
