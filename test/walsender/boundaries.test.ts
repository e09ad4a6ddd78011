// XLogData at the edges, over an archive of 1 GiB segments (sparse files: only the
// bytes streamed here are written): a start point that is not page aligned, the segment
// boundary that is also a log-id boundary (0/C0000000's segment ends at 1/0, file
// 000000010000000100000000), messages of at most 128 KiB cut at page boundaries,
// walEnd = the flush position, every byte equal to the files; a start exactly at the
// flush position (nothing to send), and one byte past it (PostgreSQL's error).

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { parseServerCopyData } from '../../src/protocol/client.ts';
import { formatLsn } from '../../src/protocol/lsn.ts';
import { WalGenerator } from '../../src/wal/generator.ts';
import { segmentFileName, XLOG_BLCKSZ } from '../../src/wal/segment.ts';
import { makeTempDir } from '../helpers/proc.ts';
import { startWalsender } from '../helpers/server.ts';
import { errorOf, rowOf, tagOf, types, WireClient } from '../helpers/wire.ts';

const GB = 1 << 30;
const seg = BigInt(GB);
const archive = await makeTempDir('pgws-1g-');
t.teardown(() => archive.remove());

const sysid = WalGenerator.newSystemIdentifier();
// Segments 3 and 4 (0/C0000000 and 1/0): each a 1 GiB sparse file with a valid first page,
// and real WAL around the boundary between them.
const tailStart = 4n * seg - 65536n;
const edge = new WalGenerator({ sysid, tli: 1, segSize: GB, startLsn: tailStart, prevRecPtr: 0n }).generate(3 * 65536).bytes;
for (const s of [3n, 4n]) {
  const file = path.join(archive.path, segmentFileName(1, s, GB));
  const fd = fs.openSync(file, 'w');
  const first = new WalGenerator({ sysid, tli: 1, segSize: GB, startLsn: s * seg, prevRecPtr: 0n }).generate(XLOG_BLCKSZ).bytes;
  fs.writeSync(fd, first.subarray(0, XLOG_BLCKSZ), 0, XLOG_BLCKSZ, 0);
  fs.ftruncateSync(fd, GB);
  fs.closeSync(fd);
}
// The bytes around the boundary overwrite: 64 KiB at the end of segment 3, the rest at the start of segment 4.
const fd3 = fs.openSync(path.join(archive.path, segmentFileName(1, 3n, GB)), 'r+');
fs.writeSync(fd3, edge, 0, 65536, GB - 65536);
fs.closeSync(fd3);
const fd4 = fs.openSync(path.join(archive.path, segmentFileName(1, 4n, GB)), 'r+');
fs.writeSync(fd4, edge, 65536, edge.length - 65536, 0);
fs.closeSync(fd4);
if (segmentFileName(1, 4n, GB) !== '000000010000000100000000') throw new Error('the second file should start log id 1');

/** The store's bytes at [from, to). */
function storeBytes(from: bigint, to: bigint): Buffer {
  const out: Buffer[] = [];
  for (let p = from; p < to;) {
    const s = p / seg;
    const end = to < (s + 1n) * seg ? to : (s + 1n) * seg;
    const fd = fs.openSync(path.join(archive.path, segmentFileName(1, s, GB)), 'r');
    const b = Buffer.alloc(Number(end - p));
    fs.readSync(fd, b, 0, b.length, Number(p - s * seg));
    fs.closeSync(fd);
    out.push(b);
    p = end;
  }
  return Buffer.concat(out);
}

const ws = await startWalsender(['--source', 'archive', '--archive-dir', archive.path], { t });
const flush = 5n * seg; // the end of segment 4

t.test('the store of 1 GiB segments', async (t) => {
  const c = await WireClient.replication(ws.port);
  c.query('SHOW wal_segment_size');
  t.equal(rowOf((await c.until('Z'))[1]!)[0], '1GB');
  c.query('IDENTIFY_SYSTEM');
  t.equal(rowOf((await c.until('Z'))[1]!)[2], formatLsn(flush), 'flush position: the end of segment 4 (1/40000000)');
  c.end();
});

t.test('unaligned start, across the segment and log-id boundary', async (t) => {
  const c = await WireClient.replication(ws.port);
  const start = tailStart + 8n * 1000n + 40n; // inside a page, not at a page start
  const stop = 4n * seg + 3n * 131072n;
  c.query(`START_REPLICATION ${formatLsn(start)} TIMELINE 1`);
  t.equal((await c.next())?.type, 'W');
  let pos = start;
  const lens: number[] = [];
  const got: Buffer[] = [];
  while (pos < stop) {
    const m = (await c.next())!;
    const msg = parseServerCopyData(m.body);
    if (msg.kind !== 'w') continue;
    t.equal(formatLsn(msg.dataStart), formatLsn(pos), 'contiguous');
    t.equal(formatLsn(msg.walEnd), formatLsn(flush), 'walEnd is the flush position');
    const end = pos + BigInt(msg.data.length);
    t.ok(msg.data.length <= 131072, 'at most 128 KiB');
    t.ok(end % BigInt(XLOG_BLCKSZ) === 0n, `cut at a page boundary (${formatLsn(end)})`);
    t.ok(pos / seg === (end - 1n) / seg, 'within one segment');
    lens.push(msg.data.length);
    got.push(msg.data);
    pos = end;
  }
  t.equal(formatLsn(4n * seg), '1/0', 'segment 3 ends at 1/0');
  t.same(lens.slice(0, 2), [Number(4n * seg - start), 131072], 'the first message ends at the segment end, then full messages');
  t.ok(Buffer.concat(got).equals(storeBytes(start, pos)), 'every byte as in the segment files');
  c.write(Buffer.from([0x63, 0, 0, 0, 4]));
  t.equal(types((await c.until('Z')).filter((m) => m.type !== 'd')), 'cCCZ');
  c.end();
});

t.test('a start exactly at the flush position sends nothing; one byte past it is an error', async (t) => {
  const c = await WireClient.replication(ws.port);
  c.query(`START_REPLICATION ${formatLsn(flush)} TIMELINE 1`);
  t.equal((await c.next())?.type, 'W');
  t.equal(await c.next(1500).catch(() => null), null, 'no XLogData: nothing past the flush position');
  c.write(Buffer.from([0x63, 0, 0, 0, 4]));
  const tail = await c.until('Z');
  t.equal(types(tail), 'cCCZ');
  t.same(tail.slice(1, 3).map(tagOf), ['START_STREAMING', 'START_REPLICATION']);

  c.query(`START_REPLICATION ${formatLsn(flush + 1n)} TIMELINE 1`);
  const ms = await c.until('Z');
  t.equal(types(ms), 'WEZ');
  t.same(errorOf(ms[1]!), { severity: 'ERROR', code: 'XX000', detail: undefined,
    message: `requested starting point ${formatLsn(flush + 1n)} is ahead of the WAL flush position of this server ${formatLsn(flush)}` });
  c.end();
});
