// WAL record headers (xlogrecord.h XLogRecord): constants, MAXALIGN, decoding
// the 24-byte header, and building XLOG_NOOP / XLOG_SWITCH records with a
// main-data block and a valid CRC-32C, as XLogInsert would lay them out.

import { xlogRecordCrc } from './crc32c.ts';

/** SizeOfXLogRecord */
export const SIZE_OF_XLOG_RECORD = 24;
/** MAXIMUM_ALIGNOF on x86-64 */
export const MAXIMUM_ALIGNOF = 8;

/** Resource manager ids (rmgrlist.h) used here. RM_MAX_BUILTIN_ID is PG15's. */
export const RM_XLOG_ID = 0;
export const RM_MAX_BUILTIN_ID = 21;
export const RM_MIN_CUSTOM_ID = 128;

/** XLOG rmgr opcodes (pg_control.h), in the high nibble of xl_info. */
export const XLOG_CHECKPOINT_SHUTDOWN = 0x00;
export const XLOG_CHECKPOINT_ONLINE = 0x10;
export const XLOG_NOOP = 0x20;
export const XLOG_NEXTOID = 0x30;
export const XLOG_SWITCH = 0x40;

/** Low nibble of xl_info is reserved for XLogInsert flags. */
export const XLR_INFO_MASK = 0x0f;
export const XLR_RMGR_INFO_MASK = 0xf0;

/** Block ids of the data headers that follow XLogRecord. */
export const XLR_BLOCK_ID_DATA_SHORT = 255;
export const XLR_BLOCK_ID_DATA_LONG = 254;
export const XLR_BLOCK_ID_ORIGIN = 253;
export const XLR_BLOCK_ID_TOPLEVEL_XID = 252;
export const XLR_MAX_BLOCK_ID = 32;

/** Largest record PostgreSQL accepts (XLogRecordMaxSize, PG15: 1020 MB). */
export const XLOG_RECORD_MAX_SIZE = 1020 * 1024 * 1024;

/** MAXALIGN */
export function maxAlign(n: number): number {
  return (n + (MAXIMUM_ALIGNOF - 1)) & ~(MAXIMUM_ALIGNOF - 1);
}

/** MAXALIGN for LSNs. */
export function maxAlignLsn(lsn: bigint): bigint {
  return (lsn + 7n) & ~7n;
}

export type XLogRecordHeader = {
  totLen: number;
  xid: number;
  prev: bigint;
  info: number;
  rmid: number;
  crc: number;
};

/** Decodes the XLogRecord header at buf[off] (24 bytes must be present). */
export function readRecordHeader(buf: Uint8Array, off: number): XLogRecordHeader {
  if (off + SIZE_OF_XLOG_RECORD > buf.length) throw new RangeError('buffer too short for an XLogRecord header');
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return {
    totLen: dv.getUint32(off, true),
    xid: dv.getUint32(off + 4, true),
    prev: dv.getBigUint64(off + 8, true),
    info: buf[off + 16]!,
    rmid: buf[off + 17]!,
    crc: dv.getUint32(off + 20, true),
  };
}

/** True for an rmid PostgreSQL 15 knows (built-in or custom range), as RmgrIdIsValid. */
export function isValidRmid(rmid: number): boolean {
  return rmid <= RM_MAX_BUILTIN_ID || rmid >= RM_MIN_CUSTOM_ID;
}

/** True if the header describes an XLOG_SWITCH record. */
export function isSwitchRecord(h: { rmid: number; info: number }): boolean {
  return h.rmid === RM_XLOG_ID && (h.info & ~XLR_INFO_MASK) === XLOG_SWITCH;
}

/** Total length (xl_tot_len) of a record whose only content is `mainDataLen` bytes of main data. */
export function mainDataRecordLength(mainDataLen: number): number {
  return SIZE_OF_XLOG_RECORD + (mainDataLen === 0 ? 0 : mainDataLen <= 255 ? 2 : 5) + mainDataLen;
}

/**
 * Writes a record (rmid, info) whose only content is main data into `out` at
 * `off`, with xl_prev = prev and a valid CRC. Returns xl_tot_len. `out` must
 * have mainDataRecordLength(payload.length) bytes free at `off`.
 */
export function writeMainDataRecord(
  out: Uint8Array,
  off: number,
  rmid: number,
  info: number,
  prev: bigint,
  payload: Uint8Array,
  xid = 0,
): number {
  const totLen = mainDataRecordLength(payload.length);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  dv.setUint32(off, totLen, true);
  dv.setUint32(off + 4, xid, true);
  dv.setBigUint64(off + 8, prev, true);
  out[off + 16] = info;
  out[off + 17] = rmid;
  out[off + 18] = 0;
  out[off + 19] = 0;
  let p = off + SIZE_OF_XLOG_RECORD;
  if (payload.length > 0 && payload.length <= 255) {
    out[p++] = XLR_BLOCK_ID_DATA_SHORT;
    out[p++] = payload.length;
  } else if (payload.length > 255) {
    out[p++] = XLR_BLOCK_ID_DATA_LONG;
    dv.setUint32(p, payload.length, true);
    p += 4;
  }
  out.set(payload, p);
  dv.setUint32(off + 20, xlogRecordCrc(out, off, totLen), true);
  return totLen;
}

/** An XLOG_NOOP record (RM_XLOG_ID, info 0x20) carrying `payload` as its main data. */
export function buildNoopRecord(prev: bigint, payload: Uint8Array): Buffer {
  const buf = Buffer.alloc(mainDataRecordLength(payload.length));
  writeMainDataRecord(buf, 0, RM_XLOG_ID, XLOG_NOOP, prev, payload);
  return buf;
}

/** An XLOG_SWITCH record (no data, 24 bytes), as RequestXLogSwitch inserts it. */
export function buildSwitchRecord(prev: bigint): Buffer {
  const buf = Buffer.alloc(SIZE_OF_XLOG_RECORD);
  writeMainDataRecord(buf, 0, RM_XLOG_ID, XLOG_SWITCH, prev, new Uint8Array(0));
  return buf;
}
