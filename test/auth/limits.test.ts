// Limits on what a client controls, and isolation: authentication_timeout, the
// replication command length, the message rate, and standbys that stop reading.
// Each breach is a clear FATAL and a close; a stuck standby holds bounded memory, is
// dropped after wal_sender_timeout, and a pg_receivewal streaming meanwhile finishes
// byte-identical.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { SETTINGS } from '../../src/config.ts';
import { copyData } from '../../src/protocol/backend.ts';
import { query, standbyStatusUpdate, startupMessage } from '../../src/protocol/client.ts';
import { receiveWal, waitForSegments } from '../helpers/pg.ts';
import { makeTempDir, sha256File, sleep } from '../helpers/proc.ts';
import { startWalsender } from '../helpers/server.ts';
import { errorOf, rowOf, WireClient } from '../helpers/wire.ts';

const MB = 1 << 20;
const tmp = await makeTempDir('pgws-limits-');
t.teardown(() => tmp.remove());
const dataDir = path.join(tmp.path, 'data');
// Keep the demo WAL around long enough to compare it (where the store has retention).
const keep = SETTINGS.some((s) => s.name === 'wal_keep_size') ? ['--wal-keep-size', '512MB'] : [];
const ws = await startWalsender(['--data-dir', dataDir, '--demo-wal-segment-size', '1MB', '--demo-rate', '8MB',
  '--authentication-timeout', '2s', '--wal-sender-timeout', '3s', '--max-wal-senders', '20', ...keep], { t });

/** A replication connection that has entered COPY at the start of the current segment. */
async function streaming(): Promise<WireClient> {
  const c = await WireClient.replication(ws.port);
  c.query('IDENTIFY_SYSTEM');
  const row = rowOf((await c.until('Z')).find((m) => m.type === 'D')!);
  const [hi, lo] = row[2]!.split('/').map((x) => parseInt(x, 16));
  const seg = Math.floor((hi! * 2 ** 32 + lo!) / MB) * MB;
  c.query(`START_REPLICATION ${Math.floor(seg / 2 ** 32).toString(16)}/${(seg % 2 ** 32).toString(16)} TIMELINE 1`);
  const w = await c.next();
  if (w?.type !== 'W') throw new Error(`START_REPLICATION: got ${w?.type} ${w ? JSON.stringify(errorOf(w)) : ''}`);
  return c;
}

const frame = (type: string, body: Buffer): Buffer => {
  const b = Buffer.alloc(5 + body.length);
  b.write(type, 0, 'latin1');
  b.writeInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
};

/** Skips XLogData and the like; the first ErrorResponse, then the close. */
async function fatalOf(c: WireClient, timeoutMs = 15_000): Promise<{ code: string; message: string; detail?: string }> {
  for (;;) {
    const m = await c.next(timeoutMs);
    if (!m) throw new Error('closed without an ErrorResponse');
    if (m.type === 'E') {
      await c.closedByServer(5_000);
      const e = errorOf(m);
      return { code: e.code, message: e.message, detail: e.detail };
    }
  }
}

/**
 * Whether the server still has this client's connection established, from
 * /proc/net/tcp: a paused client socket never notices the server's close itself.
 */
function serverHolds(clientPort: number): boolean {
  const hex = (n: number): string => n.toString(16).toUpperCase().padStart(4, '0');
  return fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').some((line) => {
    const f = line.trim().split(/\s+/);
    return f[1]?.endsWith(`:${hex(ws.port)}`) && f[2]?.endsWith(`:${hex(clientPort)}`) && f[3] === '01';
  });
}

const rssKiB = (): number => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${ws.proc.child.pid}/status`, 'utf8'))![1]);

t.test('authentication_timeout: silent or slow clients are told and closed', async (t) => {
  let c = await WireClient.connect(ws.port);
  const began = Date.now();
  t.same(await fatalOf(c), { code: '57014', message: 'canceling authentication due to timeout', detail: undefined });
  const took = Date.now() - began;
  t.ok(took >= 1900 && took < 6000, `closed after ${took} ms (timeout 2 s)`);
  // Half a startup packet, then silence: the rest arriving late is never processed.
  c = await WireClient.connect(ws.port);
  const startup = startupMessage([['user', 'u'], ['replication', 'true']]);
  c.write(startup.subarray(0, 10));
  t.equal((await fatalOf(c)).code, '57014');
});

t.test('a replication command over 64 KiB is refused before it is buffered', async (t) => {
  let c = await WireClient.replication(ws.port);
  c.write(Buffer.concat([Buffer.from('Q'), Buffer.from([0, 1, 0, 1])])); // announces 65537 bytes
  t.same(await fatalOf(c), { code: '08P01', message: 'invalid message length',
    detail: 'The client announced 65537 bytes for a replication command; the limit is 65536 bytes.' });
  c = await WireClient.replication(ws.port);
  c.query(`IDENTIFY_SYSTEM ${'x'.repeat(60_000)}`);
  const m = await c.next();
  t.equal(m?.type, 'E', 'a long but allowed command is parsed (and rejected as a syntax error)');
  t.equal(errorOf(m!).code, '42601');
  t.equal((await c.next())?.type, 'Z', 'the session goes on');
  c.end();
});

t.test('message rate: a flood is cut off with 53400', async (t) => {
  // Command mode: 40 000 Sync messages, each of which would cost a ReadyForQuery.
  let c = await WireClient.replication(ws.port);
  c.write(Buffer.concat(Array.from({ length: 40_000 }, () => frame('S', Buffer.alloc(0)))));
  const e = await fatalOf(c, 30_000);
  t.equal(e.code, '53400');
  t.equal(e.message, 'terminating connection because the client sends messages too fast');
  // Streaming: 40 000 standby replies in one go.
  c = await streaming();
  const reply = copyData(standbyStatusUpdate(0x100000n, 0x100000n, 0n, 0n, false));
  c.write(Buffer.concat(Array.from({ length: 40_000 }, () => reply)));
  t.equal((await fatalOf(c, 30_000)).code, '53400');
});

t.test('standbys that stop reading: bounded memory, dropped after wal_sender_timeout, others unaffected', async (t) => {
  const recv = await makeTempDir('pgws-limits-recv-');
  t.teardown(() => recv.remove());
  const rw = receiveWal({ host: '127.0.0.1', port: ws.port, dir: recv.path });
  t.teardown(() => rw.kill());
  const m = await rw.waitFor(/starting log streaming at (\S+)/, 15_000);
  const [hi, lo] = m[1]!.split('/').map((x) => parseInt(x, 16));
  const first = Math.floor((hi! * 2 ** 32 + lo!) / MB);
  await sleep(500);
  const baseline = rssKiB();

  // Five clients stream from the start of the store and never read. Two keep sending
  // replies (they look alive) and must still be dropped: their output stays blocked.
  const stuck: { c: WireClient; closedAt: number; port: number }[] = [];
  const startedAt = Date.now();
  for (let i = 0; i < 5; i++) {
    const c = await streaming();
    c.socket.pause(); // stop reading: the kernel buffers fill, then the server's writes block
    const s = { c, closedAt: 0, port: c.socket.localPort! };
    if (i < 2) {
      const timer = setInterval(() => c.write(copyData(standbyStatusUpdate(0x100000n, 0x100000n, 0n, 0n, true))), 300);
      c.socket.on('close', () => clearInterval(timer));
    }
    stuck.push(s);
  }
  let peak = 0;
  while (stuck.some((s) => s.closedAt === 0) && Date.now() - startedAt < 20_000) {
    peak = Math.max(peak, rssKiB());
    for (const s of stuck) if (s.closedAt === 0 && !serverHolds(s.port)) s.closedAt = Date.now();
    await sleep(100);
  }
  for (const s of stuck) {
    s.c.socket.resume(); // read what was sent, then the server's close
    await s.c.closedByServer(10_000);
  }
  for (const [i, s] of stuck.entries()) {
    t.ok(s.closedAt > 0, `stuck client ${i} was dropped`);
    const after = s.closedAt - startedAt;
    t.ok(after < 12_000, `stuck client ${i}${i < 2 ? ' (still replying)' : ''} dropped after ${after} ms (wal_sender_timeout 3 s)`);
  }
  const growthMB = (peak - baseline) / 1024;
  t.ok(growthMB < 96, `server RSS grew by ${growthMB.toFixed(1)} MB while 5 standbys did not read (bounded)`);

  const names = [first, first + 1, first + 2].map((s) => `00000001000000000000${s.toString(16).toUpperCase().padStart(4, '0')}`);
  await waitForSegments(recv.path, names, 30_000, { segmentSize: MB, proc: rw });
  for (const n of names) t.equal(await sha256File(path.join(recv.path, n)), await sha256File(path.join(dataDir, n)), `${n} byte-identical`);
  t.notOk(rw.hasExited, 'pg_receivewal kept streaming throughout');
  t.notOk(ws.proc.hasExited, 'server alive');
  t.match(ws.proc.output(), /"notReading":true[^\n]*terminating walsender process due to replication timeout/,
    'a replying but non-reading standby is dropped for blocked output');
});

t.test('a Query inside COPY is still a clean FATAL', async (t) => {
  const c = await streaming();
  c.write(query('IDENTIFY_SYSTEM'));
  t.equal((await fatalOf(c)).code, '08P01');
});
