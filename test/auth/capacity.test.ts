// Connections that never send a startup packet cannot lock standbys out: the server
// runs at most 2 * max_wal_senders + 64 connection tasks (PostgreSQL keeps about twice
// its backends as headroom), and a connection past that is refused at once with
// PostgreSQL's FATAL 53300 "sorry, too many clients already", never queued without a
// timeout. A standby streaming meanwhile is not disturbed, and once room returns
// clients get in again.

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import t from 'tap';
import { receiveWal } from '../helpers/pg.ts';
import { startupMessage } from '../../src/protocol/client.ts';
import { makeTempDir, pgBin, run, sleep, waitUntil } from '../helpers/proc.ts';
import { startWalsender } from '../helpers/server.ts';
import { errorOf, WireClient } from '../helpers/wire.ts';

const MAX_WAL_SENDERS = 2;
const CAPACITY = 2 * MAX_WAL_SENDERS + 64; // one worker thread: no rounding

const tmp = await makeTempDir('pgws-capacity-');
t.teardown(() => tmp.remove());
const ws = await startWalsender(['--data-dir', path.join(tmp.path, 'data'), '--demo-wal-segment-size', '1MB',
  '--demo-rate', '2MB', '--max-wal-senders', String(MAX_WAL_SENDERS), '--workers', '1'], { t });

const psql = (): Promise<{ code: number | null; out: string }> =>
  run(pgBin('psql'), [`host=127.0.0.1 port=${ws.port} user=postgres replication=true connect_timeout=10`, '-Atc', 'IDENTIFY_SYSTEM'],
    { timeoutMs: 20_000 }).then((r) => ({ code: r.code, out: r.stdout + r.stderr }));

t.test('silent connections past the task capacity are refused at once; a streaming standby is undisturbed', async (t) => {
  const recv = path.join(tmp.path, 'recv');
  fs.mkdirSync(recv);
  const rw = receiveWal({ host: '127.0.0.1', port: ws.port, dir: recv, appName: 'keeper' });
  t.teardown(() => rw.kill('SIGKILL'));
  await ws.proc.waitFor(/"applicationName":"keeper"[^\n]*"msg":"start streaming"/, 15_000);
  // pg_receivewal pads its .partial to full size, so progress is counted in completed segments.
  const completed = (): number => fs.readdirSync(recv).filter((f) => /^[0-9A-F]{24}$/.test(f)).length;
  const completedBefore = completed();

  // Silent sockets: connected, nothing sent. One task is the streaming standby. Those
  // past the capacity are closed by the server within a second (no startup packet came).
  const silent: net.Socket[] = [];
  let closedByServer = 0;
  t.teardown(() => { for (const s of silent) s.destroy(); });
  const extra = 20;
  for (let i = 0; i < CAPACITY - 1 + extra; i++) {
    const s = net.connect(ws.port, '127.0.0.1');
    s.on('error', () => {});
    s.on('end', () => { closedByServer++; });
    await new Promise<void>((resolve) => s.once('connect', () => resolve()));
    silent.push(s);
  }
  await waitUntil(() => closedByServer >= extra, 10_000, `${extra} connections past the capacity closed`);
  await sleep(1500); // a task-holding connection would be closed only after authentication_timeout (60 s)
  t.equal(closedByServer, extra, `exactly the connections past ${CAPACITY} tasks are closed`);

  // A client that sends its StartupMessage gets PostgreSQL's refusal.
  const c = await WireClient.connect(ws.port);
  c.write(startupMessage([['user', 'postgres'], ['database', 'replication'], ['replication', 'true']]));
  const m = await c.next(5000);
  t.match(m && errorOf(m), { severity: 'FATAL', code: '53300', message: 'sorry, too many clients already' }, "PostgreSQL's refusal");
  await c.closedByServer(5000); // throws if the server keeps it open

  // A real client (libpq sends SSLRequest first with sslmode=prefer) gets the refusal, not a hang.
  const r = await psql();
  t.not(r.code, 0, 'psql is refused');
  t.match(r.out, /sorry, too many clients already/, 'psql shows the reason');
  t.notOk(rw.hasExited, 'the streaming standby is still connected');

  // Room returns when silent connections go away.
  for (const s of silent.splice(0, 10)) s.destroy();
  await waitUntil(async () => (await psql()).code === 0, 10_000, 'psql let in once tasks are free', 200);
  const ok = await psql();
  t.match(ok.out, /^\d+\|1\|/, 'IDENTIFY_SYSTEM answered');
  t.match(ws.proc.output(), /"msg":"sorry, too many clients already"/, 'the refusal is logged');
  await waitUntil(() => completed() >= completedBefore + 2, 15_000, 'the standby completing segments meanwhile');
  t.notOk(rw.hasExited, 'the standby streamed throughout');
});

t.test('with TLS configured: sslmode=require is refused at once during the SSL exchange (as PostgreSQL when it cannot start a backend), sslmode=disable gets the reason', async (t) => {
  const { makeTestPki } = await import('./certs.ts');
  const pki = await makeTestPki(fs.mkdtempSync(path.join(tmp.path, 'pki-')));
  const tlsWs = await startWalsender(['--data-dir', path.join(tmp.path, 'data-tls'), '--demo-wal-segment-size', '1MB',
    '--max-wal-senders', String(MAX_WAL_SENDERS), '--workers', '1', '--ssl-cert-file', pki.serverCert, '--ssl-key-file', pki.serverKey], { t });
  const silent: net.Socket[] = [];
  t.teardown(() => { for (const s of silent) s.destroy(); });
  for (let i = 0; i < CAPACITY; i++) {
    const s = net.connect(tlsWs.port, '127.0.0.1');
    s.on('error', () => {});
    await new Promise<void>((resolve) => s.once('connect', () => resolve()));
    silent.push(s);
  }
  const psqlWith = (sslmode: string) => run(pgBin('psql'),
    [`host=127.0.0.1 port=${tlsWs.port} user=postgres replication=true connect_timeout=10 sslmode=${sslmode}`, '-Atc', 'IDENTIFY_SYSTEM'],
    { timeoutMs: 20_000 }).then((r) => ({ code: r.code, out: r.stdout + r.stderr }));
  await waitUntil(async () => (await psqlWith('disable')).code !== 0, 10_000, 'every task taken');
  const secure = await psqlWith('require');
  t.not(secure.code, 0, 'sslmode=require is refused');
  t.notMatch(secure.out, /timeout expired/, 'at once, not after connect_timeout');
  t.match(secure.out, /sorry, too many clients already|error response during SSL exchange/, `a refusal, not a hang or a TLS failure: ${secure.out.trim()}`);
  const plain = await psqlWith('disable');
  t.match(plain.out, /sorry, too many clients already/, 'without TLS the client is told why');
  for (const s of silent.splice(0, 10)) s.destroy();
  await waitUntil(async () => (await psqlWith('require')).code === 0, 10_000, 'TLS clients let in once tasks are free', 200);
});
