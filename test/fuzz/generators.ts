// The fuzzer's inputs: a seeded PRNG, mutations of valid messages (byte flips,
// interesting values, truncation, extension, bad length words, swapped type bytes)
// and, for each phase of a connection, sequences built from the codec's own client
// encoders so most inputs get past the framing and reach the deeper code.

import { ScramClient } from '../../src/auth/scram-client.ts';
import { copyData, copyDone } from '../../src/protocol/backend.ts';
import {
  cancelRequest, gssEncRequest, hotStandbyFeedback, passwordMessage, query, saslInitialResponse, saslResponse,
  sslRequest, standbyStatusUpdate, startupMessage, terminate,
} from '../../src/protocol/client.ts';

export type Rand = { next(): number; int(n: number): number; pick<T>(xs: readonly T[]): T; bytes(n: number): Buffer };

/** mulberry32: small, fast, deterministic. */
export function prng(seed: number): Rand {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return {
    next, int,
    pick: (xs) => xs[int(xs.length)]!,
    bytes: (n) => { const b = Buffer.allocUnsafe(n); for (let i = 0; i < n; i++) b[i] = int(256); return b; },
  };
}

/** The phases a fuzzed connection is driven to before the fuzzed bytes are sent. */
export const PHASES = ['startup', 'tls', 'sasl', 'sasl2', 'md5', 'password', 'command', 'streaming'] as const;
export type Phase = (typeof PHASES)[number];

const INTERESTING_32 = [0, 1, 3, 4, 5, 8, 0x7f, 0xff, 10000, 10001, 65535, 65536, 65537, 0x7fffffff, -1, -2, 0x80000000 | 0];

export function frame(type: string, body: Buffer): Buffer {
  const b = Buffer.alloc(5 + body.length);
  b.write(type, 0, 'latin1');
  b.writeInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
}

/** One to four mutations of a message. */
export function mutate(r: Rand, msg: Buffer): Buffer {
  let b = Buffer.from(msg);
  for (let n = 1 + r.int(4); n > 0; n--) {
    switch (r.int(8)) {
      case 0: if (b.length) b[r.int(b.length)] ^= 1 << r.int(8); break;
      case 1: if (b.length) b[r.int(b.length)] = r.pick([0, 0xff, 0x7f, 0x80, 0x2c, 0x3d, 0x01]); break;
      case 2: b = b.subarray(0, r.int(b.length + 1)); break;
      case 3: b = Buffer.concat([b, r.bytes(1 + r.int(64))]); break;
      case 4: if (b.length >= 5) b.writeInt32BE(r.pick(INTERESTING_32), r.pick([0, 1])); break;
      case 5: if (b.length) b[0] = r.pick([0x51, 0x70, 0x64, 0x63, 0x58, 0x53, 0x50, 0x00, 0xff, r.int(256)]); break;
      case 6: { const i = r.int(b.length + 1); b = Buffer.concat([b.subarray(0, i), b.subarray(i - Math.min(i, 8), i), b.subarray(i)]); break; }
      default: if (b.length > 5) b.writeInt32BE(b.length - 1 + r.pick([-2, -1, 1, 2, 100]), 1);
    }
  }
  return b;
}

const COMMANDS = [
  'IDENTIFY_SYSTEM', 'SHOW wal_segment_size', 'SHOW server_version', 'SHOW nope', 'TIMELINE_HISTORY 1', 'TIMELINE_HISTORY 2',
  'READ_REPLICATION_SLOT s', 'START_REPLICATION 0/0', 'START_REPLICATION SLOT s PHYSICAL 0/1000000 TIMELINE 1',
  'START_REPLICATION FFFFFFFF/FFFFFFFF TIMELINE 99', 'CREATE_REPLICATION_SLOT fz_slot PHYSICAL RESERVE_WAL',
  'DROP_REPLICATION_SLOT fz_slot', 'BASE_BACKUP', 'SELECT 1', '', ';', 'IDENTIFY_SYSTEM;', '"', "SHOW 'x", 'START_REPLICATION 0/1 TIMELINE 0',
];

function typed(r: Rand): Buffer {
  return frame(String.fromCharCode(r.pick([0x51, 0x53, 0x48, 0x50, 0x42, 0x45, 0x44, 0x43, 0x46, 0x64, 0x63, 0x66, 0x58, 0x70, r.int(256)])),
    r.bytes(r.int(40)));
}

/** Valid-looking messages of each phase, before mutation. */
function candidates(r: Rand, phase: Phase, ctx: FuzzContext): Buffer[] {
  switch (phase) {
    case 'startup': {
      const params: [string, string][] = [['user', r.pick(['fztrust', 'fz', '', 'x'.repeat(100)])], ['replication', r.pick(['true', 'database', 'yes', 'maybe', ''])]];
      if (r.int(2)) params.push(['database', 'replication'], ['application_name', 'fz'.repeat(r.int(50))]);
      if (r.int(4) === 0) params.push(['_pq_.x', 'y'], ['options', '-c x=y']);
      return [startupMessage(params, r.int(6) === 0 ? r.pick([0x00030001, 0x00020000, 80877103, 80877104]) : undefined),
        sslRequest(), gssEncRequest(), cancelRequest(r.int(1000), r.int(1 << 30)), r.bytes(r.int(16))];
    }
    case 'tls':
      // Not a TLS ClientHello: the handshake must fail cleanly.
      return [r.bytes(1 + r.int(200)), Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), r.bytes(r.int(300))]), startupMessage([['user', 'fz']])];
    case 'sasl': {
      const c = new ScramClient({ password: 'fuzz', nonce: r.int(2) ? undefined : '' });
      return [saslInitialResponse(r.pick(['SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS', 'PLAIN', '']), r.int(5) ? c.clientFirst() : null),
        saslInitialResponse('SCRAM-SHA-256', Buffer.from(r.pick(['y,,n=,r=abc', 'p=tls-server-end-point,,n=,r=x', 'n,a=b,n=,r=x', 'n,,m=x', 'n,,n=u,r=\u0001']))),
        passwordMessage('fuzz'), query('IDENTIFY_SYSTEM'), terminate(), saslResponse(r.bytes(r.int(60)))];
    }
    case 'sasl2':
      return [saslResponse(ctx.clientFinal ?? Buffer.from('c=biws,r=x,p=AAAA')), saslResponse(Buffer.from('c=biws,r=x')), saslResponse(Buffer.alloc(0)),
        passwordMessage('md5x'), saslResponse(r.bytes(r.int(100)))];
    case 'md5':
    case 'password':
      return [passwordMessage(r.pick(['fuzz', 'md5' + 'a'.repeat(32), '', 'x'.repeat(70000)])), frame('p', Buffer.alloc(0)), frame('p', Buffer.from('a\0b\0')),
        saslInitialResponse('SCRAM-SHA-256', null), query('IDENTIFY_SYSTEM'), terminate()];
    case 'command':
      return [query(r.pick(COMMANDS)), query(r.pick(COMMANDS)), frame('S', Buffer.alloc(0)), frame('H', Buffer.alloc(0)),
        frame('P', Buffer.from('\0SELECT 1\0\0\0')), frame('B', Buffer.alloc(10)), frame('E', Buffer.from('\0\0\0\0\0')),
        copyData(r.bytes(r.int(40))), copyDone(), frame('f', Buffer.from('no\0')), frame('F', Buffer.alloc(8)), typed(r), terminate()];
    case 'streaming': {
      const lsn = BigInt(r.int(2) ? ctx.flushLsn : r.int(1 << 30));
      return [copyData(standbyStatusUpdate(lsn, lsn, r.int(2) ? lsn : 0n, BigInt(r.int(1 << 30)), r.int(2) === 0)),
        copyData(hotStandbyFeedback(BigInt(r.int(1 << 30)), r.int(1 << 30), 0, 0, 0)), copyData(Buffer.from([0x72])),
        copyData(r.bytes(r.int(40))), copyDone(), frame('c', Buffer.from('x')), query('IDENTIFY_SYSTEM'), frame('f', Buffer.from('bye\0')),
        typed(r), terminate()];
    }
  }
}

/** Runtime facts a generator may use (filled in by the driver after its preamble). */
export type FuzzContext = { flushLsn: number; clientFinal?: Buffer };

/**
 * The bytes of one fuzzed connection after its preamble: `count` messages, mostly
 * mutated; or, for a flood, one valid message repeated `count` times.
 */
export function generate(r: Rand, phase: Phase, ctx: FuzzContext, count: number, flood = false): Buffer[] {
  const out: Buffer[] = [];
  if (flood) {
    const m = r.pick(candidates(r, phase, ctx));
    return Array.from({ length: count }, () => m);
  }
  // Some connections are mostly valid (one bad message ends most of them, so the
  // deeper paths need long valid runs), others mostly garbage.
  const badRate = r.pick([0.03, 0.15, 0.5, 0.9]);
  for (let i = 0; i < count; i++) {
    const m = r.pick(candidates(r, phase, ctx));
    if (r.next() >= badRate) out.push(m);
    else out.push(r.int(5) === 0 ? r.bytes(1 + r.int(64)) : mutate(r, m));
  }
  return out;
}
