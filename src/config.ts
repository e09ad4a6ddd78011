// Owns loading the settings: reading the YAML/JSON config file, merging
// flag > environment > file > default into a Config, and which settings a SIGHUP
// reload may change. The list of settings and their parsers is settings.ts; unit
// parsing and SHOW-style formatting units.ts (re-exported here); flag parsing and
// --help text cli.ts.


import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Ajv } from 'ajv';
import { parseDocument } from 'yaml';
import { helpText, parseFlags } from './cli.ts';
import type { FlagSpec } from './cli.ts';
import { formatBytes, formatDurationMs, parseByteSize, parseDuration } from './units.ts';

export { formatBytes, formatDurationMs, parseByteSize, parseDuration };
import { parseAdminToken, SETTINGS, type Config, type Setting } from './settings.ts';

export { HOST_PORT_EXPECTED, LOG_LEVELS, parseHostPort, SETTINGS, SOURCES } from './settings.ts';
export type { Config } from './settings.ts';

export type LoadResult =
  | { kind: 'run'; config: Config }
  | { kind: 'help'; text: string }
  | { kind: 'version'; text: string };

/** A bad flag, environment variable, config file or value. The message is one line. */
export class ConfigError extends Error {
  /** The setting (snake_case name) the error is about, if any. */
  readonly setting: string | null;
  /** Where the bad value came from ("--max-wal-senders", "PGWS_MAX_WAL_SENDERS", "config file /x.yaml"), if known. */
  readonly origin: string | null;
  constructor(message: string, setting: string | null = null, origin: string | null = null) {
    super(message);
    this.name = 'ConfigError';
    this.setting = setting;
    this.origin = origin;
  }
}

/** Exit status for a ConfigError (after printing "pg-walsender: <message>" to stderr). */
export const CONFIG_ERROR_EXIT_CODE = 2;

export const PROGRAM_NAME = 'pg-walsender';
const ENV_PREFIX = 'PGWS_';

/** Settings a SIGHUP may change (Config keys); everything else needs a restart. */
export const RELOADABLE = ['logLevel', 'walSenderTimeoutMs', 'demoRate', 'authenticationTimeoutMs'] as const satisfies readonly (keyof Config)[];


const flagOf = (name: string): string => name.replaceAll('_', '-');
const envOf = (name: string): string => ENV_PREFIX + name.toUpperCase();

const CONFIG_FLAG: FlagSpec = {
  flag: 'config', env: envOf('config'), metavar: 'FILE', defaultText: 'none',
  description: 'YAML or JSON file of settings (see below)',
};

const FLAG_SPECS: readonly FlagSpec[] = [
  CONFIG_FLAG,
  ...SETTINGS.map((s) => ({
    flag: flagOf(s.name), env: envOf(s.name), metavar: s.metavar, description: s.description,
    defaultText: s.defaultHelp ?? String(s.default),
  })),
];

const HELP_NOTES = [
  'Flags win over environment variables, which win over the config file, which',
  'wins over the defaults. Config file keys are the setting names in snake_case',
  '(max_wal_senders) or kebab-case (max-wal-senders).',
  'Sizes take PostgreSQL units B, kB, MB, GB, TB (bare number = bytes); durations',
  'take us, ms, s, min, h, d (bare number = milliseconds). IPv6: [address]:port.',
  'SIGHUP re-reads the environment and config file and applies log_level,',
  'wal_sender_timeout, demo_rate and authentication_timeout, and re-reads the',
  'hba, users and certificate files; other changes need a restart.',
  'Users and password verifiers: pg-walsender user add NAME, pg-walsender',
  'hash-password (see pg-walsender user --help).',
];

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Shows a value in an error message, compactly and on one line. */
function show(value: unknown): string {
  const s = JSON.stringify(value) ?? String(value);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function invalidValue(s: { name: string; expected: string }, value: unknown, reason: string, origin: string | null): ConfigError {
  const why = reason.startsWith('expected') || reason.includes('valid units') ? reason : `${reason}; expected ${s.expected}`;
  const shown = s.name === 'admin_token' ? '(value hidden)' : show(value); // never echo a secret
  return new ConfigError(`invalid value for setting "${s.name}": ${shown} (${why})`, s.name, origin);
}

const ajv = new Ajv({ allErrors: false, allowUnionTypes: true });
const validateFile = ajv.compile({
  type: 'object',
  properties: Object.fromEntries(SETTINGS.map((s) => [s.name, { type: ['string', 'number'] }])),
  additionalProperties: false,
});

/** Reads and checks the config file; returns setting name → value as text. */
function readConfigFile(file: string): Map<string, string> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const message = (err as Error).message.replace(/, (open|read) '.*'$/, '');
    throw new ConfigError(`could not read config file "${file}": ${message}`, 'config', file);
  }
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    const first = doc.errors[0].message.split('\n')[0].replace(/:$/, '');
    throw new ConfigError(`could not parse config file "${file}": ${first}`, 'config', file);
  }
  let data: unknown = doc.toJS() ?? {};
  const originalKey = new Map<string, string>();
  if (data !== null && typeof data === 'object' && !Array.isArray(data)) {
    const normalized: Record<string, unknown> = Object.create(null); // so a "__proto__" key is just a key
    for (const [key, value] of Object.entries(data)) {
      const name = key.replaceAll('-', '_');
      if (originalKey.has(name)) {
        throw new ConfigError(`setting "${name}" is given twice in config file ${file} (as "${originalKey.get(name)}" and "${key}")`, name, file);
      }
      originalKey.set(name, key);
      normalized[name] = value;
    }
    data = normalized;
  }
  if (!validateFile(data)) {
    const e = validateFile.errors?.[0];
    if (e === undefined || e.instancePath === '') {
      if (e?.keyword === 'additionalProperties') {
        const key = String((e.params as { additionalProperty: unknown }).additionalProperty);
        throw new ConfigError(`unrecognized setting "${originalKey.get(key) ?? key}" in config file ${file}`, null, file);
      }
      throw new ConfigError(`config file ${file} must contain a mapping of setting names to values`, null, file);
    }
    const name = e.instancePath.slice(1);
    const s = SETTINGS.find((x) => x.name === name);
    const value = (data as Record<string, unknown>)[name];
    throw invalidValue(s ?? { name, expected: '' }, value, `expected ${s?.expected ?? 'a string or number'}`, `config file ${file}`);
  }
  const out = new Map<string, string>();
  for (const [name, value] of Object.entries(data as Record<string, string | number>)) out.set(name, String(value));
  return out;
}

/** The token in admin_token_file (surrounding white space, e.g. a final newline, ignored). */
function readAdminTokenFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const message = (err as Error).message.replace(/, (open|read) '.*'$/, '');
    throw new ConfigError(`could not read admin_token_file "${file}": ${message}`, 'admin_token_file', file);
  }
  try {
    return parseAdminToken(text);
  } catch (err) {
    throw new ConfigError(`invalid admin token in admin_token_file "${file}" (${(err as Error).message})`, 'admin_token_file', file);
  }
}

/** Non-empty environment variable, or undefined (an empty variable counts as unset). */
function envValue(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v === '' ? undefined : v;
}

/**
 * Builds the Config from argv (without node and script), the environment and
 * the config file; or the --help / --version text (no trailing newline).
 * Throws ConfigError with a one-line message.
 */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): LoadResult {
  let flags;
  try {
    flags = parseFlags(argv, FLAG_SPECS);
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  if (flags.help) return { kind: 'help', text: helpText(FLAG_SPECS, PROGRAM_NAME, HELP_NOTES) };
  if (flags.version) return { kind: 'version', text: `${PROGRAM_NAME} ${packageVersion()}` };

  let configFile: string | null = null;
  const configText = flags.values.get('config') ?? envValue(env, CONFIG_FLAG.env);
  if (configText !== undefined) {
    if (configText.trim() === '') {
      const origin = flags.values.has('config') ? '--config' : CONFIG_FLAG.env;
      throw invalidValue({ name: 'config', expected: 'a file path' }, configText, 'expected a file path', origin);
    }
    configFile = resolve(configText);
  }
  const fileValues = configFile === null ? new Map<string, string>() : readConfigFile(configFile);

  const out: Record<string, unknown> = { configFile };
  for (const s of SETTINGS) {
    const flag = flagOf(s.name);
    const envName = envOf(s.name);
    let text: string | null;
    let origin: string | null;
    if (flags.values.has(flag)) {
      [text, origin] = [flags.values.get(flag) ?? '', `--${flag}`];
    } else if (envValue(env, envName) !== undefined) {
      [text, origin] = [envValue(env, envName) ?? '', envName];
    } else if (fileValues.has(s.name)) {
      [text, origin] = [fileValues.get(s.name) ?? '', `config file ${configFile}`];
    } else {
      [text, origin] = [typeof s.default === 'function' ? s.default() : s.default, null];
    }
    if (text === null) {
      out[s.key] = null;
      continue;
    }
    try {
      out[s.key] = s.parse(text);
    } catch (err) {
      throw invalidValue(s, text, (err as Error).message, origin);
    }
  }
  const config = out as Config;
  if (config.adminTokenFile !== null) {
    if (config.adminToken !== null) {
      throw new ConfigError('admin_token and admin_token_file are both set; use one', 'admin_token_file');
    }
    config.adminToken = readAdminTokenFile(config.adminTokenFile);
  }
  if ((config.sslCertFile === null) !== (config.sslKeyFile === null)) {
    throw new ConfigError('ssl_cert_file and ssl_key_file must be set together', config.sslCertFile === null ? 'ssl_cert_file' : 'ssl_key_file');
  }
  if (config.source === 'archive' && config.archiveDir === null) {
    throw new ConfigError('archive_dir is required when source is "archive"', 'archive_dir');
  }
  if (config.source === 'upstream' && config.upstream === null) {
    throw new ConfigError('upstream is required when source is "upstream"', 'upstream');
  }
  return { kind: 'run', config };
}

/** The snake_case setting name of a Config key ("walSenderTimeoutMs" → "wal_sender_timeout"). */
export function settingName(key: keyof Config): string {
  return key === 'configFile' ? 'config' : (SETTINGS.find((s) => s.key === key)?.name ?? key);
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/** The reloadable settings (RELOADABLE) whose value differs between prev and next, with next's values. */
export function reloadableSettings(next: Config, prev: Config): Partial<Config> {
  const out: Partial<Config> = {};
  for (const key of RELOADABLE) {
    if (!same(next[key], prev[key])) (out as Record<string, unknown>)[key] = next[key];
  }
  return out;
}

/**
 * Setting names (snake_case) that differ between prev and next but need a
 * restart, for a log line like PostgreSQL's `parameter "listen" cannot be
 * changed without restarting the server`.
 */
export function restartRequiredSettings(next: Config, prev: Config): string[] {
  const reloadable: readonly string[] = RELOADABLE;
  return SETTINGS.filter((s) => !reloadable.includes(s.key) && !same(next[s.key], prev[s.key])).map((s) => s.name);
}
