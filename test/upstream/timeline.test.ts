// Timelines with exact bytes, an upstream pg-walsender serving a hand-built archive
// (synthetic WAL): timeline 1 runs to 0/500000, timeline 2 forks from it at a record
// boundary inside segment 3. Relay A had stored timeline 1 past the fork point: it
// keeps those bytes under timeline 1's names, fetches 00000002.history and continues
// on timeline 2 from the switch segment's start; downstream, a start on timeline 1
// past the fork is refused as PostgreSQL refuses it. Relay B was behind the fork
// point: it streams timeline 1 up to the switch point (end-of-timeline exchange) and
// follows. Both stores end byte-identical to the archive; a kill -9 of A afterwards
// recovers on timeline 2.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { formatLsn } from '../../src/protocol/lsn.ts';
import { WalGenerator } from '../../src/wal/generator.ts';
import { segmentFileName } from '../../src/wal/segment.ts';
import { makeTempDir, sha256File, waitUntil } from '../helpers/proc.ts';
import { startWalsender } from '../helpers/server.ts';
import { errorOf, rowOf, WireClient } from '../helpers/wire.ts';
import { startRelay, waitRelayReady, type Relay } from './lib.ts';

const MB = 1 << 20;
const seg = BigInt(MB);
const name = (tli: number, segno: number): string => segmentFileName(tli, BigInt(segno), MB);

// Timeline 1 from segment 1 to 0/500000; the switch point lies in segment 3.
const sysid = WalGenerator.newSystemIdentifier();
const g1 = new WalGenerator({ sysid, tli: 1, segSize: MB, startLsn: seg, prevRecPtr: 0n });
const upToSwitch = g1.generate(Number(2n * seg) + 400_000).bytes;
const sw = g1.endLsn;
const g2 = new WalGenerator({ sysid, tli: 2, segSize: MB, startLsn: sw, prevRecPtr: g1.prevRecPtr });
const tl2 = g2.generate(Number(6n * seg - sw)).bytes.subarray(0, Number(6n * seg - sw));
const tl1 = Buffer.concat([upToSwitch, g1.generate(Number(5n * seg - g1.endLsn)).bytes]).subarray(0, 4 * MB);
const tl2Files = Buffer.concat([tl1.subarray(2 * MB, Number(sw - seg)), tl2]); // segments 3..5 of timeline 2
const history = `1\t${formatLsn(sw)}\tno recovery target specified\n`;

const archive = await makeTempDir('pgws-tl-archive-');
t.teardown(() => archive.remove());
const put = (file: string, bytes: Buffer | string): void => {
  fs.writeFileSync(path.join(archive.path, `.${file}.tmp`), bytes);
  fs.renameSync(path.join(archive.path, `.${file}.tmp`), path.join(archive.path, file));
};
const putTl1 = (segno: number): void => put(name(1, segno), tl1.subarray((segno - 1) * MB, segno * MB));

t.test('relays follow a fork: past it (A) and behind it (B)', async (t) => {
  putTl1(1);
  const upstream = await startWalsender(['--source', 'archive', '--archive-dir', archive.path], { t });
  const conninfo = `host=127.0.0.1 port=${upstream.port} user=postgres`;
  const a: Relay = await startRelay(t, `${conninfo} application_name=a`);
  await waitRelayReady(a);
  const b: Relay = await startRelay(t, `${conninfo} application_name=b`);
  await waitRelayReady(b);
  putTl1(2);
  await waitUntil(() => fs.existsSync(path.join(b.dataDir, name(1, 2))), 15_000, 'B stores segment 2');
  t.equal((await b.stop('SIGTERM')).code, 0, 'B stops at 0/300000, behind the fork');

  putTl1(3);
  putTl1(4);
  await waitUntil(() => fs.existsSync(path.join(a.dataDir, name(1, 4))), 15_000, 'A stores timeline 1 to 0/500000');

  // The upstream is promoted: timeline 2 forks inside segment 3.
  put('00000002.history', history);
  for (let s = 3; s <= 5; s++) put(name(2, s), tl2Files.subarray((s - 3) * MB, (s - 2) * MB));
  await a.proc.waitFor(/"msg":"serving the new timeline"/, 20_000);
  t.match(a.proc.output(), /the store holds WAL past the upstream's switch point/, 'A noticed its timeline 1 went past the fork');
  await waitUntil(() => fs.existsSync(path.join(a.dataDir, name(2, 5))), 15_000, 'A stores timeline 2');

  const b2 = await startRelay(t, `${conninfo} application_name=b`, { dataDir: b.dataDir });
  await b2.proc.waitFor(/"msg":"end of timeline reached on upstream"/, 15_000);
  await waitUntil(() => fs.existsSync(path.join(b2.dataDir, name(2, 5))), 15_000, 'B stores timeline 2');

  for (const [relay, label] of [[a, 'A'], [b2, 'B']] as const) {
    t.equal(fs.readFileSync(path.join(relay.dataDir, '00000002.history'), 'utf8'), history, `${label} keeps the history file`);
    for (let s = 3; s <= 5; s++) {
      t.equal(await sha256File(path.join(relay.dataDir, name(2, s))), await sha256File(path.join(archive.path, name(2, s))),
        `${label}: ${name(2, s)} identical to the upstream's`);
    }
  }
  for (const s of [3, 4]) {
    t.equal(await sha256File(path.join(a.dataDir, name(1, s))), await sha256File(path.join(archive.path, name(1, s))),
      `A keeps the abandoned ${name(1, s)} as it was`);
  }
  const bTl1 = fs.readFileSync(path.join(b2.dataDir, `${name(1, 3)}.partial`));
  const upTo = Number(sw - 3n * seg);
  t.equal(bTl1.compare(tl1, 2 * MB, 2 * MB + upTo, 0, upTo), 0, 'B streamed timeline 1 exactly up to the switch point');
  t.ok(bTl1.subarray(upTo).every((x) => x === 0), 'and nothing of timeline 1 after it');

  // Downstream of A: PostgreSQL's answers for a start on timeline 1 before and after the fork.
  const c = await WireClient.replication(a.port);
  c.query('IDENTIFY_SYSTEM');
  t.same(rowOf((await c.until('Z'))[1]!).slice(0, 3), [sysid.toString(), '2', '0/600000'], 'A is on timeline 2');
  c.query('START_REPLICATION 0/400000 TIMELINE 1');
  const refused = await c.until('Z');
  const e = errorOf(refused.find((m) => m.type === 'E')!);
  t.equal(e.message, 'requested starting point 0/400000 on timeline 1 is not in this server\'s history');
  t.equal(e.detail, `This server's history forked from timeline 1 at ${formatLsn(sw)}.`);
  c.query('START_REPLICATION 0/300000 TIMELINE 1');
  t.equal((await c.next())!.type, 'W');
  const got: Buffer[] = [];
  for (;;) {
    const m = (await c.next())!;
    if (m.type === 'c') break;
    if (m.body[0] === 0x77) got.push(m.body.subarray(25));
  }
  t.equal(Buffer.concat(got).compare(tl1.subarray(2 * MB, 2 * MB + upTo)), 0, 'timeline 1 served up to the switch point');
  c.write(Buffer.from([0x63, 0, 0, 0, 4]));
  const tail = await c.until('Z');
  t.same(rowOf(tail.find((m) => m.type === 'D')!), ['2', formatLsn(sw)], 'then next_tli 2 at the switch point');
  c.end();

  // kill -9, restart: the store is recovered on timeline 2.
  await a.proc.kill('SIGKILL');
  const a2 = await startRelay(t, `${conninfo} application_name=a`, { dataDir: a.dataDir });
  t.match(a2.proc.output(), /"timeline":2,"end":"0\/600000"[^\n]*"msg":"store recovered"/, 'A restarts on timeline 2 at 0/600000');
});
