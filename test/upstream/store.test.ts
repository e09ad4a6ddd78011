// The relay's store without a server: the writer (positioned writes, batched
// fdatasync rounds, durable positions reported only after a round, full segments
// renamed, a zero-filled spare for the next segment) and the startup scan after a
// crash (the end of valid WAL inside the open `.partial`, torn or garbage tails zeroed,
// a full `.partial` renamed, another cluster's segment refused, a timeline whose first
// segment never reached its switch point skipped). Synthetic WAL from WalGenerator.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { createLogger } from '../../src/log.ts';
import { scanStore, StoreError } from '../../src/sources/upstream/store-scan.ts';
import { SPARE_NAME, StoreWriter } from '../../src/sources/upstream/store-writer.ts';
import { WalGenerator } from '../../src/wal/generator.ts';
import { mainDataRecordLength } from '../../src/wal/record.ts';
import { formatLsn, segmentFileName } from '../../src/wal/segment.ts';

const MB = 1 << 20;
const seg = BigInt(MB);
const log = createLogger('silent');
const sysid = 7300000000000000001n;

function names(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => n !== SPARE_NAME).sort();
}

/** Write WAL bytes into segment files directly (as a crashed writer would have left them). */
function writeRaw(dir: string, tli: number, start: bigint, bytes: Buffer, partialFrom: bigint | null,
  preallocated = true): void {
  for (let s = (start / seg) * seg; s < start + BigInt(bytes.length); s += seg) {
    const from = s < start ? Number(start - s) : 0;
    const off = Number(s + BigInt(from) - start);
    const n = Math.min(MB - from, bytes.length - off);
    const name = segmentFileName(tli, s / seg, MB) + (partialFrom !== null && s >= partialFrom ? '.partial' : '');
    const fd = fs.openSync(path.join(dir, name), fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    // The writer's files are preallocated (the spare), except one created while no spare was ready.
    if (preallocated && fs.fstatSync(fd).size < MB) fs.ftruncateSync(fd, MB);
    fs.writeSync(fd, bytes, off, n, from);
    fs.closeSync(fd);
  }
}

t.test('writer: durable only after a sync round; full segments renamed; a spare prepared', async (t) => {
  const dir = t.testdir({});
  const durable: string[] = [];
  const w = new StoreWriter({ dir, segSize: MB, onDurable: (lsn, tli) => durable.push(`${tli}:${formatLsn(lsn)}`), onFatal: (e) => t.fail(e.message) });
  const gen = new WalGenerator({ sysid, tli: 1, segSize: MB, startLsn: seg, prevRecPtr: 0n });
  w.begin(1, seg);
  const a = gen.generate(MB + 300_000);
  w.append(a.startLsn, [a.bytes.subarray(0, 5000), a.bytes.subarray(5000)]);
  t.same(durable, [], 'nothing is durable before a sync round');
  t.throws(() => w.append(a.startLsn, [a.bytes]), /does not continue the written end/);
  t.throws(() => w.begin(2, 0n), /unsynced writes/);
  t.same(names(dir), ['000000010000000000000001.partial', '000000010000000000000002.partial'], 'written as .partial');
  await w.flush();
  t.same(durable, [`1:${formatLsn(a.endLsn)}`]);
  t.same(names(dir), ['000000010000000000000001', '000000010000000000000002.partial'], 'the full segment renamed after its sync');
  t.equal(fs.readFileSync(path.join(dir, '000000010000000000000001')).compare(a.bytes.subarray(0, MB)), 0, 'its bytes');
  // A little WAL in the open segment is synced inline: durable when requestSync returns.
  const small = gen.generate(20_000);
  w.append(small.startLsn, [small.bytes]);
  w.requestSync();
  t.equal(durable.at(-1), `1:${formatLsn(small.endLsn)}`, 'a small write is durable at once (inline fdatasync)');
  // More than that goes to background rounds; appends meanwhile are covered by the next round.
  const before = durable.length;
  for (let i = 0; i < 10; i++) {
    const b = gen.generate(300_000);
    w.append(b.startLsn, [b.bytes]);
    w.requestSync();
    if (i === 0) t.equal(durable.length, before, 'a large write is not durable before its round finishes');
  }
  await w.flush();
  t.ok(durable.length - before < 10, `${durable.length - before} rounds for 10 large appends (group commit)`);
  t.equal(durable.at(-1), `1:${formatLsn(gen.endLsn)}`, 'everything durable in the end');
  await new Promise((r) => setTimeout(r, 200));
  t.equal(fs.statSync(path.join(dir, SPARE_NAME)).size, MB, 'a zero-filled spare waits for the next segment');
  await w.close();
  t.notOk(fs.existsSync(path.join(dir, SPARE_NAME)), 'the spare is removed at close');
});

t.test('scan: empty store', async (t) => {
  t.equal(scanStore(t.testdir({}), log), null);
  t.equal(scanStore(t.testdir({ 'readme.txt': 'x', '000000010000000000000001.partial': Buffer.alloc(MB) }), log), null,
    'a .partial of zeros holds no WAL');
});

t.test('scan after a crash: the end of valid WAL in the open segment; the torn tail zeroed', async (t) => {
  const dir = t.testdir({});
  const gen = new WalGenerator({ sysid, tli: 1, segSize: MB, startLsn: seg, prevRecPtr: 0n });
  const wal = gen.generate(2 * MB + 100_000);
  const end = gen.endLsn;
  writeRaw(dir, 1, seg, wal.bytes, 3n * seg);
  // A record written halfway, then garbage (what a power loss may leave).
  const big = new WalGenerator({ sysid, tli: 1, segSize: MB, startLsn: end, prevRecPtr: gen.prevRecPtr, recordPayloadLen: 8000 });
  const torn = big.generate(1).bytes.subarray(0, 4000);
  const junk = Buffer.from(Array.from({ length: 4000 }, (_, i) => (i * 7 + 1) & 0xff));
  writeRaw(dir, 1, end, Buffer.concat([torn, junk]), 3n * seg);
  const s = scanStore(dir, log)!;
  t.equal(s.identity.sysid, sysid);
  t.equal(s.identity.segSize, MB);
  t.equal(s.timeline, 1);
  t.equal(formatLsn(s.end), formatLsn(end), 'resume at the end of the last valid record');
  const open = fs.readFileSync(path.join(dir, '000000010000000000000003.partial'));
  const at = Number(end - 3n * seg);
  t.ok(open.subarray(at).every((b) => b === 0), 'everything after it is zeroed');
  t.equal(open.compare(wal.bytes.subarray(2 * MB), 0, at, 0, at), 0, 'everything before it is kept');
});

/** WAL from `start` whose last record, then `pad` bytes of MAXALIGN padding, end exactly at the end of its segment. */
function exactlyToSegmentEnd(start: bigint, pad = 0): Buffer {
  const segEnd = (start / seg + 1n) * seg;
  const head = new WalGenerator({ sysid, tli: 1, segSize: MB, startLsn: start, prevRecPtr: 0n });
  const a = head.generate(Number(segEnd - start) - 30_000);
  for (let len = 0; len < 30_000; len++) {
    if ((8 - (mainDataRecordLength(len) % 8)) % 8 !== pad) continue;
    const last = new WalGenerator({ sysid, tli: 1, segSize: MB, startLsn: a.endLsn, prevRecPtr: head.prevRecPtr, recordPayloadLen: len });
    const b = last.generate(0);
    if (b.endLsn === segEnd) return Buffer.concat([a.bytes, b.bytes]);
  }
  throw new Error('no record length ends the segment exactly');
}

t.test('scan: a full .partial (crash before the rename) is completed', async (t) => {
  const dir = t.testdir({});
  const wal = exactlyToSegmentEnd(seg);
  t.equal(wal.length, MB, 'records fill segment 1 exactly');
  writeRaw(dir, 1, seg, wal, seg);
  const s = scanStore(dir, log)!;
  t.equal(formatLsn(s.end), formatLsn(2n * seg));
  t.same(names(dir), ['000000010000000000000001']);
});

t.test('scan: after an XLOG_SWITCH, the rest of the segment is taken as zeros only where PostgreSQL writes zeros', async (t) => {
  const g = new WalGenerator({ sysid, tli: 1, segSize: MB, startLsn: seg, prevRecPtr: 0n });
  const a = g.generate(200_000);
  const sw = g.switchSegment();
  t.ok(a.endLsn % 8192n <= 8192n - 24n, 'the 24-byte switch record lies on one page');
  t.equal(sw.bytes.subarray(24).every((b) => b === 0), true, 'zeros after it (PostgreSQL >= 14)');
  const segment = Buffer.concat([a.bytes, sw.bytes]);
  t.equal(segment.length, MB);
  // A segment file created while no spare was ready grows as WAL arrives: after a kill -9
  // that follows the switch record, the file holds nothing after it.
  const short = t.testdir({});
  writeRaw(short, 1, seg, Buffer.concat([a.bytes, sw.bytes.subarray(0, 24)]), seg, false);
  let s = scanStore(short, log)!;
  t.equal(formatLsn(s.end), formatLsn(2n * seg), 'PostgreSQL 15: the segment is complete');
  t.same(names(short), ['000000010000000000000001']);
  t.equal(fs.readFileSync(path.join(short, '000000010000000000000001')).compare(segment), 0,
    'full size, byte-identical to the upstream\'s segment (zeros after the switch)');

  // Preallocated, PostgreSQL 15: the upstream's segment holds zeros after the switch record
  // too, so the file is that segment whatever of it arrived.
  const full = t.testdir({});
  writeRaw(full, 1, seg, Buffer.concat([a.bytes, sw.bytes.subarray(0, 24)]), seg);
  s = scanStore(full, log)!;
  t.equal(formatLsn(s.end), formatLsn(2n * seg), 'PostgreSQL 15: a full file of zeros after the switch is complete');
  t.same(names(full), ['000000010000000000000001']);

  // PostgreSQL 13 leaves page headers in the pages after a switch: the spare's zeros are not them.
  const old = t.testdir({});
  const g13 = new WalGenerator({ sysid, tli: 1, segSize: MB, startLsn: seg, prevRecPtr: 0n, pageMagic: 0xd106 });
  const a13 = g13.generate(200_000);
  const sw13 = g13.switchSegment();
  writeRaw(old, 1, seg, Buffer.concat([a13.bytes, sw13.bytes.subarray(0, 24)]), seg);
  s = scanStore(old, log)!;
  t.equal(formatLsn(s.end), formatLsn(a13.endLsn + 24n), 'PostgreSQL 13: resume right after the switch record');
  t.same(names(old), ['000000010000000000000001.partial']);
  const old2 = t.testdir({});
  writeRaw(old2, 1, seg, Buffer.concat([a13.bytes, sw13.bytes.subarray(0, 24)]), seg, false);
  s = scanStore(old2, log)!;
  t.equal(formatLsn(s.end), formatLsn(a13.endLsn + 24n), 'also when the file holds nothing after the record');
  t.same(names(old2), ['000000010000000000000001.partial'], 'a short file is never given a complete segment\'s name');

  // A record ending a few bytes before the segment end, in a file that holds only its bytes
  // (not the MAXALIGN padding): the end is what the file holds, never past it.
  const tight = t.testdir({});
  const wal = exactlyToSegmentEnd(seg, 4);
  const cut = wal.length - 4;
  writeRaw(tight, 1, seg, wal.subarray(0, cut), seg, false);
  s = scanStore(tight, log)!;
  t.equal(formatLsn(s.end), formatLsn(seg + BigInt(cut)), 'the end of the last record, without its padding');
  t.same(names(tight), ['000000010000000000000001.partial'], 'and the file keeps its .partial name');
});

t.test('scan refuses what it cannot continue', async (t) => {
  const dir = t.testdir({});
  const mine = new WalGenerator({ sysid, tli: 1, segSize: MB, startLsn: seg, prevRecPtr: 0n }).generate(MB - 100);
  writeRaw(dir, 1, seg, mine.bytes, null);
  const theirs = new WalGenerator({ sysid: sysid + 1n, tli: 1, segSize: MB, startLsn: 2n * seg, prevRecPtr: 0n }).generate(1000);
  writeRaw(dir, 1, 2n * seg, theirs.bytes, 2n * seg);
  t.throws(() => scanStore(dir, log), StoreError);
  t.throws(() => scanStore(dir, log), /WAL file is from different database system/);
  const bad = t.testdir({ '000000010000000000000001': Buffer.alloc(MB, 0x41) });
  t.throws(() => scanStore(bad, log), /is not a WAL segment/);
});

t.test('scan: a new timeline is continued only once its switch segment is past the switch point', async (t) => {
  const dir = t.testdir({});
  const g1 = new WalGenerator({ sysid, tli: 1, segSize: MB, startLsn: seg, prevRecPtr: 0n });
  const w1 = g1.generate(MB + 200_000);
  const sw = g1.endLsn; // the switch point, in segment 2
  writeRaw(dir, 1, seg, w1.bytes, 2n * seg);
  fs.writeFileSync(path.join(dir, '00000002.history'), `1\t${formatLsn(sw)}\tno recovery target specified\n`);
  // Timeline 2's copy of segment 2 was cut short before the switch point.
  writeRaw(dir, 2, 2n * seg, w1.bytes.subarray(MB, MB + 100_000), 2n * seg);
  let s = scanStore(dir, log)!;
  t.equal(s.timeline, 1, 'timeline 2 is not served yet');
  t.equal(formatLsn(s.end), formatLsn(sw));
  // Now timeline 2 holds the copy up to the switch point and its own records after it.
  const g2 = new WalGenerator({ sysid, tli: 2, segSize: MB, startLsn: sw, prevRecPtr: g1.prevRecPtr });
  const w2 = g2.generate(50_000);
  writeRaw(dir, 2, 2n * seg, Buffer.concat([w1.bytes.subarray(MB), w2.bytes]), 2n * seg);
  s = scanStore(dir, log)!;
  t.equal(s.timeline, 2);
  t.equal(formatLsn(s.end), formatLsn(g2.endLsn));
  t.equal(formatLsn(s.history.at(-1)!.begin), formatLsn(sw));
});
