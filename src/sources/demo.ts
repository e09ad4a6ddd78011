// The demo source: synthetic, well-formed WAL (XLOG NOOP records, real page headers
// and CRC-32C, a generated system identifier) written into the data directory at a
// steady rate, so a newcomer sees live streaming with no PostgreSQL around. Segments
// are written as `<name>.partial` and renamed when complete; every batch is made
// durable (fdatasync) before its end is published as the flush position. On restart
// it resumes at the end of the last valid record; the generator is deterministic, so
// anything rewritten after a crash is byte-identical to what may have been served.

import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log.ts';
import { formatLsn } from '../protocol/lsn.ts';
import { publishFlush, publishIdentity, setSourceState } from '../shmem/control.ts';
import { SourceState, type SharedViews } from '../shmem/layout.ts';
import { WalGenerator, findEndOfWal } from '../wal/generator.ts';
import { PG15_PAGE_MAGIC, readPageHeader, validateSegmentLongHeader } from '../wal/page.ts';
import { parseSegmentFileName, segmentFileName } from '../wal/segment.ts';

const TICK_MS = 100;

export type DemoOptions = { dataDir: string; rate: number; segSize: number; views: SharedViews; log: Logger };

export class DemoSource {
  private readonly dir: string;
  private readonly segSize: number;
  private readonly views: SharedViews;
  private readonly log: Logger;
  private rate: number;
  private gen: WalGenerator | null = null;
  private timer: NodeJS.Timeout | null = null;
  private lastTick = 0;
  private credit = 0;
  private paused = false; // a write failed (disk full): retrying
  private retryAt = 0;
  private fd = -1;
  private fdSegno = -1n;
  private fdPath = '';

  constructor(o: DemoOptions) {
    this.dir = o.dataDir;
    this.segSize = o.segSize;
    this.views = o.views;
    this.log = o.log;
    this.rate = o.rate;
  }

  start(): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.gen = this.resume() ?? this.fresh();
    const id = { sysid: this.gen.sysid, segSize: this.gen.segSize, pageMagic: this.gen.pageMagic };
    publishIdentity(this.views, id, { flushLsn: this.gen.endLsn, timeline: this.gen.tli });
    this.log.info({ sysid: id.sysid.toString(), segSize: id.segSize, timeline: this.gen.tli,
      flushLsn: formatLsn(this.gen.endLsn), rate: this.rate, dir: this.dir }, 'demo source ready');
    this.lastTick = performance.now();
    this.timer = setInterval(() => this.tick(), TICK_MS);
  }

  setRate(rate: number): void {
    this.rate = rate;
  }

  /** Stop generating; what was published stays the final flush position. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.closeSegment();
  }

  private fresh(): WalGenerator {
    // Like initdb: timeline 1, WAL starting at the second segment.
    const segSize = this.segSize;
    return new WalGenerator({
      sysid: WalGenerator.newSystemIdentifier(), tli: 1, segSize, pageMagic: PG15_PAGE_MAGIC,
      startLsn: BigInt(segSize), prevRecPtr: 0n,
    });
  }

  /** Continue the WAL already in the data directory, from the end of its last valid record. */
  private resume(): WalGenerator | null {
    const found: { name: string; tli: number; segno: bigint }[] = [];
    for (const name of fs.readdirSync(this.dir)) {
      const p = parseSegmentFileName(name, this.segSize);
      if (p) found.push({ name, tli: p.tli, segno: p.segno });
    }
    found.sort((a, b) => (a.segno === b.segno ? a.tli - b.tli : a.segno < b.segno ? -1 : 1));
    for (let i = found.length - 1; i >= 0; i--) {
      const f = found[i]!;
      const bytes = fs.readFileSync(path.join(this.dir, f.name));
      const segStart = f.segno * BigInt(this.segSize);
      if (bytes.length === 0) continue;
      const problem = validateSegmentLongHeader(bytes.subarray(0, 8192), { segStartLsn: segStart, segSize: this.segSize });
      if (problem) {
        throw new Error(`data directory ${this.dir} holds WAL the demo source cannot continue (${f.name}: ${problem}); use an empty --data-dir`);
      }
      const end = findEndOfWal(bytes, segStart, this.segSize, bytes.length);
      if (!end) continue;
      const h = readPageHeader(bytes, 0);
      if (f.name.endsWith('.partial') && end.endLsn >= segStart + BigInt(this.segSize)) {
        // Crashed between completing the segment and renaming it.
        fs.renameSync(path.join(this.dir, f.name), path.join(this.dir, f.name.slice(0, -'.partial'.length)));
        f.name = f.name.slice(0, -'.partial'.length);
      }
      // Make what we are about to publish durable: it may not have been synced before a crash.
      const fd = fs.openSync(path.join(this.dir, f.name), 'r+');
      fs.fdatasyncSync(fd);
      fs.closeSync(fd);
      return new WalGenerator({
        sysid: h.long!.sysid, tli: f.tli, segSize: this.segSize, pageMagic: h.magic,
        startLsn: end.endLsn, prevRecPtr: end.prevRecPtr,
      });
    }
    return null;
  }

  private tick(): void {
    const now = performance.now();
    // At most one second's worth at once, so a stall (or a full disk) is not followed by a burst.
    this.credit = Math.min(this.rate, this.credit + (this.rate * (now - this.lastTick)) / 1000);
    this.lastTick = now;
    if (this.paused && now < this.retryAt) return;
    if (this.credit < 1 || this.rate <= 0) {
      if (this.rate <= 0) this.credit = 0;
      return;
    }
    const gen = this.gen!;
    try {
      const wal = gen.generate(Math.max(1, Math.floor(this.credit)));
      this.credit -= wal.bytes.length;
      this.write(wal.startLsn, wal.bytes);
      fs.fdatasyncSync(this.fd);
      publishFlush(this.views, { flushLsn: wal.endLsn, timeline: gen.tli });
      if (this.paused) {
        this.paused = false;
        setSourceState(this.views, SourceState.RUNNING);
        this.log.info({ flushLsn: formatLsn(wal.endLsn) }, 'WAL ingest resumed');
      }
    } catch (e) {
      // Disk full or similar: nothing unsynced was published, senders keep serving what
      // is stored. Retry every second from the end of the valid WAL on disk; the
      // generator is deterministic, so what gets rewritten is byte-identical.
      this.credit = 0;
      this.retryAt = now + 1000;
      if (!this.paused) {
        this.paused = true;
        const code = (e as NodeJS.ErrnoException).code;
        setSourceState(this.views, code === 'ENOSPC' ? SourceState.DISK_FULL : SourceState.WAITING);
        this.log.error({ err: e, code }, code === 'ENOSPC'
          ? 'disk full: WAL ingest paused, senders keep serving stored WAL'
          : 'could not write WAL: ingest paused');
      }
      this.closeSegment();
      this.gen = this.resume() ?? this.gen;
    }
  }

  /** Write bytes starting at `lsn`, completing (sync, rename) each segment as it fills. */
  private write(lsn: bigint, bytes: Buffer): void {
    const seg = BigInt(this.segSize);
    let off = 0;
    while (off < bytes.length) {
      const pos = lsn + BigInt(off);
      const segno = pos / seg;
      const inSeg = Number(pos - segno * seg);
      const n = Math.min(bytes.length - off, this.segSize - inSeg);
      this.openSegment(segno);
      let done = 0;
      while (done < n) done += fs.writeSync(this.fd, bytes, off + done, n - done, inSeg + done);
      off += n;
      if (inSeg + n === this.segSize) this.completeSegment();
    }
  }

  private openSegment(segno: bigint): void {
    if (this.fd >= 0 && this.fdSegno === segno) return;
    this.closeSegment();
    const name = segmentFileName(this.gen!.tli, segno, this.segSize);
    const complete = path.join(this.dir, name);
    this.fdPath = fs.existsSync(complete) ? complete : `${complete}.partial`;
    this.fd = fs.openSync(this.fdPath, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    this.fdSegno = segno;
  }

  private completeSegment(): void {
    const fd = this.fd;
    const partial = this.fdPath;
    fs.fdatasyncSync(fd);
    this.closeSegment();
    if (partial.endsWith('.partial')) {
      fs.renameSync(partial, partial.slice(0, -'.partial'.length));
      const dirFd = fs.openSync(this.dir, 'r');
      try { fs.fsyncSync(dirFd); } finally { fs.closeSync(dirFd); }
    }
  }

  private closeSegment(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
    this.fdSegno = -1n;
  }
}
