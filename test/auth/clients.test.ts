// Authentication and TLS with real PostgreSQL 15 clients (psql, pg_receivewal):
// SCRAM and md5 verifiers made by PostgreSQL itself (CREATE ROLE ... PASSWORD, read
// from pg_authid) let the right password in and refuse a wrong one with 28P01; an
// address without an hba line gets 28000, a role without REPLICATION 42501 after
// AuthenticationOk; TLS with sslmode=verify-full against a test CA, and
// channel_binding=require over TLS; users and hba re-read on SIGHUP.

import { createHash, createHmac, pbkdf2Sync } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import tlsModule from 'node:tls';
import t, { type Test } from 'tap';
import { md5Verifier } from '../../src/auth/md5.ts';
import { SETTINGS } from '../../src/config.ts';
import { AuthCode } from '../../src/protocol/backend.ts';
import { parseAuthentication, saslInitialResponse, saslResponse, sslRequest, startupMessage } from '../../src/protocol/client.ts';
import { ScramClient } from '../../src/auth/scram-client.ts';
import { receiveWal, startCluster, waitForSegments } from '../helpers/pg.ts';
import { freePort, makeTempDir, pgBin, run, sha256File } from '../helpers/proc.ts';
import { NODE, REPO_ROOT, startWalsender } from '../helpers/server.ts';
import { errorOf, types, WireClient } from '../helpers/wire.ts';
import { makeTestPki } from './certs.ts';
import { login } from './login.ts';

const MB = 1 << 20;
const tmp = await makeTempDir('pgws-auth-');
t.teardown(() => tmp.remove());
const pki = await makeTestPki(tmp.path);

// Verifiers as PostgreSQL 15 stores them.
const pg = await startCluster({ t, name: 'auth-verifiers' });
await pg.psql(`CREATE ROLE rscram LOGIN REPLICATION PASSWORD 'secret';
SET password_encryption = 'md5';
CREATE ROLE rmd5 LOGIN REPLICATION PASSWORD 'secret';
RESET password_encryption;
CREATE ROLE norepl LOGIN PASSWORD 'secret';`);
const verifier = async (role: string): Promise<string> => pg.psql(`SELECT rolpassword FROM pg_authid WHERE rolname = '${role}'`);
const scramVerifier = await verifier('rscram');
const md5v = await verifier('rmd5');
const noreplVerifier = await verifier('norepl');
await pg.destroy();

// Verifiers of a password that is not UTF-8 ("pé" in LATIN1), computed as PostgreSQL
// does from the raw bytes: md5(password || user), and SCRAM with the bytes unprepared
// (pg_saslprep gives up on invalid UTF-8).
const LATIN1_PW = Buffer.from([0x70, 0xe9]);
const latin1Md5 = `md5${createHash('md5').update(LATIN1_PW).update('latin1md5').digest('hex')}`;
const latin1Scram = (() => {
  const salt = Buffer.alloc(16, 3);
  const salted = pbkdf2Sync(LATIN1_PW, salt, 4096, 32, 'sha256');
  const key = (k: string): Buffer => createHmac('sha256', salted).update(k).digest();
  return `SCRAM-SHA-256$4096:${salt.toString('base64')}$${createHash('sha256').update(key('Client Key')).digest('base64')}:${key('Server Key').toString('base64')}`;
})();
const usersFile = path.join(tmp.path, 'users');
const hbaFile = path.join(tmp.path, 'hba.conf');
fs.writeFileSync(usersFile, `rscram ${scramVerifier} replication
rmd5 ${md5v} replication
norepl ${noreplVerifier} noreplication
md5only ${md5Verifier('secret', 'md5only')} replication
pwuser ${scramVerifier} replication
tlsonly ${scramVerifier} replication
latin1md5 ${latin1Md5} replication
latin1scram ${latin1Scram} replication
`);
const HBA = `hostssl   replication tlsonly  127.0.0.1/32 scram-sha-256
hostnossl replication tlsonly  127.0.0.1/32 reject
host      replication rejected 127.0.0.1/32 reject
host      replication pwuser   127.0.0.1/32 password
host      replication md5only  127.0.0.1/32 scram-sha-256
host      replication trusty   127.0.0.1/32 trust
host      replication latin1md5,latin1scram 127.0.0.1/32 password
host      replication rscram,rmd5,norepl,ghost,cliuser 127.0.0.1/32 md5
`;
fs.writeFileSync(hbaFile, HBA);

const dataDir = path.join(tmp.path, 'data');
// Keep the demo WAL around long enough to compare it (where the store has retention).
const keep = SETTINGS.some((s) => s.name === 'wal_keep_size') ? ['--wal-keep-size', '256MB'] : [];
const ws = await startWalsender(['--data-dir', dataDir, '--demo-wal-segment-size', '1MB', '--demo-rate', '4MB', ...keep,
  '--hba-file', hbaFile, '--users-file', usersFile, '--ssl-cert-file', pki.serverCert, '--ssl-key-file', pki.serverKey], { t });

/** psql -c IDENTIFY_SYSTEM (or a meta-command) with libpq settings; returns code and output. */
async function psql(conn: Record<string, string>, password: string, command = 'IDENTIFY_SYSTEM'): Promise<{ code: number | null; out: string }> {
  const conninfo = Object.entries({ host: '127.0.0.1', port: String(ws.port), replication: 'true', sslmode: 'disable', ...conn })
    .map(([k, v]) => `${k}=${v}`).join(' ');
  const r = await run(pgBin('psql'), ['-X', '-A', '-t', '-c', command, conninfo], { env: { PGPASSWORD: password } });
  return { code: r.code, out: (r.stdout + r.stderr).trim() };
}

const SYSID = /^\d+\|1\|[0-9A-F]+\/[0-9A-F]+\|$/m;

t.test('psql with the right password: SCRAM and md5 verifiers from pg_authid', async (t) => {
  t.match(scramVerifier, /^SCRAM-SHA-256\$4096:/);
  t.match(md5v, /^md5[0-9a-f]{32}$/);
  for (const user of ['rscram', 'rmd5', 'pwuser']) {
    const r = await psql({ user }, 'secret');
    t.equal(r.code, 0, `${user}: ${r.out}`);
    t.match(r.out, SYSID, `${user}: IDENTIFY_SYSTEM answered`);
  }
});

t.test('the exchange each method runs, on the wire', async (t) => {
  const cases: [string, number[]][] = [
    ['rscram', [AuthCode.SASL, AuthCode.SASL_CONTINUE, AuthCode.SASL_FINAL, AuthCode.OK]], // md5 line, SCRAM secret: SCRAM
    ['rmd5', [AuthCode.MD5, AuthCode.OK]],
    ['pwuser', [AuthCode.PASSWORD, AuthCode.OK]],
    ['trusty', [AuthCode.OK]],
  ];
  for (const [user, want] of cases) {
    const r = await login(ws.port, user, 'secret');
    t.same(r.requests, want, `${user}: authentication requests`);
    r.client.end();
  }
});

t.test('wrong passwords and unknown users: 28P01, never a hint that the user does not exist', async (t) => {
  for (const user of ['rscram', 'rmd5', 'pwuser', 'ghost', 'md5only']) {
    const r = await login(ws.port, user, user === 'md5only' ? 'secret' : 'wrong');
    t.same(r.error, { severity: 'FATAL', code: '28P01', message: `password authentication failed for user "${user}"`, detail: undefined },
      `${user}${user === 'md5only' ? ' (md5 verifier on a scram-sha-256 line)' : ''}`);
    t.notOk(r.requests.includes(AuthCode.OK), 'no AuthenticationOk');
    await r.client.closedByServer();
  }
  const ghost = await login(ws.port, 'ghost', 'x');
  t.same(ghost.requests, [AuthCode.SASL, AuthCode.SASL_CONTINUE], 'an unknown user gets a full (mock) SCRAM exchange');
  const p = await psql({ user: 'rscram' }, 'wrong');
  t.not(p.code, 0);
  t.match(p.out, 'FATAL:  password authentication failed for user "rscram"');
});

t.test('hba: no line 28000, reject 28000, exact PostgreSQL texts', async (t) => {
  let r = await login(ws.port, 'nobody', 'x');
  t.same(r.error, { severity: 'FATAL', code: '28000', detail: undefined,
    message: 'no pg_hba.conf entry for replication connection from host "127.0.0.1", user "nobody", no encryption' });
  t.same(r.requests, [], 'refused before any authentication request');
  r = await login(ws.port, 'rejected', 'x');
  t.equal(r.error?.code, '28000');
  t.equal(r.error?.message, 'pg_hba.conf rejects replication connection for host "127.0.0.1", user "rejected", no encryption');
  const p = await psql({ user: 'nobody', host: 'localhost', sslmode: 'verify-full', sslrootcert: pki.caCert }, 'x');
  t.match(p.out, 'FATAL:  no pg_hba.conf entry for replication connection from host "127.0.0.1", user "nobody", SSL encryption');
});

t.test('role checks come after AuthenticationOk, as in PostgreSQL', async (t) => {
  let r = await login(ws.port, 'norepl', 'secret');
  t.same(r.error, { severity: 'FATAL', code: '42501', message: 'must be superuser or replication role to start walsender', detail: undefined });
  t.equal(r.requests.at(-1), AuthCode.OK, 'the password was right: AuthenticationOk first');
  t.equal(types(r.messages).at(-1), 'E');
  r = await login(ws.port, 'trusty', '');
  t.same(r.error, { severity: 'FATAL', code: '28000', message: 'role "trusty" does not exist', detail: undefined });
  const p = await psql({ user: 'norepl' }, 'secret');
  t.match(p.out, 'FATAL:  must be superuser or replication role to start walsender');
});

t.test('TLS: verify-full against the test CA, channel binding, hostssl', async (t) => {
  const tls = { host: 'localhost', sslmode: 'verify-full', sslrootcert: pki.caCert };
  let r = await psql({ ...tls, user: 'rscram' }, 'secret', '\\conninfo');
  t.equal(r.code, 0, r.out);
  t.match(r.out, /SSL connection \(protocol: TLSv1\.[23]/, 'TLS in use');
  r = await psql({ ...tls, user: 'rscram', channel_binding: 'require' }, 'secret');
  t.match(r.out, SYSID, 'channel_binding=require over TLS: SCRAM-SHA-256-PLUS');
  r = await psql({ user: 'rscram', channel_binding: 'require' }, 'secret');
  t.not(r.code, 0, 'channel_binding=require without TLS is refused by libpq');
  r = await psql({ ...tls, user: 'tlsonly' }, 'secret');
  t.match(r.out, SYSID, 'hostssl line over TLS');
  r = await psql({ user: 'tlsonly' }, 'secret');
  t.match(r.out, 'pg_hba.conf rejects replication connection for host "127.0.0.1", user "tlsonly", no encryption');
  r = await psql({ host: 'localhost', sslmode: 'verify-full', sslrootcert: pki.serverCert, user: 'rscram' }, 'secret');
  t.not(r.code, 0, 'a client trusting another CA refuses the server');
  // Over TLS the mechanism list offers -PLUS first (libpq prefers it).
  r = await psql({ ...tls, user: 'rmd5' }, 'secret');
  t.match(r.out, SYSID, 'md5 over TLS');
});

t.test('pg_receivewal over TLS with SCRAM channel binding streams byte-identical WAL', async (t) => {
  const recv = await makeTempDir('pgws-auth-recv-');
  t.teardown(() => recv.remove());
  const rw = receiveWal({ host: 'localhost', port: ws.port, dir: recv.path, user: 'rscram',
    env: { PGPASSWORD: 'secret', PGSSLMODE: 'verify-full', PGSSLROOTCERT: pki.caCert, PGCHANNELBINDING: 'require' } });
  t.teardown(() => rw.kill());
  const m = await rw.waitFor(/starting log streaming at (\S+)/, 15_000);
  const [hi, lo] = m[1]!.split('/').map((x) => parseInt(x, 16));
  const first = Math.floor((hi! * 2 ** 32 + lo!) / MB);
  const names = [first, first + 1].map((s) => `00000001000000000000${s.toString(16).toUpperCase().padStart(4, '0')}`);
  await waitForSegments(recv.path, names, 20_000, { segmentSize: MB, proc: rw });
  for (const n of names) t.equal(await sha256File(path.join(recv.path, n)), await sha256File(path.join(dataDir, n)), `${n} byte-identical`);
});

t.test('pg_receivewal: the md5 password streams byte-identical WAL; wrong passwords get 28P01', async (t) => {
  const recv = await makeTempDir('pgws-auth-md5-');
  t.teardown(() => recv.remove());
  const rw = receiveWal({ host: '127.0.0.1', port: ws.port, dir: recv.path, user: 'rmd5', env: { PGPASSWORD: 'secret' } });
  t.teardown(() => rw.kill());
  const m = await rw.waitFor(/starting log streaming at (\S+)/, 15_000);
  const [hi, lo] = m[1]!.split('/').map((x) => parseInt(x, 16));
  const name = `00000001000000000000${Math.floor((hi! * 2 ** 32 + lo!) / MB).toString(16).toUpperCase().padStart(4, '0')}`;
  await waitForSegments(recv.path, [name], 20_000, { segmentSize: MB, proc: rw });
  t.equal(await sha256File(path.join(recv.path, name)), await sha256File(path.join(dataDir, name)), `${name} byte-identical`);
  for (const user of ['rscram', 'rmd5']) {
    const bad = await makeTempDir('pgws-auth-bad-');
    t.teardown(() => bad.remove());
    const p = receiveWal({ host: '127.0.0.1', port: ws.port, dir: bad.path, user, env: { PGPASSWORD: 'wrong' } });
    const e = await p.exited;
    t.not(e.code, 0, `${user}: pg_receivewal fails`);
    t.match(p.output(), `FATAL:  password authentication failed for user "${user}"`, `${user}: 28P01's text`);
    t.same(fs.readdirSync(bad.path), [], `${user}: no WAL received`);
  }
});

t.test('password method: the password is the client\'s bytes, even when they are not UTF-8', async (t) => {
  const raw = (user: string, pw: Buffer): Promise<{ requests: number[]; error: ReturnType<typeof errorOf> | null }> => (async () => {
    const c = await WireClient.connect(ws.port);
    t.teardown(() => c.end());
    c.write(startupMessage([['user', user], ['database', 'replication'], ['replication', 'true']]));
    const requests: number[] = [];
    for (;;) {
      const m = await c.next();
      if (!m || m.type === 'Z') return { requests, error: null };
      if (m.type === 'E') return { requests, error: errorOf(m) };
      if (m.type !== 'R') continue;
      requests.push(parseAuthentication(m.body).code);
      if (requests.at(-1) === AuthCode.PASSWORD) {
        const body = Buffer.concat([pw, Buffer.from([0])]);
        const head = Buffer.alloc(5);
        head.write('p');
        head.writeInt32BE(4 + body.length, 1);
        c.write(Buffer.concat([head, body]));
      }
    }
  })();
  for (const user of ['latin1md5', 'latin1scram']) {
    const ok = await raw(user, LATIN1_PW);
    t.same(ok, { requests: [AuthCode.PASSWORD, AuthCode.OK], error: null }, `${user}: the right bytes log in`);
    const other = await raw(user, Buffer.from([0x70, 0xe8]));
    t.equal(other.error?.code, '28P01', `${user}: another invalid byte is another password`);
  }
});

t.test('bytes sent along with the SSLRequest are refused', async (t) => {
  const c = await WireClient.connect(ws.port);
  c.write(Buffer.concat([sslRequest(), startupMessage([['user', 'rscram'], ['replication', 'true']])]));
  const m = await c.next();
  t.equal(m?.type, 'E');
  t.same(errorOf(m!), { severity: 'FATAL', code: '08P01', message: 'received unencrypted data after SSL request',
    detail: 'This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.' });
  await c.closedByServer();
});

/** The SCRAM salt the server shows `user` (a mock one for an unknown user). */
async function saltShown(user: string): Promise<string> {
  const c = await WireClient.connect(ws.port);
  c.write(startupMessage([['user', user], ['database', 'replication'], ['replication', 'true']]));
  const req = await c.next();
  if (req?.type !== 'R' || parseAuthentication(req.body).code !== AuthCode.SASL) throw new Error(`${user}: no SASL request`);
  c.write(saslInitialResponse('SCRAM-SHA-256', new ScramClient({ password: 'x' }).clientFirst()));
  const m = await c.next();
  c.end();
  if (m?.type !== 'R' || parseAuthentication(m.body).code !== AuthCode.SASL_CONTINUE) throw new Error(`${user}: no server-first`);
  return /,s=([^,]+),/.exec(parseAuthentication(m.body).data.toString())![1]!;
}

t.test('SASLInitialResponse without an initial response: an empty SASLContinue, then the exchange', async (t) => {
  const c = await WireClient.connect(ws.port);
  t.teardown(() => c.end());
  c.write(startupMessage([['user', 'rscram'], ['database', 'replication'], ['replication', 'true']]));
  t.equal(parseAuthentication((await c.next())!.body).code, AuthCode.SASL);
  c.write(saslInitialResponse('SCRAM-SHA-256', null));
  const empty = await c.next(3000);
  t.same(empty && parseAuthentication(empty.body), { code: AuthCode.SASL_CONTINUE, data: Buffer.alloc(0) }, 'empty challenge');
  const scram = new ScramClient({ password: 'secret' });
  c.write(saslResponse(scram.clientFirst()));
  const first = parseAuthentication((await c.next())!.body);
  t.equal(first.code, AuthCode.SASL_CONTINUE, 'server-first');
  c.write(saslResponse(scram.clientFinal(first.data)));
  const fin = parseAuthentication((await c.next())!.body);
  t.equal(fin.code, AuthCode.SASL_FINAL);
  t.ok(scram.verifyServerFinal(fin.data), 'server signature');
  t.equal(parseAuthentication((await c.next())!.body).code, AuthCode.OK);
});

async function addUser(t: Test, name: string, password: string): Promise<void> {
  const r = await run(NODE, [path.join(REPO_ROOT, 'src/main.ts'), 'user', 'add', name, '--users-file', usersFile], { input: `${password}\n` });
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, `added user "${name}" (scram-sha-256)`);
}

t.test('user add, then SIGHUP: new users and hba lines apply to new connections', async (t) => {
  const ghostSalt = await saltShown('ghost');
  const realSalt = await saltShown('rscram');
  t.equal(await saltShown('ghost'), ghostSalt, 'an unknown user always sees the same salt');
  await addUser(t, 'cliuser', 'n3w-pass');
  t.notMatch(fs.readFileSync(usersFile, 'utf8'), 'n3w-pass', 'only the verifier is stored');
  let r = await login(ws.port, 'cliuser', 'n3w-pass');
  t.equal(r.error?.code, '28P01', 'before the reload the user is unknown');
  const before = ws.proc.output().length;
  ws.proc.child.kill('SIGHUP');
  await ws.proc.waitFor(/authentication material reloaded/, 10_000);
  r = await login(ws.port, 'cliuser', 'n3w-pass');
  t.equal(r.error, null, 'after SIGHUP the new user logs in');
  r.client.end();
  // PostgreSQL's mock salt is fixed for the cluster: if editing the users file changed
  // it, the salts shown before and after would tell unknown users from real ones.
  t.equal(await saltShown('rscram'), realSalt, 'a real user keeps its salt');
  t.equal(await saltShown('ghost'), ghostSalt, 'so an unknown user keeps its mock salt across a users-file change');
  // A broken hba file on reload is refused; the old rules stay.
  fs.writeFileSync(hbaFile, 'host replication all all bogus\n');
  ws.proc.child.kill('SIGHUP');
  await ws.proc.waitFor(/authentication files were not reloaded/, 10_000);
  t.match(ws.proc.output().slice(before), /invalid authentication method \\"bogus\\"/);
  r = await login(ws.port, 'cliuser', 'n3w-pass');
  t.equal(r.error, null, 'old rules still in force');
  r.client.end();
  fs.writeFileSync(hbaFile, HBA.replace('cliuser', 'someoneelse'));
  ws.proc.child.kill('SIGHUP');
  await t.resolves(async () => {
    for (let i = 0; i < 50; i++) {
      r = await login(ws.port, 'cliuser', 'n3w-pass');
      if (r.error?.code === '28000') return;
      await new Promise((res) => setTimeout(res, 100));
    }
    throw new Error(`still ${JSON.stringify(r.error)}`);
  }, 'the new hba file applies: cliuser has no line any more');
});

t.test('SIGHUP reloads the certificate and key: new connections get the new ones', async (t) => {
  const next = await makeTestPki(await fs.promises.mkdtemp(path.join(tmp.path, 'pki2-')));
  fs.copyFileSync(next.serverCert, pki.serverCert);
  fs.copyFileSync(next.serverKey, pki.serverKey);
  ws.proc.child.kill('SIGHUP');
  const tls = (ca: string): Record<string, string> => ({ host: 'localhost', sslmode: 'verify-full', sslrootcert: ca, user: 'rscram', channel_binding: 'require' });
  let r = await psql(tls(next.caCert), 'secret');
  for (let i = 0; i < 50 && !SYSID.test(r.out); i++) {
    await new Promise((res) => setTimeout(res, 100));
    r = await psql(tls(next.caCert), 'secret');
  }
  t.match(r.out, SYSID, 'verify-full against the new CA, with channel binding to the new certificate');
  r = await psql(tls(pki.caCert), 'secret');
  t.not(r.code, 0, 'the old CA no longer verifies the server');
});

t.test('TLS 1.2 is the minimum', async (t) => {
  const handshake = async (maxVersion: tlsModule.SecureVersion): Promise<string> => {
    const c = await WireClient.connect(ws.port);
    t.teardown(() => c.end());
    c.write(sslRequest());
    if (await c.nextByte() !== 'S') return 'no S';
    c.socket.removeAllListeners('data');
    return new Promise((resolve) => {
      const s = tlsModule.connect({ socket: c.socket, rejectUnauthorized: false, minVersion: 'TLSv1', maxVersion, ciphers: 'DEFAULT@SECLEVEL=0' },
        () => resolve(`connected ${s.getProtocol()}`));
      s.on('error', (e) => resolve(`error ${e.message}`));
    });
  };
  t.match(await handshake('TLSv1.1'), /^error .*protocol version/, 'a TLS 1.1 client is refused');
  t.equal(await handshake('TLSv1.2'), 'connected TLSv1.2', 'TLS 1.2 is accepted');
});

t.test('hba addresses on a dual-stack listener: IPv4 clients match IPv4 lines, ::1 only IPv6 lines', async (t) => {
  const hba6 = path.join(tmp.path, 'hba6.conf');
  fs.writeFileSync(hba6, 'host replication rscram 127.0.0.1/32 scram-sha-256\nhost replication rmd5 ::1/128 md5\n');
  const port = await freePort();
  const ws6 = await startWalsender(['--data-dir', path.join(tmp.path, 'data6'), '--demo-wal-segment-size', '1MB',
    '--hba-file', hba6, '--users-file', usersFile, '--listen', `[::]:${port}`], { t, port });
  const at = async (host: string, user: string): Promise<string> => {
    const r = await run(pgBin('psql'), ['-X', '-A', '-t', '-c', 'IDENTIFY_SYSTEM',
      `host=${host} port=${ws6.port} user=${user} replication=true sslmode=disable`], { env: { PGPASSWORD: 'secret' } });
    return (r.stdout + r.stderr).trim();
  };
  t.match(await at('127.0.0.1', 'rscram'), SYSID, 'an IPv4 client (IPv4-mapped on this socket) matches 127.0.0.1/32');
  t.match(await at('::1', 'rmd5'), SYSID, '::1 matches ::1/128');
  t.match(await at('::1', 'rscram'), 'FATAL:  no pg_hba.conf entry for replication connection from host "::1", user "rscram", no encryption',
    'an address without an hba line: 28000, naming it');
  t.match(await at('127.0.0.1', 'rmd5'), 'FATAL:  no pg_hba.conf entry for replication connection from host "127.0.0.1", user "rmd5", no encryption',
    'an IPv4 client never matches an IPv6 line');
  await ws6.stop();
});

t.test('the server is still healthy', async (t) => {
  t.notOk(ws.proc.hasExited);
  t.notMatch(ws.proc.output(), /"level":50.*sender failed/, 'no internal errors logged');
});
