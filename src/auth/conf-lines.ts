// Owns the line and token syntax shared by the hba file and the users file, which
// is PostgreSQL's pg_hba.conf syntax (hba.c tokenize_auth_file / next_token): one
// record per line, a backslash at the end of a line continues it, '#' starts a
// comment outside quotes, fields are separated by blanks, a field may be a
// comma-separated list, and double quotes make a token literal ("all" quoted is a
// name, not the keyword; "" inside quotes is one quote).

export type Token = { text: string; quoted: boolean };

/** One record: its fields, each a list of tokens; `line` is 1-based (its first line). */
export type ConfLine = { line: number; raw: string; fields: Token[][] };

/** A bad file, with PostgreSQL's "line N of configuration file" context. */
export class AuthConfigError extends Error {
  readonly file: string;
  readonly line: number;
  constructor(message: string, file: string, line = 0) {
    super(line > 0 ? `${message} (line ${line} of configuration file "${file}")` : `${message} (file "${file}")`);
    this.name = 'AuthConfigError';
    this.file = file;
    this.line = line;
  }
}

/** PostgreSQL's MAX_TOKEN: longer tokens are an error. */
const MAX_TOKEN = 10240;

/** Records of `text`, continuations joined, blank and comment-only lines dropped. */
export function confLines(text: string, file: string): ConfLine[] {
  const out: ConfLine[] = [];
  const physical = text.split(/\r?\n/);
  for (let i = 0; i < physical.length; i++) {
    const first = i + 1;
    let raw = physical[i]!;
    // hba.c: a backslash as the very last character continues the record.
    while (raw.endsWith('\\') && i + 1 < physical.length) {
      raw = raw.slice(0, -1) + physical[++i]!;
    }
    const fields = tokenizeLine(raw, file, first);
    if (fields.length > 0) out.push({ line: first, raw: raw.trim(), fields });
  }
  return out;
}

const isBlank = (c: string): boolean => c === ' ' || c === '\t' || c === '\r' || c === '\n';

/** next_token in a loop: fields separated by blanks, list items by unquoted commas. */
function tokenizeLine(raw: string, file: string, line: number): Token[][] {
  const fields: Token[][] = [];
  let pos = 0;
  const n = raw.length;
  for (;;) {
    // A field: tokens joined by commas, until a token ends without a comma.
    const field: Token[] = [];
    for (;;) {
      while (pos < n && (isBlank(raw[pos]!) || (field.length === 0 && raw[pos] === ','))) pos++;
      if (pos >= n || raw[pos] === '#') break;
      let text = '';
      let inQuote = false;
      let sawQuote = false;
      let initialQuote = false;
      let wasQuote = false;
      let comma = false;
      while (pos < n && (inQuote || !isBlank(raw[pos]!))) {
        const c = raw[pos]!;
        if (c === '#' && !inQuote) { pos = n; break; }
        if (c === ',' && !inQuote) { comma = true; pos++; break; }
        if (c !== '"' || wasQuote) text += c;
        wasQuote = inQuote && c === '"' ? !wasQuote : false;
        if (c === '"') {
          inQuote = !inQuote;
          sawQuote = true;
          if (text === '') initialQuote = true;
        }
        pos++;
      }
      if (inQuote) throw new AuthConfigError('unterminated quoted string', file, line);
      if (text.length > MAX_TOKEN) throw new AuthConfigError('authentication file token too long', file, line);
      if (sawQuote || text !== '') field.push({ text, quoted: initialQuote });
      if (!comma) break;
    }
    if (field.length === 0) break;
    fields.push(field);
  }
  return fields;
}

/** An unquoted token equal to the keyword (PostgreSQL's token_is_keyword). */
export const isKeyword = (t: Token, kw: string): boolean => !t.quoted && t.text === kw;

/** Quote a name for writing back into a file, only when needed. */
export function quoteToken(s: string): string {
  if (s !== '' && /^[^\s",#\\]+$/.test(s)) return s;
  return `"${s.replaceAll('"', '""')}"`;
}
