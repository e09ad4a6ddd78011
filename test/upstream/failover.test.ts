// Acceptance: failover. The relay's connection string lists the primary and standby A
// (libpq's host list). The primary stops, A is promoted (timeline 2) and becomes the
// relay's upstream; the relay fetches 00000002.history, follows the end of timeline 1
// onto timeline 2, and standby B, which streams from the relay only, gets PostgreSQL's
// end-of-timeline sequence, reaches timeline 2 and sees rows written after the
// promotion. Also on the wire: IDENTIFY_SYSTEM and TIMELINE_HISTORY of the relay.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { startCluster, startStandby } from '../helpers/pg.ts';
import { rowOf, WireClient } from '../helpers/wire.ts';
import { FAST_RETRY, startRelay, waitQuery, waitRelayReady } from './lib.ts';

t.test('standby A is promoted and becomes the upstream; standby B follows through the relay', async (t) => {
  const primary = await startCluster({ t, name: 'fo-primary', conf: FAST_RETRY });
  const a = await startStandby({
    fromPrimary: primary, t, name: 'fo-a', primaryConninfo: primary.tcpConnString({ application_name: 'a' }),
  });
  const relay = await startRelay(t,
    `host=127.0.0.1,127.0.0.1 port=${primary.port},${a.port} user=postgres application_name=relay`);
  await waitRelayReady(relay);
  const b = await startStandby({
    fromPrimary: primary, t, name: 'fo-b',
    primaryConninfo: `host=127.0.0.1 port=${relay.port} user=postgres application_name=b`,
  });
  await primary.psql("CREATE TABLE fo (id int, note text); INSERT INTO fo VALUES (1, 'on timeline 1')");
  await waitQuery(a, 'SELECT note FROM fo WHERE id = 1', 'on timeline 1');
  await waitQuery(b, 'SELECT note FROM fo WHERE id = 1', 'on timeline 1');

  // A clean stop sends every WAL record to A and to the relay before the primary exits.
  await primary.stop('fast');
  await a.promote();
  t.equal(await a.psql('SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)'), '00000002', 'A is the new primary, on timeline 2');
  await a.psql("INSERT INTO fo VALUES (2, 'after promotion')");
  const t0 = Date.now();

  await waitQuery(b, 'SELECT note FROM fo WHERE id = 2', 'after promotion');
  t.pass('B sees a row written on A after the promotion');
  t.comment(`B caught up ${Date.now() - t0} ms after the insert`);
  t.equal(await b.psql('SELECT received_tli, sender_port FROM pg_stat_wal_receiver'), `2|${relay.port}`,
    'B streams timeline 2 from the relay');
  t.equal(await b.psql('SELECT pg_is_in_recovery()'), 't', 'B is still a standby');
  t.equal(await a.psql('SELECT application_name FROM pg_stat_replication'), 'relay', 'A serves the relay only');

  const stored = fs.readFileSync(path.join(relay.dataDir, '00000002.history'), 'utf8');
  t.equal(stored, fs.readFileSync(path.join(a.dataDir, 'pg_wal', '00000002.history'), 'utf8'),
    'the relay keeps A\'s history file, byte for byte');
  t.ok(fs.readdirSync(relay.dataDir).some((n) => n.startsWith('00000002') && !n.endsWith('.history')),
    'timeline 2 segments in the store');

  const c = await WireClient.replication(relay.port);
  c.query('IDENTIFY_SYSTEM');
  const id = await c.until('Z');
  t.equal(rowOf(id[1]!)[1], '2', 'the relay reports timeline 2');
  c.query('TIMELINE_HISTORY 2');
  const h = await c.until('Z');
  t.same(rowOf(h[1]!), ['00000002.history', stored], 'and serves its history');
  c.end();
  t.match(relay.proc.output(), /"msg":"serving the new timeline"/, 'the relay logged the switch');
});
