// Owns one connection's authentication, PostgreSQL's ClientAuthentication plus the
// role checks of InitPostgres: choose the hba line (or the implicit rule), run the
// method's exchange over the connection (trust, reject, password, md5,
// scram-sha-256 with -PLUS over TLS), send AuthenticationOk, then refuse a role
// that does not exist (28000) or may not replicate (42501), after the Ok as
// PostgreSQL does. Errors are FATAL PgErrors with PostgreSQL's texts.

import { randomBytes } from 'node:crypto';
import type { Logger } from '../log.ts';
import {
  authenticationCleartextPassword, authenticationMD5Password, authenticationOk, authenticationSASL,
  authenticationSASLContinue, authenticationSASLFinal,
} from '../protocol/backend.ts';
import { PgError } from '../protocol/errors.ts';
import {
  MessageCursor, PG_MAX_AUTH_TOKEN_LENGTH, PG_MAX_SASL_MESSAGE_LENGTH, parsePasswordPacket, parsePasswordPacketBytes,
} from '../protocol/frontend.ts';
import { matchHba, type HbaMethod } from './hba.ts';
import { normalizeClientAddr } from './inet.ts';
import { authenticationOff, type AuthMaterial } from './material.ts';
import { isMd5Verifier, md5VerifyResponse, verifyPlainPassword } from './md5.ts';
import { parseScramSecret, ScramExchange, SCRAM_SHA_256, SCRAM_SHA_256_PLUS } from './scram.ts';
import type { UserEntry } from './users.ts';

/** What authentication needs of the connection (ClientConnection provides it). */
export type AuthConnection = {
  write(buf: Buffer): unknown;
  nextMessage(): Promise<{ type: string; body: Buffer } | null>;
  reader: { lengthLimit: ((type: string) => number) | undefined };
};

export type AuthRequest = { user: string; clientAddr: string; ssl: boolean; connId: number };

export type AuthOutcome = {
  /** The users-file entry, or null when no users file is configured. */
  role: UserEntry | null;
  method: HbaMethod;
  /** The hba line that matched, or null for the implicit rule. */
  hbaLine: number | null;
};

const passwordFailed = (user: string): PgError =>
  new PgError('FATAL', '28P01', `password authentication failed for user "${user}"`);

/**
 * Authenticates; resolves after AuthenticationOk was sent, or to null when the
 * client went away mid-exchange (libpq does that when it has no password: it
 * closes, asks the user, and reconnects), which is not worth an error.
 */
export async function authenticate(conn: AuthConnection, m: AuthMaterial, req: AuthRequest,
  log: Logger): Promise<AuthOutcome | null> {
  const addr = normalizeClientAddr(req.clientAddr);
  const encryption = req.ssl ? 'SSL encryption' : 'no encryption';
  let method: HbaMethod;
  let hbaLine: number | null = null;
  if (authenticationOff(m)) {
    method = 'trust';
  } else if (m.hba === null) {
    method = 'scram-sha-256'; // users file without an hba file: passwords for everyone
  } else {
    const line = matchHba(m.hba, { addr, user: req.user, ssl: req.ssl });
    if (!line) {
      throw new PgError('FATAL', '28000',
        `no pg_hba.conf entry for replication connection from host "${addr}", user "${req.user}", ${encryption}`);
    }
    method = line.method;
    hbaLine = line.line;
  }
  if (method === 'reject') {
    throw new PgError('FATAL', '28000',
      `pg_hba.conf rejects replication connection for host "${addr}", user "${req.user}", ${encryption}`);
  }
  const role = m.users?.get(req.user) ?? null;
  let ok: boolean | null = true;
  if (method === 'password') ok = await passwordAuth(conn, req.user, role);
  else if (method === 'md5' && role?.verifier && isMd5Verifier(role.verifier)) ok = await md5Auth(conn, role.verifier);
  // scram-sha-256, and md5 for a SCRAM secret or an unknown user (PostgreSQL's
  // password_encryption default is scram-sha-256, so a mock SCRAM exchange blends in).
  else if (method !== 'trust') ok = await scramAuth(conn, m, req, role);
  if (ok === null) return null;
  if (!ok) {
    log.info({ connId: req.connId, user: req.user, method, hbaLine }, 'password authentication failed');
    throw passwordFailed(req.user);
  }
  conn.write(authenticationOk());
  if (m.users !== null) {
    if (role === null) throw new PgError('FATAL', '28000', `role "${req.user}" does not exist`);
    if (!role.replication && !role.superuser) {
      throw new PgError('FATAL', '42501', 'must be superuser or replication role to start walsender');
    }
  }
  return { role, method, hbaLine };
}

/** The next 'p' message with auth.c's limits, or null when the client closed. */
async function readResponse(conn: AuthConnection, kind: 'password' | 'SASL'): Promise<Buffer | null> {
  const prev = conn.reader.lengthLimit;
  conn.reader.lengthLimit = (type) => {
    if (type !== 'p') {
      throw new PgError('FATAL', '08P01', `expected ${kind} response, got message type ${type.charCodeAt(0)}`);
    }
    return kind === 'SASL' ? PG_MAX_SASL_MESSAGE_LENGTH : PG_MAX_AUTH_TOKEN_LENGTH;
  };
  try {
    const msg = await conn.nextMessage();
    return msg ? msg.body : null;
  } finally {
    conn.reader.lengthLimit = prev;
  }
}

/** CheckPasswordAuth: a cleartext password, checked against an md5 or SCRAM verifier. */
async function passwordAuth(conn: AuthConnection, user: string, role: UserEntry | null): Promise<boolean | null> {
  conn.write(authenticationCleartextPassword());
  const body = await readResponse(conn, 'password');
  if (body === null) return null;
  const password = parsePasswordPacketBytes(body);
  return role?.verifier ? verifyPlainPassword(user, role.verifier, password) : false;
}

/** CheckMD5Auth: a salted challenge against the stored md5 verifier. */
async function md5Auth(conn: AuthConnection, verifier: string): Promise<boolean | null> {
  const salt = randomBytes(4);
  conn.write(authenticationMD5Password(salt));
  const body = await readResponse(conn, 'password');
  if (body === null) return null;
  return md5VerifyResponse(verifier, salt, parsePasswordPacket(body));
}

/** CheckSASLAuth with the SCRAM mechanism; a mock (doomed) exchange without a SCRAM secret. */
async function scramAuth(conn: AuthConnection, m: AuthMaterial, req: AuthRequest, role: UserEntry | null): Promise<boolean | null> {
  const cbHash = req.ssl ? (m.tls?.certificateHash ?? null) : null;
  conn.write(authenticationSASL(cbHash ? [SCRAM_SHA_256_PLUS, SCRAM_SHA_256] : [SCRAM_SHA_256]));
  const first = await readResponse(conn, 'SASL');
  if (first === null) return null;
  // SASLInitialResponse, read in auth-sasl.c's order: mechanism, then init, then data.
  const c = new MessageCursor(first, 'FATAL');
  const mechanism = c.rawCString().toString('latin1');
  const secret = role?.verifier ? parseScramSecret(role.verifier) : null;
  const exchange = new ScramExchange({ mechanism, secret, user: req.user, certificateHash: cbHash, mockNonce: m.mockNonce });
  const len = c.int32();
  let input: Buffer | null = len === -1 ? null : c.bytes(len);
  c.end();
  for (;;) {
    const r = exchange.step(input);
    if (r.kind === 'failure') return false;
    if (r.kind === 'success') {
      conn.write(authenticationSASLFinal(r.output));
      return true;
    }
    conn.write(authenticationSASLContinue(r.output));
    input = await readResponse(conn, 'SASL');
    if (input === null) return null;
  }
}
