// The upstream source (`--source upstream`): relays a live PostgreSQL server (or
// another pg-walsender) into the store, on the ingest thread. Owns the lifecycle:
// recovering the store at startup (store-scan.ts) and publishing what is durable
// there at once, so downstream standbys are served even while the upstream is down;
// connecting with exponential backoff (100 ms doubling to 10 s, every attempt
// logged) and running one session at a time (receiver.ts); the publication rule:
// the flush position advances only to what the writer has made durable, and a new
// timeline is published only once its first segment is durable past the switch
// point (senders read the switch segment from the new timeline's file); history
// files are durable before any WAL of their timeline is written. Losing the
// upstream only stops publication: senders idle and downstream standbys stay.

import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../../log.ts';
import { formatLsn } from '../../protocol/lsn.ts';
import {
  publishFlush, publishIdentity, publishUpstreamStatus, setSourceState, sourceState, type UpstreamStatus,
} from '../../shmem/control.ts';
import { SourceState, type SharedViews } from '../../shmem/layout.ts';
import { PAGE_MAGIC_BY_MAJOR, readPageHeader } from '../../wal/page.ts';
import { historyFileName, segmentFileName } from '../../wal/segment.ts';
import { ConnectError, type UpstreamConnection } from './connection.ts';
import { describeTarget, redactConninfo, resolveConninfo } from './conninfo.ts';
import { connectUpstream } from './handshake.ts';
import { MismatchError, runSession, type ReceiverHost } from './receiver.ts';
import { fsyncDirSync, scanStore } from './store-scan.ts';
import { StoreWriter } from './store-writer.ts';

export const RETRY_MIN_MS = 100;
export const RETRY_MAX_MS = 10_000;
const STATUS_INTERVAL_MS = 10_000; // wal_receiver_status_interval

export type UpstreamOptions = {
  dataDir: string;
  conninfo: string;
  slot: string | null;
  passwordFile: string | null;
  /** wal_receiver_timeout: a silent upstream is dropped and reconnected (0 disables). */
  timeoutMs: number;
  views: SharedViews;
  log: Logger;
  /** After startup: the store can no longer be trusted (failed fsync); the process must stop. */
  onFatal: (e: Error) => void;
};

export class UpstreamSource implements ReceiverHost {
  readonly slot: string | null;
  readonly timeoutMs: number;
  readonly statusIntervalMs = STATUS_INTERVAL_MS;
  readonly log: Logger;
  private readonly o: UpstreamOptions;
  private sysid: bigint | null = null;
  private segSize: number | null = null;
  private w: StoreWriter | null = null;
  private published: { lsn: bigint; tli: number } | null = null;
  private tliBegin = 0n;
  private tliStart = 0n;
  private pageMagic: number | null = null;
  private conn: UpstreamConnection | null = null;
  private stopping = false;
  private loop: Promise<void> | null = null;
  private wakeSleep: (() => void) | null = null;
  private firstDone = false;
  private first: { resolve: () => void; reject: (e: Error) => void } | null = null;
  private identifiedThisRound = false;
  /** The upstream streamed to us this round (CopyData arrived): only that resets the backoff. */
  private streamedThisRound = false;

  constructor(o: UpstreamOptions) {
    this.o = o;
    this.slot = o.slot;
    this.timeoutMs = o.timeoutMs;
    this.log = o.log;
  }

  /**
   * Recover and publish the store, then make the first connection attempt. Rejects if
   * the store is unusable or the upstream is another cluster; resolves once the first
   * attempt identified the upstream or failed for a reason worth retrying.
   */
  async start(): Promise<void> {
    setSourceState(this.o.views, SourceState.STARTING);
    const scan = scanStore(this.o.dataDir, this.log);
    if (scan) {
      this.sysid = scan.identity.sysid;
      this.segSize = scan.identity.segSize;
      this.pageMagic = scan.identity.pageMagic;
      this.createWriter();
      this.w!.begin(scan.timeline, scan.end);
      this.tliBegin = scan.history.at(-1)!.begin;
      publishIdentity(this.o.views, scan.identity, { flushLsn: scan.end, timeline: scan.timeline });
      this.published = { lsn: scan.end, tli: scan.timeline };
      this.status({ receivedLsn: scan.end, flushedLsn: scan.end });
      this.log.info({ sysid: scan.identity.sysid.toString(), segSize: scan.identity.segSize, timeline: scan.timeline,
        flushLsn: formatLsn(scan.end) }, 'store ready; relaying from upstream');
    } else {
      this.log.info({ dir: this.o.dataDir }, 'empty store: identity, timeline and segment size come from the upstream');
    }
    const first = new Promise<void>((resolve, reject) => { this.first = { resolve, reject }; });
    this.loop = this.run();
    await first;
  }

  /** Stop receiving; everything written is made durable and published first. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wakeSleep?.();
    this.conn?.close();
    await this.loop?.catch(() => {});
    try {
      await this.w?.close();
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'could not make the last received WAL durable');
    }
    this.status({ connected: false });
  }

  private settleFirst(e: Error | null): void {
    if (this.firstDone) return;
    this.firstDone = true;
    if (e) this.first?.reject(e); else this.first?.resolve();
  }

  private async run(): Promise<void> {
    let delay = RETRY_MIN_MS;
    const redacted = redactConninfo(this.o.conninfo);
    for (let attempt = 1; !this.stopping; attempt++) {
      this.identifiedThisRound = false;
      this.streamedThisRound = false;
      // A full disk stays the reported state until WAL is written again.
      if (sourceState(this.o.views) !== SourceState.DISK_FULL) setSourceState(this.o.views, SourceState.WAITING);
      this.log.info({ attempt, upstream: redacted }, 'connecting to upstream');
      try {
        const params = resolveConninfo(this.o.conninfo, { passwordFile: this.o.passwordFile });
        const conn = await connectUpstream(params, { warn: (m) => this.log.warn(m) });
        this.conn = conn;
        if (this.stopping) break;
        this.log.info({ server: describeTarget(conn.target), serverVersion: conn.parameters.get('server_version'),
          tls: conn.tlsInUse }, 'connected to upstream');
        await runSession(conn, this);
      } catch (e) {
        if (this.stopping) break;
        const err = e as Error;
        if (err instanceof MismatchError && !this.firstDone) {
          this.settleFirst(err);
          return;
        }
        const serious = err instanceof MismatchError || (err instanceof ConnectError && err.auth);
        // Not identifiedThisRound: an upstream that identifies itself and then refuses the
        // stream (WAL already removed, start point ahead of its flush, slot in use) would
        // otherwise be asked again every 100 ms forever.
        if (this.streamedThisRound) delay = RETRY_MIN_MS;
        const fields = { attempt, err: err.message, retryInMs: delay };
        if ((err as NodeJS.ErrnoException).code === 'ENOSPC') {
          // Nothing unsynced was published; senders keep serving what is stored. The
          // next attempt resumes from the durable end once space returns.
          setSourceState(this.o.views, SourceState.DISK_FULL);
          this.log.error(fields, 'disk full: WAL ingest paused, senders keep serving stored WAL');
        } else if (serious) this.log.error(fields, 'upstream refused or does not match; retrying');
        else this.log.warn(fields, this.identifiedThisRound ? 'lost the upstream; reconnecting' : 'could not connect to upstream; retrying');
      } finally {
        this.conn?.close();
        this.conn = null;
        this.status({ connected: false });
      }
      this.settleFirst(null);
      if (this.stopping) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.wakeSleep = () => { clearTimeout(timer); resolve(); };
      });
      this.wakeSleep = null;
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    }
  }

  private createWriter(): void {
    this.w = new StoreWriter({
      dir: this.o.dataDir,
      segSize: this.segSize!,
      onDurable: (lsn, tli) => this.onDurable(lsn, tli),
      onFatal: (e) => {
        this.log.fatal({ err: e.message }, 'WAL could not be made durable; stopping');
        setSourceState(this.o.views, SourceState.FAILED);
        this.stopping = true;
        this.conn?.close();
        this.o.onFatal(e);
      },
    });
  }

  /** The publication rule (see the header comment). */
  private onDurable(lsn: bigint, tli: number): void {
    publishUpstreamStatus(this.o.views, { flushedLsn: lsn });
    if (sourceState(this.o.views) === SourceState.DISK_FULL) {
      setSourceState(this.o.views, SourceState.RUNNING);
      this.log.info({ flushLsn: formatLsn(lsn) }, 'WAL ingest resumed');
    }
    if (this.published?.tli !== tli && lsn < this.tliBegin) return; // switch segment not yet past the switch point
    if (!this.published) {
      const pageMagic = this.readPageMagic(tli);
      this.pageMagic = pageMagic;
      publishIdentity(this.o.views, { sysid: this.sysid!, segSize: this.segSize!, pageMagic }, { flushLsn: lsn, timeline: tli });
      this.log.info({ sysid: this.sysid!.toString(), segSize: this.segSize, timeline: tli, flushLsn: formatLsn(lsn) },
        'store ready: first WAL from upstream is durable');
    } else {
      if (this.published.tli !== tli) this.log.info({ timeline: tli, flushLsn: formatLsn(lsn) }, 'serving the new timeline');
      publishFlush(this.o.views, { flushLsn: lsn, timeline: tli });
    }
    this.published = { lsn, tli };
  }

  private readPageMagic(tli: number): number {
    const name = path.join(this.o.dataDir, segmentFileName(tli, this.tliStart / BigInt(this.segSize!), this.segSize!));
    for (const f of [`${name}.partial`, name]) {
      try {
        const fd = fs.openSync(f, 'r');
        try {
          const buf = Buffer.alloc(40);
          fs.readSync(fd, buf, 0, 40, 0);
          return readPageHeader(buf, 0).magic;
        } finally {
          fs.closeSync(fd);
        }
      } catch {
        // try the other name
      }
    }
    throw new Error('cannot read the first WAL page of the store');
  }

  // ---- ReceiverHost ----

  storeSysid(): bigint | null { return this.sysid; }
  storeSegSize(): number | null { return this.segSize; }
  storePageMagic(): number | null { return this.pageMagic; }
  writer(): StoreWriter | null { return this.w; }

  adopt(sysid: bigint, segSize: number): void {
    if (this.w) return; // a previous attempt adopted already (nothing was durable yet)
    this.sysid = sysid;
    this.segSize = segSize;
    this.createWriter();
    this.log.info({ sysid: sysid.toString(), segSize }, 'adopting the upstream\'s identity for the empty store');
  }

  hasHistory(tli: number): Buffer | null {
    try {
      return fs.readFileSync(path.join(this.o.dataDir, historyFileName(tli)));
    } catch {
      return null;
    }
  }

  saveHistory(tli: number, content: Buffer): void {
    const file = path.join(this.o.dataDir, historyFileName(tli));
    const tmp = `${file}.tmp`;
    const fd = fs.openSync(tmp, 'w', 0o600);
    try {
      fs.writeSync(fd, content);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
    fsyncDirSync(this.o.dataDir);
    this.log.info({ timeline: tli }, 'stored timeline history file from upstream');
  }

  async beginTimeline(tli: number, pos: bigint, begin: bigint): Promise<void> {
    const w = this.w!;
    await w.flush(); // the old timeline is durable (and published) before the new one starts
    w.begin(tli, pos);
    this.tliBegin = begin;
    if (pos % BigInt(this.segSize!) === 0n) await w.ensureSpare(); // the first segment is preallocated too
    this.tliStart = pos;
  }

  identified(serverVersionNum: number): void {
    this.identifiedThisRound = true;
    const w = this.w!;
    const magic = (PAGE_MAGIC_BY_MAJOR as Record<number, number>)[Math.floor(serverVersionNum / 10000)];
    if (!this.published && magic !== undefined && w.writtenLsn >= this.tliBegin) {
      // An empty store can answer IDENTIFY_SYSTEM before the first WAL arrives (an idle
      // upstream may send none for a while): the page magic follows from the server's
      // major version, and every segment's long header is checked against it.
      this.pageMagic = magic;
      publishIdentity(this.o.views, { sysid: this.sysid!, segSize: this.segSize!, pageMagic: magic },
        { flushLsn: w.writtenLsn, timeline: w.timeline });
      this.published = { lsn: w.writtenLsn, tli: w.timeline };
      this.log.info({ sysid: this.sysid!.toString(), segSize: this.segSize, timeline: w.timeline,
        flushLsn: formatLsn(w.writtenLsn) }, 'store ready: relaying from the upstream\'s position');
    }
    if (sourceState(this.o.views) !== SourceState.DISK_FULL) setSourceState(this.o.views, SourceState.RUNNING);
    this.status({ connected: true });
    this.settleFirst(null);
  }

  status(s: Partial<UpstreamStatus>): void {
    if (s.lastMessageTime !== undefined) this.streamedThisRound = true; // the receiver's "CopyData arrived"
    publishUpstreamStatus(this.o.views, s);
  }
}
