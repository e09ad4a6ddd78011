// Client-to-server decoding: startup packets and typed frames split at every byte
// offset, PostgreSQL's exact errors for malformed input, body and standby parsers.
import t from 'tap';
import {
  FrontendReader,
  MessageCursor,
  PQ_SMALL_MESSAGE_LIMIT,
  commandModeLengthLimit,
  parseBool,
  parsePasswordMessage,
  parsePasswordPacket,
  parseQuery,
  parseSASLInitialResponse,
  parseStandbyMessage,
  replicationMode,
  streamingLengthLimit,
  unencryptedDataAfterRequest,
} from '../../src/protocol/frontend.ts';
import type { StartupPacket } from '../../src/protocol/frontend.ts';
import {
  cancelRequest,
  gssEncRequest,
  hotStandbyFeedback,
  passwordMessage,
  query,
  saslInitialResponse,
  sslRequest,
  standbyStatusUpdate,
  startupMessage,
} from '../../src/protocol/client.ts';
import { copyData, copyDone } from '../../src/protocol/backend.ts';
import { hex, splits, throwsPg } from './helpers.ts';

const SEND_TIME = 815000000123456n;

// pg_receivewal's observed startup parameters (protocol.md §1.2)
const STARTUP_HEX =
  '00000058000300007573657200726d6435006461746162617365007265706c69636174696f6e007265706c69636174696f6e0074727565006170706c69636174696f6e5f6e616d650070675f7265636569766577616c0000';
const SSL_REQUEST_HEX = '00000008 04d2162f';
const GSSENC_REQUEST_HEX = '00000008 04d21630';
const CANCEL_HEX = '00000010 04d2162e 000004d2 deadbeef';

/** Client messages with their exact bytes. */
const TYPED: [string, string, string][] = [
  ['Query IDENTIFY_SYSTEM', 'Q', '51000000144944454e544946595f53595354454d00'],
  ['md5 PasswordMessage (observed)', 'p', '70000000286d6435623864666136393831346132393431373132343165373966303861363432633000'],
  ['cleartext PasswordMessage (observed)', 'p', '700000000b73656372657400'],
  [
    'SASLInitialResponse',
    'p',
    '7000000036534352414d2d5348412d32353600000000206e2c2c6e3d2c723d66796b6f2b64326c626246674f4e527639716b786461774c',
  ],
  ['standby reply r (pg_receivewal, flush 0)', 'd', '640000002672000000000306a518000000000000000000000000000000000002e53cf97fd24000'],
  ['hot standby feedback h xmin=725', 'd', '640000001d680002e53cf97fd240000002d5000000000000000000000000'],
  ['CopyDone', 'c', '6300000004'],
  ['Terminate', 'X', '5800000004'],
];

function drainStartup(r: FrontendReader): StartupPacket[] {
  const out: StartupPacket[] = [];
  for (let p = r.nextStartupPacket(); p !== null; p = r.nextStartupPacket()) out.push(p);
  return out;
}

function describe(p: StartupPacket): unknown {
  return p.kind === 'startup' ? { ...p, params: Object.fromEntries(p.params) } : p;
}

t.test('client encoders match the fixtures', async (t) => {
  t.equal(startupMessage([
    ['user', 'rmd5'],
    ['database', 'replication'],
    ['replication', 'true'],
    ['application_name', 'pg_receivewal'],
  ]).toString('hex'), STARTUP_HEX);
  t.equal(sslRequest().toString('hex'), hex(SSL_REQUEST_HEX).toString('hex'));
  t.equal(gssEncRequest().toString('hex'), hex(GSSENC_REQUEST_HEX).toString('hex'));
  t.equal(cancelRequest(1234, 0xdeadbeef).toString('hex'), hex(CANCEL_HEX).toString('hex'));
  const built = [
    query('IDENTIFY_SYSTEM'),
    passwordMessage('md5b8dfa69814a294171241e79f08a642c0'),
    passwordMessage('secret'),
    saslInitialResponse('SCRAM-SHA-256', Buffer.from('n,,n=,r=fyko+d2lbbFgONRv9qkxdawL')),
    copyData(standbyStatusUpdate(0x306a518n, 0n, 0n, SEND_TIME, false)),
    copyData(hotStandbyFeedback(SEND_TIME, 725, 0, 0, 0)),
    copyDone(),
  ];
  built.forEach((b, i) => t.equal(b.toString('hex'), TYPED[i]![2], TYPED[i]![0]));
});

t.test('startup sequence SSLRequest + StartupMessage, split at every offset', async (t) => {
  const stream = Buffer.concat([hex(SSL_REQUEST_HEX), hex(STARTUP_HEX)]);
  const want = [
    { kind: 'ssl' },
    {
      kind: 'startup',
      protocolVersion: 196608,
      params: { user: 'rmd5', database: 'replication', replication: 'true', application_name: 'pg_receivewal' },
      protocolOptions: [],
    },
  ];
  let allOk = true;
  for (const chunks of splits(stream)) {
    const r = new FrontendReader();
    const got: StartupPacket[] = [];
    for (const c of chunks) {
      r.push(c);
      got.push(...drainStartup(r));
    }
    const same = JSON.stringify(got.map(describe)) === JSON.stringify(want) && r.buffered === 0;
    if (!same) {
      t.same(got.map(describe), want, `split ${chunks.map((c) => c.length).join('+')}`);
      allOk = false;
      break;
    }
  }
  t.ok(allOk, `all ${stream.length + 2} splits decode identically`);
  const r = new FrontendReader();
  r.push(stream);
  drainStartup(r);
  t.equal(r.sslDone, true, 'sslDone recorded');
  t.equal(replicationMode(new Map([['replication', 'true']])), 'physical');
  const early = new FrontendReader();
  early.push(Buffer.concat([hex(SSL_REQUEST_HEX), hex(STARTUP_HEX)]));
  t.same(early.nextStartupPacket(), { kind: 'ssl' });
  t.ok(early.buffered > 0, 'pipelined bytes after SSLRequest are visible to the caller');
  throwsPg(t, () => {
    throw unencryptedDataAfterRequest('ssl');
  }, {
    severity: 'FATAL',
    code: '08P01',
    message: 'received unencrypted data after SSL request',
    detail: 'This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.',
  });
});

t.test('GSSENCRequest and CancelRequest', async (t) => {
  const r = new FrontendReader();
  r.push(hex(GSSENC_REQUEST_HEX));
  r.push(hex(SSL_REQUEST_HEX));
  t.same(drainStartup(r), [{ kind: 'gssenc' }, { kind: 'ssl' }], 'one of each, either order');
  const c = new FrontendReader();
  c.push(hex(CANCEL_HEX));
  t.same(c.nextStartupPacket(), { kind: 'cancel', pid: 1234, key: 0xdeadbeef });
});

t.test('typed messages, split at every offset', async (t) => {
  const stream = Buffer.concat(TYPED.map(([, , h]) => hex(h)));
  const want = TYPED.map(([, type, h]) => [type, hex(h).subarray(5).toString('hex')]);
  let count = 0;
  let allOk = true;
  for (const chunks of splits(stream)) {
    const r = new FrontendReader({ maxMessageLength: PQ_SMALL_MESSAGE_LIMIT });
    const got: [string, string][] = [];
    for (const c of chunks) {
      r.push(c);
      for (let m = r.nextMessage(); m !== null; m = r.nextMessage()) got.push([m.type, m.body.toString('hex')]);
    }
    count++;
    if (JSON.stringify(got) !== JSON.stringify(want) || r.buffered !== 0) {
      t.same(got, want, `split ${chunks.map((c) => c.length).join('+')}`);
      allOk = false;
      break;
    }
  }
  t.ok(allOk, `${count} ways of chunking decode identically`);
});

t.test('frames inside one chunk are not copied', async (t) => {
  const chunk = Buffer.concat([hex(TYPED[0]![2]), hex(TYPED[6]![2])]);
  const r = new FrontendReader();
  r.push(chunk);
  const m = r.nextMessage()!;
  t.equal(m.body.buffer, chunk.buffer, 'body is a view of the received chunk');
  t.equal(m.body.byteOffset, chunk.byteOffset + 5);
});

t.test('startup packet errors', async (t) => {
  const fatal = (message: string) => ({ severity: 'FATAL', code: '08P01', message });
  const feed = (h: string | Buffer) => () => {
    const r = new FrontendReader();
    r.push(typeof h === 'string' ? hex(h) : h);
    return drainStartup(r);
  };
  throwsPg(t, feed('00000007 00030000'), fatal('invalid length of startup packet'), 'length 7');
  throwsPg(t, feed('00000000'), fatal('invalid length of startup packet'), 'length 0');
  throwsPg(t, feed('ffffffff'), fatal('invalid length of startup packet'), 'negative length');
  throwsPg(t, feed('00002715'), fatal('invalid length of startup packet'), 'length 10005 (10001 after the length word)');
  const r = new FrontendReader();
  r.push(hex('00002714'));
  t.equal(r.nextStartupPacket(), null, 'length 10004 is allowed, waits for data');
  throwsPg(t, feed('00000014 04d2162e 00000001 00000002 00000000'), fatal('invalid length of startup packet'), 'cancel of 20 bytes');
  throwsPg(
    t,
    feed('00000009 00020000 00'),
    { severity: 'FATAL', code: '0A000', message: 'unsupported frontend protocol 2.0: server supports 3.0 to 3.0' },
  );
  throwsPg(
    t,
    feed(`${SSL_REQUEST_HEX} ${SSL_REQUEST_HEX}`),
    { severity: 'FATAL', code: '0A000', message: 'unsupported frontend protocol 1234.5679: server supports 3.0 to 3.0' },
    'a second SSLRequest is an ordinary packet',
  );
  const partial = new FrontendReader();
  partial.push(startupMessage([['user', 'u']]).subarray(0, -1));
  t.equal(partial.nextStartupPacket(), null, 'incomplete packet: waits');
  t.equal(partial.buffered, 15);
  const layout = fatal('invalid startup packet layout: expected terminator as last byte');
  const withLen = (body: Buffer) => {
    const b = Buffer.alloc(4 + body.length);
    b.writeInt32BE(b.length);
    body.copy(b, 4);
    return b;
  };
  const v3 = hex('00030000');
  throwsPg(t, feed(withLen(Buffer.concat([v3, Buffer.from('user\0u\0')]))), layout, 'no terminator');
  throwsPg(t, feed(withLen(Buffer.concat([v3, Buffer.from('user\0u')]))), layout, 'value runs to the end');
  throwsPg(t, feed(withLen(Buffer.concat([v3, Buffer.from('user\0')]))), layout, 'missing value');
  throwsPg(t, feed(withLen(Buffer.concat([v3, Buffer.from('user\0u\0\0\0')]))), layout, 'bytes after terminator');
  throwsPg(t, feed(withLen(v3)), layout, 'empty parameter list without terminator');
  const noUser = { severity: 'FATAL', code: '28000', message: 'no PostgreSQL user name specified in startup packet' };
  throwsPg(t, feed(startupMessage([['database', 'replication']])), noUser);
  throwsPg(t, feed(startupMessage([['user', '']])), noUser, 'empty user');
  throwsPg(
    t,
    feed(startupMessage([['replication', 'x']])),
    {
      severity: 'FATAL',
      code: '22023',
      message: 'invalid value for parameter "replication": "x"',
      hint: 'Valid values are: "false", 0, "true", 1, "database".',
    },
    'bad replication value reported before the missing user, as in PG',
  );
});

t.test('startup edge cases', async (t) => {
  const one = (b: Buffer) => {
    const r = new FrontendReader();
    r.push(b);
    return r.nextStartupPacket();
  };
  const p = one(startupMessage([['user', 'u'], ['_pq_.foo', 'x'], ['user', 'v']], 0x30001));
  t.same(p && describe(p), { kind: 'startup', protocolVersion: 0x30001, params: { user: 'v' }, protocolOptions: ['_pq_.foo'] });
  const long = one(startupMessage([['user', 'a'.repeat(70)], ['database', 'd'.repeat(64)]]));
  t.same(long?.kind === 'startup' && [long.params.get('user')!.length, long.params.get('database')!.length], [63, 63], 'NAMEDATALEN truncation');
});

t.test('parse_bool and the replication parameter', async (t) => {
  const cases: [string, boolean | null][] = [
    ['true', true], ['t', true], ['TR', true], ['True', true], ['truex', null],
    ['false', false], ['f', false], ['FALSE', false],
    ['yes', true], ['y', true], ['no', false], ['n', false], ['nope', null],
    ['on', true], ['ON', true], ['off', false], ['of', false], ['o', null], ['onn', null],
    ['1', true], ['0', false], ['10', null], ['', null], ['database', null],
  ];
  for (const [s, want] of cases) t.equal(parseBool(s), want, JSON.stringify(s));
  const mode = (v?: string) => replicationMode(new Map(v === undefined ? [] : [['replication', v]]));
  t.equal(mode(), 'none');
  t.equal(mode('database'), 'logical');
  t.equal(mode('on'), 'physical');
  t.equal(mode('0'), 'none');
  throwsPg(t, () => mode('Database'), {
    severity: 'FATAL',
    code: '22023',
    message: 'invalid value for parameter "replication": "Database"',
    hint: 'Valid values are: "false", 0, "true", 1, "database".',
  });
});

t.test('typed framing errors and per-type limits', async (t) => {
  const invalidLength = { severity: 'FATAL', code: '08P01', message: 'invalid message length' };
  const feed = (h: string, opts = {}) => () => {
    const r = new FrontendReader(opts);
    r.push(hex(h));
    return r.nextMessage();
  };
  throwsPg(t, feed('51 00000003'), invalidLength, 'length 3');
  throwsPg(t, feed('51 80000000'), invalidLength, 'negative length');
  throwsPg(t, feed('51 00000065', { maxMessageLength: 100 }), invalidLength, 'over maxMessageLength');
  t.equal(feed('51 00000064', { maxMessageLength: 100 })(), null, 'at the limit: waits for the body');
  throwsPg(t, feed('58 00002711', { lengthLimit: commandModeLengthLimit }), invalidLength, 'X over the small limit');
  t.equal(commandModeLengthLimit('c'), PQ_SMALL_MESSAGE_LIMIT);
  throwsPg(t, feed('5a', { lengthLimit: commandModeLengthLimit }), {
    severity: 'FATAL',
    code: '08P01',
    message: 'invalid frontend message type 90',
  }, 'type rejected before its length arrives');
  throwsPg(t, () => streamingLengthLimit('Q'), { severity: 'FATAL', code: '08P01', message: 'invalid standby message type "Q"' });
  t.equal(streamingLengthLimit('d') > 1 << 29, true);
  const r = new FrontendReader();
  r.push(hex('63 00000004 58'));
  t.same(r.nextMessage(), { type: 'c', body: Buffer.alloc(0) });
  t.equal(r.nextMessage(), null);
  t.equal(r.buffered, 1);
  t.equal(r.drain().toString('hex'), '58');
});

t.test('Query bodies', async (t) => {
  t.equal(parseQuery(Buffer.from('START_REPLICATION SLOT "s1" 0/1000000 TIMELINE 1\0')), 'START_REPLICATION SLOT "s1" 0/1000000 TIMELINE 1');
  t.equal(parseQuery(Buffer.from('\0')), '');
  throwsPg(t, () => parseQuery(Buffer.from('SELECT 1')), { severity: 'ERROR', code: '08P01', message: 'invalid string in message' });
  throwsPg(t, () => parseQuery(Buffer.alloc(0)), { severity: 'ERROR', code: '08P01', message: 'invalid string in message' });
  throwsPg(t, () => parseQuery(Buffer.from('a\0b\0')), { severity: 'ERROR', code: '08P01', message: 'invalid message format' });
});

t.test('password bodies', async (t) => {
  const md5 = hex(TYPED[1]![2]).subarray(5);
  t.equal(parsePasswordMessage(md5), md5, 'raw body returned as is');
  t.equal(parsePasswordPacket(md5), 'md5b8dfa69814a294171241e79f08a642c0');
  t.equal(parsePasswordPacket(hex('73656372657400')), 'secret');
  const size = { severity: 'FATAL', code: '08P01', message: 'invalid password packet size' };
  throwsPg(t, () => parsePasswordPacket(Buffer.from('secret')), size, 'no terminator');
  throwsPg(t, () => parsePasswordPacket(Buffer.from('se\0cret\0')), size, 'embedded NUL');
  throwsPg(t, () => parsePasswordPacket(Buffer.alloc(0)), size, 'empty body');
  throwsPg(t, () => parsePasswordPacket(Buffer.from('\0')), { severity: 'FATAL', code: '28P01', message: 'empty password returned by client' });
});

t.test('SASLInitialResponse bodies', async (t) => {
  const body = hex(TYPED[3]![2]).subarray(5);
  const got = parseSASLInitialResponse(body);
  t.same([got.mechanism, got.data?.toString()], ['SCRAM-SHA-256', 'n,,n=,r=fyko+d2lbbFgONRv9qkxdawL']);
  t.same(parseSASLInitialResponse(hex('534352414d2d5348412d32353600 ffffffff')), { mechanism: 'SCRAM-SHA-256', data: null });
  t.same(parseSASLInitialResponse(hex('4100 00000000')), { mechanism: 'A', data: Buffer.alloc(0) });
  const f = (message: string) => ({ severity: 'FATAL', code: '08P01', message });
  throwsPg(t, () => parseSASLInitialResponse(Buffer.from('SCRAM')), f('invalid string in message'));
  throwsPg(t, () => parseSASLInitialResponse(hex('4100 0000')), f('insufficient data left in message'), 'short length');
  throwsPg(t, () => parseSASLInitialResponse(hex('4100 00000005 6162')), f('insufficient data left in message'), 'short data');
  throwsPg(t, () => parseSASLInitialResponse(hex('4100 fffffffe')), f('insufficient data left in message'), 'length -2');
  throwsPg(t, () => parseSASLInitialResponse(hex('4100 00000001 6162')), f('invalid message format'), 'trailing byte');
});

t.test('standby messages', async (t) => {
  const r = parseStandbyMessage(hex(TYPED[4]![2]).subarray(5));
  t.same(r, { kind: 'r', write: 0x306a518n, flush: 0n, apply: 0n, sendTime: SEND_TIME, replyRequested: false });
  const h = parseStandbyMessage(hex(TYPED[5]![2]).subarray(5));
  t.same(h, { kind: 'h', sendTime: SEND_TIME, xmin: 725, xminEpoch: 0, catalogXmin: 0, catalogXminEpoch: 0 });
  const big = parseStandbyMessage(standbyStatusUpdate(0xffffffffffffffffn, 1n, 2n, -5n, true));
  t.same(big, { kind: 'r', write: 0xffffffffffffffffn, flush: 1n, apply: 2n, sendTime: -5n, replyRequested: true });
  t.same(
    parseStandbyMessage(hotStandbyFeedback(0n, 0xfffffffe, 1, 3, 4)),
    { kind: 'h', sendTime: 0n, xmin: 0xfffffffe, xminEpoch: 1, catalogXmin: 3, catalogXminEpoch: 4 },
  );
  t.equal(parseStandbyMessage(Buffer.concat([standbyStatusUpdate(1n, 1n, 1n, 1n, false), hex('ff')])).kind, 'r', 'trailing bytes ignored, as walsender.c does');
  const insufficient = { severity: 'ERROR', code: '08P01', message: 'insufficient data left in message' };
  const full = standbyStatusUpdate(1n, 2n, 3n, 4n, true);
  for (let n = 1; n < 34; n++) {
    if (n === 33) continue;
    throwsPg(t, () => parseStandbyMessage(full.subarray(0, n)), insufficient, `'r' truncated to ${n}`);
  }
  throwsPg(t, () => parseStandbyMessage(full.subarray(0, 33)), { severity: 'ERROR', code: '08P01', message: 'no data left in message' }, "'r' missing replyRequested");
  const hs = hotStandbyFeedback(1n, 2, 3, 4, 5);
  for (let n = 1; n < 25; n++) throwsPg(t, () => parseStandbyMessage(hs.subarray(0, n)), insufficient, `'h' truncated to ${n}`);
  throwsPg(t, () => parseStandbyMessage(Buffer.alloc(0)), { severity: 'ERROR', code: '08P01', message: 'no data left in message' });
  throwsPg(t, () => parseStandbyMessage(Buffer.from('x')), { severity: 'FATAL', code: '08P01', message: 'unexpected message type "x"' });
  try {
    parseStandbyMessage(Buffer.from('x'));
  } catch (e) {
    t.equal((e as { logOnly: boolean }).logOnly, true, 'unknown type is log-only: PG exits without replying');
  }
});

t.test('MessageCursor', async (t) => {
  const c = new MessageCursor(hex('0001 fffffffe 61620063'));
  t.equal(c.int16(), 1);
  t.equal(c.uint32(), 0xfffffffe);
  t.equal(c.cstring(), 'ab');
  t.equal(c.remaining, 1);
  throwsPg(t, () => c.end(), { severity: 'ERROR', code: '08P01', message: 'invalid message format' });
});
