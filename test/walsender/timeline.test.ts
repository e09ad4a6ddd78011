// Timelines: an archive holding timeline 1, a switch to timeline 2 inside segment 3
// (00000002.history), and timeline 2's segments. pg_receivewal streaming timeline 1
// gets PostgreSQL's end-of-timeline sequence, fetches the history and follows onto
// timeline 2, ending with files byte-identical to the archive. The exact message
// sequence, the "start at the switch point" case and the forked-history error are
// checked on the wire.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { formatLsn } from '../../src/protocol/lsn.ts';
import { WalGenerator } from '../../src/wal/generator.ts';
import { segmentFileName } from '../../src/wal/segment.ts';
import { receiveWal, waitForSegments } from '../helpers/pg.ts';
import { makeTempDir, sha256File } from '../helpers/proc.ts';
import { startWalsender } from '../helpers/server.ts';
import { errorOf, rowOf, tagOf, types, WireClient } from '../helpers/wire.ts';

const MB = 1 << 20;
const seg = BigInt(MB);
const archive = await makeTempDir('pgws-tli-');
t.teardown(() => archive.remove());

// Timeline 1 from segment 1; it forks at a record boundary in segment 3.
const sysid = WalGenerator.newSystemIdentifier();
const tl1 = new WalGenerator({ sysid, tli: 1, segSize: MB, startLsn: seg, prevRecPtr: 0n });
let wal1 = tl1.generate(Number(3n * seg - seg) + 300_000).bytes; // from 0/100000 to past 0/300000 + 300 kB
const switchPoint = tl1.endLsn;
const tl2 = new WalGenerator({ sysid, tli: 2, segSize: MB, startLsn: switchPoint, prevRecPtr: tl1.prevRecPtr });
const wal2 = tl2.generate(Number(6n * seg - switchPoint)).bytes;
wal1 = Buffer.concat([wal1, tl1.generate(Number(4n * seg - tl1.endLsn)).bytes]); // the abandoned rest of TL1

function writeSegments(tli: number, startLsn: bigint, bytes: Buffer, prefix: Buffer | null): void {
  const all = prefix ? Buffer.concat([prefix, bytes]) : bytes;
  const base = prefix ? startLsn - BigInt(prefix.length) : startLsn;
  for (let s = base; s + seg <= base + BigInt(all.length); s += seg) {
    const off = Number(s - base);
    fs.writeFileSync(path.join(archive.path, segmentFileName(tli, s / seg, MB)), all.subarray(off, off + MB));
  }
}
writeSegments(1, seg, wal1, null); // segments 1..3 of timeline 1
// Timeline 2's first segment repeats timeline 1 up to the switch point, as after promotion.
const tl1InSeg3 = wal1.subarray(Number(3n * seg - seg), Number(switchPoint - seg));
writeSegments(2, switchPoint, wal2, tl1InSeg3); // segments 3..5 of timeline 2
const historyText = `1\t${formatLsn(switchPoint)}\tno recovery target specified\n`;
fs.writeFileSync(path.join(archive.path, '00000002.history'), historyText);

const ws = await startWalsender(['--source', 'archive', '--archive-dir', archive.path], { t });

t.test('IDENTIFY_SYSTEM reports the newest timeline; TIMELINE_HISTORY serves the file', async (t) => {
  const c = await WireClient.replication(ws.port);
  c.query('IDENTIFY_SYSTEM');
  const ms = await c.until('Z');
  t.same(rowOf(ms[1]!).slice(0, 3), [sysid.toString(), '2', '0/600000']);
  c.query('TIMELINE_HISTORY 2');
  const h = await c.until('Z');
  t.equal(types(h), 'TDCZ');
  t.same(rowOf(h[1]!), ['00000002.history', historyText]);
  c.end();
});

t.test('end of a historic timeline: CopyDone, then next_tli and both tags', async (t) => {
  const c = await WireClient.replication(ws.port);
  c.query('START_REPLICATION 0/200000 TIMELINE 1');
  t.equal((await c.next())?.type, 'W');
  let pos = 0x200000n;
  for (;;) {
    const m = (await c.next())!;
    if (m.type === 'c') break;
    t.equal(m.type, 'd');
    if (m.body[0] !== 0x77) continue;
    t.equal(m.body.readBigUInt64BE(1), pos, 'contiguous');
    t.equal(m.body.readBigUInt64BE(9), switchPoint, 'walEnd is the switch point');
    pos += BigInt(m.body.length - 25);
  }
  t.equal(formatLsn(pos), formatLsn(switchPoint), 'streamed exactly up to the switch point');
  c.write(Buffer.from([0x63, 0, 0, 0, 4]));
  const tail = await c.until('Z');
  t.equal(types(tail), 'TDCCZ');
  t.same(rowOf(tail[1]!), ['2', formatLsn(switchPoint)]);
  t.same([tagOf(tail[2]!), tagOf(tail[3]!)], ['START_STREAMING', 'START_REPLICATION']);

  c.query(`START_REPLICATION ${formatLsn(switchPoint)} TIMELINE 1`);
  const skip = await c.until('Z');
  t.equal(types(skip), 'TDCCZ', 'starting exactly at the switch point skips COPY');
  t.same(rowOf(skip[1]!), ['2', formatLsn(switchPoint)]);

  c.query(`START_REPLICATION ${formatLsn(switchPoint + 8n)} TIMELINE 1`);
  const err = await c.until('Z');
  t.equal(types(err), 'EZ');
  t.same(errorOf(err[0]!), {
    severity: 'ERROR', code: 'XX000',
    message: `requested starting point ${formatLsn(switchPoint + 8n)} on timeline 1 is not in this server's history`,
    detail: `This server's history forked from timeline 1 at ${formatLsn(switchPoint)}.`,
  });
  c.end();
});

t.test('pg_receivewal follows the timeline switch', async (t) => {
  const dir = await makeTempDir('pgws-tli-recv-');
  t.teardown(() => dir.remove());
  // A complete first segment makes pg_receivewal resume on timeline 1 at 0/200000.
  fs.copyFileSync(path.join(archive.path, '000000010000000000000001'), path.join(dir.path, '000000010000000000000001'));
  const rw = receiveWal({ host: '127.0.0.1', port: ws.port, dir: dir.path });
  t.teardown(() => rw.kill());
  const expected = ['000000010000000000000002', '00000002.history', '000000020000000000000003', '000000020000000000000004', '000000020000000000000005'];
  await waitForSegments(dir.path, expected, 20_000, { segmentSize: MB, proc: rw });
  for (const n of expected) {
    t.equal(await sha256File(path.join(dir.path, n)), await sha256File(path.join(archive.path, n)), `${n} byte-identical`);
  }
  const partial = fs.readFileSync(path.join(dir.path, '000000010000000000000003.partial'));
  const upto = Number(switchPoint - 3n * seg);
  t.ok(partial.subarray(0, upto).equals(fs.readFileSync(path.join(archive.path, '000000020000000000000003')).subarray(0, upto)),
    'timeline 1 up to the switch point, served from timeline 2\'s file');
  t.match(rw.output(), /switched to timeline 2 at/);
});
