// The one way WAL bytes leave the store: a reader that keeps the current segment file
// open and fills caller buffers with large positioned reads (one preadv per segment
// run), so the sender can read file data straight into its outgoing buffer. Over an
// archive (files we did not write) it opens only complete segments whose size and long
// page header pass the archive source's checks, so nothing unvalidated is ever served.
// With the native walmap module it can instead hand out slices of the segment's
// read-only mapping (mappedRun), for plain socket writes that the kernel copies from.

import fs from 'node:fs';
import path from 'node:path';
import { PgError } from '../protocol/errors.ts';
import { SIZE_OF_LONG_PHD, validateSegmentLongHeader } from './page.ts';
import { segmentFileName } from './segment.ts';
import { segmentMappings, type SegmentMapping, type SegmentMappings } from './walmap.ts';

/** The store identity a segment must match before it is read. */
export type SegmentValidation = { sysid: bigint; pageMagic: number };

export class SegmentReader {
  readonly dir: string;
  readonly segSize: number;
  private readonly validation: SegmentValidation | null;
  private fd = -1;
  private openTli = 0;
  private openSegno = -1n;
  private openName = '';
  private mappings: SegmentMappings | null | undefined; // this thread's, looked up on first mappedRun
  private mapping: SegmentMapping | null = null; // held while this segment is open
  private knownSize = -1; // the open file's size when last looked at (store files only grow; see mappedRun)

  constructor(dir: string, segSize: number, opts: { validate?: SegmentValidation } = {}) {
    this.dir = dir;
    this.segSize = segSize;
    this.validation = opts.validate ?? null;
  }

  /**
   * Read exactly the bytes for `targets`, which cover contiguous WAL starting at `lsn`
   * and lie within one segment, from the file of timeline `tli`.
   */
  readInto(tli: number, lsn: bigint, targets: Buffer[]): void {
    const seg = BigInt(this.segSize);
    const segno = lsn / seg;
    this.open(tli, segno);
    const offset = Number(lsn - segno * seg);
    let want = 0;
    for (const t of targets) want += t.length;
    let done = 0;
    let bufs = targets;
    while (done < want) {
      const n = fs.readvSync(this.fd, bufs, offset + done);
      if (n === 0) {
        throw new PgError('ERROR', 'XX001',
          `could not read from WAL segment ${this.openName}, offset ${offset + done}: read ${done} of ${want}`);
      }
      done += n;
      if (done < want) bufs = remaining(targets, done);
    }
  }

  /**
   * The bytes of contiguous runs of WAL (`lengths`, in order) from `lsn`, within one
   * segment of timeline `tli`, as slices of the segment's read-only mapping, with a
   * reference on the mapping for the caller (give it back with releaseMapping once the
   * write is done); null when no mapping is available (then read instead). Only the
   * kernel may read the slices (see walmap.ts): pass them to plain socket writes.
   */
  mappedRun(tli: number, lsn: bigint, lengths: number[]): { slices: Buffer[]; mapping: SegmentMapping } | null {
    if (this.mappings === undefined) this.mappings = segmentMappings(this.segSize);
    if (!this.mappings) return null;
    const seg = BigInt(this.segSize);
    const segno = lsn / seg;
    this.open(tli, segno);
    const offset = Number(lsn - segno * seg);
    let want = 0;
    for (const n of lengths) want += n;
    // Never hand out pages past the end of the file: the kernel's copy would fail
    // midway through a message. A read() would have come up short here too. The size is
    // looked up again only when a run goes past what was seen (a growing .partial); a
    // file truncated by someone else meanwhile costs the connection EFAULT (walmap.ts).
    if (offset + want > this.knownSize) this.knownSize = fs.fstatSync(this.fd).size;
    const size = this.knownSize;
    if (offset + want > size) {
      throw new PgError('ERROR', 'XX001',
        `could not read from WAL segment ${this.openName}, offset ${Math.max(offset, size)}: read ${Math.max(0, size - offset)} of ${want}`);
    }
    this.mapping ??= this.mappings.acquire(this.fd);
    if (!this.mapping) return null;
    this.mappings.retain(this.mapping); // the caller's reference
    const slices: Buffer[] = [];
    let at = offset;
    for (const n of lengths) {
      slices.push(this.mapping.bytes.subarray(at, at + n));
      at += n;
    }
    return { slices, mapping: this.mapping };
  }

  releaseMapping(m: SegmentMapping): void {
    this.mappings?.release(m);
  }

  /** The archive source's checks of the open file: full size, then the long page header. */
  private check(tli: number, segno: bigint): string | null {
    const size = fs.fstatSync(this.fd).size;
    if (size !== this.segSize) return `file has ${size} bytes, expected ${this.segSize}`;
    const first = Buffer.alloc(SIZE_OF_LONG_PHD);
    const n = fs.readSync(this.fd, first, 0, first.length, 0);
    return validateSegmentLongHeader(first.subarray(0, n), {
      segStartLsn: segno * BigInt(this.segSize), segSize: this.segSize, sysid: this.validation!.sysid,
      fileTli: tli, pageMagic: this.validation!.pageMagic,
    });
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
    if (this.mapping) this.mappings!.release(this.mapping);
    this.mapping = null;
    this.knownSize = -1;
    this.openSegno = -1n;
  }

  private open(tli: number, segno: bigint): void {
    if (this.fd >= 0 && this.openTli === tli && this.openSegno === segno) return;
    this.close();
    const name = segmentFileName(tli, segno, this.segSize);
    // A complete segment first, then the open one; retry the complete name once in case
    // the source renamed .partial between the two attempts. An archive has no open one.
    const candidates = this.validation ? [name] : [name, `${name}.partial`, name];
    for (const candidate of candidates) {
      try {
        this.fd = fs.openSync(path.join(this.dir, candidate), 'r');
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
    const removed = (detail?: string): PgError =>
      new PgError('ERROR', '58P01', `requested WAL segment ${name} has already been removed`, detail ? { detail } : undefined);
    if (this.fd < 0) throw removed();
    const problem = this.validation ? this.check(tli, segno) : null;
    if (problem) {
      this.close();
      throw removed(`The archived file failed validation: ${problem}.`);
    }
    this.openTli = tli;
    this.openSegno = segno;
    this.openName = name;
  }
}

/** What is left of `bufs` after its first `skip` bytes (after a short readv/writev). */
export function remaining(bufs: Buffer[], skip: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of bufs) {
    if (skip >= b.length) { skip -= b.length; continue; }
    out.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return out;
}
