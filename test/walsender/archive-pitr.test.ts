// A new timeline that branches off the middle of WAL already served, as a point-in-time
// recovery archiving into the same directory does: timeline 1's segments 1-4 are
// archived and published, then 00000002.history forks inside segment 2, and timeline
// 2's segments arrive, one of them failing validation (another system's). The flush
// position must follow timeline 2's own segments from the fork on, so nothing is served
// that was not validated on the new history.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { parseServerCopyData } from '../../src/protocol/client.ts';
import { formatLsn } from '../../src/protocol/lsn.ts';
import { forkPoint } from '../../src/sources/archive.ts';
import { parseHistoryFile } from '../../src/wal/history.ts';
import { WalGenerator } from '../../src/wal/generator.ts';
import { segmentFileName } from '../../src/wal/segment.ts';
import { makeTempDir, waitUntil } from '../helpers/proc.ts';
import { startWalsender } from '../helpers/server.ts';
import { rowOf, WireClient } from '../helpers/wire.ts';

const MB = 1 << 20;
const seg = BigInt(MB);
const archive = await makeTempDir('pgws-arch-pitr-');
t.teardown(() => archive.remove());

const sysid = WalGenerator.newSystemIdentifier();
const tl1 = new WalGenerator({ sysid, tli: 1, segSize: MB, startLsn: seg, prevRecPtr: 0n });
const head = tl1.generate(MB + 300_000).bytes; // 0/100000 .. the fork point inside segment 2
const fork = tl1.endLsn;
const tl2 = new WalGenerator({ sysid, tli: 2, segSize: MB, startLsn: fork, prevRecPtr: tl1.prevRecPtr });
const wal1 = Buffer.concat([head, tl1.generate(Number(5n * seg - fork)).bytes]); // timeline 1 goes on to 0/500000
const wal2 = Buffer.concat([head.subarray(MB), tl2.generate(Number(4n * seg - fork)).bytes]); // TL2's segments 2-3
if (wal1.length < 4 * MB || wal2.length < 2 * MB) throw new Error('generator produced too little WAL');

const put = (name: string, bytes: Buffer): void => {
  fs.writeFileSync(path.join(archive.path, `.${name}.tmp`), bytes);
  fs.renameSync(path.join(archive.path, `.${name}.tmp`), path.join(archive.path, name));
};
for (let s = 1; s <= 4; s++) put(segmentFileName(1, BigInt(s), MB), wal1.subarray((s - 1) * MB, s * MB));

const ws = await startWalsender(['--source', 'archive', '--archive-dir', archive.path], { t });

async function identify(c: WireClient): Promise<(string | null)[]> {
  c.query('IDENTIFY_SYSTEM');
  return rowOf((await c.until('Z'))[1]!).slice(1, 3);
}

t.test('forkPoint: where two timeline histories first differ', async (t) => {
  const h = (text: string, tli: number) => parseHistoryFile(text, tli);
  const tl1 = h('', 1);
  const tl2 = h('1\t0/3068500\tx\n', 2);
  const tl3 = h('1\t0/3068500\tx\n2\t0/5000100\ty\n', 3);
  const tl4 = h('1\t0/2000000\tz\n', 4); // another child of timeline 1, forked earlier
  t.equal(forkPoint(tl1, tl1), null, 'the same history');
  t.equal(formatLsn(forkPoint(tl1, tl2)!), '0/3068500', 'timeline 1 ended where timeline 2 began');
  t.equal(formatLsn(forkPoint(tl2, tl3)!), '0/5000100', 'a grandchild: where timeline 2 ended');
  t.equal(formatLsn(forkPoint(tl1, tl3)!), '0/3068500');
  t.equal(formatLsn(forkPoint(tl2, tl4)!), '0/2000000', 'siblings: the earlier switch point');
});

t.test('the flush position restarts at the fork and covers only validated segments of the new timeline', async (t) => {
  const c = await WireClient.replication(ws.port);
  t.same(await identify(c), ['1', '0/500000'], 'timeline 1 up to the end of segment 4');

  put('00000002.history', Buffer.from(`1\t${formatLsn(fork)}\tafter point-in-time recovery\n`));
  put(segmentFileName(2, 2n, MB), wal2.subarray(0, MB));
  const foreign = Buffer.from(wal2.subarray(MB, 2 * MB));
  foreign.writeBigUInt64LE(sysid ^ 1n, 24); // xlp_sysid of another system
  put(segmentFileName(2, 3n, MB), foreign);

  await waitUntil(async () => (await identify(c))[0] === '2', 10_000, 'the archive follows timeline 2');
  await new Promise((r) => setTimeout(r, 2500)); // a watch event and two rescans
  t.same(await identify(c), ['2', '0/300000'], 'timeline 2 up to its last valid segment (the foreign one is not published)');

  // Streaming timeline 2 from the fork's segment: its own segment 2, and nothing of the foreign file.
  const s = await WireClient.replication(ws.port);
  s.query('START_REPLICATION 0/200000 TIMELINE 2');
  t.equal((await s.next())?.type, 'W');
  let pos = 0x200000n;
  const got: Buffer[] = [];
  for (;;) {
    // Up to the end of segment 2 every message must come; after it, nothing may.
    const m = await s.next(pos < 3n * seg ? 10_000 : 2500).catch(() => null);
    if (!m) break;
    if (m.type !== 'd') {
      t.fail(`unexpected message ${m.type} while streaming`);
      break;
    }
    const msg = parseServerCopyData(m.body);
    if (msg.kind !== 'w') continue;
    t.equal(msg.dataStart, pos, 'contiguous');
    pos += BigInt(msg.data.length);
    got.push(msg.data);
  }
  t.equal(formatLsn(pos), '0/300000', 'stops at the end of timeline 2\'s segment 2');
  t.ok(Buffer.concat(got).equals(wal2.subarray(0, MB)), 'byte-identical to timeline 2\'s segment 2');

  // The good file replaces the foreign one: it is validated and published.
  put(segmentFileName(2, 3n, MB), wal2.subarray(MB, 2 * MB));
  for (;;) {
    const m = (await s.next(10_000))!;
    const msg = parseServerCopyData(m.body);
    if (msg.kind !== 'w') continue;
    t.equal(msg.dataStart, pos, 'contiguous');
    pos += BigInt(msg.data.length);
    got.push(msg.data);
    if (pos >= 4n * seg) break;
  }
  t.ok(Buffer.concat(got).equals(wal2.subarray(0, 2 * MB)), 'then timeline 2\'s segment 3, byte-identical');
  t.same(await identify(c), ['2', '0/400000']);
  s.end();
  c.end();
});
