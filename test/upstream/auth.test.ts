// Acceptance: an upstream that requires passwords (password_encryption scram, hba
// scram-sha-256, md5 and password lines). The relay authenticates with SCRAM-SHA-256
// (password in a URI), md5 (password from --upstream-password-file) and cleartext
// (password from a passfile named by PGPASSFILE); a wrong password is a clear error
// in the relay's log, retried with backoff while the relay keeps running. A store
// holding another cluster's WAL is refused at startup: exit status 1, nothing written.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { startCluster } from '../helpers/pg.ts';
import { makeTempDir } from '../helpers/proc.ts';
import { startWalsender } from '../helpers/server.ts';
import { countLines, startRelay, waitRelayReady } from './lib.ts';

t.test('SCRAM-SHA-256, md5 and cleartext upstreams; a wrong password; another cluster', async (t) => {
  const primary = await startCluster({
    t, name: 'auth-primary', conf: { password_encryption: 'scram-sha-256' },
    hbaDefaults: false,
    hba: [
      'local all all trust',
      'host replication rscram 127.0.0.1/32 scram-sha-256',
      'host replication rmd5 127.0.0.1/32 md5',
      'host replication rpass 127.0.0.1/32 password',
      'host all all 127.0.0.1/32 reject',
    ],
  });
  await primary.psql(`CREATE ROLE rscram LOGIN REPLICATION PASSWORD 'scram secret';
    SET password_encryption = 'md5'; CREATE ROLE rmd5 LOGIN REPLICATION PASSWORD 'md5 secret';
    CREATE ROLE rpass LOGIN REPLICATION PASSWORD 'clear secret';`);
  t.match(await primary.psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'rscram'"), /^SCRAM-SHA-256\$4096:/,
    'the upstream stores a SCRAM verifier');
  const secrets = await makeTempDir('pgws-auth-secrets-');
  t.teardown(() => secrets.remove());

  const served = async (relay: Awaited<ReturnType<typeof startRelay>>, user: string): Promise<void> => {
    await waitRelayReady(relay);
    await relay.proc.waitFor(/started streaming from upstream/, 10_000);
    t.equal(await primary.psql(`SELECT usename, state FROM pg_stat_replication WHERE application_name = '${user}'`),
      `${user}|streaming`, `the primary streams to the relay authenticated as ${user}`);
    t.equal((await relay.stop('SIGTERM')).code, 0);
  };

  // SCRAM-SHA-256, password in a URI (percent-encoded space).
  await served(await startRelay(t, `postgresql://rscram:scram%20secret@127.0.0.1:${primary.port}/?application_name=rscram`), 'rscram');

  // md5, password from --upstream-password-file.
  fs.writeFileSync(path.join(secrets.path, 'md5pw'), 'md5 secret\n', { mode: 0o600 });
  await served(await startRelay(t, `host=127.0.0.1 port=${primary.port} user=rmd5 application_name=rmd5`,
    { extra: ['--upstream-password-file', path.join(secrets.path, 'md5pw')] }), 'rmd5');

  // Cleartext, password from the passfile PGPASSFILE names.
  const passfile = path.join(secrets.path, 'pgpass');
  fs.writeFileSync(passfile, `127.0.0.1:${primary.port}:replication:rpass:clear secret\n`, { mode: 0o600 });
  await served(await startRelay(t, `host=127.0.0.1 port=${primary.port} user=rpass application_name=rpass`,
    { env: { PGPASSFILE: passfile } }), 'rpass');

  // A wrong password: logged clearly, retried, the relay keeps running.
  const wrong = await startRelay(t, `host=127.0.0.1 port=${primary.port} user=rscram password=nope application_name=wrong`);
  await wrong.proc.waitFor(/"attempt":3,[^\n]*password authentication failed/, 10_000);
  const line = wrong.proc.output().split('\n').find((l) => l.includes('password authentication failed'))!;
  const entry = JSON.parse(line) as { level: number; err: string; retryInMs: number };
  t.equal(entry.level, 50, 'logged as an error');
  t.match(entry.err, /connection to server at "127\.0\.0\.1", port \d+ failed: FATAL: {2}password authentication failed for user "rscram"/,
    'with libpq\'s wording');
  t.notMatch(wrong.proc.output(), /nope/, 'the password itself is never logged');
  t.ok(countLines(wrong, /"msg":"connecting to upstream"/) >= 3, 'each attempt is logged');
  t.notOk(wrong.proc.hasExited, 'the relay keeps running and retrying');
  t.equal((await wrong.stop('SIGINT')).code, 0);

  // Another cluster: the store of this relay holds WAL of the first primary.
  const store = await makeTempDir('pgws-auth-store-');
  t.teardown(() => store.remove());
  const first = await startRelay(t, `host=127.0.0.1 port=${primary.port} user=rpass application_name=first`,
    { dataDir: store.path, env: { PGPASSFILE: passfile } });
  await waitRelayReady(first);
  await primary.psql('SELECT pg_switch_wal(); CHECKPOINT'); // something to store
  await first.proc.waitFor(/store ready/, 10_000);
  t.equal((await first.stop('SIGTERM')).code, 0);
  const other = await startCluster({ t, name: 'auth-other' });
  const before = fs.readdirSync(store.path).sort();
  const refused = await startWalsender(['--source', 'upstream', '--upstream', other.tcpConnString(), '--data-dir', store.path], { t })
    .then(() => null, (e: Error) => e);
  t.ok(refused, 'the relay does not start');
  t.match(refused?.message, /exited \(code 1,/, 'exit status 1');
  t.match(refused?.message, /system identifier \d+ differs from the store's \d+: it is another database cluster/, 'a clear error');
  t.same(fs.readdirSync(store.path).sort(), before, 'nothing was written to the store');
});
