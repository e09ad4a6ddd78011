// Owns the authentication material (parsed hba file, users file, TLS certificate)
// and how it reaches the sender threads. The main thread loads it once at startup
// (a bad file stops the server, as PostgreSQL refuses to start with a broken
// pg_hba.conf) and again on SIGHUP to validate it; only a valid set bumps a
// generation counter in a small SharedArrayBuffer. Each sender thread re-reads the
// files when it sees a new generation at its next connection, so new connections
// use the new material and established ones are untouched. If a thread's re-read
// fails (file changed again in between), it keeps what it had. It also owns the
// mock authentication nonce, kept in the data directory like PostgreSQL's in
// pg_control.

import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log.ts';
import { AuthConfigError } from './conf-lines.ts';
import { parseHba, type HbaLine } from './hba.ts';
import { loadTls, type TlsMaterial } from './tls.ts';
import { parseUsers, type UserDb } from './users.ts';

export type AuthPaths = {
  hbaFile: string | null;
  usersFile: string | null;
  sslCertFile: string | null;
  sslKeyFile: string | null;
  /** pg-walsender's data directory, where the mock authentication nonce is kept; null: one per process. */
  dataDir: string | null;
};

export type AuthMaterial = {
  /** null: no hba file configured. */
  hba: HbaLine[] | null;
  /** null: no users file configured (any user name is accepted by trust lines). */
  users: UserDb | null;
  /** null: no certificate configured; SSLRequest is answered 'N'. */
  tls: TlsMaterial | null;
  /**
   * Secret that keys the mock SCRAM salt of unknown users, like PostgreSQL's
   * mock_authentication_nonce in pg_control: random once, then the same on every
   * thread, across reloads and restarts. (Were it to change when the users file
   * does, an unknown user's salt would change while a real user's stays, telling
   * them apart.)
   */
  mockNonce: Buffer;
};

export type AuthWorkerData = { sab: SharedArrayBuffer; paths: AuthPaths; mockNonce: string };

export const MOCK_NONCE_FILE = 'mock_authentication_nonce';
const MOCK_NONCE_LEN = 32;

/** Reads the data directory's mock nonce, creating it on first start; throws Error when it cannot. */
export function mockAuthenticationNonce(dataDir: string | null): Buffer {
  if (dataDir === null) return randomBytes(MOCK_NONCE_LEN);
  const file = path.join(dataDir, MOCK_NONCE_FILE);
  const parse = (text: string): Buffer => {
    if (!/^[0-9a-f]{64}\n?$/.test(text)) throw new Error(`invalid mock authentication nonce in "${file}" (expected 64 hex digits; remove the file to make a new one)`);
    return Buffer.from(text.slice(0, 64), 'hex');
  };
  try {
    return parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp.${process.pid}`;
  fs.writeFileSync(tmp, `${randomBytes(MOCK_NONCE_LEN).toString('hex')}\n`, { mode: 0o600, flush: true });
  try {
    fs.linkSync(tmp, file); // never replaces a nonce another process just wrote
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  return parse(fs.readFileSync(file, 'utf8'));
}

const GENERATION = 0;
const TIMEOUT_MS = 1;

/** True when neither an hba nor a users file is configured: every client is trusted. */
export const authenticationOff = (m: AuthMaterial): boolean => m.hba === null && m.users === null;

function readText(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new AuthConfigError(`could not open ${what}: ${code === 'ENOENT' ? 'No such file or directory' : (e as Error).message}`, file);
  }
}

/** Reads every configured file; throws Error (AuthConfigError for the text files) on the first problem. */
export function loadAuthMaterial(p: AuthPaths, mockNonce: Buffer): AuthMaterial {
  const usersText = p.usersFile ? readText(p.usersFile, 'users file') : '';
  const users = p.usersFile ? parseUsers(usersText, p.usersFile) : null;
  const hba = p.hbaFile ? parseHba(readText(p.hbaFile, 'hba file'), p.hbaFile) : null;
  const tls = p.sslCertFile && p.sslKeyFile ? loadTls(p.sslCertFile, p.sslKeyFile) : null;
  return { hba, users, tls, mockNonce };
}

function describe(m: AuthMaterial): Record<string, unknown> {
  return {
    hbaLines: m.hba?.length ?? null, users: m.users?.size ?? null,
    tls: m.tls ? { subject: m.tls.subject, validTo: m.tls.validTo, channelBinding: m.tls.certificateHash !== null } : null,
  };
}

/** Main thread: validates the material and tells the sender threads when to re-read it. */
export class AuthControl {
  private readonly i32: Int32Array;
  readonly paths: AuthPaths;
  private readonly log: Logger;
  private readonly mockNonce: Buffer;

  /** Throws when a configured file is missing or invalid: the server must not start with it. */
  constructor(paths: AuthPaths, authenticationTimeoutMs: number, log: Logger) {
    this.paths = paths;
    this.log = log;
    this.i32 = new Int32Array(new SharedArrayBuffer(8));
    Atomics.store(this.i32, TIMEOUT_MS, authenticationTimeoutMs);
    this.mockNonce = mockAuthenticationNonce(paths.dataDir);
    const m = loadAuthMaterial(paths, this.mockNonce);
    if (authenticationOff(m)) {
      log.warn('authentication is off: every client may stream WAL as any user (set hba_file and users_file to require passwords)');
    } else if (m.hba === null) {
      log.info('no hba_file: every connection must authenticate with scram-sha-256');
    }
    if (m.tls === null && m.hba?.some((l) => l.connType === 'hostssl')) {
      log.warn({ file: paths.hbaFile }, 'hostssl lines cannot match: TLS is off (set ssl_cert_file and ssl_key_file)');
    }
    if (m.tls?.certificateHash === null) {
      log.warn({ file: paths.sslCertFile }, 'cannot determine the certificate signature hash: SCRAM-SHA-256-PLUS (channel binding) is not offered');
    }
    log.info(describe(m), 'authentication material loaded');
  }

  workerData(): AuthWorkerData {
    return { sab: this.i32.buffer as SharedArrayBuffer, paths: this.paths, mockNonce: this.mockNonce.toString('hex') };
  }

  /** SIGHUP: re-validate the files; the threads pick them up only if all are valid. */
  reload(authenticationTimeoutMs: number): void {
    Atomics.store(this.i32, TIMEOUT_MS, authenticationTimeoutMs);
    try {
      const m = loadAuthMaterial(this.paths, this.mockNonce);
      Atomics.add(this.i32, GENERATION, 1);
      Atomics.notify(this.i32, GENERATION); // every sender thread re-reads now (AuthCache.follow)
      this.log.info(describe(m), 'authentication material reloaded');
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'authentication files were not reloaded; the previous ones stay in use');
    }
  }
}

/** Sender thread: the current material, re-read when the generation moved. */
export class AuthCache {
  private readonly i32: Int32Array;
  private readonly paths: AuthPaths;
  private readonly mockNonce: Buffer;
  private readonly log: Logger;
  private generation = -1;
  private material: AuthMaterial | null = null;

  constructor(data: AuthWorkerData, log: Logger) {
    this.i32 = new Int32Array(data.sab);
    this.paths = data.paths;
    this.mockNonce = Buffer.from(data.mockNonce, 'hex');
    this.log = log;
    this.follow();
  }

  /**
   * Re-read as soon as the main thread publishes a reload, not at this thread's next
   * connection: by then the files may have changed again (even to a broken state the
   * main thread refused), and this thread would miss the reload it validated.
   */
  private follow(): void {
    const r = Atomics.waitAsync(this.i32, GENERATION, Atomics.load(this.i32, GENERATION));
    const next = (): void => {
      this.current();
      this.follow();
    };
    if (r.async) void r.value.then(next);
    else queueMicrotask(next);
  }

  current(): AuthMaterial {
    const gen = Atomics.load(this.i32, GENERATION);
    if (gen !== this.generation || this.material === null) {
      try {
        this.material = loadAuthMaterial(this.paths, this.mockNonce);
      } catch (e) {
        this.log.error({ err: (e as Error).message }, 'could not re-read authentication files; keeping the previous ones');
        // Never fail open: without any valid material, nobody gets in.
        this.material ??= { hba: [], users: new Map(), tls: null, mockNonce: this.mockNonce };
      }
      this.generation = gen;
    }
    return this.material;
  }

  timeoutMs(): number {
    return Atomics.load(this.i32, TIMEOUT_MS);
  }
}
