// TLS to the upstream with libpq's sslmode semantics, against PostgreSQL 15 with
// ssl=on and a certificate from a test CA (made with openssl): verify-full checks the
// chain and the host name (host=localhost, hostaddr=127.0.0.1), a host name the
// certificate does not carry or a foreign CA is refused with a clear error, verify-ca
// ignores the host name;
// SCRAM-SHA-256-PLUS channel binding is used (channel_binding=require succeeds, and
// refuses a server that authenticates without it);
// sslmode=require against a server without TLS fails as libpq does; allow and prefer
// retry the other way when the server rejects the first try (hostssl / hostnossl).

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { startCluster } from '../helpers/pg.ts';
import { isRoot, makeTempDir, postgresIds } from '../helpers/proc.ts';
import { startRelay, waitRelayReady } from './lib.ts';

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
}

/** A CA and a server certificate for DNS:localhost, EC P-256 keys (fast to make). */
function makeCerts(dir: string, prefix: string): void {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(dir, ['req', '-x509', ...ec, '-keyout', `${prefix}ca.key`, '-out', `${prefix}ca.crt`, '-subj', `/CN=${prefix}test-ca`, '-days', '2']);
  openssl(dir, ['req', ...ec, '-keyout', `${prefix}server.key`, '-out', `${prefix}server.csr`, '-subj', '/CN=localhost']);
  fs.writeFileSync(path.join(dir, 'san.ext'), 'subjectAltName=DNS:localhost\n');
  openssl(dir, ['x509', '-req', '-in', `${prefix}server.csr`, '-CA', `${prefix}ca.crt`, '-CAkey', `${prefix}ca.key`,
    '-CAcreateserial', '-out', `${prefix}server.crt`, '-days', '2', '-extfile', 'san.ext']);
}

t.test('sslmode verify-full, verify-ca, require; channel binding', async (t) => {
  const certs = await makeTempDir('pgws-tls-certs-');
  t.teardown(() => certs.remove());
  makeCerts(certs.path, '');
  makeCerts(certs.path, 'other-');
  const primary = await startCluster({
    t, name: 'tls-primary', start: false,
    conf: { ssl: 'on', ssl_cert_file: 'server.crt', ssl_key_file: 'server.key', password_encryption: 'scram-sha-256' },
    hbaDefaults: false,
    hba: ['local all all trust', 'hostssl replication rscram 127.0.0.1/32 scram-sha-256', 'hostssl replication all 127.0.0.1/32 trust'],
  });
  for (const f of ['server.crt', 'server.key']) {
    const dst = path.join(primary.dataDir, f);
    fs.copyFileSync(path.join(certs.path, f), dst);
    fs.chmodSync(dst, 0o600);
    if (isRoot) fs.chownSync(dst, postgresIds().uid, postgresIds().gid);
  }
  await primary.start();
  await primary.psql("CREATE ROLE rscram LOGIN REPLICATION PASSWORD 'tls secret'");
  const ca = path.join(certs.path, 'ca.crt');
  const base = `host=localhost hostaddr=127.0.0.1 port=${primary.port}`;

  const ok = await startRelay(t, `${base} user=rscram password='tls secret' sslmode=verify-full sslrootcert=${ca} channel_binding=require application_name=tls`);
  await waitRelayReady(ok);
  t.match(ok.proc.output(), /"tls":true,"msg":"connected to upstream"/, 'the upstream connection is encrypted');
  t.equal(await primary.psql("SELECT ssl FROM pg_stat_ssl JOIN pg_stat_replication USING (pid) WHERE application_name = 'tls'"), 't',
    'the primary sees an SSL replication connection');
  t.pass('verify-full with the right CA and host name, SCRAM-SHA-256-PLUS with channel binding');
  t.equal((await ok.stop('SIGTERM')).code, 0);

  // libpq: with channel_binding=require, an AuthenticationOk without a channel-bound SCRAM
  // exchange (here trust) is refused: only the binding proves the server is the one expected.
  const unbound = await startRelay(t, `${base} user=postgres sslmode=require channel_binding=require application_name=unbound`);
  await unbound.proc.waitFor(/"attempt":2,[^\n]*channel binding required, but server authenticated client without channel binding/, 10_000);
  t.notMatch(unbound.proc.output(), /store ready/, 'channel_binding=require: a server that skips authentication is refused');
  // A refused attempt is a walsender in state "startup" for a moment (from authentication
  // until the relay hangs up), so only a walsender past it would mean WAL was asked for.
  t.equal(await primary.psql("SELECT count(*) FROM pg_stat_replication WHERE application_name = 'unbound' AND state <> 'startup'"), '0',
    'nothing streamed');
  await unbound.stop('SIGINT');

  const wrongHost = await startRelay(t, `host=db.example hostaddr=127.0.0.1 port=${primary.port} user=postgres sslmode=verify-full sslrootcert=${ca}`);
  await wrongHost.proc.waitFor(/"attempt":2,[^\n]*does not match host name/, 10_000);
  t.match(wrongHost.proc.output(), /server certificate for \\"localhost\\" does not match host name \\"db\.example\\"/,
    'verify-full: a certificate for another host name is refused');
  await wrongHost.stop('SIGINT');

  const caOnly = await startRelay(t, `host=db.example hostaddr=127.0.0.1 port=${primary.port} user=postgres sslmode=verify-ca sslrootcert=${ca}`);
  await waitRelayReady(caOnly);
  t.pass('verify-ca checks the chain, not the host name');
  await caOnly.stop('SIGINT');

  const otherCa = await startRelay(t, `${base} user=postgres sslmode=verify-ca sslrootcert=${path.join(certs.path, 'other-ca.crt')}`);
  await otherCa.proc.waitFor(/certificate verify failed/, 10_000);
  t.pass('verify-ca: a certificate from another CA is refused');
  await otherCa.stop('SIGINT');

  const noRoot = await startRelay(t, `${base} user=postgres sslmode=verify-full sslrootcert=${path.join(certs.path, 'missing.crt')}`);
  await noRoot.proc.waitFor(/root certificate file \\"[^"]*missing\.crt\\" does not exist/, 10_000);
  t.pass('verify-full without a root certificate file: libpq\'s error');
  await noRoot.stop('SIGINT');

  // libpq retries an error during startup once the other way: sslmode=allow first
  // without TLS, rejected here (hostssl rules only), then with it.
  const allowed = await startRelay(t, `${base} user=postgres sslmode=allow application_name=allowed`);
  await waitRelayReady(allowed);
  t.match(allowed.proc.output(), /"tls":true,"msg":"connected to upstream"/, 'sslmode=allow: refused in plaintext, connected over TLS');
  await allowed.stop('SIGINT');
  // And sslmode=prefer: over TLS first, rejected by a hostnossl rule, then without TLS.
  const hba = path.join(primary.dataDir, 'pg_hba.conf');
  fs.writeFileSync(hba, 'local all all trust\nhostnossl replication all 127.0.0.1/32 trust\n');
  await primary.psql('SELECT pg_reload_conf()');
  const preferNoSsl = await startRelay(t, `${base} user=postgres sslmode=prefer application_name=prefernossl`);
  await waitRelayReady(preferNoSsl);
  t.match(preferNoSsl.proc.output(), /"tls":false,"msg":"connected to upstream"/, 'sslmode=prefer: refused over TLS, connected in plaintext');
  await preferNoSsl.stop('SIGINT');

  const plain = await startCluster({ t, name: 'tls-plain' });
  const required = await startRelay(t, `host=127.0.0.1 port=${plain.port} user=postgres sslmode=require`);
  await required.proc.waitFor(/server does not support SSL, but SSL was required/, 10_000);
  t.pass('sslmode=require against a server without TLS fails');
  await required.stop('SIGINT');
  const preferred = await startRelay(t, `host=127.0.0.1 port=${plain.port} user=postgres sslmode=prefer`);
  await waitRelayReady(preferred);
  t.match(preferred.proc.output(), /"tls":false,"msg":"connected to upstream"/, 'sslmode=prefer falls back to plaintext');
  await preferred.stop('SIGINT');
});
