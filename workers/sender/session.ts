// One replication connection from its first byte to its close: the startup packet
// exchange (SSLRequest answered 'S' and TLS started when a certificate is configured,
// otherwise 'N'; GSSENCRequest 'N'; StartupMessage with replication=true), claiming a
// WalSnd slot, authentication (src/auth), the session parameters, then the command
// loop (simple Query only, with output backpressure), handing START_REPLICATION to
// streaming.ts.

import { authenticate } from '../../src/auth/authenticate.ts';
import type { AuthMaterial } from '../../src/auth/material.ts';
import {
  backendKeyData, parameterStatus, readyForQuery, SSL_ACCEPTED, SSL_REFUSED,
} from '../../src/protocol/backend.ts';
import { PgError } from '../../src/protocol/errors.ts';
import { parseQuery, replicationMode, unencryptedDataAfterRequest } from '../../src/protocol/frontend.ts';
import { formatLsn, pgNow } from '../../src/protocol/lsn.ts';
import {
  countAuthFailure, countConnectionAccepted, countConnectionRefused, shutdownMode, storeIdentity,
} from '../../src/shmem/control.ts';
import { ShutdownMode, type RefusalReason } from '../../src/shmem/layout.ts';
import { claimWalSnd, readWalSnd, releaseWalSnd, terminateRequested } from '../../src/shmem/walsnd.ts';
import { majorVersionFromMagic } from '../../src/wal/page.ts';
import type { ClientConnection } from './client.ts';
import { executeCommand } from './commands.ts';
import { dropTemporarySlots } from './slot-commands.ts';
import type { SenderContext } from './context.ts';

export type SessionInfo = {
  connId: number;
  clientAddr: string;
  clientPort: number;
  user: string;
  applicationName: string;
  slotIndex: number;
  serverVersion: string; // ParameterStatus server_version, e.g. "15.0 (pg-walsender 0.1.0)"
  major: number;
};

export const adminShutdownError = (): PgError =>
  new PgError('FATAL', '57P01', 'terminating connection due to administrator command');

export async function runSession(ctx: SenderContext, conn: ClientConnection, connId: number,
  clientAddr: string, clientPort: number): Promise<void> {
  let slotIndex = -1;
  let authorized: { at: number; user: string; applicationName: string } | null = null;
  countConnectionAccepted(ctx.views);
  // hba, users and certificate as of this connection's start (re-read after a SIGHUP).
  const auth = ctx.auth.current();
  const startupTimer = setTimeout(() => {
    // authentication_timeout. PostgreSQL closes silently; we say why (libpq shows it),
    // and stop reading at once so a late startup packet cannot go on to authenticate.
    ctx.log.info({ connId, clientAddr }, 'connection closed: startup not completed within authentication timeout');
    countConnectionRefused(ctx.views, 'startup_timeout');
    conn.abort(new PgError('FATAL', '57014', 'canceling authentication due to timeout'));
  }, ctx.auth.timeoutMs());
  try {
    const params = await readStartup(conn, auth);
    if (!params) return;
    const user = params.get('user')!;
    const applicationName = params.get('application_name') ?? '';
    if (replicationMode(params) !== 'physical') {
      const logical = params.get('replication') === 'database';
      throw new PgError('FATAL', '0A000',
        logical ? 'logical replication connections are not supported by pg-walsender'
          : 'pg-walsender only accepts physical replication connections',
        { hint: 'Connect with replication=true, as pg_receivewal and standbys do.' });
    }
    const mode = shutdownMode(ctx.views);
    if (mode !== ShutdownMode.NONE) throw new PgError('FATAL', '57P03', 'the database system is shutting down');
    const identity = storeIdentity(ctx.views);
    if (!identity) throw new PgError('FATAL', '57P03', 'the database system is starting up');
    const major = majorVersionFromMagic(identity.pageMagic) ?? 0;

    // InitWalSnd happens before authentication in PostgreSQL (InitProcess), so a full
    // server refuses before asking for a password.
    slotIndex = claimWalSnd(ctx.views, {
      connId, threadId: ctx.threadId, clientAddr, clientPort, applicationName, backendStart: pgNow(),
    });
    if (slotIndex < 0) {
      throw new PgError('FATAL', '53300',
        `number of requested standby connections exceeds max_wal_senders (currently ${ctx.views.maxWalSenders})`);
    }
    // hba line, password exchange, AuthenticationOk, then the role checks (28000, 42501).
    const outcome = await authenticate(conn, auth, { user, clientAddr, ssl: conn.ssl, connId }, ctx.log);
    if (!outcome || conn.closed) return;
    clearTimeout(startupTimer);

    const info: SessionInfo = {
      connId, clientAddr, clientPort, user, applicationName, slotIndex, major,
      serverVersion: `${major}.0 (pg-walsender ${ctx.serverVersion})`,
    };
    conn.write(Buffer.concat([...sessionParameters(info, params), backendKeyData(connId, randomKey()), readyForQuery('I')]));
    ctx.log.info({ connId, clientAddr, clientPort, user, applicationName, method: outcome.method, hbaLine: outcome.hbaLine,
      ssl: conn.ssl }, 'replication connection authorized');
    authorized = { at: Date.now(), user, applicationName };
    await commandLoop(ctx, conn, info);
  } catch (e) {
    if (e instanceof PgError) {
      if (e.severity === 'FATAL') ctx.log.info({ connId, clientAddr, code: e.code }, e.message);
      if (!authorized) {
        // Counted for pgws_connections_refused_total / pgws_authentication_failures_total.
        if (e.code.startsWith('28')) countAuthFailure(ctx.views);
        countConnectionRefused(ctx.views, refusalReason(e));
      }
      conn.sendError(e.severity === 'ERROR' ? new PgError('FATAL', e.code, e.message, e) : e);
    } else {
      ctx.log.error({ connId, clientAddr, clientPort, err: e }, 'sender failed');
      conn.sendError(new PgError('FATAL', 'XX000', 'internal error in pg-walsender'));
    }
  } finally {
    clearTimeout(startupTimer);
    if (authorized) logDisconnection(ctx, connId, clientAddr, clientPort, slotIndex, authorized);
    dropTemporarySlotsQuietly(ctx, connId);
    if (slotIndex >= 0) releaseWalSnd(ctx.views, slotIndex, connId);
    conn.end();
  }
}

function dropTemporarySlotsQuietly(ctx: SenderContext, connId: number): void {
  try {
    dropTemporarySlots(ctx, connId);
  } catch (e) {
    ctx.log.error({ err: e, connId }, 'could not drop temporary replication slots');
  }
}

/** Which pgws_connections_refused_total reason a FATAL before authorization counts under. */
function refusalReason(e: PgError): RefusalReason {
  if (e.code === '53300') return 'too_many_senders';
  if (e.code === '57P03') return e.message.includes('starting up') ? 'starting_up' : 'shutting_down';
  if (e.code === '0A000') return 'not_physical_replication';
  if (e.code === '08P01') return 'protocol_violation';
  if (e.code.startsWith('28')) return 'authentication_failed';
  return 'other';
}

/** log_disconnections' line, with the standby's final positions from its WalSnd slot. */
function logDisconnection(ctx: SenderContext, connId: number, clientAddr: string, clientPort: number,
  slotIndex: number, a: { at: number; user: string; applicationName: string }): void {
  const slot = readWalSnd(ctx.views, slotIndex, connId);
  const lsn = (x: bigint | undefined): string | null => (x ? formatLsn(x) : null);
  ctx.log.info({
    connId, clientAddr, clientPort, user: a.user, applicationName: a.applicationName,
    sessionTimeMs: Date.now() - a.at, sent: lsn(slot?.sent), write: lsn(slot?.write), flush: lsn(slot?.flush),
    replay: lsn(slot?.replay), bytesSent: Number(slot?.bytesSent ?? 0n),
  }, 'disconnection');
}

/**
 * ProcessStartupPacket: at most one SSLRequest (answered 'S' and TLS started when a
 * certificate is configured, else 'N') and one GSSENCRequest (always 'N').
 */
async function readStartup(conn: ClientConnection, auth: AuthMaterial): Promise<Map<string, string> | null> {
  let sslSeen = false;
  let gssSeen = false;
  for (;;) {
    const p = await conn.nextStartupPacket();
    if (!p) return null;
    if (p.kind === 'cancel') return null; // no cancellable queries here; close silently
    if (p.kind === 'ssl' || p.kind === 'gssenc') {
      const seen = p.kind === 'ssl' ? sslSeen : gssSeen;
      if (seen) {
        throw new PgError('FATAL', '08P01', `unsupported frontend protocol 1234.${p.kind === 'ssl' ? 5679 : 5680}: server supports 3.0 to 3.0`);
      }
      if (p.kind === 'ssl') sslSeen = true; else gssSeen = true;
      // Bytes that came with the request were sent before the answer, so they were
      // not protected by it (perhaps injected): PostgreSQL refuses them either way.
      if (conn.reader.buffered > 0) throw unencryptedDataAfterRequest(p.kind);
      if (p.kind === 'ssl' && auth.tls) {
        if (!await conn.startTls(SSL_ACCEPTED, auth.tls.secureContext)) return null;
        conn.reader.gssDone = true; // one encryption layer: a GSSENCRequest now is a bad packet
        continue;
      }
      conn.write(SSL_REFUSED);
      continue;
    }
    return p.params;
  }
}

function sessionParameters(info: SessionInfo, params: Map<string, string>): Buffer[] {
  return [
    ['application_name', info.applicationName],
    ['client_encoding', params.get('client_encoding') ?? 'SQL_ASCII'],
    ['DateStyle', 'ISO, MDY'],
    ['default_transaction_read_only', 'off'],
    ['in_hot_standby', 'off'],
    ['integer_datetimes', 'on'],
    ['IntervalStyle', 'postgres'],
    ['is_superuser', 'off'],
    ['server_encoding', 'SQL_ASCII'],
    ['server_version', info.serverVersion],
    ['session_authorization', info.user],
    ['standard_conforming_strings', 'on'],
    ['TimeZone', 'Etc/UTC'],
  ].map(([k, v]) => parameterStatus(k!, v!));
}

function randomKey(): number {
  return (Math.random() * 0x7fffffff) | 0;
}

/** PostgresMain's loop for a physical walsender. */
async function commandLoop(ctx: SenderContext, conn: ClientConnection, info: SessionInfo): Promise<void> {
  let ignoreTillSync = false;
  const stopRequested = (): boolean =>
    shutdownMode(ctx.views) !== ShutdownMode.NONE || terminateRequested(ctx.views, info.slotIndex);
  for (;;) {
    if (stopRequested()) throw adminShutdownError();
    // Results the client has not read yet: read no more commands until they drain.
    await conn.waitWritable(stopRequested, ctx.watch);
    if (conn.closed) return;
    if (conn.writeBlocked) continue; // interrupted: checked at the top
    const msg = await conn.nextMessage(stopRequested, ctx.watch);
    if (!msg) {
      if (conn.closed) return;
      continue; // woken for shutdown/terminate: checked at the top
    }
    try {
      switch (msg.type) {
        case 'Q': {
          if (ignoreTillSync) break;
          const text = parseQuery(msg.body);
          const ended = await executeCommand(ctx, conn, info, text);
          if (ended) return;
          break;
        }
        case 'X':
          return; // Terminate: end quietly
        case 'S': // Sync ends error recovery of the extended protocol
          ignoreTillSync = false;
          conn.write(readyForQuery('I'));
          break;
        case 'H': // Flush
          break;
        case 'd': case 'c': case 'f':
          break; // copy messages outside COPY are ignored, per protocol
        case 'P': case 'B': case 'E': case 'C': case 'D':
          if (ignoreTillSync) break;
          ignoreTillSync = true;
          throw new PgError('ERROR', '08P01', 'extended query protocol not supported in a replication connection');
        case 'F':
          throw new PgError('ERROR', '08P01', 'fastpath function calls not supported in a replication connection');
        default:
          throw new PgError('FATAL', '08P01', `invalid frontend message type ${msg.type.charCodeAt(0)}`);
      }
    } catch (e) {
      if (!(e instanceof PgError) || e.severity !== 'ERROR') throw e;
      // ERROR: the session survives; ReadyForQuery follows unless skipping to Sync.
      // As in PostgreSQL, an ERROR drops the session's temporary replication slots.
      dropTemporarySlotsQuietly(ctx, info.connId);
      conn.sendError(e);
      if (!ignoreTillSync) conn.write(readyForQuery('I'));
    }
  }
}
