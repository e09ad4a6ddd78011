// The replication command grammar: every command text from protocol.md §2, the
// scanner's longest-match rules, and PostgreSQL's error texts and SQLSTATEs.
import t from 'tap';
import { parseReplicationCommand, tokenize } from '../../src/protocol/commands.ts';
import type { ReplicationCommand, Token } from '../../src/protocol/commands.ts';
import type { PgError } from '../../src/protocol/errors.ts';
import { throwsPg } from './helpers.ts';

// Every command text protocol.md §2 shows a client sending, plus the grammar's
// other productions.
const CASES: [string, ReplicationCommand][] = [
  ['IDENTIFY_SYSTEM', { kind: 'IDENTIFY_SYSTEM' }],
  ['IDENTIFY_SYSTEM;', { kind: 'IDENTIFY_SYSTEM' }],
  [' \t\r\n\fIDENTIFY_SYSTEM ; \n', { kind: 'IDENTIFY_SYSTEM' }],
  ['identify_system', { kind: 'SQL', text: 'identify_system' }],
  ['SELECT 1', { kind: 'SQL', text: 'SELECT 1' }],
  [
    "SELECT pg_catalog.set_config('search_path', '', false);",
    { kind: 'SQL', text: "SELECT pg_catalog.set_config('search_path', '', false);" },
  ],
  ['SELECT pg_catalog.pg_is_in_recovery()', { kind: 'SQL', text: 'SELECT pg_catalog.pg_is_in_recovery()' }],
  ['TIMELINE 1', { kind: 'SQL', text: 'TIMELINE 1' }],
  ['IDENTIFY_SYSTEMX', { kind: 'SQL', text: 'IDENTIFY_SYSTEMX' }],
  [';', { kind: 'SQL', text: ';' }],
  ['', { kind: 'EMPTY' }],
  ['  \n ', { kind: 'EMPTY' }],
  ['SHOW data_directory_mode', { kind: 'SHOW', name: 'data_directory_mode' }],
  ['SHOW wal_segment_size', { kind: 'SHOW', name: 'wal_segment_size' }],
  ['SHOW transaction_read_only', { kind: 'SHOW', name: 'transaction_read_only' }],
  ['SHOW Server_Version', { kind: 'SHOW', name: 'server_version' }],
  ['SHOW "Foo".bar . "Baz"', { kind: 'SHOW', name: 'Foo.bar.Baz' }],
  ['TIMELINE_HISTORY 2', { kind: 'TIMELINE_HISTORY', timeline: 2 }],
  ['TIMELINE_HISTORY 4294967295', { kind: 'TIMELINE_HISTORY', timeline: 4294967295 }],
  ['READ_REPLICATION_SLOT s1', { kind: 'READ_REPLICATION_SLOT', slotName: 's1' }],
  ['READ_REPLICATION_SLOT "S1"', { kind: 'READ_REPLICATION_SLOT', slotName: 'S1' }],
  [
    'CREATE_REPLICATION_SLOT "s1" PHYSICAL',
    { kind: 'CREATE_REPLICATION_SLOT', slotName: 's1', temporary: false, slotKind: 'physical', reserveWal: false },
  ],
  [
    'CREATE_REPLICATION_SLOT "s" PHYSICAL RESERVE_WAL',
    { kind: 'CREATE_REPLICATION_SLOT', slotName: 's', temporary: false, slotKind: 'physical', reserveWal: true },
  ],
  [
    'CREATE_REPLICATION_SLOT "s" PHYSICAL (RESERVE_WAL)',
    { kind: 'CREATE_REPLICATION_SLOT', slotName: 's', temporary: false, slotKind: 'physical', reserveWal: true },
  ],
  [
    'CREATE_REPLICATION_SLOT "pg_basebackup_123" TEMPORARY PHYSICAL ( RESERVE_WAL)',
    { kind: 'CREATE_REPLICATION_SLOT', slotName: 'pg_basebackup_123', temporary: true, slotKind: 'physical', reserveWal: true },
  ],
  [
    'CREATE_REPLICATION_SLOT "pg_walreceiver_4242" TEMPORARY PHYSICAL (RESERVE_WAL)',
    { kind: 'CREATE_REPLICATION_SLOT', slotName: 'pg_walreceiver_4242', temporary: true, slotKind: 'physical', reserveWal: true },
  ],
  [
    'CREATE_REPLICATION_SLOT "pg_walreceiver_4242" TEMPORARY PHYSICAL RESERVE_WAL',
    { kind: 'CREATE_REPLICATION_SLOT', slotName: 'pg_walreceiver_4242', temporary: true, slotKind: 'physical', reserveWal: true },
  ],
  [
    'CREATE_REPLICATION_SLOT "s" PHYSICAL (RESERVE_WAL true)',
    { kind: 'CREATE_REPLICATION_SLOT', slotName: 's', temporary: false, slotKind: 'physical', reserveWal: true },
  ],
  [
    'CREATE_REPLICATION_SLOT "s" PHYSICAL (RESERVE_WAL false)',
    { kind: 'CREATE_REPLICATION_SLOT', slotName: 's', temporary: false, slotKind: 'physical', reserveWal: false },
  ],
  [
    "CREATE_REPLICATION_SLOT s PHYSICAL (reserve_wal 'ON')",
    { kind: 'CREATE_REPLICATION_SLOT', slotName: 's', temporary: false, slotKind: 'physical', reserveWal: true },
  ],
  [
    'CREATE_REPLICATION_SLOT s PHYSICAL (RESERVE_WAL 0);',
    { kind: 'CREATE_REPLICATION_SLOT', slotName: 's', temporary: false, slotKind: 'physical', reserveWal: false },
  ],
  [
    "CREATE_REPLICATION_SLOT \"sub\" LOGICAL pgoutput (SNAPSHOT 'nothing', TWO_PHASE)",
    {
      kind: 'CREATE_REPLICATION_SLOT',
      slotName: 'sub',
      temporary: false,
      slotKind: 'logical',
      plugin: 'pgoutput',
      reserveWal: false,
      snapshot: 'nothing',
      twoPhase: true,
    },
  ],
  [
    'CREATE_REPLICATION_SLOT x TEMPORARY LOGICAL test_decoding USE_SNAPSHOT',
    {
      kind: 'CREATE_REPLICATION_SLOT',
      slotName: 'x',
      temporary: true,
      slotKind: 'logical',
      plugin: 'test_decoding',
      reserveWal: false,
      snapshot: 'use',
      twoPhase: false,
    },
  ],
  ['DROP_REPLICATION_SLOT "s1"', { kind: 'DROP_REPLICATION_SLOT', slotName: 's1', wait: false }],
  ['DROP_REPLICATION_SLOT s1 WAIT', { kind: 'DROP_REPLICATION_SLOT', slotName: 's1', wait: true }],
  [
    'START_REPLICATION SLOT "s1" 0/1000000 TIMELINE 1',
    { kind: 'START_REPLICATION', slotName: 's1', logical: false, startPoint: 0x1000000n, timeline: 1 },
  ],
  ['START_REPLICATION 0/1000000 TIMELINE 1', { kind: 'START_REPLICATION', logical: false, startPoint: 0x1000000n, timeline: 1 }],
  [
    'START_REPLICATION SLOT "stby" 0/3000000 TIMELINE 1',
    { kind: 'START_REPLICATION', slotName: 'stby', logical: false, startPoint: 0x3000000n, timeline: 1 },
  ],
  ['START_REPLICATION 0/3000000 TIMELINE 2', { kind: 'START_REPLICATION', logical: false, startPoint: 0x3000000n, timeline: 2 }],
  ['START_REPLICATION PHYSICAL 0/3000000 TIMELINE 1', { kind: 'START_REPLICATION', logical: false, startPoint: 0x3000000n, timeline: 1 }],
  ['START_REPLICATION 0/3068500', { kind: 'START_REPLICATION', logical: false, startPoint: 0x3068500n }],
  [
    'START_REPLICATION SLOT s PHYSICAL DEADBEEF/abcd;',
    { kind: 'START_REPLICATION', slotName: 's', logical: false, startPoint: 0xdeadbeef0000abcdn },
  ],
  [
    "START_REPLICATION SLOT \"sub\" LOGICAL 0/0 (proto_version '1', publication_names '\"pub\"', binary)",
    {
      kind: 'START_REPLICATION',
      slotName: 'sub',
      logical: true,
      startPoint: 0n,
      pluginOptions: [
        { name: 'proto_version', value: '1' },
        { name: 'publication_names', value: '"pub"' },
        { name: 'binary', value: null },
      ],
    },
  ],
  ['START_REPLICATION SLOT s LOGICAL 1/0', { kind: 'START_REPLICATION', slotName: 's', logical: true, startPoint: 0x100000000n, pluginOptions: [] }],
  ['BASE_BACKUP', { kind: 'BASE_BACKUP', options: [] }],
  [
    "BASE_BACKUP (LABEL 'pg_basebackup base backup', PROGRESS, WAIT 0, MAX_RATE 32768, TARGET client, MANIFEST 'yes')",
    {
      kind: 'BASE_BACKUP',
      options: [
        { name: 'label', value: 'pg_basebackup base backup' },
        { name: 'progress', value: null },
        { name: 'wait', value: 0 },
        { name: 'max_rate', value: 32768 },
        { name: 'target', value: 'client' },
        { name: 'manifest', value: 'yes' },
      ],
    },
  ],
];

t.test('command fixtures', async (t) => {
  for (const [text, want] of CASES) t.same(parseReplicationCommand(text), want, JSON.stringify(text));
});

const syntax = { severity: 'ERROR', code: '42601', message: 'syntax error' };
const ERRORS: [string, { severity: string; code: string; message: string }][] = [
  ['TIMELINE_HISTORY 0', { severity: 'ERROR', code: '42601', message: 'invalid timeline 0' }],
  ['TIMELINE_HISTORY 0 garbage', { severity: 'ERROR', code: '42601', message: 'invalid timeline 0' }],
  ['TIMELINE_HISTORY 4294967296', { severity: 'ERROR', code: '42601', message: 'invalid timeline 0' }],
  ['START_REPLICATION 0/0 TIMELINE 0', { severity: 'ERROR', code: '42601', message: 'invalid timeline 0' }],
  ['TIMELINE_HISTORY', syntax],
  ['TIMELINE_HISTORY -1', syntax],
  ['TIMELINE_HISTORY 1/2', syntax],
  ['IDENTIFY_SYSTEM x', syntax],
  ['IDENTIFY_SYSTEM;;', syntax],
  ['SHOW', syntax],
  ['SHOW TIMELINE', syntax],
  ["SHOW 'x'", syntax],
  ['SHOW a.', syntax],
  ['READ_REPLICATION_SLOT', syntax],
  ['START_REPLICATION', syntax],
  ["START_REPLICATION SLOT 's1' 0/0", syntax],
  ['START_REPLICATION SLOT s1', syntax],
  ['START_REPLICATION 0', syntax],
  ['START_REPLICATION LOGICAL 0/0', syntax],
  ['START_REPLICATION PHYSICAL SLOT s 0/0', syntax],
  ['START_REPLICATION 0/0 TIMELINE', syntax],
  ['START_REPLICATION 0/0 TIMELINE 1 2', syntax],
  ['START_REPLICATION SLOT s LOGICAL 0/0 ()', syntax],
  ['START_REPLICATION SLOT s LOGICAL 0/0 (a 1)', syntax],
  ['start_replication 0/0', { severity: 'ERROR', code: 'SQL', message: '' }],
  ['CREATE_REPLICATION_SLOT', syntax],
  ['CREATE_REPLICATION_SLOT s', syntax],
  ['CREATE_REPLICATION_SLOT s PHYSICAL ()', syntax],
  ['CREATE_REPLICATION_SLOT s PHYSICAL (RESERVE_WAL', syntax],
  ['CREATE_REPLICATION_SLOT s PHYSICAL (RESERVE_WAL,)', syntax],
  ['CREATE_REPLICATION_SLOT s PHYSICAL (RESERVE_WAL WAIT)', syntax],
  ['CREATE_REPLICATION_SLOT s PHYSICAL (READ_REPLICATION_SLOT)', syntax],
  ['CREATE_REPLICATION_SLOT s TEMPORARY TEMPORARY PHYSICAL', syntax],
  ['CREATE_REPLICATION_SLOT s LOGICAL', syntax],
  ["CREATE_REPLICATION_SLOT 's' PHYSICAL", syntax],
  ['CREATE_REPLICATION_SLOT s PHYSICAL RESERVE_WAL (RESERVE_WAL)', syntax],
  ['DROP_REPLICATION_SLOT', syntax],
  ['DROP_REPLICATION_SLOT s NOWAIT', syntax],
  ['BASE_BACKUP ()', syntax],
  ['BASE_BACKUP LABEL', syntax],
  ['IDENTIFY_SYSTEM -', syntax],
  [
    'CREATE_REPLICATION_SLOT s PHYSICAL RESERVE_WAL RESERVE_WAL',
    { severity: 'ERROR', code: '42601', message: 'conflicting or redundant options' },
  ],
  [
    'CREATE_REPLICATION_SLOT s PHYSICAL (RESERVE_WAL, reserve_wal false)',
    { severity: 'ERROR', code: '42601', message: 'conflicting or redundant options' },
  ],
  [
    'CREATE_REPLICATION_SLOT s LOGICAL pgoutput RESERVE_WAL',
    { severity: 'ERROR', code: '42601', message: 'conflicting or redundant options' },
  ],
  [
    'CREATE_REPLICATION_SLOT s PHYSICAL EXPORT_SNAPSHOT',
    { severity: 'ERROR', code: '42601', message: 'conflicting or redundant options' },
  ],
  ['CREATE_REPLICATION_SLOT s PHYSICAL TWO_PHASE', { severity: 'ERROR', code: '42601', message: 'conflicting or redundant options' }],
  [
    'CREATE_REPLICATION_SLOT s LOGICAL p EXPORT_SNAPSHOT NOEXPORT_SNAPSHOT',
    { severity: 'ERROR', code: '42601', message: 'conflicting or redundant options' },
  ],
  ['CREATE_REPLICATION_SLOT s PHYSICAL (foo)', { severity: 'ERROR', code: 'XX000', message: 'unrecognized option: foo' }],
  ['CREATE_REPLICATION_SLOT s PHYSICAL (WAIT)', { severity: 'ERROR', code: 'XX000', message: 'unrecognized option: wait' }],
  ['CREATE_REPLICATION_SLOT s PHYSICAL ("RESERVE_WAL")', { severity: 'ERROR', code: 'XX000', message: 'unrecognized option: RESERVE_WAL' }],
  [
    'CREATE_REPLICATION_SLOT s PHYSICAL (RESERVE_WAL maybe)',
    { severity: 'ERROR', code: '42601', message: 'reserve_wal requires a Boolean value' },
  ],
  ['CREATE_REPLICATION_SLOT s PHYSICAL (RESERVE_WAL 2)', { severity: 'ERROR', code: '42601', message: 'reserve_wal requires a Boolean value' }],
  ["CREATE_REPLICATION_SLOT s PHYSICAL (RESERVE_WAL 'yes')", { severity: 'ERROR', code: '42601', message: 'reserve_wal requires a Boolean value' }],
  ['CREATE_REPLICATION_SLOT s LOGICAL p (SNAPSHOT)', { severity: 'ERROR', code: '42601', message: 'snapshot requires a parameter' }],
  [
    "CREATE_REPLICATION_SLOT s LOGICAL p (SNAPSHOT 'bad')",
    { severity: 'ERROR', code: '22023', message: 'unrecognized value for CREATE_REPLICATION_SLOT option "snapshot": "bad"' },
  ],
  [
    'CREATE_REPLICATION_SLOT s LOGICAL p (SNAPSHOT 4294967295)',
    { severity: 'ERROR', code: '22023', message: 'unrecognized value for CREATE_REPLICATION_SLOT option "snapshot": "-1"' },
  ],
  ["SHOW 'abc", { severity: 'ERROR', code: '42601', message: 'unterminated quoted string' }],
  ['START_REPLICATION SLOT "s1 0/0', { severity: 'ERROR', code: '42601', message: 'unterminated quoted string' }],
  ['"abc', { severity: 'ERROR', code: '42601', message: 'unterminated quoted string' }],
  ["'abc", { severity: 'ERROR', code: '42601', message: 'unterminated quoted string' }],
  ["IDENTIFY_SYSTEM x 'abc", syntax],
];

t.test('error fixtures', async (t) => {
  for (const [text, want] of ERRORS) {
    if (want.code === 'SQL') {
      t.equal(parseReplicationCommand(text).kind, 'SQL', JSON.stringify(text));
      continue;
    }
    throwsPg(t, () => parseReplicationCommand(text), want, JSON.stringify(text));
  }
});

t.test('tokenizer follows repl_scanner.l', async (t) => {
  const tok = (s: string): Token[] => tokenize(s);
  t.same(tok('START_REPLICATION SLOT "s1" 0/1000000 TIMELINE 1'), [
    { type: 'KEYWORD', keyword: 'START_REPLICATION' },
    { type: 'KEYWORD', keyword: 'SLOT' },
    { type: 'IDENT', value: 's1' },
    { type: 'RECPTR', value: 0x1000000n },
    { type: 'KEYWORD', keyword: 'TIMELINE' },
    { type: 'UCONST', value: 1 },
  ]);
  t.same(tok('FooBar "FooBar" Show SHOW_ x$1 _a é'), [
    { type: 'IDENT', value: 'foobar' },
    { type: 'IDENT', value: 'FooBar' },
    { type: 'IDENT', value: 'show' },
    { type: 'IDENT', value: 'show_' },
    { type: 'IDENT', value: 'x$1' },
    { type: 'IDENT', value: '_a' },
    { type: 'IDENT', value: 'é' },
  ]);
  t.same(tok('DEAD/BEEF face/1x 12ab 1/ 0x10 AB/ZZ'), [
    { type: 'RECPTR', value: 0xdead0000beefn },
    { type: 'RECPTR', value: 0xface00000001n },
    { type: 'IDENT', value: 'x' },
    { type: 'UCONST', value: 12 },
    { type: 'IDENT', value: 'ab' },
    { type: 'UCONST', value: 1 },
    { type: 'CHAR', value: '/' },
    { type: 'UCONST', value: 0 },
    { type: 'IDENT', value: 'x10' },
    { type: 'IDENT', value: 'ab' },
    { type: 'CHAR', value: '/' },
    { type: 'IDENT', value: 'zz' },
  ]);
  t.same(tok("'it''s' '' \"a\"\"b\" \"\""), [
    { type: 'SCONST', value: "it's" },
    { type: 'SCONST', value: '' },
    { type: 'IDENT', value: 'a' },
    { type: 'IDENT', value: 'b' },
    { type: 'IDENT', value: '' },
  ]);
  t.same(tok('(a,b);.-*'), [
    { type: 'CHAR', value: '(' },
    { type: 'IDENT', value: 'a' },
    { type: 'CHAR', value: ',' },
    { type: 'IDENT', value: 'b' },
    { type: 'CHAR', value: ')' },
    { type: 'CHAR', value: ';' },
    { type: 'CHAR', value: '.' },
    { type: 'CHAR', value: '-' },
    { type: 'CHAR', value: '*' },
  ]);
  // sscanf("%X/%X") into uint32 halves and strtoul into a uint32
  t.same(tok('123456789/0 99999999999999999999 4294967297'), [
    { type: 'RECPTR', value: 0x2345678900000000n },
    { type: 'UCONST', value: 0xffffffff },
    { type: 'UCONST', value: 1 },
  ]);
  t.same(tok(' \t\n\r\f'), []);
  t.same(tok('a\vb'), [
    { type: 'IDENT', value: 'a' },
    { type: 'CHAR', value: '\v' },
    { type: 'IDENT', value: 'b' },
  ], 'vertical tab is not whitespace');
});

t.test('identifiers are truncated to 63 bytes with a NOTICE', async (t) => {
  const notices: PgError[] = [];
  const long = 'S'.repeat(70);
  const cmd = parseReplicationCommand(`DROP_REPLICATION_SLOT ${long}`, (n) => notices.push(n));
  t.same(cmd, { kind: 'DROP_REPLICATION_SLOT', slotName: 's'.repeat(63), wait: false });
  t.same(
    notices.map((n) => [n.severity, n.code, n.message]),
    [['NOTICE', '42622', `identifier "${'s'.repeat(70)}" will be truncated to "${'s'.repeat(63)}"`]],
  );
  const multi = `"${'a'.repeat(62)}é"`;
  const m = parseReplicationCommand(`READ_REPLICATION_SLOT ${multi}`);
  t.same(m, { kind: 'READ_REPLICATION_SLOT', slotName: 'a'.repeat(62) }, 'cut on a character boundary');
  t.same(parseReplicationCommand(`SHOW ${'b'.repeat(63)}`), { kind: 'SHOW', name: 'b'.repeat(63) }, '63 bytes kept');
});
