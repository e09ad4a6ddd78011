// One replication session (receiver.ts runSession) against a scripted upstream on
// loopback, for what a real server does only by timing: the stream's first messages
// arrive in the same TCP chunk as CopyBothResponse, so they are handled synchronously
// as the COPY handler is installed. PostgreSQL sends CopyBothResponse and then, on the
// first read, ERROR "requested WAL segment ... has already been removed"; at the end of
// a historic timeline it sends the last WAL and CopyDone together. The session must
// report the server's error, and follow the end of the timeline, in both cases.

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import t, { type Test } from 'tap';
import {
  authenticationOk, commandComplete, copyBothResponse, copyDone, dataRow, errorResponse, parameterStatus,
  readyForQuery, rowDescription, xlogData,
} from '../../src/protocol/backend.ts';
import { formatLsn } from '../../src/protocol/lsn.ts';
import { resolveConninfo } from '../../src/sources/upstream/conninfo.ts';
import { connectUpstream } from '../../src/sources/upstream/handshake.ts';
import { runSession, type ReceiverHost } from '../../src/sources/upstream/receiver.ts';
import { StoreWriter } from '../../src/sources/upstream/store-writer.ts';
import { segmentFileName } from '../../src/wal/segment.ts';

const MB = 1 << 20;
const sysid = 7300000000000000077n;
const text = (name: string) => ({ name, typeOid: 25, typeLen: -1 });

/** A server that answers the startup with trust and each query with `answer(sql)` (one write). */
async function scriptedUpstream(t: Test, answer: (sql: string) => Buffer[]): Promise<{ port: number; queries: string[] }> {
  const queries: string[] = [];
  const server = net.createServer((s) => {
    let buf = Buffer.alloc(0);
    let started = false;
    s.on('error', () => {});
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (!started) {
          if (buf.length < 4 || buf.length < buf.readUInt32BE(0)) return;
          buf = buf.subarray(buf.readUInt32BE(0));
          started = true;
          s.write(Buffer.concat([authenticationOk(), parameterStatus('server_version', '15.4'), readyForQuery()]));
          continue;
        }
        if (buf.length < 5 || buf.length < 1 + buf.readUInt32BE(1)) return;
        const type = String.fromCharCode(buf[0]!);
        const body = buf.subarray(5, 1 + buf.readUInt32BE(1));
        buf = buf.subarray(1 + buf.readUInt32BE(1));
        if (type === 'Q') {
          const sql = body.subarray(0, body.length - 1).toString();
          queries.push(sql);
          s.write(Buffer.concat(answer(sql)));
        } else if (type === 'c') {
          queries.push('CopyDone');
          s.write(Buffer.concat(answer('CopyDone')));
        } else if (type === 'X') {
          s.end();
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { port: (server.address() as net.AddressInfo).port, queries };
}

function row(fields: string[], values: (string | null)[], tag: string): Buffer[] {
  return [rowDescription(fields.map(text)), dataRow(values), commandComplete(tag), readyForQuery()];
}

/** A host whose store is `tli` written up to `pos` (inside segment 1, whose .partial exists). */
function storeHost(t: Test, tli: number, pos: bigint) {
  const dir = t.testdir({});
  fs.writeFileSync(path.join(dir, `${segmentFileName(tli, 1n, MB)}.partial`), Buffer.alloc(MB));
  const w = new StoreWriter({ dir, segSize: MB, onDurable: () => {}, onFatal: (e) => t.fail(e.message) });
  w.begin(tli, pos);
  t.teardown(() => w.close());
  const began: string[] = [];
  const saved: number[] = [];
  const histories = new Map<number, Buffer>();
  const host: ReceiverHost = {
    slot: null, timeoutMs: 0, statusIntervalMs: 10_000,
    storeSysid: () => sysid, storeSegSize: () => MB, storePageMagic: () => null,
    adopt: () => t.fail('a store with WAL adopts nothing'),
    writer: () => w,
    saveHistory: (tl, content) => { saved.push(tl); histories.set(tl, content); },
    hasHistory: (tl) => histories.get(tl) ?? null,
    beginTimeline: async (tl, p) => { await w.flush(); w.begin(tl, p); began.push(`${tl}@${formatLsn(p)}`); },
    identified: () => {},
    status: () => {},
    log: { info: () => {}, warn: () => {}, debug: () => {} },
  };
  return { host, w, began, saved };
}

const connect = (port: number) =>
  connectUpstream(resolveConninfo(`host=127.0.0.1 port=${port} user=rep sslmode=disable`, { env: {} }));
const show = row(['wal_segment_size'], ['1MB'], 'SHOW');

t.test('CopyBothResponse and the ERROR in one chunk: the server\'s error is what the session reports', async (t) => {
  const pos = BigInt(MB) + 4096n;
  const removed = 'requested WAL segment 000000010000000000000001 has already been removed';
  const up = await scriptedUpstream(t, (sql) => {
    if (sql === 'IDENTIFY_SYSTEM') return row(['systemid', 'timeline', 'xlogpos', 'dbname'], [String(sysid), '1', '0/300000', null], 'IDENTIFY_SYSTEM');
    if (sql === 'SHOW wal_segment_size') return show;
    if (sql.startsWith('START_REPLICATION')) {
      return [copyBothResponse(), errorResponse({ severity: 'ERROR', code: '58P01', message: removed }), readyForQuery()];
    }
    return [errorResponse({ severity: 'ERROR', code: '42601', message: `unexpected ${sql}` }), readyForQuery()];
  });
  const { host } = storeHost(t, 1, pos);
  const conn = await connect(up.port);
  t.teardown(() => conn.close());
  const err = await runSession(conn, host).then(() => null, (e: Error) => e);
  t.equal(up.queries.at(-1), `START_REPLICATION ${formatLsn(pos)} TIMELINE 1`);
  t.equal(err?.message, `could not receive data from WAL stream: ERROR:  ${removed}`);
});

t.test('the last WAL of a historic timeline and CopyDone in one chunk: the session follows the next timeline', async (t) => {
  const pos = BigInt(MB) + 4096n;
  const wal = Buffer.alloc(200, 0x5a);
  const sw = pos + BigInt(wal.length);
  const history = `1\t${formatLsn(sw)}\tno recovery target specified\n`;
  const up = await scriptedUpstream(t, (sql) => {
    if (sql === 'IDENTIFY_SYSTEM') return row(['systemid', 'timeline', 'xlogpos', 'dbname'], [String(sysid), '2', '0/300000', null], 'IDENTIFY_SYSTEM');
    if (sql === 'SHOW wal_segment_size') return show;
    if (sql === 'TIMELINE_HISTORY 2') return row(['filename', 'content'], ['00000002.history', history], 'TIMELINE_HISTORY');
    if (sql === `START_REPLICATION ${formatLsn(pos)} TIMELINE 1`) return [copyBothResponse(), xlogData(pos, sw, 0n, wal), copyDone()];
    if (sql === 'CopyDone') {
      return [rowDescription([{ name: 'next_tli', typeOid: 20, typeLen: 8 }, text('next_tli_startpos')]), dataRow(['2', formatLsn(sw)]),
        commandComplete('START_STREAMING'), commandComplete('START_REPLICATION'), readyForQuery()];
    }
    return [errorResponse({ severity: 'ERROR', code: 'XX000', message: 'end of script' }), readyForQuery()];
  });
  const { host, w, began, saved } = storeHost(t, 1, pos);
  const conn = await connect(up.port);
  t.teardown(() => conn.close());
  const err = await runSession(conn, host).then(() => null, (e: Error) => e);
  t.equal(err?.message, 'end of script', 'the session went on until the script ended');
  t.same(saved, [2], '00000002.history stored');
  t.same(began, [`2@${formatLsn(BigInt(MB))}`], 'timeline 2 begun at the switch segment\'s start');
  t.equal(up.queries.at(-1), `START_REPLICATION ${formatLsn(BigInt(MB))} TIMELINE 2`, 'and streamed from there');
  t.equal(w.timeline, 2);
  const tl1 = fs.readFileSync(path.join(w.dir, `${segmentFileName(1, 1n, MB)}.partial`));
  t.equal(tl1.compare(wal, 0, wal.length, 4096, 4096 + wal.length), 0, 'timeline 1 stored up to the switch point');
});
