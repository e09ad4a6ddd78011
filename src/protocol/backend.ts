// Owns the server-to-client message encoders (protocol.md §1, §2.3, §3): the
// authentication exchange, session setup, result sets, errors and the COPY-both
// streaming messages. Every function returns the complete message (type byte,
// big-endian Int32 length that counts itself, body). XLogData headers are written
// in place so the sender can read WAL straight into the outgoing buffer.

import type { Severity } from './errors.ts';
import { Writer } from './writer.ts';

/** Answers to SSLRequest / GSSENCRequest (single untyped bytes). */
export const SSL_REFUSED = Buffer.from('N');
export const SSL_ACCEPTED = Buffer.from('S');
export const GSSENC_REFUSED = Buffer.from('N');

/** pg_type OIDs of the columns the walsender returns (pg_type.dat). */
export const TypeOid = { TEXT: 25, INT4: 23, INT8: 20 } as const;

/** typlen of those types: text is varlena (-1). */
export const TypeLen = { TEXT: -1, INT4: 4, INT8: 8 } as const;

/** AuthenticationRequest codes (pqcomm.h AUTH_REQ_*). */
export const AuthCode = {
  OK: 0,
  PASSWORD: 3,
  MD5: 5,
  SASL: 10,
  SASL_CONTINUE: 11,
  SASL_FINAL: 12,
} as const;

function auth(code: number, extra?: Buffer): Buffer {
  const w = new Writer(16 + (extra?.length ?? 0)).int32(code);
  if (extra !== undefined) w.bytes(extra);
  return w.finish('R');
}

export function authenticationOk(): Buffer {
  return auth(AuthCode.OK);
}

export function authenticationCleartextPassword(): Buffer {
  return auth(AuthCode.PASSWORD);
}

/** `salt` must be exactly 4 bytes. */
export function authenticationMD5Password(salt: Buffer): Buffer {
  if (salt.length !== 4) throw new RangeError('md5 salt must be 4 bytes');
  return auth(AuthCode.MD5, salt);
}

/** Mechanism names, each NUL-terminated, then an empty name ending the list. */
export function authenticationSASL(mechanisms: string[]): Buffer {
  const w = new Writer().int32(AuthCode.SASL);
  for (const m of mechanisms) w.cstring(m);
  return w.int8(0).finish('R');
}

export function authenticationSASLContinue(data: Buffer): Buffer {
  return auth(AuthCode.SASL_CONTINUE, data);
}

export function authenticationSASLFinal(data: Buffer): Buffer {
  return auth(AuthCode.SASL_FINAL, data);
}

/**
 * NegotiateProtocolVersion: sent when the client asked for a newer 3.x minor or
 * for `_pq_.` options we do not know (ProcessStartupPacket).
 */
export function negotiateProtocolVersion(newestMinor: number, unrecognizedOptions: string[]): Buffer {
  const w = new Writer().int32(newestMinor).int32(unrecognizedOptions.length);
  for (const o of unrecognizedOptions) w.cstring(o);
  return w.finish('v');
}

export function parameterStatus(name: string, value: string): Buffer {
  return new Writer().cstring(name).cstring(value).finish('S');
}

/** `pid` and `key` are written as their 32-bit patterns (int32 or uint32 both accepted). */
export function backendKeyData(pid: number, key: number): Buffer {
  return new Writer(16).int32(pid).int32(key).finish('K');
}

/** Transaction status: 'I' idle, 'T' in a transaction block, 'E' failed block. */
export function readyForQuery(status: 'I' | 'T' | 'E' = 'I'): Buffer {
  return new Writer(8).int8(status.charCodeAt(0)).finish('Z');
}

export type ErrorFields = {
  severity: Severity;
  code: string;
  message: string;
  detail?: string;
  hint?: string;
};

// Field order is PostgreSQL's send_message_to_frontend: S, V, C, M, D, H. We omit
// F/L/R (source file, line, routine): no client relies on them.
function noticeOrError(type: 'E' | 'N', e: ErrorFields): Buffer {
  const w = new Writer(64 + e.message.length);
  w.int8(0x53).cstring(e.severity); // S: localized severity; we only speak English
  w.int8(0x56).cstring(e.severity); // V: non-localized severity
  w.int8(0x43).cstring(e.code);
  w.int8(0x4d).cstring(e.message);
  if (e.detail !== undefined) w.int8(0x44).cstring(e.detail);
  if (e.hint !== undefined) w.int8(0x48).cstring(e.hint);
  return w.int8(0).finish(type);
}

export function errorResponse(e: ErrorFields): Buffer {
  return noticeOrError('E', e);
}

export function noticeResponse(e: ErrorFields): Buffer {
  return noticeOrError('N', e);
}

export type FieldDescription = {
  name: string;
  typeOid: number;
  typeLen: number;
  /** -1 unless stated otherwise; TIMELINE_HISTORY's hand-built descriptor uses 0. */
  typmod?: number;
};

/** RowDescription with tableOID 0, attnum 0 and text format for every column. */
export function rowDescription(fields: FieldDescription[]): Buffer {
  const w = new Writer(16 + fields.length * 32).int16(fields.length);
  for (const f of fields) {
    w.cstring(f.name).int32(0).int16(0).int32(f.typeOid).int16(f.typeLen).int32(f.typmod ?? -1).int16(0);
  }
  return w.finish('T');
}

/** DataRow: strings go out as UTF-8 text, Buffers verbatim, null as length -1. */
export function dataRow(values: (string | Buffer | null)[]): Buffer {
  const w = new Writer().int16(values.length);
  for (const v of values) {
    if (v === null) {
      w.int32(-1);
    } else if (typeof v === 'string') {
      w.int32(Buffer.byteLength(v, 'utf8')).string(v);
    } else {
      w.int32(v.length).bytes(v);
    }
  }
  return w.finish('D');
}

export function commandComplete(tag: string): Buffer {
  return new Writer(16 + tag.length).cstring(tag).finish('C');
}

export function emptyQueryResponse(): Buffer {
  return new Writer(8).finish('I');
}

/** CopyBothResponse as StartReplication sends it: text format, zero columns. */
export function copyBothResponse(): Buffer {
  return new Writer(8).int8(0).int16(0).finish('W');
}

export function copyDone(): Buffer {
  return new Writer(8).finish('c');
}

export function copyData(payload: Buffer): Buffer {
  return new Writer(5 + payload.length).bytes(payload).finish('d');
}

/** 'd' + Int32 length + 'w' + dataStart + walEnd + sendTime. */
export const XLOGDATA_HEADER_LEN = 30;

/** Payload size of a primary keepalive ('k'); walreceiver insists on exactly this. */
export const KEEPALIVE_PAYLOAD_LEN = 18;

/** MAX_SEND_SIZE of walsender.c: XLOG_BLCKSZ * 16 bytes of WAL per XLogData. */
export const MAX_SEND_SIZE = 131072;

/**
 * Writes a CopyData + XLogData header at `target[offset..offset+30)` announcing
 * `walBytes` WAL bytes, which the caller places (or has placed) at offset+30; with
 * `walInTarget` false they are not in `target` at all but go to the socket as a buffer
 * of their own right after the header (a slice of a segment mapping).
 */
export function writeXLogDataHeader(
  target: Buffer,
  offset: number,
  dataStart: bigint,
  walEnd: bigint,
  sendTime: bigint,
  walBytes: number,
  walInTarget = true,
): void {
  if (walBytes < 0 || walBytes > 0x7fffffff - 29) throw new RangeError('XLogData length out of range');
  if (offset < 0 || offset + XLOGDATA_HEADER_LEN + (walInTarget ? walBytes : 0) > target.length) {
    throw new RangeError('XLogData does not fit in target buffer');
  }
  target[offset] = 0x64; // 'd'
  target.writeUInt32BE(4 + 25 + walBytes, offset + 1);
  target[offset + 5] = 0x77; // 'w'
  target.writeBigUInt64BE(dataStart, offset + 6);
  target.writeBigUInt64BE(walEnd, offset + 14);
  target.writeBigInt64BE(sendTime, offset + 22);
}

/** Rewrites only sendTime of a header written by writeXLogDataHeader (PG fills it last). */
export function setXLogDataSendTime(target: Buffer, offset: number, sendTime: bigint): void {
  target.writeBigInt64BE(sendTime, offset + 22);
}

/** Convenience: a complete XLogData message with a copy of `wal`. */
export function xlogData(dataStart: bigint, walEnd: bigint, sendTime: bigint, wal: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(XLOGDATA_HEADER_LEN + wal.length);
  writeXLogDataHeader(out, 0, dataStart, walEnd, sendTime, wal.length);
  out.set(wal, XLOGDATA_HEADER_LEN);
  return out;
}

/** Primary keepalive wrapped in CopyData: 1 + 4 + 18 bytes. */
export function keepalive(walEnd: bigint, sendTime: bigint, replyRequested: boolean): Buffer {
  const out = Buffer.allocUnsafe(5 + KEEPALIVE_PAYLOAD_LEN);
  out[0] = 0x64; // 'd'
  out.writeUInt32BE(4 + KEEPALIVE_PAYLOAD_LEN, 1);
  out[5] = 0x6b; // 'k'
  out.writeBigUInt64BE(walEnd, 6);
  out.writeBigInt64BE(sendTime, 14);
  out[22] = replyRequested ? 1 : 0;
  return out;
}
