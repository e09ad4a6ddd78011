// Owns framing of what the upstream server sends (Byte1 type, Int32 length counting
// itself, body) over the socket's chunks. Streaming WAL is the hot path: a CopyData
// body is handed out as slices of the received chunks (Node never reuses a chunk, so
// slices stay valid), never copied, so 128 KiB XLogData messages cost no allocation
// and go to the store with one writev. Other messages (small) come out as one Buffer.

const MAX_MESSAGE = 256 << 20;

export class InboundQueue {
  private chunks: Buffer[] = [];
  private head = 0; // consumed bytes of chunks[0]
  private total = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  private byteAt(i: number): number {
    let pos = this.head + i;
    for (const c of this.chunks) {
      if (pos < c.length) return c[pos]!;
      pos -= c.length;
    }
    throw new RangeError('past buffered data');
  }

  /** Type and body length of the next message, once it is complete; throws on a bad length. */
  peek(): { type: string; bodyLen: number } | null {
    if (this.total < 5) return null;
    const len = ((this.byteAt(1) << 24) | (this.byteAt(2) << 16) | (this.byteAt(3) << 8) | this.byteAt(4)) >>> 0;
    if (len < 4 || len > MAX_MESSAGE) throw new Error(`invalid message length ${len} from server`);
    if (this.total < 1 + len) return null;
    return { type: String.fromCharCode(this.byteAt(0)), bodyLen: len - 4 };
  }

  /** Remove `n` bytes as slices of the chunks (no copy). */
  takeSlices(n: number): Buffer[] {
    const out: Buffer[] = [];
    this.total -= n;
    while (n > 0) {
      const c = this.chunks[0]!;
      const avail = c.length - this.head;
      const m = Math.min(avail, n);
      out.push(c.subarray(this.head, this.head + m));
      n -= m;
      if (m === avail) {
        this.chunks.shift();
        this.head = 0;
      } else {
        this.head += m;
      }
    }
    return out;
  }

  /** Next complete message with its body in one Buffer (copied only when it spans chunks). */
  next(): { type: string; body: Buffer } | null {
    const h = this.peek();
    if (!h) return null;
    this.takeSlices(5);
    const parts = this.takeSlices(h.bodyLen);
    return { type: h.type, body: parts.length === 1 ? parts[0]! : Buffer.concat(parts, h.bodyLen) };
  }

  /** Next complete message with its body as slices (CopyData while streaming). */
  nextSlices(): { type: string; parts: Buffer[]; length: number } | null {
    const h = this.peek();
    if (!h) return null;
    this.takeSlices(5);
    return { type: h.type, parts: this.takeSlices(h.bodyLen), length: h.bodyLen };
  }
}

/** `n` bytes at `offset` of a sliced body, as one Buffer (a view when they lie in one slice). */
export function bytesAt(parts: Buffer[], offset: number, n: number): Buffer {
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    if (offset < p.length) {
      if (offset + n <= p.length) return p.subarray(offset, offset + n);
      const out = Buffer.allocUnsafe(n);
      let filled = 0;
      for (let j = i; j < parts.length && filled < n; j++) {
        const q = j === i ? parts[j]!.subarray(offset) : parts[j]!;
        filled += q.copy(out, filled, 0, Math.min(q.length, n - filled));
      }
      if (filled < n) throw new RangeError('past the end of the message');
      return out;
    }
    offset -= p.length;
  }
  throw new RangeError('past the end of the message');
}

/** The slices of a sliced body from `offset` up to `end` (default: its end). */
export function slicesFrom(parts: Buffer[], offset: number, end = Infinity): Buffer[] {
  const out: Buffer[] = [];
  let pos = 0;
  for (const p of parts) {
    const from = Math.max(offset - pos, 0);
    const to = Math.min(end - pos, p.length);
    if (from < to) out.push(from === 0 && to === p.length ? p : p.subarray(from, to));
    pos += p.length;
    if (pos >= end) break;
  }
  return out;
}
