// Owns the other side of the wire: what a frontend sends (startup packets,
// Query, password, standby replies) and decoders for what a backend sends
// (XLogData, keepalive, ErrorResponse, result sets). The upstream receiver, a
// client of another server, uses these; tests use them to cross-check encoders.
// Decoders throw PgError ERROR 08P01 on malformed input.

import { errorProtocol } from './errors.ts';
import { MessageCursor } from './frontend.ts';
import { CANCEL_REQUEST_CODE, NEGOTIATE_GSS_CODE, NEGOTIATE_SSL_CODE, PG_PROTOCOL_3_0 } from './startup.ts';
import { Writer } from './writer.ts';
import type { FieldDescription } from './backend.ts';

// ---- frontend encoders ------------------------------------------------------

export function sslRequest(): Buffer {
  return new Writer(8, false).int32(NEGOTIATE_SSL_CODE).finishUntyped();
}

export function gssEncRequest(): Buffer {
  return new Writer(8, false).int32(NEGOTIATE_GSS_CODE).finishUntyped();
}

export function cancelRequest(pid: number, key: number): Buffer {
  return new Writer(16, false).int32(CANCEL_REQUEST_CODE).int32(pid).int32(key).finishUntyped();
}

/** StartupMessage: version, name/value pairs, terminating NUL. */
export function startupMessage(params: Iterable<[string, string]>, protocolVersion = PG_PROTOCOL_3_0): Buffer {
  const w = new Writer(128, false).int32(protocolVersion);
  for (const [k, v] of params) w.cstring(k).cstring(v);
  return w.int8(0).finishUntyped();
}

export function query(text: string): Buffer {
  return new Writer().cstring(text).finish('Q');
}

/** PasswordMessage carrying a NUL-terminated password (cleartext or "md5..."). */
export function passwordMessage(password: string): Buffer {
  return new Writer().cstring(password).finish('p');
}

export function saslInitialResponse(mechanism: string, data: Buffer | null): Buffer {
  const w = new Writer().cstring(mechanism);
  if (data === null) w.int32(-1);
  else w.int32(data.length).bytes(data);
  return w.finish('p');
}

export function saslResponse(data: Buffer): Buffer {
  return new Writer().bytes(data).finish('p');
}

export function terminate(): Buffer {
  return new Writer(8).finish('X');
}

/** Standby status update payload ('r', 34 bytes), to wrap in copyData. */
export function standbyStatusUpdate(
  write: bigint,
  flush: bigint,
  apply: bigint,
  sendTime: bigint,
  replyRequested: boolean,
): Buffer {
  const out = Buffer.allocUnsafe(34);
  out[0] = 0x72;
  out.writeBigUInt64BE(write, 1);
  out.writeBigUInt64BE(flush, 9);
  out.writeBigUInt64BE(apply, 17);
  out.writeBigInt64BE(sendTime, 25);
  out[33] = replyRequested ? 1 : 0;
  return out;
}

/** Hot standby feedback payload ('h', 25 bytes), to wrap in copyData. */
export function hotStandbyFeedback(
  sendTime: bigint,
  xmin: number,
  xminEpoch: number,
  catalogXmin: number,
  catalogXminEpoch: number,
): Buffer {
  const out = Buffer.allocUnsafe(25);
  out[0] = 0x68;
  out.writeBigInt64BE(sendTime, 1);
  out.writeUInt32BE(xmin >>> 0, 9);
  out.writeUInt32BE(xminEpoch >>> 0, 13);
  out.writeUInt32BE(catalogXmin >>> 0, 17);
  out.writeUInt32BE(catalogXminEpoch >>> 0, 21);
  return out;
}

// ---- backend decoders -------------------------------------------------------

export type XLogDataMessage = { dataStart: bigint; walEnd: bigint; sendTime: bigint; data: Buffer };
export type KeepaliveMessage = { walEnd: bigint; sendTime: bigint; replyRequested: boolean };

/** A server CopyData payload while streaming: 'w' XLogData or 'k' keepalive. */
export function parseServerCopyData(
  payload: Buffer,
): ({ kind: 'w' } & XLogDataMessage) | ({ kind: 'k' } & KeepaliveMessage) {
  const c = new MessageCursor(payload);
  const type = c.byte();
  if (type === 0x77) {
    const dataStart = c.uint64();
    const walEnd = c.uint64();
    const sendTime = c.int64();
    return { kind: 'w', dataStart, walEnd, sendTime, data: c.bytes(c.remaining) };
  }
  if (type === 0x6b) {
    const walEnd = c.uint64();
    const sendTime = c.int64();
    const replyRequested = c.byte() !== 0;
    return { kind: 'k', walEnd, sendTime, replyRequested };
  }
  throw errorProtocol(`unexpected message type "${String.fromCharCode(type)}"`);
}

/** ErrorResponse / NoticeResponse body: field code → value. */
export function parseErrorFields(body: Buffer): Map<string, string> {
  const c = new MessageCursor(body);
  const fields = new Map<string, string>();
  for (;;) {
    const code = c.byte();
    if (code === 0) break;
    fields.set(String.fromCharCode(code), c.cstring());
  }
  c.end();
  return fields;
}

/** 'R' body: the auth code and whatever follows it. */
export function parseAuthentication(body: Buffer): { code: number; data: Buffer } {
  const c = new MessageCursor(body);
  const code = c.int32();
  return { code, data: c.bytes(c.remaining) };
}

export function parseParameterStatus(body: Buffer): { name: string; value: string } {
  const c = new MessageCursor(body);
  const name = c.cstring();
  const value = c.cstring();
  c.end();
  return { name, value };
}

export function parseRowDescription(body: Buffer): Required<FieldDescription>[] {
  const c = new MessageCursor(body);
  const count = c.int16();
  const fields: Required<FieldDescription>[] = [];
  for (let i = 0; i < count; i++) {
    const name = c.cstring();
    c.int32(); // table OID
    c.int16(); // attnum
    const typeOid = c.int32();
    const typeLen = c.int16();
    const typmod = c.int32();
    c.int16(); // format
    fields.push({ name, typeOid, typeLen, typmod });
  }
  c.end();
  return fields;
}

/** DataRow values as raw bytes (null for SQL NULL). */
export function parseDataRow(body: Buffer): (Buffer | null)[] {
  const c = new MessageCursor(body);
  const count = c.int16();
  const values: (Buffer | null)[] = [];
  for (let i = 0; i < count; i++) {
    const len = c.int32();
    values.push(len === -1 ? null : c.bytes(len));
  }
  c.end();
  return values;
}

export function parseCommandComplete(body: Buffer): string {
  const c = new MessageCursor(body);
  const tag = c.cstring();
  c.end();
  return tag;
}
