// One replication connection from its first byte to its close: the startup packet
// exchange (SSLRequest/GSSENCRequest answered 'N', StartupMessage with
// replication=true), claiming a WalSnd slot, authentication, the session parameters,
// then the command loop (simple Query only), handing START_REPLICATION to streaming.ts.

import {
  authenticationOk, backendKeyData, parameterStatus, readyForQuery, SSL_REFUSED,
} from '../../src/protocol/backend.ts';
import { PgError } from '../../src/protocol/errors.ts';
import { parseQuery, replicationMode } from '../../src/protocol/frontend.ts';
import { pgNow } from '../../src/protocol/lsn.ts';
import { shutdownMode, storeIdentity } from '../../src/shmem/control.ts';
import { ShutdownMode } from '../../src/shmem/layout.ts';
import { claimWalSnd, releaseWalSnd, terminateRequested } from '../../src/shmem/walsnd.ts';
import { majorVersionFromMagic } from '../../src/wal/page.ts';
import type { ClientConnection } from './client.ts';
import { executeCommand } from './commands.ts';
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

const AUTHENTICATION_TIMEOUT_MS = 60_000;

export const adminShutdownError = (): PgError =>
  new PgError('FATAL', '57P01', 'terminating connection due to administrator command');

export async function runSession(ctx: SenderContext, conn: ClientConnection, connId: number,
  clientAddr: string, clientPort: number): Promise<void> {
  let slotIndex = -1;
  const startupTimer = setTimeout(() => {
    // authentication_timeout: PostgreSQL closes without a message.
    ctx.log.info({ connId, clientAddr }, 'connection closed: startup not completed within authentication timeout');
    conn.destroy();
  }, AUTHENTICATION_TIMEOUT_MS);
  try {
    const params = await readStartup(conn);
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
    // Trust authentication for now; the authentication methods plug in here.
    conn.write(authenticationOk());
    clearTimeout(startupTimer);

    const info: SessionInfo = {
      connId, clientAddr, clientPort, user, applicationName, slotIndex, major,
      serverVersion: `${major}.0 (pg-walsender ${ctx.serverVersion})`,
    };
    conn.write(Buffer.concat([...sessionParameters(info, params), backendKeyData(connId, randomKey()), readyForQuery('I')]));
    ctx.log.info({ connId, clientAddr, clientPort, user, applicationName }, 'replication connection authorized');
    await commandLoop(ctx, conn, info);
  } catch (e) {
    if (e instanceof PgError) {
      if (e.severity === 'FATAL') ctx.log.info({ connId, clientAddr, code: e.code }, e.message);
      conn.sendError(e.severity === 'ERROR' ? new PgError('FATAL', e.code, e.message, e) : e);
    } else {
      ctx.log.error({ connId, err: e }, 'sender failed');
      conn.sendError(new PgError('FATAL', 'XX000', 'internal error in pg-walsender'));
    }
  } finally {
    clearTimeout(startupTimer);
    if (slotIndex >= 0) releaseWalSnd(ctx.views, slotIndex, connId);
    conn.end();
  }
}

/** ProcessStartupPacket: at most one SSLRequest and one GSSENCRequest, both refused. */
async function readStartup(conn: ClientConnection): Promise<Map<string, string> | null> {
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
      conn.sendError(e);
      if (!ignoreTillSync) conn.write(readyForQuery('I'));
    }
  }
}
