// Owns PostgreSQL's md5 password scheme (common/md5_common.c, libpq/crypt.c): the
// stored verifier "md5" + hex(md5(password || username)), the salted challenge
// response "md5" + hex(md5(hex-part-of-verifier || salt)), and checking a
// cleartext password (the "password" method) against either kind of verifier.

import { createHash, timingSafeEqual } from 'node:crypto';
import { parseScramSecret, scramVerifyPlainPassword } from './scram.ts';

const md5hex = (...parts: (string | Buffer)[]): string => {
  const h = createHash('md5');
  for (const p of parts) h.update(p);
  return h.digest('hex');
};

export function isMd5Verifier(s: string): boolean {
  return /^md5[0-9a-f]{32}$/.test(s);
}

/** pg_md5_encrypt(password, username): what CREATE ROLE stores with password_encryption=md5. */
/** pg_md5_encrypt; the password as text (encoded as UTF-8) or as the client's bytes. */
export function md5Verifier(password: string | Buffer, user: string): string {
  const bytes = typeof password === 'string' ? Buffer.from(password, 'utf8') : password;
  return `md5${md5hex(bytes, Buffer.from(user, 'utf8'))}`;
}

/** What the client must answer to AuthenticationMD5Password with this salt. */
export function md5Response(verifier: string, salt: Buffer): string {
  return `md5${md5hex(Buffer.from(verifier.slice(3), 'latin1'), salt)}`;
}

function equalStrings(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

/** md5_crypt_verify: the client's answer to our salt, against an md5 verifier. */
export function md5VerifyResponse(verifier: string, salt: Buffer, response: string): boolean {
  if (!isMd5Verifier(verifier)) return false; // a SCRAM secret cannot answer an md5 challenge
  return equalStrings(md5Response(verifier, salt), response);
}

/**
 * plain_crypt_verify: a cleartext password against an md5 or SCRAM verifier. The
 * password as the client sent it (bytes) or as text (encoded as UTF-8).
 */
export async function verifyPlainPassword(user: string, verifier: string, password: string | Buffer): Promise<boolean> {
  if (isMd5Verifier(verifier)) return equalStrings(md5Verifier(password, user), verifier);
  const secret = parseScramSecret(verifier);
  return secret !== null && await scramVerifyPlainPassword(password, secret);
}
