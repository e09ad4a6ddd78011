// XLogSendPhysical's batches: the XLogData messages from a sent position, at most
// MAX_SEND_SIZE each, cut at page boundaries, several per socket write, all from one
// segment file. Built either from a segment mapping (plain TCP with the native walmap
// module: headers plus slices the kernel copies from) or by reading into a pooled
// buffer, and shared through the thread's batch cache with other senders at the same
// position.

import { pgNow } from '../../src/protocol/lsn.ts';
import { writeXLogDataHeader, XLOGDATA_HEADER_LEN } from '../../src/protocol/backend.ts';
import { XLOG_BLCKSZ } from '../../src/wal/segment.ts';
import type { SegmentReader } from '../../src/wal/segment-reader.ts';
import { walReadMethod } from '../../src/wal/walmap.ts';
import type { Batch } from './batch-cache.ts';
import type { SenderContext } from './context.ts';

export const MAX_SEND_SIZE = XLOG_BLCKSZ * 16; // walsender.c MAX_SEND_SIZE
export const MESSAGES_PER_WRITE = 8; // ~1 MiB per socket write: large writes are much cheaper here
export const BATCH_BYTES = MESSAGES_PER_WRITE * (XLOGDATA_HEADER_LEN + MAX_SEND_SIZE);
// A mapped batch costs no buffer, so it can be larger: 4 MiB writes took a sixth off
// the server's CPU per GB with 16 concurrent standbys (A/B, 0.33 -> 0.28 s/GB).
export const MAPPED_BATCH_BYTES = 4 * BATCH_BYTES;

/** One batch: XLogData messages of `lengths` bytes each, contiguous from `start`, in one segment. */
type PlannedBatch = { start: bigint; lengths: number[]; end: bigint };

let warnedNoMappings = false; // once per thread

export class BatchBuilder {
  private readonly ctx: SenderContext;
  private readonly reader: SegmentReader;
  private readonly segSize: bigint;
  /** WAL goes out as slices of segment mappings (plain TCP and the native module only). */
  private mapped: boolean;

  constructor(ctx: SenderContext, reader: SegmentReader, segSize: number, ssl: boolean) {
    this.ctx = ctx;
    this.reader = reader;
    this.segSize = BigInt(segSize);
    this.mapped = !ssl && walReadMethod().method === 'mmap';
  }

  /**
   * The batch from `start` towards `limit`, acquired for one write (release it through
   * the batch cache). `stream` names the timeline plan, `tli` the file timeline of the
   * segment holding `start`. Another sender on this thread at the same position may have
   * built it already: its bytes depend only on these.
   */
  acquire(stream: string, tli: number, start: bigint, limit: bigint): Batch {
    if (this.mapped && walReadMethod().method === 'read') {
      // The thread could not set up its mappings (address space limit): copy from now on.
      this.mapped = false;
      if (!warnedNoMappings) this.ctx.log.warn({ why: walReadMethod().why }, 'senders on this thread copy WAL through read buffers');
      warnedNoMappings = true;
    }
    // Mapped and copied batches never mix: a TLS sender must not encrypt (read in user
    // space) a mapping.
    const key = `${this.mapped ? 'm' : 'c'}/${stream}/${start}/${limit}`;
    const cached = this.ctx.batches.acquire(key);
    if (cached) return cached;
    const batch = (this.mapped && this.buildMapped(key, tli, limit, this.plan(start, limit, MAPPED_BATCH_BYTES)))
      || this.buildCopied(key, tli, limit, this.plan(start, limit, BATCH_BYTES));
    this.ctx.batches.add(batch);
    return batch;
  }

  /**
   * Up to `maxBytes` of messages, all from the segment holding `start`. A batch never
   * crosses into the next segment, so a segment that cannot be read (removed, or failing
   * the archive's checks) fails only its own batch: every byte before it has been sent
   * first, as PostgreSQL does.
   */
  private plan(start: bigint, limit: bigint, maxBytes: number): PlannedBatch {
    const lengths: number[] = [];
    const segEnd = (start / this.segSize + 1n) * this.segSize;
    let bytes = 0;
    let pos = start;
    while (pos < limit && pos < segEnd) {
      let end = pos + BigInt(MAX_SEND_SIZE);
      if (end >= limit) end = limit;
      else end -= end % BigInt(XLOG_BLCKSZ);
      if (end > segEnd) end = segEnd;
      const len = Number(end - pos);
      if (bytes + XLOGDATA_HEADER_LEN + len > maxBytes) break;
      lengths.push(len);
      bytes += XLOGDATA_HEADER_LEN + len;
      pos = end;
    }
    return { start, lengths, end: pos };
  }

  /** The messages read straight into one pooled buffer, headers in place. */
  private buildCopied(key: string, tli: number, limit: bigint, planned: PlannedBatch): Batch {
    const buf = this.ctx.buffers.take();
    const now = pgNow();
    const targets: Buffer[] = [];
    let off = 0;
    let pos = planned.start;
    try {
      for (const len of planned.lengths) {
        writeXLogDataHeader(buf, off, pos, limit, now, len);
        targets.push(buf.subarray(off + XLOGDATA_HEADER_LEN, off + XLOGDATA_HEADER_LEN + len));
        off += XLOGDATA_HEADER_LEN + len;
        pos += BigInt(len);
      }
      this.reader.readInto(tli, planned.start, targets);
    } catch (e) {
      this.ctx.buffers.give(buf);
      throw e;
    }
    return { key, chunks: [buf.subarray(0, off)], buf, release: null, end: planned.end, builtAt: Date.now(), refs: 1, evicted: false };
  }

  /**
   * Headers in one small buffer, WAL as slices of the segment's mapping; null when no
   * mapping is available (then the batch is copied). The batch holds a reference on the
   * mapping until the cache frees it, which is after its last write completed.
   */
  private buildMapped(key: string, tli: number, limit: bigint, planned: PlannedBatch): Batch | null {
    const mapped = this.reader.mappedRun(tli, planned.start, planned.lengths);
    if (!mapped) return null;
    const headers = Buffer.allocUnsafe(planned.lengths.length * XLOGDATA_HEADER_LEN);
    const now = pgNow();
    const chunks: Buffer[] = [];
    let pos = planned.start;
    for (let i = 0; i < mapped.slices.length; i++) {
      const h = i * XLOGDATA_HEADER_LEN;
      writeXLogDataHeader(headers, h, pos, limit, now, planned.lengths[i], false);
      chunks.push(headers.subarray(h, h + XLOGDATA_HEADER_LEN), mapped.slices[i]);
      pos += BigInt(planned.lengths[i]);
    }
    const reader = this.reader;
    return { key, chunks, buf: null, release: () => reader.releaseMapping(mapped.mapping), end: planned.end, builtAt: Date.now(), refs: 1, evicted: false };
  }
}
