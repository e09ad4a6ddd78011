import t from 'tap';
import {
  PAGE_MAGIC_BY_MAJOR,
  SIZE_OF_LONG_PHD,
  SIZE_OF_SHORT_PHD,
  XLP_ALL_FLAGS,
  XLP_BKP_REMOVABLE,
  XLP_FIRST_IS_CONTRECORD,
  XLP_FIRST_IS_OVERWRITE_CONTRECORD,
  XLP_LONG_HEADER,
  majorVersionFromMagic,
  pageHeaderSize,
  readPageHeader,
  validateSegmentLongHeader,
  writePageHeader,
} from '../../src/wal/page.ts';
import type { PageHeader } from '../../src/wal/page.ts';

const MB = 1024 * 1024;
const SYSID = 7712064296540365798n;

// First page of segment 5 as observed on a PG15 cluster (protocol.md 5.2): magic 0xD110, info 0x0006,
// tli 1, pageaddr 0x5000000, rem 0, sysid 7712064296540365798, seg_size 16777216, blcksz 8192.
const OBSERVED_HEX =
  '10d1' + '0600' + '01000000' + '0000000500000000' + '00000000' + '00000000' + // short part
  'e6e342109ec1066b' + '00000001' + '00200000'; // sysid, seg_size, blcksz

function longHeader(over: Partial<PageHeader> = {}, long: Partial<NonNullable<PageHeader['long']>> = {}): Buffer {
  const buf = Buffer.alloc(8192);
  writePageHeader(buf, 0, {
    magic: 0xd110,
    info: XLP_LONG_HEADER | XLP_BKP_REMOVABLE,
    tli: 1,
    pageAddr: 0x5000000n,
    remLen: 0,
    long: { sysid: SYSID, segSize: 16 * MB, blcksz: 8192, ...long },
    ...over,
  });
  return buf;
}

t.test('constants', async (t) => {
  t.equal(XLP_FIRST_IS_CONTRECORD, 1);
  t.equal(XLP_LONG_HEADER, 2);
  t.equal(XLP_BKP_REMOVABLE, 4);
  t.equal(XLP_FIRST_IS_OVERWRITE_CONTRECORD, 8);
  t.equal(XLP_ALL_FLAGS, 0xf);
  t.equal(SIZE_OF_SHORT_PHD, 24);
  t.equal(SIZE_OF_LONG_PHD, 40);
  t.equal(PAGE_MAGIC_BY_MAJOR[15], 0xd110);
  t.equal(majorVersionFromMagic(0xd106), 13);
  t.equal(majorVersionFromMagic(0xd10d), 14);
  t.equal(majorVersionFromMagic(0xd110), 15);
  t.equal(majorVersionFromMagic(0xd113), 16);
  t.equal(majorVersionFromMagic(0xd116), 17);
  t.equal(majorVersionFromMagic(0xd118), 18);
  t.equal(majorVersionFromMagic(0xd111), null);
  t.equal(majorVersionFromMagic(0), null);
  t.equal(pageHeaderSize({ info: 6 }), 40);
  t.equal(pageHeaderSize({ info: 5 }), 24);
});

t.test('read the observed long header', async (t) => {
  const ours = Buffer.alloc(40);
  t.equal(writePageHeader(ours, 0, {
    magic: 0xd110, info: 6, tli: 1, pageAddr: 0x5000000n, remLen: 0,
    long: { sysid: SYSID, segSize: 16 * MB, blcksz: 8192 },
  }), 40);
  t.equal(ours.toString('hex'), OBSERVED_HEX, 'byte layout');
  t.same(readPageHeader(Buffer.from(OBSERVED_HEX, 'hex'), 0), {
    magic: 0xd110, info: 6, tli: 1, pageAddr: 0x5000000n, remLen: 0,
    long: { sysid: SYSID, segSize: 16777216, blcksz: 8192 },
  });
  t.equal(ours.readUInt16LE(0), 0xd110, 'little-endian magic');
  t.equal(ours.readBigUInt64LE(24), SYSID, 'sysid at offset 24');
  t.equal(validateSegmentLongHeader(ours, { segStartLsn: 0x5000000n, segSize: 16 * MB, sysid: SYSID, fileTli: 1 }), null);
});

t.test('short header round trip at an offset, padding zeroed', async (t) => {
  const buf = Buffer.alloc(8192 * 2, 0xee);
  t.equal(writePageHeader(buf, 8192, { magic: 0xd110, info: 5, tli: 3, pageAddr: 0x1_0000_2000n, remLen: 1234 }), 24);
  t.same(readPageHeader(buf, 8192), { magic: 0xd110, info: 5, tli: 3, pageAddr: 0x1_0000_2000n, remLen: 1234 });
  t.equal(buf.readUInt32LE(8192 + 20), 0, 'padding');
  t.equal(buf[8192 + 24], 0xee, 'nothing written past 24 bytes');
  t.throws(() => readPageHeader(buf, buf.length - 10), RangeError);
});

t.test('validateSegmentLongHeader', async (t) => {
  const expect = { segStartLsn: 0x5000000n, segSize: 16 * MB, sysid: SYSID, fileTli: 1 };
  t.equal(validateSegmentLongHeader(longHeader(), expect), null);
  t.equal(validateSegmentLongHeader(longHeader(), { segStartLsn: 0x5000000n }), null, 'only the address');
  t.equal(validateSegmentLongHeader(longHeader({ magic: 0xd10d }), expect), null, 'PG14 magic is known');
  t.equal(validateSegmentLongHeader(longHeader({ info: XLP_LONG_HEADER | XLP_FIRST_IS_CONTRECORD }), expect), null);
  t.equal(
    validateSegmentLongHeader(longHeader({ magic: 0xd10d }), { ...expect, pageMagic: 0xd110 }),
    'invalid magic number D10D in log segment 000000010000000000000005, offset 0',
  );
  t.equal(
    validateSegmentLongHeader(Buffer.alloc(8192), expect),
    'invalid magic number 0000 in log segment 000000010000000000000005, offset 0',
  );
  t.equal(
    validateSegmentLongHeader(longHeader({ info: 0x12 }), expect),
    'invalid info bits 0012 in log segment 000000010000000000000005, offset 0',
  );
  t.equal(
    validateSegmentLongHeader(longHeader({ info: 4, long: undefined }), expect),
    'missing long page header in log segment 000000010000000000000005, offset 0',
  );
  t.equal(
    validateSegmentLongHeader(longHeader({}, { sysid: 7712065482983821459n }), expect),
    'WAL file is from different database system: WAL file database system identifier is 7712065482983821459, ' +
      'pg_control database system identifier is 7712064296540365798',
  );
  t.equal(validateSegmentLongHeader(longHeader({}, { segSize: MB }), expect), 'WAL file has segment size 1048576, expected 16777216');
  t.equal(validateSegmentLongHeader(longHeader({}, { segSize: 3 * MB }), { segStartLsn: 0x5000000n }), 'WAL file has invalid segment size 3145728');
  t.match(validateSegmentLongHeader(longHeader({}, { blcksz: 4096 }), expect), /incorrect XLOG_BLCKSZ 4096/);
  t.equal(
    validateSegmentLongHeader(longHeader({ pageAddr: 0x4000000n }), expect),
    'unexpected pageaddr 0/4000000 in log segment 000000010000000000000005, offset 0',
  );
  t.equal(
    validateSegmentLongHeader(longHeader({ tli: 3 }), { ...expect, fileTli: 2 }),
    "xlp_tli 3 is above the file's timeline 2 in log segment 000000020000000000000005, offset 0",
  );
  t.equal(validateSegmentLongHeader(longHeader({ tli: 1 }), { ...expect, fileTli: 2 }), null, 'older tli in a newer file is fine');
  t.match(validateSegmentLongHeader(Buffer.alloc(30), expect), /too short/);
});
