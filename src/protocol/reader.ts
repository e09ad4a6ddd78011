// Owns incremental framing of the client's byte stream: untyped startup-phase
// packets and typed messages (Byte1 type, Int32 length counting itself, body).
// Chunks are kept as received; a frame is copied only when it spans chunks, so
// small frames inside one socket read are zero-copy views.

import { fatalProtocol, type PgError } from './errors.ts';
import { MAX_STARTUP_PACKET_LENGTH, invalidStartupLength, parseStartupPacket } from './startup.ts';
import type { StartupPacket } from './startup.ts';

export type FrontendReaderOptions = {
  /** Limit on a startup packet after its length word (PG's MAX_STARTUP_PACKET_LENGTH). */
  maxStartupPacketLength?: number;
  /** Limit on a typed message's length word (which counts itself, not the type byte). */
  maxMessageLength?: number;
  /**
   * Per-type limit, consulted as soon as the type byte arrives (before the
   * length), like PostgreSQL's SocketBackend; may throw to reject the type.
   * Overrides maxMessageLength when given.
   */
  lengthLimit?: (type: string) => number;
  /**
   * The error for a length word over the limit (default: PostgreSQL's logged-only
   * "invalid message length"), so a server can tell the client which limit it hit.
   */
  lengthError?: (type: string, length: number, limit: number) => PgError;
};

export type FrontendMessage = { type: string; body: Buffer };

export class FrontendReader {
  maxStartupPacketLength: number;
  maxMessageLength: number;
  lengthLimit: ((type: string) => number) | undefined;
  lengthError: ((type: string, length: number, limit: number) => PgError) | undefined;
  /**
   * Set once an SSLRequest / GSSENCRequest was returned; a repeat is then an
   * ordinary packet. A caller that accepts SSL should also set gssDone (and
   * vice versa), as PostgreSQL allows only one encryption layer.
   */
  sslDone = false;
  gssDone = false;

  private chunks: Buffer[] = [];
  private head = 0; // consumed bytes of chunks[0]
  private total = 0; // unconsumed bytes over all chunks

  constructor(options: FrontendReaderOptions = {}) {
    this.maxStartupPacketLength = options.maxStartupPacketLength ?? MAX_STARTUP_PACKET_LENGTH;
    this.maxMessageLength = options.maxMessageLength ?? 1 << 30;
    this.lengthLimit = options.lengthLimit;
    this.lengthError = options.lengthError;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  /** Bytes received but not yet returned as a frame. */
  get buffered(): number {
    return this.total;
  }

  /** Removes and returns everything buffered (e.g. to hand the rest of the stream to TLS). */
  drain(): Buffer {
    return this.take(this.total);
  }

  private byteAt(i: number): number {
    let pos = this.head + i;
    for (const c of this.chunks) {
      if (pos < c.length) return c[pos]!;
      pos -= c.length;
    }
    throw new RangeError('byteAt past buffered data');
  }

  private int32At(i: number): number {
    const c = this.chunks[0]!;
    if (this.head + i + 4 <= c.length) return c.readInt32BE(this.head + i);
    return (
      ((this.byteAt(i) << 24) | (this.byteAt(i + 1) << 16) | (this.byteAt(i + 2) << 8) | this.byteAt(i + 3)) | 0
    );
  }

  private skip(n: number): void {
    this.total -= n;
    while (n > 0) {
      const c = this.chunks[0]!;
      const avail = c.length - this.head;
      if (n < avail) {
        this.head += n;
        return;
      }
      n -= avail;
      this.chunks.shift();
      this.head = 0;
    }
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0]!;
    if (first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.skip(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0]!;
      const m = Math.min(c.length - this.head, n - filled);
      c.copy(out, filled, this.head, this.head + m);
      filled += m;
      this.skip(m);
    }
    return out;
  }

  /**
   * Next untyped packet of the startup phase, or null until it is complete.
   * Throws PgError for a bad length, layout, protocol version or missing user.
   */
  nextStartupPacket(): StartupPacket | null {
    if (this.total < 4) return null;
    const len = this.int32At(0);
    // PG subtracts the length word before checking: the limit is on the rest.
    if (len < 8 || len - 4 > this.maxStartupPacketLength) throw invalidStartupLength();
    if (this.total < len) return null;
    this.skip(4);
    const packet = this.take(len - 4);
    const result = parseStartupPacket(packet, { sslDone: this.sslDone, gssDone: this.gssDone });
    if (result.kind === 'ssl') this.sslDone = true;
    else if (result.kind === 'gssenc') this.gssDone = true;
    return result;
  }

  /** Next typed message, or null until it is complete. */
  nextMessage(): FrontendMessage | null {
    if (this.total < 1) return null;
    const type = String.fromCharCode(this.byteAt(0));
    const limit = this.lengthLimit !== undefined ? this.lengthLimit(type) : this.maxMessageLength;
    if (this.total < 5) return null;
    const len = this.int32At(1);
    if (len > limit && this.lengthError !== undefined) throw this.lengthError(type, len, limit);
    if (len < 4 || len > limit) {
      // COMMERROR in PostgreSQL (pq_getmessage): framing is lost, nothing is sent.
      throw fatalProtocol('invalid message length', { logOnly: true });
    }
    if (this.total < 1 + len) return null;
    this.skip(5);
    return { type, body: this.take(len - 4) };
  }
}

