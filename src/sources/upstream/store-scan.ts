// Owns what the upstream receiver finds in its store at startup, after a clean stop
// or a kill -9 at any moment: the store's identity (from the WAL's long page headers;
// every segment must carry the same system identifier), the timeline to continue,
// and the durable end of valid WAL to resume from and publish.
//
// Why this end is safe: the writer renames a segment only after fdatasync, so every
// complete segment is whole. The open segment is the lowest `.partial` of the
// timeline; its bytes are fdatasynced here (after kill -9 the page cache still holds
// every byte written, after a power loss it may not), then walked record by record
// (page headers, xl_tot_len, xl_prev chain, CRC-32C). The end of the last valid
// record is the resume point; anything after it (a partly written record, or garbage
// after a power loss) is zeroed and re-streamed from the upstream, which sends the
// same bytes. A timeline whose first segment never got past its switch point is
// skipped: serving it would mean reading the switch segment beyond its durable end.

import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../../log.ts';
import type { StoreIdentity } from '../../shmem/control.ts';
import { initialHistory, parseHistoryFile, type TimelineHistoryEntry } from '../../wal/history.ts';
import {
  majorVersionFromMagic, readPageHeader, SIZE_OF_LONG_PHD, SIZE_OF_SHORT_PHD, validateSegmentLongHeader,
} from '../../wal/page.ts';
import { walkSegment, type SegmentRecord } from '../../wal/reader.ts';
import { isSwitchRecord, SIZE_OF_XLOG_RECORD } from '../../wal/record.ts';
import {
  formatLsn, historyFileName, isValidSegmentSize, parseSegmentFileName, segmentFileName, XLOG_BLCKSZ,
} from '../../wal/segment.ts';
import { SPARE_NAME } from './store-writer.ts';

export type StoreScan = {
  identity: StoreIdentity;
  timeline: number;
  /** History of `timeline` (its last entry begins at the switch point that started it). */
  history: TimelineHistoryEntry[];
  /** Durable end of valid WAL on `timeline`: publish it, resume streaming there. */
  end: bigint;
};

/** The store cannot be used as it is (foreign or damaged WAL); the message says why. */
export class StoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreError';
  }
}

type SegFile = { name: string; tli: number; segno: bigint; partial: boolean };

const SEGMENT_LIKE = /^[0-9A-F]{24}(\.partial)?$/;

function readHead(file: string, n: number): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(n);
    const got = fs.readSync(fd, buf, 0, n, 0);
    return buf.subarray(0, got);
  } finally {
    fs.closeSync(fd);
  }
}

/** A file whose first page is zeros (created, nothing written yet) holds no WAL. */
function hasWal(head: Buffer): boolean {
  return head.length >= SIZE_OF_LONG_PHD && head.readUInt16LE(0) !== 0;
}

function syncFile(file: string): void {
  const fd = fs.openSync(file, 'r+');
  try { fs.fdatasyncSync(fd); } finally { fs.closeSync(fd); }
}

export function fsyncDirSync(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
}

/** Null for an empty store (no WAL yet). Throws StoreError for a store that cannot be continued. */
export function scanStore(dir: string, log: Logger): StoreScan | null {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.rmSync(path.join(dir, SPARE_NAME), { force: true });
  const names = fs.readdirSync(dir).filter((n) => SEGMENT_LIKE.test(n)).sort();
  if (names.length === 0) return null;

  // Identity from the first file with a valid long page header; every other must agree.
  let identity: StoreIdentity | null = null;
  const heads = new Map<string, Buffer>();
  for (const n of names) heads.set(n, readHead(path.join(dir, n), XLOG_BLCKSZ));
  for (const n of names) {
    const h = heads.get(n)!;
    if (!hasWal(h)) continue;
    const p = readPageHeader(h, 0);
    if (!p.long || !isValidSegmentSize(p.long.segSize) || majorVersionFromMagic(p.magic) === null) {
      throw new StoreError(`data directory ${dir} holds ${n}, which is not a WAL segment; use an empty --data-dir`);
    }
    identity = { sysid: p.long.sysid, segSize: p.long.segSize, pageMagic: p.magic };
    break;
  }
  if (!identity) return null;
  const segSize = identity.segSize;
  const files: SegFile[] = [];
  for (const n of names) {
    const parsed = parseSegmentFileName(n, segSize);
    if (!parsed) continue;
    const h = heads.get(n)!;
    if (hasWal(h)) {
      const problem = validateSegmentLongHeader(h, {
        segStartLsn: parsed.segno * BigInt(segSize), segSize, sysid: identity.sysid, pageMagic: identity.pageMagic,
        fileTli: parsed.tli,
      });
      if (problem) throw new StoreError(`data directory ${dir} holds WAL it cannot continue (${n}: ${problem})`);
    }
    files.push({ name: n, ...parsed });
  }

  const tlis = [...new Set(files.map((f) => f.tli))].sort((a, b) => b - a);
  for (const tli of tlis) {
    let history: TimelineHistoryEntry[];
    try {
      history = tli === 1 ? initialHistory(1) : parseHistoryFile(fs.readFileSync(path.join(dir, historyFileName(tli)), 'utf8'), tli);
    } catch (e) {
      log.warn({ timeline: tli, err: (e as Error).message }, 'segments of a timeline without a usable history file are ignored');
      continue;
    }
    const begin = history.at(-1)!.begin;
    const mine = files.filter((f) => f.tli === tli).sort((a, b) => (a.segno < b.segno ? -1 : a.segno > b.segno ? 1 : 0));
    const end = recoverEnd(dir, mine, segSize, heads);
    if (end === null || (tli > 1 && end < begin)) {
      log.warn({ timeline: tli, end: end === null ? null : formatLsn(end), begins: formatLsn(begin) },
        'timeline never got past its switch point in the store; continuing its parent');
      continue;
    }
    fsyncDirSync(dir);
    log.info({ timeline: tli, end: formatLsn(end), segments: mine.length }, 'store recovered');
    return { identity, timeline: tli, history, end };
  }
  throw new StoreError(`data directory ${dir} holds no timeline that can be continued`);
}

/**
 * The durable end of valid WAL among one timeline's files (ascending segno): inside
 * the lowest `.partial`, else the end of the highest complete segment. Makes the
 * resume segment durable and zeroes what follows the end in it.
 */
function recoverEnd(dir: string, mine: SegFile[], segSize: number, heads: Map<string, Buffer>): bigint | null {
  if (mine.length === 0) return null;
  const seg = BigInt(segSize);
  const open = mine.find((f) => f.partial);
  if (!open) return (mine.at(-1)!.segno + 1n) * seg;
  const segStart = open.segno * seg;
  const file = path.join(dir, open.name);
  syncFile(file);
  if (!hasWal(heads.get(open.name)!)) return segStart;
  const bytes = fs.readFileSync(file);
  let known = Math.min(bytes.length, segSize);
  let last: SegmentRecord | null = null;
  for (const rec of walkSegment(bytes, segStart, segSize, known)) last = rec;
  let end = last ? last.endLsn : segStart;
  if (last && isSwitchRecord(last.header)) {
    // What follows an XLOG_SWITCH up to the segment end may not have arrived: the file
    // holds the spare's zeros there, or nothing (a file that grew). PostgreSQL >= 14 writes
    // only zeros there (page headers included), so zeros up to the segment end are the
    // upstream's bytes; before 14 those pages carry headers: resume right after the record
    // (24 bytes, across at most one page header) and take the rest from the upstream.
    const off = Number(last.lsn - segStart);
    const recEnd = off + SIZE_OF_XLOG_RECORD + (off % XLOG_BLCKSZ + SIZE_OF_XLOG_RECORD > XLOG_BLCKSZ ? SIZE_OF_SHORT_PHD : 0);
    const zeroedAfter = (majorVersionFromMagic(readPageHeader(bytes, 0).magic) ?? 0) >= 14;
    if (zeroedAfter && bytes.subarray(recEnd, known).every((b) => b === 0)) {
      if (known < segSize) {
        const fd = fs.openSync(file, 'r+');
        try { fs.ftruncateSync(fd, segSize); fs.fdatasyncSync(fd); } finally { fs.closeSync(fd); }
        known = segSize;
      }
      end = segStart + seg;
    } else {
      end = segStart + BigInt(recEnd);
    }
  }
  // Never past what the file holds (the MAXALIGN padding of the last record may be missing).
  if (end > segStart + BigInt(known)) end = segStart + BigInt(known);
  if (end >= segStart + seg) {
    // A complete segment: crashed between its last fdatasync and its rename.
    fs.renameSync(file, path.join(dir, segmentFileName(open.tli, open.segno, segSize)));
    return segStart + seg;
  }
  const keep = Number(end - segStart);
  if (keep < bytes.length && bytes.subarray(keep).some((b) => b !== 0)) {
    // Bytes after the end: a partial record, or garbage after a power loss. Zero them so
    // a later walk can never mistake them for WAL; the upstream sends them again.
    const fd = fs.openSync(file, 'r+');
    try {
      fs.writeSync(fd, Buffer.alloc(bytes.length - keep), 0, bytes.length - keep, keep);
      fs.fdatasyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }
  return end;
}
