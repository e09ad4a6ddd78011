// Owns the Prometheus metrics (prom-client, one registry per admin app). Every value
// is built at scrape time from one snapshot of the shared memory (WalSnd slots,
// control block) taken at the start of the scrape: each metric's collect() resets
// itself and sets its series from that snapshot, so all series come from the same
// instant and a standby that disconnected simply has no series any more. Senders
// never touch prom-client: their hot path only updates their WalSnd slot.
//
// Names: one prefix, pgws_, base units, _bytes / _seconds / _total suffixes; per-standby
// series carry sender_id, application_name, client_addr, slot_name and state (the
// labels postgres_exporter's pg_stat_replication users know, plus the connection id).
// A position or lag pg_stat_replication would show as NULL has no series. The
// per-standby families are rendered by renderStandbys() from the same snapshot (see there).

import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import {
  connectionCounters, peekFlush, sourceState, upstreamStatus,
  type ConnectionCounters, type FlushPosition, type UpstreamStatus,
} from '../shmem/control.ts';
import { REFUSAL_REASONS, type SharedViews } from '../shmem/layout.ts';
import { snapshotWalSnds, type WalSndSnapshot } from '../shmem/walsnd.ts';
import { lagSeconds, pgTimeToUnixSeconds, stateName } from './senders.ts';
import type { StoreStats } from './store-stats.ts';

export const METRIC_PREFIX = 'pgws_';

export const SOURCE_STATE_NAMES = ['starting', 'running', 'stopped', 'failed', 'waiting', 'disk_full'] as const;

export type MetricsDeps = {
  views: SharedViews;
  source: string;
  version: string;
  /** The store's size, from the admin app's cache. */
  storeStats(): Promise<StoreStats | null>;
  /** Same answer as /readyz. */
  ready(): boolean;
};

/** Everything one scrape reports, read once. */
type Snapshot = {
  senders: WalSndSnapshot[];
  flush: FlushPosition;
  counters: ConnectionCounters;
  upstream: UpstreamStatus;
  store: StoreStats | null;
  sourceState: string;
  ready: boolean;
};

/** One per-standby family; `value` returns null for "no series" (NULL in pg_stat_replication). */
type StandbyFamily = { name: string; help: string; type: 'gauge' | 'counter'; value: (s: WalSndSnapshot, flushLsn: bigint) => number | null };

const lsn = (x: bigint): number | null => (x === 0n ? null : Number(x));
const behind = (x: bigint, flushLsn: bigint): number | null => (x === 0n ? null : Math.max(0, Number(flushLsn - x)));
const g = (name: string, help: string, value: StandbyFamily['value']): StandbyFamily => ({ name: METRIC_PREFIX + name, help, type: 'gauge', value });

/** Per standby: pg_stat_replication's positions and lags, and the bytes sent. */
export const STANDBY_FAMILIES: readonly StandbyFamily[] = [
  g('standby_sent_lsn_bytes', 'Last WAL position sent to the standby (sent_lsn), in bytes since 0/0.', (s) => lsn(s.sent)),
  g('standby_write_lsn_bytes', 'Last WAL position the standby wrote (write_lsn), in bytes.', (s) => lsn(s.write)),
  g('standby_flush_lsn_bytes', 'Last WAL position the standby flushed (flush_lsn), in bytes.', (s) => lsn(s.flush)),
  g('standby_replay_lsn_bytes', 'Last WAL position the standby replayed (replay_lsn), in bytes.', (s) => lsn(s.replay)),
  g('standby_sent_lag_bytes', 'Bytes of WAL the store has flushed but not yet sent to the standby.', (s, f) => behind(s.sent, f)),
  g('standby_write_lag_bytes', 'Store flush position minus the standby\'s write_lsn, in bytes.', (s, f) => behind(s.write, f)),
  g('standby_flush_lag_bytes', 'Store flush position minus the standby\'s flush_lsn, in bytes.', (s, f) => behind(s.flush, f)),
  g('standby_replay_lag_bytes', 'Store flush position minus the standby\'s replay_lsn, in bytes.', (s, f) => behind(s.replay, f)),
  g('standby_write_lag_seconds', 'write_lag: time until recent WAL was written on the standby.', (s) => lagSeconds(s.writeLagUs)),
  g('standby_flush_lag_seconds', 'flush_lag: time until recent WAL was flushed on the standby.', (s) => lagSeconds(s.flushLagUs)),
  g('standby_replay_lag_seconds', 'replay_lag: time until recent WAL was replayed on the standby.', (s) => lagSeconds(s.replayLagUs)),
  g('standby_reply_timestamp_seconds', 'Send time of the standby\'s last status message (reply_time), Unix seconds.',
    (s) => (s.replyTime === 0n ? null : pgTimeToUnixSeconds(s.replyTime))),
  {
    name: `${METRIC_PREFIX}standby_sent_bytes_total`, help: 'WAL bytes sent to the standby on this connection.', type: 'counter',
    value: (s) => Number(s.bytesSent),
  },
];

const escapeLabel = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

/**
 * The per-standby families as exposition text. Rendered here rather than through
 * prom-client's per-series label hashing and escaping: with 1000 standbys x 13 families
 * that alone took ~45 ms a scrape; each standby's label set is escaped once here.
 */
function renderStandbys(s: Snapshot): string {
  const labels = s.senders.map((x) =>
    `{sender_id="${x.pid}",application_name="${escapeLabel(x.applicationName)}",client_addr="${escapeLabel(x.clientAddr)}",` +
    `slot_name="${escapeLabel(x.slotName)}",state="${stateName(x)}"}`);
  const out: string[] = [];
  for (const f of STANDBY_FAMILIES) {
    out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
    for (let i = 0; i < s.senders.length; i++) {
      const v = f.value(s.senders[i]!, s.flush.flushLsn);
      if (v !== null) out.push(`${f.name}${labels[i]} ${v}`);
    }
  }
  return `\n${out.join('\n')}\n`;
}

export type Metrics = {
  registry: Registry;
  /** The exposition text of one scrape. */
  scrape(): Promise<string>;
};

export function createMetrics(deps: MetricsDeps): Metrics {
  const registry = new Registry();
  let snap: Snapshot | null = null;
  const current = (): Snapshot => {
    if (!snap) throw new Error('metrics collected outside a scrape');
    return snap;
  };

  const gauge = (name: string, help: string, value: (s: Snapshot) => number): void => {
    new Gauge({ name: METRIC_PREFIX + name, help, registers: [registry], collect() { this.set(value(current())); } });
  };
  const counter = (name: string, help: string, value: (s: Snapshot) => bigint): void => {
    new Counter({
      name: METRIC_PREFIX + name, help, registers: [registry],
      collect() { this.reset(); this.inc(Number(value(current()))); },
    });
  };

  // The store and the senders as a whole.
  gauge('flush_lsn_bytes', 'The store\'s flush position (the end of WAL it serves), in bytes since 0/0.', (s) => Number(s.flush.flushLsn));
  gauge('timeline', 'Timeline of the store\'s flush position.', (s) => s.flush.timeline);
  gauge('store_retained_bytes', 'Bytes of WAL files (segments, history) kept in the store directory.', (s) => s.store?.retainedBytes ?? 0);
  gauge('store_segments', 'WAL segment files in the store directory.', (s) => s.store?.segments ?? 0);
  gauge('store_filesystem_avail_bytes', 'Free bytes on the store\'s file system.', (s) => s.store?.fsAvailBytes ?? 0);
  gauge('store_filesystem_size_bytes', 'Size of the store\'s file system in bytes.', (s) => s.store?.fsSizeBytes ?? 0);
  gauge('senders_active', 'Connections holding a WalSnd slot.', (s) => s.senders.length);
  gauge('max_wal_senders', 'The max_wal_senders setting.', () => deps.views.maxWalSenders);
  gauge('ready', '1 when /readyz answers 200 (listener up, source healthy, not shutting down).', (s) => (s.ready ? 1 : 0));
  counter('sent_bytes_total', 'WAL bytes sent to all standbys since start.', (s) => s.counters.sentBytes);
  counter('connections_accepted_total', 'Client connections handed to a sender.', (s) => s.counters.accepted);
  new Counter({
    name: `${METRIC_PREFIX}connections_refused_total`, help: 'Connections refused with a FATAL error before streaming, by reason.',
    labelNames: ['reason'], registers: [registry],
    collect() {
      this.reset();
      const { refused } = current().counters;
      for (const reason of REFUSAL_REASONS) this.inc({ reason }, Number(refused[reason]));
    },
  });
  counter('authentication_failures_total', 'Failed authentication exchanges.', (s) => s.counters.authFailures);
  new Gauge({
    name: `${METRIC_PREFIX}source_info`, help: 'The WAL source: kind and state (always 1).',
    labelNames: ['source', 'state'], registers: [registry],
    collect() {
      this.reset();
      this.set({ source: deps.source, state: current().sourceState }, 1);
    },
  });
  new Gauge({
    name: `${METRIC_PREFIX}build_info`, help: 'pg-walsender version (always 1).', labelNames: ['version'], registers: [registry],
    collect() { this.reset(); this.set({ version: deps.version }, 1); },
  });

  // The upstream receiver (source "upstream"); 0 for other sources.
  gauge('upstream_connected', '1 while the upstream receiver streams from its primary.', (s) => (s.upstream.connected ? 1 : 0));
  gauge('upstream_received_lsn_bytes', 'End of WAL received from upstream, in bytes.', (s) => Number(s.upstream.receivedLsn));
  gauge('upstream_flushed_lsn_bytes', 'End of WAL received from upstream and made durable, in bytes.', (s) => Number(s.upstream.flushedLsn));
  gauge('upstream_lag_bytes', 'Upstream server\'s end of WAL (as of its last message) minus what we flushed.',
    (s) => (s.upstream.serverEndLsn > s.upstream.flushedLsn ? Number(s.upstream.serverEndLsn - s.upstream.flushedLsn) : 0));
  gauge('upstream_last_message_timestamp_seconds', 'Receipt time of the last message from upstream, Unix seconds (0 = none).',
    (s) => (s.upstream.lastMessageTime === 0n ? 0 : pgTimeToUnixSeconds(s.upstream.lastMessageTime)));

  collectDefaultMetrics({ register: registry });

  const scrapeOnce = async (): Promise<string> => {
    const store = await deps.storeStats();
    const taken: Snapshot = {
      senders: snapshotWalSnds(deps.views),
      flush: peekFlush(deps.views),
      counters: connectionCounters(deps.views),
      upstream: upstreamStatus(deps.views),
      store,
      sourceState: SOURCE_STATE_NAMES[sourceState(deps.views)] ?? 'unknown',
      ready: deps.ready(),
    };
    snap = taken;
    try {
      return (await registry.metrics()) + renderStandbys(taken);
    } finally {
      snap = null;
    }
  };
  // registry.metrics() awaits between metrics: scrapes run one after another so each
  // reads only its own snapshot.
  let last: Promise<unknown> = Promise.resolve();
  return {
    registry,
    scrape(): Promise<string> {
      const next = last.then(scrapeOnce, scrapeOnce);
      last = next.catch(() => {});
      return next;
    },
  };
}
