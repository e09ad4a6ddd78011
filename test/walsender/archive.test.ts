// Acceptance with real PostgreSQL 15: a cluster archives into a directory that
// pg-walsender serves (archive source). pg_receivewal clients starting from empty
// directories receive segments byte-identical (sha256) to the archived ones, 16 at once;
// one more than max_wal_senders is refused with 53300 while the others stay intact.

import path from 'node:path';
import t, { type Test } from 'tap';
import { receiveWal, startCluster, waitForSegments } from '../helpers/pg.ts';
import { makeTempDir, pgBin, run, sha256File } from '../helpers/proc.ts';
import { startWalsender } from '../helpers/server.ts';

const primary = await startCluster({ archive: true, t, name: 'archive-primary' });
await primary.psql('CREATE TABLE filler (id serial, pad text)');
await primary.switchWal();

const ws = await startWalsender(['--source', 'archive', '--archive-dir', primary.archiveDir!, '--max-wal-senders', '16'], { t });

/** Write WAL on the primary and archive `n` more segments; returns their names. */
async function archiveMoreSegments(n: number): Promise<string[]> {
  const names: string[] = [];
  for (let i = 0; i < n; i++) {
    await primary.psql("INSERT INTO filler (pad) SELECT repeat('x', 200) FROM generate_series(1, 500)");
    names.push((await primary.switchWal()).segment);
  }
  return names;
}

async function assertIdentical(t: Test, dir: string, names: string[]): Promise<void> {
  for (const n of names) {
    t.equal(await sha256File(path.join(dir, n)), await sha256File(path.join(primary.archiveDir!, n)), `${n} byte-identical to the archive`);
  }
}

t.test('pg_receivewal from an empty directory receives new segments byte-identical to the archive', async (t) => {
  const dir = await makeTempDir('pgws-recv-');
  t.teardown(() => dir.remove());
  const rw = receiveWal({ host: '127.0.0.1', port: ws.port, dir: dir.path });
  t.teardown(() => rw.kill());
  await rw.waitFor(/starting log streaming at/, 15_000);
  const names = await archiveMoreSegments(3);
  await waitForSegments(dir.path, names, 30_000, { segmentSize: primary.walSegSize, proc: rw });
  await assertIdentical(t, dir.path, names);
});

t.test('16 concurrent pg_receivewal, all byte-identical; the 17th gets 53300', async (t) => {
  const clients = [];
  for (let i = 0; i < 16; i++) {
    const dir = await makeTempDir(`pgws-recv${i}-`);
    t.teardown(() => dir.remove());
    const proc = receiveWal({ host: '127.0.0.1', port: ws.port, dir: dir.path, appName: `recv${i}` });
    t.teardown(() => proc.kill());
    clients.push({ dir: dir.path, proc });
  }
  for (const c of clients) await c.proc.waitFor(/starting log streaming at/, 20_000);

  const refused = await run(pgBin('psql'), ['-X', '-c', 'IDENTIFY_SYSTEM', `host=127.0.0.1 port=${ws.port} user=postgres replication=true`]);
  t.not(refused.code, 0, 'the 17th connection fails');
  t.match(refused.stderr, /FATAL: {2}number of requested standby connections exceeds max_wal_senders \(currently 16\)/);

  const names = await archiveMoreSegments(2);
  for (const c of clients) {
    await waitForSegments(c.dir, names, 30_000, { segmentSize: primary.walSegSize, proc: c.proc });
    t.notOk(c.proc.hasExited, 'client still streaming');
  }
  for (const c of clients) await assertIdentical(t, c.dir, names);
});

t.test('both send paths serve the same bytes: segment mappings (default) and read buffers (--wal-read read)', async (t) => {
  await ws.proc.waitFor(/"walRead":"mmap"/, 5_000);
  t.pass('the server under test writes WAL from segment mappings');
  const copying = await startWalsender(['--source', 'archive', '--archive-dir', primary.archiveDir!, '--wal-read', 'read'], { t });
  await copying.proc.waitFor(/"walRead":"read"/, 5_000);
  const dirs = [];
  for (const server of [ws, copying]) {
    const dir = await makeTempDir('pgws-recv-path-');
    t.teardown(() => dir.remove());
    const rw = receiveWal({ host: '127.0.0.1', port: server.port, dir: dir.path });
    t.teardown(() => rw.kill());
    await rw.waitFor(/starting log streaming at/, 15_000);
    dirs.push({ dir: dir.path, rw });
  }
  const names = await archiveMoreSegments(2);
  for (const d of dirs) {
    await waitForSegments(d.dir, names, 30_000, { segmentSize: primary.walSegSize, proc: d.rw });
    await assertIdentical(t, d.dir, names);
  }
});
