// Owns one replication session with the upstream, as a walreceiver / pg_receivewal
// runs it: IDENTIFY_SYSTEM and SHOW wal_segment_size (checked against the store:
// another cluster is never mixed in), the replication slot (created if missing),
// where to start (the store's end; for an empty store the slot's restart_lsn or the
// upstream's position, rounded down to a segment), timeline histories, then
// START_REPLICATION and the COPY stream: XLogData appended to the store in order,
// keepalives answered, write/flush positions reported, and the end-of-timeline
// exchange followed onto the next timeline. Returns or throws when the connection
// ends; the source reconnects.

import { copyData, copyDone } from '../../protocol/backend.ts';
import { parseErrorFields, parseServerCopyData, standbyStatusUpdate } from '../../protocol/client.ts';
import { formatLsn, parseLsn, pgNow } from '../../protocol/lsn.ts';
import { parseHistoryFile, type TimelineHistoryEntry } from '../../wal/history.ts';
import { validateSegmentLongHeader, SIZE_OF_LONG_PHD } from '../../wal/page.ts';
import { historyFileName } from '../../wal/segment.ts';
import { ConnectError, UpstreamError, type BackendMessage, type UpstreamConnection } from './connection.ts';
import { bytesAt, slicesFrom } from './inbound.ts';
import type { StoreWriter } from './store-writer.ts';

/** The upstream belongs to another cluster or another history: never mixed into the store. */
export class MismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MismatchError';
  }
}

/** What a session needs from the source that owns the store. */
export interface ReceiverHost {
  readonly slot: string | null;
  readonly timeoutMs: number;
  readonly statusIntervalMs: number;
  /** Store identity (sysid, segment size), null while the store is empty. */
  storeSysid(): bigint | null;
  storeSegSize(): number | null;
  /** XLOG_PAGE_MAGIC of the store's WAL, once known. */
  storePageMagic(): number | null;
  /** Empty store: take the upstream's identity (the writer exists afterwards). */
  adopt(sysid: bigint, segSize: number): void;
  writer(): StoreWriter | null;
  /** Durably store a timeline history file fetched from the upstream. */
  saveHistory(tli: number, content: Buffer): void;
  hasHistory(tli: number): Buffer | null;
  /** Continue writing timeline `tli` at `pos`; `begin` is where the timeline starts. */
  beginTimeline(tli: number, pos: bigint, begin: bigint): Promise<void>;
  /** The session identified the upstream (this server version) and is about to stream. */
  identified(serverVersionNum: number): void;
  status(s: { connected?: boolean; receivedLsn?: bigint; serverEndLsn?: bigint; lastMessageTime?: bigint }): void;
  log: { info(o: object, m: string): void; warn(o: object, m: string): void; debug(o: object, m: string): void };
}

const XLOGDATA_HEADER = 25;

export async function runSession(conn: UpstreamConnection, host: ReceiverHost): Promise<void> {
  const id = await conn.query('IDENTIFY_SYSTEM');
  const row = id.rows[0];
  if (!row || row.length < 3) throw new ConnectError('could not identify system: got an unexpected IDENTIFY_SYSTEM result');
  const sysid = BigInt(row[0] ?? '0');
  let serverTli = Number(row[1]);
  const xlogpos = parseLsn(row[2] ?? '') ?? 0n;
  const segSize = await walSegmentSize(conn);

  const storeSysid = host.storeSysid();
  if (storeSysid === null) {
    host.adopt(sysid, segSize);
  } else if (storeSysid !== sysid) {
    throw new MismatchError(`the upstream's system identifier ${sysid} differs from the store's ${storeSysid}: ` +
      'it is another database cluster; use an empty --data-dir to relay it');
  } else if (host.storeSegSize() !== segSize) {
    throw new MismatchError(`the upstream's WAL segment size ${segSize} differs from the store's ${host.storeSegSize()}`);
  }
  if (host.slot) await createSlot(conn, host.slot);

  let writer = host.writer()!;
  let tli = writer.timeline;
  let pos = writer.writtenLsn;
  if (tli === 0) {
    // Empty store: like pg_receivewal, the slot's restart point, else the server's position.
    let start = xlogpos;
    let startTli = serverTli;
    if (host.slot && conn.serverVersionNum >= 150000) {
      const r = await conn.query(`READ_REPLICATION_SLOT ${host.slot}`);
      const slotRow = r.rows[0];
      const restart = slotRow?.[1] ? parseLsn(slotRow[1]) : null;
      if (restart && slotRow?.[2]) { start = restart; startTli = Number(slotRow[2]); }
    }
    pos = start - (start % BigInt(segSize));
    const history = await fetchHistories(conn, host, startTli);
    await host.beginTimeline(startTli, pos, history.at(-1)!.begin);
    writer = host.writer()!;
    tli = startTli;
  } else if (serverTli > tli) {
    // The upstream moved on (a promoted standby): where did our timeline end in its history?
    const history = await fetchHistories(conn, host, serverTli);
    const mineIdx = history.findIndex((e) => e.tli === tli);
    if (mineIdx < 0) {
      throw new MismatchError(`the store's timeline ${tli} is not in the upstream's history (timeline ${serverTli})`);
    }
    const mine = history[mineIdx]!;
    if (mine.end !== null && pos > mine.end) {
      // We hold WAL of our timeline past the point where the upstream's history left it.
      // Those bytes stay under our timeline's file names; the next timeline starts fresh
      // from the switch segment, as the upstream serves it.
      const next = history[mineIdx + 1]!;
      host.log.warn({ timeline: tli, storeEnd: formatLsn(pos), switchPoint: formatLsn(mine.end), nextTimeline: next.tli },
        'the store holds WAL past the upstream\'s switch point; that WAL is left on the old timeline');
      pos = mine.end - (mine.end % BigInt(segSize));
      tli = next.tli;
      await host.beginTimeline(tli, pos, next.begin);
    }
  } else if (serverTli < tli) {
    throw new ConnectError(`highest timeline ${serverTli} of the upstream is behind the store's timeline ${tli}`);
  }
  host.identified(conn.serverVersionNum);

  for (;;) {
    const slotPart = host.slot ? `SLOT "${host.slot}" ` : '';
    const started = await conn.startCopy(`START_REPLICATION ${slotPart}${formatLsn(pos)} TIMELINE ${tli}`);
    host.log.info({ timeline: tli, startPoint: formatLsn(pos), copy: started.kind === 'copy' }, 'started streaming from upstream');
    const results = started.kind === 'copy' ? await stream(conn, host, writer, tli) : started.results;
    const next = results.find((r) => r.fields[0] === 'next_tli')?.rows[0];
    if (!next) throw new ConnectError('replication stream ended without a next timeline');
    const nextTli = Number(next[0]);
    const switchPoint = parseLsn(next[1] ?? '') ?? 0n;
    if (!(nextTli > tli) || switchPoint > writer.writtenLsn) {
      throw new ConnectError(`server stopped streaming timeline ${tli} at ${formatLsn(writer.writtenLsn)}, but reported next timeline ${nextTli} to begin at ${formatLsn(switchPoint)}`);
    }
    host.log.info({ timeline: tli, switchPoint: formatLsn(switchPoint), nextTimeline: nextTli }, 'end of timeline reached on upstream');
    const history = await fetchHistories(conn, host, nextTli);
    serverTli = Math.max(serverTli, nextTli);
    tli = nextTli;
    pos = switchPoint - (switchPoint % BigInt(segSize));
    await host.beginTimeline(tli, pos, history.at(-1)!.begin);
  }
}

async function walSegmentSize(conn: UpstreamConnection): Promise<number> {
  if (conn.serverVersionNum < 100000) return 16 << 20;
  const r = await conn.query('SHOW wal_segment_size');
  const m = /^(\d+)\s*(MB|GB|kB)?$/.exec(r.rows[0]?.[0] ?? '');
  if (!m) throw new ConnectError(`could not parse WAL segment size "${r.rows[0]?.[0]}"`);
  const unit = m[2] === 'GB' ? 1 << 30 : m[2] === 'MB' ? 1 << 20 : m[2] === 'kB' ? 1024 : 1;
  return Number(m[1]) * unit;
}

async function createSlot(conn: UpstreamConnection, slot: string): Promise<void> {
  try {
    await conn.query(`CREATE_REPLICATION_SLOT "${slot}" PHYSICAL RESERVE_WAL`);
  } catch (e) {
    if (e instanceof UpstreamError && e.code === '42710') return; // already exists: ours from before
    throw e;
  }
}

/** Fetch every history file up to `tli` that the store lacks; returns the history of `tli`. */
async function fetchHistories(conn: UpstreamConnection, host: ReceiverHost, tli: number): Promise<TimelineHistoryEntry[]> {
  if (tli === 1) return [{ tli: 1, begin: 0n, end: null }];
  let text: Buffer | null = null;
  for (let t = 2; t <= tli; t++) {
    const have = host.hasHistory(t);
    if (have && t !== tli) continue;
    let content: Buffer;
    try {
      const r = await conn.query(`TIMELINE_HISTORY ${t}`);
      const [name, body] = r.rows[0] ?? [];
      if (name !== historyFileName(t) || body === null || body === undefined) {
        throw new ConnectError(`server reported unexpected history file name for timeline ${t}: ${name}`);
      }
      content = Buffer.from(body, 'utf8');
    } catch (e) {
      // Intermediate timelines may be gone upstream; the newest one is required.
      if (t !== tli && e instanceof UpstreamError) continue;
      throw e;
    }
    parseHistoryFile(content.toString('utf8'), t); // throws on a malformed file: never stored
    if (have && !have.equals(content)) {
      throw new MismatchError(`the upstream's history of timeline ${t} differs from the store's: the histories diverged`);
    }
    if (!have) host.saveHistory(t, content);
    if (t === tli) text = content;
  }
  return parseHistoryFile(text!.toString('utf8'), tli);
}

/** The COPY stream of one START_REPLICATION; resolves with the end-of-timeline results. */
function stream(conn: UpstreamConnection, host: ReceiverHost, writer: StoreWriter, tli: number) {
  return new Promise<Awaited<ReturnType<UpstreamConnection['readResults']>>>((resolve, reject) => {
    let carry: Buffer | null = null; // < 40 bytes at a segment start, held until its long header is whole
    let lastStatus = 0;
    let lastSent = { write: -1n, flush: -1n };
    let pinged = false;
    let done = false;
    // Set once the COPY handler is installed: messages that came with CopyBothResponse are
    // handled as it is installed, and may end the stream before (finish clears it).
    let timer: NodeJS.Timeout | undefined;
    const segSize = BigInt(writer.segSize);

    const sendStatus = (replyRequested: boolean, force: boolean): void => {
      const write = writer.writtenLsn;
      const flush = writer.durableLsn;
      if (!force && !replyRequested && write === lastSent.write && flush === lastSent.flush) return;
      conn.write(copyData(standbyStatusUpdate(write, flush, 0n, pgNow(), replyRequested)));
      lastSent = { write, flush };
      lastStatus = Date.now();
    };
    // The messages of one event-loop turn are written together (one writev per segment):
    // under load that is many per turn, when idle it is one, written a moment later.
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let walEnd = 0n;
    let scheduled = false;
    const writePending = (): void => {
      scheduled = false;
      if (pending.length === 0) return;
      const bufs = pending;
      pending = [];
      pendingBytes = 0;
      writer.append(writer.writtenLsn, bufs);
      writer.requestSync();
      host.status({ receivedLsn: writer.writtenLsn, serverEndLsn: walEnd });
    };
    const writeSoon = (): void => {
      try {
        writePending();
      } catch (e) {
        finish(e as Error);
        conn.close();
      }
    };
    const finish = (e: Error | null): void => {
      if (done) return;
      try { writePending(); } catch (we) { e = we as Error; } // what arrived and was checked is kept
      done = true;
      clearInterval(timer);
      writer.durableListener = null;
      conn.setCopyHandler(null);
      if (e) reject(e);
    };
    writer.durableListener = () => sendStatus(false, false);

    const onXLogData = (dataStart: bigint, end: bigint, data: Buffer[], dataLen: number): void => {
      const start = writer.writtenLsn + BigInt(pendingBytes);
      const expected = start + BigInt(carry?.length ?? 0);
      if (dataStart !== expected) {
        throw new ConnectError(`got WAL data offset ${formatLsn(dataStart)}, expected ${formatLsn(expected)}`);
      }
      let bytes = carry ? [carry, ...data] : data;
      let n = dataLen + (carry?.length ?? 0);
      carry = null;
      // Check the long page header of every segment that starts here before writing a byte of it.
      for (let s = ((start + segSize - 1n) / segSize) * segSize; s < start + BigInt(n); s += segSize) {
        const off = Number(s - start);
        if (n - off < SIZE_OF_LONG_PHD) {
          carry = Buffer.concat(slicesFrom(bytes, off));
          bytes = slicesFrom(bytes, 0, off);
          n = off;
          break;
        }
        const problem = validateSegmentLongHeader(bytesAt(bytes, off, SIZE_OF_LONG_PHD), {
          segStartLsn: s, segSize: writer.segSize, sysid: host.storeSysid()!, fileTli: tli,
          pageMagic: host.storePageMagic() ?? undefined,
        });
        if (problem) throw new ConnectError(`upstream sent invalid WAL: ${problem}`);
      }
      walEnd = end;
      if (n === 0) return;
      for (const b of bytes) pending.push(b);
      pendingBytes += n;
      if (!scheduled) {
        scheduled = true;
        setImmediate(writeSoon);
      }
    };

    conn.setCopyHandler({
      data(parts: Buffer[], length: number): void {
        if (done) return;
        try {
          if (length > 0 && parts[0]![0] === 0x77 /* w */) {
            if (length < XLOGDATA_HEADER) throw new ConnectError('streaming header too small');
            const h = bytesAt(parts, 0, XLOGDATA_HEADER);
            onXLogData(h.readBigUInt64BE(1), h.readBigUInt64BE(9), slicesFrom(parts, XLOGDATA_HEADER), length - XLOGDATA_HEADER);
          } else {
            const k = parseServerCopyData(parts.length === 1 ? parts[0]! : Buffer.concat(parts, length));
            if (k.kind === 'k') {
              host.status({ serverEndLsn: k.walEnd });
              if (k.replyRequested) sendStatus(false, true);
            }
          }
          pinged = false;
          host.status({ lastMessageTime: pgNow() });
        } catch (e) {
          finish(e as Error);
        }
      },
      other(m: BackendMessage): void {
        if (done) return;
        if (m.type === 'c') {
          // End of a timeline: answer CopyDone, then the next_tli result set follows.
          try {
            writePending();
          } catch (e) {
            finish(e as Error);
            return;
          }
          done = true;
          clearInterval(timer);
          writer.durableListener = null;
          conn.write(copyDone());
          conn.readResults().then(resolve, reject);
          return;
        }
        finish(endOfCopyError(m));
      },
    });

    if (done) return; // ended by what arrived with CopyBothResponse
    // wal_receiver_status_interval and wal_receiver_timeout.
    timer = setInterval(() => {
      const now = Date.now();
      const silent = now - conn.lastReceiveMs;
      if (host.timeoutMs > 0 && silent >= host.timeoutMs) {
        finish(new ConnectError('terminating walreceiver due to timeout'));
        conn.close();
        return;
      }
      if (host.timeoutMs > 0 && !pinged && silent >= host.timeoutMs / 2) {
        pinged = true;
        sendStatus(true, true);
      } else if (now - lastStatus >= host.statusIntervalMs) {
        sendStatus(false, true);
      }
    }, 200);
    sendStatus(false, true); // pg_receivewal and the walreceiver report at once
  });
}

function endOfCopyError(m: BackendMessage): Error {
  if (m.type === 'E') {
    let e: UpstreamError;
    try {
      e = new UpstreamError(parseErrorFields(m.body));
    } catch {
      return new ConnectError('could not receive data from WAL stream: malformed ErrorResponse');
    }
    return new ConnectError(`could not receive data from WAL stream: ${e.severity}:  ${e.message}`);
  }
  if (m.type === 'C') return new ConnectError('replication terminated by upstream server (shutdown)');
  if (m.type === '\0') return new ConnectError('server closed the connection unexpectedly');
  return new ConnectError(`unexpected message type "${m.type}" during replication`);
}
