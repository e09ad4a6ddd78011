// Owns the client side of SCRAM-SHA-256 (RFC 5802 / RFC 7677) as libpq speaks it
// (fe-auth-scram.c): the client-first message with an empty user name (PostgreSQL
// takes the startup user), the proof, the check of the server's signature, and
// tls-server-end-point channel binding for SCRAM-SHA-256-PLUS. Pure: node:crypto only.

import crypto from 'node:crypto';

export const SCRAM_SHA_256 = 'SCRAM-SHA-256';
export const SCRAM_SHA_256_PLUS = 'SCRAM-SHA-256-PLUS';

/** How the client binds the exchange to the TLS channel (gs2 header). */
export type ChannelBinding =
  | { kind: 'none' } // "n": no TLS, or the client chose not to bind
  | { kind: 'unused' } // "y": client could bind but the server did not offer -PLUS
  | { kind: 'tls-server-end-point'; certificateHash: Buffer }; // "p=tls-server-end-point"

export class ScramError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScramError';
  }
}

function gs2Header(cb: ChannelBinding): string {
  if (cb.kind === 'tls-server-end-point') return 'p=tls-server-end-point,,';
  return cb.kind === 'unused' ? 'y,,' : 'n,,';
}

export type ScramClientState = {
  password: string;
  channelBinding: ChannelBinding;
  clientNonce: string;
  clientFirstBare: string;
};

/** client-first-message. `user` is empty for PostgreSQL; `nonce` only for test vectors. */
export function clientFirstMessage(password: string, channelBinding: ChannelBinding,
  opts: { user?: string; nonce?: string } = {}): { message: string; state: ScramClientState } {
  // PostgreSQL's client nonce: 18 random bytes, base64 (fe-auth-scram.c SCRAM_RAW_NONCE_LEN).
  const clientNonce = opts.nonce ?? crypto.randomBytes(18).toString('base64');
  const clientFirstBare = `n=${saslName(opts.user ?? '')},r=${clientNonce}`;
  return {
    message: gs2Header(channelBinding) + clientFirstBare,
    state: { password, channelBinding, clientNonce, clientFirstBare },
  };
}

function saslName(s: string): string {
  return s.replaceAll('=', '=3D').replaceAll(',', '=2C');
}

function attributes(msg: string, what: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of msg.split(',')) {
    if (part.length < 2 || part[1] !== '=') throw new ScramError(`malformed SCRAM message (${what})`);
    out.set(part[0]!, part.slice(2));
  }
  return out;
}

const hmac = (key: Buffer, data: string | Buffer): Buffer => crypto.createHmac('sha256', key).update(data).digest();
const sha256 = (data: Buffer): Buffer => crypto.createHash('sha256').update(data).digest();

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/** pg_saslprep: normalize a non-ASCII password (NFKC after mapping); on failure use it as is, like PostgreSQL. */
export function saslprep(password: string): string {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(password)) return password;
  // RFC 4013: non-ASCII spaces map to SPACE, "commonly mapped to nothing" characters are removed.
  const mapped = password
    .replace(/[\u00a0\u1680\u2000-\u200b\u202f\u205f\u3000]/g, ' ')
    .replace(/[\u00ad\u034f\u1806\u180b-\u180d\u200c\u200d\u2060\ufe00-\ufe0f\ufeff]/g, '')
    .normalize('NFKC');
  // Prohibited output (controls, private use, surrogates, non-characters): PostgreSQL
  // then uses the raw password bytes.
  // eslint-disable-next-line no-control-regex
  if (mapped === '' || /[\u0000-\u001f\u007f-\u009f\ue000-\uf8ff\ufdd0-\ufdef\ufffe\uffff]/u.test(mapped)) return password;
  return mapped;
}

export type ClientFinal = { message: string; expectedServerSignature: string };

/** client-final-message from the server-first-message; checks the nonce and the iteration count. */
export function clientFinalMessage(state: ScramClientState, serverFirst: string): ClientFinal {
  const a = attributes(serverFirst, 'server-first-message');
  const nonce = a.get('r');
  const saltB64 = a.get('s');
  const iterText = a.get('i');
  if (nonce === undefined || saltB64 === undefined || iterText === undefined) {
    throw new ScramError('malformed SCRAM message (attribute missing in server-first-message)');
  }
  if (!nonce.startsWith(state.clientNonce) || nonce.length <= state.clientNonce.length) {
    throw new ScramError('invalid SCRAM response (nonce mismatch)');
  }
  const iterations = Number(iterText);
  if (!Number.isInteger(iterations) || iterations < 1) throw new ScramError('malformed SCRAM message (invalid iteration count)');
  const salt = Buffer.from(saltB64, 'base64');
  if (salt.length === 0) throw new ScramError('malformed SCRAM message (invalid salt)');

  const cb = state.channelBinding;
  const cbindInput = cb.kind === 'tls-server-end-point'
    ? Buffer.concat([Buffer.from(gs2Header(cb)), cb.certificateHash])
    : Buffer.from(gs2Header(cb));
  const withoutProof = `c=${cbindInput.toString('base64')},r=${nonce}`;
  const authMessage = `${state.clientFirstBare},${serverFirst},${withoutProof}`;
  const salted = crypto.pbkdf2Sync(Buffer.from(saslprep(state.password), 'utf8'), salt, iterations, 32, 'sha256');
  const clientKey = hmac(salted, 'Client Key');
  const proof = xor(clientKey, hmac(sha256(clientKey), authMessage));
  const serverSignature = hmac(hmac(salted, 'Server Key'), authMessage).toString('base64');
  return { message: `${withoutProof},p=${proof.toString('base64')}`, expectedServerSignature: serverSignature };
}

/** server-final-message: "v=<signature>" must match, "e=<error>" is the server refusing. */
export function verifyServerFinal(final: ClientFinal, serverFinal: string): void {
  const a = attributes(serverFinal, 'server-final-message');
  const err = a.get('e');
  if (err !== undefined) throw new ScramError(`error received from server in SCRAM exchange: ${err}`);
  const v = a.get('v');
  if (v === undefined) throw new ScramError('malformed SCRAM message (attribute "v" expected)');
  const got = Buffer.from(v, 'base64');
  const want = Buffer.from(final.expectedServerSignature, 'base64');
  if (got.length !== want.length || !crypto.timingSafeEqual(got, want)) {
    throw new ScramError('incorrect server signature');
  }
}

// Signature algorithms and the hash tls-server-end-point uses for each (RFC 5929 4.1:
// MD5 and SHA-1 become SHA-256), as PostgreSQL's be_tls_get_certificate_hash.
const CERT_HASH_BY_SIG_OID: Record<string, string> = {
  '1.2.840.113549.1.1.4': 'sha256', '1.2.840.113549.1.1.5': 'sha256', '1.2.840.113549.1.1.14': 'sha224',
  '1.2.840.113549.1.1.11': 'sha256', '1.2.840.113549.1.1.12': 'sha384', '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.10045.4.1': 'sha256', '1.2.840.10045.4.3.1': 'sha224', '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384', '1.2.840.10045.4.3.4': 'sha512',
};

/** tls-server-end-point data of the server's certificate, or null if its signature hash is unknown. */
export function tlsServerEndPoint(cert: crypto.X509Certificate): Buffer | null {
  const oid = (cert as crypto.X509Certificate & { signatureAlgorithmOid?: string }).signatureAlgorithmOid;
  const algo = oid ? CERT_HASH_BY_SIG_OID[oid] : undefined;
  if (!algo) return null;
  return crypto.createHash(algo).update(cert.raw).digest();
}
