// The SCRAM-SHA-256 server and client against RFC 7677's test vector, PostgreSQL's
// error texts for malformed messages, the mock exchange for unknown users, channel
// binding, and the md5 scheme against protocol.md's observed exchange.

import t from 'tap';
import { endPointHashAlgorithm } from '../../src/auth/tls.ts';
import { isMd5Verifier, md5Response, md5Verifier, md5VerifyResponse, verifyPlainPassword } from '../../src/auth/md5.ts';
import { saslprep, saslprepBytes } from '../../src/auth/saslprep.ts';
import { ScramClient } from '../../src/auth/scram-client.ts';
import {
  buildScramSecret, parseScramSecret, ScramExchange, type ScramOptions, type ScramStep,
} from '../../src/auth/scram.ts';
import { throwsPg } from '../protocol/helpers.ts';

// RFC 7677 section 3.
const RFC = {
  password: 'pencil',
  salt: 'W22ZaJ0SNY7soEsUEjb6gQ==',
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverNonce: '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal: 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};
const rfcSecret = buildScramSecret(RFC.password, Buffer.from(RFC.salt, 'base64'), 4096);

const exchange = (o: Partial<ScramOptions> = {}): ScramExchange => new ScramExchange({
  mechanism: 'SCRAM-SHA-256', secret: parseScramSecret(rfcSecret), user: 'user', certificateHash: null,
  mockNonce: Buffer.alloc(32, 7), serverNonce: RFC.serverNonce, ...o,
});
const text = (r: ScramStep | null): string => (r && r.kind !== 'failure' ? `${r.kind} ${r.output.toString('latin1')}` : String(r?.kind));

t.test('RFC 7677 test vector, server side', async (t) => {
  t.match(rfcSecret, /^SCRAM-SHA-256\$4096:W22ZaJ0SNY7soEsUEjb6gQ==\$[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}$/);
  const s = exchange();
  t.equal(text(s.step(Buffer.from(RFC.clientFirst))), `continue ${RFC.serverFirst}`);
  t.equal(text(s.step(Buffer.from(RFC.clientFinal))), `success ${RFC.serverFinal}`);
});

t.test('no initial response: an empty SASLContinue asks for client-first (scram_exchange)', async (t) => {
  const s = exchange();
  t.equal(text(s.step(null)), 'continue ', 'empty challenge, as PostgreSQL sends');
  t.equal(text(s.step(Buffer.from(RFC.clientFirst))), `continue ${RFC.serverFirst}`, 'then the usual exchange');
  t.equal(text(s.step(Buffer.from(RFC.clientFinal))), `success ${RFC.serverFinal}`);
});

t.test('wrong proof, unknown user and md5 user all fail only at the end', async (t) => {
  const bad = RFC.clientFinal.replace('p=dHzb', 'p=dHzc');
  let s = exchange();
  s.step(Buffer.from(RFC.clientFirst));
  t.equal(s.step(Buffer.from(bad))?.kind, 'failure', 'wrong proof');
  s = exchange({ secret: null, user: 'nobody' });
  t.ok(s.doomed);
  const first = text(s.step(Buffer.from(RFC.clientFirst)));
  t.match(first, /^continue r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj\)hNlF\$k0,s=[A-Za-z0-9+/]{22}==,i=4096$/, 'a plausible salt');
  t.equal(s.step(Buffer.from(RFC.clientFinal))?.kind, 'failure', 'mock exchange fails at the end');
  const again = exchange({ secret: null, user: 'nobody' });
  t.equal(text(again.step(Buffer.from(RFC.clientFirst))), first, 'the same unknown user always sees the same salt');
  const other = exchange({ secret: null, user: 'somebody' });
  t.not(text(other.step(Buffer.from(RFC.clientFirst))), first, 'another unknown user sees another salt');
});

t.test('our client against our server, with and without channel binding', async (t) => {
  const secret = parseScramSecret(buildScramSecret('s3cret'))!;
  const cb = Buffer.alloc(32, 0xab);
  for (const binding of [undefined, cb]) {
    const c = new ScramClient({ password: 's3cret', channelBinding: binding });
    const s = new ScramExchange({ mechanism: c.mechanism, secret, user: 'u', certificateHash: binding ?? null, mockNonce: Buffer.alloc(32) });
    const sf = s.step(c.clientFirst());
    t.equal(sf?.kind, 'continue');
    const fin = s.step(c.clientFinal((sf as { output: Buffer }).output));
    t.equal(fin?.kind, 'success', `${c.mechanism} succeeds`);
    t.ok(c.verifyServerFinal((fin as { output: Buffer }).output), 'client verifies the server signature');
  }
  // Binding data that is not this server's certificate hash: PostgreSQL's 28000.
  const c = new ScramClient({ password: 's3cret', channelBinding: Buffer.alloc(32, 1) });
  const s = new ScramExchange({ mechanism: c.mechanism, secret, user: 'u', certificateHash: cb, mockNonce: Buffer.alloc(32) });
  const sf = s.step(c.clientFirst()) as { output: Buffer };
  throwsPg(t, () => s.step(c.clientFinal(sf.output)), { severity: 'FATAL', code: '28000', message: 'SCRAM channel binding check failed' });
  // 'y' while we offered -PLUS: the client was downgraded.
  const y = new ScramClient({ password: 's3cret', clientSupportsBinding: true });
  const s2 = new ScramExchange({ mechanism: y.mechanism, secret, user: 'u', certificateHash: cb, mockNonce: Buffer.alloc(32) });
  throwsPg(t, () => s2.step(y.clientFirst()), { severity: 'FATAL', code: '28000', message: 'SCRAM channel binding negotiation error' });
  // -PLUS without TLS (no certificate hash): not a mechanism we offered.
  throwsPg(t, () => new ScramExchange({ mechanism: 'SCRAM-SHA-256-PLUS', secret, user: 'u', certificateHash: null, mockNonce: Buffer.alloc(32) }),
    { severity: 'FATAL', code: '08P01', message: 'client selected an invalid SASL authentication mechanism' });
});

t.test('malformed messages get PostgreSQL\'s errors', async (t) => {
  const first = (msg: string, detail: string | undefined, message = 'malformed SCRAM message', code = '08P01'): void => {
    throwsPg(t, () => exchange().step(Buffer.from(msg, 'latin1')), { severity: 'FATAL', code, message, detail }, `${JSON.stringify(msg)}`);
  };
  first('', 'The message is empty.');
  first('n,,n=,r=a\0b', 'Message length does not match input length.');
  first('x,,n=,r=abc', 'Unexpected channel-binding flag "\'x\'".');
  first('n;,n=,r=abc', 'Comma expected, but found character "\';\'".');
  first('p=tls-server-end-point,,n=,r=abc', 'The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data.');
  first('n,a=x,n=,r=abc', undefined, 'client uses authorization identity, but it is not supported', '0A000');
  first('n,,m=ext,n=,r=abc', undefined, 'client requires an unsupported SCRAM extension', '0A000');
  first('n,,r=abc', 'Expected attribute "n" but found "\'r\'".');
  first('n,,n=,r=ab\x01c', undefined, 'non-printable characters in SCRAM nonce');
  first('n,,n=,r=abc,1=x', 'Attribute expected, but found invalid character "\'1\'".');
  first('n,,n=,r=abc,x', 'Expected character "=" for attribute "x".');
  first('n,,n', 'Expected character "=" for attribute "n".');
  first('n,,', 'Expected attribute "n" but found "0x00".');

  const final = (msg: string, detail: string | undefined, message = 'malformed SCRAM message'): void => {
    const s = exchange();
    s.step(Buffer.from(RFC.clientFirst));
    throwsPg(t, () => s.step(Buffer.from(msg)), { severity: 'FATAL', code: '08P01', message, detail }, `final ${JSON.stringify(msg)}`);
  };
  const nonce = RFC.serverFirst.slice(2, RFC.serverFirst.indexOf(','));
  final(`c=eSws,r=${nonce},p=AAAA`, undefined, 'unexpected SCRAM channel-binding attribute in client-final-message');
  final(`c=biws,r=${nonce}x,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=`, 'Nonce does not match.', 'invalid SCRAM response');
  final(`c=biws,r=${nonce},p=AAAA`, 'Malformed proof in client-final-message.');
  final(`c=biws,r=${nonce},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=,x=1`, 'Garbage found at the end of client-final-message.');
  final(`c=biws,r=${nonce}`, 'Attribute expected, but found end of string.');
  final('r=x', 'Expected attribute "c" but found "\'r\'".');
});

t.test('SCRAM secrets: PostgreSQL\'s format, nothing else', async (t) => {
  const p = parseScramSecret(rfcSecret)!;
  t.equal(p.iterations, 4096);
  t.equal(p.storedKey.length, 32);
  for (const bad of ['', 'md5abc', 'SCRAM-SHA-256$0:c2FsdA==$a:b', 'SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA',
    'SCRAM-SHA-1$4096:c2FsdA==$x:y', rfcSecret.replace('$4096', '$x'), `${rfcSecret}x`]) {
    t.equal(parseScramSecret(bad), null, `rejected: ${bad.slice(0, 40)}`);
  }
  t.ok(await verifyPlainPassword('user', rfcSecret, 'pencil'), 'password method: right password against a SCRAM secret');
  t.notOk(await verifyPlainPassword('user', rfcSecret, 'pencil2'), 'wrong password');
});

t.test('md5: protocol.md\'s observed exchange (user rmd5, password secret, salt 088dd4cc)', async (t) => {
  const v = md5Verifier('secret', 'rmd5');
  t.ok(isMd5Verifier(v));
  const salt = Buffer.from('088dd4cc', 'hex');
  t.equal(md5Response(v, salt), 'md5b8dfa69814a294171241e79f08a642c0');
  t.ok(md5VerifyResponse(v, salt, 'md5b8dfa69814a294171241e79f08a642c0'));
  t.notOk(md5VerifyResponse(v, Buffer.from('088dd4cd', 'hex'), 'md5b8dfa69814a294171241e79f08a642c0'), 'another salt');
  t.notOk(md5VerifyResponse(rfcSecret, salt, 'md5b8dfa69814a294171241e79f08a642c0'), 'a SCRAM secret cannot answer md5');
  t.ok(await verifyPlainPassword('rmd5', v, 'secret'));
  t.notOk(await verifyPlainPassword('other', v, 'secret'), 'the user name is part of the hash');
});

t.test('SASLprep', async (t) => {
  t.equal(saslprep('pencil'), 'pencil', 'ASCII unchanged');
  t.equal(saslprep('I\u00ADX'), 'IX', 'soft hyphen mapped to nothing');
  t.equal(saslprep('a\u00A0b'), 'a b', 'non-ASCII space mapped to space');
  t.equal(saslprep('\u2168'), 'IX', 'NFKC');
  t.equal(saslprep('a\u0007b\u00e9'), 'a\u0007b\u00e9', 'a prohibited character: the password is used as given');
  t.same(saslprepBytes(Buffer.from([0x70, 0xe9])), Buffer.from([0x70, 0xe9]), 'not UTF-8: the raw bytes');
  t.same(saslprepBytes(Buffer.from('I\u00ADX')), Buffer.from('IX'), 'UTF-8 bytes are prepared');
});

t.test('tls-server-end-point hash algorithm (RFC 5929 4.1)', async (t) => {
  t.equal(endPointHashAlgorithm('sha256WithRSAEncryption'), 'sha256');
  t.equal(endPointHashAlgorithm('sha1WithRSAEncryption'), 'sha256', 'SHA-1 is replaced by SHA-256');
  t.equal(endPointHashAlgorithm('md5WithRSAEncryption'), 'sha256');
  t.equal(endPointHashAlgorithm('ecdsa-with-SHA384'), 'sha384');
  t.equal(endPointHashAlgorithm('sha512WithRSAEncryption'), 'sha512');
  t.equal(endPointHashAlgorithm('ED25519'), null, 'no separate hash: no channel binding');
});
