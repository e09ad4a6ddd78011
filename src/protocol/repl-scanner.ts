// Owns the lexical side of the replication command language, a transcription of
// PostgreSQL 15's repl_scanner.l: flex picks the longest match and, on a tie, the
// earliest rule, so keywords are recognised only when a whole identifier run is
// exactly an upper-case keyword, and `0/1000000` is one RECPTR, not UCONST '/' ...

import { PgError, SqlState, syntaxError } from './errors.ts';

export const KEYWORDS = [
  'BASE_BACKUP',
  'IDENTIFY_SYSTEM',
  'READ_REPLICATION_SLOT',
  'SHOW',
  'TIMELINE',
  'START_REPLICATION',
  'CREATE_REPLICATION_SLOT',
  'DROP_REPLICATION_SLOT',
  'TIMELINE_HISTORY',
  'PHYSICAL',
  'RESERVE_WAL',
  'LOGICAL',
  'SLOT',
  'TEMPORARY',
  'TWO_PHASE',
  'EXPORT_SNAPSHOT',
  'NOEXPORT_SNAPSHOT',
  'USE_SNAPSHOT',
  'WAIT',
] as const;

export type Keyword = (typeof KEYWORDS)[number];

const KEYWORD_SET: ReadonlySet<string> = new Set(KEYWORDS);

export type Token =
  | { type: 'KEYWORD'; keyword: Keyword }
  | { type: 'IDENT'; value: string }
  | { type: 'UCONST'; value: number }
  | { type: 'RECPTR'; value: bigint }
  | { type: 'SCONST'; value: string }
  /** Any other single character, returned as itself: ( ) , ; . and garbage */
  | { type: 'CHAR'; value: string }
  | { type: 'EOF' };

export type NoticeSink = (notice: PgError) => void;

/** NAMEDATALEN - 1 */
const MAX_IDENTIFIER_BYTES = 63;

const isSpace = (c: number): boolean => c === 32 || c === 9 || c === 10 || c === 13 || c === 12;
const isDigit = (c: number): boolean => c >= 48 && c <= 57;
const isHex = (c: number): boolean => isDigit(c) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);
// The scanner works on bytes: every byte of a multibyte character is \200-\377,
// i.e. every non-ASCII code point is an identifier character.
const isIdentStart = (c: number): boolean => (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c >= 128;
const isIdentCont = (c: number): boolean => isIdentStart(c) || isDigit(c) || c === 36;

/** strtoul() into a uint32: saturate at ULONG_MAX (64-bit), then keep the low 32 bits. */
function toUint32(digits: string, radix: 10 | 16): number {
  let v = BigInt(radix === 16 ? `0x${digits}` : digits);
  if (v > 0xffffffffffffffffn) v = 0xffffffffffffffffn;
  return Number(v & 0xffffffffn);
}

/**
 * truncate_identifier: cut to NAMEDATALEN-1 bytes on a character boundary, with
 * PG's NOTICE. (PG clips by the database encoding; we always keep UTF-8 whole.)
 */
export function truncateIdentifier(ident: string, onNotice?: NoticeSink): string {
  if (Buffer.byteLength(ident, 'utf8') <= MAX_IDENTIFIER_BYTES) return ident;
  let bytes = 0;
  let end = 0;
  for (const ch of ident) {
    const cp = ch.codePointAt(0)!;
    const n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (bytes + n > MAX_IDENTIFIER_BYTES) break;
    bytes += n;
    end += ch.length;
  }
  const cut = ident.slice(0, end);
  onNotice?.(
    new PgError('NOTICE', SqlState.NAME_TOO_LONG, `identifier "${ident}" will be truncated to "${cut}"`),
  );
  return cut;
}

/** ASCII-only downcasing, as downcase_identifier does for a multibyte encoding. */
function downcase(s: string): string {
  return s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

export class ReplScanner {
  private readonly text: string;
  private pos = 0;
  private readonly onNotice: NoticeSink | undefined;

  constructor(text: string, onNotice?: NoticeSink) {
    this.text = text;
    this.onNotice = onNotice;
  }

  next(): Token {
    const s = this.text;
    const n = s.length;
    let i = this.pos;
    while (i < n && isSpace(s.charCodeAt(i))) i++;
    if (i >= n) {
      this.pos = n;
      return { type: 'EOF' };
    }
    const c = s.charCodeAt(i);

    if (isHex(c)) {
      // {hexdigit}+\/{hexdigit}+ is longer than any digit or identifier run from here
      let j = i;
      while (j < n && isHex(s.charCodeAt(j))) j++;
      if (j < n && s.charCodeAt(j) === 47 && j + 1 < n && isHex(s.charCodeAt(j + 1))) {
        let k = j + 1;
        while (k < n && isHex(s.charCodeAt(k))) k++;
        this.pos = k;
        const hi = toUint32(s.slice(i, j), 16);
        const lo = toUint32(s.slice(j + 1, k), 16);
        return { type: 'RECPTR', value: (BigInt(hi) << 32n) | BigInt(lo) };
      }
    }
    if (isDigit(c)) {
      let j = i;
      while (j < n && isDigit(s.charCodeAt(j))) j++;
      this.pos = j;
      return { type: 'UCONST', value: toUint32(s.slice(i, j), 10) };
    }
    if (isIdentStart(c)) {
      let j = i + 1;
      while (j < n && isIdentCont(s.charCodeAt(j))) j++;
      this.pos = j;
      const word = s.slice(i, j);
      if (KEYWORD_SET.has(word)) return { type: 'KEYWORD', keyword: word as Keyword };
      return { type: 'IDENT', value: truncateIdentifier(downcase(word), this.onNotice) };
    }
    if (c === 39) {
      // 'single quoted': '' is an embedded quote
      let out = '';
      let j = i + 1;
      for (;;) {
        const q = s.indexOf("'", j);
        if (q === -1) throw syntaxError('unterminated quoted string');
        out += s.slice(j, q);
        if (s.charCodeAt(q + 1) === 39) {
          out += "'";
          j = q + 2;
          continue;
        }
        this.pos = q + 1;
        return { type: 'SCONST', value: out };
      }
    }
    if (c === 34) {
      // "double quoted": kept as written. repl_scanner.l has no rule for "" inside
      // (unlike the SQL scanner), so "a""b" is two identifiers, a then b.
      const q = s.indexOf('"', i + 1);
      if (q === -1) throw syntaxError('unterminated quoted string');
      this.pos = q + 1;
      return { type: 'IDENT', value: truncateIdentifier(s.slice(i + 1, q), this.onNotice) };
    }
    this.pos = i + 1;
    return { type: 'CHAR', value: s[i]! };
  }
}

/** All tokens of `text`, EOF excluded. Throws PgError 42601 on an unterminated quote. */
export function tokenize(text: string, onNotice?: NoticeSink): Token[] {
  const scanner = new ReplScanner(text, onNotice);
  const out: Token[] = [];
  for (;;) {
    const t = scanner.next();
    if (t.type === 'EOF') return out;
    out.push(t);
  }
}
