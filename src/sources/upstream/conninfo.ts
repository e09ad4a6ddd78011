// Owns how the upstream receiver learns where and how to connect, the way libpq does
// (fe-connect.c conninfo_parse / conninfo_uri_parse / passwordFromFile): keyword/value
// strings and postgresql:// URIs, the PG* environment variables as defaults, host and
// port lists (tried in order, for failover), and the password from the connection
// string, a password file setting, PGPASSWORD or the passfile (~/.pgpass). Pure apart
// from reading the passfile and the password file.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

/** One place to try: a TCP host (name or address) or a Unix-socket directory. */
export type HostTarget = {
  /** As written: host name, IP address, or socket directory (starts with '/'). */
  host: string;
  /** hostaddr: connect to this address but verify / look up passwords with `host`. */
  hostaddr: string | null;
  port: number;
  isSocket: boolean;
};

export type ConnParams = {
  targets: HostTarget[];
  user: string;
  /** From the connection string, the password file setting or PGPASSWORD; else the passfile. */
  password: string | null;
  passfile: string;
  applicationName: string;
  options: string | null;
  sslmode: SslMode;
  sslrootcert: string;
  sslcert: string;
  sslkey: string;
  sslcrl: string | null;
  sslsni: boolean;
  channelBinding: 'disable' | 'prefer' | 'require';
  /** Per host attempt; libpq's connect_timeout (0 = the receiver's default). */
  connectTimeoutMs: number;
};

/** A connection string libpq would also reject; the message is libpq's. */
export class ConninfoError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConninfoError';
  }
}

// Keywords libpq knows (PQconninfoOptions) and their environment variables. Keywords
// that only matter to libpq features we do not have are accepted and ignored.
const KEYWORDS: Record<string, string | null> = {
  host: 'PGHOST', hostaddr: 'PGHOSTADDR', port: 'PGPORT', user: 'PGUSER', password: 'PGPASSWORD',
  passfile: 'PGPASSFILE', dbname: 'PGDATABASE', options: 'PGOPTIONS', application_name: 'PGAPPNAME',
  fallback_application_name: null, sslmode: 'PGSSLMODE', sslcert: 'PGSSLCERT', sslkey: 'PGSSLKEY',
  sslrootcert: 'PGSSLROOTCERT', sslcrl: 'PGSSLCRL', sslsni: 'PGSSLSNI', connect_timeout: 'PGCONNECT_TIMEOUT',
  channel_binding: 'PGCHANNELBINDING', gssencmode: 'PGGSSENCMODE', target_session_attrs: 'PGTARGETSESSIONATTRS',
  client_encoding: 'PGCLIENTENCODING', requiressl: 'PGREQUIRESSL', sslpassword: null, sslcrldir: 'PGSSLCRLDIR',
  sslcompression: null, ssl_min_protocol_version: 'PGSSLMINPROTOCOLVERSION',
  ssl_max_protocol_version: 'PGSSLMAXPROTOCOLVERSION', keepalives: null, keepalives_idle: null,
  keepalives_interval: null, keepalives_count: null, tcp_user_timeout: null, krbsrvname: 'PGKRBSRVNAME',
  gsslib: 'PGGSSLIB', requirepeer: 'PGREQUIREPEER', replication: null, service: 'PGSERVICE',
};

/** libpq's DEFAULT_PGSOCKET_DIR on Debian/Ubuntu builds, else the compiled-in /tmp. */
export function defaultSocketDir(): string {
  return fs.existsSync('/var/run/postgresql') ? '/var/run/postgresql' : '/tmp';
}

/** Splits a keyword/value string or a URI into keyword → value (no defaults applied). */
export function parseConninfo(text: string): Map<string, string> {
  return /^postgres(ql)?:\/\//.test(text) ? parseUri(text) : parseKeywordValue(text);
}

function checkKeyword(k: string): void {
  if (!(k in KEYWORDS)) throw new ConninfoError(`invalid connection option "${k}"`);
}

function parseKeywordValue(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  const isSpace = (c: string | undefined): boolean => c !== undefined && /\s/.test(c);
  while (i < text.length) {
    while (isSpace(text[i])) i++;
    if (i >= text.length) break;
    let key = '';
    while (i < text.length && text[i] !== '=' && !isSpace(text[i])) key += text[i++];
    while (isSpace(text[i])) i++;
    if (text[i] !== '=') throw new ConninfoError(`missing "=" after "${key}" in connection info string`);
    i++;
    while (isSpace(text[i])) i++;
    let value = '';
    if (text[i] === "'") {
      i++;
      for (;;) {
        if (i >= text.length) throw new ConninfoError('unterminated quoted string in connection info string');
        const c = text[i++]!;
        if (c === '\\' && i < text.length) value += text[i++];
        else if (c === "'") break;
        else value += c;
      }
    } else {
      while (i < text.length && !isSpace(text[i])) {
        const c = text[i++]!;
        if (c === '\\' && i < text.length) value += text[i++];
        else value += c;
      }
    }
    checkKeyword(key);
    out.set(key, value);
  }
  return out;
}

function percentDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new ConninfoError(`invalid percent-encoded token: "${s}"`);
  }
}

function parseUri(uri: string): Map<string, string> {
  const out = new Map<string, string>();
  let rest = uri.replace(/^postgres(ql)?:\/\//, '');
  const q = rest.indexOf('?');
  const query = q >= 0 ? rest.slice(q + 1) : '';
  if (q >= 0) rest = rest.slice(0, q);
  const slash = rest.indexOf('/');
  const authority = slash >= 0 ? rest.slice(0, slash) : rest;
  if (slash >= 0 && rest.length > slash + 1) out.set('dbname', percentDecode(rest.slice(slash + 1)));
  let hostPart = authority;
  const at = authority.lastIndexOf('@');
  if (at >= 0) {
    const userinfo = authority.slice(0, at);
    hostPart = authority.slice(at + 1);
    const colon = userinfo.indexOf(':');
    const user = colon >= 0 ? userinfo.slice(0, colon) : userinfo;
    if (user !== '') out.set('user', percentDecode(user));
    if (colon >= 0) out.set('password', percentDecode(userinfo.slice(colon + 1)));
  }
  if (hostPart !== '') {
    const hosts: string[] = [];
    const ports: string[] = [];
    for (const item of hostPart.split(',')) {
      const m = /^(\[[^\]]*\]|[^:]*)(?::(.*))?$/.exec(item);
      if (!m) throw new ConninfoError(`invalid URI: "${uri}"`);
      hosts.push(percentDecode(m[1]!.replace(/^\[(.*)\]$/, '$1')));
      ports.push(m[2] === undefined ? '' : percentDecode(m[2]));
    }
    if (hosts.some((h) => h !== '')) out.set('host', hosts.join(','));
    if (ports.some((p) => p !== '')) out.set('port', ports.join(','));
  }
  if (query !== '') {
    for (const pair of query.split('&')) {
      const eq = pair.indexOf('=');
      if (eq < 0) throw new ConninfoError(`missing key/value separator "=" in URI query parameter: "${pair}"`);
      let key = percentDecode(pair.slice(0, eq));
      let value = percentDecode(pair.slice(eq + 1));
      if (key === 'ssl' && value === 'true') [key, value] = ['sslmode', 'require'];
      if (!(key in KEYWORDS)) throw new ConninfoError(`invalid URI query parameter: "${key}"`);
      out.set(key, value);
    }
  }
  return out;
}

export type ResolveOptions = {
  env?: NodeJS.ProcessEnv;
  /** pg-walsender's --upstream-password-file: the password, read from a file. */
  passwordFile?: string | null;
  /** Used when neither the string nor PGAPPNAME names the application. */
  fallbackApplicationName?: string;
};

const nonEmpty = (v: string | undefined): string | undefined => (v === undefined || v === '' ? undefined : v);

/** The connection string with libpq's defaults: environment, then compiled-in values. */
export function resolveConninfo(text: string, opts: ResolveOptions = {}): ConnParams {
  const env = opts.env ?? process.env;
  const given = parseConninfo(text);
  const get = (k: string): string | undefined => {
    const v = given.get(k);
    if (v !== undefined && v !== '') return v;
    const e = KEYWORDS[k];
    return e ? nonEmpty(env[e]) : undefined;
  };
  if (get('service') !== undefined) throw new ConninfoError('connection service files are not supported by pg-walsender');

  const sslmodeText = get('sslmode') ?? (get('requiressl') === '1' ? 'require' : 'prefer');
  if (!(SSL_MODES as readonly string[]).includes(sslmodeText)) throw new ConninfoError(`invalid sslmode value: "${sslmodeText}"`);
  const cb = get('channel_binding') ?? 'prefer';
  if (cb !== 'disable' && cb !== 'prefer' && cb !== 'require') throw new ConninfoError(`invalid channel_binding value: "${cb}"`);
  const gss = get('gssencmode') ?? 'prefer';
  if (gss === 'require') throw new ConninfoError('gssencmode value "require" invalid when GSSAPI support is not compiled in');
  const tsa = get('target_session_attrs') ?? 'any';
  if (tsa !== 'any') throw new ConninfoError(`target_session_attrs "${tsa}" is not supported by pg-walsender (only "any")`);

  const home = os.homedir();
  const pgDir = path.join(home, '.postgresql');
  const user = get('user') ?? os.userInfo().username;
  const timeoutText = get('connect_timeout');
  let connectTimeoutMs = 0;
  if (timeoutText !== undefined) {
    const n = Number(timeoutText);
    if (!Number.isInteger(n)) throw new ConninfoError(`invalid integer value "${timeoutText}" for connection option "connect_timeout"`);
    connectTimeoutMs = n <= 0 ? 0 : Math.max(2, n) * 1000; // libpq's minimum is 2 s
  }
  let password = given.get('password') ?? null;
  if (password === null && opts.passwordFile) password = readPasswordFile(opts.passwordFile);
  if (password === null) password = nonEmpty(env.PGPASSWORD) ?? null;
  // libpq: an empty password (password='' given, which also keeps PGPASSWORD out) means
  // "look it up in the passfile".
  if (password === '') password = null;
  return {
    targets: hostTargets(get('host'), get('hostaddr'), get('port')),
    user,
    password,
    passfile: get('passfile') ?? path.join(home, '.pgpass'),
    applicationName: get('application_name') ?? given.get('fallback_application_name') ?? opts.fallbackApplicationName ?? 'pg-walsender',
    options: get('options') ?? null,
    sslmode: sslmodeText as SslMode,
    sslrootcert: get('sslrootcert') ?? path.join(pgDir, 'root.crt'),
    sslcert: get('sslcert') ?? path.join(pgDir, 'postgresql.crt'),
    sslkey: get('sslkey') ?? path.join(pgDir, 'postgresql.key'),
    sslcrl: get('sslcrl') ?? path.join(pgDir, 'root.crl'), // used when it exists, as libpq does
    sslsni: (get('sslsni') ?? '1') !== '0',
    channelBinding: cb,
    connectTimeoutMs,
  };
}

function hostTargets(hostText: string | undefined, addrText: string | undefined, portText: string | undefined): HostTarget[] {
  const hosts = (hostText ?? '').split(',');
  const addrs = addrText !== undefined ? addrText.split(',') : [];
  const n = Math.max(hosts.length, addrs.length);
  if (hostText !== undefined && addrText !== undefined && hosts.length !== addrs.length) {
    throw new ConninfoError(`could not match ${hosts.length} host names to ${addrs.length} hostaddr values`);
  }
  const ports = (portText ?? '').split(',');
  if (ports.length !== 1 && ports.length !== n) {
    throw new ConninfoError(`could not match ${ports.length} port numbers to ${n} hosts`);
  }
  const out: HostTarget[] = [];
  for (let i = 0; i < n; i++) {
    const p = (ports.length === 1 ? ports[0] : ports[i])!.trim();
    const port = p === '' ? 5432 : Number(p);
    if (!/^\d+$/.test(p === '' ? '5432' : p) || port < 1 || port > 65535) throw new ConninfoError(`invalid port number: "${p}"`);
    const addr = (addrs[i] ?? '').trim() || null;
    let host = (hosts[i] ?? '').trim();
    if (host === '' && addr === null) host = defaultSocketDir();
    const isSocket = addr === null && (host.startsWith('/') || host.startsWith('@'));
    out.push({ host: host === '' ? addr! : host, hostaddr: addr, port, isSocket });
  }
  return out;
}

/** --upstream-password-file: the first line of the file. */
export function readPasswordFile(file: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConninfoError(`could not read password file "${file}": ${(e as Error).message}`);
  }
  return text.split(/\r?\n/)[0] ?? '';
}

/**
 * passwordFromFile: the first matching line of the passfile, or null. A file that
 * group or others can read is ignored with a warning, as libpq does.
 */
export function passwordFromPassfile(file: string, target: HostTarget, user: string,
  warn: (msg: string) => void = () => {}): string | null {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    return null;
  }
  if (!st.isFile()) {
    warn(`password file "${file}" is not a plain file`);
    return null;
  }
  if ((st.mode & 0o077) !== 0) {
    warn(`password file "${file}" has group or world access; permissions should be u=rw (0600) or less`);
    return null;
  }
  let host = target.host;
  if (host === defaultSocketDir()) host = 'localhost';
  const want = [host, String(target.port), 'replication', user];
  for (const raw of fs.readFileSync(file, 'utf8').split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (line === '' || line.startsWith('#')) continue;
    const fields = splitPassfileLine(line);
    if (fields.length < 5) continue;
    if (want.every((w, i) => fields[i] === '*' || fields[i] === w)) return fields[4]!;
  }
  return null;
}

function splitPassfileLine(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '\\' && i + 1 < line.length) cur += line[++i];
    else if (c === ':' && out.length === 4) break; // libpq: the password ends at an unescaped ':'
    else if (c === ':') { out.push(cur); cur = ''; } else cur += c;
  }
  out.push(cur);
  return out;
}

/** The connection string with any password replaced, for logs. */
export function redactConninfo(text: string): string {
  return text
    .replace(/(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)/gi, '$1********')
    .replace(/^(postgres(?:ql)?:\/\/[^:@/]*:)[^@/]*@/, '$1********@');
}

/** Where a target is, for logs and errors ("127.0.0.1:5432", "/tmp/.s.PGSQL.5432"). */
export function describeTarget(t: HostTarget): string {
  if (t.isSocket) return path.join(t.host, `.s.PGSQL.${t.port}`);
  const h = t.hostaddr ?? t.host;
  return h.includes(':') ? `[${h}]:${t.port}` : `${h}:${t.port}`;
}
