// The authentication subcommands: user add writes a verifier (never the password)
// that logs in, replaces an existing user in place, refuses passwords on the command
// line; hash-password prints SCRAM or md5 verifiers.

import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import t from 'tap';
import { runAuthCommand } from '../../src/auth/cli.ts';
import { md5Verifier, verifyPlainPassword } from '../../src/auth/md5.ts';
import { parseUsers } from '../../src/auth/users.ts';

async function cli(argv: string[], stdin: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runAuthCommand(argv, {
    stdin: Readable.from([Buffer.from(stdin)]) as unknown as NodeJS.ReadStream,
    stdout: { write: (s: string) => { out += s; } },
    stderr: { write: (s: string) => { err += s; } },
    env,
  });
  return { code, out, err };
}

t.test('user add: the verifier is stored, not the password; replacing keeps the rest', async (t) => {
  const dir = t.testdir({ users: '# team\nold - replication\n' });
  const file = path.join(dir, 'users');
  let r = await cli(['user', 'add', 'alice', '--users-file', file], 'p@ss word\nignored second line\n');
  t.equal(r.code, 0, r.err);
  t.match(r.err, 'added user "alice" (scram-sha-256)');
  const text = fs.readFileSync(file, 'utf8');
  t.notMatch(text, 'p@ss', 'no password in the file');
  const alice = parseUsers(text, file).get('alice')!;
  t.ok(alice.replication, 'may replicate by default');
  t.ok(await verifyPlainPassword('alice', alice.verifier!, 'p@ss word'), 'the first line of stdin is the password');
  fs.chmodSync(file, 0o640);
  r = await cli(['user', 'add', 'alice', '--method', 'md5', '--no-replication'], 'other\n', { PGWS_USERS_FILE: file });
  t.equal(r.code, 0, r.err);
  t.match(r.err, 'updated user "alice" (md5)');
  const db = parseUsers(fs.readFileSync(file, 'utf8'), file);
  t.same(db.get('alice'), { name: 'alice', verifier: md5Verifier('other', 'alice'), replication: false, superuser: false });
  t.ok(fs.readFileSync(file, 'utf8').startsWith('# team\nold - replication\n'), 'other lines and comments kept');
  t.equal(fs.statSync(file).mode & 0o777, 0o640, 'the file keeps its mode');
  const fresh = path.join(dir, 'new-users');
  t.equal((await cli(['user', 'add', 'bob', '--users-file', fresh], 'x\n')).code, 0);
  t.equal(fs.statSync(fresh).mode & 0o777, 0o600, 'a new users file is owner-only');
});

t.test('refusals', async (t) => {
  const dir = t.testdir({});
  const file = path.join(dir, 'users');
  let r = await cli(['user', 'add', 'alice', '--users-file', file, '--password', 'secret'], '');
  t.equal(r.code, 2, 'no password flag');
  t.match(r.err, /Unknown option '--password'/);
  r = await cli(['user', 'add', 'alice'], 'x\n');
  t.equal(r.code, 2);
  t.match(r.err, 'no users file: give --users-file FILE or set PGWS_USERS_FILE');
  r = await cli(['user', 'add', 'alice', '--users-file', file], '\n');
  t.equal(r.code, 1);
  t.match(r.err, 'empty password');
  r = await cli(['user', 'add', 'alice', '--users-file', file, '--method', 'sha1'], 'x\n');
  t.match(r.err, 'invalid --method "sha1"');
  r = await cli(['hash-password', '--method', 'md5'], 'x\n');
  t.match(r.err, '--method md5 needs --user NAME');
  r = await cli(['user', 'remove', 'x'], '');
  t.match(r.err, 'unknown command "user remove"');
  t.notOk(fs.existsSync(file), 'nothing written on a refusal');
});

t.test('hash-password', async (t) => {
  let r = await cli(['hash-password'], 'pencil\n');
  t.equal(r.code, 0);
  t.match(r.out, /^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}\n$/);
  t.ok(await verifyPlainPassword('u', r.out.trim(), 'pencil'));
  r = await cli(['hash-password', '--method', 'md5', '--user', 'rmd5'], 'secret\n');
  t.equal(r.out, `${md5Verifier('secret', 'rmd5')}\n`);
  r = await cli(['user', '--help'], '');
  t.match(r.out, 'pg-walsender user add NAME');
});
