// The WalSnd slot array: claim and release (InitWalSnd / WalSndKill), the owning
// sender's updates, the main thread's snapshots, terminate requests and the
// oldest sent position (GetOldestWALSendPointer). Each slot has its own spinlock;
// the owning sender is the only writer of positions, the main thread only reads,
// sets the terminate flag and reclaims slots of connections whose thread died.

import {
  APP_NAME_BYTES, CLIENT_ADDR_BYTES, S32, S64, SLOT_NAME_BYTES, SLOT_STRING_OFFSETS, WalSndState,
  slot32, slot64, slotByteOffset, type SharedViews, type WalSndStateValue,
} from './layout.ts';
import { countSentBytes, wakeSenders } from './control.ts';
import { spinLock, spinUnlock, trySpinLock } from './spinlock.ts';

export type WalSndIdentity = {
  connId: number;
  threadId: number;
  clientAddr: string;
  clientPort: number;
  applicationName: string;
  backendStart: bigint;
};

export type WalSndSnapshot = {
  index: number;
  pid: number;
  state: WalSndStateValue;
  threadId: number;
  applicationName: string;
  clientAddr: string;
  clientPort: number;
  slotName: string;
  timeline: number;
  backendStart: bigint;
  sent: bigint;
  write: bigint;
  flush: bigint;
  replay: bigint;
  writeLagUs: bigint;
  flushLagUs: bigint;
  replayLagUs: bigint;
  replyTime: bigint;
  bytesSent: bigint;
};

function writeString(v: SharedViews, index: number, offset: number, capacity: number, lenField: number, s: string): void {
  let bytes = Buffer.from(s, 'utf8');
  if (bytes.length > capacity) {
    // Cut at a character boundary, as PostgreSQL truncates to NAMEDATALEN-1.
    let end = capacity;
    while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
    bytes = bytes.subarray(0, end);
  }
  v.u8.set(bytes, slotByteOffset(index) + offset);
  Atomics.store(v.i32, slot32(index, lenField), bytes.length);
}

function readString(v: SharedViews, index: number, offset: number, lenField: number): string {
  const len = Atomics.load(v.i32, slot32(index, lenField));
  const start = slotByteOffset(index) + offset;
  return Buffer.from(v.u8.subarray(start, start + len)).toString('utf8');
}

/**
 * InitWalSnd: take the first free slot for this connection. Returns the slot index,
 * or -1 when all max_wal_senders slots are in use.
 */
export function claimWalSnd(v: SharedViews, id: WalSndIdentity): number {
  for (let i = 0; i < v.maxWalSenders; i++) {
    if (Atomics.load(v.i32, slot32(i, S32.PID)) !== 0) continue; // cheap pre-check without the lock
    const lock = slot32(i, S32.LOCK);
    spinLock(v.i32, lock);
    if (Atomics.load(v.i32, slot32(i, S32.PID)) !== 0) {
      spinUnlock(v.i32, lock);
      continue;
    }
    Atomics.store(v.i32, slot32(i, S32.PID), id.connId);
    Atomics.store(v.i32, slot32(i, S32.STATE), WalSndState.STARTUP);
    Atomics.store(v.i32, slot32(i, S32.TERMINATE), 0);
    Atomics.store(v.i32, slot32(i, S32.CLIENT_PORT), id.clientPort);
    Atomics.store(v.i32, slot32(i, S32.OWNER_THREAD), id.threadId);
    Atomics.store(v.i32, slot32(i, S32.TIMELINE), 0);
    for (let f = 0; f < 10; f++) Atomics.store(v.i64, slot64(i, f), 0n);
    for (const f of [S64.WRITE_LAG, S64.FLUSH_LAG, S64.REPLAY_LAG]) Atomics.store(v.i64, slot64(i, f), -1n);
    Atomics.store(v.i64, slot64(i, S64.BACKEND_START), id.backendStart);
    writeString(v, i, SLOT_STRING_OFFSETS.APP_NAME, APP_NAME_BYTES - 1, S32.APP_NAME_LEN, id.applicationName);
    writeString(v, i, SLOT_STRING_OFFSETS.CLIENT_ADDR, CLIENT_ADDR_BYTES, S32.CLIENT_ADDR_LEN, id.clientAddr);
    writeString(v, i, SLOT_STRING_OFFSETS.SLOT_NAME, SLOT_NAME_BYTES, S32.SLOT_NAME_LEN, '');
    spinUnlock(v.i32, lock);
    return i;
  }
  return -1;
}

/** WalSndKill: free the slot if this connection still holds it. Idempotent. */
export function releaseWalSnd(v: SharedViews, index: number, connId: number): void {
  const lock = slot32(index, S32.LOCK);
  spinLock(v.i32, lock);
  if (Atomics.load(v.i32, slot32(index, S32.PID)) === connId) {
    Atomics.store(v.i32, slot32(index, S32.STATE), WalSndState.FREE);
    Atomics.store(v.i32, slot32(index, S32.PID), 0);
  }
  spinUnlock(v.i32, lock);
}

/**
 * Main thread: free every slot still held by `connId` (its task ended without doing it,
 * e.g. its worker thread died). Returns false if some slot's lock stayed busy, so the
 * caller retries later instead of blocking. A thread can be terminated inside a
 * critical section and leave its slot's lock held forever: with `takeOver` (the caller
 * has seen the lock busy far longer than anyone holds it) the lock is taken anyway and
 * released with the slot.
 */
export function reclaimWalSnds(v: SharedViews, connId: number, takeOver = false): boolean {
  let done = true;
  for (let i = 0; i < v.maxWalSenders; i++) {
    if (Atomics.load(v.i32, slot32(i, S32.PID)) !== connId) continue;
    const lock = slot32(i, S32.LOCK);
    if (!trySpinLock(v.i32, lock, 100) && !takeOver) { done = false; continue; }
    if (Atomics.load(v.i32, slot32(i, S32.PID)) === connId) {
      Atomics.store(v.i32, slot32(i, S32.STATE), WalSndState.FREE);
      Atomics.store(v.i32, slot32(i, S32.PID), 0);
    }
    spinUnlock(v.i32, lock);
  }
  return done;
}

export function setWalSndState(v: SharedViews, index: number, state: WalSndStateValue): void {
  const lock = slot32(index, S32.LOCK);
  spinLock(v.i32, lock);
  Atomics.store(v.i32, slot32(index, S32.STATE), state);
  spinUnlock(v.i32, lock);
}

export function setWalSndStream(v: SharedViews, index: number, timeline: number, slotName: string): void {
  const lock = slot32(index, S32.LOCK);
  spinLock(v.i32, lock);
  Atomics.store(v.i32, slot32(index, S32.TIMELINE), timeline);
  writeString(v, index, SLOT_STRING_OFFSETS.SLOT_NAME, SLOT_NAME_BYTES, S32.SLOT_NAME_LEN, slotName);
  spinUnlock(v.i32, lock);
}

/** The sender's hot-path update after a socket write: sent position and byte count. */
export function setWalSndSent(v: SharedViews, index: number, sent: bigint, bytesSent: bigint): void {
  const lock = slot32(index, S32.LOCK);
  spinLock(v.i32, lock);
  const before = Atomics.load(v.i64, slot64(index, S64.BYTES_SENT));
  Atomics.store(v.i64, slot64(index, S64.SENT), sent);
  Atomics.store(v.i64, slot64(index, S64.BYTES_SENT), bytesSent);
  spinUnlock(v.i32, lock);
  // The process-wide counter grows by the same amount, so it stays monotonic after the
  // slot is freed (pgws_sent_bytes_total).
  if (bytesSent > before) countSentBytes(v, bytesSent - before);
}

export type StandbyReplyRecord = {
  write: bigint; flush: bigint; replay: bigint;
  writeLagUs: bigint; flushLagUs: bigint; replayLagUs: bigint; // -1 = NULL
  replyTime: bigint;
};

/** ProcessStandbyReplyMessage's update of the slot. */
export function recordStandbyReply(v: SharedViews, index: number, r: StandbyReplyRecord): void {
  const lock = slot32(index, S32.LOCK);
  spinLock(v.i32, lock);
  Atomics.store(v.i64, slot64(index, S64.WRITE), r.write);
  Atomics.store(v.i64, slot64(index, S64.FLUSH), r.flush);
  Atomics.store(v.i64, slot64(index, S64.REPLAY), r.replay);
  Atomics.store(v.i64, slot64(index, S64.WRITE_LAG), r.writeLagUs);
  Atomics.store(v.i64, slot64(index, S64.FLUSH_LAG), r.flushLagUs);
  Atomics.store(v.i64, slot64(index, S64.REPLAY_LAG), r.replayLagUs);
  Atomics.store(v.i64, slot64(index, S64.REPLY_TIME), r.replyTime);
  spinUnlock(v.i32, lock);
}

/** Hot standby feedback only refreshes the reply time. */
export function recordReplyTime(v: SharedViews, index: number, replyTime: bigint): void {
  const lock = slot32(index, S32.LOCK);
  spinLock(v.i32, lock);
  Atomics.store(v.i64, slot64(index, S64.REPLY_TIME), replyTime);
  spinUnlock(v.i32, lock);
}

export function terminateRequested(v: SharedViews, index: number): boolean {
  const target = Atomics.load(v.i32, slot32(index, S32.TERMINATE));
  return target !== 0 && target === Atomics.load(v.i32, slot32(index, S32.PID));
}

/** Main thread: ask the sender of connection `pid` to end (pg_terminate_backend). */
export function requestTerminate(v: SharedViews, pid: number): boolean {
  for (let i = 0; i < v.maxWalSenders; i++) {
    if (Atomics.load(v.i32, slot32(i, S32.PID)) === pid) {
      // The connection id, not a bare flag: if the slot was freed and claimed by another
      // connection since the check above, the request does not apply to that one.
      Atomics.store(v.i32, slot32(i, S32.TERMINATE), pid);
      wakeSenders(v); // the sender checks its flag when woken
      return true;
    }
  }
  return false;
}

const u64 = (x: bigint): bigint => BigInt.asUintN(64, x);

function readSlot(v: SharedViews, i: number): WalSndSnapshot {
  return {
    index: i,
    pid: Atomics.load(v.i32, slot32(i, S32.PID)),
    state: Atomics.load(v.i32, slot32(i, S32.STATE)) as WalSndStateValue,
    threadId: Atomics.load(v.i32, slot32(i, S32.OWNER_THREAD)),
    applicationName: readString(v, i, SLOT_STRING_OFFSETS.APP_NAME, S32.APP_NAME_LEN),
    clientAddr: readString(v, i, SLOT_STRING_OFFSETS.CLIENT_ADDR, S32.CLIENT_ADDR_LEN),
    clientPort: Atomics.load(v.i32, slot32(i, S32.CLIENT_PORT)),
    slotName: readString(v, i, SLOT_STRING_OFFSETS.SLOT_NAME, S32.SLOT_NAME_LEN),
    timeline: Atomics.load(v.i32, slot32(i, S32.TIMELINE)),
    backendStart: Atomics.load(v.i64, slot64(i, S64.BACKEND_START)),
    sent: u64(Atomics.load(v.i64, slot64(i, S64.SENT))),
    write: u64(Atomics.load(v.i64, slot64(i, S64.WRITE))),
    flush: u64(Atomics.load(v.i64, slot64(i, S64.FLUSH))),
    replay: u64(Atomics.load(v.i64, slot64(i, S64.REPLAY))),
    writeLagUs: Atomics.load(v.i64, slot64(i, S64.WRITE_LAG)),
    flushLagUs: Atomics.load(v.i64, slot64(i, S64.FLUSH_LAG)),
    replayLagUs: Atomics.load(v.i64, slot64(i, S64.REPLAY_LAG)),
    replyTime: Atomics.load(v.i64, slot64(i, S64.REPLY_TIME)),
    bytesSent: u64(Atomics.load(v.i64, slot64(i, S64.BYTES_SENT))),
  };
}

/** The owning sender's copy of its own slot (worker threads), or null if it no longer holds it. */
export function readWalSnd(v: SharedViews, index: number, connId: number): WalSndSnapshot | null {
  const lock = slot32(index, S32.LOCK);
  spinLock(v.i32, lock);
  const snap = Atomics.load(v.i32, slot32(index, S32.PID)) === connId ? readSlot(v, index) : null;
  spinUnlock(v.i32, lock);
  return snap;
}

/**
 * A consistent copy of every active slot. Safe on the main thread: each slot's lock is
 * tried a bounded number of times; a slot whose lock stays busy is left out of this
 * snapshot rather than blocking (its writer holds the lock for a few stores only).
 */
export function snapshotWalSnds(v: SharedViews, maxSpins = 200): WalSndSnapshot[] {
  const out: WalSndSnapshot[] = [];
  for (let i = 0; i < v.maxWalSenders; i++) {
    if (Atomics.load(v.i32, slot32(i, S32.PID)) === 0) continue;
    const lock = slot32(i, S32.LOCK);
    if (!trySpinLock(v.i32, lock, maxSpins)) continue;
    const snap = Atomics.load(v.i32, slot32(i, S32.PID)) !== 0 ? readSlot(v, i) : null;
    spinUnlock(v.i32, lock);
    if (snap) out.push(snap);
  }
  return out;
}

/**
 * GetOldestWALSendPointer: the smallest sent position among active senders, or null.
 * Never skips a slot (retention relies on it): when a slot's lock stays busy, its sent
 * position is still read with one atomic 64-bit load, which cannot tear.
 */
export function oldestSentPosition(v: SharedViews): bigint | null {
  let oldest: bigint | null = null;
  for (let i = 0; i < v.maxWalSenders; i++) {
    if (Atomics.load(v.i32, slot32(i, S32.PID)) === 0) continue;
    const lock = slot32(i, S32.LOCK);
    const locked = trySpinLock(v.i32, lock, 100);
    const active = Atomics.load(v.i32, slot32(i, S32.PID)) !== 0;
    const sent = u64(Atomics.load(v.i64, slot64(i, S64.SENT)));
    if (locked) spinUnlock(v.i32, lock);
    if (!active || sent === 0n) continue; // free, or not streaming yet
    if (oldest === null || sent < oldest) oldest = sent;
  }
  return oldest;
}

export function activeWalSndCount(v: SharedViews): number {
  let n = 0;
  for (let i = 0; i < v.maxWalSenders; i++) if (Atomics.load(v.i32, slot32(i, S32.PID)) !== 0) n++;
  return n;
}
