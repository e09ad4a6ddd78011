// The one way WAL bytes leave the store: a reader that keeps the current segment file
// open and fills caller buffers with large positioned reads (one preadv per segment
// run), so the sender can read file data straight into its outgoing buffer.

import fs from 'node:fs';
import path from 'node:path';
import { PgError } from '../protocol/errors.ts';
import { segmentFileName } from './segment.ts';

export class SegmentReader {
  readonly dir: string;
  readonly segSize: number;
  private fd = -1;
  private openTli = 0;
  private openSegno = -1n;
  private openName = '';

  constructor(dir: string, segSize: number) {
    this.dir = dir;
    this.segSize = segSize;
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

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
    this.openSegno = -1n;
  }

  private open(tli: number, segno: bigint): void {
    if (this.fd >= 0 && this.openTli === tli && this.openSegno === segno) return;
    this.close();
    const name = segmentFileName(tli, segno, this.segSize);
    // A complete segment first, then the open one; retry the complete name once in case
    // the source renamed .partial between the two attempts.
    for (const candidate of [name, `${name}.partial`, name]) {
      try {
        this.fd = fs.openSync(path.join(this.dir, candidate), 'r');
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
    if (this.fd < 0) {
      throw new PgError('ERROR', '58P01', `requested WAL segment ${name} has already been removed`);
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
