// WAL segment arithmetic and file names (xlog_internal.h): segment numbers,
// segment start LSNs, `%08X%08X%08X` segment file names (with `.partial`),
// `%08X.history` timeline history file names, and %X/%X LSN formatting.

/** XLOG_BLCKSZ: WAL page size, fixed at compile time in PostgreSQL. */
export const XLOG_BLCKSZ = 8192;

/** DEFAULT_XLOG_SEG_SIZE */
export const DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024;
export const MIN_SEGMENT_SIZE = 1024 * 1024;
export const MAX_SEGMENT_SIZE = 1024 * 1024 * 1024;

/** IsValidWalSegSize: a power of two from 1 MiB to 1 GiB. */
export function isValidSegmentSize(n: number): boolean {
  return Number.isInteger(n) && n >= MIN_SEGMENT_SIZE && n <= MAX_SEGMENT_SIZE && (n & (n - 1)) === 0;
}

function checkSegSize(segSize: number): void {
  if (!isValidSegmentSize(segSize)) throw new RangeError(`invalid WAL segment size ${segSize}`);
}

/** XLogSegmentsPerXLogId: 0x100000000 / segSize (256 for 16 MiB segments). */
export function segmentsPerXLogId(segSize: number): number {
  checkSegSize(segSize);
  return 0x100000000 / segSize;
}

/** XLByteToSeg: the segment number holding lsn. */
export function segnoOf(lsn: bigint, segSize: number): bigint {
  return lsn / BigInt(segSize);
}

/** XLByteToPrevSeg: the segment holding the byte just before lsn (for end positions). */
export function prevSegnoOf(lsn: bigint, segSize: number): bigint {
  return (lsn - 1n) / BigInt(segSize);
}

/** XLogSegNoOffsetToRecPtr(segno, 0): LSN of a segment's first byte. */
export function segmentStartLsn(segno: bigint, segSize: number): bigint {
  return segno * BigInt(segSize);
}

/** XLogSegmentOffset: the byte offset of lsn inside its segment. */
export function segmentOffset(lsn: bigint, segSize: number): number {
  return Number(lsn % BigInt(segSize));
}

/** XLogRecPtr formatted as PostgreSQL prints it (LSN_FORMAT_ARGS, "%X/%X"). */
export function formatLsn(lsn: bigint): string {
  const hi = lsn >> 32n;
  const lo = lsn & 0xffffffffn;
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`;
}

function hex8(n: number | bigint): string {
  return n.toString(16).toUpperCase().padStart(8, '0');
}

/** XLogFileName: `%08X%08X%08X` of tli, segno / segsPerId, segno % segsPerId. */
export function segmentFileName(tli: number, segno: bigint, segSize: number): string {
  const perId = BigInt(segmentsPerXLogId(segSize));
  return hex8(tli) + hex8(segno / perId) + hex8(segno % perId);
}

const SEGMENT_NAME_RE = /^[0-9A-F]{24}$/;
const PARTIAL_NAME_RE = /^[0-9A-F]{24}\.partial$/;
const HISTORY_NAME_RE = /^[0-9A-F]{8}\.history$/;

/** IsXLogFileName: exactly 24 upper-case hex characters. */
export function isSegmentFileNameShape(name: string): boolean {
  return SEGMENT_NAME_RE.test(name);
}

/** IsPartialXLogFileName: 24 upper-case hex characters followed by `.partial`. */
export function isPartialSegmentFileNameShape(name: string): boolean {
  return PARTIAL_NAME_RE.test(name);
}

export type ParsedSegmentFileName = { tli: number; segno: bigint; partial: boolean };

/**
 * XLogFromFileName, accepting an optional `.partial` suffix. Returns null for
 * anything that is not a segment file name for this segment size (wrong shape,
 * timeline 0, or a segment part >= segmentsPerXLogId).
 */
export function parseSegmentFileName(name: string, segSize: number): ParsedSegmentFileName | null {
  let partial = false;
  let base = name;
  if (PARTIAL_NAME_RE.test(name)) {
    partial = true;
    base = name.slice(0, 24);
  } else if (!SEGMENT_NAME_RE.test(name)) {
    return null;
  }
  const tli = parseInt(base.slice(0, 8), 16);
  const log = BigInt(parseInt(base.slice(8, 16), 16));
  const seg = BigInt(parseInt(base.slice(16, 24), 16));
  const perId = BigInt(segmentsPerXLogId(segSize));
  if (tli === 0 || seg >= perId) return null;
  return { tli, segno: log * perId + seg, partial };
}

/** TLHistoryFileName: `%08X.history`. */
export function historyFileName(tli: number): string {
  return `${hex8(tli)}.history`;
}

/** IsTLHistoryFileName; returns the timeline, or null if not a history file name. */
export function parseHistoryFileName(name: string): number | null {
  if (!HISTORY_NAME_RE.test(name)) return null;
  const tli = parseInt(name.slice(0, 8), 16);
  return tli === 0 ? null : tli;
}
