// Seeded fuzz: every decoder, fed random or mutated input, must either return a
// value or throw PgError, never any other exception (a TypeError or RangeError
// from a decoder would crash a sender task instead of becoming an ErrorResponse).
import t from 'tap';
import { PgError } from '../../src/protocol/errors.ts';
import {
  FrontendReader,
  commandModeLengthLimit,
  parsePasswordPacket,
  parseQuery,
  parseSASLInitialResponse,
  parseStandbyMessage,
} from '../../src/protocol/frontend.ts';
import { parseReplicationCommand } from '../../src/protocol/commands.ts';
import {
  parseAuthentication,
  parseDataRow,
  parseErrorFields,
  parseRowDescription,
  parseServerCopyData,
  standbyStatusUpdate,
  startupMessage,
} from '../../src/protocol/client.ts';
import { parseLsn } from '../../src/protocol/lsn.ts';
import { hex } from './helpers.ts';

const ITERATIONS = 20000;

/** mulberry32: small, fast, deterministic. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const rand = prng(0x5eed1e55);
const int = (n: number): number => Math.floor(rand() * n);

const SEEDS: Buffer[] = [
  startupMessage([['user', 'rmd5'], ['database', 'replication'], ['replication', 'true']]),
  hex('0000000804d2162f'),
  hex('0000001004d2162e000004d2deadbeef'),
  hex('51000000144944454e544946595f53595354454d00'),
  hex('7000000036534352414d2d5348412d32353600000000206e2c2c6e3d2c723d66796b6f2b64326c626246674f4e527639716b786461774c'),
  Buffer.concat([hex('6400000026'), standbyStatusUpdate(1n, 2n, 3n, 4n, true)]),
  hex('640000001d680002e53cf97fd240000002d5000000000000000000000000'),
  hex('540000003b000266696c656e616d650000000000000000000019ffff000000000000636f6e74656e740000000000000000000019ffff000000000000'),
];

/** Random bytes, or a seed fixture with a few bytes mutated, truncated or extended. */
function randomBuffer(): Buffer {
  if (rand() < 0.5) {
    const b = Buffer.allocUnsafe(int(48));
    for (let i = 0; i < b.length; i++) b[i] = int(256);
    return b;
  }
  const seed = SEEDS[int(SEEDS.length)]!;
  let b = Buffer.from(seed);
  for (let k = int(4); k > 0 && b.length > 0; k--) b[int(b.length)] = int(256);
  if (rand() < 0.3) b = b.subarray(0, int(b.length + 1));
  if (rand() < 0.2) b = Buffer.concat([b, Buffer.from([int(256), int(256)])]);
  return b;
}

const WORDS = [
  'IDENTIFY_SYSTEM', 'START_REPLICATION', 'CREATE_REPLICATION_SLOT', 'DROP_REPLICATION_SLOT',
  'READ_REPLICATION_SLOT', 'TIMELINE_HISTORY', 'SHOW', 'BASE_BACKUP', 'SLOT', 'PHYSICAL', 'LOGICAL',
  'TIMELINE', 'TEMPORARY', 'RESERVE_WAL', 'TWO_PHASE', 'EXPORT_SNAPSHOT', 'USE_SNAPSHOT', 'WAIT',
  '"s1"', 's1', "'x'", "'it''s'", '0/1000000', 'FFFFFFFFF/0', '1', '0', '4294967296', '(', ')', ',', ';',
  '.', '"', "'", 'true', 'false', '-', 'é', 'A'.repeat(70),
];

function randomCommand(): string {
  const parts: string[] = [];
  for (let n = int(8); n >= 0; n--) {
    parts.push(rand() < 0.9 ? WORDS[int(WORDS.length)]! : String.fromCharCode(int(256)));
  }
  return parts.join(rand() < 0.8 ? ' ' : '');
}

t.test(`${ITERATIONS} random inputs: decoders return or throw PgError`, async (t) => {
  const started = Date.now();
  let pgErrors = 0;
  let values = 0;
  const failures: string[] = [];
  const check = (name: string, input: unknown, fn: () => unknown): void => {
    try {
      fn();
      values++;
    } catch (e) {
      if (e instanceof PgError) pgErrors++;
      else if (failures.length < 5) failures.push(`${name}(${String(input)}): ${String(e)}`);
    }
  };
  for (let i = 0; i < ITERATIONS; i++) {
    const buf = randomBuffer();
    const hexed = buf.toString('hex');
    check('startup', hexed, () => {
      const r = new FrontendReader();
      let off = 0;
      while (off < buf.length) {
        const n = 1 + int(buf.length - off);
        r.push(buf.subarray(off, off + n));
        off += n;
        while (r.nextStartupPacket() !== null);
      }
    });
    check('typed', hexed, () => {
      const r = new FrontendReader({ lengthLimit: rand() < 0.5 ? commandModeLengthLimit : undefined });
      r.push(buf);
      while (r.nextMessage() !== null);
    });
    check('parseQuery', hexed, () => parseQuery(buf));
    check('parsePasswordPacket', hexed, () => parsePasswordPacket(buf));
    check('parseSASLInitialResponse', hexed, () => parseSASLInitialResponse(buf));
    check('parseStandbyMessage', hexed, () => parseStandbyMessage(buf));
    check('parseServerCopyData', hexed, () => parseServerCopyData(buf));
    check('parseErrorFields', hexed, () => parseErrorFields(buf));
    check('parseRowDescription', hexed, () => parseRowDescription(buf.subarray(Math.min(5, buf.length))));
    check('parseDataRow', hexed, () => parseDataRow(buf));
    check('parseAuthentication', hexed, () => parseAuthentication(buf));
    const text = rand() < 0.8 ? randomCommand() : buf.toString('latin1');
    check('parseReplicationCommand', JSON.stringify(text), () => parseReplicationCommand(text, () => {}));
    check('parseLsn', JSON.stringify(text), () => parseLsn(text));
  }
  t.same(failures, [], 'no exception other than PgError');
  t.ok(pgErrors > 0 && values > 0, `exercised both outcomes (${values} values, ${pgErrors} PgErrors)`);
  t.ok(Date.now() - started < 5000, `finished in ${Date.now() - started} ms`);
});
