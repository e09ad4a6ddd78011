// The control block: what the source publishes (store identity, flush position and
// its timeline) and what the main thread steers (shutdown mode, reloadable settings).
// Senders wait on GENERATION with Atomics.waitAsync; publishers bump it and notify.

import { C32, C64, StoreState, type SharedViews } from './layout.ts';
import { spinLock, spinUnlock, trySpinLock } from './spinlock.ts';

export type StoreIdentity = { sysid: bigint; segSize: number; pageMagic: number };
export type FlushPosition = { flushLsn: bigint; timeline: number };

export function storeIsReady(v: SharedViews): boolean {
  return Atomics.load(v.i32, C32.STORE_STATE) === StoreState.READY;
}

/** Publish the identity of the WAL the store holds; done once, before the first flush position. */
export function publishIdentity(v: SharedViews, id: StoreIdentity, start: FlushPosition): void {
  spinLock(v.i32, C32.LOCK);
  Atomics.store(v.i64, C64.SYSID, id.sysid);
  Atomics.store(v.i32, C32.SEG_SIZE, id.segSize);
  Atomics.store(v.i32, C32.PAGE_MAGIC, id.pageMagic);
  Atomics.store(v.i64, C64.FLUSH_LSN, start.flushLsn);
  Atomics.store(v.i32, C32.TIMELINE, start.timeline);
  Atomics.store(v.i32, C32.STORE_STATE, StoreState.READY);
  spinUnlock(v.i32, C32.LOCK);
  wakeSenders(v);
}

export function storeIdentity(v: SharedViews): StoreIdentity | null {
  if (!storeIsReady(v)) return null;
  return {
    sysid: BigInt.asUintN(64, Atomics.load(v.i64, C64.SYSID)),
    segSize: Atomics.load(v.i32, C32.SEG_SIZE),
    pageMagic: Atomics.load(v.i32, C32.PAGE_MAGIC),
  };
}

/** Publish a new durable end of WAL (and its timeline), then wake every waiting sender. */
export function publishFlush(v: SharedViews, pos: FlushPosition): void {
  spinLock(v.i32, C32.LOCK);
  Atomics.store(v.i64, C64.FLUSH_LSN, pos.flushLsn);
  Atomics.store(v.i32, C32.TIMELINE, pos.timeline);
  spinUnlock(v.i32, C32.LOCK);
  wakeSenders(v);
}

/** Flush position and timeline as one consistent pair (worker threads). */
export function readFlush(v: SharedViews): FlushPosition {
  spinLock(v.i32, C32.LOCK);
  const flushLsn = Atomics.load(v.i64, C64.FLUSH_LSN);
  const timeline = Atomics.load(v.i32, C32.TIMELINE);
  spinUnlock(v.i32, C32.LOCK);
  return { flushLsn: BigInt.asUintN(64, flushLsn), timeline };
}

/** Main-thread variant: bounded spinning; if the lock stays busy, two atomic loads. */
export function peekFlush(v: SharedViews): FlushPosition {
  const locked = trySpinLock(v.i32, C32.LOCK, 100);
  const flushLsn = BigInt.asUintN(64, Atomics.load(v.i64, C64.FLUSH_LSN));
  const timeline = Atomics.load(v.i32, C32.TIMELINE);
  if (locked) spinUnlock(v.i32, C32.LOCK);
  return { flushLsn, timeline };
}

export function generation(v: SharedViews): number {
  return Atomics.load(v.i32, C32.GENERATION);
}

export function wakeSenders(v: SharedViews): void {
  Atomics.add(v.i32, C32.GENERATION, 1);
  Atomics.notify(v.i32, C32.GENERATION);
}

export function shutdownMode(v: SharedViews): number {
  return Atomics.load(v.i32, C32.SHUTDOWN);
}

/** Only ever escalates (NONE -> DRAIN -> FAST). */
export function requestShutdown(v: SharedViews, mode: number): void {
  for (;;) {
    const cur = Atomics.load(v.i32, C32.SHUTDOWN);
    if (cur >= mode) return;
    if (Atomics.compareExchange(v.i32, C32.SHUTDOWN, cur, mode) === cur) break;
  }
  wakeSenders(v);
}

export function walSenderTimeoutMs(v: SharedViews): number {
  return Atomics.load(v.i32, C32.WAL_SENDER_TIMEOUT_MS);
}

export function setWalSenderTimeoutMs(v: SharedViews, ms: number): void {
  Atomics.store(v.i32, C32.WAL_SENDER_TIMEOUT_MS, ms);
  wakeSenders(v); // senders recompute their keepalive/timeout deadlines
}

export function sourceState(v: SharedViews): number {
  return Atomics.load(v.i32, C32.SOURCE_STATE);
}

export function setSourceState(v: SharedViews, state: number): void {
  Atomics.store(v.i32, C32.SOURCE_STATE, state);
}

export function setStartTime(v: SharedViews, pgTime: bigint): void {
  Atomics.store(v.i64, C64.START_TIME, pgTime);
}

/** A process-wide connection id (the "pid" clients see in BackendKeyData). */
export function nextConnectionId(v: SharedViews): number {
  return Atomics.add(v.i32, C32.NEXT_CONN_ID, 1) + 1;
}
