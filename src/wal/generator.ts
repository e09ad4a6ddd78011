// Synthetic but well-formed PostgreSQL WAL for the demo source: a stream of
// XLOG_NOOP records laid out exactly as XLogInsert would (page headers every
// 8 KiB, long header on each segment's first page, contrecords, MAXALIGN,
// xl_prev chain, CRC-32C). Pure: no I/O. The bytes are a deterministic
// function of (sysid, tli, segSize, pageMagic, recordPayloadLen, start LSN,
// prevRecPtr), so regenerating from a resume point gives identical WAL.

import { PG15_PAGE_MAGIC, SIZE_OF_LONG_PHD, SIZE_OF_SHORT_PHD, XLP_BKP_REMOVABLE, XLP_FIRST_IS_CONTRECORD, XLP_LONG_HEADER, writePageHeader } from './page.ts';
import {
  RM_XLOG_ID,
  SIZE_OF_XLOG_RECORD,
  XLOG_NOOP,
  XLOG_SWITCH,
  mainDataRecordLength,
  maxAlign,
  writeMainDataRecord,
} from './record.ts';
import { XLOG_BLCKSZ, formatLsn, isValidSegmentSize, segmentOffset } from './segment.ts';

export { findEndOfWal } from './reader.ts';
export type { EndOfWal } from './reader.ts';

export type WalGeneratorOptions = {
  sysid: bigint;
  tli: number;
  segSize: number;
  /** XLOG_PAGE_MAGIC written in page headers; default PG15's 0xD110. */
  pageMagic?: number;
  /** A record-start position: a segment start, or an endLsn of a previous generator / findEndOfWal. */
  startLsn: bigint;
  /** Start LSN of the record before startLsn (xl_prev of the first record); 0n if none. */
  prevRecPtr: bigint;
  /** Main-data bytes per NOOP record; default 1000. */
  recordPayloadLen?: number;
};

export type GeneratedWal = { startLsn: bigint; endLsn: bigint; bytes: Buffer };

export const DEFAULT_RECORD_PAYLOAD_LEN = 1000;
/** Upper bound on recordPayloadLen accepted by the generator. */
export const MAX_RECORD_PAYLOAD_LEN = 16 * 1024 * 1024;

export class WalGenerator {
  readonly sysid: bigint;
  readonly tli: number;
  readonly segSize: number;
  readonly pageMagic: number;
  readonly recordPayloadLen: number;

  #endLsn: bigint;
  #prevRecPtr: bigint;
  /** Scratch: one record, rebuilt for each LSN. */
  readonly #record: Buffer;
  readonly #pattern = Buffer.alloc(8);
  /** Output being filled by the current call, and the write position inside it. */
  #out: Buffer = Buffer.alloc(0);
  #outLen = 0;
  /** Write position as (segment start, offset in segment); offset may equal segSize. */
  #segStart = 0n;
  #segOff = 0;

  constructor(opts: WalGeneratorOptions) {
    if (!isValidSegmentSize(opts.segSize)) throw new RangeError(`invalid WAL segment size ${opts.segSize}`);
    if (!Number.isInteger(opts.tli) || opts.tli < 1 || opts.tli > 0xffffffff) throw new RangeError(`invalid timeline ${opts.tli}`);
    const payloadLen = opts.recordPayloadLen ?? DEFAULT_RECORD_PAYLOAD_LEN;
    if (!Number.isInteger(payloadLen) || payloadLen < 0 || payloadLen > MAX_RECORD_PAYLOAD_LEN) {
      throw new RangeError(`invalid recordPayloadLen ${payloadLen}`);
    }
    if (opts.startLsn < 0n || opts.startLsn % 8n !== 0n) throw new RangeError(`start LSN ${formatLsn(opts.startLsn)} is not MAXALIGNed`);
    const segOff = segmentOffset(opts.startLsn, opts.segSize);
    const pageOff = segOff % XLOG_BLCKSZ;
    const hdr = segOff < XLOG_BLCKSZ ? SIZE_OF_LONG_PHD : SIZE_OF_SHORT_PHD;
    if (pageOff !== 0 && pageOff < hdr) {
      throw new RangeError(`start LSN ${formatLsn(opts.startLsn)} is inside a page header`);
    }
    this.sysid = opts.sysid;
    this.tli = opts.tli;
    this.segSize = opts.segSize;
    this.pageMagic = opts.pageMagic ?? PG15_PAGE_MAGIC;
    this.recordPayloadLen = payloadLen;
    this.#endLsn = opts.startLsn;
    this.#prevRecPtr = opts.prevRecPtr;
    this.#record = Buffer.alloc(mainDataRecordLength(payloadLen));
  }

  /** End of the WAL generated so far: where the next record (or its page header) goes. */
  get endLsn(): bigint {
    return this.#endLsn;
  }

  /** Start LSN of the last record generated (xl_prev of the next one). */
  get prevRecPtr(): bigint {
    return this.#prevRecPtr;
  }

  /**
   * Appends whole NOOP records, at least one and at least minBytes of WAL in
   * all (page headers included). Returns the bytes for [startLsn, endLsn).
   */
  generate(minBytes: number): GeneratedWal {
    const recLen = this.#record.length;
    const perRecord = maxAlign(recLen);
    const want = Math.max(0, minBytes) + perRecord;
    this.#begin(want + (Math.ceil(want / (XLOG_BLCKSZ - SIZE_OF_LONG_PHD)) + 2) * SIZE_OF_LONG_PHD);
    do {
      this.#appendRecord(this.#record, RM_XLOG_ID, XLOG_NOOP, true);
    } while (this.#outLen < minBytes);
    return this.#finish();
  }

  /**
   * Appends an XLOG_SWITCH record and the zero-filled rest of its segment
   * (PG >= 14 zeroes the remaining pages, headers included). endLsn becomes
   * the next segment's start. At a segment start it does nothing, like
   * RequestXLogSwitch (no record, empty bytes).
   */
  switchSegment(): GeneratedWal {
    if (segmentOffset(this.#endLsn, this.segSize) === 0) {
      return { startLsn: this.#endLsn, endLsn: this.#endLsn, bytes: Buffer.alloc(0) };
    }
    this.#begin(SIZE_OF_LONG_PHD + SIZE_OF_XLOG_RECORD + 8);
    const rec = Buffer.alloc(SIZE_OF_XLOG_RECORD);
    this.#appendRecord(rec, RM_XLOG_ID, XLOG_SWITCH, false);
    const rest = this.segSize - this.#segOff;
    this.#reserve(rest);
    this.#out.fill(0, this.#outLen, this.#outLen + rest);
    this.#outLen += rest;
    this.#segOff += rest;
    return this.#finish();
  }

  /** PostgreSQL's system identifier recipe (xlog.c BootStrapXLOG): seconds << 32 | usec << 12 | pid & 0xFFF. */
  static newSystemIdentifier(nowMs: number = performance.timeOrigin + performance.now(), pid: number = process.pid): bigint {
    const sec = Math.floor(nowMs / 1000);
    const usec = Math.min(999999, Math.floor((nowMs - sec * 1000) * 1000));
    return ((BigInt(sec) << 32n) | (BigInt(usec) << 12n) | BigInt(pid & 0xfff)) & 0xffffffffffffffffn;
  }

  #begin(capacity: number): void {
    this.#out = Buffer.alloc(capacity);
    this.#outLen = 0;
    this.#segOff = segmentOffset(this.#endLsn, this.segSize);
    this.#segStart = this.#endLsn - BigInt(this.#segOff);
  }

  #finish(): GeneratedWal {
    const startLsn = this.#endLsn;
    const endLsn = this.#segStart + BigInt(this.#segOff);
    this.#endLsn = endLsn;
    const bytes = this.#out.subarray(0, this.#outLen);
    this.#out = Buffer.alloc(0);
    return { startLsn, endLsn, bytes };
  }

  #reserve(n: number): void {
    if (this.#outLen + n <= this.#out.length) return;
    const bigger = Buffer.alloc(Math.max(this.#out.length * 2, this.#outLen + n + 4 * XLOG_BLCKSZ));
    this.#out.copy(bigger, 0, 0, this.#outLen);
    this.#out = bigger;
  }

  /** At a page boundary, writes the page header; remLen > 0 marks a continued record. */
  #pageHeaderIfNeeded(remLen: number): void {
    if (this.#segOff === this.segSize) {
      this.#segStart += BigInt(this.segSize);
      this.#segOff = 0;
    }
    if (this.#segOff % XLOG_BLCKSZ !== 0) return;
    const long = this.#segOff === 0;
    this.#reserve(SIZE_OF_LONG_PHD);
    const n = writePageHeader(this.#out, this.#outLen, {
      magic: this.pageMagic,
      info: XLP_BKP_REMOVABLE | (long ? XLP_LONG_HEADER : 0) | (remLen > 0 ? XLP_FIRST_IS_CONTRECORD : 0),
      tli: this.tli,
      pageAddr: this.#segStart + BigInt(this.#segOff),
      remLen,
      ...(long ? { long: { sysid: this.sysid, segSize: this.segSize, blcksz: XLOG_BLCKSZ } } : {}),
    });
    this.#outLen += n;
    this.#segOff += n;
  }

  /** Builds one record at the current position (payload derived from its LSN) and copies it out across pages. */
  #appendRecord(rec: Buffer, rmid: number, info: number, withPayload: boolean): void {
    this.#pageHeaderIfNeeded(0);
    const recLsn = this.#segStart + BigInt(this.#segOff);
    const totLen = rec.length;
    if (withPayload) {
      const payloadStart = totLen - this.recordPayloadLen;
      this.#pattern.writeBigUInt64LE(recLsn);
      // Deterministic payload: the record's own LSN repeated.
      if (this.recordPayloadLen > 0) rec.fill(this.#pattern, payloadStart);
      writeMainDataRecord(rec, 0, rmid, info, this.#prevRecPtr, rec.subarray(payloadStart));
    } else {
      writeMainDataRecord(rec, 0, rmid, info, this.#prevRecPtr, rec.subarray(SIZE_OF_XLOG_RECORD));
    }
    let done = 0;
    while (done < totLen) {
      if (done > 0) this.#pageHeaderIfNeeded(totLen - done);
      const room = XLOG_BLCKSZ - (this.#segOff % XLOG_BLCKSZ);
      const n = Math.min(room, totLen - done);
      this.#reserve(n);
      rec.copy(this.#out, this.#outLen, done, done + n);
      done += n;
      this.#outLen += n;
      this.#segOff += n;
    }
    // MAXALIGN padding: never crosses a page boundary (pages and headers are 8-aligned).
    const pad = maxAlign(totLen) - totLen;
    this.#reserve(pad);
    this.#out.fill(0, this.#outLen, this.#outLen + pad);
    this.#outLen += pad;
    this.#segOff += pad;
    this.#prevRecPtr = recLsn;
  }
}
