import t from 'tap';
import { crc32c } from '../../src/wal/crc32c.ts';
import {
  RM_XLOG_ID,
  SIZE_OF_XLOG_RECORD,
  XLOG_NOOP,
  XLOG_SWITCH,
  XLR_BLOCK_ID_DATA_LONG,
  XLR_BLOCK_ID_DATA_SHORT,
  buildNoopRecord,
  buildSwitchRecord,
  isSwitchRecord,
  isValidRmid,
  mainDataRecordLength,
  maxAlign,
  maxAlignLsn,
  readRecordHeader,
} from '../../src/wal/record.ts';

t.test('constants and MAXALIGN', async (t) => {
  t.equal(SIZE_OF_XLOG_RECORD, 24);
  t.equal(XLOG_NOOP, 0x20);
  t.equal(XLOG_SWITCH, 0x40);
  t.equal(RM_XLOG_ID, 0);
  t.same([0, 1, 7, 8, 9, 1029, 1032].map(maxAlign), [0, 8, 8, 8, 16, 1032, 1032]);
  t.equal(maxAlignLsn(0x3fff25n), 0x3fff28n);
  t.equal(mainDataRecordLength(0), 24);
  t.equal(mainDataRecordLength(255), 24 + 2 + 255);
  t.equal(mainDataRecordLength(256), 24 + 5 + 256);
  t.ok(isValidRmid(0) && isValidRmid(21) && isValidRmid(128) && isValidRmid(255));
  t.notOk(isValidRmid(22) || isValidRmid(127));
});

t.test('short NOOP record bytes', async (t) => {
  const rec = buildNoopRecord(0x100028n, Buffer.from('abc'));
  t.equal(rec.length, 29);
  // xl_tot_len=29, xl_xid=0, xl_prev=0/100028, xl_info=0x20, xl_rmid=0, pad, xl_crc, then 0xFF len=3 "abc"
  t.equal(rec.subarray(0, 20).toString('hex'), '1d000000' + '00000000' + '2800100000000000' + '20' + '00' + '0000');
  t.equal(rec.subarray(24).toString('hex'), 'ff03616263');
  const expectCrc = crc32c(Buffer.concat([rec.subarray(24), rec.subarray(0, 20)]));
  t.equal(rec.readUInt32LE(20), expectCrc, 'CRC over data then header[0..20)');
  t.same(readRecordHeader(rec, 0), { totLen: 29, xid: 0, prev: 0x100028n, info: 0x20, rmid: 0, crc: expectCrc });
  t.notOk(isSwitchRecord(readRecordHeader(rec, 0)));
});

t.test('long NOOP record uses XLR_BLOCK_ID_DATA_LONG', async (t) => {
  const payload = Buffer.alloc(1000, 7);
  const rec = buildNoopRecord(0x1_0000_0000n, payload);
  t.equal(rec.length, 1029);
  t.equal(rec[24], XLR_BLOCK_ID_DATA_LONG);
  t.equal(rec.readUInt32LE(25), 1000);
  t.same(rec.subarray(29), payload);
  t.equal(readRecordHeader(rec, 0).prev, 0x1_0000_0000n);
  t.equal(buildNoopRecord(0n, Buffer.alloc(255))[24], XLR_BLOCK_ID_DATA_SHORT, '255 bytes is still short');
  t.equal(buildNoopRecord(0n, Buffer.alloc(256))[24], XLR_BLOCK_ID_DATA_LONG, '256 bytes is long');
  t.equal(buildNoopRecord(0n, Buffer.alloc(0)).length, 24, 'empty payload: no data header');
});

t.test('XLOG_SWITCH record', async (t) => {
  const rec = buildSwitchRecord(0xd21660n);
  t.equal(rec.length, 24);
  const h = readRecordHeader(rec, 0);
  t.same({ totLen: h.totLen, info: h.info, rmid: h.rmid, prev: h.prev }, { totLen: 24, info: 0x40, rmid: 0, prev: 0xd21660n });
  t.ok(isSwitchRecord(h));
  t.equal(h.crc, crc32c(rec, 0, 20));
  t.throws(() => readRecordHeader(rec, 1), RangeError);
});
