// The archive source validates before it serves: a segment whose long page header is
// wrong (here: the page address of another segment) or that is still being copied in
// (short file) is reported and never served, not even below the flush position; the
// flush position advances only over contiguous valid segments, so a segment that lands
// after a gap waits for the gap to fill.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { parseServerCopyData } from '../../src/protocol/client.ts';
import { formatLsn } from '../../src/protocol/lsn.ts';
import { WalGenerator } from '../../src/wal/generator.ts';
import { segmentFileName } from '../../src/wal/segment.ts';
import { makeTempDir, waitUntil } from '../helpers/proc.ts';
import { startWalsender } from '../helpers/server.ts';
import { errorOf, rowOf, types, WireClient } from '../helpers/wire.ts';

const MB = 1 << 20;
const archive = await makeTempDir('pgws-arch-valid-');
t.teardown(() => archive.remove());

const gen = new WalGenerator({ sysid: WalGenerator.newSystemIdentifier(), tli: 1, segSize: MB, startLsn: BigInt(MB), prevRecPtr: 0n });
const wal = gen.generate(8 * MB).bytes; // segments 1..8
const segment = (s: number): Buffer => wal.subarray((s - 1) * MB, s * MB);
const name = (s: number): string => segmentFileName(1, BigInt(s), MB);
const put = (s: number, bytes: Buffer): void => {
  fs.writeFileSync(path.join(archive.path, `.${name(s)}.tmp`), bytes);
  fs.renameSync(path.join(archive.path, `.${name(s)}.tmp`), path.join(archive.path, name(s)));
};

put(1, segment(1));
put(2, segment(2));
put(3, segment(2)); // segment 2's bytes under segment 3's name: wrong xlp_pageaddr
put(4, segment(4));
fs.writeFileSync(path.join(archive.path, name(5)), segment(5).subarray(0, MB / 2)); // still being copied

const ws = await startWalsender(['--source', 'archive', '--archive-dir', archive.path], { t });

async function flushPosition(c: WireClient): Promise<string> {
  c.query('IDENTIFY_SYSTEM');
  return rowOf((await c.until('Z'))[1]!)[2]!;
}

/** START_REPLICATION at `start`; XLogData is checked for contiguity and collected until `stop` says so. */
async function stream(c: WireClient, start: bigint, stop: (pos: bigint) => boolean): Promise<{ pos: bigint; bytes: Buffer; end: string }> {
  c.query(`START_REPLICATION ${formatLsn(start)} TIMELINE 1`);
  const w = await c.next();
  if (w?.type !== 'W') throw new Error(`expected CopyBothResponse, got ${w?.type}`);
  let pos = start;
  const chunks: Buffer[] = [];
  for (;;) {
    if (stop(pos)) return { pos, bytes: Buffer.concat(chunks), end: '' };
    const m = await c.next(5000).catch(() => null);
    if (!m) return { pos, bytes: Buffer.concat(chunks), end: 'nothing more' };
    if (m.type !== 'd') {
      const tail = [m, ...(m.type === 'Z' ? [] : await c.until('Z'))];
      return { pos, bytes: Buffer.concat(chunks), end: `${types(tail)} ${m.type === 'E' ? `${errorOf(m).code} ${errorOf(m).message}` : ''}` };
    }
    const msg = parseServerCopyData(m.body);
    if (msg.kind !== 'w') continue;
    if (msg.dataStart !== pos) throw new Error(`XLogData at ${formatLsn(msg.dataStart)}, expected ${formatLsn(pos)}`);
    pos += BigInt(msg.data.length);
    chunks.push(msg.data);
  }
}

t.test('a segment that fails validation is not served, even below the flush position', async (t) => {
  const c = await WireClient.replication(ws.port);
  t.equal(await flushPosition(c), '0/500000', 'first publication: the end of the newest valid segment');
  const r = await stream(c, BigInt(MB), () => false);
  t.equal(formatLsn(r.pos), '0/300000', 'segments 1 and 2, then no byte of segment 3');
  t.ok(r.bytes.equals(wal.subarray(0, 2 * MB)), 'byte-identical');
  t.equal(r.end, `EZ 58P01 requested WAL segment ${name(3)} has already been removed`);
  c.end();
});

t.test('from an unaligned start too, every byte before the bad segment is sent before its error', async (t) => {
  // A batch never spans two segment files, so the bad segment 3 cannot take the end of
  // segment 2 down with it; both send paths (mapped, copied) are checked.
  const servers = [ws, await startWalsender(['--source', 'archive', '--archive-dir', archive.path, '--wal-read', 'read'], { t })];
  for (const server of servers) {
    const c = await WireClient.replication(server.port);
    const start = BigInt(MB) + 0x81234n;
    const r = await stream(c, start, () => false);
    t.equal(formatLsn(r.pos), '0/300000', 'up to the end of segment 2');
    t.ok(r.bytes.equals(wal.subarray(Number(start) - MB, 2 * MB)), 'byte-identical');
    t.equal(r.end, `EZ 58P01 requested WAL segment ${name(3)} has already been removed`);
    c.end();
  }
});

t.test('a segment being copied in is published once complete; flush advances over contiguous segments only', async (t) => {
  const c = await WireClient.replication(ws.port);
  const s = await WireClient.replication(ws.port);
  const streamed = stream(s, 4n * BigInt(MB), (pos) => pos >= 6n * BigInt(MB));
  fs.appendFileSync(path.join(archive.path, name(5)), segment(5).subarray(MB / 2)); // the copy completes
  const r = await streamed;
  t.ok(r.bytes.equals(wal.subarray(3 * MB, 5 * MB)), 'segments 4 and 5, byte-identical');
  t.equal(await flushPosition(c), '0/600000');

  put(7, segment(7)); // after a gap
  await new Promise((resolve) => setTimeout(resolve, 2500)); // a watch event and two rescans
  t.equal(await flushPosition(c), '0/600000', 'segment 7 is not published while segment 6 is missing');
  put(6, segment(6));
  await waitUntil(async () => (await flushPosition(c)) === '0/800000', 10_000, 'flush over segments 6 and 7');

  put(3, segment(3)); // the bad file is replaced by the right one
  const fixed = await WireClient.replication(ws.port);
  const all = await stream(fixed, BigInt(MB), (pos) => pos >= 8n * BigInt(MB));
  t.ok(all.bytes.equals(wal.subarray(0, 7 * MB)), 'segments 1-7 byte-identical once segment 3 is right');
  for (const x of [c, s, fixed]) x.end();
});
