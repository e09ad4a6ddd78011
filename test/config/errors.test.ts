// Tests that every kind of bad input gives a ConfigError with a one-line
// message naming the setting (or option, or file) and the bad value.
import t from 'tap';
import { join } from 'node:path';
import { CONFIG_ERROR_EXIT_CODE, ConfigError, loadConfig } from '../../src/config.ts';

function errorOf(argv: string[], env: NodeJS.ProcessEnv = {}): ConfigError {
  try {
    loadConfig(argv, env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error(`no error for ${JSON.stringify(argv)} ${JSON.stringify(env)}`);
}

t.test('ConfigError', async (t) => {
  const e = new ConfigError('x', 'workers', '--workers');
  t.ok(e instanceof Error);
  t.equal(e.name, 'ConfigError');
  t.equal(e.setting, 'workers');
  t.equal(e.origin, '--workers');
  t.equal(CONFIG_ERROR_EXIT_CODE, 2);
});

// [setting, bad value, exact message]
const badValues: [string, string, string][] = [
  ['max_wal_senders', 'abc', 'invalid value for setting "max_wal_senders": "abc" (expected an integer from 1 to 10000)'],
  ['max_wal_senders', '0', 'invalid value for setting "max_wal_senders": "0" (expected an integer from 1 to 10000)'],
  ['max_wal_senders', '10001', 'invalid value for setting "max_wal_senders": "10001" (expected an integer from 1 to 10000)'],
  ['max_wal_senders', '2.5', 'invalid value for setting "max_wal_senders": "2.5" (expected an integer from 1 to 10000)'],
  ['workers', '0', 'invalid value for setting "workers": "0" (expected an integer from 1 to 256)'],
  ['workers', '257', 'invalid value for setting "workers": "257" (expected an integer from 1 to 256)'],
  ['source', 'primary', 'invalid value for setting "source": "primary" (expected one of demo, archive, upstream)'],
  ['wal_read', 'sendfile', 'invalid value for setting "wal_read": "sendfile" (expected one of mmap, read)'],
  ['log_level', 'verbose', 'invalid value for setting "log_level": "verbose" (expected one of fatal, error, warn, info, debug, trace, silent)'],
  ['demo_rate', '5XB', 'invalid value for setting "demo_rate": "5XB" (invalid unit "XB"; valid units are B, kB, MB, GB, TB)'],
  ['demo_rate', 'fast', 'invalid value for setting "demo_rate": "fast" (not a size; expected a size per second such as 1MB or 512kB, 0 to pause)'],
  ['demo_rate', '-1MB', 'invalid value for setting "demo_rate": "-1MB" (must not be negative; expected a size per second such as 1MB or 512kB, 0 to pause)'],
  ['demo_wal_segment_size', '3MB', 'invalid value for setting "demo_wal_segment_size": "3MB" (expected a power of two from 1MB to 1GB)'],
  ['demo_wal_segment_size', '512kB', 'invalid value for setting "demo_wal_segment_size": "512kB" (expected a power of two from 1MB to 1GB)'],
  ['demo_wal_segment_size', '2GB', 'invalid value for setting "demo_wal_segment_size": "2GB" (expected a power of two from 1MB to 1GB)'],
  ['wal_sender_timeout', '5x', 'invalid value for setting "wal_sender_timeout": "5x" (invalid unit "x"; valid units are us, ms, s, min, h, d)'],
  ['wal_sender_timeout', '25d', 'invalid value for setting "wal_sender_timeout": "25d" (value is too large (at most 2147483647ms); expected a duration such as 60s or 1min (bare number = milliseconds), 0 to disable)'],
  ['listen', '5433', 'invalid value for setting "listen": "5433" (expected host:port, or [address]:port for IPv6, with a port from 0 to 65535)'],
  ['listen', '::1:5433', 'invalid value for setting "listen": "::1:5433" (expected host:port, or [address]:port for IPv6, with a port from 0 to 65535)'],
  ['listen', 'localhost:65536', 'invalid value for setting "listen": "localhost:65536" (expected host:port, or [address]:port for IPv6, with a port from 0 to 65535)'],
  ['listen', '[127.0.0.1]:1', 'invalid value for setting "listen": "[127.0.0.1]:1" (expected host:port, or [address]:port for IPv6, with a port from 0 to 65535)'],
  ['listen', '300.1.1.1:1', 'invalid value for setting "listen": "300.1.1.1:1" (expected host:port, or [address]:port for IPv6, with a port from 0 to 65535)'],
  ['listen', 'bad_host:1', 'invalid value for setting "listen": "bad_host:1" (expected host:port, or [address]:port for IPv6, with a port from 0 to 65535)'],
  ['admin_listen', 'on', 'invalid value for setting "admin_listen": "on" (expected host:port, or [address]:port for IPv6, with a port from 0 to 65535)'],
  ['data_dir', '', 'invalid value for setting "data_dir": "" (expected a non-empty path)'],
  ['archive_dir', ' ', 'invalid value for setting "archive_dir": " " (expected a non-empty path)'],
  ['upstream', 'host=db1 hots=db2', 'invalid value for setting "upstream": "host=db1 hots=db2" (invalid connection option "hots"; expected a libpq connection string (host=... port=... user=... or postgresql://...))'],
  ['upstream', "host='db1", 'invalid value for setting "upstream": "host=\'db1" (unterminated quoted string in connection info string; expected a libpq connection string (host=... port=... user=... or postgresql://...))'],
  ['upstream_slot', 'Relay-1', 'invalid value for setting "upstream_slot": "Relay-1" (expected 1 to 63 lower case letters, digits and underscores)'],
];

t.test('bad values from a flag, the environment and the file', async (t) => {
  for (const [name, value, message] of badValues) {
    const flag = '--' + name.replaceAll('_', '-');
    const env = 'PGWS_' + name.toUpperCase();
    const viaFlag = errorOf([`${flag}=${value}`]);
    t.equal(viaFlag.message, message, `${flag}=${value}`);
    t.equal(viaFlag.setting, name);
    t.equal(viaFlag.origin, flag);
    t.notMatch(viaFlag.message, /\n/, 'one line');
    if (value !== '') {
      const viaEnv = errorOf([], { [env]: value });
      t.equal(viaEnv.message, message, `${env}=${value}`);
      t.equal(viaEnv.origin, env);
    }
    const dir = t.testdir({ 'c.yaml': `${name}: ${JSON.stringify(value)}\n` });
    const viaFile = errorOf(['--config', join(dir, 'c.yaml')]);
    t.equal(viaFile.message, message, `file ${name}: ${value}`);
    t.equal(viaFile.origin, `config file ${join(dir, 'c.yaml')}`);
  }
});

t.test('command-line errors', async (t) => {
  t.equal(errorOf(['--foo']).message, 'unknown option --foo');
  t.equal(errorOf(['--foo=1']).message, 'unknown option --foo');
  t.equal(errorOf(['-x']).message, 'unknown option -x');
  t.equal(errorOf(['--max_wal_senders', '3']).message, 'unknown option --max_wal_senders');
  t.equal(errorOf(['extra']).message, 'unexpected argument "extra" (this command takes no positional arguments)');
  t.equal(errorOf(['--listen']).message, 'option --listen requires a value (use --listen=VALUE for a value starting with "-")');
  t.equal(errorOf(['--listen', '--workers', '2']).message, 'option --listen requires a value (use --listen=VALUE for a value starting with "-")');
  t.equal(errorOf(['--version=1']).message, 'option --version does not take a value');
  t.equal(errorOf(['--config=']).message, 'invalid value for setting "config": "" (expected a file path)');
});

t.test('config file errors', async (t) => {
  const dir = t.testdir({
    'unknown.yaml': 'foo: 1\n',
    'unknown-kebab.yaml': 'max-wal-sender: 1\n',
    'config-key.yaml': 'config: other.yaml\n',
    'list.yaml': '- 1\n- 2\n',
    'scalar.yaml': 'just text\n',
    'broken.yaml': 'listen: [1\n',
    'dup.yaml': 'workers: 1\nworkers: 2\n',
    'both.yaml': 'max_wal_senders: 1\nmax-wal-senders: 2\n',
    'bool.yaml': 'admin_listen: false\n',
    'nested.yaml': 'listen:\n  host: x\n  port: 1\n',
    'null.yaml': 'archive_dir:\n',
    'broken.json': '{"workers": 1,,}',
    'proto.yaml': '__proto__: 1\n',
  });
  const f = (name: string): string => join(dir, name);
  const cases: [string, string][] = [
    ['unknown.yaml', `unrecognized setting "foo" in config file ${f('unknown.yaml')}`],
    ['unknown-kebab.yaml', `unrecognized setting "max-wal-sender" in config file ${f('unknown-kebab.yaml')}`],
    ['config-key.yaml', `unrecognized setting "config" in config file ${f('config-key.yaml')}`],
    ['list.yaml', `config file ${f('list.yaml')} must contain a mapping of setting names to values`],
    ['scalar.yaml', `config file ${f('scalar.yaml')} must contain a mapping of setting names to values`],
    ['broken.yaml', `could not parse config file "${f('broken.yaml')}": Flow sequence in block collection must be sufficiently indented and end with a ] at line 2, column 1`],
    ['dup.yaml', `could not parse config file "${f('dup.yaml')}": Map keys must be unique at line 2, column 1`],
    ['both.yaml', `setting "max_wal_senders" is given twice in config file ${f('both.yaml')} (as "max_wal_senders" and "max-wal-senders")`],
    ['bool.yaml', 'invalid value for setting "admin_listen": false (expected host:port or "off")'],
    ['nested.yaml', 'invalid value for setting "listen": {"host":"x","port":1} (expected host:port, or [address]:port for IPv6, with a port from 0 to 65535)'],
    ['proto.yaml', `unrecognized setting "__proto__" in config file ${f('proto.yaml')}`],
    ['null.yaml', 'invalid value for setting "archive_dir": null (expected a directory path)'],
  ];
  for (const [name, message] of cases) {
    const e = errorOf(['--config', f(name)]);
    t.equal(e.message, message, name);
    t.notMatch(e.message, /\n/, 'one line');
  }
  const json = errorOf(['--config', f('broken.json')]);
  t.match(json.message, new RegExp(`^could not parse config file ".*broken\\.json": `));
  t.notMatch(json.message, /\n/, 'one line');

  t.equal(
    errorOf(['--config', '/nonexistent/pgws.yaml']).message,
    'could not read config file "/nonexistent/pgws.yaml": ENOENT: no such file or directory',
  );
  t.match(errorOf(['--config', dir]).message, new RegExp(`^could not read config file "${dir}": EISDIR`));
});

t.test('help and version win over bad values', async (t) => {
  t.equal(loadConfig(['--max-wal-senders', 'abc', '--help'], {}).kind, 'help');
  t.equal(loadConfig(['--version'], { PGWS_WORKERS: 'many' }).kind, 'version');
});
