import t from 'tap';
import {
  HistoryFileError,
  buildChildHistoryFile,
  formatHistoryLine,
  initialHistory,
  newestTimeline,
  parseHistoryFile,
  timelineIsInHistory,
  tliOfPoint,
  tliSwitchPoint,
} from '../../src/wal/history.ts';

const TLI2 = '1\t0/3068500\tno recovery target specified\n';
// What PostgreSQL writes for timeline 3: timeline 2's file, "\n", then the new line.
const TLI3 = TLI2 + '\n' + '2\t0/50000A8\tno recovery target specified\n';

t.test('parse 00000002.history', async (t) => {
  t.equal(Buffer.byteLength(TLI2), 41);
  t.same(parseHistoryFile(TLI2, 2), [
    { tli: 1, begin: 0n, end: 0x3068500n },
    { tli: 2, begin: 0x3068500n, end: null },
  ]);
});

t.test('parse a file with comments, blank lines and CRLF', async (t) => {
  const text = '# comment\n\n   \n1\t0/3068500\tone\r\n  # indented comment\n\n3\t1/A8\ttwo\n';
  t.same(parseHistoryFile(text, 7), [
    { tli: 1, begin: 0n, end: 0x3068500n },
    { tli: 3, begin: 0x3068500n, end: 0x1_0000_00a8n },
    { tli: 7, begin: 0x1_0000_00a8n, end: null },
  ]);
  t.same(parseHistoryFile('', 1), initialHistory(1), 'empty file = timeline 1 without history');
  t.same(parseHistoryFile('1 0/10', 2)[0], { tli: 1, begin: 0n, end: 0x10n }, 'sscanf whitespace: a space also separates');
  t.same(parseHistoryFile('1\t0/10 trailing junk', 2)[0]!.end, 0x10n, 'remainder of the line is ignored');
});

t.test('errors as readTimeLineHistory reports them', async (t) => {
  const err = (text: string, tli: number) => {
    try {
      parseHistoryFile(text, tli);
    } catch (e) {
      if (e instanceof HistoryFileError) return { message: e.message, hint: e.hint };
      throw e;
    }
    return null;
  };
  t.same(err('foo\t0/1\treason\n', 2), { message: 'syntax error in history file: foo\t0/1\treason', hint: 'Expected a numeric timeline ID.' });
  t.same(err('1\n', 2), { message: 'syntax error in history file: 1', hint: 'Expected a write-ahead log switchpoint location.' });
  t.same(err('1\t0-5\n', 2), { message: 'syntax error in history file: 1\t0-5', hint: 'Expected a write-ahead log switchpoint location.' });
  t.same(err('2\t0/10\tx\n1\t0/20\ty\n', 3), {
    message: 'invalid data in history file: 1\t0/20\ty',
    hint: 'Timeline IDs must be in increasing sequence.',
  });
  t.same(err('1\t0/10\tx\n1\t0/20\ty\n', 3)?.hint, 'Timeline IDs must be in increasing sequence.', 'equal TLIs');
  t.same(err(TLI3, 2), {
    message: 'invalid data in history file "pg_wal/00000002.history"',
    hint: "Timeline IDs must be less than child timeline's ID.",
  });
});

t.test('writing lines and child files', async (t) => {
  t.equal(formatHistoryLine(1, 0x3068500n, 'no recovery target specified'), TLI2);
  t.equal(formatHistoryLine(2, 0x1_0000_00a8n, 'at restore point "x"'), '2\t1/A8\tat restore point "x"\n');
  t.equal(buildChildHistoryFile(null, 1, 0x3068500n, 'no recovery target specified'), TLI2);
  t.equal(buildChildHistoryFile(TLI2, 2, 0x50000a8n, 'no recovery target specified'), TLI3);
  t.same(parseHistoryFile(TLI3, 3).map((e) => e.tli), [1, 2, 3], 'the extra blank line parses');
});

t.test('lookups', async (t) => {
  const h = parseHistoryFile(TLI3, 3);
  t.same(tliSwitchPoint(h, 1), { switchPoint: 0x3068500n, nextTli: 2 });
  t.same(tliSwitchPoint(h, 2), { switchPoint: 0x50000a8n, nextTli: 3 });
  t.equal(tliSwitchPoint(h, 3), null, 'newest timeline has no switch point');
  t.throws(() => tliSwitchPoint(h, 4), { message: "requested timeline 4 is not in this server's history" });
  t.equal(tliOfPoint(h, 0n), 1);
  t.equal(tliOfPoint(h, 0x30684ffn), 1);
  t.equal(tliOfPoint(h, 0x3068500n), 2, 'the switch point belongs to the child');
  t.equal(tliOfPoint(h, 0x50000a7n), 2);
  t.equal(tliOfPoint(h, 0x50000a8n), 3);
  t.equal(tliOfPoint(h, 0xffff_0000_0000n), 3);
  t.ok(timelineIsInHistory(h, 2));
  t.notOk(timelineIsInHistory(h, 4));
  t.equal(newestTimeline(h), 3);
  t.same(initialHistory(), [{ tli: 1, begin: 0n, end: null }]);
  t.equal(tliOfPoint(initialHistory(), 0x123n), 1);
});
