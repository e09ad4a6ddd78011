// Owns client-to-server decoding: re-exports the framer and startup parser, and
// decodes message bodies (Query, PasswordMessage, SASLInitialResponse) and the
// standby messages inside CopyData ('r' status update, 'h' hot-standby
// feedback). Error texts and SQLSTATEs are those of PostgreSQL's pqformat.c,
// auth.c, auth-sasl.c, postgres.c and walsender.c.

import { PgError, SqlState, fatalProtocol } from './errors.ts';
import type { Severity } from './errors.ts';

export { FrontendReader } from './reader.ts';
export type { FrontendMessage, FrontendReaderOptions } from './reader.ts';
export { parseBool, parseStartupPacket, replicationMode, unencryptedDataAfterRequest } from './startup.ts';
export type { ReplicationMode, StartupPacket, StartupState } from './startup.ts';

/** postgres.c limits on a message's length word, chosen by type. */
export const PQ_SMALL_MESSAGE_LIMIT = 10000;
export const PQ_LARGE_MESSAGE_LIMIT = 0x3fffffff - 1; // MaxAllocSize - 1
/** auth.c: password packets and GSS/SSPI tokens. */
export const PG_MAX_AUTH_TOKEN_LENGTH = 65535;
/** auth-sasl.c: SASLInitialResponse / SASLResponse. */
export const PG_MAX_SASL_MESSAGE_LENGTH = 1024;

/**
 * SocketBackend's table: the length limit for a message type in command mode,
 * rejecting unknown types before their length is read (FATAL, framing is lost).
 */
export function commandModeLengthLimit(type: string): number {
  switch (type) {
    case 'Q':
    case 'F':
    case 'B':
    case 'P':
    case 'd':
      return PQ_LARGE_MESSAGE_LIMIT;
    case 'X':
    case 'C':
    case 'D':
    case 'E':
    case 'H':
    case 'S':
    case 'c':
    case 'f':
      return PQ_SMALL_MESSAGE_LIMIT;
    default:
      throw fatalProtocol(`invalid frontend message type ${type.charCodeAt(0)}`);
  }
}

/** ProcessRepliesIfAny's table: while streaming only 'd', 'c' and 'X' are allowed. */
export function streamingLengthLimit(type: string): number {
  switch (type) {
    case 'd':
      return PQ_LARGE_MESSAGE_LIMIT;
    case 'c':
    case 'X':
      return PQ_SMALL_MESSAGE_LIMIT;
    default:
      throw fatalProtocol(`invalid standby message type "${type}"`);
  }
}

/**
 * A read cursor over a message body with pqformat.c's checks. The severity is
 * the one PostgreSQL ends up reporting in the calling context: ERROR in command
 * and streaming mode, FATAL during authentication (no error handler exists yet,
 * so PG promotes ERROR to FATAL there).
 */
export class MessageCursor {
  readonly buf: Buffer;
  pos = 0;
  readonly severity: Severity;

  constructor(buf: Buffer, severity: Severity = 'ERROR') {
    this.buf = buf;
    this.severity = severity;
  }

  private fail(message: string): PgError {
    return new PgError(this.severity, SqlState.PROTOCOL_VIOLATION, message);
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  /** pq_getmsgbyte */
  byte(): number {
    if (this.pos >= this.buf.length) throw this.fail('no data left in message');
    return this.buf[this.pos++]!;
  }

  private need(n: number): void {
    if (n < 0 || n > this.buf.length - this.pos) throw this.fail('insufficient data left in message');
  }

  /** pq_getmsgint(msg, 2), signed view */
  int16(): number {
    this.need(2);
    const v = this.buf.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  /** pq_getmsgint(msg, 4), signed view */
  int32(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  /** pq_getmsgint(msg, 4), unsigned view (TransactionId, epochs) */
  uint32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  /** pq_getmsgint64 as an unsigned value (XLogRecPtr) */
  uint64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  /** pq_getmsgint64 as a signed value (TimestampTz) */
  int64(): bigint {
    this.need(8);
    const v = this.buf.readBigInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  /** pq_getmsgbytes */
  bytes(n: number): Buffer {
    this.need(n);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  /** pq_getmsgrawstring: NUL-terminated, returned as raw bytes */
  rawCString(): Buffer {
    const end = this.buf.indexOf(0, this.pos);
    if (end === -1) throw this.fail('invalid string in message');
    const v = this.buf.subarray(this.pos, end);
    this.pos = end + 1;
    return v;
  }

  /** pq_getmsgstring, decoded as UTF-8 */
  cstring(): string {
    return this.rawCString().toString('utf8');
  }

  /** pq_getmsgend */
  end(): void {
    if (this.pos !== this.buf.length) throw this.fail('invalid message format');
  }
}

/** Query ('Q'): one string filling the body. ERROR on malformed input (the session survives). */
export function parseQuery(body: Buffer): string {
  const c = new MessageCursor(body, 'ERROR');
  const text = c.cstring();
  c.end();
  return text;
}

/**
 * PasswordMessage / SASLResponse ('p'): the raw body. Its meaning depends on the
 * authentication method, so it is not checked here; see parsePasswordPacket.
 */
export function parsePasswordMessage(body: Buffer): Buffer {
  return body;
}

/**
 * A cleartext or md5 password packet, checked as recv_password_packet does: the
 * body must be exactly one NUL-terminated string, and not empty.
 */
export function parsePasswordPacket(body: Buffer): string {
  return parsePasswordPacketBytes(body).toString('utf8');
}

/** The same checks; the password as the client's bytes (the password method compares bytes, as PostgreSQL does). */
export function parsePasswordPacketBytes(body: Buffer): Buffer {
  const nul = body.indexOf(0);
  if (nul === -1 || nul + 1 !== body.length) throw fatalProtocol('invalid password packet size');
  if (body.length === 1) {
    throw new PgError('FATAL', SqlState.INVALID_PASSWORD, 'empty password returned by client');
  }
  return body.subarray(0, nul);
}

/**
 * SASLInitialResponse ('p' after AuthenticationSASL): mechanism name, Int32
 * length (-1 = no initial response), then the data. FATAL: auth-phase error.
 */
export function parseSASLInitialResponse(body: Buffer): { mechanism: string; data: Buffer | null } {
  const c = new MessageCursor(body, 'FATAL');
  const mechanism = c.cstring();
  const len = c.int32();
  const data = len === -1 ? null : c.bytes(len);
  c.end();
  return { mechanism, data };
}

export type StandbyMessage =
  | { kind: 'r'; write: bigint; flush: bigint; apply: bigint; sendTime: bigint; replyRequested: boolean }
  | {
      kind: 'h';
      sendTime: bigint;
      xmin: number;
      xminEpoch: number;
      catalogXmin: number;
      catalogXminEpoch: number;
    };

/** Payload sizes: 'r' is 34 bytes, 'h' is 25 bytes, type byte included. */
export const STANDBY_REPLY_LEN = 34;
export const HOT_STANDBY_FEEDBACK_LEN = 25;

/**
 * A CopyData payload from the standby while streaming. Truncation is an ERROR
 * (pqformat.c), which ends COPY and returns the session to command mode; extra
 * trailing bytes are ignored as in walsender.c. An unknown type is logged by PG
 * as COMMERROR and the walsender exits without replying (logOnly FATAL here).
 */
export function parseStandbyMessage(payload: Buffer): StandbyMessage {
  const c = new MessageCursor(payload, 'ERROR');
  const type = c.byte();
  if (type === 0x72) {
    const write = c.uint64();
    const flush = c.uint64();
    const apply = c.uint64();
    const sendTime = c.int64();
    const replyRequested = c.byte() !== 0;
    return { kind: 'r', write, flush, apply, sendTime, replyRequested };
  }
  if (type === 0x68) {
    const sendTime = c.int64();
    const xmin = c.uint32();
    const xminEpoch = c.uint32();
    const catalogXmin = c.uint32();
    const catalogXminEpoch = c.uint32();
    return { kind: 'h', sendTime, xmin, xminEpoch, catalogXmin, catalogXminEpoch };
  }
  throw fatalProtocol(`unexpected message type "${String.fromCharCode(type)}"`, { logOnly: true });
}

