// The hba file (pg_hba.conf syntax, first match wins, PostgreSQL's rules for the
// replication keyword, quoting, lists, @file, continuation, addresses) and the users
// file (parsing, refusing bad verifiers, editing in place).

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { AuthConfigError } from '../../src/auth/conf-lines.ts';
import { matchHba, parseHba } from '../../src/auth/hba.ts';
import { inNet, normalizeClientAddr, parseAddrMask, parseCidr } from '../../src/auth/inet.ts';
import { MOCK_NONCE_FILE, mockAuthenticationNonce } from '../../src/auth/material.ts';
import { buildScramSecret } from '../../src/auth/scram.ts';
import { formatUserLine, parseUsers, upsertUserLine } from '../../src/auth/users.ts';

const hba = (text: string): ReturnType<typeof parseHba> => parseHba(text, '/etc/pgws/hba.conf', () => { throw new Error('no includes'); });
const lineFor = (lines: ReturnType<typeof parseHba>, addr: string, user: string, ssl = false): number | null =>
  matchHba(lines, { addr, user, ssl })?.line ?? null;

t.test('first match wins; replication keyword; SSL and no-SSL lines', async (t) => {
  const lines = hba(`
# comment line
local   replication all                      trust
host    all         all   0.0.0.0/0          trust   # "all" never matches a physical walsender
hostssl replication alice 10.0.0.0/8         scram-sha-256
hostnossl replication alice 10.0.0.0/8       reject
host    replication "Bob",carol,+dave 192.168.1.0 255.255.255.0 md5
host    replication all   ::1/128            password
hostgssenc replication all all               trust
hostnogssenc replication eve all             trust
`);
  t.equal(lines.length, 8);
  t.equal(lineFor(lines, '10.1.2.3', 'alice', true), 5, 'hostssl over TLS');
  t.equal(lineFor(lines, '10.1.2.3', 'alice', false), 6, 'hostnossl without TLS');
  t.equal(lines[3]!.method, 'reject');
  t.equal(lineFor(lines, '192.168.1.77', 'Bob'), 7, 'quoted name keeps its case');
  t.equal(lineFor(lines, '192.168.1.77', 'bob'), null, 'names are case-sensitive');
  t.equal(lineFor(lines, '192.168.1.77', 'carol'), 7);
  t.equal(lineFor(lines, '192.168.1.77', 'dave'), 7, '+role matches the role itself');
  t.equal(lineFor(lines, '192.168.2.1', 'carol'), null, 'outside the mask');
  t.equal(lineFor(lines, '::1', 'zed'), 8, 'IPv6');
  t.equal(lineFor(lines, '127.0.0.1', 'zed'), null, 'no line: an implicit reject');
  t.equal(lineFor(lines, '127.0.0.1', 'eve'), 10, 'hostnogssenc matches (no GSS here); hostgssenc never does');
});

t.test('keywords quoted are names; all; continuation; comments', async (t) => {
  const lines = hba('host "replication" all all trust\nhost replication "all" all \\\n  trust\nhost replication all 127.0.0.1/32 md5 # end\n');
  t.equal(lineFor(lines, '127.0.0.1', 'all'), 2, '"all" quoted matches only a user named all');
  t.equal(lineFor(lines, '127.0.0.1', 'x'), 4, 'a quoted "replication" is a database name, not the keyword');
  t.equal(lines[1]!.method, 'trust', 'continued line');
});

t.test('@file includes users relative to the hba file', async (t) => {
  const dir = t.testdir({ 'hba.conf': 'host replication @standbys.txt all trust\n', 'standbys.txt': 's1, s2\n# c\ns3\n' });
  const lines = parseHba(fs.readFileSync(path.join(dir, 'hba.conf'), 'utf8'), path.join(dir, 'hba.conf'));
  for (const u of ['s1', 's2', 's3']) t.equal(lineFor(lines, '1.2.3.4', u), 1, u);
  t.equal(lineFor(lines, '1.2.3.4', 's4'), null);
});

t.test('@file inside an included file is expanded too, never taken as a user name', async (t) => {
  // PostgreSQL's tokenize_inc_file expands @ recursively; a literal "@inner.txt"
  // token would let a client calling itself "@inner.txt" match the line.
  const dir = t.testdir({
    'hba.conf': 'host replication @outer.txt all trust\n', 'outer.txt': 'alice\n@inner.txt\n', 'inner.txt': 'bob, "@quoted"\n',
    'loop.conf': 'host replication @loop.txt all trust\n', 'loop.txt': '@loop.txt\n',
  });
  const lines = parseHba(fs.readFileSync(path.join(dir, 'hba.conf'), 'utf8'), path.join(dir, 'hba.conf'));
  t.equal(lineFor(lines, '1.2.3.4', 'alice'), 1);
  t.equal(lineFor(lines, '1.2.3.4', 'bob'), 1, 'a user of the nested file');
  t.equal(lineFor(lines, '1.2.3.4', '@inner.txt'), null, 'the @ token itself matches nobody');
  t.equal(lineFor(lines, '1.2.3.4', '@quoted'), 1, 'a quoted @name is a name');
  t.throws(() => parseHba(fs.readFileSync(path.join(dir, 'loop.conf'), 'utf8'), path.join(dir, 'loop.conf')),
    /could not open secondary authentication file "@loop.txt".*nested too deeply/, 'an include loop is a load error');
});

t.test('load errors name the line and never open or close access silently', async (t) => {
  for (const [text, re] of [
    ['hots replication all all trust', /invalid connection type "hots" \(line 1 of configuration file "\/etc\/pgws\/hba.conf"\)/],
    ['host replication all', /end-of-line before IP address specification/],
    ['host replication all 10.0.0.0/33 trust', /invalid CIDR mask in address "10.0.0.0\/33"/],
    ['host replication all 10.0.0.1 trust', /invalid IP mask "trust"/],
    ['host replication all db.example.com trust', /host names in the address field are not supported/],
    ['host replication all all peer', /authentication method "peer" is not supported by pg-walsender/],
    ['host replication all all trusted', /invalid authentication method "trusted"/],
    ['host replication all all md5 clientcert=verify-full', /authentication option "clientcert" is not supported/],
    ['host replication all all', /end-of-line before authentication method/],
    ['\n\nhost replication "all all trust', /unterminated quoted string \(line 3/],
    ['host replication /^a all trust', /regular expressions in user names are not supported/],
  ] as const) {
    t.throws(() => hba(text), re, text.trim());
    t.throws(() => hba(text), AuthConfigError);
  }
});

t.test('addresses', async (t) => {
  t.ok(inNet('10.9.8.7', parseCidr('10.0.0.0/8')));
  t.notOk(inNet('11.0.0.1', parseCidr('10.0.0.0/8')));
  t.ok(inNet('1.2.3.4', parseCidr('0.0.0.0/0')));
  t.notOk(inNet('::1', parseCidr('0.0.0.0/0')), 'families must match, as in PostgreSQL');
  t.ok(inNet('2001:db8::42', parseCidr('2001:db8::/32')));
  t.notOk(inNet('2001:db9::42', parseCidr('2001:db8::/32')));
  t.ok(inNet('fe80::1', parseCidr('fe80::1%eth0')), 'zone index ignored');
  t.ok(inNet('::ffff:10.0.0.1', parseCidr('::ffff:0:0/96')), 'embedded IPv4 in IPv6 text');
  t.ok(inNet('192.168.7.9', parseAddrMask('192.168.0.0', '255.255.0.0')));
  t.equal(normalizeClientAddr('::ffff:127.0.0.1'), '127.0.0.1', 'dual-stack listener: IPv4-mapped clients are IPv4');
  t.equal(normalizeClientAddr('::1'), '::1');
  const lines = hba('host replication all samehost trust\n');
  t.equal(lineFor(lines, '127.0.0.1', 'x'), 1, 'samehost: loopback is one of our addresses');
  t.equal(lineFor(lines, '203.0.113.9', 'x'), null);
});

t.test('users file', async (t) => {
  const scram = buildScramSecret('pw');
  const db = parseUsers(`# users
replicator ${scram} replication
"Ann Lee"  md53175bce1d3201d16594cebf9d7eb3f9d  REPLICATION,superuser
monitor    -                                  noreplication
plain      md53175bce1d3201d16594cebf9d7eb3f9d
`, '/u');
  t.same(db.get('replicator'), { name: 'replicator', verifier: scram, replication: true, superuser: false });
  t.same(db.get('Ann Lee'), { name: 'Ann Lee', verifier: 'md53175bce1d3201d16594cebf9d7eb3f9d', replication: true, superuser: true });
  t.equal(db.get('monitor')!.verifier, null, '- means no password');
  t.equal(db.get('plain')!.replication, false, 'NOREPLICATION by default, as CREATE ROLE');
  for (const [text, re] of [
    ['a md5xyz replication', /invalid password verifier for user "a": expected SCRAM-SHA-256.*\(line 1 of/],
    ['a - replication\na - replication', /user "a" is listed twice \(line 2/],
    ['a - sometimes', /unrecognized attribute "sometimes"/],
    ['a', /missing password verifier for user "a"/],
    [`${'x'.repeat(64)} - replication`, /invalid user name/],
  ] as const) t.throws(() => parseUsers(text, '/u'), re, text.slice(0, 30));

  const added = upsertUserLine('# keep me\nold - replication\n', '/u', { name: 'new one', verifier: scram, replication: false, superuser: false });
  t.notOk(added.replaced);
  t.equal(added.text, `# keep me\nold - replication\n"new one" ${scram} noreplication\n`);
  const replaced = upsertUserLine(added.text, '/u', { name: 'old', verifier: null, replication: true, superuser: true });
  t.ok(replaced.replaced);
  t.equal(replaced.text.split('\n')[1], 'old - replication,superuser', 'replaced in place');
  t.equal(parseUsers(replaced.text, '/u').size, 2, 'the edited file reads back');
  t.equal(formatUserLine({ name: 'q"x', verifier: null, replication: true, superuser: false }), '"q""x" - replication');
  t.equal(parseUsers('"q""x" - replication', '/u').get('q"x')?.name, 'q"x', 'quotes round-trip');
});

t.test('the mock authentication nonce: made once in the data directory, owner-only, then always the same', async (t) => {
  const dir = path.join(t.testdir({}), 'data');
  const first = mockAuthenticationNonce(dir);
  t.equal(first.length, 32);
  t.equal(fs.statSync(path.join(dir, MOCK_NONCE_FILE)).mode & 0o777, 0o600);
  t.same(mockAuthenticationNonce(dir), first, 'read back, not remade');
  t.notSame(mockAuthenticationNonce(path.join(dir, 'other')), first, 'random for another data directory');
  fs.writeFileSync(path.join(dir, MOCK_NONCE_FILE), 'short\n');
  t.throws(() => mockAuthenticationNonce(dir), /invalid mock authentication nonce/, 'a damaged file stops the start');
});
