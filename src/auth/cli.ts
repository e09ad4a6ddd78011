// Owns the authentication subcommands of the pg-walsender command:
//
//   pg-walsender user add NAME [--users-file FILE] [--method scram-sha-256|md5]
//                              [--no-replication] [--superuser]
//   pg-walsender hash-password [--method scram-sha-256|md5] [--user NAME]
//
// The password is read from a prompt without echo (asked twice) when stdin is a
// terminal, otherwise from the first line of stdin; never from a flag, which
// would leave it in shell history and in every process listing. Only the
// verifier is written; the users file is replaced atomically, mode 0600.

import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { md5Verifier } from './md5.ts';
import { buildScramSecret } from './scram.ts';
import { upsertUserLine } from './users.ts';

const USAGE = `Usage:
  pg-walsender user add NAME [--users-file FILE] [--method scram-sha-256|md5]
                             [--no-replication] [--superuser]
  pg-walsender hash-password [--method scram-sha-256|md5] [--user NAME]

The password is read from a prompt (no echo) or from stdin's first line.
user add writes NAME's verifier into the users file (--users-file, or
PGWS_USERS_FILE); send pg-walsender SIGHUP to apply it. hash-password prints a
verifier for a users file (md5 needs --user: the user name is part of the hash).`;

export const AUTH_COMMANDS = ['user', 'hash-password'];

type Io = {
  stdin: NodeJS.ReadStream;
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
  env: NodeJS.ProcessEnv;
};

class UsageError extends Error {}

function method(text: string | undefined): 'scram-sha-256' | 'md5' {
  const m = (text ?? 'scram-sha-256').toLowerCase();
  if (m === 'scram-sha-256' || m === 'scram') return 'scram-sha-256';
  if (m === 'md5') return 'md5';
  throw new UsageError(`invalid --method "${text}" (expected scram-sha-256 or md5)`);
}

/** Runs `argv` (starting with the subcommand); resolves to the exit status. */
export async function runAuthCommand(argv: string[], io: Io = process): Promise<number> {
  try {
    if (argv[0] === 'hash-password') {
      const { values, positionals } = parseArgs({ args: argv.slice(1), allowPositionals: true,
        options: { method: { type: 'string' }, user: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
      if (values.help) return help(io);
      if (positionals.length > 0) throw new UsageError('hash-password takes no arguments; the password is read from the prompt or stdin');
      const m = method(values.method);
      if (m === 'md5' && !values.user) throw new UsageError('--method md5 needs --user NAME (md5 hashes the user name with the password)');
      const password = await readPassword(io);
      io.stdout.write(`${m === 'md5' ? md5Verifier(password, values.user!) : buildScramSecret(password)}\n`);
      return 0;
    }
    if (argv[0] === 'user' && argv[1] === 'add') {
      const { values, positionals } = parseArgs({ args: argv.slice(2), allowPositionals: true,
        options: { 'users-file': { type: 'string' }, method: { type: 'string' }, 'no-replication': { type: 'boolean' },
          superuser: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
      if (values.help) return help(io);
      if (positionals.length !== 1) throw new UsageError('user add takes exactly one user NAME');
      const name = positionals[0]!;
      const file = values['users-file'] ?? io.env.PGWS_USERS_FILE;
      if (!file) throw new UsageError('no users file: give --users-file FILE or set PGWS_USERS_FILE');
      const m = method(values.method);
      let text = '';
      try {
        text = fs.readFileSync(file, 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      const password = await readPassword(io);
      const verifier = m === 'md5' ? md5Verifier(password, name) : buildScramSecret(password);
      const r = upsertUserLine(text, file, { name, verifier, replication: !values['no-replication'], superuser: values.superuser === true });
      writeAtomically(file, r.text);
      io.stderr.write(`${r.replaced ? 'updated' : 'added'} user "${name}" (${m}) in ${file}; send SIGHUP to pg-walsender to apply\n`);
      return 0;
    }
    if (argv[0] === 'user' && (argv[1] === undefined || argv[1] === '--help' || argv[1] === '-h')) return help(io);
    throw new UsageError(`unknown command "${argv.slice(0, 2).join(' ')}"`);
  } catch (e) {
    const err = e as Error & { code?: string };
    const usage = e instanceof UsageError || err.code?.startsWith('ERR_PARSE_ARGS');
    io.stderr.write(`pg-walsender: ${err.message.split('\n')[0]}\n${usage ? 'Try "pg-walsender user --help".\n' : ''}`);
    return usage ? 2 : 1;
  }
}

function help(io: Io): number {
  io.stdout.write(`${USAGE}\n`);
  return 0;
}

function writeAtomically(file: string, text: string): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  let mode = 0o600;
  try {
    mode = fs.statSync(file).mode & 0o777;
  } catch {
    // a new file: owner-only, it holds password verifiers
  }
  fs.writeFileSync(tmp, text, { mode });
  fs.renameSync(tmp, file);
}

async function readPassword(io: Io): Promise<string> {
  let password: string;
  if (io.stdin.isTTY) {
    password = await promptHidden(io, 'Enter password: ');
    const again = await promptHidden(io, 'Enter it again: ');
    if (again !== password) throw new Error('passwords didn\'t match');
  } else {
    const chunks: Buffer[] = [];
    for await (const c of io.stdin) chunks.push(Buffer.from(c as Buffer));
    password = Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0]!;
  }
  if (password === '') throw new Error('empty password: refusing to store it');
  return password;
}

/** A terminal prompt without echo (raw mode), like libpq's simple_prompt. */
function promptHidden(io: Io, question: string): Promise<string> {
  const stdin = io.stdin;
  io.stderr.write(question);
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  stdin.resume();
  return new Promise((resolve, reject) => {
    let buf = '';
    const finish = (): void => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      io.stderr.write('\n');
    };
    const onData = (s: string): void => {
      for (const ch of s) {
        if (ch === '\r' || ch === '\n') { finish(); resolve(buf); return; }
        if (ch === '\u0003' || ch === '\u0004') { finish(); reject(new Error('cancelled')); return; }
        if (ch === '\u007f' || ch === '\b') buf = [...buf].slice(0, -1).join('');
        else buf += ch;
      }
    };
    stdin.on('data', onData);
  });
}
