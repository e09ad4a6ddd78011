// Owns the SCRAM-SHA-256 server (RFC 5802 / RFC 7677) exactly as PostgreSQL 15's
// auth-scram.c runs it: the stored secret format, the mock exchange for unknown
// users (doomed, failing only at the end so user existence does not leak), the
// client-first / client-final parsing with PostgreSQL's error texts, channel
// binding (SCRAM-SHA-256-PLUS, tls-server-end-point) and the proof check. Pure:
// no I/O; every error is a FATAL PgError (an ERROR during authentication is FATAL).

import { createHash, createHmac, pbkdf2, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { PgError } from '../protocol/errors.ts';
import { saslprep, saslprepBytes } from './saslprep.ts';

export const SCRAM_SHA_256 = 'SCRAM-SHA-256';
export const SCRAM_SHA_256_PLUS = 'SCRAM-SHA-256-PLUS';
export const SCRAM_DEFAULT_ITERATIONS = 4096;
export const SCRAM_DEFAULT_SALT_LEN = 16;
export const SCRAM_RAW_NONCE_LEN = 18;
const KEY_LEN = 32;

export type ScramSecret = { iterations: number; salt: string; storedKey: Buffer; serverKey: Buffer };

const hmac = (key: Buffer, data: string | Buffer): Buffer => createHmac('sha256', key).update(data).digest();
const sha256 = (data: Buffer): Buffer => createHash('sha256').update(data).digest();

/** pg_b64_decode: strict base64 (no whitespace, correct padding), or null. */
export function decodeBase64Strict(s: string): Buffer | null {
  if (s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(s)) return null;
  return Buffer.from(s, 'base64');
}

/** parse_scram_secret: "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>", or null. */
export function parseScramSecret(secret: string): ScramSecret | null {
  const m = /^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$/.exec(secret);
  if (!m) return null;
  const iterations = Number(m[1]);
  const storedKey = decodeBase64Strict(m[3]!);
  const serverKey = decodeBase64Strict(m[4]!);
  if (!(iterations >= 1 && iterations <= 0x7fffffff) || !decodeBase64Strict(m[2]!)) return null;
  if (storedKey?.length !== KEY_LEN || serverKey?.length !== KEY_LEN) return null;
  return { iterations, salt: m[2]!, storedKey, serverKey };
}

export function saltedPassword(password: string, salt: Buffer, iterations: number): Buffer {
  return pbkdf2Sync(Buffer.from(saslprep(password), 'utf8'), salt, iterations, KEY_LEN, 'sha256');
}

/** pg_be_scram_build_secret: what CREATE ROLE ... PASSWORD stores by default. */
export function buildScramSecret(password: string, salt: Buffer = randomBytes(SCRAM_DEFAULT_SALT_LEN),
  iterations = SCRAM_DEFAULT_ITERATIONS): string {
  const salted = saltedPassword(password, salt, iterations);
  const storedKey = sha256(hmac(salted, 'Client Key'));
  const serverKey = hmac(salted, 'Server Key');
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

const pbkdf2Async = promisify(pbkdf2);

/**
 * scram_verify_plain_password: a cleartext password (the "password" method)
 * against a secret. Asynchronous: PBKDF2 runs on the libuv pool, so the other
 * standbys of this sender thread are not held up by it.
 */
export async function scramVerifyPlainPassword(password: string | Buffer, secret: ScramSecret): Promise<boolean> {
  const bytes = typeof password === 'string' ? Buffer.from(saslprep(password), 'utf8') : saslprepBytes(password);
  const salted = await pbkdf2Async(bytes, Buffer.from(secret.salt, 'base64'),
    secret.iterations, KEY_LEN, 'sha256');
  return timingSafeEqual(hmac(salted, 'Server Key'), secret.serverKey);
}

const malformed = (detail: string): PgError =>
  new PgError('FATAL', '08P01', 'malformed SCRAM message', { detail });

/** sanitize_char: printable ASCII quoted, anything else as hex. */
function sanitizeChar(c: string | undefined): string {
  const code = c === undefined ? 0 : c.charCodeAt(0);
  return code >= 0x21 && code <= 0x7e ? `'${c}'` : `0x${code.toString(16).padStart(2, '0')}`;
}

function sanitizeStr(s: string): string {
  return [...s.slice(0, 30)].map((c) => (c.charCodeAt(0) >= 0x21 && c.charCodeAt(0) <= 0x7e ? c : '?')).join('');
}

/** A cursor over a SCRAM message, with read_attr_value / read_any_attr. */
class AttrReader {
  readonly s: string;
  pos = 0;
  constructor(s: string) { this.s = s; }
  peek(): string | undefined { return this.s[this.pos]; }
  get done(): boolean { return this.pos >= this.s.length; }

  private value(): string {
    const end = this.s.indexOf(',', this.pos);
    const v = this.s.slice(this.pos, end < 0 ? this.s.length : end);
    this.pos = end < 0 ? this.s.length : end + 1;
    return v;
  }

  attr(name: string): string {
    if (this.peek() !== name) throw malformed(`Expected attribute "${name}" but found "${sanitizeChar(this.peek())}".`);
    this.pos++;
    if (this.peek() !== '=') throw malformed(`Expected character "=" for attribute "${name}".`);
    this.pos++;
    return this.value();
  }

  anyAttr(): { name: string; value: string } {
    const name = this.peek();
    if (name === undefined) throw malformed('Attribute expected, but found end of string.');
    if (!/^[A-Za-z]$/.test(name)) throw malformed(`Attribute expected, but found invalid character "${sanitizeChar(name)}".`);
    this.pos++;
    if (this.peek() !== '=') throw malformed(`Expected character "=" for attribute "${name}".`);
    this.pos++;
    return { name, value: this.value() };
  }
}

export type ScramOptions = {
  /** The mechanism the client selected in SASLInitialResponse. */
  mechanism: string;
  /** The user's secret, or null: a mock exchange that fails at the end. */
  secret: ScramSecret | null;
  user: string;
  /** The TLS channel-binding data (server certificate hash), when -PLUS was offered. */
  certificateHash: Buffer | null;
  /** Keys the mock salt, so the same unknown user always sees the same salt. */
  mockNonce: Buffer;
  /** Test vectors only: a fixed server nonce instead of 18 random bytes. */
  serverNonce?: string;
};

export type ScramStep = { kind: 'continue'; output: Buffer } | { kind: 'success'; output: Buffer } | { kind: 'failure' };

/** One server-side exchange: feed it each client message in turn (scram_exchange). */
export class ScramExchange {
  private state: 'init' | 'salt-sent' | 'finished' = 'init';
  private readonly channelBinding: boolean;
  private readonly cbHash: Buffer | null;
  private readonly iterations: number;
  private readonly salt: string;
  private readonly storedKey: Buffer;
  private readonly serverKey: Buffer;
  readonly doomed: boolean;
  private cbindFlag = '';
  private clientNonce = '';
  private serverNonce: string;
  private clientFirstBare = '';
  private serverFirst = '';

  constructor(o: ScramOptions) {
    this.cbHash = o.certificateHash;
    this.serverNonce = o.serverNonce ?? randomBytes(SCRAM_RAW_NONCE_LEN).toString('base64');
    if (o.mechanism === SCRAM_SHA_256_PLUS && o.certificateHash) this.channelBinding = true;
    else if (o.mechanism === SCRAM_SHA_256) this.channelBinding = false;
    else throw new PgError('FATAL', '08P01', 'client selected an invalid SASL authentication mechanism');
    if (o.secret) {
      this.doomed = false;
      ({ iterations: this.iterations, salt: this.salt, storedKey: this.storedKey, serverKey: this.serverKey } = o.secret);
    } else {
      // mock_scram_secret: a salt derived from the user name, keys that match nothing.
      this.doomed = true;
      this.iterations = SCRAM_DEFAULT_ITERATIONS;
      this.salt = sha256(Buffer.concat([Buffer.from(o.user, 'utf8'), o.mockNonce])).subarray(0, SCRAM_DEFAULT_SALT_LEN).toString('base64');
      this.storedKey = Buffer.alloc(KEY_LEN);
      this.serverKey = Buffer.alloc(KEY_LEN);
    }
  }

  /** The next client message (raw bytes); null only for an absent initial response. */
  step(input: Buffer | null): ScramStep {
    // No initial response: an empty challenge, to which the client answers with
    // its client-first-message (auth-scram.c). Without it the client would wait.
    if (input === null) {
      if (this.state !== 'init') throw new PgError('FATAL', 'XX000', 'invalid SCRAM exchange state');
      return { kind: 'continue', output: Buffer.alloc(0) };
    }
    if (input.length === 0) throw malformed('The message is empty.');
    if (input.includes(0)) throw malformed('Message length does not match input length.');
    // latin1 keeps every byte as one char, so AuthMessage is rebuilt byte for byte.
    const text = input.toString('latin1');
    if (this.state === 'init') {
      this.readClientFirst(text);
      this.serverFirst = `r=${this.clientNonce}${this.serverNonce},s=${this.salt},i=${this.iterations}`;
      this.state = 'salt-sent';
      return { kind: 'continue', output: Buffer.from(this.serverFirst, 'latin1') };
    }
    if (this.state !== 'salt-sent') throw new PgError('FATAL', 'XX000', 'invalid SCRAM exchange state');
    const { finalNonce, withoutProof, proof } = this.readClientFinal(text);
    if (finalNonce !== this.clientNonce + this.serverNonce) {
      throw new PgError('FATAL', '08P01', 'invalid SCRAM response', { detail: 'Nonce does not match.' });
    }
    const authMessage = Buffer.from(`${this.clientFirstBare},${this.serverFirst},${withoutProof}`, 'latin1');
    const clientSignature = hmac(this.storedKey, authMessage);
    const clientKey = Buffer.alloc(KEY_LEN);
    for (let i = 0; i < KEY_LEN; i++) clientKey[i] = proof[i]! ^ clientSignature[i]!;
    const proofOk = timingSafeEqual(sha256(clientKey), this.storedKey);
    if (!proofOk || this.doomed) return { kind: 'failure' };
    this.state = 'finished';
    const signature = hmac(this.serverKey, authMessage).toString('base64');
    return { kind: 'success', output: Buffer.from(`v=${signature}`, 'latin1') };
  }

  /** read_client_first_message */
  private readClientFirst(input: string): void {
    const r = new AttrReader(input);
    this.cbindFlag = r.peek() ?? '';
    switch (r.peek()) {
      case 'n':
      case 'y':
        if (this.channelBinding) {
          throw malformed('The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data.');
        }
        if (r.peek() === 'y' && this.cbHash) {
          throw new PgError('FATAL', '28000', 'SCRAM channel binding negotiation error', {
            detail: 'The client supports SCRAM channel binding but thinks the server does not.  However, this server does support channel binding.',
          });
        }
        r.pos++;
        if (r.peek() !== ',') throw malformed(`Comma expected, but found character "${sanitizeChar(r.peek())}".`);
        r.pos++;
        break;
      case 'p': {
        if (!this.channelBinding) {
          throw malformed('The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data.');
        }
        const type = r.attr('p');
        if (type !== 'tls-server-end-point') {
          throw new PgError('FATAL', '08P01', `unsupported SCRAM channel-binding type "${sanitizeStr(type)}"`);
        }
        break;
      }
      default:
        throw malformed(`Unexpected channel-binding flag "${sanitizeChar(r.peek())}".`);
    }
    if (r.peek() === 'a') throw new PgError('FATAL', '0A000', 'client uses authorization identity, but it is not supported');
    if (r.peek() !== ',') throw malformed(`Unexpected attribute "${sanitizeChar(r.peek())}" in client-first-message.`);
    r.pos++;
    this.clientFirstBare = input.slice(r.pos);
    if (r.peek() === 'm') throw new PgError('FATAL', '0A000', 'client requires an unsupported SCRAM extension');
    r.attr('n'); // the user name: ignored, the startup packet's user counts
    this.clientNonce = r.attr('r');
    if (!/^[\x21-\x2b\x2d-\x7e]*$/.test(this.clientNonce)) {
      throw new PgError('FATAL', '08P01', 'non-printable characters in SCRAM nonce');
    }
    while (!r.done) r.anyAttr();
  }

  /** read_client_final_message */
  private readClientFinal(input: string): { finalNonce: string; withoutProof: string; proof: Buffer } {
    const r = new AttrReader(input);
    const cbind = r.attr('c');
    if (this.channelBinding) {
      const expected = Buffer.concat([Buffer.from('p=tls-server-end-point,,'), this.cbHash!]).toString('base64');
      if (cbind !== expected) throw new PgError('FATAL', '28000', 'SCRAM channel binding check failed');
    } else if (!(cbind === 'biws' && this.cbindFlag === 'n') && !(cbind === 'eSws' && this.cbindFlag === 'y')) {
      throw new PgError('FATAL', '08P01', 'unexpected SCRAM channel-binding attribute in client-final-message');
    }
    const finalNonce = r.attr('r');
    let proofAt: number;
    let a: { name: string; value: string };
    do {
      proofAt = r.pos - 1; // the comma before the attribute
      a = r.anyAttr();
    } while (a.name !== 'p');
    const proof = decodeBase64Strict(a.value);
    if (proof?.length !== KEY_LEN) throw malformed('Malformed proof in client-final-message.');
    if (!r.done) throw malformed('Garbage found at the end of client-final-message.');
    return { finalNonce, withoutProof: input.slice(0, proofAt), proof };
  }
}
