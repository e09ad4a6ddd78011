// The replication slot commands of a physical walsender (walsender.c
// CreateReplicationSlot, DropReplicationSlot, ReadReplicationSlot) with PostgreSQL 15's
// result shapes and errors, plus the session's temporary slots, which go when the
// session ends or hits an ERROR.

import {
  commandComplete, dataRow, readyForQuery, rowDescription, TypeOid,
} from '../../src/protocol/backend.ts';
import { PgError } from '../../src/protocol/errors.ts';
import { formatLsn } from '../../src/protocol/lsn.ts';
import { readFlush, shutdownMode, storeIdentity } from '../../src/shmem/control.ts';
import { ShutdownMode } from '../../src/shmem/layout.ts';
import { terminateRequested } from '../../src/shmem/walsnd.ts';
import { removeSlot, saveSlot } from '../../src/slots/persist.ts';
import {
  acquireSlot, createSlot, ensureWalReserved, findSlot, freeSlot, readSlot, releaseSlot, temporarySlotsOf,
} from '../../src/slots/slots.ts';
import type { ClientConnection } from './client.ts';
import type { SenderContext } from './context.ts';
import { adminShutdownError, type SessionInfo } from './session.ts';

const text = (name: string) => ({ name, typeOid: TypeOid.TEXT, typeLen: -1 });

export type CreateSlotCommand = { slotName: string; temporary: boolean; slotKind: 'physical' | 'logical'; reserveWal: boolean };

export function createReplicationSlot(ctx: SenderContext, conn: ClientConnection, connId: number, cmd: CreateSlotCommand): void {
  if (cmd.slotKind === 'logical') throw new PgError('ERROR', '0A000', 'logical decoding requires a database connection');
  const { views } = ctx;
  // RESERVE_WAL: PostgreSQL reserves from the last checkpoint's redo pointer; our
  // store has no checkpoints, so the slot reserves from the current flush position.
  let flush = readFlush(views);
  const i = createSlot(views, {
    name: cmd.slotName, temporary: cmd.temporary, activePid: connId,
    restartLsn: cmd.reserveWal ? flush.flushLsn : 0n, restartTli: cmd.reserveWal ? flush.timeline : 0,
  });
  if (cmd.reserveWal) {
    try {
      flush = ensureWalReserved(views, i, flush, () => readFlush(views), storeIdentity(views)!.segSize);
    } catch (e) {
      freeSlot(views, i, connId);
      throw e;
    }
  }
  if (!cmd.temporary) {
    try {
      saveSlot(ctx.dataDir, readSlot(views, i)!);
    } catch (e) {
      freeSlot(views, i, connId);
      throw new PgError('ERROR', '58030', `could not write replication slot "${cmd.slotName}": ${(e as Error).message}`);
    }
  }
  releaseSlot(views, i, connId);
  ctx.log.info({ connId, slot: cmd.slotName, temporary: cmd.temporary, restartLsn: cmd.reserveWal ? formatLsn(flush.flushLsn) : null },
    'created replication slot');
  conn.write(Buffer.concat([
    rowDescription([text('slot_name'), text('consistent_point'), text('snapshot_name'), text('output_plugin')]),
    // consistent_point is confirmed_flush, always invalid for a physical slot.
    dataRow([cmd.slotName, '0/0', null, null]),
    commandComplete('CREATE_REPLICATION_SLOT'),
    readyForQuery('I'),
  ]));
}

/**
 * DROP_REPLICATION_SLOT name [WAIT]: WAIT blocks until the slot is released, and, like
 * PostgreSQL's ConditionVariableSleep, still obeys a terminate request or shutdown.
 */
export async function dropReplicationSlot(ctx: SenderContext, conn: ClientConnection, info: SessionInfo, name: string, wait: boolean): Promise<void> {
  const connId = info.connId;
  let i: number;
  for (;;) {
    try {
      i = acquireSlot(ctx.views, name, connId);
      break;
    } catch (e) {
      if (!wait || !(e instanceof PgError) || e.code !== '55006' || conn.closed) throw e;
      await new Promise((r) => setTimeout(r, 100));
      if (terminateRequested(ctx.views, info.slotIndex) || shutdownMode(ctx.views) !== ShutdownMode.NONE) throw adminShutdownError();
    }
  }
  dropAcquired(ctx, i, connId);
  conn.write(Buffer.concat([commandComplete('DROP_REPLICATION_SLOT'), readyForQuery('I')]));
}

function dropAcquired(ctx: SenderContext, i: number, connId: number): void {
  const s = readSlot(ctx.views, i);
  if (!s) return;
  if (!s.temporary) removeSlot(ctx.dataDir, s.name);
  freeSlot(ctx.views, i, connId);
  ctx.log.info({ connId, slot: s.name }, 'dropped replication slot');
}

/** READ_REPLICATION_SLOT: a missing slot is one row of NULLs, not an error. */
export function readReplicationSlot(ctx: SenderContext, conn: ClientConnection, name: string): void {
  const i = findSlot(ctx.views, name);
  const s = i >= 0 ? readSlot(ctx.views, i) : null;
  const row = s
    ? ['physical', s.restartLsn === 0n ? null : formatLsn(s.restartLsn), s.restartLsn === 0n ? null : String(s.restartTli)]
    : [null, null, null];
  conn.write(Buffer.concat([
    rowDescription([text('slot_type'), text('restart_lsn'), { name: 'restart_tli', typeOid: TypeOid.INT8, typeLen: 8 }]),
    dataRow(row),
    commandComplete('READ_REPLICATION_SLOT'),
    readyForQuery('I'),
  ]));
}

/** ReplicationSlotCleanup: the session's temporary slots, at its end or after an ERROR. */
export function dropTemporarySlots(ctx: SenderContext, connId: number): void {
  for (const i of temporarySlotsOf(ctx.views, connId)) dropAcquired(ctx, i, connId);
}

/** Persist a held slot's changed restart_lsn at most once per interval (and finally at release). */
export class SlotPersister {
  private readonly ctx: SenderContext;
  private readonly index: number;
  private savedVersion = -1;
  private lastSave = 0;
  private readonly intervalMs: number;

  constructor(ctx: SenderContext, index: number, intervalMs = 1000) {
    this.ctx = ctx;
    this.index = index;
    this.intervalMs = intervalMs;
  }

  maybeSave(force = false): void {
    const now = Date.now();
    if (!force && now - this.lastSave < this.intervalMs) return;
    const s = readSlot(this.ctx.views, this.index);
    if (!s || s.temporary || s.version === this.savedVersion) return;
    try {
      saveSlot(this.ctx.dataDir, s);
      this.savedVersion = s.version;
      this.lastSave = now;
    } catch (e) {
      // A failed save keeps the older restart_lsn on disk: that holds more WAL, never less.
      this.ctx.log.error({ err: e, slot: s.name }, 'could not persist replication slot');
    }
  }
}
