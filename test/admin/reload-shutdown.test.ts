// The admin API's reload and shutdown on the real process: a reload applies log_level
// (down to the sender threads), wal_sender_timeout and demo_rate without dropping a
// streaming pg_receivewal, reports settings that need a restart and keeps everything
// on a bad file; a drain shutdown delivers all WAL to every pg_receivewal, then exits 0.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { receiveWal } from '../helpers/pg.ts';
import { makeTempDir, waitUntil } from '../helpers/proc.ts';
import { rowOf, WireClient } from '../helpers/wire.ts';
import { lsnToNumber, startWithAdmin, TOKEN, type AdminClient } from './helpers.ts';

const MB = 1 << 20;
type Row = { id: number; application_name: string; sent_lsn: string | null };

async function show(c: WireClient, name: string): Promise<string | null> {
  c.query(`SHOW ${name}`);
  return rowOf((await c.until('Z'))[1]!)[0]!;
}

async function sentOf(admin: AdminClient, app: string): Promise<number> {
  const row = ((await admin.get('/api/v1/senders')).json as Row[]).find((r) => r.application_name === app);
  return row?.sent_lsn ? lsnToNumber(row.sent_lsn) : 0;
}

t.test('reload: log level reaches the sender threads, timeout and rate change, the standby stays', async (t) => {
  const data = await makeTempDir('pgws-adm-reload-');
  t.teardown(() => data.remove());
  const conf = path.join(data.path, 'pgws.yaml');
  const tokenFile = path.join(data.path, 'token');
  fs.writeFileSync(tokenFile, `${TOKEN}\n`);
  fs.writeFileSync(conf, 'log_level: info\nwal_sender_timeout: 60s\ndemo_rate: 1MB\n');
  const { ws, admin } = await startWithAdmin(['--config', conf, '--admin-token-file', tokenFile,
    '--data-dir', path.join(data.path, 'wal'), '--demo-wal-segment-size', '1MB'], t);
  const recv = path.join(data.path, 'recv');
  fs.mkdirSync(recv);
  const rw = receiveWal({ host: '127.0.0.1', port: ws.port, dir: recv, appName: 'keeper' });
  t.teardown(() => rw.kill('SIGKILL'));
  await waitUntil(async () => (await sentOf(admin, 'keeper')) > 0, 15_000, 'pg_receivewal streaming');
  const c = await WireClient.replication(ws.port);
  t.equal(await show(c, 'wal_sender_timeout'), '1min');
  t.notMatch(ws.proc.output(), /received replication command/, 'no debug lines at info');

  fs.writeFileSync(conf, 'log_level: debug\nwal_sender_timeout: 42s\ndemo_rate: 3MB\nmax_wal_senders: 20\n');
  const r = await admin.request('POST', '/api/v1/reload', { token: TOKEN });
  t.equal(r.status, 200);
  t.match(r.json, { applied: { log_level: 'debug', wal_sender_timeout: '42s', demo_rate: '3MB' } }, 'the reloadable settings now in effect');
  t.same((r.json as { restart_required: string[] }).restart_required, ['max_wal_senders'], 'changed, not applied');
  await ws.proc.waitFor(/"setting":"max_wal_senders"[^\n]*cannot be changed without restarting the server/, 5000);
  t.equal(await show(c, 'wal_sender_timeout'), '42s', 'new wal_sender_timeout in effect');
  // Sender threads pick the level up from the control block within half a second.
  await waitUntil(async () => {
    await show(c, 'server_version');
    return /"thread":\d+[^\n]*"command":"SHOW server_version"[^\n]*"msg":"received replication command"/.test(ws.proc.output());
  }, 5000, 'a debug line from a sender thread');
  const before = await sentOf(admin, 'keeper');
  await new Promise((r) => setTimeout(r, 2000));
  const delta = (await sentOf(admin, 'keeper')) - before;
  t.ok(delta > 4 * MB, `demo WAL flows at about 3MB/s, not 1MB/s (${(delta / MB).toFixed(1)}MB in 2 s)`);
  t.notOk(rw.hasExited, 'the standby was not dropped');

  fs.writeFileSync(conf, 'log_level: loud\n');
  const bad = await admin.request('POST', '/api/v1/reload', { token: TOKEN });
  t.equal(bad.status, 422);
  t.match(bad.json, { statusCode: 422, message: /current settings kept: invalid value for setting "log_level"/ });
  t.equal(await show(c, 'wal_sender_timeout'), '42s', 'settings unchanged');
  c.end();
});

t.test('drain shutdown through the API: every pg_receivewal gets all WAL, exit 0', async (t) => {
  const data = await makeTempDir('pgws-adm-drain-');
  t.teardown(() => data.remove());
  const store = path.join(data.path, 'wal');
  const { ws, admin } = await startWithAdmin(['--data-dir', store, '--demo-wal-segment-size', '1MB', '--demo-rate', '4MB',
    '--admin-token', TOKEN], t);
  const dirs = ['d1', 'd2'].map((n) => path.join(data.path, n));
  for (const [i, dir] of dirs.entries()) {
    fs.mkdirSync(dir);
    const rw = receiveWal({ host: '127.0.0.1', port: ws.port, dir, appName: `drain${i + 1}` });
    t.teardown(() => rw.kill('SIGKILL'));
  }
  await waitUntil(async () => (await sentOf(admin, 'drain1')) > 0 && (await sentOf(admin, 'drain2')) > 0, 15_000, 'both streaming');
  // Let both stream across two more segment boundaries first (about a second at 4MB/s;
  // longer on a loaded machine), so the comparison below spans several segments.
  const from = Math.min(await sentOf(admin, 'drain1'), await sentOf(admin, 'drain2'));
  const target = (Math.floor(from / (1 << 20)) + 2) * (1 << 20);
  await waitUntil(async () => Math.min(await sentOf(admin, 'drain1'), await sentOf(admin, 'drain2')) >= target, 20_000,
    'both streaming across two segment boundaries');
  const res = await admin.request('POST', '/api/v1/shutdown', { token: TOKEN, body: { mode: 'drain' } });
  t.equal(res.status, 202);
  t.same(res.json, { mode: 'drain' });
  const exit = await ws.proc.exited;
  t.equal(exit.code, 0, 'exit 0');
  t.match(ws.proc.output(), /"by":"admin API","mode":"drain"[^\n]*"msg":"shutdown requested"/);

  const walFiles = fs.readdirSync(store).filter((n) => /^[0-9A-F]{24}(\.partial)?$/.test(n)).sort();
  for (const dir of dirs) {
    const mine = fs.readdirSync(dir).filter((n) => /^[0-9A-F]{24}(\.partial)?$/.test(n)).sort();
    const first = mine[0]!.slice(0, 24);
    let compared = 0;
    for (const f of walFiles.filter((n) => n.slice(0, 24) >= first)) {
      const name = f.slice(0, 24);
      const storeBytes = fs.readFileSync(path.join(store, f));
      const got = mine.find((n) => n.slice(0, 24) === name);
      t.ok(got, `${path.basename(dir)} has ${name}`);
      if (!got) continue;
      const bytes = fs.readFileSync(path.join(dir, got));
      t.ok(bytes.subarray(0, storeBytes.length).equals(storeBytes) && bytes.subarray(storeBytes.length).every((b) => b === 0),
        `${path.basename(dir)}: ${name} holds exactly the store's WAL`);
      compared++;
    }
    t.ok(compared >= 2, `${path.basename(dir)}: ${compared} segments compared`);
  }
});
