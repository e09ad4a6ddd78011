// WAL retention of the store (demo and upstream sources; an archive directory belongs
// to its owner and is never touched): a segment is removed only when it lies wholly
// before every replication slot's restart_lsn, the oldest sent position among active
// senders (GetOldestWALSendPointer) and flush - wal_keep_size. A persistent slot holds
// from the older of its restart_lsn in memory and in its state file, so the WAL the slot
// would come back with after kill -9 is still there (PostgreSQL 18's
// last_saved_restart_lsn). A slot holding more
// than max_slot_wal_keep_size is marked lost first, as PostgreSQL does, so one stuck
// standby cannot fill the disk: like PostgreSQL's checkpointer the pass acquires the
// slot to invalidate it (so it is the only writer of the slot's state file), and a
// slot in use has its holder terminated first. Runs on the ingest thread.

import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log.ts';
import { formatLsn } from '../protocol/lsn.ts';
import { publishRemovalBound, readFlush, storeIdentity } from '../shmem/control.ts';
import { WalStatus, type SharedViews } from '../shmem/layout.ts';
import { oldestSentPosition, requestTerminate } from '../shmem/walsnd.ts';
import { parseSegmentFileName } from '../wal/segment.ts';
import { savedRestartLsn, saveSlot } from './persist.ts';
import { acquireSlot, listSlots, markSlotLost, readSlot, releaseSlot, RETENTION_PID, setWalStatus, type ReplicationSlot } from './slots.ts';

export type RetentionSettings = {
  walKeepSize: number; // bytes
  maxSlotWalKeepSize: number; // bytes, -1 = unlimited
};

/** The oldest LSN still needed: segments wholly before it may go. Pure. */
export function retentionHorizon(flush: bigint, slotRestarts: bigint[], oldestSent: bigint | null, walKeepSize: number): bigint {
  let horizon = flush - BigInt(walKeepSize);
  if (horizon < 0n) horizon = 0n;
  for (const r of slotRestarts) if (r < horizon) horizon = r;
  if (oldestSent !== null && oldestSent < horizon) horizon = oldestSent;
  return horizon;
}

/**
 * InvalidatePossiblyObsoleteSlot for one slot: true when this pass made it lost. A slot
 * in use is not touched: its holder is asked to end (FATAL 57P01, as PostgreSQL's
 * SIGTERM) and a later pass invalidates the released slot; until then it holds its WAL.
 */
function invalidateSlot(v: SharedViews, dataDir: string, s: ReplicationSlot, log: Logger): boolean {
  if (s.activePid !== 0) {
    if (s.activePid > 0 && requestTerminate(v, s.activePid)) {
      log.info({ slot: s.name, connId: s.activePid }, `terminating process ${s.activePid} to release replication slot "${s.name}"`);
    }
    return false;
  }
  let i: number;
  try {
    i = acquireSlot(v, s.name, RETENTION_PID);
  } catch {
    return false; // acquired or dropped meanwhile: the next pass looks again
  }
  try {
    const now = readSlot(v, i);
    if (!now || now.walStatus === WalStatus.LOST) return false;
    // Disk first: whoever sees "lost" in shared memory finds it in the state file too,
    // and a crash in between only loads as lost a slot that was past the limit.
    if (!now.temporary) saveSlot(dataDir, { ...now, restartLsn: 0n, invalidatedAt: now.restartLsn, walStatus: WalStatus.LOST });
    return markSlotLost(v, i);
  } finally {
    releaseSlot(v, i, RETENTION_PID);
  }
}

/** `terminating`: a holder was asked to release a slot to invalidate; pass again soon. */
export type RetentionResult = { horizon: bigint; removed: string[]; lost: string[]; terminating: boolean };

/** `afterBound`: runs between publishing the removal bound and the second look at the slots (tests). */
export function runRetention(v: SharedViews, storeDir: string, dataDir: string, settings: RetentionSettings, log: Logger,
  hooks: { afterBound?: () => void } = {}): RetentionResult | null {
  const id = storeIdentity(v);
  if (!id) return null;
  const { flushLsn } = readFlush(v);
  const lost: string[] = [];
  let terminating = false;
  const restarts: bigint[] = [];
  for (const s of listSlots(v)) {
    if (s.walStatus === WalStatus.LOST || s.restartLsn === 0n) continue;
    const saved = s.temporary ? null : savedRestartLsn(dataDir, s.name);
    const restart = saved !== null && saved !== 0n && saved < s.restartLsn ? saved : s.restartLsn;
    const held = flushLsn - restart;
    if (settings.maxSlotWalKeepSize >= 0 && held > BigInt(settings.maxSlotWalKeepSize)) {
      if (invalidateSlot(v, dataDir, s, log)) {
        lost.push(s.name);
        log.warn({ slot: s.name, restartLsn: formatLsn(s.restartLsn), heldBytes: Number(held), maxSlotWalKeepSize: settings.maxSlotWalKeepSize },
          `invalidating slot "${s.name}" because its restart_lsn ${formatLsn(s.restartLsn)} exceeds max_slot_wal_keep_size`);
        continue;
      }
      terminating ||= s.activePid > 0;
    }
    setWalStatus(v, s.index, held > BigInt(settings.walKeepSize) ? WalStatus.EXTENDED : WalStatus.RESERVED);
    restarts.push(restart);
  }
  const horizon = retentionHorizon(flushLsn, restarts, oldestSentPosition(v), settings.walKeepSize);
  const seg = BigInt(id.segSize);
  const flushSeg = flushLsn / seg;
  let keepFrom = horizon / seg; // the segment holding the horizon stays
  if (keepFrom > flushSeg) keepFrom = flushSeg; // and so does the flush position's
  // Announce the bound, then look at the slots once more: a slot created since they were
  // read (RESERVE_WAL) either shows up here, or its creator sees the bound and reserves
  // from a newer position (ensureWalReserved).
  publishRemovalBound(v, keepFrom);
  hooks.afterBound?.();
  for (const s of listSlots(v)) {
    if (s.walStatus !== WalStatus.LOST && s.restartLsn !== 0n && s.restartLsn / seg < keepFrom) keepFrom = s.restartLsn / seg;
  }
  const removed: string[] = [];
  for (const name of fs.readdirSync(storeDir)) {
    const p = parseSegmentFileName(name, id.segSize);
    if (!p || p.segno >= keepFrom) continue;
    try {
      fs.unlinkSync(path.join(storeDir, name));
      removed.push(name);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  if (removed.length > 0) {
    log.info({ removed: removed.length, horizon: formatLsn(horizon), first: removed.sort()[0], last: removed.at(-1) },
      'removed WAL segments no standby needs');
  }
  return { horizon, removed, lost, terminating };
}
