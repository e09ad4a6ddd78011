// The one owner of the shared-memory layout: a single SharedArrayBuffer holding the
// control block (published WAL position, store identity, shutdown mode, reloadable
// settings) followed by max_wal_senders WalSnd slots and max_replication_slots
// replication slots. Every other module reaches the memory through the accessors in
// control.ts, walsnd.ts and src/slots/, never by raw offsets.

// Bytes 0-255: the core fields below. Bytes 256-511: the operations area (issue 4):
// log level, counters and the upstream receiver's status, kept apart so parallel
// additions to the core fields never collide with it.
export const CONTROL_BYTES = 512;

// Control block, Int32 word indices.
export const C32 = {
  GENERATION: 0, // bumped and notified whenever new WAL or a state change is published
  LOCK: 1, // spinlock serializing publishers of the flush position and timeline
  STORE_STATE: 2, // StoreState
  TIMELINE: 3, // timeline of the flush position
  SEG_SIZE: 4,
  PAGE_MAGIC: 5,
  SHUTDOWN: 6, // ShutdownMode
  WAL_SENDER_TIMEOUT_MS: 7,
  MAX_WAL_SENDERS: 8,
  SOURCE_STATE: 9, // SourceState
  NEXT_CONN_ID: 10,
  MAX_REPLICATION_SLOTS: 11, // size of the replication slot region after the WalSnd slots
  // Sequence counter of the flush position and timeline: odd while a publisher writes
  // them. Readers retry instead of locking, so a reader's thread that is terminated
  // mid-read leaves nothing held.
  FLUSH_SEQ: 12,
  // Operations area (byte 256 on).
  LOG_LEVEL: 64, // index + 1 into LOG_LEVEL_CODES (control.ts), 0 = unset; workers follow it
  UPSTREAM_CONNECTED: 65, // 1 while the upstream receiver has a streaming connection
} as const;

// Control block, BigInt64 word indices (byte offset = index * 8).
export const C64 = {
  FLUSH_LSN: 8,
  SYSID: 9,
  START_TIME: 10,
  // Retention's removal bound: segments below this segment number may be gone. Raised
  // before the pass re-reads the slots and unlinks, so a slot reserving WAL can tell
  // whether its restart_lsn arrived in time (ReplicationSlotReserveWal's retry).
  REMOVE_BELOW_SEGNO: 11,
  // Operations area (byte 320 on). Counters only grow (Atomics.add), for Prometheus.
  CONNECTIONS_ACCEPTED: 40, // every connection a sender task started on
  CONNECTIONS_REFUSED: 41, // 41 + index into REFUSAL_REASONS (9 words)
  AUTH_FAILURES: 50, // failed authentication exchanges (SQLSTATE class 28)
  SENT_BYTES_TOTAL: 51, // WAL bytes sent by every sender since start
  // The upstream receiver's status (issue 3 publishes with publishUpstreamStatus()).
  UPSTREAM_RECEIVED_LSN: 52, // end of WAL received from upstream
  UPSTREAM_FLUSHED_LSN: 53, // end of WAL received and made durable
  UPSTREAM_SERVER_END_LSN: 54, // the upstream server's end of WAL, from its last message
  UPSTREAM_LAST_MESSAGE_TIME: 55, // PostgreSQL timestamp of the last message from upstream, 0 = none
} as const;

/** Why a connection was refused before it could stream; label values of the refusal counter. */
export const REFUSAL_REASONS = [
  'too_many_senders', // 53300: max_wal_senders reached
  'shutting_down', // 57P03
  'starting_up', // 57P03, the store has no WAL yet
  'not_physical_replication', // 0A000: not replication=true
  'protocol_violation', // 08P01
  'authentication_failed', // class 28
  'startup_timeout', // authentication_timeout passed
  'too_many_clients', // 53300: every sender task busy, refused by the main thread
  'other',
] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

export const StoreState = { STARTING: 0, READY: 1 } as const;
// DISK_FULL: writing WAL failed for lack of space; senders keep serving what is stored.
export const SourceState = { STARTING: 0, RUNNING: 1, STOPPED: 2, FAILED: 3, WAITING: 4, DISK_FULL: 5 } as const;
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
  TERMINATE: 3, // connection id the admin API asked to end (FATAL 57P01); ignored by any other holder
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

// Replication slots (issue 6): max_replication_slots entries after the WalSnd slots.
export const R32 = {
  LOCK: 0,
  IN_USE: 1,
  ACTIVE_PID: 2, // connection holding the slot, 0 = inactive
  TEMPORARY: 3,
  WAL_STATUS: 4, // WalStatus
  NAME_LEN: 5,
  RESTART_TLI: 6,
  VERSION: 7, // bumped on every change, so owners know when to persist
} as const;
export const REPL_SLOT_INT32_WORDS = 8;
export const R64 = {
  RESTART_LSN: 0, // 0 = none (NULL)
  INVALIDATED_AT: 1, // restart_lsn when the slot was marked lost
} as const;
export const REPL_SLOT_INT64_WORDS = 2;
export const REPL_SLOT_NAME_BYTES = 64;
const REPL_SLOT_NAME_OFFSET = REPL_SLOT_INT32_WORDS * 4 + REPL_SLOT_INT64_WORDS * 8;
export const REPL_SLOT_BYTES = REPL_SLOT_NAME_OFFSET + REPL_SLOT_NAME_BYTES;
// pg_replication_slots.wal_status
export const WalStatus = { RESERVED: 0, EXTENDED: 1, UNRESERVED: 2, LOST: 3 } as const;
export const WAL_STATUS_NAMES = ['reserved', 'extended', 'unreserved', 'lost'] as const;

export function sharedMemorySize(maxWalSenders: number, maxReplicationSlots = 0): number {
  return CONTROL_BYTES + maxWalSenders * SLOT_BYTES + maxReplicationSlots * REPL_SLOT_BYTES;
}

export function slotByteOffset(index: number): number {
  return CONTROL_BYTES + index * SLOT_BYTES;
}

/** Byte offset of replication slot `index` (after all WalSnd slots). */
export function replSlotByteOffset(v: SharedViews, index: number): number {
  return CONTROL_BYTES + v.maxWalSenders * SLOT_BYTES + index * REPL_SLOT_BYTES;
}
export const replSlot32 = (v: SharedViews, index: number, field: number): number => (replSlotByteOffset(v, index) >> 2) + field;
export const replSlot64 = (v: SharedViews, index: number, field: number): number =>
  ((replSlotByteOffset(v, index) + REPL_SLOT_INT32_WORDS * 4) >> 3) + field;
export const replSlotNameOffset = (v: SharedViews, index: number): number => replSlotByteOffset(v, index) + REPL_SLOT_NAME_OFFSET;

/** Typed views over one SharedArrayBuffer; cheap to build in every thread. */
export type SharedViews = {
  sab: SharedArrayBuffer;
  i32: Int32Array;
  i64: BigInt64Array;
  u8: Uint8Array;
  maxWalSenders: number;
  maxReplicationSlots: number;
};

export function viewsOf(sab: SharedArrayBuffer): SharedViews {
  const i32 = new Int32Array(sab);
  const maxWalSenders = i32[C32.MAX_WAL_SENDERS]!;
  const maxReplicationSlots = i32[C32.MAX_REPLICATION_SLOTS]!;
  if (sab.byteLength !== sharedMemorySize(maxWalSenders, maxReplicationSlots)) {
    throw new Error(`shared memory of ${sab.byteLength} bytes does not match the layout`);
  }
  return { sab, i32, i64: new BigInt64Array(sab), u8: new Uint8Array(sab), maxWalSenders, maxReplicationSlots };
}

export function createSharedMemory(maxWalSenders: number, maxReplicationSlots = 0): SharedViews {
  const sab = new SharedArrayBuffer(sharedMemorySize(maxWalSenders, maxReplicationSlots));
  const i32 = new Int32Array(sab);
  i32[C32.MAX_WAL_SENDERS] = maxWalSenders;
  i32[C32.MAX_REPLICATION_SLOTS] = maxReplicationSlots;
  i32[C32.NEXT_CONN_ID] = 0;
  return viewsOf(sab);
}

/** Int32 word index of a field in slot `index`. */
export function slot32(index: number, field: number): number {
  return (slotByteOffset(index) >> 2) + field;
}

/** BigInt64 word index of a field in slot `index`. */
export function slot64(index: number, field: number): number {
  return ((slotByteOffset(index) + SLOT_INT64_OFFSET) >> 3) + field;
}
