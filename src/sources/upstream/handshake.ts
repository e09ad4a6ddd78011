// Owns making a connection to the upstream server, as libpq does (fe-connect.c
// PQconnectPoll, fe-auth.c): every host of the list in order, TCP or Unix socket,
// SSLRequest and the TLS upgrade with libpq's sslmode semantics (prefer falls back to
// plaintext, require encrypts, verify-ca checks the chain, verify-full also the host
// name; a root certificate file turns require into verify-ca), the StartupMessage
// (replication=true), authentication (trust, cleartext, md5, SCRAM-SHA-256 and
// SCRAM-SHA-256-PLUS with channel binding), then the session parameters.

import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import {
  parseAuthentication, parseErrorFields, parseParameterStatus, passwordMessage, saslInitialResponse, saslResponse,
  sslRequest, startupMessage,
} from '../../protocol/client.ts';
import { describeTarget, passwordFromPassfile, type ConnParams, type HostTarget } from './conninfo.ts';
import { ConnectError, UpstreamConnection, UpstreamError, type ConnectOptions } from './connection.ts';
import {
  clientFinalMessage, clientFirstMessage, SCRAM_SHA_256, SCRAM_SHA_256_PLUS, tlsServerEndPoint, verifyServerFinal,
  type ChannelBinding, type ClientFinal, type ScramClientState,
} from './scram.ts';

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** Try every host of the connection string in order (libpq's host list); the first that accepts wins. */
export async function connectUpstream(params: ConnParams, opts: ConnectOptions = {}): Promise<UpstreamConnection> {
  const failures: string[] = [];
  let authFailure = false;
  for (const target of params.targets) {
    try {
      return await connectOne(params, target, opts);
    } catch (e) {
      if (e instanceof ConnectError && e.auth) authFailure = true;
      failures.push(`connection to server ${where(target)} failed: ${(e as Error).message}`);
    }
  }
  throw new ConnectError(failures.join('\n'), authFailure);
}

function where(t: HostTarget): string {
  if (t.isSocket) return `on socket "${describeTarget(t)}"`;
  const addr = t.hostaddr && t.hostaddr !== t.host ? ` (${t.hostaddr})` : '';
  return `at "${t.host}"${addr}, port ${t.port}`;
}

async function connectOne(params: ConnParams, target: HostTarget, opts: ConnectOptions): Promise<UpstreamConnection> {
  const timeoutMs = params.connectTimeoutMs || DEFAULT_CONNECT_TIMEOUT_MS;
  const wantSsl = !target.isSocket && params.sslmode !== 'disable' && params.sslmode !== 'allow';
  if (target.isSocket && params.sslmode !== 'disable' && params.sslmode !== 'allow' && params.sslmode !== 'prefer') {
    throw new ConnectError(`sslmode value "${params.sslmode}" is not possible over a Unix-domain socket`);
  }
  const deadline = Date.now() + timeoutMs;
  try {
    return await attempt(params, target, wantSsl, deadline, opts);
  } catch (e) {
    // sslmode=prefer: a failed TLS handshake is retried without TLS, as libpq does.
    if (e instanceof TlsHandshakeError && params.sslmode === 'prefer') return attempt(params, target, false, deadline, opts);
    // And like libpq, an error from the server during startup is retried once the other
    // way: prefer over TLS without it (a hostnossl rule), allow without TLS with it (hostssl).
    if (e instanceof ServerRejection && e.overTls && params.sslmode === 'prefer') return attempt(params, target, false, deadline, opts);
    if (e instanceof ServerRejection && !e.overTls && params.sslmode === 'allow' && !target.isSocket) {
      return attempt(params, target, true, deadline, opts);
    }
    throw e;
  }
}

class TlsHandshakeError extends ConnectError {}

/** An ErrorResponse from the server before the connection was ready. */
class ServerRejection extends ConnectError {
  readonly overTls: boolean;
  constructor(message: string, auth: boolean, overTls: boolean) {
    super(message, auth);
    this.overTls = overTls;
  }
}

async function attempt(params: ConnParams, target: HostTarget, trySsl: boolean, deadline: number,
  opts: ConnectOptions): Promise<UpstreamConnection> {
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
        // allow's second try over TLS ends like prefer when the server has none.
        if (params.sslmode !== 'prefer' && params.sslmode !== 'allow') throw new ConnectError('server does not support SSL, but SSL was required', true);
        pending = answer.subarray(1);
      } else if (answer[0] === 0x45 /* E */) {
        throw new ConnectError('server rejected the SSL request with an error');
      } else {
        throw new ConnectError(`received invalid response to SSL negotiation: ${String.fromCharCode(answer[0]!)}`);
      }
    }
    const conn = new UpstreamConnection(sock, target, tlsInUse, pending);
    try {
      await withDeadline(startup(conn, sock, params, target, opts), deadline, 'timeout expired');
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
      'Either provide the file or change sslmode to disable server certificate verification.', true));
  }
  const cert = readIfExists(params.sslcert);
  const key = cert ? readIfExists(params.sslkey) : undefined;
  const crl = params.sslcrl ? readIfExists(params.sslcrl) : undefined;
  const sni = params.sslsni && net.isIP(target.host) === 0 ? target.host : undefined;
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      socket: raw, ca: verify ? rootCert : undefined, cert, key, crl, servername: sni,
      // Verification is ours (below): verify-ca checks the chain only, verify-full adds the name.
      rejectUnauthorized: false, checkServerIdentity: () => undefined, minVersion: 'TLSv1.2',
    });
    s.once('error', (e) => reject(new TlsHandshakeError(`SSL error: ${e.message}`)));
    s.once('secureConnect', () => {
      s.removeAllListeners('error');
      if (verify && !s.authorized) {
        s.destroy();
        reject(new ConnectError(`SSL error: certificate verify failed: ${String(s.authorizationError)}`, true));
        return;
      }
      if (params.sslmode === 'verify-full') {
        const peer = s.getPeerCertificate();
        const bad = tls.checkServerIdentity(target.host, peer);
        if (bad) {
          s.destroy();
          reject(new ConnectError(`server certificate for "${String(peer.subject?.CN ?? '')}" does not match host name "${target.host}"`, true));
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
  opts: ConnectOptions): Promise<void> {
  const warn = opts.warn ?? (() => {});
  const startupParams: [string, string][] = opts.database !== undefined
    ? [['user', params.user], ['database', opts.database], ['application_name', params.applicationName]]
    : [['user', params.user], ['database', 'replication'], ['replication', 'true'], ['application_name', params.applicationName]];
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
      throw new ServerRejection(`${e.severity}:  ${e.message}`, e.code.startsWith('28'), conn.tlsInUse);
    }
    if (m.type === 'N' || m.type === 'v') continue;
    if (m.type !== 'R') throw new ConnectError(`expected authentication request from server, but received ${m.type}`);
    const { code, data } = parseAuthentication(m.body);
    if (code === 0) {
      // libpq's check_expected_areq: only a completed channel-bound exchange proves the
      // server; AuthenticationOk without one (trust, or SCRAM cut short) is refused.
      if (params.channelBinding === 'require' && !(channelBound && scram?.done)) {
        throw new ConnectError('channel binding required, but server authenticated client without channel binding', true);
      }
      break;
    }
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
