// LSN text form (pg_lsn_in / %X/%X) and protocol timestamps (µs since 2000-01-01).
import t from 'tap';
import {
  INVALID_LSN,
  PG_EPOCH_OFFSET_MICROS,
  dateToPgTime,
  formatLsn,
  parseLsn,
  pgNow,
  pgTimeToDate,
} from '../../src/protocol/lsn.ts';

t.test('formatLsn: %X/%X, upper-case, unpadded', async (t) => {
  t.equal(formatLsn(0x3068500n), '0/3068500');
  t.equal(formatLsn(0x15018c8n), '0/15018C8');
  t.equal(formatLsn(INVALID_LSN), '0/0');
  t.equal(formatLsn(0x100000000n), '1/0');
  t.equal(formatLsn(0xdeadbeef0000abcdn), 'DEADBEEF/ABCD');
  t.equal(formatLsn(0xffffffffffffffffn), 'FFFFFFFF/FFFFFFFF');
});

t.test('parseLsn follows pg_lsn_in', async (t) => {
  t.equal(parseLsn('0/3068500'), 0x3068500n);
  t.equal(parseLsn('0/15018c8'), 0x15018c8n);
  t.equal(parseLsn('DEADBEEF/abcd'), 0xdeadbeef0000abcdn);
  t.equal(parseLsn('00000000/00000001'), 1n);
  for (const bad of ['', '/', '0/', '/0', '0', '0/3068500 ', ' 0/1', '000000001/0', '0/123456789', 'g/0', '0/0/0', '0x1/0', '-1/0']) {
    t.equal(parseLsn(bad), null, JSON.stringify(bad));
  }
  for (const v of [0n, 1n, 0x3068500n, 0xffffffffffffffffn, 0x123456789abcdefn]) t.equal(parseLsn(formatLsn(v)), v);
});

t.test('protocol timestamps', async (t) => {
  t.equal(PG_EPOCH_OFFSET_MICROS, 946684800000000n);
  t.equal(pgTimeToDate(0n).toISOString(), '2000-01-01T00:00:00.000Z');
  t.equal(pgTimeToDate(815000000123456n).toISOString(), '2025-10-28T20:53:20.123Z');
  t.equal(pgTimeToDate(-1n).toISOString(), '1999-12-31T23:59:59.999Z');
  t.equal(dateToPgTime(new Date('2000-01-01T00:00:01.5Z')), 1500000n);
  const before = BigInt(Date.now()) * 1000n - PG_EPOCH_OFFSET_MICROS;
  let prev = pgNow();
  t.ok(prev >= before - 1000n, 'pgNow is not behind Date.now()');
  let monotone = true;
  for (let i = 0; i < 10000; i++) {
    const n = pgNow();
    if (n < prev) monotone = false;
    prev = n;
  }
  t.ok(monotone, 'pgNow does not go backwards while the wall clock is steady');
  const after = BigInt(Date.now() + 1) * 1000n - PG_EPOCH_OFFSET_MICROS;
  t.ok(prev <= after, 'pgNow is not ahead of Date.now()');
});
