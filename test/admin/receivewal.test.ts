// Acceptance for the admin API with 8 real pg_receivewal clients on the real process:
// /api/v1/senders and /metrics show each one with the positions it received (checked
// against the bytes in its directory); DELETE ends exactly that one with
// "terminating connection due to administrator command" (57P01) while the others
// continue, and its series disappear; reloads pause and resume the demo source
// without dropping anyone.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { receiveWal } from '../helpers/pg.ts';
import { makeTempDir, waitUntil, type LoggedProcess } from '../helpers/proc.ts';
import { lsnToNumber, parseMetrics, standbyValue, startWithAdmin, TOKEN, type AdminClient } from './helpers.ts';

const MB = 1 << 20;
const CLIENTS = 8;

type Row = { id: number; application_name: string; state: string; sent_lsn: string | null; write_lsn: string | null; client_addr: string };

const hex8 = (n: number): string => n.toString(16).toUpperCase().padStart(8, '0');
const segName = (segno: number): string => `00000001${hex8(Math.floor(segno / 4096))}${hex8(segno % 4096)}`;

function readWal(dir: string, name: string): Buffer {
  for (const n of [name, `${name}.partial`]) if (fs.existsSync(path.join(dir, n))) return fs.readFileSync(path.join(dir, n));
  throw new Error(`${name} not in ${dir}: ${fs.readdirSync(dir).join(' ')}`);
}

/** The client's directory holds exactly the store's WAL up to `pos` in the segment holding pos-1, zeros after. */
function clientHasUpTo(clientDir: string, storeDir: string, pos: number): boolean {
  const segno = Math.floor((pos - 1) / MB);
  const off = pos - segno * MB;
  const mine = readWal(clientDir, segName(segno));
  const store = readWal(storeDir, segName(segno));
  return mine.length === MB && mine.subarray(0, off).equals(store.subarray(0, off)) && mine.subarray(off).every((b) => b === 0);
}

async function senders(admin: AdminClient): Promise<Row[]> {
  return (await admin.get('/api/v1/senders')).json as Row[];
}

t.test('8 pg_receivewal clients: positions, terminate one, the others continue', async (t) => {
  const data = await makeTempDir('pgws-adm-rw-');
  t.teardown(() => data.remove());
  const conf = path.join(data.path, 'pgws.yaml');
  fs.writeFileSync(conf, 'demo_rate: 2MB\n');
  const store = path.join(data.path, 'wal');
  const { ws, admin } = await startWithAdmin(['--config', conf, '--data-dir', store, '--demo-wal-segment-size', '1MB'], t,
    { env: { PGWS_ADMIN_TOKEN: TOKEN } });
  const clients: { name: string; dir: string; proc: LoggedProcess }[] = [];
  for (let i = 1; i <= CLIENTS; i++) {
    const dir = path.join(data.path, `rw${i}`);
    fs.mkdirSync(dir);
    const proc = receiveWal({ host: '127.0.0.1', port: ws.port, dir, appName: `rw${i}` });
    t.teardown(() => proc.kill('SIGKILL'));
    clients.push({ name: `rw${i}`, dir, proc });
  }
  await waitUntil(async () => (await senders(admin)).filter((s) => s.state === 'streaming').length === CLIENTS, 20_000, '8 streaming senders');

  // Pause the source so positions stop moving, then wait for every client to confirm the end.
  fs.writeFileSync(conf, 'demo_rate: 0\n');
  const paused = await admin.request('POST', '/api/v1/reload', { token: TOKEN });
  t.equal(paused.status, 200);
  t.match(paused.json, { applied: { demo_rate: '0', log_level: 'info' }, restart_required: [] });
  let flush = '';
  await waitUntil(async () => {
    flush = ((await admin.get('/api/v1/status')).json as { flush_lsn: string }).flush_lsn;
    const rows = await senders(admin);
    return rows.length === CLIENTS && rows.every((s) => s.sent_lsn === flush && s.write_lsn === flush);
  }, 15_000, 'every client caught up and confirmed');
  // The flush position may still have moved once after the reload's tick; it is stable now.
  t.equal(((await admin.get('/api/v1/status')).json as { flush_lsn: string }).flush_lsn, flush, 'source paused');

  const rows = await senders(admin);
  const metrics = parseMetrics((await admin.get('/metrics')).text);
  const byName = new Map(rows.map((r) => [r.application_name, r]));
  t.same([...byName.keys()].sort(), clients.map((c) => c.name).sort(), 'one sender per client, by application_name');
  const pos = lsnToNumber(flush);
  for (const c of clients) {
    const r = byName.get(c.name)!;
    t.equal(r.client_addr, '127.0.0.1');
    t.ok(clientHasUpTo(c.dir, store, pos), `${c.name}: its directory holds the WAL up to ${flush}, nothing after`);
    t.equal(standbyValue(metrics, 'pgws_standby_sent_lsn_bytes', r.id), pos, `${c.name}: sent position in /metrics`);
    t.equal(standbyValue(metrics, 'pgws_standby_write_lsn_bytes', r.id), pos, `${c.name}: write position in /metrics`);
    t.equal(standbyValue(metrics, 'pgws_standby_sent_lag_bytes', r.id), 0, `${c.name}: nothing left to send`);
    t.equal(standbyValue(metrics, 'pgws_standby_replay_lsn_bytes', r.id), undefined, `${c.name}: pg_receivewal replays nothing: no series`);
    t.ok((standbyValue(metrics, 'pgws_standby_sent_bytes_total', r.id) ?? 0) > 0, `${c.name}: bytes sent`);
  }
  t.equal(metrics.samples.get('pgws_senders_active')![0]!.value, CLIENTS);
  t.equal(metrics.samples.get('pgws_flush_lsn_bytes')![0]!.value, pos);

  // Terminate exactly one.
  const victim = byName.get('rw3')!;
  const del = await admin.request('DELETE', `/api/v1/senders/${victim.id}`, { token: TOKEN });
  t.equal(del.status, 200);
  const rw3 = clients.find((c) => c.name === 'rw3')!;
  const exit = await rw3.proc.exited;
  t.not(exit.code, 0, 'pg_receivewal -n exits on the lost connection');
  t.match(rw3.proc.output(), /FATAL:\s+terminating connection due to administrator command/, 'it got FATAL 57P01\'s message');
  await ws.proc.waitFor(new RegExp(`"connId":${victim.id},[^\\n]*"msg":"disconnection"`), 5000);
  await waitUntil(async () => (await senders(admin)).length === CLIENTS - 1, 5000, 'its slot is freed');
  const after = parseMetrics((await admin.get('/metrics')).text);
  const leftovers = [...after.samples.entries()].filter(([name]) => name.startsWith('pgws_standby_'))
    .flatMap(([name, list]) => list.filter((s) => s.labels.sender_id === String(victim.id)).map(() => name));
  t.same(leftovers, [], 'no series of the ended sender remain');
  t.equal(after.samples.get('pgws_standby_sent_bytes_total')!.length, CLIENTS - 1, 'the others\' series remain');

  // Resume: every other client receives new WAL.
  fs.writeFileSync(conf, 'demo_rate: 2MB\n');
  t.equal((await admin.request('POST', '/api/v1/reload', { token: TOKEN })).status, 200);
  await waitUntil(async () => {
    const now = await senders(admin);
    return now.length === CLIENTS - 1 && now.every((s) => s.write_lsn !== null && lsnToNumber(s.write_lsn) > pos + 256 * 1024);
  }, 15_000, 'the other seven continue');
  for (const c of clients) if (c !== rw3) t.notOk(c.proc.hasExited, `${c.name} still running`);
  t.notOk((await senders(admin)).some((s) => s.id === victim.id), 'the ended sender is gone from the API');
});
