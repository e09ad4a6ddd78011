// The per-thread batch cache: a batch (and what it holds: a pooled buffer or segment
// mappings) is given back exactly once, after it left the cache AND its last write
// finished; stale batches leave the cache by time alone, with no new batch to push them out.

import t from 'tap';
import { BatchCache, type Batch } from '../../workers/sender/batch-cache.ts';
import { BufferPool } from '../../workers/sender/context.ts';

function mappedBatch(key: string, builtAt: number, released: string[]): Batch {
  return { key, chunks: [Buffer.alloc(1)], buf: null, release: () => released.push(key), end: 0n, builtAt, refs: 1, evicted: false };
}

t.test('stale batches expire without a new one; held ones are given back after their write', async (t) => {
  const released: string[] = [];
  const cache = new BatchCache(new BufferPool(16, 4), 16);
  const now = Date.now();
  const a = mappedBatch('a', now, released);
  const b = mappedBatch('b', now + 100, released);
  cache.add(a);
  cache.add(b);
  cache.release(a); // a's write finished; b's is still in flight
  cache.expire(now + 400);
  t.same(released, [], 'nothing is stale yet');
  t.equal(cache.acquire('a', now + 400), a, 'a fresh batch is shared');
  cache.release(a);
  cache.expire(now + 700);
  t.same(released, ['a'], 'a expired and is given back; b (450 ms old) stays');
  cache.expire(now + 1000);
  t.same(released, ['a'], 'b expired but its write is in flight: not given back yet');
  t.equal(cache.acquire('b', now + 1000), undefined, 'an expired batch is not shared');
  cache.release(b);
  t.same(released, ['a', 'b'], 'given back once its write finished');
  cache.expire(now + 5000);
  t.same(released, ['a', 'b'], 'and only once');
});

t.test('a copied batch returns its buffer to the pool once', async (t) => {
  const pool = new BufferPool(16, 4);
  const cache = new BatchCache(pool, 1);
  const buf = pool.take();
  const now = Date.now();
  const c: Batch = { key: 'c', chunks: [buf], buf, release: null, end: 0n, builtAt: now, refs: 1, evicted: false };
  cache.add(c);
  cache.add(mappedBatch('d', now + 1, [])); // capacity 1: c is evicted, its write still in flight
  t.not(pool.take(), buf, 'not in the pool while being written');
  cache.release(c);
  t.equal(pool.take(), buf, 'in the pool after the write');
  t.not(pool.take(), buf, 'given once');
});
