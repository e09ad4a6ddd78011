// Test PKI: a throwaway CA and a server certificate for localhost / 127.0.0.1 signed
// by it, made with the openssl command line (node:crypto cannot issue X.509
// certificates). Used by the TLS tests and the TLS benchmark.

import fs from 'node:fs';
import path from 'node:path';
import { runOk } from '../helpers/proc.ts';

export type TestPki = { dir: string; caCert: string; serverCert: string; serverKey: string };

/** Writes ca.crt, server.crt and server.key (mode 0600) into `dir`. */
export async function makeTestPki(dir: string, opts: { keyType?: 'rsa' | 'ec' } = {}): Promise<TestPki> {
  const f = (n: string): string => path.join(dir, n);
  const key = opts.keyType === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['-newkey', 'rsa:2048'];
  await runOk('openssl', ['req', '-x509', ...key, '-nodes', '-keyout', f('ca.key'), '-out', f('ca.crt'),
    '-subj', '/CN=pg-walsender test CA', '-days', '2', '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await runOk('openssl', ['req', ...key, '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=localhost']);
  fs.writeFileSync(f('ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  await runOk('openssl', ['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'),
    '-CAcreateserial', '-out', f('server.crt'), '-days', '2', '-sha256', '-extfile', f('ext.cnf')]);
  fs.chmodSync(f('server.key'), 0o600);
  return { dir, caCert: f('ca.crt'), serverCert: f('server.crt'), serverKey: f('server.key') };
}
