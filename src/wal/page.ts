// WAL page headers (xlog_internal.h XLogPageHeaderData / XLogLongPageHeaderData):
// flags, sizes, XLOG_PAGE_MAGIC per major version, read/write, and the
// long-header checks of xlogreader.c XLogReaderValidatePageHeader for a
// segment's first page.

import {
  XLOG_BLCKSZ,
  formatLsn,
  isValidSegmentSize,
  segmentFileName,
  segnoOf,
} from './segment.ts';

export const XLP_FIRST_IS_CONTRECORD = 0x0001;
export const XLP_LONG_HEADER = 0x0002;
export const XLP_BKP_REMOVABLE = 0x0004;
export const XLP_FIRST_IS_OVERWRITE_CONTRECORD = 0x0008;
export const XLP_ALL_FLAGS = 0x000f;

/** SizeOfXLogShortPHD = MAXALIGN(20) */
export const SIZE_OF_SHORT_PHD = 24;
/** SizeOfXLogLongPHD = MAXALIGN(36) */
export const SIZE_OF_LONG_PHD = 40;

/** XLOG_PAGE_MAGIC of each PostgreSQL major version. */
export const PAGE_MAGIC_BY_MAJOR = {
  13: 0xd106,
  14: 0xd10d,
  15: 0xd110,
  16: 0xd113,
  17: 0xd116,
  18: 0xd118,
} as const;

export const PG15_PAGE_MAGIC = PAGE_MAGIC_BY_MAJOR[15];

/** The PostgreSQL major version that writes this XLOG_PAGE_MAGIC, or null if unknown. */
export function majorVersionFromMagic(magic: number): number | null {
  for (const [major, m] of Object.entries(PAGE_MAGIC_BY_MAJOR)) {
    if (m === magic) return Number(major);
  }
  return null;
}

export type LongPageHeader = { sysid: bigint; segSize: number; blcksz: number };

export type PageHeader = {
  magic: number;
  info: number;
  tli: number;
  pageAddr: bigint;
  remLen: number;
  /** Present when info has XLP_LONG_HEADER. */
  long?: LongPageHeader;
};

function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Size of the header this page carries (40 with XLP_LONG_HEADER, else 24): XLogPageHeaderSize. */
export function pageHeaderSize(h: { info: number }): number {
  return h.info & XLP_LONG_HEADER ? SIZE_OF_LONG_PHD : SIZE_OF_SHORT_PHD;
}

/** Decodes the page header at buf[offset]. Throws RangeError if the buffer is too short. */
export function readPageHeader(buf: Uint8Array, offset: number): PageHeader {
  if (offset + SIZE_OF_SHORT_PHD > buf.length) throw new RangeError('buffer too short for a WAL page header');
  const dv = view(buf);
  const h: PageHeader = {
    magic: dv.getUint16(offset, true),
    info: dv.getUint16(offset + 2, true),
    tli: dv.getUint32(offset + 4, true),
    pageAddr: dv.getBigUint64(offset + 8, true),
    remLen: dv.getUint32(offset + 16, true),
  };
  if (h.info & XLP_LONG_HEADER) {
    if (offset + SIZE_OF_LONG_PHD > buf.length) throw new RangeError('buffer too short for a long WAL page header');
    h.long = {
      sysid: dv.getBigUint64(offset + 24, true),
      segSize: dv.getUint32(offset + 32, true),
      blcksz: dv.getUint32(offset + 36, true),
    };
  }
  return h;
}

/**
 * Encodes h at buf[offset] (padding zeroed). Writes the long part when h.long is
 * given; the caller sets XLP_LONG_HEADER in h.info. Returns the bytes written (24 or 40).
 */
export function writePageHeader(buf: Uint8Array, offset: number, h: PageHeader): number {
  const size = h.long ? SIZE_OF_LONG_PHD : SIZE_OF_SHORT_PHD;
  if (offset + size > buf.length) throw new RangeError('buffer too short for a WAL page header');
  const dv = view(buf);
  dv.setUint16(offset, h.magic, true);
  dv.setUint16(offset + 2, h.info, true);
  dv.setUint32(offset + 4, h.tli, true);
  dv.setBigUint64(offset + 8, h.pageAddr, true);
  dv.setUint32(offset + 16, h.remLen, true);
  dv.setUint32(offset + 20, 0, true);
  if (h.long) {
    dv.setBigUint64(offset + 24, h.long.sysid, true);
    dv.setUint32(offset + 32, h.long.segSize, true);
    dv.setUint32(offset + 36, h.long.blcksz, true);
  }
  return size;
}

function hex4(n: number): string {
  return n.toString(16).toUpperCase().padStart(4, '0');
}

export type SegmentHeaderExpectation = {
  /** LSN of the segment's first byte: xlp_pageaddr must equal it. */
  segStartLsn: bigint;
  segSize?: number;
  sysid?: bigint;
  /** TLI in the file name: xlp_tli may not be above it. */
  fileTli?: number;
  /** If given, xlp_magic must be exactly this (e.g. the server's major). */
  pageMagic?: number;
};

/**
 * Checks the long header on a segment's first page. Returns a reason in the
 * style of xlogreader.c, or null if the header is valid.
 */
export function validateSegmentLongHeader(firstPage: Uint8Array, expect: SegmentHeaderExpectation): string | null {
  if (firstPage.length < SIZE_OF_LONG_PHD) return `WAL segment too short: ${firstPage.length} bytes`;
  const h = readPageHeader(firstPage, 0);
  // The file name in messages: the name the segment should have (needs a segment size).
  const longSegSize = h.long?.segSize;
  const nameSegSize =
    expect.segSize !== undefined && isValidSegmentSize(expect.segSize)
      ? expect.segSize
      : longSegSize !== undefined && isValidSegmentSize(longSegSize)
        ? longSegSize
        : undefined;
  const fname =
    nameSegSize !== undefined
      ? segmentFileName(expect.fileTli ?? (h.tli || 1), segnoOf(expect.segStartLsn, nameSegSize), nameSegSize)
      : `at ${formatLsn(expect.segStartLsn)}`;

  if (majorVersionFromMagic(h.magic) === null || (expect.pageMagic !== undefined && h.magic !== expect.pageMagic)) {
    return `invalid magic number ${hex4(h.magic)} in log segment ${fname}, offset 0`;
  }
  if ((h.info & ~XLP_ALL_FLAGS) !== 0) {
    return `invalid info bits ${hex4(h.info)} in log segment ${fname}, offset 0`;
  }
  if (!(h.info & XLP_LONG_HEADER)) {
    return `missing long page header in log segment ${fname}, offset 0`;
  }
  const long = h.long!;
  if (expect.sysid !== undefined && long.sysid !== expect.sysid) {
    return (
      'WAL file is from different database system: WAL file database system identifier is ' +
      `${long.sysid}, pg_control database system identifier is ${expect.sysid}`
    );
  }
  if (!isValidSegmentSize(long.segSize)) {
    return `WAL file has invalid segment size ${long.segSize}`;
  }
  if (expect.segSize !== undefined && long.segSize !== expect.segSize) {
    return `WAL file has segment size ${long.segSize}, expected ${expect.segSize}`;
  }
  if (long.blcksz !== XLOG_BLCKSZ) {
    return `WAL file is from different database system: incorrect XLOG_BLCKSZ ${long.blcksz} in page header, expected ${XLOG_BLCKSZ}`;
  }
  if (h.pageAddr !== expect.segStartLsn) {
    return `unexpected pageaddr ${formatLsn(h.pageAddr)} in log segment ${fname}, offset 0`;
  }
  if (h.tli === 0) {
    return `invalid timeline ID 0 in log segment ${fname}, offset 0`;
  }
  if (expect.fileTli !== undefined && h.tli > expect.fileTli) {
    return `xlp_tli ${h.tli} is above the file's timeline ${expect.fileTli} in log segment ${fname}, offset 0`;
  }
  return null;
}
