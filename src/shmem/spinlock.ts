// Atomics-based spinlocks over Int32 words of the shared memory (s_lock.h's role).
// Holders keep them only around a handful of loads and stores. Worker threads may
// spin until they get the lock; the main thread only ever tries a bounded number of
// times (it must never block its event loop) and never calls Atomics.wait.

const UNLOCKED = 0;
const LOCKED = 1;

// Atomics.pause exists on Node >= 24 (a CPU spin hint); tolerate its absence.
export const pause: (n?: number) => void =
  typeof (Atomics as unknown as { pause?: unknown }).pause === 'function'
    ? (Atomics as unknown as { pause: (n?: number) => void }).pause
    : () => {};

/** Spin until the lock is ours. Worker threads only. */
export function spinLock(i32: Int32Array, index: number): void {
  let spins = 0;
  while (Atomics.compareExchange(i32, index, UNLOCKED, LOCKED) !== UNLOCKED) {
    spins++;
    pause(spins < 64 ? spins : 64);
  }
}

/** Try at most `maxSpins` times; true when the lock was taken. Safe on the main thread. */
export function trySpinLock(i32: Int32Array, index: number, maxSpins = 1000): boolean {
  for (let spins = 0; spins < maxSpins; spins++) {
    if (Atomics.compareExchange(i32, index, UNLOCKED, LOCKED) === UNLOCKED) return true;
    pause(8);
  }
  return false;
}

export function spinUnlock(i32: Int32Array, index: number): void {
  Atomics.store(i32, index, UNLOCKED);
}
