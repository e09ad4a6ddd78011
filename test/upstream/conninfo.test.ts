// The upstream connection string as libpq reads it: keyword/value (quoting, escapes),
// URIs (user info, host lists, IPv6, query parameters, percent-encoding), libpq's
// errors, the PG* environment as defaults, the password's sources in order
// (string, password file setting, PGPASSWORD, passfile with its matching rules and
// permission check), and redaction for logs. Plus the SCRAM-SHA-256 client against
// RFC 7677's test vector and md5's arithmetic.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import {
  ConninfoError, defaultSocketDir, parseConninfo, passwordFromPassfile, redactConninfo, resolveConninfo,
} from '../../src/sources/upstream/conninfo.ts';
import { md5Password } from '../../src/sources/upstream/handshake.ts';
import { clientFinalMessage, clientFirstMessage, saslprep, ScramError, verifyServerFinal } from '../../src/sources/upstream/scram.ts';

t.test('keyword/value strings', async (t) => {
  t.same(Object.fromEntries(parseConninfo("host=db1  port = 5433 user='rep user' password='it\\'s \\\\ x' dbname=x")), {
    host: 'db1', port: '5433', user: 'rep user', password: "it's \\ x", dbname: 'x',
  });
  t.same(Object.fromEntries(parseConninfo("application_name=a\\ b options='-c x=1'")), { application_name: 'a b', options: '-c x=1' });
  t.throws(() => parseConninfo('host=db1 hots=db2'), new ConninfoError('invalid connection option "hots"'));
  t.throws(() => parseConninfo('host'), new ConninfoError('missing "=" after "host" in connection info string'));
  t.throws(() => parseConninfo("host='db1"), new ConninfoError('unterminated quoted string in connection info string'));
});

t.test('URIs', async (t) => {
  t.same(Object.fromEntries(parseConninfo('postgresql://rep:p%40ss@db1:5433,[::1]:5434/mydb?sslmode=verify-full&application_name=r%201')), {
    user: 'rep', password: 'p@ss', host: 'db1,::1', port: '5433,5434', dbname: 'mydb', sslmode: 'verify-full', application_name: 'r 1',
  });
  t.same(Object.fromEntries(parseConninfo('postgres://db1')), { host: 'db1' });
  t.same(Object.fromEntries(parseConninfo('postgresql:///?host=/tmp&port=5432')), { host: '/tmp', port: '5432' });
  t.same(Object.fromEntries(parseConninfo('postgresql://h/?ssl=true')), { host: 'h', sslmode: 'require' });
  t.throws(() => parseConninfo('postgresql://h/?foo=1'), new ConninfoError('invalid URI query parameter: "foo"'));
});

t.test('defaults from the environment; host and port lists', async (t) => {
  const env = { PGHOST: 'envhost', PGPORT: '6000', PGUSER: 'envuser', PGSSLMODE: 'require', PGAPPNAME: 'app' };
  const p = resolveConninfo('', { env });
  t.same(p.targets, [{ host: 'envhost', hostaddr: null, port: 6000, isSocket: false }]);
  t.equal(p.user, 'envuser');
  t.equal(p.sslmode, 'require');
  t.equal(p.applicationName, 'app');
  t.equal(p.sslcrl, path.join(os.homedir(), '.postgresql', 'root.crl'), "libpq's default CRL file (used when it exists)");
  t.equal(resolveConninfo('', { env: { PGSSLCRL: '/etc/crl.pem' } }).sslcrl, '/etc/crl.pem');
  const q = resolveConninfo('host=a,b,/tmp port=1,2,3 user=u sslmode=disable', { env });
  t.same(q.targets.map((x) => [x.host, x.port, x.isSocket]), [['a', 1, false], ['b', 2, false], ['/tmp', 3, true]], 'the string wins over the environment');
  t.equal(q.sslmode, 'disable');
  t.equal(resolveConninfo('host=a,b port=7', { env: {} }).targets[1]!.port, 7, 'one port for every host');
  t.same(resolveConninfo('', { env: {} }).targets[0], { host: defaultSocketDir(), hostaddr: null, port: 5432, isSocket: true },
    'no host: the default Unix socket directory');
  t.same(resolveConninfo('host=localhost hostaddr=127.0.0.1', { env: {} }).targets[0],
    { host: 'localhost', hostaddr: '127.0.0.1', port: 5432, isSocket: false });
  t.equal(resolveConninfo('', { env: {} }).applicationName, 'pg-walsender', 'fallback application_name');
  t.throws(() => resolveConninfo('host=a,b port=1,2,3', { env: {} }), /could not match 3 port numbers to 2 hosts/);
  t.throws(() => resolveConninfo('port=abc', { env: {} }), /invalid port number/);
  t.throws(() => resolveConninfo('sslmode=sometimes', { env: {} }), new ConninfoError('invalid sslmode value: "sometimes"'));
  t.throws(() => resolveConninfo('target_session_attrs=read-write', { env: {} }), /not supported/);
  t.equal(resolveConninfo('connect_timeout=1', { env: {} }).connectTimeoutMs, 2000, "libpq's minimum connect_timeout is 2 s");
});

t.test('password sources, in order', async (t) => {
  const dir = t.testdir({ pw: 'from-file\nsecond line\n' });
  const pwFile = path.join(dir, 'pw');
  const env = { PGPASSWORD: 'from-env' };
  t.equal(resolveConninfo('password=inline', { env, passwordFile: pwFile }).password, 'inline');
  t.equal(resolveConninfo('', { env, passwordFile: pwFile }).password, 'from-file', 'first line of the password file');
  t.equal(resolveConninfo('', { env }).password, 'from-env');
  t.equal(resolveConninfo('', { env: {} }).password, null, 'else the passfile, per host, at connect time');
  t.equal(resolveConninfo("password=''", { env }).password, null, "password='' (as libpq): not PGPASSWORD, the passfile");
  t.throws(() => resolveConninfo('', { env: {}, passwordFile: path.join(dir, 'missing') }), /could not read password file/);
});

t.test('passfile lines, wildcards, escapes and permissions', async (t) => {
  const dir = t.testdir({});
  const file = path.join(dir, 'pgpass');
  fs.writeFileSync(file, [
    '# comment',
    'db1:5432:postgres:rep:wrong-db',
    'db1:5432:replication:rep:right',
    '*:*:*:other:wild\\:card',
    'localhost:5432:*:rep:socket',
    'db1:5432:*:colon:pass:word',
  ].join('\n'), { mode: 0o600 });
  const tcp = { host: 'db1', hostaddr: null, port: 5432, isSocket: false };
  t.equal(passwordFromPassfile(file, tcp, 'rep'), 'right', 'the database field of a replication connection is "replication"');
  t.equal(passwordFromPassfile(file, tcp, 'other'), 'wild:card', 'wildcards and \\: escapes');
  t.equal(passwordFromPassfile(file, { ...tcp, port: 5433 }, 'rep'), null);
  t.equal(passwordFromPassfile(file, tcp, 'colon'), 'pass', 'the password ends at an unescaped ":", as libpq reads it');
  t.equal(passwordFromPassfile(file, { host: defaultSocketDir(), hostaddr: null, port: 5432, isSocket: true }, 'rep'), 'socket',
    'the default socket directory matches "localhost"');
  fs.chmodSync(file, 0o644);
  const warnings: string[] = [];
  t.equal(passwordFromPassfile(file, tcp, 'rep', (m) => warnings.push(m)), null, 'a readable passfile is ignored');
  t.match(warnings[0], /has group or world access; permissions should be u=rw \(0600\) or less/);
});

t.test('passwords never reach the logs', async (t) => {
  t.equal(redactConninfo("host=db1 password='a b' user=x"), 'host=db1 password=******** user=x');
  t.equal(redactConninfo('host=db1 password=abc'), 'host=db1 password=********');
  t.equal(redactConninfo('postgresql://rep:secret@db1/'), 'postgresql://rep:********@db1/');
  t.equal(redactConninfo('postgresql://rep@db1/'), 'postgresql://rep@db1/');
});

t.test('SCRAM-SHA-256: the RFC 7677 test vector', async (t) => {
  const first = clientFirstMessage('pencil', { kind: 'none' }, { user: 'user', nonce: 'rOprNGfwEbeRWgbNEkqO' });
  t.equal(first.message, 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO');
  const serverFirst = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096';
  const final = clientFinalMessage(first.state, serverFirst);
  t.equal(final.message, 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=');
  t.doesNotThrow(() => verifyServerFinal(final, 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4='));
  t.throws(() => verifyServerFinal(final, 'v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4='), new ScramError('incorrect server signature'));
  t.throws(() => verifyServerFinal(final, 'e=invalid-proof'), /error received from server in SCRAM exchange: invalid-proof/);
  t.throws(() => clientFinalMessage(first.state, 'r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096'), /nonce mismatch/);
  t.throws(() => clientFinalMessage(first.state, 'garbage'), ScramError);
});

t.test('md5: the exchange observed with PostgreSQL 15', async (t) => {
  t.equal(md5Password('secret', 'rmd5', Buffer.from('088dd4cc', 'hex')), 'md5b8dfa69814a294171241e79f08a642c0');
});

t.test('SCRAM as PostgreSQL speaks it', async (t) => {
  const first = clientFirstMessage('secret', { kind: 'none' });
  t.match(first.message, /^n,,n=,r=[A-Za-z0-9+/]{24}$/, 'empty user name, 18-byte nonce');
  t.match(clientFirstMessage('x', { kind: 'unused' }).message, /^y,,n=,r=/, 'TLS without -PLUS offered: "y"');
  const cb = clientFirstMessage('x', { kind: 'tls-server-end-point', certificateHash: Buffer.alloc(32, 1) });
  t.match(cb.message, /^p=tls-server-end-point,,n=,r=/);
  const f = clientFinalMessage(cb.state, `r=${cb.state.clientNonce}abc,s=AAAA,i=1`);
  const c = /^c=([^,]+),/.exec(f.message)![1]!;
  t.same(Buffer.from(c, 'base64'), Buffer.concat([Buffer.from('p=tls-server-end-point,,'), Buffer.alloc(32, 1)]),
    'channel binding data: gs2 header and the certificate hash');
  t.equal(saslprep('pencil'), 'pencil');
  t.equal(saslprep('I\u00ADX'), 'IX', 'soft hyphen is mapped to nothing');
  t.equal(saslprep('\u2168'), 'IX', 'NFKC');
  t.equal(saslprep('\u00e9\u0007'), '\u00e9\u0007', 'prohibited characters: the password is used as is');
  t.equal(saslprep('e\u0301'), '\u00e9', 'non-ASCII input is normalized');
});
