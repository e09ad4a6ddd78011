// The replication commands of a physical walsender, shaped exactly as PostgreSQL 15
// answers them (walsender.c exec_replication_command): IDENTIFY_SYSTEM, SHOW,
// TIMELINE_HISTORY; START_REPLICATION goes to streaming.ts, the replication slot
// commands to slot-commands.ts.

import fs from 'node:fs';
import path from 'node:path';
import {
  commandComplete, dataRow, readyForQuery, rowDescription, TypeOid,
} from '../../src/protocol/backend.ts';
import { parseReplicationCommand } from '../../src/protocol/commands.ts';
import { PgError } from '../../src/protocol/errors.ts';
import { formatLsn } from '../../src/protocol/lsn.ts';
import { readFlush, storeIdentity, walSenderTimeoutMs } from '../../src/shmem/control.ts';
import { formatBytes, formatDurationMs } from '../../src/units.ts';
import { historyFileName } from '../../src/wal/segment.ts';
import type { ClientConnection } from './client.ts';
import type { SenderContext } from './context.ts';
import type { SessionInfo } from './session.ts';
import { createReplicationSlot, dropReplicationSlot, readReplicationSlot } from './slot-commands.ts';
import { findSlot } from '../../src/slots/slots.ts';
import { startReplication } from './streaming.ts';

const text = (name: string) => ({ name, typeOid: TypeOid.TEXT, typeLen: -1 });

/** Runs one query. Returns true when the connection has ended (e.g. shutdown after COPY). */
export async function executeCommand(ctx: SenderContext, conn: ClientConnection, info: SessionInfo,
  query: string): Promise<boolean> {
  const cmd = parseReplicationCommand(query);
  ctx.log.debug({ connId: info.connId, command: query }, 'received replication command');
  switch (cmd.kind) {
    case 'IDENTIFY_SYSTEM':
      identifySystem(ctx, conn);
      return false;
    case 'SHOW':
      show(ctx, conn, info, cmd.name);
      return false;
    case 'TIMELINE_HISTORY':
      timelineHistory(ctx, conn, cmd.timeline);
      return false;
    case 'READ_REPLICATION_SLOT':
      readReplicationSlot(ctx, conn, cmd.slotName);
      return false;
    case 'CREATE_REPLICATION_SLOT':
      createReplicationSlot(ctx, conn, info.connId, cmd);
      return false;
    case 'DROP_REPLICATION_SLOT':
      await dropReplicationSlot(ctx, conn, info, cmd.slotName, cmd.wait);
      return false;
    case 'START_REPLICATION':
      if (cmd.logical) {
        // A physical connection cannot use a logical slot; slots here are all physical.
        if (cmd.slotName !== undefined && findSlot(ctx.views, cmd.slotName) < 0) {
          throw new PgError('ERROR', '42704', `replication slot "${cmd.slotName}" does not exist`);
        }
        throw new PgError('ERROR', '0A000', 'logical decoding requires a database connection');
      }
      return await startReplication(ctx, conn, info, cmd.startPoint, cmd.timeline, cmd.slotName);
    case 'BASE_BACKUP':
      throw new PgError('ERROR', '0A000', 'BASE_BACKUP is not supported by pg-walsender',
        { hint: 'Take base backups from the primary.' });
    default:
      throw new PgError('ERROR', '0A000', 'cannot execute SQL commands in WAL sender for physical replication');
  }
}

function identifySystem(ctx: SenderContext, conn: ClientConnection): void {
  const id = storeIdentity(ctx.views)!;
  const flush = readFlush(ctx.views);
  conn.write(Buffer.concat([
    rowDescription([text('systemid'), { name: 'timeline', typeOid: TypeOid.INT4, typeLen: 4 }, text('xlogpos'), text('dbname')]),
    dataRow([id.sysid.toString(), String(flush.timeline), formatLsn(flush.flushLsn), null]),
    commandComplete('IDENTIFY_SYSTEM'),
    readyForQuery('I'),
  ]));
}

function showValue(ctx: SenderContext, info: SessionInfo, name: string): string | null {
  const id = storeIdentity(ctx.views)!;
  switch (name) {
    case 'wal_segment_size': return formatBytes(id.segSize);
    case 'data_directory_mode': return '0700';
    case 'server_version': return info.serverVersion;
    case 'server_version_num': return String(info.major * 10000);
    case 'wal_sender_timeout': return formatDurationMs(walSenderTimeoutMs(ctx.views));
    case 'max_wal_senders': return String(ctx.views.maxWalSenders);
    case 'block_size': case 'wal_block_size': return '8192';
    case 'integer_datetimes': return 'on';
    case 'transaction_read_only': case 'default_transaction_read_only': return 'off';
    case 'in_hot_standby': return 'off';
    case 'application_name': return info.applicationName;
    case 'max_replication_slots': return String(ctx.views.maxReplicationSlots);
    case 'timezone': return 'Etc/UTC';
    case 'server_encoding': case 'client_encoding': return 'SQL_ASCII';
    default: return null;
  }
}

function show(ctx: SenderContext, conn: ClientConnection, info: SessionInfo, rawName: string): void {
  const name = rawName.toLowerCase();
  const value = showValue(ctx, info, name);
  if (value === null) throw new PgError('ERROR', '42704', `unrecognized configuration parameter "${rawName}"`);
  conn.write(Buffer.concat([
    rowDescription([text(name)]),
    dataRow([value]),
    commandComplete('SHOW'),
    readyForQuery('I'),
  ]));
}

function timelineHistory(ctx: SenderContext, conn: ClientConnection, tli: number): void {
  const name = historyFileName(tli);
  // PostgreSQL sends the row description before opening the file (SendTimeLineHistory).
  conn.write(rowDescription([
    { name: 'filename', typeOid: TypeOid.TEXT, typeLen: -1, typmod: 0 },
    { name: 'content', typeOid: TypeOid.TEXT, typeLen: -1, typmod: 0 },
  ]));
  let content: Buffer;
  try {
    content = fs.readFileSync(path.join(ctx.storeDir, name));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'No such file or directory' : String((e as Error).message);
    throw new PgError('ERROR', code === 'ENOENT' ? '58P01' : '58030', `could not open file "pg_wal/${name}": ${reason}`);
  }
  conn.write(Buffer.concat([dataRow([name, content]), commandComplete('TIMELINE_HISTORY'), readyForQuery('I')]));
}
