// Owns message assembly for the encoders: a growable buffer that reserves the
// 5-byte header (type byte + Int32 length), lets the caller append fields, and
// fills the length in at the end, in the style of node-postgres' pg-protocol.
// Internal to src/protocol; other modules use the encoder functions.

export class Writer {
  private buf: Buffer;
  private off: number;
  private readonly headerLen: number;

  /** `typed` = true reserves a type byte before the length (all messages but startup ones). */
  constructor(initialSize = 128, typed = true) {
    this.buf = Buffer.allocUnsafe(initialSize);
    this.headerLen = typed ? 5 : 4;
    this.off = this.headerLen;
  }

  private ensure(n: number): void {
    const need = this.off + n;
    if (need <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(need, this.buf.length * 2));
    this.buf.copy(next, 0, 0, this.off);
    this.buf = next;
  }

  int8(v: number): this {
    this.ensure(1);
    this.buf[this.off++] = v & 0xff;
    return this;
  }

  int16(v: number): this {
    this.ensure(2);
    this.buf.writeUInt16BE(v & 0xffff, this.off);
    this.off += 2;
    return this;
  }

  /** Writes the low 32 bits, so int32 and uint32 values both work. */
  int32(v: number): this {
    this.ensure(4);
    this.buf.writeInt32BE(v | 0, this.off);
    this.off += 4;
    return this;
  }

  uint64(v: bigint): this {
    this.ensure(8);
    this.buf.writeBigUInt64BE(BigInt.asUintN(64, v), this.off);
    this.off += 8;
    return this;
  }

  int64(v: bigint): this {
    this.ensure(8);
    this.buf.writeBigInt64BE(BigInt.asIntN(64, v), this.off);
    this.off += 8;
    return this;
  }

  /** UTF-8 text followed by the NUL terminator (protocol String). */
  cstring(s: string): this {
    const len = Buffer.byteLength(s, 'utf8');
    this.ensure(len + 1);
    this.buf.write(s, this.off, len, 'utf8');
    this.off += len;
    this.buf[this.off++] = 0;
    return this;
  }

  /** UTF-8 text without terminator. */
  string(s: string): this {
    const len = Buffer.byteLength(s, 'utf8');
    this.ensure(len);
    this.buf.write(s, this.off, len, 'utf8');
    this.off += len;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.ensure(b.length);
    this.buf.set(b, this.off);
    this.off += b.length;
    return this;
  }

  /** Typed message: writes `code` and the length word, returns the exact-size message. */
  finish(code: string): Buffer {
    if (this.headerLen === 5) {
      this.buf[0] = code.charCodeAt(0);
      this.buf.writeInt32BE(this.off - 1, 1);
    } else {
      this.buf.writeInt32BE(this.off, 0);
    }
    return this.buf.subarray(0, this.off);
  }

  /** Untyped (startup-phase) message: the length word counts the whole packet. */
  finishUntyped(): Buffer {
    return this.finish('');
  }
}
