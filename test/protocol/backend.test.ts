// Server-to-client encoders against exact byte fixtures (observed values from
// protocol.md where there are any), and the client-side decoders reading them back.
import t from 'tap';
import {
  KEEPALIVE_PAYLOAD_LEN,
  SSL_ACCEPTED,
  SSL_REFUSED,
  TypeLen,
  TypeOid,
  XLOGDATA_HEADER_LEN,
  authenticationCleartextPassword,
  authenticationMD5Password,
  authenticationOk,
  authenticationSASL,
  authenticationSASLContinue,
  authenticationSASLFinal,
  backendKeyData,
  commandComplete,
  copyBothResponse,
  copyData,
  copyDone,
  dataRow,
  emptyQueryResponse,
  errorResponse,
  keepalive,
  negotiateProtocolVersion,
  noticeResponse,
  parameterStatus,
  readyForQuery,
  rowDescription,
  setXLogDataSendTime,
  writeXLogDataHeader,
  xlogData,
} from '../../src/protocol/backend.ts';
import {
  parseAuthentication,
  parseCommandComplete,
  parseDataRow,
  parseErrorFields,
  parseParameterStatus,
  parseRowDescription,
  parseServerCopyData,
} from '../../src/protocol/client.ts';
import { FrontendReader } from '../../src/protocol/frontend.ts';
import { PgError } from '../../src/protocol/errors.ts';
import { hex } from './helpers.ts';

const SEND_TIME = 815000000123456n; // 0x2e53cf97fd240

const IDENTIFY_SYSTEM_FIELDS = [
  { name: 'systemid', typeOid: TypeOid.TEXT, typeLen: TypeLen.TEXT },
  { name: 'timeline', typeOid: TypeOid.INT4, typeLen: TypeLen.INT4 },
  { name: 'xlogpos', typeOid: TypeOid.TEXT, typeLen: TypeLen.TEXT },
  { name: 'dbname', typeOid: TypeOid.TEXT, typeLen: TypeLen.TEXT },
];

/** Backend messages with their exact bytes (protocol.md §1.3, 1.4, 2.3, 3). */
const FIXTURES: [string, Buffer, string][] = [
  ['AuthenticationOk', authenticationOk(), '52 00000008 00000000'],
  ['AuthenticationCleartextPassword', authenticationCleartextPassword(), '52 00000008 00000003'],
  ['AuthenticationMD5Password (observed salt)', authenticationMD5Password(hex('088dd4cc')), '52 0000000c 00000005 088dd4cc'],
  ['AuthenticationSASL', authenticationSASL(['SCRAM-SHA-256']), '52 00000017 0000000a 534352414d2d5348412d323536 00 00'],
  ['AuthenticationSASLContinue', authenticationSASLContinue(Buffer.from('r=ab,s=c2E=,i=4096')), '52 0000001a 0000000b 723d61622c733d6332453d2c693d34303936'],
  ['AuthenticationSASLFinal', authenticationSASLFinal(Buffer.from('v=eHl6')), '52 0000000e 0000000c 763d65486c36'],
  ['ParameterStatus integer_datetimes=on', parameterStatus('integer_datetimes', 'on'), '5300000019696e74656765725f6461746574696d6573006f6e00'],
  ['BackendKeyData', backendKeyData(1234, 0xdeadbeef), '4b 0000000c 000004d2 deadbeef'],
  ['BackendKeyData negative key', backendKeyData(1234, -559038737), '4b 0000000c 000004d2 deadbeef'],
  ['ReadyForQuery idle', readyForQuery(), '5a 00000005 49'],
  ['ReadyForQuery in block', readyForQuery('T'), '5a 00000005 54'],
  ['ReadyForQuery failed block', readyForQuery('E'), '5a 00000005 45'],
  [
    'ErrorResponse FATAL 28P01 (observed text)',
    errorResponse({ severity: 'FATAL', code: '28P01', message: 'password authentication failed for user "rscram"' }),
    '450000004c53464154414c0056464154414c00433238503031004d70617373776f72642061757468656e7469636174696f6e206661696c656420666f722075736572202272736372616d220000',
  ],
  [
    'ErrorResponse with DETAIL',
    errorResponse({
      severity: 'ERROR',
      code: 'XX000',
      message: "requested starting point 0/3068600 on timeline 1 is not in this server's history",
      detail: "This server's history forked from timeline 1 at 0/3068500.",
    }),
    '45000000a8534552524f5200564552524f5200435858303030004d726571756573746564207374617274696e6720706f696e7420302f33303638363030206f6e2074696d656c696e652031206973206e6f7420696e207468697320736572766572277320686973746f727900445468697320736572766572277320686973746f727920666f726b65642066726f6d2074696d656c696e65203120617420302f333036383530302e0000',
  ],
  [
    'ErrorResponse with HINT (from a PgError)',
    errorResponse(
      new PgError('FATAL', '22023', 'invalid value for parameter "replication": "x"', {
        hint: 'Valid values are: "false", 0, "true", 1, "database".',
      }),
    ),
    '450000008053464154414c0056464154414c00433232303233004d696e76616c69642076616c756520666f7220706172616d6574657220227265706c69636174696f6e223a20227822004856616c69642076616c756573206172653a202266616c7365222c20302c202274727565222c20312c20226461746162617365222e0000',
  ],
  [
    'NoticeResponse',
    noticeResponse({ severity: 'NOTICE', code: '42622', message: 'identifier "x" will be truncated to "y"' }),
    '4e00000045534e4f5449434500564e4f5449434500433432363232004d6964656e746966696572202278222077696c6c206265207472756e636174656420746f202279220000',
  ],
  [
    'RowDescription IDENTIFY_SYSTEM',
    rowDescription(IDENTIFY_SYSTEM_FIELDS),
    '540000006f000473797374656d69640000000000000000000019ffffffffffff000074696d656c696e6500000000000000000000170004ffffffff0000786c6f67706f730000000000000000000019ffffffffffff000064626e616d650000000000000000000019ffffffffffff0000',
  ],
  [
    'RowDescription TIMELINE_HISTORY (typmod 0)',
    rowDescription([
      { name: 'filename', typeOid: TypeOid.TEXT, typeLen: TypeLen.TEXT, typmod: 0 },
      { name: 'content', typeOid: TypeOid.TEXT, typeLen: TypeLen.TEXT, typmod: 0 },
    ]),
    '540000003b000266696c656e616d650000000000000000000019ffff000000000000636f6e74656e740000000000000000000019ffff000000000000',
  ],
  [
    'RowDescription next_tli',
    rowDescription([
      { name: 'next_tli', typeOid: TypeOid.INT8, typeLen: TypeLen.INT8 },
      { name: 'next_tli_startpos', typeOid: TypeOid.TEXT, typeLen: TypeLen.TEXT },
    ]),
    '540000004500026e6578745f746c6900000000000000000000140008ffffffff00006e6578745f746c695f7374617274706f730000000000000000000019ffffffffffff0000',
  ],
  [
    'DataRow IDENTIFY_SYSTEM (observed values, NULL dbname)',
    dataRow(['7712064296540365798', '1', '0/3068500', null]),
    '440000003300040000001337373132303634323936353430333635373938000000013100000009302f33303638353030ffffffff',
  ],
  ['DataRow with a Buffer value', dataRow([Buffer.from([0, 255]), '']), '44 00000010 0002 00000002 00ff 00000000'],
  ['CommandComplete IDENTIFY_SYSTEM', commandComplete('IDENTIFY_SYSTEM'), '43000000144944454e544946595f53595354454d00'],
  ['CommandComplete COPY 0', commandComplete('COPY 0'), '43 0000000b 434f50592030 00'],
  ['EmptyQueryResponse', emptyQueryResponse(), '49 00000004'],
  ['CopyBothResponse (observed raw=000000)', copyBothResponse(), '57 00000007 00 0000'],
  ['CopyDone', copyDone(), '63 00000004'],
  ['CopyData', copyData(Buffer.from('abc')), '64 00000007 616263'],
  ['NegotiateProtocolVersion', negotiateProtocolVersion(0, ['_pq_.foo']), '760000001500000000000000015f70715f2e666f6f00'],
  [
    'keepalive walEnd=0/306A518 replyRequested=1 (observed at shutdown)',
    keepalive(0x306a518n, SEND_TIME, true),
    '64 00000016 6b 000000000306a518 0002e53cf97fd240 01',
  ],
  ['keepalive replyRequested=0', keepalive(0n, 0n, false), '64 00000016 6b 0000000000000000 0000000000000000 00'],
  [
    'XLogData with 3 WAL bytes',
    xlogData(0x1000000n, 0x15018c8n, SEND_TIME, hex('10d102')),
    '64 00000020 77 0000000001000000 00000000015018c8 0002e53cf97fd240 10d102',
  ],
];

t.test('encoders produce the exact bytes', async (t) => {
  for (const [name, got, want] of FIXTURES) t.equal(got.toString('hex'), hex(want).toString('hex'), name);
});

t.test('every fixture is one well-formed typed message', async (t) => {
  for (const [name, bytes] of FIXTURES) {
    const r = new FrontendReader();
    r.push(bytes);
    const m = r.nextMessage();
    t.ok(m !== null && r.buffered === 0 && m.body.length === bytes.length - 5, name);
  }
});

t.test('SSL answers are single bytes', async (t) => {
  t.equal(SSL_REFUSED.toString('hex'), '4e');
  t.equal(SSL_ACCEPTED.toString('hex'), '53');
});

t.test('md5 salt must be 4 bytes', async (t) => {
  t.throws(() => authenticationMD5Password(Buffer.alloc(3)), RangeError);
});

t.test('keepalive is 1+4+18 bytes', async (t) => {
  t.equal(KEEPALIVE_PAYLOAD_LEN, 18);
  t.equal(keepalive(1n, 2n, true).length, 23);
});

t.test('XLogData header apart from its WAL: the same 30 bytes, only the header must fit', async (t) => {
  const walBytes = 131072;
  const apart = Buffer.alloc(3 + XLOGDATA_HEADER_LEN, 0xee);
  writeXLogDataHeader(apart, 3, 0x1000000n, 0x15018c8n, SEND_TIME, walBytes, false);
  t.equal(apart.subarray(3).toString('hex'), '640002001d77000000000100000000000000015018c80002e53cf97fd240',
    'same bytes as the in-place header of the observed first message');
  t.equal(apart.subarray(0, 3).toString('hex'), 'eeeeee', 'bytes before offset untouched');
  t.throws(() => writeXLogDataHeader(apart, 4, 0n, 0n, 0n, walBytes, false), RangeError, 'a header past the end is refused');
  t.throws(() => writeXLogDataHeader(apart, 3, 0n, 0n, 0n, -1, false), RangeError, 'a negative length is refused');
  // header + WAL sent as two buffers decode as one XLogData message
  const wal = Buffer.alloc(walBytes, 0x5a);
  const r = new FrontendReader();
  r.push(apart.subarray(3));
  r.push(wal);
  const m = r.nextMessage();
  const w = parseServerCopyData(m!.body);
  t.same(w.kind === 'w' ? [w.dataStart, w.data.length, Buffer.from(w.data).equals(wal)] : null, [0x1000000n, walBytes, true]);
});

t.test('XLogData header written in place (observed first message)', async (t) => {
  t.equal(XLOGDATA_HEADER_LEN, 30);
  const walBytes = 131072;
  const buf = Buffer.alloc(7 + XLOGDATA_HEADER_LEN + walBytes, 0xee);
  writeXLogDataHeader(buf, 7, 0x1000000n, 0x15018c8n, SEND_TIME, walBytes);
  t.equal(buf.subarray(0, 7).toString('hex'), 'ee'.repeat(7), 'bytes before offset untouched');
  t.equal(
    buf.subarray(7, 7 + XLOGDATA_HEADER_LEN).toString('hex'),
    '640002001d77000000000100000000000000015018c80002e53cf97fd240',
  );
  t.equal(buf[7 + XLOGDATA_HEADER_LEN], 0xee, 'WAL area untouched');
  setXLogDataSendTime(buf, 7, 1n);
  t.equal(buf.subarray(7 + 22, 7 + 30).toString('hex'), '0000000000000001', 'sendTime patched');
  t.throws(() => writeXLogDataHeader(buf, 8, 0n, 0n, 0n, walBytes), RangeError, 'overflow refused');
  // and the result is one CopyData frame whose payload decodes back
  writeXLogDataHeader(buf, 7, 0x1000000n, 0x15018c8n, SEND_TIME, walBytes);
  const r = new FrontendReader();
  r.push(buf.subarray(7));
  const m = r.nextMessage();
  t.equal(m?.type, 'd');
  const w = parseServerCopyData(m!.body);
  t.same(
    w.kind === 'w' ? [w.dataStart, w.walEnd, w.sendTime, w.data.length] : null,
    [0x1000000n, 0x15018c8n, SEND_TIME, walBytes],
  );
});

t.test('decoders read the encoders back', async (t) => {
  const body = (b: Buffer): Buffer => b.subarray(5);
  t.same(parseAuthentication(body(authenticationMD5Password(hex('088dd4cc')))), { code: 5, data: hex('088dd4cc') });
  t.same(parseParameterStatus(body(parameterStatus('server_version', '15.18'))), {
    name: 'server_version',
    value: '15.18',
  });
  t.same(
    [...parseErrorFields(body(errorResponse({ severity: 'ERROR', code: '58P01', message: 'm', hint: 'h', detail: 'd' })))],
    [['S', 'ERROR'], ['V', 'ERROR'], ['C', '58P01'], ['M', 'm'], ['D', 'd'], ['H', 'h']],
  );
  t.same(
    parseRowDescription(body(rowDescription(IDENTIFY_SYSTEM_FIELDS))).map((f) => [f.name, f.typeOid, f.typeLen, f.typmod]),
    [['systemid', 25, -1, -1], ['timeline', 23, 4, -1], ['xlogpos', 25, -1, -1], ['dbname', 25, -1, -1]],
  );
  t.same(
    parseDataRow(body(dataRow(['2', '0/3068500', null]))).map((v) => (v === null ? null : v.toString())),
    ['2', '0/3068500', null],
  );
  t.equal(parseCommandComplete(body(commandComplete('START_STREAMING'))), 'START_STREAMING');
  t.same(parseServerCopyData(body(keepalive(0x306a518n, SEND_TIME, true))), {
    kind: 'k',
    walEnd: 0x306a518n,
    sendTime: SEND_TIME,
    replyRequested: true,
  });
});

t.test('UTF-8 text is length-counted in bytes', async (t) => {
  t.equal(parameterStatus('application_name', 'é').toString('hex'), '5300000018' + Buffer.from('application_name\0é\0').toString('hex'));
  t.equal(dataRow(['é']).toString('hex'), '440000000c000100000002c3a9');
});
