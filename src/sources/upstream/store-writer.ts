// Owns writing received WAL into the store and making it durable. Bytes are
// written at once (positioned writes into `<segment>.partial`); durability is a
// separate, batched step: one fdatasync round at a time runs in the background
// (libuv's thread pool, so the socket keeps being read), covering everything written
// before it started; a round also renames the segments that filled up to their
// final names and fsyncs the directory. Only when a round has finished is its end
// reported as durable (onDurable), which is what the receiver may publish. Group
// commit: under load each round covers many messages, when idle each message gets
// its own round, so throughput and latency both stay near the disk's limits. A small
// amount in the open segment alone is synced inline instead (see syncInline).
// New segment files are taken from a zero-filled spare prepared in the background,
// as PostgreSQL recycles WAL files: fdatasync of a preallocated file is about half
// the cost of one that grows.

import fs from 'node:fs';
import path from 'node:path';
import { remaining } from '../../wal/segment-reader.ts';
import { segmentFileName } from '../../wal/segment.ts';

export const SPARE_NAME = '.pgws-spare-segment.tmp';

type OpenSegment = { segno: bigint; fd: number; partialPath: string; finalPath: string; full: boolean };

/** Up to this much unsynced WAL (all in the open segment) is synced inline, see syncInline. */
const INLINE_SYNC_MAX = 64n * 1024n;

export type StoreWriterOptions = {
  dir: string;
  segSize: number;
  /** Called after each sync round: every byte below `lsn` of timeline `tli` is durable. */
  onDurable: (lsn: bigint, tli: number) => void;
  /** A sync round failed: the kernel may have dropped the data, so nothing more may be published. */
  onFatal: (e: Error) => void;
};

function fsyncDir(dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.open(dir, 'r', (err, fd) => {
      if (err) return reject(err);
      fs.fsync(fd, (e) => fs.close(fd, () => (e ? reject(e) : resolve())));
    });
  });
}

const fdatasync = (fd: number): Promise<void> =>
  new Promise((resolve, reject) => fs.fdatasync(fd, (e) => (e ? reject(e) : resolve())));

export class StoreWriter {
  readonly dir: string;
  readonly segSize: number;
  private readonly seg: bigint;
  private readonly onDurable: (lsn: bigint, tli: number) => void;
  private readonly onFatal: (e: Error) => void;
  private tli = 0;
  private written = 0n;
  private durable = 0n;
  private cur: OpenSegment | null = null;
  /** Filled segments whose data or rename is not yet durable, oldest first. */
  private filled: OpenSegment[] = [];
  private dirDirty = false;
  private syncing: Promise<void> | null = null;
  private failed: Error | null = null;
  private spare: Promise<boolean> | null = null;
  private spareReady = false;
  private closing = false;
  /** Called after onDurable: the receiver reports the new flush position upstream. */
  durableListener: (() => void) | null = null;

  constructor(o: StoreWriterOptions) {
    this.dir = o.dir;
    this.segSize = o.segSize;
    this.seg = BigInt(o.segSize);
    this.onDurable = o.onDurable;
    this.onFatal = o.onFatal;
    fs.rmSync(path.join(this.dir, SPARE_NAME), { force: true });
  }

  get timeline(): number { return this.tli; }
  get writtenLsn(): bigint { return this.written; }
  get durableLsn(): bigint { return this.durable; }

  /**
   * Continue timeline `tli` at `lsn`: a segment start (fresh data) or the end of the
   * valid WAL found in the store at startup. Earlier writes must be durable (flush()).
   */
  begin(tli: number, lsn: bigint): void {
    if (this.written !== this.durable || this.syncing) throw new Error('StoreWriter.begin with unsynced writes');
    this.closeCurrent();
    this.tli = tli;
    this.written = lsn;
    this.durable = lsn;
  }

  /**
   * Write WAL that continues exactly at the written end: the buffers in order, one
   * writev per segment they touch. Throws on I/O errors (nothing of it is reported durable).
   */
  append(lsn: bigint, data: Buffer[]): void {
    if (this.failed) throw this.failed;
    if (lsn !== this.written) throw new Error(`WAL write at ${lsn} does not continue the written end ${this.written}`);
    let i = 0;
    let off = 0; // consumed bytes of data[i]
    while (i < data.length) {
      const pos = this.written;
      const segno = pos / this.seg;
      const inSeg = Number(pos - segno * this.seg);
      // The pieces of the buffers that fall into this segment.
      const pieces: Buffer[] = [];
      let room = this.segSize - inSeg;
      while (room > 0 && i < data.length) {
        const b = data[i]!;
        const take = Math.min(room, b.length - off);
        pieces.push(off === 0 && take === b.length ? b : b.subarray(off, off + take));
        room -= take;
        off += take;
        if (off === b.length) { i++; off = 0; }
      }
      const n = this.segSize - inSeg - room;
      if (n === 0) continue;
      const s = this.open(segno, inSeg);
      let done = 0;
      let rest = pieces;
      for (;;) {
        done += fs.writevSync(s.fd, rest, inSeg + done);
        if (done >= n) break;
        rest = remaining(pieces, done);
      }
      this.written += BigInt(n);
      if (inSeg + n === this.segSize) {
        s.full = true;
        this.filled.push(s);
        this.cur = null;
      }
    }
  }

  /** Start a sync round unless one is running (the running one starts the next when done). */
  requestSync(): void {
    if (this.syncing || this.failed || this.written === this.durable) return;
    if (this.cur && this.filled.length === 0 && !this.dirDirty && this.written - this.durable <= INLINE_SYNC_MAX) {
      this.syncInline(this.cur);
      return;
    }
    this.syncing = this.syncRound().finally(() => {
      this.syncing = null;
      if (!this.closing) this.requestSync();
    });
  }

  /** Resolves once everything written so far is durable. */
  async flush(): Promise<void> {
    for (;;) {
      if (this.failed) throw this.failed;
      if (this.written === this.durable && !this.syncing) return;
      if (!this.syncing) this.requestSync();
      await this.syncing;
    }
  }

  /** Flush, then close every file. */
  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      this.closing = true;
      this.closeCurrent();
      if (this.spare) await this.spare.catch(() => false);
      fs.rmSync(path.join(this.dir, SPARE_NAME), { force: true });
    }
  }

  /**
   * A small amount in the open segment, nothing else pending: fdatasync right here. It
   * spares two thread hand-offs (to the thread pool and back), which is most of what a
   * round adds to a commit's latency when WAL trickles in; under load rounds take over.
   */
  private syncInline(cur: OpenSegment): void {
    const target = this.written;
    try {
      fs.fdatasyncSync(cur.fd);
    } catch (e) {
      this.failed = new Error(`could not make WAL durable in ${this.dir}: ${(e as Error).message}`);
      this.onFatal(this.failed);
      return;
    }
    this.durable = target;
    this.onDurable(target, this.tli);
    this.durableListener?.();
  }

  private async syncRound(): Promise<void> {
    const target = this.written;
    const tli = this.tli;
    const filled = this.filled;
    this.filled = [];
    const cur = this.cur;
    try {
      const fds = filled.map((s) => s.fd);
      if (cur) fds.push(cur.fd);
      await Promise.all(fds.map(fdatasync));
      for (const s of filled) {
        fs.closeSync(s.fd);
        fs.renameSync(s.partialPath, s.finalPath);
        this.dirDirty = true;
      }
      if (this.dirDirty) {
        this.dirDirty = false;
        await fsyncDir(this.dir);
      }
    } catch (e) {
      // PostgreSQL PANICs on a failed fsync: the kernel may have dropped the dirty pages.
      this.failed = new Error(`could not make WAL durable in ${this.dir}: ${(e as Error).message}`);
      this.onFatal(this.failed);
      return;
    }
    this.durable = target;
    if (tli === this.tli) this.onDurable(target, tli);
    this.durableListener?.();
  }

  private open(segno: bigint, inSeg: number): OpenSegment {
    if (this.cur && this.cur.segno === segno) return this.cur;
    if (this.cur) throw new Error('segment switch without a full segment');
    const finalPath = path.join(this.dir, segmentFileName(this.tli, segno, this.segSize));
    const partialPath = `${finalPath}.partial`;
    let fd: number;
    if (inSeg === 0) {
      // A fresh segment: whatever a file of that name holds is stale (an earlier attempt).
      fs.rmSync(finalPath, { force: true });
      if (this.spareReady) {
        this.spareReady = false;
        this.spare = null;
        fs.renameSync(path.join(this.dir, SPARE_NAME), partialPath);
        fd = fs.openSync(partialPath, 'r+');
      } else {
        fd = fs.openSync(partialPath, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_TRUNC, 0o600);
      }
      this.dirDirty = true;
      this.prepareSpare();
    } else {
      // Resuming inside a segment (startup): the file exists, complete or .partial.
      const existing = fs.existsSync(partialPath) ? partialPath : finalPath;
      fd = fs.openSync(existing, 'r+');
    }
    this.cur = { segno, fd, partialPath, finalPath, full: false };
    return this.cur;
  }

  /** Have a zero-filled spare ready before a fresh segment starts (before streaming, so nothing waits on it). */
  async ensureSpare(): Promise<void> {
    this.prepareSpare();
    await this.spare?.catch(() => false);
  }

  /** Zero-fill the next segment file in the background (thread pool), durably. */
  private prepareSpare(): void {
    if (this.spare || this.closing) return;
    const file = path.join(this.dir, SPARE_NAME);
    const size = this.segSize;
    this.spare = (async () => {
      const fh = await fs.promises.open(file, 'w', 0o600);
      try {
        const zeros = Buffer.alloc(Math.min(size, 1 << 20));
        for (let off = 0; off < size; off += zeros.length) await fh.write(zeros, 0, Math.min(zeros.length, size - off), off);
        await fh.datasync();
      } finally {
        await fh.close();
      }
      return true;
    })().then((ok) => { if (!this.closing) this.spareReady = ok; return ok; }, () => { this.spare = null; return false; });
  }

  private closeCurrent(): void {
    for (const s of this.filled) fs.closeSync(s.fd);
    this.filled = [];
    if (this.cur) fs.closeSync(this.cur.fd);
    this.cur = null;
  }
}
