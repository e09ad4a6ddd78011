// /metrics built from a synthetic WalSnd slot array: values and NULLs as in
// pg_stat_replication, label escaping of hostile application names, and series that
// disappear with the slot.

import t from 'tap';
import { createMetrics } from '../../src/admin/metrics.ts';
import { publishIdentity, publishUpstreamStatus } from '../../src/shmem/control.ts';
import { createSharedMemory, WalSndState } from '../../src/shmem/layout.ts';
import { claimWalSnd, recordStandbyReply, releaseWalSnd, setWalSndSent, setWalSndState } from '../../src/shmem/walsnd.ts';
import { parseMetrics, standbyValue } from './helpers.ts';

const GB = 1n << 30n;

t.test('per-standby values, NULLs, escaping, disappearing series', async (t) => {
  const v = createSharedMemory(4);
  publishIdentity(v, { sysid: 42n, segSize: 16 << 20, pageMagic: 0xd110 }, { flushLsn: 3n * GB, timeline: 2 });
  const nasty = 'a"b\\c\nd';
  const i = claimWalSnd(v, { connId: 7, threadId: 1, clientAddr: '::1', clientPort: 5000, applicationName: nasty, backendStart: 1n });
  const j = claimWalSnd(v, { connId: 8, threadId: 1, clientAddr: '10.0.0.2', clientPort: 5001, applicationName: 'idle', backendStart: 1n });
  setWalSndState(v, i, WalSndState.STREAMING);
  setWalSndSent(v, i, 3n * GB - 100n, 5000n);
  recordStandbyReply(v, i, { write: 2n * GB, flush: 2n * GB - 10n, replay: 0n, writeLagUs: 1500n, flushLagUs: -1n, replayLagUs: -1n, replyTime: 0n });
  publishUpstreamStatus(v, { connected: true, receivedLsn: 5n, flushedLsn: 4n, serverEndLsn: 10n });
  const m = createMetrics({ views: v, source: 'upstream', version: '9.9.9', storeStats: async () => null, ready: () => false });

  const p = parseMetrics(await m.scrape());
  t.equal(standbyValue(p, 'pgws_standby_sent_lsn_bytes', 7), Number(3n * GB - 100n));
  t.equal(standbyValue(p, 'pgws_standby_sent_lag_bytes', 7), 100);
  t.equal(standbyValue(p, 'pgws_standby_write_lag_bytes', 7), Number(GB));
  t.equal(standbyValue(p, 'pgws_standby_flush_lag_bytes', 7), Number(GB) + 10);
  t.equal(standbyValue(p, 'pgws_standby_write_lag_seconds', 7), 0.0015);
  for (const name of ['replay_lsn_bytes', 'replay_lag_bytes', 'flush_lag_seconds', 'replay_lag_seconds', 'reply_timestamp_seconds']) {
    t.equal(standbyValue(p, `pgws_standby_${name}`, 7), undefined, `${name}: NULL, no series`);
  }
  t.equal(standbyValue(p, 'pgws_standby_sent_bytes_total', 7), 5000);
  t.equal(standbyValue(p, 'pgws_standby_sent_bytes_total', 8), 0, 'the idle session has its counter');
  t.equal(standbyValue(p, 'pgws_standby_sent_lsn_bytes', 8), undefined, 'but no position');
  const labels = p.samples.get('pgws_standby_sent_lsn_bytes')![0]!.labels;
  t.same(labels, { sender_id: '7', application_name: nasty, client_addr: '::1', slot_name: '', state: 'streaming' }, 'labels escaped and read back');
  t.equal(p.types.get('pgws_standby_sent_bytes_total'), 'counter');
  t.equal(p.samples.get('pgws_timeline')![0]!.value, 2);
  t.equal(p.samples.get('pgws_ready')![0]!.value, 0);
  t.equal(p.samples.get('pgws_upstream_connected')![0]!.value, 1);
  t.equal(p.samples.get('pgws_upstream_lag_bytes')![0]!.value, 6);
  t.same(p.samples.get('pgws_source_info')![0]!.labels, { source: 'upstream', state: 'starting' });
  t.equal(p.samples.get('pgws_sent_bytes_total')![0]!.value, 5000, 'process-wide counter follows the slots');

  releaseWalSnd(v, i, 7);
  const q = parseMetrics(await m.scrape());
  const left = [...q.samples.entries()].filter(([n]) => n.startsWith('pgws_standby_')).flatMap(([, l]) => l.map((s) => s.labels.sender_id));
  t.same([...new Set(left)], ['8'], 'only the remaining sender has series');
  t.equal(q.samples.get('pgws_sent_bytes_total')![0]!.value, 5000, 'the total does not drop when a sender ends');
  const both = (await Promise.all([m.scrape(), m.scrape()])).map(parseMetrics);
  t.same(both.map((x) => [...x.types.keys()].sort()), [[...q.types.keys()].sort(), [...q.types.keys()].sort()],
    'concurrent scrapes each answer every metric');
});
