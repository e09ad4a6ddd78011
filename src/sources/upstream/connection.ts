// Owns one replication connection to the upstream server, as libpq makes it
// (fe-connect.c PQconnectPoll, fe-auth.c): TCP or Unix socket, SSLRequest and the
// TLS upgrade with libpq's sslmode semantics (prefer falls back to plaintext,
// require encrypts, verify-ca checks the chain, verify-full also the host name; a
// root certificate file turns require into verify-ca), the StartupMessage with
// replication=true, authentication (trust, cleartext, md5, SCRAM-SHA-256 and -PLUS),
// then simple queries and the COPY-both stream. Server errors surface as
// UpstreamError with the server's fields; everything else as ConnectError.

import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import {
  parseAuthentication, parseCommandComplete, parseDataRow, parseErrorFields, parseParameterStatus,
  parseRowDescription, passwordMessage, query as queryMessage, saslInitialResponse, saslResponse, sslRequest,
  startupMessage, terminate,
} from '../../protocol/client.ts';
import { FrontendReader } from '../../protocol/reader.ts';
import { describeTarget, passwordFromPassfile, type ConnParams, type HostTarget } from './conninfo.ts';
import {
  clientFinalMessage, clientFirstMessage, SCRAM_SHA_256, SCRAM_SHA_256_PLUS, tlsServerEndPoint, verifyServerFinal,
  type ChannelBinding, type ClientFinal, type ScramClientState,
} from './scram.ts';

/** An ErrorResponse from the upstream server. */
export class UpstreamError extends Error {
  readonly severity: string;
  readonly code: string;
  readonly detail: string | undefined;
  constructor(fields: Map<string, string>) {
    super(fields.get('M') ?? 'unknown error');
    this.name = 'UpstreamError';
    this.severity = fields.get('V') ?? fields.get('S') ?? 'ERROR';
    this.code = fields.get('C') ?? 'XX000';
    this.detail = fields.get('D');
  }
}

/** Could not connect, authenticate or talk to the upstream (libpq-style message). */
export class ConnectError extends Error {
  /** Authentication failed or was impossible: retrying with the same settings will not help soon. */
  readonly auth: boolean;
  constructor(message: string, auth = false) {
    super(message);
    this.name = 'ConnectError';
    this.auth = auth;
  }
}

export type BackendMessage = { type: string; body: Buffer };
export type QueryResult = { fields: string[]; rows: (string | null)[][]; tag: string };

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const MAX_MESSAGE = 256 << 20;

/** Consumes CopyData payloads synchronously while streaming; any other message ends the stream. */
export type CopyHandler = { data(payload: Buffer): void; other(m: BackendMessage): void };

export class UpstreamConnection {
  readonly target: HostTarget;
  readonly parameters = new Map<string, string>();
  readonly tlsInUse: boolean;
  private readonly socket: net.Socket;
  private readonly reader = new FrontendReader({ maxMessageLength: MAX_MESSAGE });
  private waiter: (() => void) | null = null;
  private copy: CopyHandler | null = null;
  private closedWith: Error | null = null;
  lastReceiveMs = Date.now();

  /** Use UpstreamConnection.connect(); this wraps a socket that finished SSL negotiation. */
  constructor(socket: net.Socket, target: HostTarget, tlsInUse: boolean, pending: Buffer | null) {
    this.socket = socket;
    this.target = target;
    this.tlsInUse = tlsInUse;
    if (pending && pending.length > 0) this.reader.push(pending);
    socket.on('data', (chunk: Buffer) => {
      this.lastReceiveMs = Date.now();
      this.reader.push(chunk);
      this.pump();
    });
    const closed = (e?: Error): void => {
      if (!this.closedWith) this.closedWith = new ConnectError(e ? `connection to upstream lost: ${e.message}` : 'server closed the connection unexpectedly');
      this.pump();
    };
    socket.on('error', closed);
    socket.on('close', () => closed());
    socket.resume();
  }

  /** Try every host of the connection string in order (libpq's host list); the first that accepts wins. */
  static async connect(params: ConnParams, opts: { warn?: (msg: string) => void } = {}): Promise<UpstreamConnection> {
    const failures: string[] = [];
    let authFailure = false;
    for (const target of params.targets) {
      try {
        return await connectOne(params, target, opts.warn ?? (() => {}));
      } catch (e) {
        if (e instanceof ConnectError && e.auth) authFailure = true;
        failures.push(`connection to server ${where(target)} failed: ${(e as Error).message}`);
      }
    }
    throw new ConnectError(failures.join('\n'), authFailure);
  }

  get serverVersionNum(): number {
    const m = /^(\d+)(?:\.(\d+))?/.exec(this.parameters.get('server_version') ?? '');
    if (!m) return 0;
    const major = Number(m[1]);
    return major >= 10 ? major * 10000 + Number(m[2] ?? 0) : major * 10000 + Number(m[2] ?? 0) * 100;
  }

  get closed(): boolean {
    return this.closedWith !== null;
  }

  write(buf: Buffer): void {
    if (!this.closedWith) this.socket.write(buf);
  }

  /** Next message, waiting for it; throws once the connection is gone. */
  async next(timeoutMs = 0): Promise<BackendMessage> {
    for (;;) {
      const m = this.reader.nextMessage();
      if (m) return m;
      if (this.closedWith) throw this.closedWith;
      await new Promise<void>((resolve, reject) => {
        let timer: NodeJS.Timeout | undefined;
        if (timeoutMs > 0) {
          timer = setTimeout(() => { this.waiter = null; reject(new ConnectError(`no answer from server within ${timeoutMs} ms`)); }, timeoutMs);
        }
        this.waiter = () => { if (timer) clearTimeout(timer); resolve(); };
      });
    }
  }

  private pump(): void {
    if (this.copy) {
      for (;;) {
        const h = this.copy;
        if (!h) break;
        const m = this.reader.nextMessage();
        if (!m) break;
        if (m.type === 'd') h.data(m.body);
        else if (m.type === 'N' || m.type === 'S') continue; // libpq tolerates these inside COPY
        else { this.copy = null; h.other(m); }
      }
      if (this.copy && this.closedWith) {
        const h = this.copy;
        this.copy = null;
        h.other({ type: '\0', body: Buffer.alloc(0) });
      }
      return;
    }
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /** Deliver CopyData synchronously as it arrives (null: back to awaited messages). */
  setCopyHandler(h: CopyHandler | null): void {
    this.copy = h;
    if (h) this.pump();
  }

  /** Simple query; collects one result set. Throws UpstreamError on ErrorResponse (after ReadyForQuery). */
  async query(sql: string, timeoutMs = 30_000): Promise<QueryResult> {
    this.write(queryMessage(sql));
    const results = await this.readResults(timeoutMs);
    return results[0] ?? { fields: [], rows: [], tag: '' };
  }

  /** Results up to ReadyForQuery; the first result set may already have started (fields given). */
  async readResults(timeoutMs = 30_000, fields: string[] | null = null): Promise<QueryResult[]> {
    const results: QueryResult[] = [];
    let cur: QueryResult | null = fields ? { fields, rows: [], tag: '' } : null;
    let error: UpstreamError | null = null;
    for (;;) {
      const m = await this.next(timeoutMs);
      switch (m.type) {
        case 'T': cur = { fields: parseRowDescription(m.body).map((f) => f.name), rows: [], tag: '' }; break;
        case 'D': (cur ??= { fields: [], rows: [], tag: '' }).rows.push(parseDataRow(m.body).map((v) => (v === null ? null : v.toString('utf8')))); break;
        case 'C': (cur ??= { fields: [], rows: [], tag: '' }).tag = parseCommandComplete(m.body); results.push(cur); cur = null; break;
        case 'E': error = new UpstreamError(parseErrorFields(m.body)); if (error.severity === 'FATAL') throw error; break;
        case 'Z': if (error) throw error; return results;
        case 'I': case 'N': case 'S': break;
        case 'W': throw new ConnectError('unexpected CopyBothResponse');
        default: throw new ConnectError(`unexpected message type "${m.type}" from server`);
      }
    }
  }

  /**
   * Send a START_REPLICATION. 'copy' once CopyBothResponse arrived; 'results' when the
   * server skipped COPY (start exactly at the end of a historic timeline).
   */
  async startCopy(sql: string, timeoutMs = 30_000): Promise<{ kind: 'copy' } | { kind: 'results'; results: QueryResult[] }> {
    this.write(queryMessage(sql));
    for (;;) {
      const m = await this.next(timeoutMs);
      if (m.type === 'W') return { kind: 'copy' };
      if (m.type === 'N' || m.type === 'S') continue;
      if (m.type === 'E') {
        const e = new UpstreamError(parseErrorFields(m.body));
        if (e.severity !== 'FATAL') await this.readResults(timeoutMs).catch(() => {});
        throw e;
      }
      if (m.type === 'T') {
        return { kind: 'results', results: await this.readResults(timeoutMs, parseRowDescription(m.body).map((f) => f.name)) };
      }
      throw new ConnectError(`unexpected message type "${m.type}" in answer to START_REPLICATION`);
    }
  }

  /** Close politely (Terminate), then the socket. */
  close(): void {
    if (!this.closedWith) {
      try { this.socket.write(terminate()); } catch { /* closing anyway */ }
      this.closedWith = new ConnectError('connection closed');
    }
    this.socket.end();
    this.socket.destroy();
  }
}

function where(t: HostTarget): string {
  if (t.isSocket) return `on socket "${describeTarget(t)}"`;
  const addr = t.hostaddr && t.hostaddr !== t.host ? ` (${t.hostaddr})` : '';
  return `at "${t.host}"${addr}, port ${t.port}`;
}

async function connectOne(params: ConnParams, target: HostTarget, warn: (msg: string) => void): Promise<UpstreamConnection> {
  const timeoutMs = params.connectTimeoutMs || DEFAULT_CONNECT_TIMEOUT_MS;
  const wantSsl = !target.isSocket && params.sslmode !== 'disable' && params.sslmode !== 'allow';
  if (target.isSocket && params.sslmode !== 'disable' && params.sslmode !== 'allow' && params.sslmode !== 'prefer') {
    throw new ConnectError(`sslmode value "${params.sslmode}" is not possible over a Unix-domain socket`);
  }
  const deadline = Date.now() + timeoutMs;
  try {
    return await attempt(params, target, wantSsl, deadline, warn);
  } catch (e) {
    // sslmode=prefer: a failed TLS handshake is retried without TLS, as libpq does.
    if (e instanceof TlsHandshakeError && params.sslmode === 'prefer') return attempt(params, target, false, deadline, warn);
    throw e;
  }
}

class TlsHandshakeError extends ConnectError {}

async function attempt(params: ConnParams, target: HostTarget, trySsl: boolean, deadline: number,
  warn: (msg: string) => void): Promise<UpstreamConnection> {
  const raw = await withDeadline(openSocket(target), deadline, 'timeout expired', (s) => s.destroy());
  let sock: net.Socket = raw;
  let tlsInUse = false;
  let pending: Buffer | null = null;
  try {
    if (trySsl) {
      raw.write(sslRequest());
      const answer = await withDeadline(readFirstChunk(raw), deadline, 'timeout expired');
      if (answer[0] === 0x53 /* S */) {
        if (answer.length > 1) throw new ConnectError('received unencrypted data after SSL response');
        sock = await withDeadline(startTls(raw, params, target), deadline, 'timeout expired during SSL handshake');
        tlsInUse = true;
      } else if (answer[0] === 0x4e /* N */) {
        if (params.sslmode !== 'prefer') throw new ConnectError('server does not support SSL, but SSL was required');
        pending = answer.subarray(1);
      } else if (answer[0] === 0x45 /* E */) {
        throw new ConnectError('server rejected the SSL request with an error');
      } else {
        throw new ConnectError(`received invalid response to SSL negotiation: ${String.fromCharCode(answer[0]!)}`);
      }
    }
    const conn = new UpstreamConnection(sock, target, tlsInUse, pending);
    try {
      await withDeadline(startup(conn, sock, params, target, warn), deadline, 'timeout expired');
    } catch (e) {
      conn.close();
      throw e;
    }
    return conn;
  } catch (e) {
    sock.destroy();
    raw.destroy();
    throw e;
  }
}

function openSocket(target: HostTarget): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = target.isSocket
      ? net.connect({ path: describeTarget(target) })
      : net.connect({ host: target.hostaddr ?? target.host, port: target.port });
    s.setNoDelay(true);
    s.once('connect', () => { s.off('error', reject); s.pause(); resolve(s); });
    s.once('error', (e) => reject(new ConnectError(`could not connect: ${e.message}`)));
  });
}

function readFirstChunk(s: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer): void => { cleanup(); s.pause(); resolve(d); };
    const onEnd = (): void => { cleanup(); reject(new ConnectError('server closed the connection unexpectedly')); };
    const onError = (e: Error): void => { cleanup(); reject(new ConnectError(e.message)); };
    const cleanup = (): void => { s.off('data', onData); s.off('end', onEnd); s.off('error', onError); };
    s.on('data', onData);
    s.once('end', onEnd);
    s.once('error', onError);
    s.resume();
  });
}

function readIfExists(file: string): Buffer | undefined {
  try {
    return fs.readFileSync(file);
  } catch {
    return undefined;
  }
}

/** The TLS upgrade with libpq's verification rules; verification is done here to give libpq's messages. */
function startTls(raw: net.Socket, params: ConnParams, target: HostTarget): Promise<tls.TLSSocket> {
  const rootCert = readIfExists(params.sslrootcert);
  const verify = params.sslmode === 'verify-ca' || params.sslmode === 'verify-full' || (params.sslmode === 'require' && rootCert !== undefined);
  if (verify && rootCert === undefined) {
    return Promise.reject(new ConnectError(`root certificate file "${params.sslrootcert}" does not exist\n` +
      'Either provide the file or change sslmode to disable server certificate verification.'));
  }
  const cert = readIfExists(params.sslcert);
  const key = cert ? readIfExists(params.sslkey) : undefined;
  const crl = params.sslcrl ? readIfExists(params.sslcrl) : undefined;
  const sni = params.sslsni && net.isIP(target.host) === 0 ? target.host : undefined;
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      socket: raw, ca: verify ? rootCert : undefined, cert, key, crl, servername: sni,
      rejectUnauthorized: false, minVersion: 'TLSv1.2',
    });
    s.once('error', (e) => reject(new TlsHandshakeError(`SSL error: ${e.message}`)));
    s.once('secureConnect', () => {
      s.removeAllListeners('error');
      if (verify && !s.authorized) {
        s.destroy();
        reject(new ConnectError(`SSL error: certificate verify failed: ${String(s.authorizationError)}`));
        return;
      }
      if (params.sslmode === 'verify-full') {
        const peer = s.getPeerCertificate();
        const bad = tls.checkServerIdentity(target.host, peer);
        if (bad) {
          s.destroy();
          reject(new ConnectError(`server certificate for "${String(peer.subject?.CN ?? '')}" does not match host name "${target.host}"`));
          return;
        }
      }
      s.pause();
      resolve(s);
    });
  });
}

/** The md5 PasswordMessage: "md5" + md5(md5(password + user) + salt), hex. */
export function md5Password(password: string, user: string, salt: Buffer): string {
  const inner = crypto.createHash('md5').update(password + user).digest('hex');
  return `md5${crypto.createHash('md5').update(Buffer.concat([Buffer.from(inner), salt])).digest('hex')}`;
}

/** StartupMessage, the authentication exchange, then parameters until ReadyForQuery. */
async function startup(conn: UpstreamConnection, sock: net.Socket, params: ConnParams, target: HostTarget,
  warn: (msg: string) => void): Promise<void> {
  const startupParams: [string, string][] = [
    ['user', params.user], ['database', 'replication'], ['replication', 'true'],
    ['application_name', params.applicationName],
  ];
  if (params.options) startupParams.push(['options', params.options]);
  conn.write(startupMessage(startupParams));
  let password: string | null | undefined;
  const needPassword = (): string => {
    if (password === undefined) password = params.password ?? passwordFromPassfile(params.passfile, target, params.user, warn);
    if (password === null || password === '') throw new ConnectError('fe_sendauth: no password supplied', true);
    return password;
  };
  let scram: { state: ScramClientState; final: ClientFinal | null; done: boolean } | null = null;
  let channelBound = false;
  for (;;) {
    const m = await conn.next();
    if (m.type === 'E') {
      const e = new UpstreamError(parseErrorFields(m.body));
      throw new ConnectError(`${e.severity}:  ${e.message}`, e.code.startsWith('28'));
    }
    if (m.type === 'N' || m.type === 'v') continue;
    if (m.type !== 'R') throw new ConnectError(`expected authentication request from server, but received ${m.type}`);
    const { code, data } = parseAuthentication(m.body);
    if (code === 0) break;
    if (params.channelBinding === 'require' && code !== 10 && code !== 11 && code !== 12) {
      throw new ConnectError('channel binding required, but server authenticated client without channel binding', true);
    }
    switch (code) {
      case 3: conn.write(passwordMessage(needPassword())); break;
      case 5: conn.write(passwordMessage(md5Password(needPassword(), params.user, data.subarray(0, 4)))); break;
      case 10: {
        const mechanisms = data.toString('utf8').split('\0').filter((s) => s !== '');
        let cb: ChannelBinding = { kind: 'none' };
        let mech = SCRAM_SHA_256;
        if (conn.tlsInUse && params.channelBinding !== 'disable') {
          const hash = mechanisms.includes(SCRAM_SHA_256_PLUS)
            ? tlsServerEndPoint((sock as tls.TLSSocket).getPeerX509Certificate()!) : null;
          if (hash) {
            cb = { kind: 'tls-server-end-point', certificateHash: hash };
            mech = SCRAM_SHA_256_PLUS;
            channelBound = true;
          } else if (!mechanisms.includes(SCRAM_SHA_256_PLUS)) {
            cb = { kind: 'unused' };
          }
        }
        if (params.channelBinding === 'require' && !channelBound) {
          throw new ConnectError('channel binding is required, but server did not offer an authentication method that supports channel binding', true);
        }
        if (!mechanisms.includes(mech)) {
          throw new ConnectError(`none of the server's SASL authentication mechanisms are supported (${mechanisms.join(', ')})`, true);
        }
        const first = clientFirstMessage(needPassword(), cb);
        scram = { state: first.state, final: null, done: false };
        conn.write(saslInitialResponse(mech, Buffer.from(first.message)));
        break;
      }
      case 11:
        if (!scram || scram.final) throw new ConnectError('unexpected SASL continue message');
        scram.final = clientFinalMessage(scram.state, data.toString('utf8'));
        conn.write(saslResponse(Buffer.from(scram.final.message)));
        break;
      case 12:
        if (!scram?.final) throw new ConnectError('unexpected SASL final message');
        verifyServerFinal(scram.final, data.toString('utf8'));
        scram.done = true;
        break;
      default:
        throw new ConnectError(`authentication method ${code} not supported`, true);
    }
  }
  if (scram && !scram.done) throw new ConnectError('server did not complete SCRAM authentication', true);
  for (;;) {
    const m = await conn.next();
    if (m.type === 'S') {
      const p = parseParameterStatus(m.body);
      conn.parameters.set(p.name, p.value);
    } else if (m.type === 'E') {
      const e = new UpstreamError(parseErrorFields(m.body));
      throw new ConnectError(`${e.severity}:  ${e.message}`, e.code.startsWith('28') || e.code === '42501');
    } else if (m.type === 'Z') {
      return;
    }
    // K (BackendKeyData), N (notices): nothing to keep.
  }
}

function withDeadline<T>(p: Promise<T>, deadline: number, message: string, onLate?: (v: T) => void): Promise<T> {
  const ms = deadline - Date.now();
  if (ms <= 0) return Promise.reject(new ConnectError(message));
  let timer: NodeJS.Timeout | undefined;
  let late = false;
  return Promise.race([
    p.then((v) => { if (late) onLate?.(v); return v; }),
    new Promise<T>((_, reject) => { timer = setTimeout(() => { late = true; reject(new ConnectError(message)); }, ms); }),
  ]).finally(() => clearTimeout(timer));
}
