// The archive source: serves a directory of complete segments as archive_command or
// pg_receivewal leaves them. It learns the store's identity (sysid, segment size,
// PostgreSQL major) from the first valid long page header, validates every segment's
// long page header and size before publishing it (a segment still being copied, or
// from another cluster, is reported and not served), follows timelines through
// .history files, and advances the flush position only over contiguous segments.
// New files are noticed by fs.watch plus a periodic rescan. It never writes or
// deletes anything in the directory: the archive belongs to its owner.

import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log.ts';
import { formatLsn } from '../protocol/lsn.ts';
import { publishFlush, publishIdentity, storeIdentity, type StoreIdentity } from '../shmem/control.ts';
import type { SharedViews } from '../shmem/layout.ts';
import { parseHistoryFile, tliOfPoint, type TimelineHistoryEntry } from '../wal/history.ts';
import { majorVersionFromMagic, readPageHeader, SIZE_OF_LONG_PHD, validateSegmentLongHeader } from '../wal/page.ts';
import { historyFileName, isValidSegmentSize, parseHistoryFileName, segmentFileName, XLOG_BLCKSZ } from '../wal/segment.ts';

const SEGMENT_NAME = /^[0-9A-F]{24}$/;

type FileCheck = { size: number; mtimeMs: number; problem: string | null };

/** Split a segment file name into (tli, log id, segment within log id) without knowing the segment size. */
function splitSegmentName(name: string): { tli: number; log: number; seg: number } {
  return { tli: parseInt(name.slice(0, 8), 16), log: parseInt(name.slice(8, 16), 16), seg: parseInt(name.slice(16, 24), 16) };
}

function segnoFromName(name: string, segSize: number): { tli: number; segno: bigint } {
  const p = splitSegmentName(name);
  return { tli: p.tli, segno: BigInt(p.log) * (0x100000000n / BigInt(segSize)) + BigInt(p.seg) };
}

function readAt(fd: number, length: number, position: number): Buffer {
  const buf = Buffer.alloc(length);
  const n = fs.readSync(fd, buf, 0, length, position);
  return buf.subarray(0, n);
}

export class ArchiveSource {
  private readonly dir: string;
  private readonly views: SharedViews;
  private readonly log: Logger;
  private readonly rescanMs: number;
  private readonly checked = new Map<string, FileCheck>();
  private readonly reported = new Set<string>();
  private identity: StoreIdentity | null = null;
  private flushLsn = 0n;
  private timeline = 0;
  private flushHistory: TimelineHistoryEntry[] | null = null; // the history flushLsn was computed on
  private watcher: fs.FSWatcher | null = null;
  private interval: NodeJS.Timeout | null = null;
  private scanQueued: NodeJS.Timeout | null = null;

  constructor(opts: { dir: string; views: SharedViews; log: Logger; rescanMs?: number }) {
    this.dir = opts.dir;
    this.views = opts.views;
    this.log = opts.log;
    this.rescanMs = opts.rescanMs ?? 1000;
  }

  start(): void {
    if (!fs.statSync(this.dir).isDirectory()) throw new Error(`archive directory "${this.dir}" is not a directory`);
    try {
      this.watcher = fs.watch(this.dir, () => this.queueScan());
      this.watcher.on('error', (e) => this.log.warn({ err: e }, 'archive directory watch failed; relying on rescans'));
    } catch (e) {
      this.log.warn({ err: e }, 'cannot watch archive directory; relying on rescans');
    }
    this.interval = setInterval(() => this.scan(), this.rescanMs);
    this.scan();
  }

  stop(): void {
    this.watcher?.close();
    if (this.interval) clearInterval(this.interval);
    if (this.scanQueued) clearTimeout(this.scanQueued);
    this.scan(); // publish whatever complete segments are already there: drain sends them
  }

  private queueScan(): void {
    if (this.scanQueued) return;
    this.scanQueued = setTimeout(() => { this.scanQueued = null; this.scan(); }, 20);
  }

  scan(): void {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch (e) {
      this.log.error({ err: e, dir: this.dir }, 'cannot read archive directory');
      return;
    }
    const segments = names.filter((n) => SEGMENT_NAME.test(n)).sort(bySegment);
    if (!this.identity) this.identity = this.learnIdentity(segments);
    if (!this.identity) return;
    const segSize = this.identity.segSize;
    const valid = new Map<string, bigint>(); // name -> segno, only validated segments
    let newestTli = 1;
    for (const name of segments) {
      const { tli, segno } = segnoFromName(name, segSize);
      if (this.check(name, segno, tli)) {
        valid.set(name, segno);
        newestTli = Math.max(newestTli, tli);
      }
    }
    for (const n of names) {
      const tli = parseHistoryFileName(n);
      if (tli !== null) newestTli = Math.max(newestTli, tli);
    }
    const history = this.history(newestTli);
    if (!history) return;
    this.advance(valid, history, newestTli);
  }

  /** The identity comes from the lowest segment with a valid long page header. */
  private learnIdentity(segments: string[]): StoreIdentity | null {
    for (const name of segments) {
      const file = path.join(this.dir, name);
      let first: Buffer;
      try {
        const fd = fs.openSync(file, 'r');
        try { first = readAt(fd, XLOG_BLCKSZ, 0); } finally { fs.closeSync(fd); }
      } catch {
        continue;
      }
      if (first.length < SIZE_OF_LONG_PHD) continue;
      const h = readPageHeader(first, 0);
      if (!h.long || !isValidSegmentSize(h.long.segSize) || majorVersionFromMagic(h.magic) === null) {
        this.report(name, 'no valid long page header: cannot learn the segment size from it');
        continue;
      }
      return { sysid: h.long.sysid, segSize: h.long.segSize, pageMagic: h.magic };
    }
    return null;
  }

  /**
   * Validate one segment file once per (size, mtime): its size and its long page header.
   * The last page cannot be checked: after pg_switch_wal() it is zeros.
   */
  private check(name: string, segno: bigint, fileTli: number): boolean {
    const id = this.identity!;
    const file = path.join(this.dir, name);
    let st: fs.Stats;
    try { st = fs.statSync(file); } catch { return false; }
    const prev = this.checked.get(name);
    if (prev && prev.size === st.size && prev.mtimeMs === st.mtimeMs) return prev.problem === null;
    let problem: string | null = null;
    if (st.size !== id.segSize) {
      problem = `file has ${st.size} bytes, expected ${id.segSize}`;
    } else {
      const segStart = segno * BigInt(id.segSize);
      const fd = fs.openSync(file, 'r');
      try {
        problem = validateSegmentLongHeader(readAt(fd, XLOG_BLCKSZ, 0), {
          segStartLsn: segStart, segSize: id.segSize, sysid: id.sysid, fileTli, pageMagic: id.pageMagic,
        });
      } finally {
        fs.closeSync(fd);
      }
    }
    this.checked.set(name, { size: st.size, mtimeMs: st.mtimeMs, problem });
    if (problem) this.report(name, problem);
    return problem === null;
  }

  private report(name: string, problem: string): void {
    const key = `${name}: ${problem}`;
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.log.warn({ segment: name, problem }, 'archived segment failed validation and is not served');
  }

  private history(tli: number): TimelineHistoryEntry[] | null {
    if (tli === 1) return [{ tli: 1, begin: 0n, end: null }];
    const name = historyFileName(tli);
    try {
      return parseHistoryFile(fs.readFileSync(path.join(this.dir, name), 'utf8'), tli);
    } catch (e) {
      this.report(name, `cannot use timeline history: ${(e as Error).message}`);
      return null;
    }
  }

  /**
   * Move the flush position over contiguous valid segments of the current timeline's
   * history. A segment holding a switch point is taken from the newer timeline's file,
   * as PostgreSQL serves it.
   */
  private advance(valid: Map<string, bigint>, history: TimelineHistoryEntry[], tli: number): void {
    const id = this.identity!;
    const seg = BigInt(id.segSize);
    const fileFor = (segno: bigint): string => segmentFileName(tliOfPoint(history, (segno + 1n) * seg - 1n), segno, id.segSize);
    let flush = this.flushLsn;
    if (flush !== 0n && tli !== this.timeline && this.flushHistory) {
      // WAL past the point where the new history leaves the old one is another timeline's
      // (a fork inside WAL already published, as after point-in-time recovery): walk the
      // new history again from the segment holding that point, even if that is lower.
      const fork = forkPoint(this.flushHistory, history);
      if (fork !== null && fork / seg * seg < flush) flush = fork / seg * seg;
    }
    if (flush === 0n) {
      // First publication: the end of the newest valid segment on this history.
      let newest = -1n;
      for (const segno of valid.values()) if (segno > newest && valid.has(fileFor(segno))) newest = segno;
      if (newest < 0n) return;
      flush = (newest + 1n) * seg;
    }
    while (valid.has(fileFor(flush / seg))) flush += seg;
    if (flush === this.flushLsn && tli === this.timeline) return;
    const first = this.flushLsn === 0n;
    this.flushLsn = flush;
    this.timeline = tli;
    this.flushHistory = history;
    if (first && !storeIdentity(this.views)) {
      publishIdentity(this.views, id, { flushLsn: flush, timeline: tli });
      this.log.info({ sysid: id.sysid.toString(), segSize: id.segSize, major: majorVersionFromMagic(id.pageMagic),
        timeline: tli, flushLsn: formatLsn(flush) }, 'archive store ready');
    } else {
      publishFlush(this.views, { flushLsn: flush, timeline: tli });
      this.log.debug({ timeline: tli, flushLsn: formatLsn(flush) }, 'archive flush position advanced');
    }
  }
}

/** The first LSN at which two timeline histories differ (null if they agree everywhere). */
export function forkPoint(a: readonly TimelineHistoryEntry[], b: readonly TimelineHistoryEntry[]): bigint | null {
  for (let i = 0; i < a.length && i < b.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.tli !== y.tli) return x.begin < y.begin ? x.begin : y.begin;
    if (x.end !== y.end) {
      if (x.end === null) return y.end;
      if (y.end === null) return x.end;
      return x.end < y.end ? x.end : y.end;
    }
  }
  return null;
}

function bySegment(a: string, b: string): number {
  // Order by position (log, seg), then timeline: names compare as hex after the TLI.
  const pa = a.slice(8) + a.slice(0, 8);
  const pb = b.slice(8) + b.slice(0, 8);
  return pa < pb ? -1 : pa > pb ? 1 : 0;
}
