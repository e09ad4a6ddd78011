// Owns the store's size as the admin API and metrics report it: bytes of WAL kept in
// the store directory (segments, .partial, timeline history files) and the free and
// total space of its file system. Computed with asynchronous fs calls (libuv's thread
// pool), never on the main thread's event loop, and cached: a scrape gets the last
// figure at once and starts a refresh when it is older than maxAgeMs.

import fsp from 'node:fs/promises';
import path from 'node:path';

export type StoreStats = {
  /** Bytes of WAL files in the store directory. */
  retainedBytes: number;
  segments: number;
  /** File system of the store: bytes available to us, and its size. */
  fsAvailBytes: number;
  fsSizeBytes: number;
  /** Date.now() when computed. */
  at: number;
};

const WAL_FILE = /^(?:[0-9A-F]{24}(?:\.partial)?|[0-9A-F]{8}\.history)$/;
const SEGMENT = /^[0-9A-F]{24}(?:\.partial)?$/;

export async function measureStore(dir: string): Promise<StoreStats> {
  const names = (await fsp.readdir(dir)).filter((n) => WAL_FILE.test(n));
  let retainedBytes = 0;
  let segments = 0;
  // Bounded parallelism: thousands of stats at once would flood the thread pool.
  for (let i = 0; i < names.length; i += 64) {
    const batch = names.slice(i, i + 64);
    const sizes = await Promise.all(batch.map((n) => fsp.stat(path.join(dir, n)).then((s) => s.size, () => 0)));
    for (let j = 0; j < batch.length; j++) {
      retainedBytes += sizes[j]!;
      if (SEGMENT.test(batch[j]!)) segments++;
    }
  }
  const fs = await fsp.statfs(dir);
  return {
    retainedBytes, segments, fsAvailBytes: fs.bavail * fs.bsize, fsSizeBytes: fs.blocks * fs.bsize, at: Date.now(),
  };
}

/** Cached StoreStats for one directory. */
export class StoreStatsCache {
  private readonly dir: string;
  private readonly maxAgeMs: number;
  private last: StoreStats | null = null;
  private pending: Promise<StoreStats | null> | null = null;

  constructor(dir: string, maxAgeMs = 5000) {
    this.dir = dir;
    this.maxAgeMs = maxAgeMs;
  }

  /** The latest figure; waits only for the very first measurement. Null if the directory cannot be read. */
  async get(): Promise<StoreStats | null> {
    if (this.last === null) return this.refresh();
    if (Date.now() - this.last.at > this.maxAgeMs) void this.refresh();
    return this.last;
  }

  refresh(): Promise<StoreStats | null> {
    this.pending ??= measureStore(this.dir).then(
      (s) => { this.last = s; return s; },
      () => this.last, // the directory may not exist yet (demo source before its first write)
    ).finally(() => { this.pending = null; });
    return this.pending;
  }
}
