// Owns the command line: building node:util parseArgs options from the flag
// list, turning parseArgs errors into one-line messages, and the --help text.
// It knows nothing about what the settings mean: config.ts passes in the list
// (FlagSpec[]) and validates the values; errors here are plain Errors that
// config.ts wraps into ConfigError.

import { parseArgs } from 'node:util';

/** One command-line flag as shown in --help; values are always strings. */
export type FlagSpec = {
  /** Long option name without the dashes, e.g. "max-wal-senders". */
  flag: string;
  /** Environment variable, e.g. "PGWS_MAX_WAL_SENDERS". */
  env: string;
  /** Placeholder for the value in --help, e.g. "N". */
  metavar: string;
  /** One line. */
  description: string;
  /** The default as shown in --help. */
  defaultText: string;
};

export type ParsedFlags = {
  help: boolean;
  version: boolean;
  /** Flag name (without dashes) → last value given on the command line. */
  values: Map<string, string>;
};

type OptionConfig = { type: 'string' | 'boolean'; short?: string };

/** Rewrites a parseArgs error (ERR_PARSE_ARGS_*) as one short line. */
function describeParseError(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const message = String(e.message ?? err);
  const quoted = /'([^']+)'/.exec(message)?.[1] ?? '';
  const longFlag = /--[\w-]+/.exec(quoted)?.[0] ?? quoted;
  switch (e.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${quoted}`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument "${quoted}" (this command takes no positional arguments)`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (message.includes('does not take an argument')) return `option ${longFlag} does not take a value`;
      return `option ${longFlag} requires a value (use ${longFlag}=VALUE for a value starting with "-")`;
    default:
      return message.split('\n')[0];
  }
}

/**
 * Parses argv (without the node and script arguments). Unknown options,
 * positional arguments and missing values throw an Error with a one-line
 * message. Values are not validated here.
 */
export function parseFlags(argv: string[], specs: readonly FlagSpec[]): ParsedFlags {
  const options: Record<string, OptionConfig> = {
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean' },
  };
  for (const spec of specs) options[spec.flag] = { type: 'string' };

  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: false });
  } catch (err) {
    throw new Error(describeParseError(err));
  }
  const values = new Map<string, string>();
  for (const spec of specs) {
    const v = parsed.values[spec.flag];
    if (typeof v === 'string') values.set(spec.flag, v);
  }
  return { help: parsed.values.help === true, version: parsed.values.version === true, values };
}

const LEFT_WIDTH = 32;

function entry(left: string, lines: string[]): string {
  const out: string[] = [];
  const pad = ' '.repeat(LEFT_WIDTH);
  if (left.length < LEFT_WIDTH - 1) {
    out.push(left.padEnd(LEFT_WIDTH) + lines[0]);
  } else {
    out.push(left, pad + lines[0]);
  }
  for (const line of lines.slice(1)) out.push(pad + line);
  return out.join('\n');
}

/**
 * The --help text: every flag with its environment variable, default and a
 * one-line description. No trailing newline (print it with console.log).
 */
export function helpText(specs: readonly FlagSpec[], programName: string, notes: readonly string[]): string {
  const parts: string[] = [
    `${programName} streams PostgreSQL WAL to standbys and pg_receivewal over the`,
    'physical replication protocol, like a primary\'s walsender.',
    '',
    'Usage:',
    `  ${programName} [OPTION]...`,
    '',
    'Options:',
  ];
  for (const spec of specs) {
    parts.push(entry(`  --${spec.flag} ${spec.metavar}`, [spec.description, `[env ${spec.env}; default: ${spec.defaultText}]`]));
  }
  parts.push(entry('  -h, --help', ['show this help, then exit']));
  parts.push(entry('  --version', ['output version information, then exit']));
  if (notes.length > 0) parts.push('', ...notes);
  return parts.join('\n');
}
