// Owns the authentication material (parsed hba file, users file, TLS certificate)
// and how it reaches the sender threads. The main thread loads it once at startup
// (a bad file stops the server, as PostgreSQL refuses to start with a broken
// pg_hba.conf) and again on SIGHUP to validate it; only a valid set bumps a
// generation counter in a small SharedArrayBuffer. Each sender thread re-reads the
// files when it sees a new generation at its next connection, so new connections
// use the new material and established ones are untouched. If a thread's re-read
// fails (file changed again in between), it keeps what it had.

import { createHash } from 'node:crypto';
import fs from 'node:fs';
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
};

export type AuthMaterial = {
  /** null: no hba file configured. */
  hba: HbaLine[] | null;
  /** null: no users file configured (any user name is accepted by trust lines). */
  users: UserDb | null;
  /** null: no certificate configured; SSLRequest is answered 'N'. */
  tls: TlsMaterial | null;
  /**
   * Secret that keys the mock SCRAM salt of unknown users. Derived from the users
   * file (itself secret: it holds the verifiers), so it is the same on every thread
   * and across restarts, like PostgreSQL's mock_authentication_nonce in pg_control.
   */
  mockNonce: Buffer;
};

export type AuthWorkerData = { sab: SharedArrayBuffer; paths: AuthPaths };

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
export function loadAuthMaterial(p: AuthPaths): AuthMaterial {
  const usersText = p.usersFile ? readText(p.usersFile, 'users file') : '';
  const users = p.usersFile ? parseUsers(usersText, p.usersFile) : null;
  const hba = p.hbaFile ? parseHba(readText(p.hbaFile, 'hba file'), p.hbaFile) : null;
  const tls = p.sslCertFile && p.sslKeyFile ? loadTls(p.sslCertFile, p.sslKeyFile) : null;
  const mockNonce = createHash('sha256').update('pg-walsender mock authentication nonce\0').update(usersText).digest();
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

  /** Throws when a configured file is missing or invalid: the server must not start with it. */
  constructor(paths: AuthPaths, authenticationTimeoutMs: number, log: Logger) {
    this.paths = paths;
    this.log = log;
    this.i32 = new Int32Array(new SharedArrayBuffer(8));
    Atomics.store(this.i32, TIMEOUT_MS, authenticationTimeoutMs);
    const m = loadAuthMaterial(paths);
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
    return { sab: this.i32.buffer as SharedArrayBuffer, paths: this.paths };
  }

  /** SIGHUP: re-validate the files; the threads pick them up only if all are valid. */
  reload(authenticationTimeoutMs: number): void {
    Atomics.store(this.i32, TIMEOUT_MS, authenticationTimeoutMs);
    try {
      const m = loadAuthMaterial(this.paths);
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
  private readonly log: Logger;
  private generation = -1;
  private material: AuthMaterial | null = null;

  constructor(data: AuthWorkerData, log: Logger) {
    this.i32 = new Int32Array(data.sab);
    this.paths = data.paths;
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
        this.material = loadAuthMaterial(this.paths);
      } catch (e) {
        this.log.error({ err: (e as Error).message }, 'could not re-read authentication files; keeping the previous ones');
        // Never fail open: without any valid material, nobody gets in.
        this.material ??= { hba: [], users: new Map(), tls: null, mockNonce: Buffer.alloc(32) };
      }
      this.generation = gen;
    }
    return this.material;
  }

  timeoutMs(): number {
    return Atomics.load(this.i32, TIMEOUT_MS);
  }
}
