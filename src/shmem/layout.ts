// The one owner of the shared-memory layout: a single SharedArrayBuffer holding the
// control block (published WAL position, store identity, shutdown mode, reloadable
// settings) followed by max_wal_senders WalSnd slots. Every other module reaches the
// memory through the accessors in control.ts and walsnd.ts, never by raw offsets.

export const CONTROL_BYTES = 256;

// Control block, Int32 word indices.
export const C32 = {
  GENERATION: 0, // bumped and notified whenever new WAL or a state change is published
  LOCK: 1, // spinlock guarding the 64-bit flush position together with the timeline
  STORE_STATE: 2, // StoreState
  TIMELINE: 3, // timeline of the flush position
  SEG_SIZE: 4,
  PAGE_MAGIC: 5,
  SHUTDOWN: 6, // ShutdownMode
  WAL_SENDER_TIMEOUT_MS: 7,
  MAX_WAL_SENDERS: 8,
  SOURCE_STATE: 9, // SourceState
  NEXT_CONN_ID: 10,
} as const;

// Control block, BigInt64 word indices (byte offset = index * 8).
export const C64 = {
  FLUSH_LSN: 8,
  SYSID: 9,
  START_TIME: 10,
} as const;

export const StoreState = { STARTING: 0, READY: 1 } as const;
export const SourceState = { STARTING: 0, RUNNING: 1, STOPPED: 2, FAILED: 3, WAITING: 4 } as const;
// DRAIN: SIGTERM/SIGUSR2, send everything up to the final flush position then "COPY 0".
// FAST: SIGINT, close at once.
export const ShutdownMode = { NONE: 0, DRAIN: 1, FAST: 2 } as const;

// WalSndState as in walsender_private.h, plus FREE for an unused slot.
export const WalSndState = { FREE: 0, STARTUP: 1, BACKUP: 2, CATCHUP: 3, STREAMING: 4, STOPPING: 5 } as const;
export type WalSndStateValue = (typeof WalSndState)[keyof typeof WalSndState];
export const WAL_SND_STATE_NAMES = ['free', 'startup', 'backup', 'catchup', 'streaming', 'stopping'] as const;

// One WalSnd slot. Int32 words first, then 8-byte aligned BigInt64 words, then strings.
export const S32 = {
  LOCK: 0,
  STATE: 1,
  PID: 2, // connection id; 0 = free
  TERMINATE: 3, // set by the admin API: the sender ends with FATAL 57P01
  CLIENT_PORT: 4,
  OWNER_THREAD: 5, // worker threadId, so the main thread can reclaim slots of a dead thread
  APP_NAME_LEN: 6,
  CLIENT_ADDR_LEN: 7,
  SLOT_NAME_LEN: 8,
  TIMELINE: 9,
} as const;
export const SLOT_INT32_WORDS = 12; // 48 bytes, keeps the 64-bit area aligned

export const S64 = {
  SENT: 0,
  WRITE: 1,
  FLUSH: 2,
  REPLAY: 3,
  WRITE_LAG: 4, // microseconds, -1 = NULL
  FLUSH_LAG: 5,
  REPLAY_LAG: 6,
  REPLY_TIME: 7, // PostgreSQL timestamp of the last reply, 0 = NULL
  BACKEND_START: 8, // PostgreSQL timestamp
  BYTES_SENT: 9,
} as const;
export const SLOT_INT64_WORDS = 10;

export const APP_NAME_BYTES = 64; // NAMEDATALEN
export const CLIENT_ADDR_BYTES = 48; // INET6_ADDRSTRLEN rounded up
export const SLOT_NAME_BYTES = 64;

const SLOT_INT64_OFFSET = SLOT_INT32_WORDS * 4;
const SLOT_STRINGS_OFFSET = SLOT_INT64_OFFSET + SLOT_INT64_WORDS * 8;
export const SLOT_STRING_OFFSETS = {
  APP_NAME: SLOT_STRINGS_OFFSET,
  CLIENT_ADDR: SLOT_STRINGS_OFFSET + APP_NAME_BYTES,
  SLOT_NAME: SLOT_STRINGS_OFFSET + APP_NAME_BYTES + CLIENT_ADDR_BYTES,
} as const;
export const SLOT_BYTES = SLOT_STRINGS_OFFSET + APP_NAME_BYTES + CLIENT_ADDR_BYTES + SLOT_NAME_BYTES;

if (SLOT_BYTES % 8 !== 0) throw new Error('WalSnd slot size must stay 8-byte aligned');

export function sharedMemorySize(maxWalSenders: number): number {
  return CONTROL_BYTES + maxWalSenders * SLOT_BYTES;
}

export function slotByteOffset(index: number): number {
  return CONTROL_BYTES + index * SLOT_BYTES;
}

/** Typed views over one SharedArrayBuffer; cheap to build in every thread. */
export type SharedViews = {
  sab: SharedArrayBuffer;
  i32: Int32Array;
  i64: BigInt64Array;
  u8: Uint8Array;
  maxWalSenders: number;
};

export function viewsOf(sab: SharedArrayBuffer): SharedViews {
  const maxWalSenders = (sab.byteLength - CONTROL_BYTES) / SLOT_BYTES;
  if (!Number.isInteger(maxWalSenders) || maxWalSenders < 0) {
    throw new Error(`shared memory of ${sab.byteLength} bytes does not match the layout`);
  }
  return { sab, i32: new Int32Array(sab), i64: new BigInt64Array(sab), u8: new Uint8Array(sab), maxWalSenders };
}

export function createSharedMemory(maxWalSenders: number): SharedViews {
  const views = viewsOf(new SharedArrayBuffer(sharedMemorySize(maxWalSenders)));
  views.i32[C32.MAX_WAL_SENDERS] = maxWalSenders;
  views.i32[C32.NEXT_CONN_ID] = 0;
  return views;
}

/** Int32 word index of a field in slot `index`. */
export function slot32(index: number, field: number): number {
  return (slotByteOffset(index) >> 2) + field;
}

/** BigInt64 word index of a field in slot `index`. */
export function slot64(index: number, field: number): number {
  return ((slotByteOffset(index) + SLOT_INT64_OFFSET) >> 3) + field;
}
