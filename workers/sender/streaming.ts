// START_REPLICATION for a physical standby: walsender.c's StartReplication, WalSndLoop
// and XLogSendPhysical. Sends batches of XLogData (batch-builder.ts) never past the
// published flush position (or the switch point of a historic
// timeline); processes standby replies; keepalives and wal_sender_timeout; the
// end-of-timeline sequence; drain at shutdown ("COPY 0").

import fs from 'node:fs';
import path from 'node:path';
import {
  commandComplete, copyBothResponse, copyDone, dataRow, keepalive, readyForQuery, rowDescription, TypeOid,
} from '../../src/protocol/backend.ts';
import { PgError } from '../../src/protocol/errors.ts';
import { parseStandbyMessage } from '../../src/protocol/frontend.ts';
import { formatLsn, pgNow } from '../../src/protocol/lsn.ts';
import { readFlush, shutdownMode, storeIdentity, walSenderTimeoutMs } from '../../src/shmem/control.ts';
import { ShutdownMode, WalSndState } from '../../src/shmem/layout.ts';
import {
  recordReplyTime, recordStandbyReply, setWalSndSent, setWalSndState, setWalSndStream, terminateRequested,
} from '../../src/shmem/walsnd.ts';
import {
  initialHistory, parseHistoryFile, timelineIsInHistory, tliSwitchPoint, type TimelineHistoryEntry,
} from '../../src/wal/history.ts';
import { historyFileName } from '../../src/wal/segment.ts';
import { SegmentReader } from '../../src/wal/segment-reader.ts';
import { acquireSlot, readSlot, releaseSlot, setRestartLsn } from '../../src/slots/slots.ts';
import type { ClientConnection } from './client.ts';
import type { SenderContext } from './context.ts';
import { LagHead, LagTracker } from './lag-tracker.ts';
import { BatchBuilder } from './batch-builder.ts';
import { SlotPersister } from './slot-commands.ts';
import { adminShutdownError, type SessionInfo } from './session.ts';

// Batches handed to the socket and not yet flushed to the kernel. Two keep the kernel's
// send buffer fed while the next batch is read, and bound a slow standby's memory.
const MAX_BATCHES_IN_FLIGHT = 2;

type TimelinePlan = { tli: number; historic: boolean; validUpto: bigint; nextTli: number };

/** readTimeLineHistory: timeline 1 has no file; a missing file is PostgreSQL's 58P01. */
function readHistory(ctx: SenderContext, tli: number): TimelineHistoryEntry[] {
  if (tli === 1) return initialHistory(1);
  const name = historyFileName(tli);
  let text: string;
  try {
    text = fs.readFileSync(path.join(ctx.storeDir, name), 'utf8');
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === 'ENOENT';
    throw new PgError('ERROR', missing ? '58P01' : '58030',
      `could not open file "pg_wal/${name}": ${missing ? 'No such file or directory' : (e as Error).message}`);
  }
  return parseHistoryFile(text, tli);
}

/** StartReplication. Returns true when the connection ended (drain shutdown). */
export async function startReplication(ctx: SenderContext, conn: ClientConnection, info: SessionInfo,
  startPoint: bigint, requestedTli: number | undefined, slotName?: string): Promise<boolean> {
  // The slot is acquired first, so its errors come before anything else (PostgreSQL's order).
  const slot = slotName === undefined ? null : { index: acquireSlot(ctx.views, slotName, info.connId), persister: null as SlotPersister | null };
  if (slot) slot.persister = new SlotPersister(ctx, slot.index);
  try {
    return await streamPhysical(ctx, conn, info, startPoint, requestedTli, slot);
  } finally {
    if (slot) {
      slot.persister!.maybeSave(true); // the last confirmed restart_lsn survives a restart
      releaseSlot(ctx.views, slot.index, info.connId);
    }
  }
}

type HeldSlot = { index: number; persister: SlotPersister | null };

async function streamPhysical(ctx: SenderContext, conn: ClientConnection, info: SessionInfo,
  startPoint: bigint, requestedTli: number | undefined, slot: HeldSlot | null): Promise<boolean> {
  const flush = readFlush(ctx.views);
  const plan: TimelinePlan = { tli: requestedTli ?? flush.timeline, historic: false, validUpto: 0n, nextTli: 0 };
  if (requestedTli !== undefined && requestedTli !== flush.timeline) {
    historicPlan(ctx, plan, flush.timeline, startPoint);
  }
  let ended = false;
  if (!plan.historic || startPoint < plan.validUpto) {
    setWalSndState(ctx.views, info.slotIndex, WalSndState.CATCHUP);
    setWalSndStream(ctx.views, info.slotIndex, plan.tli, slot ? readSlot(ctx.views, slot.index)?.name ?? '' : '');
    conn.write(copyBothResponse());
    try {
      // PostgreSQL checks this only after CopyBothResponse; clients expect that order.
      if (flush.flushLsn < startPoint) {
        throw new PgError('ERROR', 'XX000',
          `requested starting point ${formatLsn(startPoint)} is ahead of the WAL flush position of this server ${formatLsn(flush.flushLsn)}`);
      }
      const stream = new PhysicalStream(ctx, conn, info, plan, startPoint, slot);
      ended = await stream.run();
    } finally {
      setWalSndState(ctx.views, info.slotIndex, WalSndState.STARTUP);
    }
    if (ended) return true;
  }
  const out: Buffer[] = [];
  if (plan.historic) {
    out.push(
      rowDescription([{ name: 'next_tli', typeOid: TypeOid.INT8, typeLen: 8 }, { name: 'next_tli_startpos', typeOid: TypeOid.TEXT, typeLen: -1 }]),
      dataRow([String(plan.nextTli), formatLsn(plan.validUpto)]),
    );
  }
  // The second tag is a dupe PostgreSQL sends because libpqrcv_endstreaming needs it.
  out.push(commandComplete('START_STREAMING'), commandComplete('START_REPLICATION'), readyForQuery('I'));
  conn.write(Buffer.concat(out));
  return false;
}

/** The requested timeline is older than the flush timeline: stream it up to its switch point. */
function historicPlan(ctx: SenderContext, plan: TimelinePlan, currentTli: number, startPoint: bigint): void {
  const history = readHistory(ctx, currentTli);
  if (!timelineIsInHistory(history, plan.tli)) {
    throw new PgError('ERROR', 'XX000', `requested timeline ${plan.tli} is not in this server's history`);
  }
  const sw = tliSwitchPoint(history, plan.tli);
  if (!sw) return; // not historic after all
  if (sw.switchPoint < startPoint) {
    throw new PgError('ERROR', 'XX000',
      `requested starting point ${formatLsn(startPoint)} on timeline ${plan.tli} is not in this server's history`,
      { detail: `This server's history forked from timeline ${plan.tli} at ${formatLsn(sw.switchPoint)}.` });
  }
  plan.historic = true;
  plan.validUpto = sw.switchPoint;
  plan.nextTli = sw.nextTli;
}

class PhysicalStream {
  private readonly ctx: SenderContext;
  private readonly conn: ClientConnection;
  private readonly info: SessionInfo;
  private readonly plan: TimelinePlan;
  private readonly reader: SegmentReader;
  private readonly segSize: bigint;
  private readonly batches: BatchBuilder;
  private readonly lag = new LagTracker();
  private sent: bigint;
  private bytesSent = 0n;
  private inFlight = 0;
  private lastReply = Date.now();
  private waitingForPing = false;
  private sentCopyDone = false;
  private gotCopyDone = false;
  private caughtUpOnce = false;
  private fullyAppliedLastTime = false;
  private drainPingSent = false;
  private replyWrite = 0n;
  private replyFlush = 0n;
  private timer: NodeJS.Timeout | null = null;

  private readonly slot: HeldSlot | null;

  constructor(ctx: SenderContext, conn: ClientConnection, info: SessionInfo, plan: TimelinePlan, startPoint: bigint,
    slot: HeldSlot | null) {
    this.slot = slot;
    this.ctx = ctx;
    this.conn = conn;
    this.info = info;
    this.plan = plan;
    const id = storeIdentity(ctx.views)!;
    this.segSize = BigInt(id.segSize);
    this.reader = new SegmentReader(ctx.storeDir, id.segSize,
      ctx.archiveStore ? { validate: { sysid: id.sysid, pageMagic: id.pageMagic } } : {});
    this.sent = startPoint;
    this.batches = new BatchBuilder(ctx, this.reader, id.segSize, conn.ssl);
  }

  /** WalSndLoop. True when the connection is finished (shutdown or close). */
  async run(): Promise<boolean> {
    const { ctx, conn } = this;
    ctx.log.info({ connId: this.info.connId, applicationName: this.info.applicationName, clientAddr: this.info.clientAddr,
      timeline: this.plan.tli, startPoint: formatLsn(this.sent) }, 'start streaming');
    try {
      for (;;) {
        const gen = ctx.watch.current();
        this.processReplies();
        if (conn.closed) return true;
        if (terminateRequested(ctx.views, this.info.slotIndex) || shutdownMode(ctx.views) === ShutdownMode.FAST) {
          throw adminShutdownError();
        }
        if (this.gotCopyDone) {
          if (!this.sentCopyDone) conn.write(copyDone());
          return false;
        }
        if (!this.sentCopyDone && this.inFlight < MAX_BATCHES_IN_FLIGHT) {
          const limit = this.sendLimit();
          if (this.sent < limit) {
            // The write completes asynchronously, so at most MAX_BATCHES_IN_FLIGHT go out before
            // the loop waits below, letting replies and other senders on this thread in.
            this.sendBatch(limit);
            continue;
          }
          if (this.plan.historic && this.sent >= this.plan.validUpto) {
            conn.write(copyDone()); // end of this timeline; wait for the client's CopyDone
            this.sentCopyDone = true;
          } else {
            this.caughtUp();
            if (shutdownMode(ctx.views) === ShutdownMode.DRAIN && this.drainStep()) return true;
          }
        }
        if (this.checkTimeouts()) return true;
        this.slot?.persister?.maybeSave(); // a restart_lsn change with no later reply still gets saved
        const unsubscribe = ctx.watch.subscribe(gen, () => conn.waker.wake());
        await conn.waker.wait();
        unsubscribe();
      }
    } finally {
      if (this.timer) clearTimeout(this.timer);
      this.reader.close();
      ctx.log.info({ connId: this.info.connId, applicationName: this.info.applicationName, clientAddr: this.info.clientAddr,
        sent: formatLsn(this.sent), write: formatLsn(this.replyWrite), flush: formatLsn(this.replyFlush),
        bytesSent: Number(this.bytesSent) }, 'end streaming');
    }
  }

  /** How far we may send: the flush position, or the switch point of a historic timeline. */
  private sendLimit(): bigint {
    const flush = readFlush(this.ctx.views);
    if (!this.plan.historic && flush.timeline !== this.plan.tli) {
      // The store moved to a newer timeline while we stream this one: it became historic.
      try {
        historicPlan(this.ctx, this.plan, flush.timeline, this.sent);
      } catch (e) {
        this.ctx.log.error({ err: e }, 'cannot follow timeline switch');
        throw e;
      }
    }
    // The switch point ends a historic timeline, but the store may not hold the newer
    // timeline's switch segment yet (an archive where it is still arriving): the flush
    // position bounds historic streaming too.
    if (this.plan.historic && this.plan.validUpto < flush.flushLsn) return this.plan.validUpto;
    return flush.flushLsn;
  }

  /** XLogSendPhysical, batched: several XLogData messages, one socket write. */
  private sendBatch(limit: bigint): void {
    const { ctx, conn } = this;
    const stream = `${this.plan.tli}/${this.plan.historic ? this.plan.nextTli : 0}`;
    const batch = this.batches.acquire(stream, this.runTimeline(this.sent), this.sent, limit);
    this.inFlight++;
    conn.writeChunks(batch.chunks, () => {
      ctx.batches.release(batch);
      this.inFlight--;
      conn.waker.wake();
    });
    this.bytesSent += batch.end - this.sent;
    this.sent = batch.end;
    this.lag.write(limit, pgNow());
    setWalSndSent(ctx.views, this.info.slotIndex, this.sent, this.bytesSent);
  }

  /** A historic timeline's switch segment comes from the next timeline's file. */
  private runTimeline(start: bigint): number {
    if (this.plan.historic && start / this.segSize === this.plan.validUpto / this.segSize) return this.plan.nextTli;
    return this.plan.tli;
  }


  private caughtUp(): void {
    if (!this.caughtUpOnce) {
      this.caughtUpOnce = true;
      setWalSndState(this.ctx.views, this.info.slotIndex, WalSndState.STREAMING);
    }
  }

  /** WalSndDone: once everything sent is confirmed, "COPY 0" and close. True when done. */
  private drainStep(): boolean {
    const { conn } = this;
    setWalSndState(this.ctx.views, this.info.slotIndex, WalSndState.STOPPING);
    const replicated = this.replyFlush !== 0n ? this.replyFlush : this.replyWrite;
    if (replicated >= this.sent && this.inFlight === 0) {
      conn.write(commandComplete('COPY 0'));
      conn.end();
      this.ctx.log.info({ connId: this.info.connId, sent: formatLsn(this.sent) }, 'drained: all WAL sent and confirmed');
      return true;
    }
    if (!this.drainPingSent) {
      conn.write(keepalive(this.sent, pgNow(), true));
      this.drainPingSent = true;
    }
    return false;
  }

  /** ProcessRepliesIfAny. */
  private processReplies(): void {
    const { conn } = this;
    for (;;) {
      const msg = conn.nextBufferedMessage(); // counted against the message rate limit
      if (!msg) break;
      switch (msg.type) {
        case 'd':
          this.lastReply = Date.now();
          this.waitingForPing = false;
          this.handleStandbyMessage(msg.body);
          break;
        case 'c':
          this.lastReply = Date.now();
          this.gotCopyDone = true;
          break;
        case 'X':
          conn.destroy();
          return;
        default:
          throw new PgError('FATAL', '08P01', `invalid standby message type "${msg.type}"`);
      }
    }
    conn.afterConsume();
  }

  private handleStandbyMessage(payload: Buffer): void {
    let m;
    try {
      m = parseStandbyMessage(payload);
    } catch (e) {
      // A client that sends garbage mid-stream cannot be trusted to be in step: close it.
      if (e instanceof PgError) throw new PgError('FATAL', e.code, e.message);
      throw e;
    }
    const { views } = this.ctx;
    if (m.kind === 'h') {
      recordReplyTime(views, this.info.slotIndex, m.sendTime);
      return;
    }
    const now = pgNow();
    let clearLagTimes = false;
    if (m.apply === this.sent) {
      if (this.fullyAppliedLastTime) clearLagTimes = true;
      else this.fullyAppliedLastTime = true;
    } else {
      this.fullyAppliedLastTime = false;
    }
    const writeLag = this.lag.read(LagHead.WRITE, m.write, now);
    const flushLag = this.lag.read(LagHead.FLUSH, m.flush, now);
    const applyLag = this.lag.read(LagHead.APPLY, m.apply, now);
    const prev = this.prevLags;
    this.prevLags = {
      write: writeLag !== -1n || clearLagTimes ? writeLag : prev.write,
      flush: flushLag !== -1n || clearLagTimes ? flushLag : prev.flush,
      apply: applyLag !== -1n || clearLagTimes ? applyLag : prev.apply,
    };
    this.replyWrite = m.write;
    this.replyFlush = m.flush;
    recordStandbyReply(views, this.info.slotIndex, {
      write: m.write, flush: m.flush, replay: m.apply,
      writeLagUs: this.prevLags.write, flushLagUs: this.prevLags.flush, replayLagUs: this.prevLags.apply,
      replyTime: m.sendTime,
    });
    // PhysicalConfirmReceivedLocation: a reported flush position moves the slot's restart_lsn.
    if (this.slot && m.flush !== 0n && setRestartLsn(views, this.slot.index, m.flush, this.plan.tli)) {
      this.slot.persister!.maybeSave();
    }
    // While our output is backed up the standby will hear from us anyway; answering
    // each request would queue without bound for a client that sends but never reads.
    if (m.replyRequested && !this.sentCopyDone && !this.conn.writeBlocked) this.conn.write(keepalive(this.sent, pgNow(), false));
  }

  private prevLags = { write: -1n, flush: -1n, apply: -1n };

  /**
   * WalSndKeepaliveIfNecessary and WalSndCheckTimeOut. Arms a timer for the next
   * deadline. True when the standby timed out and the connection was closed.
   */
  private checkTimeouts(): boolean {
    const timeout = walSenderTimeoutMs(this.ctx.views);
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    if (timeout <= 0) return false;
    const now = Date.now();
    // A standby that stops reading but keeps replying would never time out by its
    // replies; output blocked for as long as the timeout counts as a timeout too.
    const blockedUntil = this.conn.writeBlocked ? this.conn.writeBlockedSince + timeout : Infinity;
    if (now >= this.lastReply + timeout || now >= blockedUntil) {
      // PostgreSQL tells the client nothing: it logs and closes.
      this.ctx.log.info({ connId: this.info.connId, applicationName: this.info.applicationName,
        notReading: now >= blockedUntil }, 'terminating walsender process due to replication timeout');
      this.conn.destroy();
      return true;
    }
    if (!this.waitingForPing && now >= this.lastReply + timeout / 2 && !this.sentCopyDone) {
      this.conn.write(keepalive(this.sent, pgNow(), true));
      this.waitingForPing = true;
    }
    const next = Math.min(blockedUntil, this.waitingForPing ? this.lastReply + timeout : this.lastReply + timeout / 2);
    this.timer = setTimeout(() => this.conn.waker.wake(), Math.max(1, next - now));
    return false;
  }
}
