// The seed's signals and the sender's timers, on the real process: SIGTERM drains
// (every streaming standby receives all WAL up to the final flush position, then
// "COPY 0" and close; idle sessions get 57P01; exit 0), SIGINT closes at once,
// SIGHUP reloads wal_sender_timeout from the config file without dropping a
// standby; keepalive at half of wal_sender_timeout and a silent close at the timeout;
// bad settings exit 2 with a one-line error.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { parseServerCopyData } from '../../src/protocol/client.ts';
import { makeTempDir, run } from '../helpers/proc.ts';
import { NODE, REPO_ROOT, startWalsender } from '../helpers/server.ts';
import { errorOf, rowOf, tagOf, WireClient } from '../helpers/wire.ts';

const demoArgs = (dir: string) => ['--data-dir', dir, '--demo-wal-segment-size', '1MB', '--wal-keep-size', '256MB', '--demo-rate', '2MB'];

t.test('SIGTERM drains: all WAL to the final flush position, then COPY 0, exit 0', async (t) => {
  const data = await makeTempDir('pgws-drain-');
  t.teardown(() => data.remove());
  const ws = await startWalsender(demoArgs(data.path), { t });
  const idle = await WireClient.replication(ws.port);
  const c = await WireClient.replication(ws.port);
  c.query('START_REPLICATION 0/100000 TIMELINE 1');
  t.equal((await c.next())?.type, 'W');
  let pos = 0x100000n;
  let received = Buffer.alloc(0);
  const chunks: Buffer[] = [];
  await new Promise((r) => setTimeout(r, 500));
  const exit = ws.stop('SIGTERM');
  let sawPing = false;
  let end: string | null = null;
  for (;;) {
    const m = await c.next(15_000);
    if (!m) break;
    if (m.type === 'C') { end = tagOf(m); continue; }
    t.equal(m.type, 'd', 'only CopyData before the end');
    const msg = parseServerCopyData(m.body);
    if (msg.kind === 'w') {
      t.equal(msg.dataStart, pos, 'contiguous');
      pos += BigInt(msg.data.length);
      chunks.push(msg.data);
    } else if (msg.replyRequested) {
      sawPing = true;
      const r = Buffer.alloc(34);
      r.write('r', 0);
      r.writeBigUInt64BE(pos, 1);
      r.writeBigUInt64BE(pos, 9);
      c.write(Buffer.concat([Buffer.from([0x64, 0, 0, 0, 38]), r]));
    }
  }
  received = Buffer.concat(chunks);
  t.ok(sawPing, 'the sender asked for confirmation before finishing');
  t.equal(end, 'COPY 0', 'CommandComplete "COPY 0", then close (no CopyDone, no ReadyForQuery)');
  t.equal((await exit).code, 0, 'exit code 0');
  const m = (await idle.next())!;
  t.same(errorOf(m), { severity: 'FATAL', code: '57P01', message: 'terminating connection due to administrator command', detail: undefined },
    'a session that is not streaming is terminated');

  // Everything generated before the source stopped was delivered.
  const files = fs.readdirSync(data.path).filter((n) => /^[0-9A-F]{24}(\.partial)?$/.test(n)).sort();
  const onDisk = Buffer.concat(files.map((f) => fs.readFileSync(path.join(data.path, f))));
  t.ok(received.length > 0 && onDisk.subarray(0, received.length).equals(received), 'received bytes equal the store');
  const tail = onDisk.subarray(received.length);
  t.ok(tail.every((b) => b === 0), `nothing durable left unsent (${received.length} bytes delivered)`);
});

t.test('SIGINT closes at once', async (t) => {
  const data = await makeTempDir('pgws-int-');
  t.teardown(() => data.remove());
  const ws = await startWalsender(demoArgs(data.path), { t });
  const c = await WireClient.replication(ws.port);
  c.query('START_REPLICATION 0/100000 TIMELINE 1');
  await c.next();
  const started = Date.now();
  t.equal((await ws.stop('SIGINT')).code, 0);
  t.ok(Date.now() - started < 5000, 'exits promptly');
  await c.closedByServer();
});

t.test('SIGHUP reloads wal_sender_timeout from the config file, keeping the standby', async (t) => {
  const data = await makeTempDir('pgws-hup-');
  t.teardown(() => data.remove());
  const conf = path.join(data.path, 'pgws.yaml');
  fs.writeFileSync(conf, 'wal_sender_timeout: 60s\n');
  const ws = await startWalsender([...demoArgs(path.join(data.path, 'wal')), '--config', conf], { t });
  const c = await WireClient.replication(ws.port);
  const s = await WireClient.replication(ws.port);
  s.query('START_REPLICATION 0/100000 TIMELINE 1');
  await s.next();
  fs.writeFileSync(conf, 'wal_sender_timeout: 42s\n');
  ws.proc.child.kill('SIGHUP');
  await ws.proc.waitFor(/configuration reloaded/, 5000);
  c.query('SHOW wal_sender_timeout');
  const ms = await c.until('Z');
  t.equal(rowOf(ms[1]!)[0], '42s', 'new value in effect');
  t.notOk(s.closed, 'the streaming standby is still connected');
  const more = await s.next();
  t.equal(more?.type, 'd', 'and still receiving');
  c.end();
  s.end();
});

t.test('keepalive at half of wal_sender_timeout, silent close at the timeout', async (t) => {
  const data = await makeTempDir('pgws-timeout-');
  t.teardown(() => data.remove());
  const ws = await startWalsender([...demoArgs(data.path), '--demo-rate', '0', '--wal-sender-timeout', '2s'], { t });
  const c = await WireClient.replication(ws.port);
  c.query('SHOW wal_sender_timeout');
  await c.until('Z');
  c.query('IDENTIFY_SYSTEM');
  const flush = rowOf((await c.until('Z'))[1]!)[2]!;
  c.query(`START_REPLICATION ${flush} TIMELINE 1`);
  const started = Date.now();
  t.equal((await c.next())?.type, 'W');
  const k = (await c.next(5000))!;
  const ka = parseServerCopyData(k.body);
  t.equal(ka.kind, 'k');
  t.equal(k.body.length, 18, 'keepalive payload is exactly 18 bytes');
  t.ok(ka.kind === 'k' && ka.replyRequested, 'asks for a reply');
  const at = Date.now() - started;
  t.ok(at >= 900 && at < 1900, `keepalive after ~1 s (${at} ms)`);
  t.equal(await c.next(5000), null, 'then the connection is closed with no message');
  const closedAt = Date.now() - started;
  t.ok(closedAt >= 1900 && closedAt < 3500, `closed after ~2 s (${closedAt} ms)`);
});

t.test('bad settings: one-line error naming the setting, exit 2', async (t) => {
  const bad = await run(NODE, [path.join(REPO_ROOT, 'src/main.ts'), '--max-wal-senders', 'abc']);
  t.equal(bad.code, 2);
  t.equal(bad.stderr.trim().split('\n').length, 1, 'one line');
  t.match(bad.stderr, /max_wal_senders.*abc/);
  const env = await run(NODE, [path.join(REPO_ROOT, 'src/main.ts')], { env: { ...process.env, PGWS_WAL_SENDER_TIMEOUT: 'soon' } });
  t.equal(env.code, 2);
  t.match(env.stderr, /wal_sender_timeout/);
  const help = await run(NODE, [path.join(REPO_ROOT, 'src/main.ts'), '--help']);
  t.equal(help.code, 0);
  for (const flag of ['--source', '--archive-dir', '--data-dir', '--demo-rate', '--listen', '--admin-listen', '--max-wal-senders',
    '--wal-sender-timeout', '--workers', '--config', 'PGWS_']) t.match(help.stdout, flag);
});
