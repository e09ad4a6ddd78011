// Owns the untyped startup phase (protocol.md §1.1-1.2): decoding SSLRequest,
// GSSENCRequest, CancelRequest and the StartupMessage exactly as PostgreSQL 15's
// ProcessStartupPacket (postmaster.c) does, and the `replication` parameter's
// hybrid boolean/"database" value.

import { PgError, SqlState, fatalProtocol } from './errors.ts';

/** Request codes in the protocol-version slot (pqcomm.h). */
export const CANCEL_REQUEST_CODE = 80877102; // 1234.5678
export const NEGOTIATE_SSL_CODE = 80877103; // 1234.5679
export const NEGOTIATE_GSS_CODE = 80877104; // 1234.5680
export const PG_PROTOCOL_3_0 = 196608; // 3.0; PG 15 supports 3.0 to 3.0
export const PG_PROTOCOL_LATEST_MINOR = 0;

/** MAX_STARTUP_PACKET_LENGTH: limit on the packet *after* its length word. */
export const MAX_STARTUP_PACKET_LENGTH = 10000;

/** NAMEDATALEN - 1: user and database names are cut to this many bytes. */
export const NAME_MAX_BYTES = 63;

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  /** pid and key as unsigned 32-bit values */
  | { kind: 'cancel'; pid: number; key: number }
  | {
      kind: 'startup';
      protocolVersion: number;
      /** name → value, later duplicates win; `_pq_.*` names are not included. */
      params: Map<string, string>;
      /** `_pq_.*` option names, to be reported via NegotiateProtocolVersion. */
      protocolOptions: string[];
    };

/**
 * Which special requests were already answered on this connection. PG passes
 * gss_done = true after accepting SSL ('S'), and ssl_done = true after accepting
 * GSS encryption ('G'): one encryption layer only.
 */
export type StartupState = { sslDone: boolean; gssDone: boolean };

/**
 * FATAL for bytes that were already buffered when we answered SSLRequest or
 * GSSENCRequest: they were sent before the negotiation finished, so they were
 * not protected by it (possibly injected). PG checks this whatever the answer.
 */
export function unencryptedDataAfterRequest(kind: 'ssl' | 'gssenc'): PgError {
  const what = kind === 'ssl' ? 'SSL request' : 'GSSAPI encryption request';
  return fatalProtocol(`received unencrypted data after ${what}`, {
    detail: 'This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.',
  });
}

export function invalidStartupLength(): PgError {
  // COMMERROR in PostgreSQL: logged, nothing sent, connection closed.
  return fatalProtocol('invalid length of startup packet', { logOnly: true });
}

/**
 * Decodes one complete startup-phase packet. `packet` excludes the length word
 * (it starts with the Int32 code). The caller has already checked the length.
 */
export function parseStartupPacket(packet: Buffer, state: StartupState): StartupPacket {
  const len = packet.length;
  if (len < 4) throw invalidStartupLength();
  const proto = packet.readUInt32BE(0);

  if (proto === CANCEL_REQUEST_CODE) {
    if (len !== 12) throw invalidStartupLength();
    return { kind: 'cancel', pid: packet.readUInt32BE(4), key: packet.readUInt32BE(8) };
  }
  // A second SSL/GSS request of the same kind is not special: it falls through
  // and fails the version check ("unsupported frontend protocol 1234.5679").
  if (proto === NEGOTIATE_SSL_CODE && !state.sslDone) return { kind: 'ssl' };
  if (proto === NEGOTIATE_GSS_CODE && !state.gssDone) return { kind: 'gssenc' };

  const major = proto >>> 16;
  const minor = proto & 0xffff;
  if (major !== 3) {
    throw new PgError(
      'FATAL',
      SqlState.FEATURE_NOT_SUPPORTED,
      `unsupported frontend protocol ${major}.${minor}: server supports 3.0 to 3.0`,
    );
  }

  // PostgreSQL appends one NUL after the packet so every string that starts
  // inside it is terminated; `cstrEnd` reproduces that virtual byte.
  const cstrEnd = (from: number): number => {
    const i = packet.indexOf(0, from);
    return i === -1 ? len : i;
  };
  const params = new Map<string, string>();
  const protocolOptions: string[] = [];
  let offset = 4;
  while (offset < len) {
    if (packet[offset] === 0) break; // packet terminator
    const nameEnd = cstrEnd(offset);
    const valOffset = nameEnd + 1;
    if (valOffset >= len) break; // missing value: the layout check complains
    const valEnd = cstrEnd(valOffset);
    const name = packet.toString('utf8', offset, nameEnd);
    let value: string;
    if (name === 'user' || name === 'database') {
      // Truncated to NAMEDATALEN-1 bytes, as PG does, to avoid lookup failures.
      value = packet.toString('utf8', valOffset, Math.min(valEnd, valOffset + NAME_MAX_BYTES));
    } else {
      value = packet.toString('utf8', valOffset, valEnd);
    }
    if (name === 'replication') {
      replicationValue(value); // PG rejects a bad value as soon as it sees it
      params.set(name, value);
    } else if (name.startsWith('_pq_.')) {
      protocolOptions.push(name);
    } else {
      params.set(name, value);
    }
    offset = valEnd + 1;
  }
  if (offset !== len - 1) {
    throw fatalProtocol('invalid startup packet layout: expected terminator as last byte');
  }
  const user = params.get('user');
  if (user === undefined || user === '') {
    throw new PgError(
      'FATAL',
      SqlState.INVALID_AUTHORIZATION_SPECIFICATION,
      'no PostgreSQL user name specified in startup packet',
    );
  }
  return { kind: 'startup', protocolVersion: proto, params, protocolOptions };
}

/** ASCII case-insensitive: does `value` equal the first `n` chars of `word` (NUL-padded)? */
function strncasecmp(value: string, word: string, n: number): boolean {
  for (let i = 0; i < n; i++) {
    const a = i < value.length ? value.charCodeAt(i) : 0;
    const b = i < word.length ? word.charCodeAt(i) : 0;
    const la = a >= 65 && a <= 90 ? a + 32 : a;
    const lb = b >= 65 && b <= 90 ? b + 32 : b;
    if (la !== lb) return false;
    if (a === 0) return true;
  }
  return true;
}

/**
 * PostgreSQL's parse_bool: any prefix of true/false/yes/no (case-insensitive),
 * "on", "off" or "of", "1", "0". null when the text is not a boolean.
 */
export function parseBool(value: string): boolean | null {
  const n = value.length;
  switch (value[0]) {
    case 't':
    case 'T':
      return strncasecmp(value, 'true', n) ? true : null;
    case 'f':
    case 'F':
      return strncasecmp(value, 'false', n) ? false : null;
    case 'y':
    case 'Y':
      return strncasecmp(value, 'yes', n) ? true : null;
    case 'n':
    case 'N':
      return strncasecmp(value, 'no', n) ? false : null;
    case 'o':
    case 'O':
      // 'o' alone is ambiguous, so at least two characters are compared
      if (strncasecmp(value, 'on', Math.max(n, 2))) return true;
      if (strncasecmp(value, 'off', Math.max(n, 2))) return false;
      return null;
    case '1':
      return n === 1 ? true : null;
    case '0':
      return n === 1 ? false : null;
    default:
      return null;
  }
}

export type ReplicationMode = 'physical' | 'logical' | 'none';

function replicationValue(value: string): ReplicationMode {
  if (value === 'database') return 'logical';
  const b = parseBool(value);
  if (b === null) {
    throw new PgError(
      'FATAL',
      SqlState.INVALID_PARAMETER_VALUE,
      `invalid value for parameter "replication": "${value}"`,
      { hint: 'Valid values are: "false", 0, "true", 1, "database".' },
    );
  }
  return b ? 'physical' : 'none';
}

/** The walsender kind requested by the startup `replication` parameter. */
export function replicationMode(params: Map<string, string>): ReplicationMode {
  const value = params.get('replication');
  return value === undefined ? 'none' : replicationValue(value);
}
