// Owns the hba file: parsing the pg_hba.conf lines that apply to a physical
// replication server (hba.c parse_hba_line) and choosing the first line that
// matches a connection (hba.c check_hba). Connection types local, host, hostssl,
// hostnossl, hostgssenc, hostnogssenc; the database field matches a physical
// replication connection only through the `replication` keyword, as in
// PostgreSQL; user lists with `all`, names, +role and @file; addresses as CIDR,
// address + mask, all, samehost, samenet. Methods: trust, reject, md5,
// scram-sha-256, password. Anything else is refused when the file is loaded, so a
// typo can never silently open (or close) access.

import fs from 'node:fs';
import path from 'node:path';
import { AuthConfigError, confLines, isKeyword, type Token } from './conf-lines.ts';
import { inNet, isSameHost, isSameNet, localNets, parseAddrMask, parseCidr, parseIp, type IpNet } from './inet.ts';

export const HBA_METHODS = ['trust', 'reject', 'md5', 'scram-sha-256', 'password'] as const;
export type HbaMethod = (typeof HBA_METHODS)[number];

const CONN_TYPES = ['local', 'host', 'hostssl', 'hostnossl', 'hostgssenc', 'hostnogssenc'] as const;
type ConnType = (typeof CONN_TYPES)[number];

/** Methods PostgreSQL has that pg-walsender does not implement: a clear load error. */
const UNSUPPORTED_METHODS = ['peer', 'ident', 'gss', 'sspi', 'pam', 'bsd', 'ldap', 'radius', 'cert'];

type AddressMatch =
  | { kind: 'all' }
  | { kind: 'samehost' }
  | { kind: 'samenet' }
  | { kind: 'net'; net: IpNet };

export type HbaLine = {
  line: number;
  raw: string;
  connType: ConnType;
  databases: Token[];
  roles: Token[];
  address: AddressMatch | null; // null for local lines
  method: HbaMethod;
};

export type HbaConnection = {
  /** The client's numeric address, IPv4-mapped IPv6 already unmapped. */
  addr: string;
  user: string;
  ssl: boolean;
};

/**
 * Parses an hba file's text. `@file` tokens are read relative to the hba file's
 * directory (as PostgreSQL does) with `readInclude`.
 */
export function parseHba(text: string, file: string,
  readInclude: (p: string) => string = (p) => fs.readFileSync(p, 'utf8')): HbaLine[] {
  const out: HbaLine[] = [];
  for (const rec of confLines(text, file)) {
    const fail = (msg: string): never => { throw new AuthConfigError(msg, file, rec.line); };
    const fields = rec.fields.map((f) => expandIncludes(f, file, rec.line, readInclude));
    let i = 0;
    const next = (what: string): Token[] => {
      const f = fields[i++];
      if (!f) fail(`end-of-line before ${what}`);
      return f!;
    };
    const typeField = next('connection type');
    if (typeField.length > 1) fail('multiple values specified for connection type');
    const connType = typeField[0]!.text as ConnType;
    if (!CONN_TYPES.includes(connType)) fail(`invalid connection type "${typeField[0]!.text}"`);
    const databases = next('database specification');
    const roles = next('role specification');
    for (const r of roles) {
      if (!r.quoted && r.text.startsWith('/')) fail(`regular expressions in user names are not supported ("${r.text}")`);
    }
    let address: AddressMatch | null = null;
    if (connType !== 'local') {
      const a = next('IP address specification');
      if (a.length > 1) fail('multiple values specified for host address');
      const tok = a[0]!;
      if (isKeyword(tok, 'all')) address = { kind: 'all' };
      else if (isKeyword(tok, 'samehost')) address = { kind: 'samehost' };
      else if (isKeyword(tok, 'samenet')) address = { kind: 'samenet' };
      else {
        try {
          if (tok.text.includes('/')) {
            address = { kind: 'net', net: parseCidr(tok.text) };
          } else if (parseIp(tok.text)) {
            // An address without /n: the next field is its netmask.
            const mask = fields[i++];
            if (!mask) fail('end-of-line before netmask specification');
            if (mask!.length > 1) fail('multiple values specified for netmask');
            address = { kind: 'net', net: parseAddrMask(tok.text, mask![0]!.text) };
          } else {
            fail(`host names in the address field are not supported by pg-walsender ("${tok.text}"); use an address or CIDR`);
          }
        } catch (e) {
          if (e instanceof AuthConfigError) throw e;
          fail((e as Error).message);
        }
      }
    }
    const m = next('authentication method');
    if (m.length > 1) fail('multiple values specified for authentication type');
    const methodText = m[0]!.text;
    if (UNSUPPORTED_METHODS.includes(methodText)) {
      fail(`authentication method "${methodText}" is not supported by pg-walsender`);
    }
    if (!HBA_METHODS.includes(methodText as HbaMethod)) fail(`invalid authentication method "${methodText}"`);
    if (i < fields.length) {
      const opt = fields[i]![0]!.text;
      if (!opt.includes('=')) fail(`authentication option not in name=value format: ${opt}`);
      fail(`authentication option "${opt.split('=')[0]}" is not supported by pg-walsender`);
    }
    out.push({ line: rec.line, raw: rec.raw, connType, databases, roles, address, method: methodText as HbaMethod });
  }
  return out;
}

/** How deep `@file` may nest; deeper is a load error (an include loop, most likely). */
const MAX_INCLUDE_DEPTH = 10;

/**
 * `@file` tokens: the file's own tokens (whitespace or comma separated, # comments),
 * with its own `@file` tokens expanded in turn (tokenize_inc_file is recursive), so
 * an `@` token never survives as a literal name a client could call itself.
 */
function expandIncludes(field: Token[], file: string, line: number, readInclude: (p: string) => string,
  from = file, depth = 0): Token[] {
  const out: Token[] = [];
  for (const t of field) {
    if (t.quoted || !t.text.startsWith('@') || t.text.length === 1) {
      out.push(t);
      continue;
    }
    const inc = path.resolve(path.dirname(from), t.text.slice(1));
    const cannot = (why: string): never => {
      throw new AuthConfigError(`could not open secondary authentication file "@${t.text.slice(1)}" as "${inc}": ${why}`, file, line);
    };
    if (depth >= MAX_INCLUDE_DEPTH) cannot(`nested too deeply (more than ${MAX_INCLUDE_DEPTH} levels)`);
    let text = '';
    try {
      text = readInclude(inc);
    } catch (e) {
      cannot((e as Error).message);
    }
    for (const rec of confLines(text, inc)) {
      for (const f of rec.fields) out.push(...expandIncludes(f, file, line, readInclude, inc, depth + 1));
    }
  }
  return out;
}

function matchesDatabase(tokens: Token[]): boolean {
  // check_db for a physical walsender: only the replication keyword matches.
  return tokens.some((t) => isKeyword(t, 'replication'));
}

function matchesRole(tokens: Token[], user: string): boolean {
  for (const t of tokens) {
    // +role: members of role. pg-walsender has no role membership, and a role is
    // always a member of itself, so +name matches the user name only.
    if (!t.quoted && t.text.startsWith('+')) {
      if (t.text.slice(1) === user) return true;
    } else if (isKeyword(t, 'all') || t.text === user) {
      return true;
    }
  }
  return false;
}

let cachedNets: { at: number; nets: IpNet[] } | null = null;
function interfaces(): IpNet[] {
  // Interfaces change rarely; re-read at most every few seconds.
  if (!cachedNets || Date.now() - cachedNets.at > 5000) cachedNets = { at: Date.now(), nets: localNets() };
  return cachedNets.nets;
}

/** check_hba: the first matching line, or null (an implicit reject). */
export function matchHba(lines: HbaLine[], c: HbaConnection): HbaLine | null {
  for (const l of lines) {
    if (l.connType === 'local') continue; // we listen on TCP only
    if (l.connType === 'hostssl' && !c.ssl) continue;
    if (l.connType === 'hostnossl' && c.ssl) continue;
    if (l.connType === 'hostgssenc') continue; // no GSS encryption here
    const a = l.address!;
    if (a.kind === 'net' && !inNet(c.addr, a.net)) continue;
    if (a.kind === 'samehost' && !isSameHost(c.addr, interfaces())) continue;
    if (a.kind === 'samenet' && !isSameNet(c.addr, interfaces())) continue;
    if (!matchesDatabase(l.databases)) continue;
    if (!matchesRole(l.roles, c.user)) continue;
    return l;
  }
  return null;
}
