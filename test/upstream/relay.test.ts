// Acceptance: primary -> pg-walsender -> 2 real standbys. The standbys are base
// backups of the primary whose primary_conninfo points at the relay. Rows inserted on
// the primary appear on both; the primary's pg_stat_replication lists the relay and
// not the standbys; each standby's pg_stat_wal_receiver shows the relay as its sender.
// Then the primary restarts mid-stream: the standbys keep their connections to the
// relay (same walreceiver process, no new connection) and catch up once the relay has
// reconnected, each reconnect attempt being logged.

import t from 'tap';
import { startCluster, startStandby } from '../helpers/pg.ts';
import { countLines, FAST_RETRY, startRelay, waitQuery, waitRelayReady } from './lib.ts';

t.test('primary -> relay -> two standbys; the primary restarts mid-stream', async (t) => {
  const primary = await startCluster({ t, name: 'relay-primary', conf: FAST_RETRY });
  const relay = await startRelay(t, primary.tcpConnString({ application_name: 'relay1' }), {
    extra: ['--upstream-slot', 'relay1'],
  });
  await waitRelayReady(relay);
  const standbys = [];
  for (const name of ['s1', 's2']) {
    standbys.push(await startStandby({
      fromPrimary: primary, t, name: `relay-${name}`,
      primaryConninfo: `host=127.0.0.1 port=${relay.port} user=postgres application_name=${name}`,
    }));
  }
  await primary.psql("CREATE TABLE relayed (id int PRIMARY KEY, note text); INSERT INTO relayed VALUES (1, 'before restart')");
  for (const s of standbys) await waitQuery(s, 'SELECT note FROM relayed WHERE id = 1', 'before restart');
  t.pass('a row inserted on the primary is visible on both standbys');

  const senders = await primary.psql('SELECT application_name, state FROM pg_stat_replication ORDER BY 1');
  t.equal(senders, 'relay1|streaming', 'the primary streams to the relay only');
  t.equal(await primary.psql('SELECT active FROM pg_replication_slots WHERE slot_name = \'relay1\''), 't',
    'the relay holds its replication slot');
  const receivers: string[] = [];
  for (const s of standbys) {
    const r = await s.psql('SELECT pid, status, sender_host, sender_port FROM pg_stat_wal_receiver');
    const [pid, status, host, port] = r.split('|');
    t.equal(`${status}|${host}|${port}`, `streaming|127.0.0.1|${relay.port}`, `${s.name} streams from the relay`);
    receivers.push(pid!);
  }
  // The relay reports truthful positions: its flush position reaches the primary's.
  const lsn = await primary.psql('SELECT pg_current_wal_lsn()');
  await waitQuery(primary, `SELECT flush_lsn >= '${lsn}' AND write_lsn >= flush_lsn FROM pg_stat_replication`, 't', 20_000);
  t.pass('pg_stat_replication shows the relay\'s write and flush positions advancing');

  const streamsBefore = countLines(relay, /"msg":"start streaming"/);
  await primary.restart('fast');
  await relay.proc.waitFor(/lost the upstream; reconnecting/, 20_000);
  await primary.psql("INSERT INTO relayed VALUES (2, 'after restart')");
  for (const s of standbys) await waitQuery(s, 'SELECT note FROM relayed WHERE id = 2', 'after restart');
  t.pass('rows written after the primary restarted reach both standbys');
  for (const [i, s] of standbys.entries()) {
    const pid = (await s.psql('SELECT pid FROM pg_stat_wal_receiver'));
    t.equal(pid, receivers[i], `${s.name} kept its walreceiver (never disconnected)`);
  }
  t.equal(countLines(relay, /"msg":"start streaming"/), streamsBefore, 'no standby had to reconnect to the relay');
  t.ok(countLines(relay, /"msg":"connecting to upstream"/) >= 2, 'every connection attempt is logged');
  t.equal(await primary.psql('SELECT application_name FROM pg_stat_replication'), 'relay1', 'the relay is back on the primary');

  const stopped = await relay.stop('SIGTERM');
  t.equal(stopped.code, 0, 'the relay drains and exits 0');
});
