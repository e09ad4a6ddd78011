// A network cut between the relay and the primary: the relay reaches the primary
// through a TCP proxy that can freeze its connections (no FIN, no RST: packets just
// stop, as when a link goes down). The relay asks for a reply at half of
// --upstream-timeout, gives the connection up at the timeout and reconnects; the
// standby behind the relay keeps its connection throughout and receives rows written
// during and after the cut.

import net from 'node:net';
import t from 'tap';
import { startCluster, startStandby } from '../helpers/pg.ts';
import { FAST_RETRY, startRelay, waitQuery, waitRelayReady } from './lib.ts';

/** Forwards 127.0.0.1:<port> to `target`; freeze() stops every existing connection without closing it. */
async function freezableProxy(target: number): Promise<{ port: number; freeze(): void; close(): void }> {
  const pairs: [net.Socket, net.Socket][] = [];
  const server = net.createServer((client) => {
    const upstream = net.connect(target, '127.0.0.1');
    client.pipe(upstream);
    upstream.pipe(client);
    const drop = (): void => { client.destroy(); upstream.destroy(); };
    client.on('error', drop);
    upstream.on('error', drop);
    pairs.push([client, upstream]);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    freeze(): void {
      for (const [a, b] of pairs.splice(0)) {
        a.unpipe(b);
        b.unpipe(a);
        a.pause();
        b.pause();
        a.removeAllListeners('data');
        b.removeAllListeners('data');
      }
    },
    close(): void {
      server.close();
      for (const [a, b] of pairs) { a.destroy(); b.destroy(); }
    },
  };
}

t.test('a silent upstream is dropped after --upstream-timeout and reconnected; the standby stays', async (t) => {
  const primary = await startCluster({ t, name: 'net-primary', conf: FAST_RETRY });
  const proxy = await freezableProxy(primary.port);
  t.teardown(() => proxy.close());
  const relay = await startRelay(t, `host=127.0.0.1 port=${proxy.port} user=postgres application_name=relay`,
    { extra: ['--upstream-timeout', '2s'] });
  await waitRelayReady(relay);
  const standby = await startStandby({
    fromPrimary: primary, t, name: 'net-standby',
    primaryConninfo: `host=127.0.0.1 port=${relay.port} user=postgres application_name=s1`,
  });
  await primary.psql("CREATE TABLE cut (id int, note text); INSERT INTO cut VALUES (1, 'before')");
  await waitQuery(standby, 'SELECT note FROM cut WHERE id = 1', 'before');
  const receiver = await standby.psql('SELECT pid FROM pg_stat_wal_receiver');

  proxy.freeze();
  await primary.psql("INSERT INTO cut VALUES (2, 'during the cut')");
  await relay.proc.waitFor(/terminating walreceiver due to timeout/, 10_000);
  t.pass('the relay gave up the silent connection at the timeout');
  await waitQuery(standby, 'SELECT note FROM cut WHERE id = 2', 'during the cut');
  t.pass('after reconnecting, the row written during the cut reaches the standby');
  await primary.psql("INSERT INTO cut VALUES (3, 'after')");
  await waitQuery(standby, 'SELECT note FROM cut WHERE id = 3', 'after');
  t.equal(await standby.psql('SELECT pid FROM pg_stat_wal_receiver'), receiver, 'the standby never lost its connection to the relay');
});
