// Owns the two 64-bit scalar types of the replication protocol: the LSN
// (XLogRecPtr) with its `%X/%X` text form, and the protocol timestamp
// (TimestampTz: microseconds since 2000-01-01 00:00:00 UTC).

export const INVALID_LSN = 0n;

const LOW32 = 0xffffffffn;
const MAX_LSN = 0xffffffffffffffffn;

/** `%X/%X`: high and low 32 bits, upper-case hex, no padding (e.g. `0/3068500`). */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & LOW32).toString(16).toUpperCase()}`;
}

// pg_lsn_in: each half is 1..8 hex digits (MAXPG_LSNCOMPONENT), leading zeros
// counted, and nothing may follow.
const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** Parses `%X/%X` the way pg_lsn_in does; null when the text is not an LSN. */
export function parseLsn(text: string): bigint | null {
  const m = LSN_TEXT.exec(text);
  if (m === null) return null;
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** True when `lsn` fits an XLogRecPtr (unsigned 64-bit). */
export function isValidLsnValue(lsn: bigint): boolean {
  return lsn >= 0n && lsn <= MAX_LSN;
}

/** Unix epoch to PostgreSQL epoch (2000-01-01), in microseconds. */
export const PG_EPOCH_OFFSET_MICROS = 946684800000000n;

// Date.now() has millisecond resolution; performance.now() has sub-millisecond
// resolution but is monotonic and drifts from the wall clock (markedly so on some
// VMs). We extrapolate the wall clock from the last anchor with performance.now()
// and re-anchor whenever the estimate leaves the millisecond Date.now() reports,
// so the result tracks the wall clock with microsecond resolution. Small
// backward corrections are absorbed (we repeat the last value instead) so lag
// arithmetic never sees time run backwards; a real wall-clock step back of more
// than a second is followed.
let anchorWallMs = 0;
let anchorMonoMs = 0;
let lastMicros = 0n;
const BACKWARD_STEP_MICROS = 1000000n;

/** Current time as a protocol timestamp (µs since 2000-01-01 UTC). */
export function pgNow(): bigint {
  const mono = performance.now();
  const wall = Date.now();
  let estimate = anchorWallMs + (mono - anchorMonoMs);
  if (anchorWallMs === 0 || estimate < wall || estimate >= wall + 1) {
    anchorWallMs = wall;
    anchorMonoMs = mono;
    estimate = wall;
  }
  const now = BigInt(Math.floor(estimate * 1000)) - PG_EPOCH_OFFSET_MICROS;
  if (now < lastMicros && lastMicros - now < BACKWARD_STEP_MICROS) return lastMicros;
  lastMicros = now;
  return now;
}

/** Protocol timestamp to Date (millisecond precision, floor). */
export function pgTimeToDate(t: bigint): Date {
  const unixMicros = t + PG_EPOCH_OFFSET_MICROS;
  let ms = unixMicros / 1000n;
  if (unixMicros < 0n && unixMicros % 1000n !== 0n) ms -= 1n;
  return new Date(Number(ms));
}

/** Date to protocol timestamp. */
export function dateToPgTime(d: Date): bigint {
  return BigInt(d.getTime()) * 1000n - PG_EPOCH_OFFSET_MICROS;
}
