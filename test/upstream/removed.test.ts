// The upstream no longer has the WAL the relay must continue from (no replication slot,
// the primary recycled the segment while the relay was down): PostgreSQL 15 accepts
// START_REPLICATION and then ends the stream with "requested WAL segment ... has already
// been removed". That is not a session that worked: the relay keeps retrying with
// exponential backoff (100 ms doubling) instead of hammering the primary every 100 ms,
// and keeps serving its store meanwhile.

import fs from 'node:fs';
import t from 'tap';
import { startCluster } from '../helpers/pg.ts';
import { waitUntil } from '../helpers/proc.ts';
import { startRelay, waitRelayReady } from './lib.ts';

t.test('requested WAL segment already removed upstream: retried with growing delays', async (t) => {
  const primary = await startCluster({ t, name: 'removed-primary' });
  const conninfo = primary.tcpConnString({ application_name: 'relay' });
  const first = await startRelay(t, conninfo);
  await waitRelayReady(first);
  await first.proc.waitFor(/started streaming from upstream/, 10_000);
  t.equal((await first.stop('SIGTERM')).code, 0);
  const resumeSeg = fs.readdirSync(first.dataDir).filter((n) => /^[0-9A-F]{24}(\.partial)?$/.test(n)).sort().at(-1)!.slice(0, 24);

  // While the relay is down the primary moves on and recycles that segment.
  for (let i = 0; i < 3; i++) {
    await primary.generateWal(2);
    await primary.switchWal();
    await primary.psql('CHECKPOINT');
  }
  await waitUntil(async () => (await primary.psql(`SELECT count(*) FROM pg_ls_waldir() WHERE name = '${resumeSeg}'`)) === '0',
    20_000, `${resumeSeg} removed on the primary`);

  const relay = await startRelay(t, conninfo, { dataDir: first.dataDir });
  await relay.proc.waitFor(/"attempt":5,[^\n]*has already been removed/, 30_000);
  const failures = relay.proc.output().split('\n').filter((l) => l.includes('has already been removed'))
    .map((l) => JSON.parse(l) as { attempt: number; err: string; retryInMs: number });
  t.match(failures[0]!.err, new RegExp(`requested WAL segment ${resumeSeg} has already been removed`), 'the upstream\'s error is logged');
  t.same(failures.slice(0, 4).map((f) => f.retryInMs), [100, 200, 400, 800], 'the retry delay doubles: a refused stream is no progress');
  t.notOk(relay.proc.hasExited, 'the relay keeps running');
  t.match(relay.proc.output(), /"msg":"store recovered"/, 'and serves what it has stored');
  t.equal((await relay.stop('SIGINT')).code, 0);
});
