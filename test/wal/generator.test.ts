import t from 'tap';
import type { Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WalGenerator, findEndOfWal } from '../../src/wal/generator.ts';
import { walkSegment } from '../../src/wal/reader.ts';
import { SIZE_OF_LONG_PHD, SIZE_OF_SHORT_PHD, XLP_FIRST_IS_CONTRECORD, XLP_LONG_HEADER, readPageHeader } from '../../src/wal/page.ts';
import { XLOG_BLCKSZ, formatLsn, segmentFileName, segnoOf } from '../../src/wal/segment.ts';

const PG_WALDUMP = '/usr/lib/postgresql/15/bin/pg_waldump';
const MB = 1024 * 1024;
const SYSID = 7712064296540365798n;
const RECORD = 1032; // MAXALIGN(24 + 5 + 1000)

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'walgen-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes bytes for [startLsn, ...) into full-size segment files in dir, merging with existing files. */
function layOut(dir: string, tli: number, segSize: number, startLsn: bigint, bytes: Uint8Array): void {
  let lsn = startLsn;
  let i = 0;
  while (i < bytes.length) {
    const segno = segnoOf(lsn, segSize);
    const path = join(dir, segmentFileName(tli, segno, segSize));
    const seg = existsSync(path) ? readFileSync(path) : Buffer.alloc(segSize);
    const off = Number(lsn % BigInt(segSize));
    const n = Math.min(segSize - off, bytes.length - i);
    seg.set(bytes.subarray(i, i + n), off);
    writeFileSync(path, seg);
    i += n;
    lsn += BigInt(n);
  }
}

function waldump(args: string[]) {
  const r = spawnSync(PG_WALDUMP, args, { encoding: 'utf8', maxBuffer: 256 * MB });
  const lsns = [...r.stdout.matchAll(/lsn: ([0-9A-F]+)\/([0-9A-F]+)/g)].map((m) => (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`));
  const total = /^Total\s+(\d+)/m.exec(r.stdout);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, lsns, total: total ? Number(total[1]) : null };
}

/** Record count from the layout alone: usable bytes (page headers removed) / record size. */
function expectedRecords(startLsn: bigint, endLsn: bigint, segSize: number): number {
  let headers = 0;
  const firstPage = (startLsn + BigInt(XLOG_BLCKSZ - 1)) / BigInt(XLOG_BLCKSZ);
  for (let p = firstPage; p * BigInt(XLOG_BLCKSZ) < endLsn; p++) {
    headers += (p * BigInt(XLOG_BLCKSZ)) % BigInt(segSize) === 0n ? SIZE_OF_LONG_PHD : SIZE_OF_SHORT_PHD;
  }
  const usable = Number(endLsn - startLsn) - headers;
  return usable / RECORD;
}

t.test('three 1 MiB segments read by pg_waldump', async (t) => {
  const dir = tempDir(t);
  const g = new WalGenerator({ sysid: SYSID, tli: 1, segSize: MB, startLsn: 0x100000n, prevRecPtr: 0n });
  const r = g.generate(3 * MB);
  t.equal(r.startLsn, 0x100000n);
  t.equal(r.endLsn, g.endLsn);
  t.equal(BigInt(r.bytes.length), r.endLsn - r.startLsn);
  t.ok(r.bytes.length >= 3 * MB && r.bytes.length < 3 * MB + 2 * RECORD);
  layOut(dir, 1, MB, r.startLsn, r.bytes);
  const n = expectedRecords(r.startLsn, r.endLsn, MB);
  t.ok(Number.isInteger(n), `layout gives a whole number of records (${n})`);

  // Every page header: address, timeline, long header on segment starts, rem_len <=> CONTRECORD.
  let contPages = 0;
  for (let off = 0; off < r.bytes.length; off += XLOG_BLCKSZ) {
    const h = readPageHeader(r.bytes, off);
    const lsn = r.startLsn + BigInt(off);
    if (h.magic !== 0xd110 || h.pageAddr !== lsn || h.tli !== 1) t.fail(`page header at ${formatLsn(lsn)}`);
    if (Boolean(h.info & XLP_LONG_HEADER) !== (lsn % BigInt(MB) === 0n)) t.fail(`long header flag at ${formatLsn(lsn)}`);
    if (h.long && (h.long.sysid !== SYSID || h.long.segSize !== MB || h.long.blcksz !== 8192)) t.fail('long header fields');
    if (Boolean(h.info & XLP_FIRST_IS_CONTRECORD) !== h.remLen > 0) t.fail(`contrecord flag at ${formatLsn(lsn)}`);
    if (h.remLen > 0) contPages++;
  }
  t.ok(contPages > 300, `records continue across pages (${contPages} pages)`);

  const d = waldump(['-p', dir, '-s', '0/100000', '-e', formatLsn(r.endLsn)]);
  t.equal(d.status, 0, 'pg_waldump exit code');
  t.notMatch(d.stderr, /error/i);
  t.equal(d.lsns.length, n, 'record count');
  t.equal(d.lsns[0], 0x100028n, 'first record right after the long page header');
  t.equal(d.lsns[d.lsns.length - 1], g.prevRecPtr, 'last record = prevRecPtr');
  t.equal((d.stdout.match(/desc: NOOP/g) ?? []).length, n, 'all NOOP');

  const s = waldump(['-p', dir, '-s', '0/100028', '-e', formatLsn(r.endLsn), '--stats']);
  t.equal(s.status, 0, 'pg_waldump --stats exit code');
  t.notMatch(s.stderr, /error/i);
  t.equal(s.total, n, '--stats Total');

  // Without -e pg_waldump runs into the zeros after endLsn: that is PG's own end of WAL.
  const open = waldump(['-p', dir, '-s', '0/100000']);
  t.equal(open.lsns.length, n);
  if (r.endLsn % BigInt(XLOG_BLCKSZ) !== 0n) {
    t.match(open.stderr, `invalid record length at ${formatLsn(r.endLsn)}: wanted 24, got 0`);
  }
});

t.test('one 16 MiB segment on timeline 2', async (t) => {
  const dir = tempDir(t);
  const g = new WalGenerator({ sysid: SYSID, tli: 2, segSize: 16 * MB, startLsn: 0x3000000n, prevRecPtr: 0x2fffe40n });
  const r = g.generate(16 * MB - XLOG_BLCKSZ);
  t.ok(r.endLsn < 0x4000000n, 'fits in segment 3');
  layOut(dir, 2, 16 * MB, r.startLsn, r.bytes);
  t.ok(existsSync(join(dir, '000000020000000000000003')));
  const d = waldump(['-p', dir, '-t', '2', '-s', '0/3000000', '-e', formatLsn(r.endLsn), '--stats']);
  t.equal(d.status, 0);
  t.notMatch(d.stderr, /error/i);
  t.equal(d.total, expectedRecords(r.startLsn, r.endLsn, 16 * MB));
  const e = findEndOfWal(readFileSync(join(dir, '000000020000000000000003')), 0x3000000n, 16 * MB);
  t.same(e, { endLsn: r.endLsn, prevRecPtr: g.prevRecPtr, lastRecordLsn: g.prevRecPtr });
});

t.test('timeline 3 across an xlogid boundary, small records, other page magic', async (t) => {
  const dir = tempDir(t);
  const g = new WalGenerator({ sysid: SYSID, tli: 3, segSize: MB, startLsn: 0xfff00000n, prevRecPtr: 0n, recordPayloadLen: 100 });
  const r = g.generate(MB + 5000);
  layOut(dir, 3, MB, r.startLsn, r.bytes);
  t.ok(existsSync(join(dir, '0000000300000000000000FF')) === false && existsSync(join(dir, '00000003000000000000FFF')) === false);
  t.ok(existsSync(join(dir, '000000030000000000000FFF')) && existsSync(join(dir, '000000030000000100000000')));
  const d = waldump(['-p', dir, '-t', '3', '-s', '0/FFF00000', '-e', formatLsn(r.endLsn)]);
  t.equal(d.status, 0);
  t.notMatch(d.stderr, /error/i);
  t.equal(d.lsns[d.lsns.length - 1], g.prevRecPtr);
  t.match(d.stdout, /len \(rec\/tot\):\s+126\/\s+126/, 'short data header: 24 + 2 + 100');

  const dir16 = tempDir(t);
  const g16 = new WalGenerator({ sysid: SYSID, tli: 1, segSize: MB, startLsn: 0x100000n, prevRecPtr: 0n, pageMagic: 0xd113 });
  layOut(dir16, 1, MB, 0x100000n, g16.generate(100_000).bytes);
  const d16 = waldump(['-p', dir16, '-s', '0/100000', '-e', formatLsn(g16.endLsn)]);
  t.not(d16.status, 0, 'pg_waldump 15 refuses PG16 page magic');
  t.match(d16.stderr, /could not find a valid record after 0\/100000/);
});

t.test('XLOG_SWITCH', async (t) => {
  const dir = tempDir(t);
  const g = new WalGenerator({ sysid: SYSID, tli: 1, segSize: MB, startLsn: 0x100000n, prevRecPtr: 0n });
  const a = g.generate(300_000);
  const sw = g.switchSegment();
  t.equal(sw.startLsn, a.endLsn);
  t.equal(sw.endLsn, 0x200000n);
  const switchLsn = g.prevRecPtr;
  t.ok(sw.bytes.subarray(Number(switchLsn - sw.startLsn) + 24).every((b) => b === 0), 'rest of the segment is zero');
  t.equal(g.switchSegment().bytes.length, 0, 'a switch at a segment start does nothing');
  const b = g.generate(200_000);
  t.equal(b.startLsn, 0x200000n);
  layOut(dir, 1, MB, a.startLsn, Buffer.concat([a.bytes, sw.bytes, b.bytes]));
  const d = waldump(['-p', dir, '-s', '0/100000', '-e', formatLsn(b.endLsn)]);
  t.equal(d.status, 0);
  t.notMatch(d.stderr, /error/i);
  t.match(d.stdout, new RegExp(`lsn: 0/${switchLsn.toString(16).toUpperCase().padStart(8, '0')}, .*desc: SWITCH`));
  t.equal(d.lsns.length, expectedRecords(a.startLsn, a.endLsn, MB) + 1 + expectedRecords(b.startLsn, b.endLsn, MB));
  t.equal(d.lsns[d.lsns.length - 1], g.prevRecPtr);
  const seg1 = readFileSync(join(dir, '000000010000000000000001'));
  t.same(findEndOfWal(seg1, 0x100000n, MB), { endLsn: 0x200000n, prevRecPtr: switchLsn, lastRecordLsn: switchLsn });
});

t.test('resume after a crash regenerates identical bytes', async (t) => {
  const opts = { sysid: SYSID, tli: 1, segSize: MB, startLsn: 0x100000n, prevRecPtr: 0n };
  const ref = new WalGenerator(opts).generate(3 * MB);
  const refAt = (lsn: bigint, len: number) => ref.bytes.subarray(Number(lsn - ref.startLsn), Number(lsn - ref.startLsn) + len);

  // Chunking does not matter.
  const g = new WalGenerator(opts);
  const chunks: Buffer[] = [];
  for (const size of [0, 1, 5000, 8192, 100_000, MB, 3 * MB]) chunks.push(g.generate(size).bytes);
  const chunked = Buffer.concat(chunks);
  t.ok(chunked.length >= ref.bytes.length);
  t.ok(chunked.subarray(0, ref.bytes.length).equals(ref.bytes), 'chunked generation = one generation');

  // Crash points: mid-record, just after a page header, garbage after the tear.
  const cases = [
    { at: 0x223457n, tail: 'zeros' },
    { at: 0x200000n + 7n * 8192n + 30n, tail: 'zeros' },
    { at: 0x300000n + 0x4321n, tail: 'random' },
    { at: 0x200000n + 9n * 8192n, tail: 'zeros' },
  ] as const;
  for (const c of cases) {
    const segno = segnoOf(c.at - 1n, MB);
    const segStart = segno * BigInt(MB);
    const seg = c.tail === 'zeros' ? Buffer.alloc(MB) : Buffer.from(Array.from({ length: MB }, (_, i) => (i * 2654435761) >>> 24));
    refAt(segStart, Number(c.at - segStart)).copy(seg);
    const e = findEndOfWal(seg, segStart, MB);
    if (!e) {
      t.fail(`no end found for ${formatLsn(c.at)}`);
      continue;
    }
    t.ok(e.endLsn <= c.at && e.endLsn > c.at - BigInt(RECORD + SIZE_OF_SHORT_PHD), `end ${formatLsn(e.endLsn)} just before ${formatLsn(c.at)}`);
    const resumed = new WalGenerator({ ...opts, startLsn: e.endLsn, prevRecPtr: e.prevRecPtr });
    const rest = resumed.generate(Number(ref.endLsn - e.endLsn));
    t.equal(rest.endLsn, ref.endLsn);
    t.ok(rest.bytes.equals(refAt(e.endLsn, rest.bytes.length)), `resumed bytes identical after ${formatLsn(c.at)} (${c.tail})`);
  }

  // A tear in a record continued from the previous segment: nothing starts in the torn segment,
  // so the caller goes back one segment, whose end is the last record that fits in it.
  const seg3 = Buffer.alloc(MB);
  refAt(0x300000n, 40).copy(seg3);
  t.equal(findEndOfWal(seg3, 0x300000n, MB), null, 'only a page header');
  const seg2 = Buffer.from(refAt(0x200000n, MB));
  const e2 = findEndOfWal(seg2, 0x200000n, MB)!;
  t.ok(e2.endLsn < 0x300000n && e2.endLsn > 0x300000n - BigInt(RECORD));
  t.equal(findEndOfWal(seg2, 0x200000n, MB, Number(e2.endLsn - 0x200000n))?.endLsn, e2.endLsn, 'knownBytes at the end');
  // the last record is 1029 bytes + 3 bytes of MAXALIGN padding
  t.equal(findEndOfWal(seg2, 0x200000n, MB, Number(e2.endLsn - 0x200000n) - 3)?.endLsn, e2.endLsn, 'padding not needed');
  t.equal(findEndOfWal(seg2, 0x200000n, MB, Number(e2.endLsn - 0x200000n) - 4)?.endLsn, e2.endLsn - BigInt(RECORD), 'one byte short');

  // pg_waldump reads across a resume point written into the files.
  const dir = tempDir(t);
  const first = new WalGenerator(opts);
  const part1 = first.generate(1_500_000);
  layOut(dir, 1, MB, part1.startLsn, part1.bytes.subarray(0, part1.bytes.length - 500)); // torn last record
  const segno = segnoOf(part1.endLsn, MB);
  const torn = readFileSync(join(dir, segmentFileName(1, segno, MB)));
  const e = findEndOfWal(torn, segno * BigInt(MB), MB)!;
  t.ok(e.endLsn < part1.endLsn);
  const second = new WalGenerator({ ...opts, startLsn: e.endLsn, prevRecPtr: e.prevRecPtr });
  const part2 = second.generate(1_000_000);
  layOut(dir, 1, MB, part2.startLsn, part2.bytes);
  const d = waldump(['-p', dir, '-s', '0/100000', '-e', formatLsn(part2.endLsn)]);
  t.equal(d.status, 0);
  t.notMatch(d.stderr, /error/i);
  t.equal(d.lsns.length, expectedRecords(0x100000n, part2.endLsn, MB));
  t.ok(d.lsns.includes(e.endLsn) || d.lsns.includes(e.endLsn + BigInt(SIZE_OF_SHORT_PHD)), 'a record starts at the resume point');
});

t.test('walkSegment on generated WAL', async (t) => {
  const g = new WalGenerator({ sysid: SYSID, tli: 1, segSize: MB, startLsn: 0x100000n, prevRecPtr: 0n });
  const r = g.generate(2 * MB);
  const it = walkSegment(r.bytes.subarray(MB), 0x200000n, MB);
  const recs = [];
  let step;
  while (!(step = it.next()).done) recs.push(step.value);
  t.match(step.value, /continues in the next segment|end of segment/);
  const firstPage = readPageHeader(r.bytes, MB);
  t.ok(firstPage.info & XLP_FIRST_IS_CONTRECORD, 'segment 2 starts with a continued record');
  t.equal(recs[0]!.lsn, 0x200000n + BigInt(SIZE_OF_LONG_PHD + ((firstPage.remLen + 7) & ~7)), 'first record after the continuation');
  for (let i = 1; i < recs.length; i++) {
    if (recs[i]!.header.prev !== recs[i - 1]!.lsn) t.fail(`prev link at ${formatLsn(recs[i]!.lsn)}`);
  }
  t.equal(
    recs.length,
    expectedRecords(0x100000n, recs[recs.length - 1]!.endLsn, MB) - expectedRecords(0x100000n, recs[0]!.lsn, MB),
    'all records that start in the segment',
  );
});

t.test('constructor checks and system identifier', async (t) => {
  const base = { sysid: SYSID, tli: 1, segSize: MB, prevRecPtr: 0n };
  t.throws(() => new WalGenerator({ ...base, startLsn: 0x100010n }), /inside a page header/);
  t.throws(() => new WalGenerator({ ...base, startLsn: 0x102008n }), /inside a page header/);
  t.throws(() => new WalGenerator({ ...base, startLsn: 0x100029n }), /not MAXALIGNed/);
  t.throws(() => new WalGenerator({ ...base, segSize: 3 * MB, startLsn: 0n }), /segment size/);
  t.throws(() => new WalGenerator({ ...base, tli: 0, startLsn: 0n }), /timeline/);
  t.doesNotThrow(() => new WalGenerator({ ...base, startLsn: 0x102018n }));

  t.equal(WalGenerator.newSystemIdentifier(1700000000123.456, 0x12345), (1700000000n << 32n) | (123456n << 12n) | 0x345n);
  const id = WalGenerator.newSystemIdentifier();
  t.ok(Math.abs(Number(id >> 32n) - Date.now() / 1000) < 5, 'seconds part is now');
  t.equal(Number(id & 0xfffn), process.pid & 0xfff, 'low 12 bits are the pid');
});
