// WAL retention of the store (demo and upstream sources; an archive directory belongs
// to its owner and is never touched): a segment is removed only when it lies wholly
// before every replication slot's restart_lsn, the oldest sent position among active
// senders (GetOldestWALSendPointer) and flush - wal_keep_size. A slot holding more
// than max_slot_wal_keep_size is marked lost first, as PostgreSQL does, so one stuck
// standby cannot fill the disk. Runs on the ingest thread.

import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log.ts';
import { formatLsn } from '../protocol/lsn.ts';
import { readFlush, storeIdentity } from '../shmem/control.ts';
import { WalStatus, type SharedViews } from '../shmem/layout.ts';
import { oldestSentPosition } from '../shmem/walsnd.ts';
import { parseSegmentFileName } from '../wal/segment.ts';
import { saveSlot } from './persist.ts';
import { listSlots, markSlotLost, readSlot, setWalStatus } from './slots.ts';

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

export type RetentionResult = { horizon: bigint; removed: string[]; lost: string[] };

export function runRetention(v: SharedViews, storeDir: string, dataDir: string, settings: RetentionSettings, log: Logger): RetentionResult | null {
  const id = storeIdentity(v);
  if (!id) return null;
  const { flushLsn } = readFlush(v);
  const lost: string[] = [];
  const restarts: bigint[] = [];
  for (const s of listSlots(v)) {
    if (s.walStatus === WalStatus.LOST || s.restartLsn === 0n) continue;
    const held = flushLsn - s.restartLsn;
    if (settings.maxSlotWalKeepSize >= 0 && held > BigInt(settings.maxSlotWalKeepSize)) {
      if (markSlotLost(v, s.index)) {
        lost.push(s.name);
        log.warn({ slot: s.name, restartLsn: formatLsn(s.restartLsn), heldBytes: Number(held), maxSlotWalKeepSize: settings.maxSlotWalKeepSize },
          'invalidating replication slot because its restart_lsn exceeds max_slot_wal_keep_size');
        const now = readSlot(v, s.index);
        if (now && !now.temporary) saveSlot(dataDir, now);
        continue;
      }
    }
    setWalStatus(v, s.index, held > BigInt(settings.walKeepSize) ? WalStatus.EXTENDED : WalStatus.RESERVED);
    restarts.push(s.restartLsn);
  }
  const horizon = retentionHorizon(flushLsn, restarts, oldestSentPosition(v), settings.walKeepSize);
  const seg = BigInt(id.segSize);
  const keepFrom = horizon / seg; // the segment holding the horizon stays
  const flushSeg = flushLsn / seg;
  const removed: string[] = [];
  for (const name of fs.readdirSync(storeDir)) {
    const p = parseSegmentFileName(name, id.segSize);
    if (!p || p.segno >= keepFrom || p.segno >= flushSeg) continue;
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
  return { horizon, removed, lost };
}
