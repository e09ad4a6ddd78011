// A raw protocol client for tests that must see exact server messages (order, types,
// SQLSTATEs) or send malformed bytes. Frames backend messages; decoding uses the
// codec's client-side decoders.

import net from 'node:net';
import { parseCommandComplete, parseDataRow, parseErrorFields, query, startupMessage } from '../../src/protocol/client.ts';

export type BackendMessage = { type: string; body: Buffer };

export class WireClient {
  readonly socket: net.Socket;
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => { this.buf = Buffer.concat([this.buf, d]); this.notify(); });
    socket.on('close', () => { this.closed = true; this.notify(); });
    socket.on('error', () => { this.closed = true; this.notify(); });
  }

  static connect(port: number): Promise<WireClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new WireClient(s)));
      s.once('error', reject);
    });
  }

  /** Connect and complete a replication=true startup; returns the client after ReadyForQuery. */
  static async replication(port: number, params: Record<string, string> = {}): Promise<WireClient> {
    const c = await WireClient.connect(port);
    c.write(startupMessage(Object.entries({ user: 'postgres', database: 'replication', replication: 'true', ...params })));
    await c.until('Z');
    return c;
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private wait(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for the server`)), timeoutMs);
      this.waiters.push(() => { clearTimeout(timer); resolve(); });
    });
  }

  write(b: Buffer): void {
    this.socket.write(b);
  }

  query(text: string): void {
    this.write(query(text));
  }

  /** Next complete backend message, or null once the server closed. */
  async next(timeoutMs = 10_000): Promise<BackendMessage | null> {
    for (;;) {
      if (this.buf.length >= 5) {
        const len = this.buf.readUInt32BE(1);
        if (this.buf.length >= 1 + len) {
          const m = { type: String.fromCharCode(this.buf[0]!), body: this.buf.subarray(5, 1 + len) };
          this.buf = this.buf.subarray(1 + len);
          return m;
        }
      }
      if (this.closed) return null;
      await this.wait(timeoutMs);
    }
  }

  /** One raw byte (the answer to SSLRequest / GSSENCRequest). */
  async nextByte(timeoutMs = 10_000): Promise<string | null> {
    while (this.buf.length < 1) {
      if (this.closed) return null;
      await this.wait(timeoutMs);
    }
    const b = String.fromCharCode(this.buf[0]!);
    this.buf = this.buf.subarray(1);
    return b;
  }

  /** Messages up to and including the first of type `type`. */
  async until(type: string, timeoutMs = 10_000): Promise<BackendMessage[]> {
    const out: BackendMessage[] = [];
    for (;;) {
      const m = await this.next(timeoutMs);
      if (!m) throw new Error(`connection closed before '${type}'; got ${out.map((x) => x.type).join('')}`);
      out.push(m);
      if (m.type === type) return out;
    }
  }

  /** Resolves once the server has closed the connection. */
  async closedByServer(timeoutMs = 10_000): Promise<void> {
    while (!this.closed) await this.wait(timeoutMs);
  }

  end(): void {
    this.socket.destroy();
  }
}

export const errorOf = (m: BackendMessage): { severity: string; code: string; message: string; detail?: string } => {
  const f = parseErrorFields(m.body);
  return { severity: f.get('V') ?? f.get('S') ?? '', code: f.get('C') ?? '', message: f.get('M') ?? '', detail: f.get('D') };
};

export const rowOf = (m: BackendMessage): (string | null)[] => parseDataRow(m.body).map((v) => (v === null ? null : v.toString()));
export const tagOf = (m: BackendMessage): string => parseCommandComplete(m.body);
export const types = (ms: BackendMessage[]): string => ms.map((m) => m.type).join('');
