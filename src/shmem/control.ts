// The control block: what the source publishes (store identity, flush position and
// its timeline) and what the main thread steers (shutdown mode, reloadable settings).
// Senders wait on GENERATION with Atomics.waitAsync; publishers bump it and notify.

import { C32, C64, REFUSAL_REASONS, StoreState, type RefusalReason, type SharedViews } from './layout.ts';
import { pause, spinLock, spinUnlock } from './spinlock.ts';

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
  storeFlush(v, start);
  Atomics.store(v.i32, C32.STORE_STATE, StoreState.READY);
  spinUnlock(v.i32, C32.LOCK);
  wakeSenders(v);
}

/** The two words under the sequence counter (publishers hold C32.LOCK). */
function storeFlush(v: SharedViews, pos: FlushPosition): void {
  Atomics.add(v.i32, C32.FLUSH_SEQ, 1); // odd: being written
  Atomics.store(v.i64, C64.FLUSH_LSN, pos.flushLsn);
  Atomics.store(v.i32, C32.TIMELINE, pos.timeline);
  Atomics.add(v.i32, C32.FLUSH_SEQ, 1); // even again
}

/** One consistent read of the pair, or null if a publisher was writing it meanwhile. */
function tryReadFlush(v: SharedViews): FlushPosition | null {
  const seq = Atomics.load(v.i32, C32.FLUSH_SEQ);
  if (seq & 1) return null;
  const flushLsn = BigInt.asUintN(64, Atomics.load(v.i64, C64.FLUSH_LSN));
  const timeline = Atomics.load(v.i32, C32.TIMELINE);
  return Atomics.load(v.i32, C32.FLUSH_SEQ) === seq ? { flushLsn, timeline } : null;
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
  storeFlush(v, pos);
  spinUnlock(v.i32, C32.LOCK);
  wakeSenders(v);
}

/** Flush position and timeline as one consistent pair (worker threads). */
export function readFlush(v: SharedViews): FlushPosition {
  for (let spins = 1; ; spins++) {
    const pos = tryReadFlush(v);
    if (pos) return pos;
    pause(spins < 64 ? spins : 64);
  }
}

/** Main-thread variant: bounded retries; if a publisher stays busy, two atomic loads. */
export function peekFlush(v: SharedViews): FlushPosition {
  for (let tries = 0; tries < 100; tries++) {
    const pos = tryReadFlush(v);
    if (pos) return pos;
    pause(8);
  }
  return { flushLsn: BigInt.asUintN(64, Atomics.load(v.i64, C64.FLUSH_LSN)), timeline: Atomics.load(v.i32, C32.TIMELINE) };
}

/**
 * Retention is about to remove the segments below `segno`. Only ever raised. Published
 * before retention re-reads the replication slots (see reserveWal in src/slots/slots.ts).
 */
export function publishRemovalBound(v: SharedViews, segno: bigint): void {
  for (;;) {
    const cur = Atomics.load(v.i64, C64.REMOVE_BELOW_SEGNO);
    if (cur >= segno) return;
    if (Atomics.compareExchange(v.i64, C64.REMOVE_BELOW_SEGNO, cur, segno) === cur) return;
  }
}

/** Segments below this number may have been removed by retention. */
export function removalBound(v: SharedViews): bigint {
  return Atomics.load(v.i64, C64.REMOVE_BELOW_SEGNO);
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

// ---------------------------------------------------------------------------
// Operations area (issue 4): the log level every thread follows, counters for
// Prometheus and the upstream receiver's status. Writers use Atomics only; the main
// thread reads them at scrape time.
// ---------------------------------------------------------------------------

/** pino level names, in the order their codes are stored in C32.LOG_LEVEL. */
export const LOG_LEVEL_CODES = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Main thread, at start and on reload: the level every thread's logger follows. */
export function setLogLevel(v: SharedViews, level: string): void {
  const i = (LOG_LEVEL_CODES as readonly string[]).indexOf(level);
  Atomics.store(v.i32, C32.LOG_LEVEL, i < 0 ? 0 : i + 1);
}

/** The published log level, or null if none was published. */
export function logLevel(v: SharedViews): string | null {
  return LOG_LEVEL_CODES[Atomics.load(v.i32, C32.LOG_LEVEL) - 1] ?? null;
}

/** Any thread: one more connection handed to a sender task. */
export function countConnectionAccepted(v: SharedViews): void {
  Atomics.add(v.i64, C64.CONNECTIONS_ACCEPTED, 1n);
}

/** Any thread: a connection refused before streaming, by reason. */
export function countConnectionRefused(v: SharedViews, reason: RefusalReason): void {
  Atomics.add(v.i64, C64.CONNECTIONS_REFUSED + REFUSAL_REASONS.indexOf(reason), 1n);
}

/** Any thread: a failed authentication exchange (counted apart from the refusal). */
export function countAuthFailure(v: SharedViews): void {
  Atomics.add(v.i64, C64.AUTH_FAILURES, 1n);
}

/** Sender threads: WAL bytes just written to a standby. */
export function countSentBytes(v: SharedViews, bytes: bigint): void {
  Atomics.add(v.i64, C64.SENT_BYTES_TOTAL, bytes);
}

export type ConnectionCounters = {
  accepted: bigint;
  refused: Record<RefusalReason, bigint>;
  authFailures: bigint;
  sentBytes: bigint;
};

export function connectionCounters(v: SharedViews): ConnectionCounters {
  const refused = {} as Record<RefusalReason, bigint>;
  REFUSAL_REASONS.forEach((r, i) => { refused[r] = Atomics.load(v.i64, C64.CONNECTIONS_REFUSED + i); });
  return {
    accepted: Atomics.load(v.i64, C64.CONNECTIONS_ACCEPTED),
    refused,
    authFailures: Atomics.load(v.i64, C64.AUTH_FAILURES),
    sentBytes: BigInt.asUintN(64, Atomics.load(v.i64, C64.SENT_BYTES_TOTAL)),
  };
}

export type UpstreamStatus = {
  connected: boolean;
  receivedLsn: bigint;
  flushedLsn: bigint;
  /** The upstream server's end of WAL as of its last message (XLogData/keepalive walEnd). */
  serverEndLsn: bigint;
  /** PostgreSQL timestamp of the last message received, 0 = none yet. */
  lastMessageTime: bigint;
};

/**
 * The upstream receiver (ingest thread) publishes its status; every field is optional
 * so it can update just what changed. Each value is one atomic store: readers may see
 * a mix of two updates, which is harmless for metrics.
 */
export function publishUpstreamStatus(v: SharedViews, s: Partial<UpstreamStatus>): void {
  if (s.receivedLsn !== undefined) Atomics.store(v.i64, C64.UPSTREAM_RECEIVED_LSN, s.receivedLsn);
  if (s.flushedLsn !== undefined) Atomics.store(v.i64, C64.UPSTREAM_FLUSHED_LSN, s.flushedLsn);
  if (s.serverEndLsn !== undefined) Atomics.store(v.i64, C64.UPSTREAM_SERVER_END_LSN, s.serverEndLsn);
  if (s.lastMessageTime !== undefined) Atomics.store(v.i64, C64.UPSTREAM_LAST_MESSAGE_TIME, s.lastMessageTime);
  if (s.connected !== undefined) Atomics.store(v.i32, C32.UPSTREAM_CONNECTED, s.connected ? 1 : 0);
}

export function upstreamStatus(v: SharedViews): UpstreamStatus {
  const u = (i: number): bigint => BigInt.asUintN(64, Atomics.load(v.i64, i));
  return {
    connected: Atomics.load(v.i32, C32.UPSTREAM_CONNECTED) === 1,
    receivedLsn: u(C64.UPSTREAM_RECEIVED_LSN),
    flushedLsn: u(C64.UPSTREAM_FLUSHED_LSN),
    serverEndLsn: u(C64.UPSTREAM_SERVER_END_LSN),
    lastMessageTime: Atomics.load(v.i64, C64.UPSTREAM_LAST_MESSAGE_TIME),
  };
}

export function startTime(v: SharedViews): bigint {
  return Atomics.load(v.i64, C64.START_TIME);
}
