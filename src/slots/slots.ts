// Physical replication slots in shared memory (slot.c's ReplicationSlotCtl): create,
// acquire (one active connection per slot), release, drop, restart_lsn updates from a
// standby's flush reports, temporary slots dropped with their session (or with a dead
// thread's connection, reclaimed by the main thread with bounded spinning), and the lost
// marking of max_slot_wal_keep_size. Every change bumps the slot's version so the
// owner knows when to persist it (persist.ts). Errors carry PostgreSQL's texts.

import { PgError } from '../protocol/errors.ts';
import {
  R32, R64, REPL_SLOT_NAME_BYTES, WalStatus, replSlot32, replSlot64, replSlotNameOffset, type SharedViews,
} from '../shmem/layout.ts';
import { removalBound, type FlushPosition } from '../shmem/control.ts';
import { spinLock, spinUnlock, trySpinLock } from '../shmem/spinlock.ts';

/** Holders that are not connections: the retention pass, and each admin API request. */
export const RETENTION_PID = -2;
let adminHolder = -16;
/** A holder id of its own for one admin API request, so two requests never share a hold. */
export function adminHolderId(): number {
  adminHolder = adminHolder > -(2 ** 30) ? adminHolder - 1 : -16;
  return adminHolder;
}

export type ReplicationSlot = {
  index: number;
  name: string;
  temporary: boolean;
  activePid: number;
  restartLsn: bigint; // 0n = NULL
  restartTli: number;
  walStatus: number;
  invalidatedAt: bigint;
  version: number;
};

/** ReplicationSlotValidateName. */
export function validateSlotName(name: string): void {
  if (name.length === 0) throw new PgError('ERROR', '42602', `replication slot name "${name}" is too short`);
  if (Buffer.byteLength(name) >= REPL_SLOT_NAME_BYTES) throw new PgError('ERROR', '42622', `replication slot name "${name}" is too long`);
  if (!/^[a-z0-9_]+$/.test(name)) {
    throw new PgError('ERROR', '42602', `replication slot name "${name}" contains invalid character`,
      { hint: 'Replication slot names may only contain lower case letters, numbers, and the underscore character.' });
  }
}

const lockOf = (v: SharedViews, i: number): number => replSlot32(v, i, R32.LOCK);

// The main thread (admin API, reclaiming a dead thread's slots) passes `bounded`: a lock
// that stays busy (its holder's thread died inside it) is an error to retry, never a hang.
const MAIN_THREAD_SPINS = 10_000;
/** A bounded lock attempt failed: nothing was changed. */
export class SlotLockBusy extends PgError {}
const busy = (): PgError => new SlotLockBusy('ERROR', '55000', 'replication slot state is busy; try again');

function lock(v: SharedViews, i: number, bounded: boolean): void {
  if (!bounded) spinLock(v.i32, lockOf(v, i));
  else if (!trySpinLock(v.i32, lockOf(v, i), MAIN_THREAD_SPINS)) throw busy();
}

function nameAt(v: SharedViews, i: number): string {
  const len = Atomics.load(v.i32, replSlot32(v, i, R32.NAME_LEN));
  const off = replSlotNameOffset(v, i);
  return Buffer.from(v.u8.subarray(off, off + len)).toString('utf8');
}

function read(v: SharedViews, i: number): ReplicationSlot {
  return {
    index: i,
    name: nameAt(v, i),
    temporary: Atomics.load(v.i32, replSlot32(v, i, R32.TEMPORARY)) === 1,
    activePid: Atomics.load(v.i32, replSlot32(v, i, R32.ACTIVE_PID)),
    restartLsn: BigInt.asUintN(64, Atomics.load(v.i64, replSlot64(v, i, R64.RESTART_LSN))),
    restartTli: Atomics.load(v.i32, replSlot32(v, i, R32.RESTART_TLI)),
    walStatus: Atomics.load(v.i32, replSlot32(v, i, R32.WAL_STATUS)),
    invalidatedAt: BigInt.asUintN(64, Atomics.load(v.i64, replSlot64(v, i, R64.INVALIDATED_AT))),
    version: Atomics.load(v.i32, replSlot32(v, i, R32.VERSION)),
  };
}

const inUse = (v: SharedViews, i: number): boolean => Atomics.load(v.i32, replSlot32(v, i, R32.IN_USE)) === 1;
const bump = (v: SharedViews, i: number): void => { Atomics.add(v.i32, replSlot32(v, i, R32.VERSION), 1); };

/** Index of the slot called `name`, or -1. */
export function findSlot(v: SharedViews, name: string): number {
  for (let i = 0; i < v.maxReplicationSlots; i++) if (inUse(v, i) && nameAt(v, i) === name) return i;
  return -1;
}

export type NewSlot = { name: string; temporary: boolean; activePid: number; restartLsn: bigint; restartTli: number;
  walStatus?: number; invalidatedAt?: bigint };

/**
 * ReplicationSlotCreate. A temporary slot stays held by its session; a persistent one
 * is returned released. The caller persists a persistent slot before answering.
 */
export function createSlot(v: SharedViews, s: NewSlot, bounded = false): number {
  validateSlotName(s.name);
  if (v.maxReplicationSlots === 0) {
    throw new PgError('ERROR', '55000', 'replication slots can only be used if max_replication_slots > 0');
  }
  // Claiming under the first free entry's lock is not enough to keep names unique
  // across threads, so entry 0's lock serializes creations (they are rare).
  const gate = lockOf(v, 0);
  lock(v, 0, bounded);
  try {
    if (findSlot(v, s.name) >= 0) throw new PgError('ERROR', '42710', `replication slot "${s.name}" already exists`);
    for (let i = 0; i < v.maxReplicationSlots; i++) {
      if (inUse(v, i)) continue;
      if (i !== 0) lock(v, i, bounded);
      const bytes = Buffer.from(s.name, 'utf8');
      v.u8.set(bytes, replSlotNameOffset(v, i));
      Atomics.store(v.i32, replSlot32(v, i, R32.NAME_LEN), bytes.length);
      Atomics.store(v.i32, replSlot32(v, i, R32.TEMPORARY), s.temporary ? 1 : 0);
      Atomics.store(v.i32, replSlot32(v, i, R32.ACTIVE_PID), s.activePid);
      Atomics.store(v.i32, replSlot32(v, i, R32.RESTART_TLI), s.restartTli);
      Atomics.store(v.i32, replSlot32(v, i, R32.WAL_STATUS), s.walStatus ?? WalStatus.RESERVED);
      Atomics.store(v.i64, replSlot64(v, i, R64.RESTART_LSN), s.restartLsn);
      Atomics.store(v.i64, replSlot64(v, i, R64.INVALIDATED_AT), s.invalidatedAt ?? 0n);
      bump(v, i);
      Atomics.store(v.i32, replSlot32(v, i, R32.IN_USE), 1);
      if (i !== 0) spinUnlock(v.i32, lockOf(v, i));
      return i;
    }
    throw new PgError('ERROR', '53400', 'all replication slots are in use', { hint: 'Free one or increase max_replication_slots.' });
  } finally {
    spinUnlock(v.i32, gate);
  }
}

/** ReplicationSlotAcquire(name, nowait=true) for connection `pid`. */
export function acquireSlot(v: SharedViews, name: string, pid: number, bounded = false): number {
  const i = findSlot(v, name);
  if (i < 0) throw new PgError('ERROR', '42704', `replication slot "${name}" does not exist`);
  lock(v, i, bounded);
  const active = Atomics.load(v.i32, replSlot32(v, i, R32.ACTIVE_PID));
  const ok = inUse(v, i) && nameAt(v, i) === name && (active === 0 || active === pid);
  if (ok) Atomics.store(v.i32, replSlot32(v, i, R32.ACTIVE_PID), pid);
  spinUnlock(v.i32, lockOf(v, i));
  if (!ok) {
    if (!inUse(v, i)) throw new PgError('ERROR', '42704', `replication slot "${name}" does not exist`);
    throw new PgError('ERROR', '55006', `replication slot "${name}" is active for PID ${active}`);
  }
  return i;
}

/** ReplicationSlotRelease: a persistent slot becomes inactive; a temporary one stays with its session. */
export function releaseSlot(v: SharedViews, i: number, pid: number, bounded = false): void {
  lock(v, i, bounded);
  if (Atomics.load(v.i32, replSlot32(v, i, R32.ACTIVE_PID)) === pid && Atomics.load(v.i32, replSlot32(v, i, R32.TEMPORARY)) === 0) {
    Atomics.store(v.i32, replSlot32(v, i, R32.ACTIVE_PID), 0);
  }
  spinUnlock(v.i32, lockOf(v, i));
}

/** Free an acquired slot's entry (the caller removed its file first for a persistent one). */
export function freeSlot(v: SharedViews, i: number, pid: number, bounded = false): void {
  lock(v, i, bounded);
  if (Atomics.load(v.i32, replSlot32(v, i, R32.ACTIVE_PID)) === pid) {
    Atomics.store(v.i32, replSlot32(v, i, R32.IN_USE), 0);
    Atomics.store(v.i32, replSlot32(v, i, R32.ACTIVE_PID), 0);
    bump(v, i);
  }
  spinUnlock(v.i32, lockOf(v, i));
}

/**
 * Main thread: the slots still held by connection `connId`, whose task ended without
 * releasing them (its worker thread died), as PostgreSQL's crash restart clears every
 * active_pid: a persistent slot becomes inactive, a temporary one is dropped. Returns
 * false if some slot's lock stayed busy, so the caller retries later; with `takeOver`
 * (the caller has retried long enough) a busy lock is taken over, since only the dead
 * connection's thread holds its slot's lock for longer than a few stores.
 */
export function reclaimSlotsOf(v: SharedViews, connId: number, takeOver = false): boolean {
  let done = true;
  for (let i = 0; i < v.maxReplicationSlots; i++) {
    if (!inUse(v, i) || Atomics.load(v.i32, replSlot32(v, i, R32.ACTIVE_PID)) !== connId) continue;
    if (!trySpinLock(v.i32, lockOf(v, i), 100) && !takeOver) { done = false; continue; }
    if (inUse(v, i) && Atomics.load(v.i32, replSlot32(v, i, R32.ACTIVE_PID)) === connId) {
      if (Atomics.load(v.i32, replSlot32(v, i, R32.TEMPORARY)) === 1) {
        Atomics.store(v.i32, replSlot32(v, i, R32.IN_USE), 0);
        bump(v, i);
      }
      Atomics.store(v.i32, replSlot32(v, i, R32.ACTIVE_PID), 0);
    }
    spinUnlock(v.i32, lockOf(v, i));
  }
  return done;
}

/** Slot indices of `pid`'s temporary slots (dropped at session end or on ERROR). */
export function temporarySlotsOf(v: SharedViews, pid: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < v.maxReplicationSlots; i++) {
    if (inUse(v, i) && Atomics.load(v.i32, replSlot32(v, i, R32.TEMPORARY)) === 1
      && Atomics.load(v.i32, replSlot32(v, i, R32.ACTIVE_PID)) === pid) out.push(i);
  }
  return out;
}

/** PhysicalConfirmReceivedLocation: restart_lsn follows the standby's flush, even backwards. */
export function setRestartLsn(v: SharedViews, i: number, lsn: bigint, tli: number, bounded = false): boolean {
  lock(v, i, bounded);
  const lost = Atomics.load(v.i32, replSlot32(v, i, R32.WAL_STATUS)) === WalStatus.LOST;
  const changed = !lost && BigInt.asUintN(64, Atomics.load(v.i64, replSlot64(v, i, R64.RESTART_LSN))) !== lsn;
  if (changed) {
    Atomics.store(v.i64, replSlot64(v, i, R64.RESTART_LSN), lsn);
    Atomics.store(v.i32, replSlot32(v, i, R32.RESTART_TLI), tli);
    bump(v, i);
  }
  spinUnlock(v.i32, lockOf(v, i));
  return changed;
}

/**
 * ReplicationSlotReserveWal, after slot `i` (held by the caller) was created with
 * restart_lsn `reserved`: if retention may already have removed that segment (a pass
 * that read the slots before this one existed), move restart_lsn to a newer flush
 * position and check again. Retention raises its removal bound before it re-reads the
 * slots, and the slot's restart_lsn is stored before the bound is read here (all
 * sequentially consistent), so either this sees the bound and moves on, or the pass sees
 * the slot and keeps its segment. Retention never removes the flush position's segment,
 * so one retry normally ends it.
 */
export function ensureWalReserved(v: SharedViews, i: number, reserved: FlushPosition, readPosition: () => FlushPosition,
  segSize: number, bounded = false): FlushPosition {
  const seg = BigInt(segSize);
  let pos = reserved;
  for (let tries = 0; tries < 100; tries++) {
    if (pos.flushLsn / seg >= removalBound(v)) return pos;
    pos = readPosition();
    setRestartLsn(v, i, pos.flushLsn, pos.timeline, bounded);
  }
  throw new PgError('ERROR', '55000', `could not reserve WAL for replication slot "${nameAt(v, i)}": it kept being removed`);
}

/**
 * InvalidateObsoleteReplicationSlots: a slot holding more than max_slot_wal_keep_size
 * loses its reservation (wal_status "lost", restart_lsn NULL) instead of filling the
 * disk. Returns false if the lock stayed busy (try again at the next round).
 */
export function markSlotLost(v: SharedViews, i: number): boolean {
  const lock = lockOf(v, i);
  if (!trySpinLock(v.i32, lock, 1000)) return false;
  const restart = Atomics.load(v.i64, replSlot64(v, i, R64.RESTART_LSN));
  Atomics.store(v.i64, replSlot64(v, i, R64.INVALIDATED_AT), restart);
  Atomics.store(v.i64, replSlot64(v, i, R64.RESTART_LSN), 0n);
  Atomics.store(v.i32, replSlot32(v, i, R32.WAL_STATUS), WalStatus.LOST);
  bump(v, i);
  spinUnlock(v.i32, lock);
  return true;
}

export function setWalStatus(v: SharedViews, i: number, status: number): void {
  if (Atomics.load(v.i32, replSlot32(v, i, R32.WAL_STATUS)) === WalStatus.LOST) return;
  Atomics.store(v.i32, replSlot32(v, i, R32.WAL_STATUS), status);
}

/** A consistent copy of one slot, or null when the entry is free. */
export function readSlot(v: SharedViews, i: number): ReplicationSlot | null {
  const lock = lockOf(v, i);
  const locked = trySpinLock(v.i32, lock, 200);
  const s = inUse(v, i) ? read(v, i) : null;
  if (locked) spinUnlock(v.i32, lock);
  return s;
}

/** Every slot in use (bounded spinning: safe on the main thread). */
export function listSlots(v: SharedViews): ReplicationSlot[] {
  const out: ReplicationSlot[] = [];
  for (let i = 0; i < v.maxReplicationSlots; i++) {
    if (!inUse(v, i)) continue;
    const s = readSlot(v, i);
    if (s) out.push(s);
  }
  return out;
}
