// The admin token settings: flag, environment, config file key, or a token file (a
// container secret); short tokens and conflicting settings are refused, and an
// error message never repeats the token.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { makeTempDir } from '../helpers/proc.ts';

const token = (argv: string[], env: NodeJS.ProcessEnv = {}): string | null => {
  const r = loadConfig(argv, env);
  if (r.kind !== 'run') throw new Error('expected run');
  return r.config.adminToken;
};

t.test('sources of the token', async (t) => {
  const dir = await makeTempDir('pgws-token-');
  t.teardown(() => dir.remove());
  t.equal(token([]), null, 'none by default: mutating routes disabled');
  t.equal(token(['--admin-token', 'flag-token-0123456789']), 'flag-token-0123456789');
  t.equal(token([], { PGWS_ADMIN_TOKEN: 'env-token-0123456789' }), 'env-token-0123456789');
  const conf = path.join(dir.path, 'c.yaml');
  fs.writeFileSync(conf, 'admin_token: file-key-token-0123456789\n');
  t.equal(token(['--config', conf]), 'file-key-token-0123456789');
  const secret = path.join(dir.path, 'secret');
  fs.writeFileSync(secret, '  secret-file-token-0123456789\n');
  t.equal(token(['--admin-token-file', secret]), 'secret-file-token-0123456789', 'white space around it ignored');
  t.equal(token([], { PGWS_ADMIN_TOKEN_FILE: secret }), 'secret-file-token-0123456789');
});

t.test('refused tokens', async (t) => {
  const dir = await makeTempDir('pgws-token-bad-');
  t.teardown(() => dir.remove());
  const short = 'short-secret';
  t.throws(() => token(['--admin-token', short]), ConfigError);
  try {
    token(['--admin-token', short]);
  } catch (e) {
    t.match((e as Error).message, /^invalid value for setting "admin_token": \(value hidden\) \(expected at least 16 characters/);
    t.notMatch((e as Error).message, short, 'the token is not echoed');
  }
  const secret = path.join(dir.path, 'secret');
  fs.writeFileSync(secret, 'secret-file-token-0123456789\n');
  t.throws(() => token(['--admin-token', 'flag-token-0123456789', '--admin-token-file', secret]),
    { message: 'admin_token and admin_token_file are both set; use one' });
  t.throws(() => token(['--admin-token-file', path.join(dir.path, 'missing')]), { message: /could not read admin_token_file ".*missing"/ });
  fs.writeFileSync(secret, 'tiny\n');
  t.throws(() => token(['--admin-token-file', secret]), { message: /invalid admin token in admin_token_file .*at least 16 characters/ });
});
