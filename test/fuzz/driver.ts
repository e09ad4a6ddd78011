// Runs one fuzzed connection: drives it to its phase with a valid preamble (startup,
// TLS request, part of an authentication exchange, a session, streaming), sends the
// fuzzed bytes in a few writes, then half-closes. The server must answer with an
// ErrorResponse or close, and in any case close within a bound once we stopped
// sending; anything else is a hang. It also watches for the worst bug of all: an
// AuthenticationOk the fuzzed bytes did not earn.

import net from 'node:net';
import { ScramClient } from '../../src/auth/scram-client.ts';
import {
  parseAuthentication, parseDataRow, passwordMessage, query, saslInitialResponse, saslResponse, sslRequest, startupMessage,
} from '../../src/protocol/client.ts';
import type { FuzzContext, Phase, Rand } from './generators.ts';

export type Outcome = 'error' | 'closed' | 'closed-after-fin' | 'hang' | 'preamble-failed';
export type CaseResult = {
  phase: Phase;
  bytes: Buffer;
  outcome: Outcome;
  clientPort: number;
  detail: string;
  /** SQLSTATE of the first ErrorResponse after the preamble, if any. */
  code: string | null;
  /** Fuzzed messages written in full before the server closed (what reached it). */
  delivered: number;
  /** An AuthenticationOk arrived after the preamble without the credentials to earn it. */
  unearnedOk: boolean;
};

const USER: Partial<Record<Phase, string>> = { sasl: 'fz', sasl2: 'fz', md5: 'fzmd5', password: 'fzpw', command: 'fztrust', streaming: 'fztrust' };
export const FUZZ_PASSWORD = 'fuzz';

/** A raw client: bytes in, framed backend messages out, close detection. */
class RawClient {
  readonly socket: net.Socket;
  private buf: Buffer = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;
  sawError = false;
  errorCode: string | null = null;
  /** AuthenticationOk seen after the preamble. */
  sawAuthOk = false;
  framing = true;

  constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      if (!this.framing) this.scan();
      this.notify();
    });
    const gone = (): void => { this.closed = true; this.notify(); };
    socket.on('close', gone);
    socket.on('error', gone);
  }

  private notify(): void { for (const w of this.waiters.splice(0)) w(); }

  private wait(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), Math.max(1, ms));
      this.waiters.push(() => { clearTimeout(timer); resolve(true); });
    });
  }

  /** After the preamble: only look for ErrorResponses, drop everything else. */
  scan(): void {
    this.framing = false;
    while (this.buf.length >= 5) {
      const len = this.buf.readUInt32BE(1);
      if (this.buf.length < 1 + len) break;
      if (this.buf[0] === 0x45 && !this.sawError) {
        this.sawError = true;
        const body = this.buf.subarray(5, 1 + len).toString('latin1');
        this.errorCode = /(?:^|\0)C([0-9A-Z]{5})\0/.exec(body)?.[1] ?? '?';
      }
      if (this.buf[0] === 0x52 && len === 8 && this.buf.readInt32BE(5) === 0) this.sawAuthOk = true;
      this.buf = this.buf.subarray(1 + len);
    }
  }

  async byte(ms: number): Promise<number | null> {
    const until = Date.now() + ms;
    while (this.buf.length < 1) {
      if (this.closed || !(await this.wait(until - Date.now()))) return null;
    }
    const b = this.buf[0]!;
    this.buf = this.buf.subarray(1);
    return b;
  }

  async message(ms: number): Promise<{ type: string; body: Buffer } | null> {
    const until = Date.now() + ms;
    for (;;) {
      if (this.buf.length >= 5 && this.buf.length >= 1 + this.buf.readUInt32BE(1)) {
        const len = this.buf.readUInt32BE(1);
        const m = { type: String.fromCharCode(this.buf[0]!), body: this.buf.subarray(5, 1 + len) };
        this.buf = this.buf.subarray(1 + len);
        return m;
      }
      if (this.closed || Date.now() >= until || !(await this.wait(until - Date.now()))) return null;
    }
  }

  async until(type: string, ms: number): Promise<{ type: string; body: Buffer }[] | null> {
    const out = [];
    for (;;) {
      const m = await this.message(ms);
      if (!m) return null;
      out.push(m);
      if (m.type === type) return out;
      if (m.type === 'E') return null;
    }
  }

  /** Resolves true once closed, false after `ms`. */
  async closedWithin(ms: number): Promise<boolean> {
    const until = Date.now() + ms;
    while (!this.closed) if (!(await this.wait(until - Date.now())) && Date.now() >= until) return this.closed;
    return true;
  }
}

function connect(port: number): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(new RawClient(s)));
    s.once('error', reject);
  });
}

const startup = (user: string): Buffer => startupMessage([['user', user], ['database', 'replication'], ['replication', 'true'], ['application_name', 'fuzz']]);

/** Drives a fresh connection to `phase`; null when the server did not play along. */
async function preamble(c: RawClient, phase: Phase, ctx: FuzzContext): Promise<string | null> {
  const user = USER[phase];
  if (phase === 'startup') return null;
  if (phase === 'tls') {
    c.socket.write(sslRequest());
    const b = await c.byte(5000);
    return b === 0x53 ? null : `SSLRequest answered ${b}`;
  }
  c.socket.write(startup(user!));
  const authCode = async (): Promise<number> => {
    const m = await c.message(5000);
    return m?.type === 'R' ? parseAuthentication(m.body).code : -1;
  };
  if (phase === 'sasl') return (await authCode()) === 10 ? null : 'no SASL request';
  if (phase === 'md5') return (await authCode()) === 5 ? null : 'no MD5 request';
  if (phase === 'password') return (await authCode()) === 3 ? null : 'no password request';
  if (phase === 'sasl2') {
    if ((await authCode()) !== 10) return 'no SASL request';
    const scram = new ScramClient({ password: FUZZ_PASSWORD });
    c.socket.write(saslInitialResponse(scram.mechanism, scram.clientFirst()));
    const m = await c.message(5000);
    if (m?.type !== 'R' || parseAuthentication(m.body).code !== 11) return 'no SASLContinue';
    ctx.clientFinal = scram.clientFinal(parseAuthentication(m.body).data);
    return null;
  }
  if (!(await c.until('Z', 5000))) return 'no ReadyForQuery';
  if (phase === 'command') return null;
  c.socket.write(query('IDENTIFY_SYSTEM'));
  const rows = await c.until('Z', 5000);
  const d = rows?.find((m) => m.type === 'D');
  if (!d) return 'no IDENTIFY_SYSTEM row';
  const [hi, lo] = parseDataRow(d.body)[2]!.toString().split('/').map((x) => parseInt(x, 16));
  const seg = Math.floor((hi! * 2 ** 32 + lo!) / (1 << 20)) * (1 << 20);
  ctx.flushLsn = seg;
  c.socket.write(query(`START_REPLICATION ${Math.floor(seg / 2 ** 32).toString(16)}/${(seg % 2 ** 32).toString(16)} TIMELINE 1`));
  const w = await c.message(5000);
  return w?.type === 'W' ? null : `START_REPLICATION answered ${w?.type}`;
}

export type CaseOptions = {
  finTimeoutMs: number;
  quietMs: number;
  /** Stop reading while sending (a client that does not read its results), resume before the FIN. */
  noRead?: boolean;
};

/**
 * One connection: preamble, then `make(ctx)`'s bytes in one to three writes, then
 * FIN. `make` receives what the preamble learned (flush position, a valid
 * client-final message) so generators can build nearly-valid input.
 */
export async function runCase(port: number, phase: Phase, r: Rand, make: (ctx: FuzzContext) => Buffer[], o: CaseOptions): Promise<CaseResult> {
  const c = await connect(port);
  const ctx: FuzzContext = { flushLsn: 0 };
  const clientPort = c.socket.localPort!;
  try {
    const failed = await preamble(c, phase, ctx);
    const messages = make(ctx);
    const bytes = Buffer.concat(messages);
    const base = { phase, bytes, clientPort, detail: '', delivered: 0, unearnedOk: false };
    if (failed) return { ...base, outcome: 'preamble-failed', detail: failed, code: null };
    c.scan();
    if (o.noRead) c.socket.pause();
    const cuts = [0, ...Array.from({ length: r.int(3) }, () => r.int(bytes.length + 1)).sort((a, b) => a - b), bytes.length];
    let written = 0;
    for (let i = 0; i + 1 < cuts.length && !c.closed; i++) {
      c.socket.write(bytes.subarray(cuts[i], cuts[i + 1]));
      written = cuts[i + 1]!;
      if (r.int(4) === 0) await new Promise((res) => setImmediate(res));
    }
    let end = 0;
    for (const m of messages) if ((end += m.length) <= written) base.delivered++;
    const result = (outcome: Outcome): CaseResult =>
      ({ ...base, outcome, code: c.errorCode, unearnedOk: c.sawAuthOk && !earnsOk(phase, ctx, bytes) });
    await c.closedWithin(o.quietMs);
    c.socket.resume(); // a paused socket would not notice the server's close
    await c.closedWithin(o.noRead ? o.quietMs : 0);
    if (c.closed) return result(c.sawError ? 'error' : 'closed');
    c.socket.end(); // we are done: the server must close its side within the bound
    const closed = await c.closedWithin(o.finTimeoutMs);
    return result(closed ? (c.sawError ? 'error' : 'closed-after-fin') : 'hang');
  } finally {
    c.socket.destroy();
  }
}

/**
 * Whether these fuzzed bytes could legitimately end in AuthenticationOk: a startup
 * packet for the trust user, or, once the server asked for it, the one right answer
 * sent first and intact (the password, or the client-final-message with its proof).
 * Nothing else knows a password, so an Ok anywhere else is an authentication bypass.
 */
function earnsOk(phase: Phase, ctx: FuzzContext, bytes: Buffer): boolean {
  const startsWith = (m: Buffer): boolean => bytes.subarray(0, m.length).equals(m);
  switch (phase) {
    case 'startup': return bytes.includes(Buffer.from('user\0fztrust\0'));
    case 'password': return startsWith(passwordMessage(FUZZ_PASSWORD));
    case 'sasl2': return ctx.clientFinal !== undefined && startsWith(saslResponse(ctx.clientFinal));
    default: return false; // sasl, md5 (no answer can be right), tls, and sessions already authenticated
  }
}

/** Replays saved bytes (a corpus file) in phase `phase`. */
export function replayCase(port: number, phase: Phase, r: Rand, bytes: Buffer, o: CaseOptions): Promise<CaseResult> {
  return runCase(port, phase, r, () => [bytes], o);
}
