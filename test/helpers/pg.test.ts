// Self-test of the PostgreSQL test helpers against the real PostgreSQL 15 binaries.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { receiveWal, startCluster, startStandby, waitForSegments } from './pg.ts';
import { freePort, makeTempDir, run, sha256Dir, sha256File, spawnLogged, waitUntil } from './proc.ts';

t.test('proc helpers', async (t) => {
  const r = await run('sh', ['-c', 'cat; echo err >&2; exit 3'], { input: 'hello' });
  t.same(r, { code: 3, signal: null, stdout: 'hello', stderr: 'err\n' }, 'run captures output, no throw on exit 3');
  await t.rejects(run('sleep', ['10'], { timeoutMs: 200 }), /timed out after 200 ms/, 'run times out');

  const who = await run('id', ['-un'], { asPostgres: true });
  t.equal(who.stdout.trim(), process.getuid?.() === 0 ? 'postgres' : (await run('id', ['-un'])).stdout.trim(), 'asPostgres');

  const p = spawnLogged('sh', ['-c', 'echo ready; sleep 30']);
  await p.waitFor(/ready/, 5000);
  await p.kill();
  t.ok(p.hasExited, 'spawnLogged kill waits for exit');
  const q = spawnLogged('sh', ['-c', 'echo bye; exit 2']);
  await t.rejects(q.waitFor(/never/, 5000), /exited \(code 2/, 'waitFor rejects when the process exits');

  const port = await freePort();
  t.ok(port > 0 && port < 65536, 'freePort');
  await t.rejects(waitUntil(() => false, 100, 'nothing'), /timed out after 100 ms waiting for nothing/);
});

t.test('primary, archive, pg_receivewal, standby', async (t) => {
  const primary = await startCluster({ archive: true, t });
  t.ok(primary.isRunning(), 'primary running');
  t.equal(await primary.psql('SHOW wal_segment_size'), '1MB');
  t.match(await primary.systemIdentifier(), /^\d+$/, 'system identifier');
  const ident = await primary.psql('IDENTIFY_SYSTEM', { replication: true });
  t.match(ident, new RegExp(`^${await primary.systemIdentifier()}\\|1\\|`), 'replication connection');

  await primary.psql("CREATE TABLE t1 (id int PRIMARY KEY, v text); INSERT INTO t1 VALUES (1, 'one');");

  // archive: the archived copy equals pg_wal's
  const sw = await primary.switchWal();
  t.match(sw.segment, /^00000001[0-9A-F]{16}$/);
  const archived = await sha256File(path.join(primary.archiveDir!, sw.segment));
  const inPgWal = await sha256File(path.join(primary.dataDir, 'pg_wal', sw.segment));
  t.equal(archived, inPgWal, 'archived segment is byte-identical to pg_wal');
  t.equal(fs.statSync(path.join(primary.archiveDir!, sw.segment)).size, primary.walSegSize);

  // pg_receivewal against the primary itself
  const recvDir = await makeTempDir('recv');
  t.teardown(() => recvDir.remove());
  const recv = receiveWal({ host: '127.0.0.1', port: primary.port, dir: recvDir.path, appName: 'selftest_recv' });
  t.teardown(() => recv.kill());
  await recv.waitFor(/starting log streaming at/, 15_000);
  await waitUntil(
    async () => (await primary.psql("SELECT count(*) FROM pg_stat_replication WHERE application_name = 'selftest_recv'")) === '1',
    15_000,
    'pg_receivewal in pg_stat_replication',
  );
  await primary.psql("INSERT INTO t1 VALUES (2, 'two')");
  const sw2 = await primary.switchWal();
  await waitForSegments(recvDir.path, [sw2.segment], 20_000, { segmentSize: primary.walSegSize, proc: recv });
  const received = await sha256Dir(recvDir.path, (n) => n === sw2.segment);
  t.equal(received.get(sw2.segment), await sha256File(path.join(primary.archiveDir!, sw2.segment)), 'received segment is byte-identical to the archived one');
  await recv.kill('SIGINT');
  t.ok(recv.hasExited, 'pg_receivewal stopped');

  // standby streaming from the primary
  const standby = await startStandby({
    fromPrimary: primary,
    primaryConninfo: primary.tcpConnString({ application_name: 's1' }),
    t,
  });
  t.ok(await standby.isInRecovery(), 'standby is in recovery');
  t.equal(await standby.systemIdentifier(), await primary.systemIdentifier(), 'same system identifier');
  await primary.psql("INSERT INTO t1 VALUES (3, 'three')");
  await primary.generateWal(2);
  const lsn = await primary.currentLsn();
  await standby.waitReplayed(lsn, 30_000);
  t.equal(await standby.psql('SELECT string_agg(v, \',\' ORDER BY id) FROM t1'), 'one,two,three', 'rows visible on the standby');
  t.equal(
    await primary.psql("SELECT state FROM pg_stat_replication WHERE application_name = 's1'"),
    'streaming',
    'standby streams from the primary',
  );

  await standby.stop();
  await primary.stop();
  t.notOk(fs.existsSync(path.join(standby.dataDir, 'postmaster.pid')), 'standby stopped');
  t.notOk(fs.existsSync(path.join(primary.dataDir, 'postmaster.pid')), 'primary stopped');
  t.notOk(primary.isRunning() || standby.isRunning());

  await standby.destroy();
  await primary.destroy();
  t.notOk(fs.existsSync(primary.baseDir), 'primary temp dir removed');
  t.notOk(fs.existsSync(standby.baseDir), 'standby temp dir removed');
});
