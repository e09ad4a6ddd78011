// A timeline switch arriving in an archive the way pg_receivewal writes it: timeline 1's
// complete segments, 00000002.history, and timeline 2's first segment still open as a
// zero-padded .partial. A standby streaming timeline 1 must get nothing past the flush
// position: the switch segment is served (from timeline 2's file) only once that file
// is complete and validated, never from the unvalidated .partial.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { parseServerCopyData } from '../../src/protocol/client.ts';
import { formatLsn } from '../../src/protocol/lsn.ts';
import { WalGenerator } from '../../src/wal/generator.ts';
import { segmentFileName } from '../../src/wal/segment.ts';
import { makeTempDir } from '../helpers/proc.ts';
import { startWalsender } from '../helpers/server.ts';
import { rowOf, types, WireClient } from '../helpers/wire.ts';

const MB = 1 << 20;
const seg = BigInt(MB);
const archive = await makeTempDir('pgws-arch-switch-');
t.teardown(() => archive.remove());

// Timeline 1 from segment 1 to a switch point inside segment 3; timeline 2 from there.
const sysid = WalGenerator.newSystemIdentifier();
const tl1 = new WalGenerator({ sysid, tli: 1, segSize: MB, startLsn: seg, prevRecPtr: 0n });
const wal1 = tl1.generate(Number(2n * seg) + 300_000).bytes;
const switchPoint = tl1.endLsn;
const tl2 = new WalGenerator({ sysid, tli: 2, segSize: MB, startLsn: switchPoint, prevRecPtr: tl1.prevRecPtr });
const wal2 = tl2.generate(Number(4n * seg - switchPoint)).bytes;
// Timeline 2's first segment: its copy of timeline 1 up to the switch point, then timeline 2.
const tl2seg3 = Buffer.concat([wal1.subarray(Number(2n * seg)), wal2]).subarray(0, MB);
if (tl2seg3.length !== MB) throw new Error("generator produced too little WAL");

const put = (name: string, bytes: Buffer): void => {
  // Atomically, as archive_command should: a temporary name, then rename.
  fs.writeFileSync(path.join(archive.path, `.${name}.tmp`), bytes);
  fs.renameSync(path.join(archive.path, `.${name}.tmp`), path.join(archive.path, name));
};
put(segmentFileName(1, 1n, MB), wal1.subarray(0, MB));
put(segmentFileName(1, 2n, MB), wal1.subarray(MB, 2 * MB));
put('00000002.history', Buffer.from(`1\t${formatLsn(switchPoint)}\tno recovery target specified\n`));
// pg_receivewal pre-pads the segment it is receiving with zeros.
fs.writeFileSync(path.join(archive.path, `${segmentFileName(2, 3n, MB)}.partial`), Buffer.alloc(MB));

const ws = await startWalsender(['--source', 'archive', '--archive-dir', archive.path], { t });

t.test('historic streaming stops at the flush position until the switch segment is complete', async (t) => {
  const c = await WireClient.replication(ws.port);
  c.query('IDENTIFY_SYSTEM');
  const id = rowOf((await c.until('Z'))[1]!);
  t.same(id.slice(1, 3), ['2', '0/300000'], 'flush position: the end of the last complete segment');

  c.query('START_REPLICATION 0/100000 TIMELINE 1');
  t.equal((await c.next())?.type, 'W');
  let pos = 0x100000n;
  const got: Buffer[] = [];
  const readUntil = async (target: bigint, timeoutMs: number): Promise<void> => {
    while (pos < target) {
      const m = (await c.next(timeoutMs))!;
      t.equal(m.type, 'd', 'CopyData while streaming');
      const msg = parseServerCopyData(m.body);
      if (msg.kind !== 'w') continue;
      t.equal(msg.dataStart, pos, 'contiguous');
      pos += BigInt(msg.data.length);
      got.push(msg.data);
    }
  };
  await readUntil(3n * seg, 10_000);
  t.equal(formatLsn(pos), '0/300000', 'exactly up to the flush position');
  // Nothing more may come while timeline 2's first segment is only a .partial.
  const early = await c.next(2500).catch(() => null);
  const seen = early?.type === 'd' ? parseServerCopyData(early.body) : null;
  t.equal(seen?.kind === 'w' ? `XLogData at ${formatLsn(seen.dataStart)}, walEnd ${formatLsn(seen.walEnd)}` : early?.type ?? null, null,
    'nothing past the flush position');

  put(segmentFileName(2, 3n, MB), tl2seg3); // the segment completes
  await readUntil(switchPoint, 10_000);
  t.equal(formatLsn(pos), formatLsn(switchPoint), 'then up to the switch point');
  t.ok(Buffer.concat(got).equals(wal1.subarray(0, Number(switchPoint - seg))), 'every byte is timeline 1\'s WAL');
  t.equal((await c.next())?.type, 'c', 'end of timeline 1');
  c.write(Buffer.from([0x63, 0, 0, 0, 4]));
  const tail = await c.until('Z');
  t.equal(types(tail), 'TDCCZ');
  t.same(rowOf(tail[1]!), ['2', formatLsn(switchPoint)]);
  c.end();
});
