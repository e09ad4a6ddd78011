// Owns how a WalSnd slot snapshot is shown to operators: the pg_stat_replication row
// of the admin API (/api/v1/senders) and the unit conversions shared with the
// metrics (PostgreSQL timestamps, LSNs, lag intervals). Pure functions, no I/O.

import { formatLsn, PG_EPOCH_OFFSET_MICROS } from '../protocol/lsn.ts';
import { WAL_SND_STATE_NAMES } from '../shmem/layout.ts';
import type { WalSndSnapshot } from '../shmem/walsnd.ts';

/** One row of pg_stat_replication, as JSON, plus bytes_sent. */
export type SenderRow = {
  id: number;
  application_name: string;
  client_addr: string | null;
  client_port: number | null;
  backend_start: string;
  state: string;
  sent_lsn: string | null;
  write_lsn: string | null;
  flush_lsn: string | null;
  replay_lsn: string | null;
  write_lag: number | null;
  flush_lag: number | null;
  replay_lag: number | null;
  reply_time: string | null;
  sync_state: string;
  slot_name: string | null;
  bytes_sent: number;
};

/** PostgreSQL timestamp (µs since 2000-01-01) to Unix seconds. */
export function pgTimeToUnixSeconds(t: bigint): number {
  return Number(t + PG_EPOCH_OFFSET_MICROS) / 1e6;
}

/** PostgreSQL timestamp to ISO 8601 (millisecond precision), null for 0 (never set). */
export function pgTimeToIso(t: bigint): string | null {
  return t === 0n ? null : new Date(Number((t + PG_EPOCH_OFFSET_MICROS) / 1000n)).toISOString();
}

/** An LSN as pg_stat_replication shows it: InvalidXLogRecPtr (0) is NULL. */
export function lsnOrNull(lsn: bigint): string | null {
  return lsn === 0n ? null : formatLsn(lsn);
}

/** A lag in microseconds (-1 = NULL) as seconds. */
export function lagSeconds(us: bigint): number | null {
  return us < 0n ? null : Number(us) / 1e6;
}

export function stateName(s: WalSndSnapshot): string {
  return WAL_SND_STATE_NAMES[s.state] ?? 'unknown';
}

export function senderRow(s: WalSndSnapshot): SenderRow {
  return {
    id: s.pid,
    application_name: s.applicationName,
    client_addr: s.clientAddr === '' ? null : s.clientAddr,
    client_port: s.clientAddr === '' ? null : s.clientPort,
    backend_start: pgTimeToIso(s.backendStart) ?? new Date(0).toISOString(),
    state: stateName(s),
    sent_lsn: lsnOrNull(s.sent),
    write_lsn: lsnOrNull(s.write),
    flush_lsn: lsnOrNull(s.flush),
    replay_lsn: lsnOrNull(s.replay),
    write_lag: lagSeconds(s.writeLagUs),
    flush_lag: lagSeconds(s.flushLagUs),
    replay_lag: lagSeconds(s.replayLagUs),
    reply_time: pgTimeToIso(s.replyTime),
    sync_state: 'async', // no synchronous replication here
    slot_name: s.slotName === '' ? null : s.slotName,
    bytes_sent: Number(s.bytesSent),
  };
}
