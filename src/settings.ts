// Owns the list of settings: each one's name, flag, environment variable, default,
// help line and value parser (PostgreSQL-style units), and the Config type they fill.
// config.ts reads flags, environment and file and merges them through this table.

import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { parseConninfo } from './sources/upstream/conninfo.ts';
import { parseByteSize, parseDuration } from './units.ts';

export type Config = {
  source: 'demo' | 'archive' | 'upstream';
  archiveDir: string | null;
  dataDir: string;
  /** Bytes per second; 0 = paused. */
  demoRate: number;
  demoWalSegmentSize: number;
  /** Source "upstream": libpq connection string (keyword/value or URI) of the server to relay. */
  upstream: string | null;
  /** Physical replication slot on the upstream (created if missing); null = none. */
  upstreamSlot: string | null;
  /** File whose first line is the upstream password. */
  upstreamPasswordFile: string | null;
  /** wal_receiver_timeout for the upstream connection; 0 disables. */
  upstreamTimeoutMs: number;
  listen: { host: string; port: number };
  /** null when admin_listen is "off". */
  adminListen: { host: string; port: number } | null;
  /** Bearer token for the admin API's mutating routes (from admin_token or admin_token_file); null disables them. */
  adminToken: string | null;
  /** File holding the admin token (a container secret); read into adminToken. */
  adminTokenFile: string | null;
  maxWalSenders: number;
  /** Replication slots pg-walsender keeps (0 disables slots). */
  maxReplicationSlots: number;
  /** Bytes of WAL kept behind the flush position whatever the standbys need. */
  walKeepSize: number;
  /** Most WAL a replication slot may hold back; -1 = unlimited. */
  maxSlotWalKeepSize: number;
  /** 0 disables the timeout. */
  walSenderTimeoutMs: number;
  workers: number;
  /** How senders on plain TCP get WAL to the socket: segment mappings (native module) or read buffers. */
  walRead: 'mmap' | 'read';
  logLevel: string;
  /** pg_hba.conf-style file; null = no hba rules (see src/auth/material.ts). */
  hbaFile: string | null;
  /** Users and their password verifiers; null = no users file. */
  usersFile: string | null;
  /** TLS certificate and key; both set = SSLRequest answered 'S'. */
  sslCertFile: string | null;
  sslKeyFile: string | null;
  /** Time allowed from connect to the end of authentication. */
  authenticationTimeoutMs: number;
  /** Absolute path of the config file read, or null. */
  configFile: string | null;
};

export const SOURCES = ['demo', 'archive', 'upstream'] as const;
export const WAL_READ_METHODS = ['mmap', 'read'] as const;
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export type SettingKey = Exclude<keyof Config, 'configFile'>;

export type Setting<K extends SettingKey = SettingKey> = {
  /** snake_case name, as in the config file and in error messages. */
  name: string;
  key: K;
  metavar: string;
  description: string;
  /** Default as text, parsed like any other value; null = unset. */
  default: string | null | (() => string);
  /** Default as shown in --help, if not the default text itself. */
  defaultHelp?: string;
  /** What a valid value looks like, for error messages ("an integer from 1 to 10"). */
  expected: string;
  /** Text → value; throws Error(reason) on a bad value. */
  parse: (text: string) => Config[K];
};

function enumParser<T extends string>(values: readonly T[]): (text: string) => T {
  return (text) => {
    // PostgreSQL matches enum values case-insensitively.
    const v = values.find((x) => x === text.trim().toLowerCase());
    if (v === undefined) throw new Error(`expected one of ${values.join(', ')}`);
    return v;
  };
}

function intParser(min: number, max: number): (text: string) => number {
  return (text) => {
    const n = /^\s*\+?\d+\s*$/.test(text) ? Number(text) : NaN;
    if (!(n >= min && n <= max)) throw new Error(`expected an integer from ${min} to ${max}`);
    return n;
  };
}

function parsePath(text: string): string {
  if (text.trim() === '') throw new Error('expected a non-empty path');
  return text;
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
export const HOST_PORT_EXPECTED = 'expected host:port, or [address]:port for IPv6, with a port from 0 to 65535';

/** "host:port", "[::1]:port"; the IPv6 host is returned without brackets. */
export function parseHostPort(text: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]]+):(\d{1,5})$/.exec(text);
  if (m === null) throw new Error(HOST_PORT_EXPECTED);
  const [, host, portText] = m;
  const port = Number(portText);
  const bracketed = text.startsWith('[');
  const hostOk = bracketed
    ? isIP(host) === 6
    : /^[\d.]+$/.test(host) ? isIP(host) === 4 : HOSTNAME.test(host);
  if (!hostOk || port > 65535) throw new Error(HOST_PORT_EXPECTED);
  return { host, port };
}

export function parseAdminToken(text: string): string {
  // A short token is guessable; refusing it beats running with a weak one.
  const token = text.trim();
  if (token.length < 16 || /\s/.test(token)) throw new Error('expected at least 16 characters, no white space');
  return token;
}

function parseSegmentSize(text: string): number {
  const n = parseByteSize(text);
  const MB = 1024 * 1024;
  if (n < MB || n > 1024 * MB || (n & (n - 1)) !== 0) throw new Error('expected a power of two from 1MB to 1GB');
  return n;
}

function parseTimeout(text: string): number {
  const ms = parseDuration(text, 'ms');
  if (ms > 2147483647) throw new Error('value is too large (at most 2147483647ms)');
  return ms;
}

/** PostgreSQL's authentication_timeout: 1s to 10min, a bare number is seconds. */
function parseAuthenticationTimeout(text: string): number {
  const ms = parseDuration(text, 's');
  if (ms < 1000 || ms > 600_000) throw new Error('expected a duration from 1s to 600s');
  return ms;
}

/** The connection string is checked here (syntax, keywords); the environment applies on the ingest thread. */
function parseUpstreamConninfo(text: string): string {
  if (text.trim() === '') throw new Error('expected a non-empty connection string');
  parseConninfo(text);
  return text;
}

function parseSlotName(text: string): string {
  if (!/^[a-z0-9_]{1,63}$/.test(text)) throw new Error('expected 1 to 63 lower case letters, digits and underscores');
  return text;
}

function defaultWorkers(): string {
  return String(Math.min(256, Math.max(1, availableParallelism())));
}

function setting<K extends SettingKey>(s: Setting<K>): Setting {
  return s as unknown as Setting;
}

/** Every setting, in --help order. */
export const SETTINGS: readonly Setting[] = [
  setting({
    name: 'source', key: 'source', metavar: 'SOURCE', default: 'demo',
    description: 'where WAL comes from: demo, archive, upstream',
    expected: `one of ${SOURCES.join(', ')}`, parse: enumParser(SOURCES),
  }),
  setting({
    name: 'archive_dir', key: 'archiveDir', metavar: 'DIR', default: null, defaultHelp: 'none',
    description: 'WAL segments to serve (with --source archive)',
    expected: 'a directory path', parse: parsePath,
  }),
  setting({
    name: 'data_dir', key: 'dataDir', metavar: 'DIR', default: './data',
    description: 'WAL store and state directory',
    expected: 'a directory path', parse: parsePath,
  }),
  setting({
    name: 'demo_rate', key: 'demoRate', metavar: 'SIZE', default: '1MB',
    description: 'demo WAL bytes per second (0 pauses)',
    expected: 'a size per second such as 1MB or 512kB, 0 to pause', parse: parseByteSize,
  }),
  setting({
    name: 'demo_wal_segment_size', key: 'demoWalSegmentSize', metavar: 'SIZE', default: '16MB',
    description: 'demo WAL segment size (power of 2, 1MB to 1GB)',
    expected: 'a power of two from 1MB to 1GB', parse: parseSegmentSize,
  }),
  setting({
    name: 'upstream', key: 'upstream', metavar: 'CONNINFO', default: null, defaultHelp: 'none',
    description: 'server to relay (libpq connection string)',
    expected: 'a libpq connection string (host=... port=... user=... or postgresql://...)', parse: parseUpstreamConninfo,
  }),
  setting({
    name: 'upstream_slot', key: 'upstreamSlot', metavar: 'NAME', default: null, defaultHelp: 'none',
    description: 'physical replication slot on the upstream',
    expected: 'a replication slot name: 1 to 63 lower case letters, digits and underscores', parse: parseSlotName,
  }),
  setting({
    name: 'upstream_password_file', key: 'upstreamPasswordFile', metavar: 'FILE', default: null, defaultHelp: 'none',
    description: 'file holding the upstream password',
    expected: 'a file path', parse: parsePath,
  }),
  setting({
    name: 'upstream_timeout', key: 'upstreamTimeoutMs', metavar: 'TIME', default: '60s',
    description: 'reconnect when the upstream is silent this long',
    expected: 'a duration such as 60s or 1min (bare number = milliseconds), 0 to disable', parse: parseTimeout,
  }),
  setting({
    name: 'listen', key: 'listen', metavar: 'HOST:PORT', default: '127.0.0.1:5433',
    description: 'replication address (port 0 = any free port)',
    expected: HOST_PORT_EXPECTED.slice('expected '.length), parse: parseHostPort,
  }),
  setting({
    name: 'admin_listen', key: 'adminListen', metavar: 'HOST:PORT', default: '127.0.0.1:9433',
    description: 'admin HTTP API and /metrics address, or "off"',
    expected: 'host:port or "off"',
    parse: (text) => (text.trim().toLowerCase() === 'off' ? null : parseHostPort(text)),
  }),
  setting({
    name: 'admin_token', key: 'adminToken', metavar: 'TOKEN', default: null, defaultHelp: 'none',
    description: 'admin API token (unset: mutating routes off)',
    expected: 'at least 16 characters', parse: parseAdminToken,
  }),
  setting({
    name: 'admin_token_file', key: 'adminTokenFile', metavar: 'FILE', default: null, defaultHelp: 'none',
    description: 'file holding the admin token',
    expected: 'a file path', parse: parsePath,
  }),
  setting({
    name: 'max_wal_senders', key: 'maxWalSenders', metavar: 'N', default: '10',
    description: 'max concurrent standby connections (1-10000)',
    expected: 'an integer from 1 to 10000', parse: intParser(1, 10000),
  }),
  setting({
    name: 'max_replication_slots', key: 'maxReplicationSlots', metavar: 'N', default: '10',
    description: 'physical replication slots kept (0-1000)',
    expected: 'an integer from 0 to 1000', parse: intParser(0, 1000),
  }),
  setting({
    name: 'wal_keep_size', key: 'walKeepSize', metavar: 'SIZE', default: '0',
    description: 'WAL always kept behind the flush position',
    expected: 'a size such as 0, 512MB or 1GB', parse: parseByteSize,
  }),
  setting({
    name: 'max_slot_wal_keep_size', key: 'maxSlotWalKeepSize', metavar: 'SIZE', default: '-1',
    description: 'most WAL a slot may hold back (-1 = no limit)',
    expected: 'a size such as 10GB, or -1 for no limit',
    parse: (text) => (text.trim() === '-1' ? -1 : parseByteSize(text)),
  }),
  setting({
    name: 'wal_sender_timeout', key: 'walSenderTimeoutMs', metavar: 'TIME', default: '60s',
    description: 'drop a standby silent this long (0 disables)',
    expected: 'a duration such as 60s or 1min (bare number = milliseconds), 0 to disable', parse: parseTimeout,
  }),
  setting({
    name: 'workers', key: 'workers', metavar: 'N', default: defaultWorkers,
    defaultHelp: `CPU cores (${defaultWorkers()})`,
    description: 'sender worker threads (1-256)',
    expected: 'an integer from 1 to 256', parse: intParser(1, 256),
  }),
  setting({
    name: 'wal_read', key: 'walRead', metavar: 'METHOD', default: 'mmap',
    description: 'mmap (segment mappings, native module) or read',
    expected: `one of ${WAL_READ_METHODS.join(', ')}`, parse: enumParser(WAL_READ_METHODS),
  }),
  setting({
    name: 'log_level', key: 'logLevel', metavar: 'LEVEL', default: 'info',
    description: LOG_LEVELS.join(', '),
    expected: `one of ${LOG_LEVELS.join(', ')}`, parse: enumParser(LOG_LEVELS),
  }),
  setting({
    name: 'hba_file', key: 'hbaFile', metavar: 'FILE', default: null, defaultHelp: 'none',
    description: 'client authentication rules, pg_hba.conf syntax',
    expected: 'a file path', parse: parsePath,
  }),
  setting({
    name: 'users_file', key: 'usersFile', metavar: 'FILE', default: null, defaultHelp: 'none',
    description: 'users and password verifiers (user add)',
    expected: 'a file path', parse: parsePath,
  }),
  setting({
    name: 'ssl_cert_file', key: 'sslCertFile', metavar: 'FILE', default: null, defaultHelp: 'none',
    description: 'TLS server certificate (PEM); enables TLS',
    expected: 'a file path', parse: parsePath,
  }),
  setting({
    name: 'ssl_key_file', key: 'sslKeyFile', metavar: 'FILE', default: null, defaultHelp: 'none',
    description: 'TLS private key (PEM)',
    expected: 'a file path', parse: parsePath,
  }),
  setting({
    name: 'authentication_timeout', key: 'authenticationTimeoutMs', metavar: 'TIME', default: '60s',
    description: 'time allowed to authenticate (number = s)',
    expected: 'a duration from 1s to 600s (bare number = seconds)', parse: parseAuthenticationTimeout,
  }),
];

