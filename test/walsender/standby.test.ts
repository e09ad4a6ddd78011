// Acceptance with a real PostgreSQL 15 standby: a base backup of a primary whose WAL
// is archived, the primary then stopped (after pg_switch_wal, so the last segment with
// our row is archived), and the standby's primary_conninfo pointing at pg-walsender
// serving that archive. The standby's walreceiver streams from us, replays to the end,
// and a row inserted on the primary before the switch is visible through psql.

import t from 'tap';
import { startCluster, startStandby } from '../helpers/pg.ts';
import { freePort, waitUntil } from '../helpers/proc.ts';
import { startWalsender } from '../helpers/server.ts';

t.test('a standby replays WAL streamed from pg-walsender', async (t) => {
  const primary = await startCluster({ archive: true, t, name: 'sb-primary' });
  const port = await freePort();
  const standby = await startStandby({
    fromPrimary: primary, t, name: 'sb-standby', start: false,
    primaryConninfo: `host=127.0.0.1 port=${port} user=postgres application_name=s1`,
  });
  await primary.psql("CREATE TABLE relayed (id int, note text); INSERT INTO relayed VALUES (42, 'through pg-walsender')");
  await primary.switchWal();
  await primary.stop('fast');

  const relay = await startWalsender(['--source', 'archive', '--archive-dir', primary.archiveDir!], { t, port });
  await standby.start();

  await waitUntil(async () => {
    try {
      return (await standby.psql('SELECT note FROM relayed WHERE id = 42')) === 'through pg-walsender';
    } catch {
      return false;
    }
  }, 60_000, 'the row to appear on the standby');
  t.pass('row inserted on the primary before the switch is visible on the standby');
  t.equal(await standby.psql('SELECT pg_is_in_recovery()'), 't', 'still a standby');
  const receiver = await standby.psql('SELECT status, sender_port FROM pg_stat_wal_receiver');
  t.equal(receiver, `streaming|${port}`, 'the walreceiver streams from pg-walsender');
  t.match(relay.proc.output(), /"applicationName":"s1".*start streaming/, 'pg-walsender logged the standby');
});
