import t from 'tap';
import {
  XLOG_BLCKSZ,
  formatLsn,
  historyFileName,
  isPartialSegmentFileNameShape,
  isSegmentFileNameShape,
  isValidSegmentSize,
  parseHistoryFileName,
  parseSegmentFileName,
  prevSegnoOf,
  segmentFileName,
  segmentOffset,
  segmentStartLsn,
  segmentsPerXLogId,
  segnoOf,
} from '../../src/wal/segment.ts';

const MB = 1024 * 1024;

t.test('segment sizes', async (t) => {
  t.equal(XLOG_BLCKSZ, 8192);
  for (const n of [MB, 2 * MB, 16 * MB, 1024 * MB]) t.ok(isValidSegmentSize(n), `${n} valid`);
  for (const n of [0, MB / 2, 3 * MB, 2048 * MB, 16 * MB + 1, 1.5 * MB, -MB]) t.notOk(isValidSegmentSize(n), `${n} invalid`);
  t.equal(segmentsPerXLogId(16 * MB), 256);
  t.equal(segmentsPerXLogId(MB), 4096);
  t.equal(segmentsPerXLogId(1024 * MB), 4);
  t.throws(() => segmentsPerXLogId(3 * MB), RangeError);
});

t.test('LSN to segment arithmetic', async (t) => {
  t.equal(segnoOf(0x3068500n, 16 * MB), 3n);
  t.equal(segmentStartLsn(3n, 16 * MB), 0x3000000n);
  t.equal(segmentOffset(0x3068500n, 16 * MB), 0x68500);
  t.equal(segnoOf(0x1_0000_0000n, 16 * MB), 256n);
  t.equal(prevSegnoOf(0x4000000n, 16 * MB), 3n, 'an end position at a boundary belongs to the previous segment');
  t.equal(formatLsn(0x3068500n), '0/3068500');
  t.equal(formatLsn(0x1_0000_00a8n), '1/A8');
  t.equal(formatLsn(0n), '0/0');
  t.equal(formatLsn(0xffffffff_ffffffffn), 'FFFFFFFF/FFFFFFFF');
});

t.test('segment file names', async (t) => {
  t.equal(segmentFileName(1, segnoOf(0x3068500n, 16 * MB), 16 * MB), '000000010000000000000003');
  t.equal(segmentFileName(1, 256n, 16 * MB), '000000010000000100000000');
  t.equal(segmentFileName(0xab, 0x1_23n, 16 * MB), '000000AB0000000100000023');
  t.equal(segmentFileName(2, 0x1000n, MB), '000000020000000100000000', '4096 segments per xlogid at 1 MiB');
  t.equal(segmentFileName(1, 0xfffn, MB), '000000010000000000000FFF');

  t.same(parseSegmentFileName('000000010000000000000003', 16 * MB), { tli: 1, segno: 3n, partial: false });
  t.same(parseSegmentFileName('000000020000000100000000.partial', 16 * MB), { tli: 2, segno: 256n, partial: true });
  t.same(parseSegmentFileName('000000010000000100000FFF', MB), { tli: 1, segno: 0x1fffn, partial: false });
  t.equal(parseSegmentFileName('000000010000000000000100', 16 * MB), null, 'segment part >= 256 for 16 MiB');
  t.equal(parseSegmentFileName('000000000000000000000003', 16 * MB), null, 'timeline 0');
  t.equal(parseSegmentFileName('00000001000000000000000a', 16 * MB), null, 'lower-case hex');
  t.equal(parseSegmentFileName('00000001000000000000003', 16 * MB), null, '23 chars');
  t.equal(parseSegmentFileName('000000010000000000000003.backup', 16 * MB), null);
  t.equal(parseSegmentFileName('000000010000000000000003.partial.tmp', 16 * MB), null);
  t.equal(parseSegmentFileName('00000002.history', 16 * MB), null);
  for (let segno = 0n; segno < 600n; segno += 37n) {
    t.same(parseSegmentFileName(segmentFileName(7, segno, 16 * MB), 16 * MB), { tli: 7, segno, partial: false });
  }

  t.ok(isSegmentFileNameShape('000000010000000000000003'));
  t.notOk(isSegmentFileNameShape('000000010000000000000003.partial'));
  t.notOk(isSegmentFileNameShape('00000001000000000000000g'));
  t.ok(isPartialSegmentFileNameShape('000000010000000000000003.partial'));
  t.notOk(isPartialSegmentFileNameShape('000000010000000000000003'));
});

t.test('history file names', async (t) => {
  t.equal(historyFileName(2), '00000002.history');
  t.equal(historyFileName(0xab), '000000AB.history');
  t.equal(parseHistoryFileName('00000002.history'), 2);
  t.equal(parseHistoryFileName('000000AB.history'), 0xab);
  t.equal(parseHistoryFileName('000000ab.history'), null);
  t.equal(parseHistoryFileName('00000000.history'), null);
  t.equal(parseHistoryFileName('0000002.history'), null);
  t.equal(parseHistoryFileName('00000002.history.tmp'), null);
});
