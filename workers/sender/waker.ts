// Wake-up plumbing for sender loops: a one-shot Waker per connection, and one
// Atomics.waitAsync per worker thread on the control block's generation counter
// that fans a publication out to every sender waiting on that thread.

import { C32, type SharedViews } from '../../src/shmem/layout.ts';

/** A level-triggered wake flag: wake() before wait() is not lost. */
export class Waker {
  private resolve: (() => void) | null = null;
  private pending = false;

  wake(): void {
    const r = this.resolve;
    if (r) {
      this.resolve = null;
      r();
    } else {
      this.pending = true;
    }
  }

  wait(): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => { this.resolve = resolve; });
  }
}

/**
 * One waiter per thread on the generation counter. A sender registers with the
 * generation it last observed, so a publication between its check and its
 * registration is never missed.
 */
export class GenerationWatch {
  private readonly views: SharedViews;
  private readonly subscribers = new Set<() => void>();
  private armed = false;

  constructor(views: SharedViews) {
    this.views = views;
  }

  current(): number {
    return Atomics.load(this.views.i32, C32.GENERATION);
  }

  /** Call `cb` once the generation differs from `seen`. Returns an unsubscribe function. */
  subscribe(seen: number, cb: () => void): () => void {
    if (this.current() !== seen) {
      queueMicrotask(cb);
      return () => {};
    }
    this.subscribers.add(cb);
    this.arm(seen);
    return () => { this.subscribers.delete(cb); };
  }

  private arm(seen: number): void {
    if (this.armed) return;
    const r = Atomics.waitAsync(this.views.i32, C32.GENERATION, seen);
    if (!r.async) {
      queueMicrotask(() => this.fire());
      return;
    }
    this.armed = true;
    void r.value.then(() => {
      this.armed = false;
      this.fire();
    });
  }

  private fire(): void {
    const list = [...this.subscribers];
    this.subscribers.clear();
    for (const cb of list) cb();
  }
}
