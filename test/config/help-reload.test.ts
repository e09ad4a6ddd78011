// Tests --help / --version output and which settings a SIGHUP reload applies.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  RELOADABLE,
  SETTINGS,
  loadConfig,
  reloadableSettings,
  restartRequiredSettings,
  settingName,
} from '../../src/config.ts';
import type { Config } from '../../src/config.ts';

const FLAGS: [string, string, string][] = [
  // flag, env var, default shown
  ['--config', 'PGWS_CONFIG', 'none'],
  ['--source', 'PGWS_SOURCE', 'demo'],
  ['--archive-dir', 'PGWS_ARCHIVE_DIR', 'none'],
  ['--data-dir', 'PGWS_DATA_DIR', './data'],
  ['--demo-rate', 'PGWS_DEMO_RATE', '1MB'],
  ['--demo-wal-segment-size', 'PGWS_DEMO_WAL_SEGMENT_SIZE', '16MB'],
  ['--upstream', 'PGWS_UPSTREAM', 'none'],
  ['--upstream-slot', 'PGWS_UPSTREAM_SLOT', 'none'],
  ['--upstream-password-file', 'PGWS_UPSTREAM_PASSWORD_FILE', 'none'],
  ['--upstream-timeout', 'PGWS_UPSTREAM_TIMEOUT', '60s'],
  ['--listen', 'PGWS_LISTEN', '127.0.0.1:5433'],
  ['--admin-listen', 'PGWS_ADMIN_LISTEN', '127.0.0.1:9433'],
  ['--admin-token', 'PGWS_ADMIN_TOKEN', 'none'],
  ['--admin-token-file', 'PGWS_ADMIN_TOKEN_FILE', 'none'],
  ['--max-wal-senders', 'PGWS_MAX_WAL_SENDERS', '10'],
  ['--max-replication-slots', 'PGWS_MAX_REPLICATION_SLOTS', '10'],
  ['--wal-keep-size', 'PGWS_WAL_KEEP_SIZE', '0'],
  ['--max-slot-wal-keep-size', 'PGWS_MAX_SLOT_WAL_KEEP_SIZE', '-1'],
  ['--wal-sender-timeout', 'PGWS_WAL_SENDER_TIMEOUT', '60s'],
  ['--workers', 'PGWS_WORKERS', 'CPU cores'],
  ['--wal-read', 'PGWS_WAL_READ', 'mmap'],
  ['--log-level', 'PGWS_LOG_LEVEL', 'info'],
  ['--hba-file', 'PGWS_HBA_FILE', 'none'],
  ['--users-file', 'PGWS_USERS_FILE', 'none'],
  ['--ssl-cert-file', 'PGWS_SSL_CERT_FILE', 'none'],
  ['--ssl-key-file', 'PGWS_SSL_KEY_FILE', 'none'],
  ['--authentication-timeout', 'PGWS_AUTHENTICATION_TIMEOUT', '60s'],
];

t.test('--help lists every flag, its env var and default', async (t) => {
  for (const argv of [['--help'], ['-h']]) {
    const r = loadConfig(argv, {});
    if (r.kind !== 'help') throw new Error('expected help');
    for (const [flag, env, def] of FLAGS) {
      const at = r.text.indexOf(`  ${flag} `);
      t.ok(at >= 0, `${flag} listed`);
      const block = r.text.slice(at, r.text.indexOf('\n  -', at + 3));
      t.match(block, `[env ${env}; default: ${def}`, `${flag}: env and default`);
    }
    t.match(r.text, '-h, --help');
    t.match(r.text, '--version');
    t.ok(r.text.split('\n').every((line) => line.length <= 80), 'fits 80 columns');
  }
  t.equal(FLAGS.length, SETTINGS.length + 1, 'every setting is checked here');
});

t.test('--version prints the package version', async (t) => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  t.same(loadConfig(['--version'], {}), { kind: 'version', text: `pg-walsender ${pkg.version}` });
});

function config(over: Partial<Config> = {}): Config {
  const r = loadConfig([], {});
  if (r.kind !== 'run') throw new Error('expected run');
  return { ...r.config, ...over };
}

t.test('reloadableSettings', async (t) => {
  t.same(RELOADABLE, ['logLevel', 'walSenderTimeoutMs', 'demoRate', 'authenticationTimeoutMs']);
  const prev = config();
  t.same(reloadableSettings(config(), prev), {}, 'nothing changed');
  t.same(
    reloadableSettings(config({ logLevel: 'debug', walSenderTimeoutMs: 0, demoRate: 0 }), prev),
    { logLevel: 'debug', walSenderTimeoutMs: 0, demoRate: 0 },
  );
  t.same(reloadableSettings(config({ demoRate: 1, maxWalSenders: 99, listen: { host: '::1', port: 1 } }), prev), { demoRate: 1 },
    'restart-only settings are left out');
  t.same(restartRequiredSettings(config({ demoRate: 1, maxWalSenders: 99, listen: { host: '::1', port: 1 } }), prev),
    ['listen', 'max_wal_senders']);
  t.same(restartRequiredSettings(config({ listen: { host: '127.0.0.1', port: 5433 } }), prev), [], 'equal objects are unchanged');
  t.equal(settingName('walSenderTimeoutMs'), 'wal_sender_timeout');
  t.equal(settingName('configFile'), 'config');
});

t.test('reload re-reads the file with the original argv and current env', async (t) => {
  const dir = t.testdir({ 'r.yaml': 'log_level: info\nwal_sender_timeout: 60s\n' });
  const argv = ['--config', join(dir, 'r.yaml'), '--demo-rate', '2MB'];
  const first = loadConfig(argv, {});
  t.testdir({ 'r.yaml': 'log_level: debug\nwal_sender_timeout: 10s\nmax_wal_senders: 5\ndemo_rate: 1kB\n' });
  const second = loadConfig(argv, { PGWS_LOG_LEVEL: 'trace' });
  if (first.kind !== 'run' || second.kind !== 'run') throw new Error('expected run');
  t.same(reloadableSettings(second.config, first.config), { logLevel: 'trace', walSenderTimeoutMs: 10000 },
    'env beats file, flag still beats both');
  t.same(restartRequiredSettings(second.config, first.config), ['max_wal_senders']);
});
