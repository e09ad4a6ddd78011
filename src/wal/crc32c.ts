// CRC-32C (Castagnoli), as PostgreSQL computes it for WAL records
// (src/common/pg_crc32c_sb8.c, slicing-by-8) and the record CRC rule of
// xlogreader.c ValidXLogRecord: data after the 24-byte header first, then
// header bytes 0..19 (everything before xl_crc).

/** Reflected Castagnoli polynomial (0x1EDC6F41 bit-reversed). */
export const CRC32C_POLY_REFLECTED = 0x82f63b78;

/**
 * 8 tables of 256 entries laid out back to back: T[k * 256 + i].
 * Table 0 is the classic byte-at-a-time table; table k advances a byte that is
 * followed by k more bytes.
 */
const T: Int32Array = buildTables();

function buildTables(): Int32Array {
  const t = new Int32Array(8 * 256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ CRC32C_POLY_REFLECTED : c >>> 1;
    t[i] = c;
  }
  for (let k = 1; k < 8; k++) {
    for (let i = 0; i < 256; i++) {
      const prev = t[(k - 1) * 256 + i]!;
      t[k * 256 + i] = (prev >>> 8) ^ t[prev & 0xff]!;
    }
  }
  return t;
}

/** INIT_CRC32C */
export function crc32cInit(): number {
  return 0xffffffff;
}

/** FIN_CRC32C: returns the final CRC as an unsigned 32-bit number. */
export function crc32cFinish(crc: number): number {
  return (crc ^ 0xffffffff) >>> 0;
}

/**
 * COMP_CRC32C over buf[start, end): continues a running (non-finalised) CRC.
 * Returns the running CRC (unsigned), to be passed on or to crc32cFinish.
 */
export function crc32cUpdate(crc: number, buf: Uint8Array, start = 0, end = buf.length): number {
  let c = crc | 0;
  let i = start;
  // Slicing-by-8 main loop: little-endian word view, exactly as pg_crc32c_sb8.c.
  const stop8 = end - 8;
  while (i <= stop8) {
    c =
      T[7 * 256 + ((c ^ buf[i]!) & 0xff)]! ^
      T[6 * 256 + (((c >>> 8) ^ buf[i + 1]!) & 0xff)]! ^
      T[5 * 256 + (((c >>> 16) ^ buf[i + 2]!) & 0xff)]! ^
      T[4 * 256 + ((c >>> 24) ^ buf[i + 3]!)]! ^
      T[3 * 256 + buf[i + 4]!]! ^
      T[2 * 256 + buf[i + 5]!]! ^
      T[1 * 256 + buf[i + 6]!]! ^
      T[buf[i + 7]!]!;
    i += 8;
  }
  while (i < end) {
    c = T[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
    i++;
  }
  return c >>> 0;
}

/** One-shot CRC-32C of buf[start, end), optionally continuing a running CRC. */
export function crc32c(buf: Uint8Array, start = 0, end = buf.length, crc: number = crc32cInit()): number {
  return crc32cFinish(crc32cUpdate(crc, buf, start, end));
}

/** Size of XLogRecord up to (not including) xl_crc. */
const XL_CRC_OFFSET = 20;
const SIZE_OF_XLOG_RECORD = 24;

/**
 * The CRC PostgreSQL stores in xl_crc for a record of totLen bytes that is
 * contiguous in `record` at `offset`: data after the header, then header bytes 0..19.
 */
export function xlogRecordCrc(record: Uint8Array, offset: number, totLen: number): number {
  let c = crc32cInit();
  c = crc32cUpdate(c, record, offset + SIZE_OF_XLOG_RECORD, offset + totLen);
  c = crc32cUpdate(c, record, offset, offset + XL_CRC_OFFSET);
  return crc32cFinish(c);
}
