// Process entry: settings, start the server, and the seed's signals:
// SIGHUP reloads, SIGTERM and SIGUSR2 drain (send everything, then stop), SIGINT
// closes at once. Exit 0 after a clean shutdown, 2 on a bad setting, 1 on failure.
// Then the admin HTTP API (admin_listen), whose reload and shutdown routes do what
// SIGHUP and SIGTERM/SIGINT do.

import { startAdminServer, type ReloadOutcome } from './admin/app.ts';
import {
  CONFIG_ERROR_EXIT_CODE, ConfigError, formatBytes, formatDurationMs, loadConfig, RELOADABLE, restartRequiredSettings, settingName,
  type Config,
} from './config.ts';
import { AUTH_COMMANDS, runAuthCommand } from './auth/cli.ts';
import { createLogger } from './log.ts';
import { startServer, VERSION } from './server.ts';

function load(): Config | null {
  try {
    const result = loadConfig(process.argv.slice(2), process.env);
    if (result.kind !== 'run') {
      console.log(result.text);
      process.exit(0);
    }
    return result.config;
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`pg-walsender: ${e.message}\n`);
      process.exit(CONFIG_ERROR_EXIT_CODE);
    }
    throw e;
  }
}

// `pg-walsender user add ...` / `hash-password`: authentication tools, no server.
if (AUTH_COMMANDS.includes(process.argv[2] ?? '')) process.exit(await runAuthCommand(process.argv.slice(2)));

const config = load()!;
const log = createLogger(config.logLevel);
let current = config;

try {
  const server = await startServer(config, log);
  void server.sourceFailed.then((e) => {
    log.fatal({ err: e.message }, 'WAL source failed; stopping');
    void server.shutdown('fast').finally(() => process.exit(1));
  });
  const stop = (mode: 'drain' | 'fast', by: string): void => {
    log.info({ by, mode }, 'shutdown requested');
    server.shutdown(mode).then(
      () => { log.info('shut down'); process.exit(0); },
      (e: unknown) => { log.error({ err: e }, 'shutdown failed'); process.exit(1); },
    );
  };
  process.on('SIGTERM', () => stop('drain', 'SIGTERM'));
  process.on('SIGUSR2', () => stop('drain', 'SIGUSR2'));
  process.on('SIGINT', () => stop('fast', 'SIGINT'));
  /** Re-read flags, environment and config file and apply the reloadable settings; throws ConfigError. */
  const reload = (): ReloadOutcome => {
    const r = loadConfig(process.argv.slice(2), process.env);
    if (r.kind !== 'run') throw new ConfigError('unexpected --help or --version');
    const restartRequired = restartRequiredSettings(r.config, current);
    for (const name of restartRequired) {
      log.warn({ setting: name }, 'parameter cannot be changed without restarting the server');
    }
    server.reload(r.config);
    const next: Record<string, unknown> = { ...current };
    for (const key of RELOADABLE) next[key] = r.config[key];
    current = next as Config;
    // Shown as SHOW would: the reloadable numbers are durations (…Ms) or sizes.
    const show = (key: string, v: unknown): string =>
      typeof v === 'number' ? (key.endsWith('Ms') ? formatDurationMs(v) : formatBytes(v)) : String(v);
    return {
      applied: Object.fromEntries(RELOADABLE.map((key) => [settingName(key), show(key, current[key])])),
      restartRequired,
    };
  };
  process.on('SIGHUP', () => {
    try {
      reload();
      log.info({ logLevel: current.logLevel, walSenderTimeoutMs: current.walSenderTimeoutMs, demoRate: current.demoRate },
        'received SIGHUP, configuration reloaded');
    } catch (e) {
      log.error({ err: e instanceof ConfigError ? e.message : e }, 'configuration file contains errors; unaffected settings were kept');
    }
  });
  if (config.adminListen !== null) {
    await startAdminServer({
      views: server.views, source: config.source, storeDir: server.storeDir, dataDir: config.dataDir, version: VERSION,
      adminToken: config.adminToken, log, listening: () => server.listening(), reload,
      shutdown: (mode) => stop(mode, 'admin API'),
    }, config.adminListen);
  }
} catch (e) {
  log.fatal({ err: e }, 'could not start');
  process.stderr.write(`pg-walsender: ${(e as Error).message}\n`);
  process.exit(1);
}
