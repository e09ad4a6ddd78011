// Acceptance: cascading, primary -> pg-walsender -> pg-walsender -> standby. The second
// relay takes its upstream's identity, the standby (a base backup of the primary)
// replays rows written on the primary, the primary sees one walsender (the first
// relay), and both relays' stores hold complete segments byte-identical to the
// primary's archived ones.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { startCluster, startStandby } from '../helpers/pg.ts';
import { sha256File, waitUntil } from '../helpers/proc.ts';
import { FAST_RETRY, startRelay, waitQuery, waitRelayReady } from './lib.ts';

t.test('primary -> relay -> relay -> standby', async (t) => {
  const primary = await startCluster({ t, name: 'cascade-primary', conf: FAST_RETRY, archive: true });
  const relay1 = await startRelay(t, primary.tcpConnString({ application_name: 'relay1' }));
  await waitRelayReady(relay1);
  const relay2 = await startRelay(t, `postgresql://postgres@127.0.0.1:${relay1.port}/?application_name=relay2`);
  await waitRelayReady(relay2);
  t.match(relay2.proc.output(), /"serverVersion":"15\.0 \(pg-walsender/, 'the second relay streams from the first');

  const standby = await startStandby({
    fromPrimary: primary, t, name: 'cascade-standby',
    primaryConninfo: `host=127.0.0.1 port=${relay2.port} user=postgres application_name=leaf`,
  });
  await primary.psql("CREATE TABLE cascaded (id int, note text); INSERT INTO cascaded VALUES (1, 'two hops')");
  await waitQuery(standby, 'SELECT note FROM cascaded', 'two hops');
  t.pass('a row inserted on the primary is visible two relays down');
  t.equal(await primary.psql('SELECT application_name FROM pg_stat_replication'), 'relay1', 'the primary serves only the first relay');
  t.equal(await standby.psql('SELECT sender_port FROM pg_stat_wal_receiver'), String(relay2.port), 'the standby streams from the second relay');
  t.match(relay1.proc.output(), /"applicationName":"relay2".*"msg":"start streaming"/, 'the first relay serves the second');

  // Complete a few segments, then compare the two stores.
  await primary.generateWal(2);
  const { lsn } = await primary.switchWal();
  const complete = (dir: string) => fs.readdirSync(dir).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort();
  const target = (await primary.psql(`SELECT pg_walfile_name('${lsn}')`));
  await waitUntil(() => complete(relay2.dataDir).includes(target), 30_000, `${target} complete in the second relay`);
  const names = complete(relay2.dataDir);
  t.ok(names.length >= 3, `${names.length} complete segments relayed twice`);
  for (const n of names) {
    await primary.waitArchived(n);
    const archived = await sha256File(path.join(primary.archiveDir!, n));
    t.equal(await sha256File(path.join(relay1.dataDir, n)), archived, `${n}: first relay = primary's archive`);
    t.equal(await sha256File(path.join(relay2.dataDir, n)), archived, `${n}: second relay = primary's archive`);
  }
});
