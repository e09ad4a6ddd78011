// Per-thread sharing of built batches (a fan-out read, as Neon's safekeeper does it):
// standbys catching up over the same WAL ask for the same batches, because every
// batch starts where the previous one ended on the same grid. The first sender to
// need one reads it from the store; the others on the thread send the same bytes.
// A batch's buffer goes back to the pool only once it is evicted AND no socket write
// still references it, so a buffer is never overwritten while being sent.

import type { BufferPool } from './context.ts';

export type Batch = {
  key: string;
  buf: Buffer;
  len: number; // bytes of XLogData messages in buf
  end: bigint; // WAL position after the last message
  builtAt: number;
  refs: number;
  evicted: boolean;
};

// Kept only briefly: a reused batch carries the sendTime of when it was built.
const MAX_AGE_MS = 500;

export class BatchCache {
  private readonly pool: BufferPool;
  private readonly capacity: number;
  private readonly batches = new Map<string, Batch>();

  constructor(pool: BufferPool, capacity: number) {
    this.pool = pool;
    this.capacity = capacity;
  }

  /** A fresh batch with this key, acquired for one write; undefined when none. */
  acquire(key: string, now = Date.now()): Batch | undefined {
    const b = this.batches.get(key);
    if (!b || now - b.builtAt > MAX_AGE_MS) return undefined;
    b.refs++;
    return b;
  }

  /** Keep a newly built batch (already acquired once by its builder). */
  add(b: Batch): void {
    const old = this.batches.get(b.key);
    if (old) this.evict(old);
    this.batches.set(b.key, b);
    for (const o of this.batches.values()) {
      if (this.batches.size <= this.capacity && b.builtAt - o.builtAt <= MAX_AGE_MS) break;
      this.evict(o); // oldest first: Map keeps insertion order
    }
  }

  /** The write using `b` finished. */
  release(b: Batch): void {
    b.refs--;
    if (b.evicted && b.refs === 0) this.pool.give(b.buf);
  }

  private evict(b: Batch): void {
    this.batches.delete(b.key);
    b.evicted = true;
    if (b.refs === 0) this.pool.give(b.buf);
  }
}
