// Process entry: settings, start the server, and the seed's signals:
// SIGHUP reloads, SIGTERM and SIGUSR2 drain (send everything, then stop), SIGINT
// closes at once. Exit 0 after a clean shutdown, 2 on a bad setting, 1 on failure.

import { CONFIG_ERROR_EXIT_CODE, ConfigError, loadConfig, restartRequiredSettings, type Config } from './config.ts';
import { createLogger } from './log.ts';
import { startServer } from './server.ts';

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

const config = load()!;
const log = createLogger(config.logLevel);
let current = config;

try {
  const server = await startServer(config, log);
  const stop = (mode: 'drain' | 'fast', signal: string): void => {
    log.info({ signal, mode }, 'shutdown requested');
    server.shutdown(mode).then(
      () => { log.info('shut down'); process.exit(0); },
      (e: unknown) => { log.error({ err: e }, 'shutdown failed'); process.exit(1); },
    );
  };
  process.on('SIGTERM', () => stop('drain', 'SIGTERM'));
  process.on('SIGUSR2', () => stop('drain', 'SIGUSR2'));
  process.on('SIGINT', () => stop('fast', 'SIGINT'));
  process.on('SIGHUP', () => {
    try {
      const r = loadConfig(process.argv.slice(2), process.env);
      if (r.kind !== 'run') return;
      for (const name of restartRequiredSettings(r.config, current)) {
        log.warn({ setting: name }, 'parameter cannot be changed without restarting the server');
      }
      server.reload(r.config);
      current = { ...current, logLevel: r.config.logLevel, walSenderTimeoutMs: r.config.walSenderTimeoutMs, demoRate: r.config.demoRate };
      log.info({ logLevel: current.logLevel, walSenderTimeoutMs: current.walSenderTimeoutMs, demoRate: current.demoRate },
        'received SIGHUP, configuration reloaded');
    } catch (e) {
      log.error({ err: e instanceof ConfigError ? e.message : e }, 'configuration file contains errors; unaffected settings were kept');
    }
  });
} catch (e) {
  log.fatal({ err: e }, 'could not start');
  process.stderr.write(`pg-walsender: ${(e as Error).message}\n`);
  process.exit(1);
}
