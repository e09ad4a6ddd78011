// Per-thread sharing of built batches (a fan-out read, as Neon's safekeeper does it):
// standbys catching up over the same WAL ask for the same batches, because every
// batch starts where the previous one ended on the same grid. The first sender to
// need one reads it from the store; the others on the thread send the same bytes.
// A batch's buffer goes back to the pool only once it is evicted AND no socket write
// still references it, so a buffer is never overwritten while being sent. A mapped
// batch (headers plus slices of a segment mapping) has no pooled buffer to give back.

import type { BufferPool } from './context.ts';

export type Batch = {
  key: string;
  /** What goes to the socket, in order: one buffer, or headers and mapped WAL slices. */
  chunks: Buffer[];
  /** The pooled send buffer the chunks live in; null for a mapped batch. */
  buf: Buffer | null;
  /** Gives back what a mapped batch holds (its segment mappings); null for a copied one. */
  release: (() => void) | null;
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
    // Stale batches go even when no new batch comes (every sender caught up): a mapped
    // batch holds its segment's mapping, which would keep a deleted segment's disk space.
    setInterval(() => this.expire(), MAX_AGE_MS).unref();
  }

  /** Evict the batches older than MAX_AGE_MS. */
  expire(now = Date.now()): void {
    for (const b of this.batches.values()) {
      if (now - b.builtAt <= MAX_AGE_MS) break; // oldest first
      this.evict(b);
    }
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
    if (b.evicted && b.refs === 0) this.free(b);
  }

  private evict(b: Batch): void {
    this.batches.delete(b.key);
    b.evicted = true;
    if (b.refs === 0) this.free(b);
  }

  /** No cache entry and no write uses `b` any more. */
  private free(b: Batch): void {
    if (b.buf) this.pool.give(b.buf);
    b.release?.();
  }
}
