// Acceptance: the relay killed with SIGKILL mid-stream under write load, then restarted
// on the same data directory and port, three times. A pg_receivewal downstream of the
// relay (restarted after each kill: it exits when its server goes away) must end with
// complete segments byte-identical to the primary's archived ones, without a gap; so
// must the relay's own store. No manual repair in between.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { receiveWal, startCluster } from '../helpers/pg.ts';
import { freePort, makeTempDir, sha256File, sleep, waitUntil, type LoggedProcess } from '../helpers/proc.ts';
import { startRelay, waitRelayReady, type Relay } from './lib.ts';

const KILLS = 3;

t.test('kill -9 of the relay under write load: no gap, no wrong byte', async (t) => {
  const primary = await startCluster({ t, name: 'kill-primary', archive: true });
  const port = await freePort();
  const conninfo = primary.tcpConnString({ application_name: 'relay' });
  const relayArgs = { port, extra: ['--upstream-slot', 'relay'] };
  let relay: Relay = await startRelay(t, conninfo, relayArgs);
  await waitRelayReady(relay);
  const recv = await makeTempDir('pgws-kill-recv-');
  t.teardown(() => recv.remove());
  const receivers: LoggedProcess[] = [];
  const startReceiver = (): void => {
    const rw = receiveWal({ host: '127.0.0.1', port, dir: recv.path });
    receivers.push(rw);
    t.teardown(() => rw.kill('SIGKILL'));
  };
  startReceiver();
  await receivers[0]!.waitFor(/starting log streaming/, 15_000);

  // Steady write load for the whole test: small transactions, a few MB/s of WAL.
  await primary.psql('CREATE TABLE load (id bigserial PRIMARY KEY, pad text)');
  let loading = true;
  const load = (async () => {
    while (loading) {
      await primary.psql(`DO $$ BEGIN FOR i IN 1..20 LOOP
        INSERT INTO load (pad) SELECT repeat(md5(random()::text), 20) FROM generate_series(1, 20); COMMIT; PERFORM pg_sleep(0.002); END LOOP; END $$`);
    }
  })();

  for (let k = 1; k <= KILLS; k++) {
    await sleep(700 + k * 311); // kill at varying points of the stream
    await relay.proc.kill('SIGKILL');
    await receivers.at(-1)!.exited; // pg_receivewal -n exits when its server is gone
    relay = await startRelay(t, conninfo, { ...relayArgs, dataDir: relay.dataDir });
    const recovered = /\{[^\n]*store recovered[^\n]*\}/.exec(relay.proc.output());
    t.ok(recovered, `kill ${k}: the store was recovered at startup`);
    t.comment(recovered?.[0] ?? '');
    startReceiver();
    await receivers.at(-1)!.waitFor(/starting log streaming/, 15_000);
  }
  await sleep(800);
  loading = false;
  await load;

  // Complete the last segment on the primary, then wait for it downstream.
  const { segment } = await primary.switchWal();
  const complete = (dir: string) => fs.readdirSync(dir).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort();
  await waitUntil(() => complete(recv.path).includes(segment), 60_000, `${segment} in pg_receivewal's directory`);
  await waitUntil(() => complete(relay.dataDir).includes(segment), 10_000, `${segment} in the relay's store`);

  const got = complete(recv.path);
  const first = parseInt(got[0]!.slice(16), 16);
  const last = parseInt(segment.slice(16), 16);
  t.equal(got.length, last - first + 1, `pg_receivewal holds ${got.length} contiguous complete segments`);
  t.ok(got.length >= 5, 'the load spanned several segments');
  let identical = 0;
  for (const n of got) {
    const archived = await sha256File(path.join(primary.archiveDir!, n));
    if (await sha256File(path.join(recv.path, n)) === archived && await sha256File(path.join(relay.dataDir, n)) === archived) identical++;
    else t.fail(`${n} differs from the primary's archived segment`);
  }
  t.equal(identical, got.length, 'every segment downstream and in the store is byte-identical to the archive');
  t.equal(await primary.psql("SELECT active FROM pg_replication_slots WHERE slot_name = 'relay'"), 't', 'the relay streams again');
});
