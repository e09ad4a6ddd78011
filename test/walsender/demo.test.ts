// Acceptance for the demo source: pg_receivewal streams live from `npm start`'s
// default source, receiving segments byte-identical to the generated ones, and
// pg_waldump reads the generated WAL without error. A restart resumes the same WAL.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { receiveWal, waitForSegments } from '../helpers/pg.ts';
import { makeTempDir, pgBin, run, sha256File, waitUntil } from '../helpers/proc.ts';
import { startWalsender } from '../helpers/server.ts';

const MB = 1 << 20;

t.test('pg_receivewal streams live from the demo source; pg_waldump reads the WAL', async (t) => {
  const data = await makeTempDir('pgws-demo-');
  const recv = await makeTempDir('pgws-demo-recv-');
  t.teardown(() => { data.remove(); recv.remove(); });
  const ws = await startWalsender(['--data-dir', data.path, '--demo-wal-segment-size', '1MB', '--wal-keep-size', '256MB', '--demo-rate', '4MB'], { t });
  const rw = receiveWal({ host: '127.0.0.1', port: ws.port, dir: recv.path });
  t.teardown(() => rw.kill());
  const m = await rw.waitFor(/starting log streaming at (\S+)/, 15_000);
  const start = BigInt(`0x${m[1]!.split('/')[1]}`) + (BigInt(`0x${m[1]!.split('/')[0]}`) << 32n);
  // Streaming starts at the segment holding the flush position; wait for the next two.
  const first = Number(start / BigInt(MB));
  const names = [first, first + 1].map((s) => `00000001000000000000${s.toString(16).toUpperCase().padStart(4, '0')}`);
  await waitForSegments(recv.path, names, 20_000, { segmentSize: MB, proc: rw });
  for (const n of names) {
    t.equal(await sha256File(path.join(recv.path, n)), await sha256File(path.join(data.path, n)), `${n} byte-identical`);
  }
  // The next segment's first bytes may still be a demo tick away when segment 2 completes.
  await waitUntil(() => fs.readdirSync(recv.path).some((n) => n.endsWith('.partial')), 10_000, 'the open segment as .partial');
  t.pass('the open segment streams as .partial');

  const complete = fs.readdirSync(data.path).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort();
  t.ok(complete.length >= 2, `${complete.length} complete segments generated`);
  const last = complete.at(-1)!;
  const endSeg = parseInt(last.slice(16), 16) + 1;
  const dump = await run(pgBin('pg_waldump'), ['-p', data.path, '-s', '0/100000', '-e', `0/${(endSeg * MB).toString(16).toUpperCase()}`, '--stats']);
  t.equal(dump.code, 0, 'pg_waldump exits 0');
  t.notMatch(dump.stderr, /error/i, 'pg_waldump reports no error');
  t.match(dump.stdout, /XLOG\s+\d+/, 'XLOG records counted');

  const before = await ws.stop('SIGTERM');
  t.equal(before.code, 0, 'SIGTERM: clean exit');
  const finalSeg = fs.readdirSync(data.path).filter((n) => n.endsWith('.partial'));
  t.equal(finalSeg.length, 1, 'one open segment left');

  // Restart on the same data directory: same system, WAL continues where it ended.
  const ws2 = await startWalsender(['--data-dir', data.path, '--demo-wal-segment-size', '1MB', '--wal-keep-size', '256MB', '--demo-rate', '4MB'], { t });
  await new Promise((r) => setTimeout(r, 1500));
  await ws2.stop('SIGTERM');
  const all = fs.readdirSync(data.path).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort();
  const lastAll = parseInt(all.at(-1)!.slice(16), 16) + 1;
  const dump2 = await run(pgBin('pg_waldump'), ['-p', data.path, '-s', '0/100000', '-e', `0/${(lastAll * MB).toString(16).toUpperCase()}`, '--stats']);
  t.equal(dump2.code, 0, 'pg_waldump reads across the restart: one unbroken xl_prev chain');
  t.notMatch(dump2.stderr, /error/i);
});
