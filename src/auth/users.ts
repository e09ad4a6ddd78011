// Owns the users file: who may connect and with which password verifier. One user
// per line, in the hba file's token syntax:
//
//   # name        verifier (as in pg_authid.rolpassword)                 attributes
//   replicator    SCRAM-SHA-256$4096:c2FsdA==$StoredKey:ServerKey         replication
//   archiver      md53175bce1d3201d16594cebf9d7eb3f9d                     replication
//   monitor       -                                                       noreplication
//
// The verifier is PostgreSQL's own format, so it can be copied from pg_authid;
// "-" means no password (only trust lines can let that user in). Attributes are a
// comma list of replication / noreplication / superuser / nosuperuser; like
// PostgreSQL's CREATE ROLE, the default is NOREPLICATION. Passwords themselves
// are never stored.

import { AuthConfigError, confLines, quoteToken } from './conf-lines.ts';
import { isMd5Verifier } from './md5.ts';
import { parseScramSecret } from './scram.ts';

export type UserEntry = {
  name: string;
  /** pg_authid.rolpassword, or null for no password. */
  verifier: string | null;
  replication: boolean;
  superuser: boolean;
};

export type UserDb = ReadonlyMap<string, UserEntry>;

/** NAMEDATALEN - 1: longer names could never match a startup packet's user. */
const NAME_MAX_BYTES = 63;

export function parseUsers(text: string, file: string): UserDb {
  const out = new Map<string, UserEntry>();
  for (const rec of confLines(text, file)) {
    const fail = (msg: string): never => { throw new AuthConfigError(msg, file, rec.line); };
    const [nameF, verF, attrF, extra] = rec.fields;
    if (nameF!.length !== 1) fail('a user line starts with exactly one user name');
    const name = nameF![0]!.text;
    if (name === '' || Buffer.byteLength(name) > NAME_MAX_BYTES) fail(`invalid user name "${name}" (1 to ${NAME_MAX_BYTES} bytes)`);
    if (out.has(name)) fail(`user "${name}" is listed twice`);
    if (!verF) fail(`missing password verifier for user "${name}" (use - for none)`);
    if (verF!.length !== 1) fail(`invalid password verifier for user "${name}"`);
    const v = verF![0]!;
    const verifier = v.text === '-' && !v.quoted ? null : v.text;
    if (verifier !== null && !isMd5Verifier(verifier) && parseScramSecret(verifier) === null) {
      fail(`invalid password verifier for user "${name}": expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> or md5 followed by 32 hex digits`);
    }
    const entry: UserEntry = { name, verifier, replication: false, superuser: false };
    for (const a of attrF ?? []) {
      switch (a.text.toLowerCase()) {
        case 'replication': entry.replication = true; break;
        case 'noreplication': entry.replication = false; break;
        case 'superuser': entry.superuser = true; break;
        case 'nosuperuser': entry.superuser = false; break;
        default: fail(`unrecognized attribute "${a.text}" for user "${name}" (expected replication, noreplication, superuser or nosuperuser)`);
      }
    }
    if (extra) fail(`unexpected text after the attributes of user "${name}"`);
    out.set(name, entry);
  }
  return out;
}

export function formatUserLine(u: UserEntry): string {
  const attrs = [u.replication ? 'replication' : 'noreplication', ...(u.superuser ? ['superuser'] : [])];
  return `${quoteToken(u.name)} ${u.verifier ?? '-'} ${attrs.join(',')}`;
}

/**
 * Adds a user to a users file's text, or replaces that user's line in place
 * (keeping every other line and comment as it was).
 */
export function upsertUserLine(text: string, file: string, u: UserEntry): { text: string; replaced: boolean } {
  const db = parseUsers(text, file); // refuse to edit a file we could not read back
  const line = formatUserLine(u);
  if (!db.has(u.name)) {
    const sep = text === '' || text.endsWith('\n') ? '' : '\n';
    return { text: `${text}${sep}${line}\n`, replaced: false };
  }
  const at = confLines(text, file).find((r) => r.fields[0]![0]!.text === u.name)!.line;
  const physical = text.split('\n');
  // A continued record spans several physical lines: replace all of them.
  let end = at - 1;
  while (physical[end]!.replace(/\r$/, '').endsWith('\\') && end + 1 < physical.length) end++;
  physical.splice(at - 1, end - at + 2, line);
  return { text: physical.join('\n'), replaced: true };
}
