// The relay's SCRAM-SHA-256 client against a scripted server on loopback: the server
// must prove it knows the password (its signature in SASLFinal). A server that answers
// with a signature it could not compute, skips SASLFinal and sends AuthenticationOk,
// or hands back a nonce that is not the client's, is refused; the honest one is accepted.

import crypto from 'node:crypto';
import net from 'node:net';
import t, { type Test } from 'tap';
import {
  authenticationOk, authenticationSASL, authenticationSASLContinue, authenticationSASLFinal, parameterStatus, readyForQuery,
} from '../../src/protocol/backend.ts';
import { resolveConninfo } from '../../src/sources/upstream/conninfo.ts';
import { connectUpstream } from '../../src/sources/upstream/handshake.ts';

const PASSWORD = 'scram secret';
type Behaviour = 'honest' | 'wrong-signature' | 'skip-final' | 'foreign-nonce';

const hmac = (key: Buffer, data: string): Buffer => crypto.createHmac('sha256', key).update(data).digest();

/** A SCRAM-SHA-256 server for one password that misbehaves as told. */
async function scramServer(t: Test, behaviour: Behaviour): Promise<number> {
  const server = net.createServer((s) => {
    let buf = Buffer.alloc(0);
    let step = 0;
    let clientFirstBare = '';
    let serverFirst = '';
    const salt = crypto.randomBytes(16);
    s.on('error', () => {});
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (step === 0) {
          if (buf.length < 4 || buf.length < buf.readUInt32BE(0)) return;
          buf = buf.subarray(buf.readUInt32BE(0));
          s.write(authenticationSASL(['SCRAM-SHA-256']));
          step = 1;
          continue;
        }
        if (buf.length < 5 || buf.length < 1 + buf.readUInt32BE(1)) return;
        const body = buf.subarray(5, 1 + buf.readUInt32BE(1));
        buf = buf.subarray(1 + buf.readUInt32BE(1));
        if (step === 1) { // SASLInitialResponse: mechanism, Int32 length, client-first-message
          const mechEnd = body.indexOf(0);
          const clientFirst = body.subarray(mechEnd + 5).toString();
          clientFirstBare = clientFirst.slice(clientFirst.indexOf(',', clientFirst.indexOf(',') + 1) + 1);
          const clientNonce = /r=([^,]*)/.exec(clientFirstBare)![1]!;
          const nonce = behaviour === 'foreign-nonce' ? `x${clientNonce}server` : `${clientNonce}server`;
          serverFirst = `r=${nonce},s=${salt.toString('base64')},i=4096`;
          s.write(authenticationSASLContinue(Buffer.from(serverFirst)));
          step = 2;
        } else if (step === 2) { // client-final-message
          const clientFinal = body.toString();
          const withoutProof = clientFinal.slice(0, clientFinal.lastIndexOf(',p='));
          const salted = crypto.pbkdf2Sync(PASSWORD, salt, 4096, 32, 'sha256');
          const signature = hmac(hmac(salted, 'Server Key'), `${clientFirstBare},${serverFirst},${withoutProof}`);
          if (behaviour === 'wrong-signature') signature[0]! ^= 1;
          const out = [authenticationOk(), parameterStatus('server_version', '15.4'), readyForQuery()];
          if (behaviour !== 'skip-final') out.unshift(authenticationSASLFinal(Buffer.from(`v=${signature.toString('base64')}`)));
          s.write(Buffer.concat(out));
          step = 3;
        } else { // Terminate after the handshake
          s.end();
          return;
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as net.AddressInfo).port;
}

const connect = (port: number) => connectUpstream(resolveConninfo(
  `host=127.0.0.1 port=${port} user=rscram sslmode=disable password='${PASSWORD}'`, { env: {} }));

t.test('an honest server is accepted', async (t) => {
  const conn = await connect(await scramServer(t, 'honest'));
  t.equal(conn.parameters.get('server_version'), '15.4');
  conn.close();
});

for (const [behaviour, message] of [
  ['wrong-signature', /incorrect server signature/],
  ['skip-final', /server did not complete SCRAM authentication/],
  ['foreign-nonce', /nonce mismatch/],
] as const) {
  t.test(`a server that does not prove the password is refused: ${behaviour}`, async (t) => {
    const err = await connect(await scramServer(t, behaviour)).then((c) => { c.close(); return null; }, (e: Error) => e);
    t.ok(err, 'the connection is refused');
    t.match(err?.message, message);
  });
}
