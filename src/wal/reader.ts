// Walking the records of one WAL segment held in memory, with xlogreader.c's
// checks (page headers, contrecord flags and lengths, xl_tot_len, xl_prev
// chain, rmid, CRC-32C), and findEndOfWal: where valid WAL ends in a segment,
// i.e. where a generator resumes after a restart. No I/O.

import { crc32cFinish, crc32cInit, crc32cUpdate } from './crc32c.ts';
import {
  SIZE_OF_LONG_PHD,
  SIZE_OF_SHORT_PHD,
  XLP_ALL_FLAGS,
  XLP_FIRST_IS_CONTRECORD,
  XLP_LONG_HEADER,
  majorVersionFromMagic,
  readPageHeader,
} from './page.ts';
import {
  SIZE_OF_XLOG_RECORD,
  XLOG_RECORD_MAX_SIZE,
  isSwitchRecord,
  isValidRmid,
  maxAlign,
  readRecordHeader,
} from './record.ts';
import type { XLogRecordHeader } from './record.ts';
import { XLOG_BLCKSZ, formatLsn, isValidSegmentSize } from './segment.ts';

export type SegmentRecord = {
  /** Start LSN of the record. */
  lsn: bigint;
  /** LSN after the record and its MAXALIGN padding (the next record's position, or its page header). */
  endLsn: bigint;
  header: XLogRecordHeader;
};

export type EndOfWal = { endLsn: bigint; prevRecPtr: bigint; lastRecordLsn: bigint };

/**
 * Yields the valid records that start in this segment, in order, and returns
 * (as the generator's return value) why it stopped. A record whose header is
 * valid but that runs past the segment or past knownBytes is not yielded.
 * After an XLOG_SWITCH record it stops ("switch").
 */
export function* walkSegment(
  segment: Uint8Array,
  segStartLsn: bigint,
  segSize: number,
  knownBytes: number = segment.length,
): Generator<SegmentRecord, string, void> {
  if (!isValidSegmentSize(segSize)) throw new RangeError(`invalid WAL segment size ${segSize}`);
  const limit = Math.min(knownBytes, segment.length, segSize);
  if (limit < SIZE_OF_LONG_PHD) return 'segment too short';
  const first = readPageHeader(segment, 0);
  if (majorVersionFromMagic(first.magic) === null) return 'invalid magic number on first page';
  if (!(first.info & XLP_LONG_HEADER) || first.long?.segSize !== segSize || first.long.blcksz !== XLOG_BLCKSZ) {
    return 'invalid long page header';
  }
  if (first.pageAddr !== segStartLsn) return `unexpected pageaddr ${formatLsn(first.pageAddr)}`;
  const magic = first.magic;

  /** Null if the page header at offset `off` is fine for a page whose first bytes continue `expectRem` bytes. */
  const checkPage = (off: number, expectRem: number): string | null => {
    if (off + SIZE_OF_SHORT_PHD > limit) return 'end of available data';
    const h = readPageHeader(segment, off);
    if (h.magic !== magic) return `invalid magic number at offset ${off}`;
    if (h.info & ~XLP_ALL_FLAGS || h.info & XLP_LONG_HEADER) return `invalid info bits at offset ${off}`;
    if (h.pageAddr !== segStartLsn + BigInt(off)) return `unexpected pageaddr at offset ${off}`;
    if (expectRem > 0) {
      if (!(h.info & XLP_FIRST_IS_CONTRECORD)) return `there is no contrecord flag at offset ${off}`;
      if (h.remLen !== expectRem) return `invalid contrecord length ${h.remLen} (expected ${expectRem}) at offset ${off}`;
    } else if (h.info & XLP_FIRST_IS_CONTRECORD) {
      return `contrecord is requested at offset ${off}`;
    }
    return null;
  };

  // Skip the tail of a record continued from the previous segment.
  let pos = SIZE_OF_LONG_PHD;
  if (first.info & XLP_FIRST_IS_CONTRECORD) {
    let rem = first.remLen;
    for (;;) {
      const n = Math.min(rem, XLOG_BLCKSZ - (pos % XLOG_BLCKSZ));
      pos += n;
      rem -= n;
      if (rem === 0) break;
      if (pos >= segSize) return 'segment holds only a continued record';
      const bad = checkPage(pos, rem);
      if (bad) return bad;
      pos += SIZE_OF_SHORT_PHD;
    }
    pos = maxAlign(pos);
  }

  let prev: bigint | null = null; // unknown for the first record of the segment
  let scratch = new Uint8Array(0);
  for (;;) {
    if (pos >= segSize) return 'end of segment';
    if (pos % XLOG_BLCKSZ === 0) {
      const bad = checkPage(pos, 0);
      if (bad) return bad;
      pos += SIZE_OF_SHORT_PHD;
    }
    if (pos + 4 > limit) return 'end of available data';
    const recLsn = segStartLsn + BigInt(pos);
    const totLen = segment[pos]! | (segment[pos + 1]! << 8) | (segment[pos + 2]! << 16) | (segment[pos + 3]! * 0x1000000);
    if (totLen < SIZE_OF_XLOG_RECORD) return `invalid record length at ${formatLsn(recLsn)}: wanted 24, got ${totLen}`;
    if (totLen > XLOG_RECORD_MAX_SIZE) return `record length ${totLen} at ${formatLsn(recLsn)} too long`;

    // Gather the record: in place when it fits on this page, else into scratch.
    let recBuf: Uint8Array;
    let recOff: number;
    let end: number;
    if (pos % XLOG_BLCKSZ + totLen <= XLOG_BLCKSZ) {
      if (pos + totLen > limit) return 'end of available data';
      recBuf = segment;
      recOff = pos;
      end = pos + totLen;
    } else {
      if (scratch.length < totLen) scratch = new Uint8Array(Math.max(totLen, scratch.length * 2));
      recBuf = scratch;
      recOff = 0;
      let got = 0;
      let p = pos;
      for (;;) {
        const n = Math.min(totLen - got, XLOG_BLCKSZ - (p % XLOG_BLCKSZ));
        if (p + n > limit) return 'end of available data';
        scratch.set(segment.subarray(p, p + n), got);
        got += n;
        p += n;
        if (got === totLen) break;
        if (p >= segSize) return `record at ${formatLsn(recLsn)} continues in the next segment`;
        const bad = checkPage(p, totLen - got);
        if (bad) return bad;
        p += SIZE_OF_SHORT_PHD;
      }
      end = p;
    }

    const header = readRecordHeader(recBuf, recOff);
    if (!isValidRmid(header.rmid)) return `invalid resource manager ID ${header.rmid} at ${formatLsn(recLsn)}`;
    if (prev !== null && header.prev !== prev) {
      return `record with incorrect prev-link ${formatLsn(header.prev)} at ${formatLsn(recLsn)}`;
    }
    let c = crc32cInit();
    c = crc32cUpdate(c, recBuf, recOff + SIZE_OF_XLOG_RECORD, recOff + totLen);
    c = crc32cUpdate(c, recBuf, recOff, recOff + 20);
    if (crc32cFinish(c) !== header.crc) {
      return `incorrect resource manager data checksum in record at ${formatLsn(recLsn)}`;
    }
    const nextPos = maxAlign(end);
    if (isSwitchRecord(header)) {
      yield { lsn: recLsn, endLsn: segStartLsn + BigInt(segSize), header };
      return 'switch';
    }
    yield { lsn: recLsn, endLsn: segStartLsn + BigInt(nextPos), header };
    prev = recLsn;
    pos = nextPos;
  }
}

/**
 * Where valid WAL ends in this segment: the end of the last valid record that
 * starts in it (after an XLOG_SWITCH, the next segment's start), and that
 * record's start (xl_prev for the next record). Null if no valid record starts
 * in the segment. Only the first knownBytes bytes are trusted.
 */
export function findEndOfWal(
  segment: Uint8Array,
  segStartLsn: bigint,
  segSize: number,
  knownBytes?: number,
): EndOfWal | null {
  let last: SegmentRecord | null = null;
  for (const rec of walkSegment(segment, segStartLsn, segSize, knownBytes)) last = rec;
  if (!last) return null;
  return { endLsn: last.endLsn, prevRecPtr: last.lsn, lastRecordLsn: last.lsn };
}
