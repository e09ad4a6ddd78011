// Tests loadConfig: defaults, every setting from flag / environment / file,
// precedence, the config file formats (YAML, JSON, kebab-case keys) and the
// archive_dir requirement.
import t from 'tap';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config.ts';
import type { Config } from '../../src/config.ts';

function run(argv: string[], env: NodeJS.ProcessEnv = {}): Config {
  const r = loadConfig(argv, env);
  if (r.kind !== 'run') throw new Error(`expected kind run, got ${r.kind}`);
  return r.config;
}

t.test('defaults', async (t) => {
  t.same(run([]), {
    source: 'demo',
    archiveDir: null,
    dataDir: './data',
    demoRate: 1048576,
    demoWalSegmentSize: 16777216,
    upstream: null,
    upstreamSlot: null,
    upstreamPasswordFile: null,
    upstreamTimeoutMs: 60000,
    listen: { host: '127.0.0.1', port: 5433 },
    adminListen: { host: '127.0.0.1', port: 9433 },
    adminToken: null,
    adminTokenFile: null,
    maxWalSenders: 10,
    maxReplicationSlots: 10,
    walKeepSize: 0,
    maxSlotWalKeepSize: -1,
    walSenderTimeoutMs: 60000,
    workers: Math.min(256, availableParallelism()),
    walRead: 'mmap',
    logLevel: 'info',
    hbaFile: null,
    usersFile: null,
    sslCertFile: null,
    sslKeyFile: null,
    authenticationTimeoutMs: 60000,
    configFile: null,
  });
});

// [setting name, text value, expected Config key, expected parsed value]
const cases: [string, string, keyof Config, unknown][] = [
  ['source', 'archive', 'source', 'archive'],
  ['source', 'upstream', 'source', 'upstream'],
  ['archive_dir', '/srv/wal', 'archiveDir', '/srv/wal'],
  ['data_dir', '/var/lib/pgws', 'dataDir', '/var/lib/pgws'],
  ['demo_rate', '512kB', 'demoRate', 524288],
  ['demo_rate', '0', 'demoRate', 0],
  ['demo_wal_segment_size', '64MB', 'demoWalSegmentSize', 67108864],
  ['demo_wal_segment_size', '1GB', 'demoWalSegmentSize', 1073741824],
  ['listen', '0.0.0.0:0', 'listen', { host: '0.0.0.0', port: 0 }],
  ['listen', '[::1]:5434', 'listen', { host: '::1', port: 5434 }],
  ['listen', 'localhost:65535', 'listen', { host: 'localhost', port: 65535 }],
  ['admin_listen', 'off', 'adminListen', null],
  ['admin_listen', '[::]:9000', 'adminListen', { host: '::', port: 9000 }],
  ['max_wal_senders', '200', 'maxWalSenders', 200],
  ['wal_sender_timeout', '1min', 'walSenderTimeoutMs', 60000],
  ['wal_sender_timeout', '5000', 'walSenderTimeoutMs', 5000],
  ['wal_sender_timeout', '0', 'walSenderTimeoutMs', 0],
  ['workers', '3', 'workers', 3],
  ['log_level', 'debug', 'logLevel', 'debug'],
  ['wal_read', 'read', 'walRead', 'read'],
  ['wal_read', 'MMAP', 'walRead', 'mmap'],
  ['hba_file', '/etc/pgws/hba.conf', 'hbaFile', '/etc/pgws/hba.conf'],
  ['users_file', '/etc/pgws/users', 'usersFile', '/etc/pgws/users'],
  ['authentication_timeout', '90', 'authenticationTimeoutMs', 90000],
  ['authentication_timeout', '2min', 'authenticationTimeoutMs', 120000],
  ['upstream', 'host=db1 port=5432 user=rep', 'upstream', 'host=db1 port=5432 user=rep'],
  ['upstream', 'postgresql://rep@db1:5432', 'upstream', 'postgresql://rep@db1:5432'],
  ['upstream_slot', 'relay_1', 'upstreamSlot', 'relay_1'],
  ['upstream_password_file', '/run/secrets/pw', 'upstreamPasswordFile', '/run/secrets/pw'],
  ['upstream_timeout', '10s', 'upstreamTimeoutMs', 10000],
];

t.test('each setting from a flag, the environment and the config file', async (t) => {
  for (const [name, text, key, want] of cases) {
    const flag = '--' + name.replaceAll('_', '-');
    const env = 'PGWS_' + name.toUpperCase();
    const extra = name === 'source' && text === 'archive' ? { PGWS_ARCHIVE_DIR: '/a' }
      : name === 'source' && text === 'upstream' ? { PGWS_UPSTREAM: 'host=db1' } : {};
    t.same(run([flag, text], extra)[key], want, `${flag} ${text}`);
    t.same(run([`${flag}=${text}`], extra)[key], want, `${flag}=${text}`);
    t.same(run([], { [env]: text, ...extra })[key], want, `${env}=${text}`);
    const dir = t.testdir({ 'c.yaml': `${name}: ${JSON.stringify(text)}\n` });
    const file = join(dir, 'c.yaml');
    const config = run(['--config', file], extra);
    t.same(config[key], want, `file ${name}: ${text}`);
    t.equal(config.configFile, file);
  }
});

t.test('enum values are case-insensitive, as in PostgreSQL', async (t) => {
  t.equal(run(['--log-level', 'WARN']).logLevel, 'warn');
  t.equal(run(['--admin-listen', 'OFF']).adminListen, null);
  t.equal(run(['--source', 'Demo']).source, 'demo');
});

t.test('numbers in the config file', async (t) => {
  const dir = t.testdir({
    'n.yaml': 'max_wal_senders: 20\ndemo_rate: 2048\nwal_sender_timeout: 1500\nworkers: 2\ndemo_wal_segment_size: 1048576\n',
  });
  const c = run(['--config', join(dir, 'n.yaml')]);
  t.equal(c.maxWalSenders, 20);
  t.equal(c.demoRate, 2048);
  t.equal(c.walSenderTimeoutMs, 1500, 'bare number = milliseconds');
  t.equal(c.workers, 2);
  t.equal(c.demoWalSegmentSize, 1048576);
});

t.test('YAML file with kebab-case keys', async (t) => {
  const dir = t.testdir({
    'k.yaml': [
      '# pg-walsender settings',
      'source: archive',
      'archive-dir: /srv/archive',
      'max-wal-senders: 50',
      'wal-sender-timeout: 30s',
      'admin-listen: off',
      'log-level: warn',
      '',
    ].join('\n'),
  });
  const c = run(['--config', join(dir, 'k.yaml')]);
  t.equal(c.source, 'archive');
  t.equal(c.archiveDir, '/srv/archive');
  t.equal(c.maxWalSenders, 50);
  t.equal(c.walSenderTimeoutMs, 30000);
  t.equal(c.adminListen, null, 'YAML 1.2 reads off as a string');
  t.equal(c.logLevel, 'warn');
});

t.test('JSON config file and PGWS_CONFIG', async (t) => {
  const dir = t.testdir({ 'c.json': JSON.stringify({ listen: '127.0.0.1:0', demo_rate: '4MB', max_wal_senders: 3 }) });
  const file = join(dir, 'c.json');
  const c = run([], { PGWS_CONFIG: file });
  t.same(c.listen, { host: '127.0.0.1', port: 0 });
  t.equal(c.demoRate, 4 * 1024 * 1024);
  t.equal(c.maxWalSenders, 3);
  t.equal(c.configFile, file);
});

t.test('an empty config file sets nothing', async (t) => {
  const dir = t.testdir({ 'empty.yaml': '# nothing here\n' });
  t.equal(run(['--config', join(dir, 'empty.yaml')]).maxWalSenders, 10);
});

t.test('a relative config path is resolved to an absolute one', async (t) => {
  const dir = t.testdir({ 'r.yaml': 'workers: 1\n' });
  const rel = join(dir, 'r.yaml').slice(process.cwd().length + 1);
  t.equal(run(['--config', rel]).configFile, join(dir, 'r.yaml'));
});

t.test('precedence: flag > environment > file > default', async (t) => {
  const dir = t.testdir({ 'p.yaml': 'max_wal_senders: 3\nlog_level: error\nworkers: 4\n' });
  const file = join(dir, 'p.yaml');
  const env = { PGWS_MAX_WAL_SENDERS: '2', PGWS_LOG_LEVEL: 'warn' };
  const c = run(['--config', file, '--max-wal-senders', '1'], env);
  t.equal(c.maxWalSenders, 1, 'flag wins over environment and file');
  t.equal(c.logLevel, 'warn', 'environment wins over file');
  t.equal(c.workers, 4, 'file wins over default');
  t.equal(c.walSenderTimeoutMs, 60000, 'default when set nowhere');
  t.equal(run(['--config', file], {}).maxWalSenders, 3);
  t.equal(run(['--max-wal-senders', '5', '--max-wal-senders', '6']).maxWalSenders, 6, 'last flag wins');
  t.equal(run([], { PGWS_MAX_WAL_SENDERS: '' }).maxWalSenders, 10, 'an empty variable counts as unset');
});

t.test('--config flag wins over PGWS_CONFIG', async (t) => {
  const dir = t.testdir({ 'a.yaml': 'workers: 1\n', 'b.yaml': 'workers: 2\n' });
  const c = run(['--config', join(dir, 'a.yaml')], { PGWS_CONFIG: join(dir, 'b.yaml') });
  t.equal(c.workers, 1);
});

t.test('archive_dir is required when source is archive', async (t) => {
  t.throws(() => run(['--source', 'archive']), {
    name: 'ConfigError',
    message: 'archive_dir is required when source is "archive"',
    setting: 'archive_dir',
  });
  t.equal(run(['--source', 'archive', '--archive-dir', '/a']).archiveDir, '/a');
  const dir = t.testdir({ 'a.yaml': 'source: archive\n' });
  t.equal(run(['--config', join(dir, 'a.yaml')], { PGWS_ARCHIVE_DIR: '/e' }).archiveDir, '/e');
  t.equal(run(['--archive-dir', '/x']).source, 'demo', 'archive_dir alone is fine');
});

t.test('upstream is required when source is upstream', async (t) => {
  t.throws(() => run(['--source', 'upstream']), {
    name: 'ConfigError',
    message: 'upstream is required when source is "upstream"',
    setting: 'upstream',
  });
  const c = run(['--source', 'upstream', '--upstream', "host=db1 user=rep password='se cret'"]);
  t.equal(c.upstream, "host=db1 user=rep password='se cret'", 'kept as written; the environment applies on the ingest thread');
  t.equal(c.upstreamSlot, null);
  t.equal(c.upstreamTimeoutMs, 60000);
});
