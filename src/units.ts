// Owns PostgreSQL-style unit handling for settings: parsing byte sizes and
// durations with units ("16MB", "1min", "1.5s") and formatting them back the
// way SHOW does. Follows guc.c (parse_int, convert_to_base_unit,
// convert_int_from_base_unit): units are case-sensitive, memory units are
// 1024-based, a fraction is rounded to the next smaller unit, then the value is
// rounded (half to even, like rint) to the setting's base unit.

type UnitConversion = { unit: string; multiplier: number };

/** Memory units for a byte-based setting (GUC_UNIT_BYTE), largest first. */
const MEMORY_UNITS: readonly UnitConversion[] = [
  { unit: 'TB', multiplier: 1024 ** 4 },
  { unit: 'GB', multiplier: 1024 ** 3 },
  { unit: 'MB', multiplier: 1024 ** 2 },
  { unit: 'kB', multiplier: 1024 },
  { unit: 'B', multiplier: 1 },
];

/** Time units for a millisecond-based setting (GUC_UNIT_MS), largest first. */
const TIME_UNITS_MS: readonly UnitConversion[] = [
  { unit: 'd', multiplier: 1000 * 60 * 60 * 24 },
  { unit: 'h', multiplier: 1000 * 60 * 60 },
  { unit: 'min', multiplier: 1000 * 60 },
  { unit: 's', multiplier: 1000 },
  { unit: 'ms', multiplier: 1 },
  { unit: 'us', multiplier: 1 / 1000 },
];

/** Time units for a second-based setting (GUC_UNIT_S), largest first. */
const TIME_UNITS_S: readonly UnitConversion[] = [
  { unit: 'd', multiplier: 60 * 60 * 24 },
  { unit: 'h', multiplier: 60 * 60 },
  { unit: 'min', multiplier: 60 },
  { unit: 's', multiplier: 1 },
  { unit: 'ms', multiplier: 1 / 1000 },
  { unit: 'us', multiplier: 1 / 1_000_000 },
];

const MEMORY_UNITS_HINT = 'valid units are B, kB, MB, GB, TB';
const TIME_UNITS_HINT = 'valid units are us, ms, s, min, h, d';

/** C's rint() in the default rounding mode: round half to even. */
function rint(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// A decimal number (optionally signed, fractional, with exponent) followed by
// an optional unit. Whitespace is allowed before, between and after.
const NUMBER_WITH_UNIT = /^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(\S*)\s*$/;

/**
 * Parses `text` into a whole number of base units, like guc.c's parse_int.
 * Throws a plain Error whose message is the reason (for wrapping).
 */
function parseWithUnits(text: string, table: readonly UnitConversion[], hint: string, what: string): number {
  const m = NUMBER_WITH_UNIT.exec(text);
  if (m === null) {
    // Distinguish "no number at all" from "number followed by garbage with spaces".
    if (/^\s*[+-]?(?:\d|\.\d)/.test(text)) throw new Error(`invalid unit or trailing text; ${hint}`);
    throw new Error(`not a ${what}`);
  }
  let value = Number(m[1]);
  const unit = m[2];
  if (unit !== '') {
    const i = table.findIndex((u) => u.unit === unit);
    if (i < 0) throw new Error(`invalid unit "${unit}"; ${hint}`);
    value *= table[i].multiplier;
    // A fraction such as "1.5GB" is rounded off to the next smaller unit.
    const next = table[i + 1];
    if (next !== undefined) value = rint(value / next.multiplier) * next.multiplier;
  }
  value = rint(value);
  if (value < 0) throw new Error('must not be negative');
  if (!Number.isSafeInteger(value)) throw new Error('value is too large');
  return value;
}

/**
 * Parses a byte size in PostgreSQL's memory units (B, kB, MB, GB, TB; 1024-based;
 * case-sensitive); a bare number is bytes. Returns bytes. Throws Error(reason).
 */
export function parseByteSize(text: string): number {
  return parseWithUnits(text, MEMORY_UNITS, MEMORY_UNITS_HINT, 'size');
}

/**
 * Parses a duration in PostgreSQL's time units (us, ms, s, min, h, d). A bare
 * number is in `defaultUnit`, which is also the setting's base unit: the value
 * is rounded to whole `defaultUnit`s, as PostgreSQL does. Returns milliseconds.
 * Throws Error(reason).
 */
export function parseDuration(text: string, defaultUnit: 'ms' | 's'): number {
  if (defaultUnit === 'ms') return parseWithUnits(text, TIME_UNITS_MS, TIME_UNITS_HINT, 'duration');
  const seconds = parseWithUnits(text, TIME_UNITS_S, TIME_UNITS_HINT, 'duration');
  const ms = seconds * 1000;
  if (!Number.isSafeInteger(ms)) throw new Error('value is too large');
  return ms;
}

/** convert_int_from_base_unit + ShowGUCOption: largest unit dividing exactly; 0 and negatives bare. */
function formatWithUnits(value: number, table: readonly UnitConversion[]): string {
  const v = Math.trunc(value);
  if (!(v > 0)) return String(v);
  for (const { unit, multiplier } of table) {
    if (multiplier <= 1 || v % multiplier === 0) return `${rint(v / multiplier)}${unit}`;
  }
  return String(v); // unreachable: the tables end with a unit of multiplier <= 1
}

/** SHOW-style duration of a millisecond value: 60000 → "1min", 4000 → "4s", 500 → "500ms", 0 → "0". */
export function formatDurationMs(ms: number): string {
  return formatWithUnits(ms, TIME_UNITS_MS);
}

/** SHOW-style byte size: 16777216 → "16MB", 1073741824 → "1GB", 8192 → "8kB", 1000 → "1000B", 0 → "0". */
export function formatBytes(n: number): string {
  return formatWithUnits(n, MEMORY_UNITS);
}
