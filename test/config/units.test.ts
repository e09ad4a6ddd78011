// Tests PostgreSQL-style unit parsing and SHOW-style formatting (src/units.ts,
// re-exported by src/config.ts).
import t from 'tap';
import { formatBytes, formatDurationMs, parseByteSize, parseDuration } from '../../src/config.ts';

const KB = 1024;
const MB = 1024 * KB;
const GB = 1024 * MB;

t.test('parseByteSize', async (t) => {
  const cases: [string, number][] = [
    ['0', 0],
    ['8192', 8192],
    ['100B', 100],
    ['8kB', 8 * KB],
    ['16MB', 16 * MB],
    ['1GB', GB],
    ['2TB', 2 * 1024 * GB],
    ['1 MB', MB],
    [' 512kB ', 512 * KB],
    ['1.5MB', 1.5 * MB],
    ['0.5kB', 512],
    ['1.0001kB', 1024], // rounded off to the next smaller unit (B)
    ['+3MB', 3 * MB],
    ['1e3', 1000],
    ['2.5', 2], // bare number rounded half to even, like rint()
    ['3.5', 4],
  ];
  for (const [text, want] of cases) t.equal(parseByteSize(text), want, JSON.stringify(text));

  const bad: [string, RegExp][] = [
    ['', /not a size/],
    ['abc', /not a size/],
    ['MB', /not a size/],
    ['1mb', /invalid unit "mb"; valid units are B, kB, MB, GB, TB/],
    ['1KB', /invalid unit "KB"/],
    ['1 MB x', /valid units are B, kB, MB, GB, TB/],
    ['1s', /invalid unit "s"/],
    ['-1', /must not be negative/],
    ['-1MB', /must not be negative/],
    ['99999999TB', /too large/],
  ];
  for (const [text, re] of bad) t.throws(() => parseByteSize(text), re, JSON.stringify(text));
});

t.test('parseDuration with default unit ms', async (t) => {
  const cases: [string, number][] = [
    ['0', 0],
    ['500', 500], // bare number = milliseconds, as wal_sender_timeout
    ['500ms', 500],
    ['60s', 60000],
    ['1min', 60000],
    ['1.5min', 90000],
    ['1h', 3600000],
    ['1d', 86400000],
    ['1500us', 2], // 1.5ms rounds half to even
    ['2500us', 2],
    ['10 s', 10000],
    [' 4s ', 4000],
  ];
  for (const [text, want] of cases) t.equal(parseDuration(text, 'ms'), want, JSON.stringify(text));

  const bad: [string, RegExp][] = [
    ['', /not a duration/],
    ['soon', /not a duration/],
    ['1sec', /invalid unit "sec"; valid units are us, ms, s, min, h, d/],
    ['1m', /invalid unit "m"/],
    ['1S', /invalid unit "S"/],
    ['1MB', /invalid unit "MB"/],
    ['-5s', /must not be negative/],
  ];
  for (const [text, re] of bad) t.throws(() => parseDuration(text, 'ms'), re, JSON.stringify(text));
});

t.test('parseDuration with default unit s returns ms rounded to seconds', async (t) => {
  t.equal(parseDuration('60', 's'), 60000);
  t.equal(parseDuration('1min', 's'), 60000);
  t.equal(parseDuration('1500ms', 's'), 2000);
  t.equal(parseDuration('400ms', 's'), 0);
  t.equal(parseDuration('1h', 's'), 3600000);
});

t.test('formatDurationMs: largest unit that divides exactly', async (t) => {
  const cases: [number, string][] = [
    [0, '0'],
    [1, '1ms'],
    [500, '500ms'],
    [1500, '1500ms'],
    [4000, '4s'],
    [60000, '1min'],
    [90000, '90s'],
    [120000, '2min'],
    [3600000, '1h'],
    [5400000, '90min'],
    [86400000, '1d'],
    [172800000, '2d'],
    [-1, '-1'],
  ];
  for (const [ms, want] of cases) t.equal(formatDurationMs(ms), want, String(ms));
});

t.test('formatBytes: largest unit that divides exactly', async (t) => {
  const cases: [number, string][] = [
    [0, '0'],
    [1000, '1000B'],
    [1024, '1kB'],
    [8192, '8kB'],
    [1536, '1536B'],
    [1536 * KB, '1536kB'],
    [MB, '1MB'],
    [16777216, '16MB'],
    [1073741824, '1GB'],
    [1024 * GB, '1TB'],
    [2048 * GB, '2TB'],
  ];
  for (const [n, want] of cases) t.equal(formatBytes(n), want, String(n));
});

t.test('format and parse round-trip', async (t) => {
  for (const ms of [0, 1, 999, 1000, 60000, 61000, 3600000, 86400000 * 3]) {
    t.equal(parseDuration(formatDurationMs(ms), 'ms'), ms, `${ms}ms`);
  }
  for (const n of [0, 1, 1023, 1024, MB, 16 * MB, GB, 3 * 1024 * GB]) {
    t.equal(parseByteSize(formatBytes(n)), n, `${n} bytes`);
  }
});
