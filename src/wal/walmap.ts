// Segment mappings for the send path: the optional native module (native/walmap.c,
// built into build/walmap.node) maps segment files read-only into slots of one
// reserved region per thread, so senders hand page-cache pages to the socket without
// copying them into a user buffer first. Without it (not built, or wal_read = read)
// every read goes through preadv into a send buffer.
//
// Bytes of a mapping must only ever be read by the kernel (socket writes): a file
// truncated underneath would make a user-space read SIGBUS, a kernel copy only EFAULT.
// A slot is reused only when nothing holds it: the reader positioned on the segment
// and every batch (cached or being written) built from it each hold one reference.

import fs from 'node:fs';
import { createRequire } from 'node:module';

type WalMapModule = {
  reserve(length: number): Buffer;
  mapAt(region: Buffer, offset: number, length: number, fd: number): void;
  unmapAt(region: Buffer, offset: number, length: number): void;
};

export const WALMAP_PATH = new URL('../../build/walmap.node', import.meta.url).pathname;

type Loaded = { module: WalMapModule | null; why: string };

function load(wanted: 'mmap' | 'read'): Loaded {
  if (wanted === 'read') return { module: null, why: 'wal_read = read' };
  try {
    return { module: createRequire(import.meta.url)(WALMAP_PATH) as WalMapModule, why: '' };
  } catch (e) {
    return { module: null, why: `native module not loaded (${(e as Error).message.split('\n')[0]}); npm run build:native builds it` };
  }
}

let wantedMethod: 'mmap' | 'read' = 'mmap';
let loadedState: Loaded | null = null;
const loaded = (): Loaded => (loadedState ??= load(wantedMethod));

/** The wal_read setting for this thread (senders get it from their worker data); before any mapping. */
export function setWalRead(method: 'mmap' | 'read'): void {
  if (method === wantedMethod) return;
  if (perSegSize.size > 0) throw new Error('wal_read changed after segments were mapped');
  wantedMethod = method;
  loadedState = null;
}

/** How WAL reaches the socket in this thread: 'mmap', or 'read' and why. */
export function walReadMethod(): { method: 'mmap' | 'read'; why: string } {
  const l = loaded();
  return l.module ? { method: 'mmap', why: '' } : { method: 'read', why: l.why };
}

/** One mapped segment file: `bytes` is its slot of the region; only the kernel may read it. */
export type SegmentMapping = { readonly bytes: Buffer; key: string; slot: number; refs: number; lastUsed: number; lastUsedAt: number };

// Address space only (MAP_NORESERVE, PROT_NONE until mapped): pages cost memory only
// while the kernel copies from them, and they are page cache either way.
const REGION_BYTES = 4 * 1024 ** 3;
const MIN_SLOTS = 8;
// An unheld mapping is dropped after this long, so a segment that retention deleted
// does not keep its disk space through our mapping.
const IDLE_UNMAP_MS = 2000;

/** The mapped segments of one thread, at most `slots` at a time, reused least recently used first. */
export class SegmentMappings {
  readonly segSize: number;
  private readonly mod: WalMapModule;
  private readonly region: Buffer;
  private readonly bySlot: (SegmentMapping | null)[];
  private readonly byKey = new Map<string, SegmentMapping>();
  private clock = 0;
  /** Segments that could not be mapped (then copied), and the last error. */
  mapFailures = 0;
  lastMapError = '';

  /**
   * Reserves `slots` segments of address space; fewer, down to MIN_SLOTS, when the
   * process may not have that much (ulimit -v). Throws when not even that is possible.
   */
  constructor(mod: WalMapModule, segSize: number, slots = Math.max(MIN_SLOTS, Math.floor(REGION_BYTES / segSize))) {
    this.mod = mod;
    this.segSize = segSize;
    let region: Buffer | null = null;
    for (let n = slots; region === null; n = Math.floor(n / 2)) {
      try {
        region = mod.reserve(segSize * n);
        slots = n;
      } catch (e) {
        if (n <= Math.min(slots, MIN_SLOTS)) throw e;
      }
    }
    this.region = region;
    this.bySlot = new Array<SegmentMapping | null>(slots).fill(null);
  }

  /**
   * A reference to the mapping of the file open as `fd` (the same inode maps once, also
   * after a .partial was renamed), or null when every slot is held: then copy instead.
   */
  acquire(fd: number): SegmentMapping | null {
    const st = fs.fstatSync(fd, { bigint: true });
    const key = `${st.dev}:${st.ino}`;
    let m = this.byKey.get(key);
    if (!m) {
      let victim = -1;
      for (let i = 0; i < this.bySlot.length; i++) {
        const o = this.bySlot[i];
        if (!o) { victim = i; break; }
        if (o.refs === 0 && (victim < 0 || o.lastUsed < this.bySlot[victim]!.lastUsed)) victim = i;
      }
      if (victim < 0) return null;
      const offset = victim * this.segSize;
      try {
        this.mod.mapAt(this.region, offset, this.segSize, fd); // replaces the old file's pages in place
      } catch (e) {
        // A file system without mmap, say: the slot is as it was; this segment is copied.
        this.mapFailures++;
        this.lastMapError = (e as Error).message;
        return null;
      }
      const old = this.bySlot[victim];
      if (old) this.byKey.delete(old.key);
      m = { bytes: this.region.subarray(offset, offset + this.segSize), key, slot: victim, refs: 0, lastUsed: 0, lastUsedAt: 0 };
      this.bySlot[victim] = m;
      this.byKey.set(key, m);
    }
    m.refs++;
    m.lastUsed = ++this.clock;
    m.lastUsedAt = Date.now();
    return m;
  }

  /** Another reference to a mapping already held. */
  retain(m: SegmentMapping): void {
    if (m.refs <= 0) throw new Error('segment mapping retained while not held');
    m.refs++;
  }

  release(m: SegmentMapping): void {
    if (m.refs <= 0) throw new Error('segment mapping released more often than acquired');
    m.refs--;
    m.lastUsedAt = Date.now();
  }

  /** Mapped slots and how many are held (tests, diagnostics). */
  stats(): { mapped: number; held: number; slots: number } {
    let mapped = 0;
    let held = 0;
    for (const m of this.bySlot) {
      if (!m) continue;
      mapped++;
      if (m.refs > 0) held++;
    }
    return { mapped, held, slots: this.bySlot.length };
  }

  /** Drop the unheld mappings not used for `idleMs` (all unheld ones with 0). */
  trim(idleMs = 0, now = Date.now()): void {
    for (let i = 0; i < this.bySlot.length; i++) {
      const m = this.bySlot[i];
      if (!m || m.refs > 0 || now - m.lastUsedAt < idleMs) continue;
      this.mod.unmapAt(this.region, i * this.segSize, this.segSize);
      this.byKey.delete(m.key);
      this.bySlot[i] = null;
    }
  }
}

/**
 * Slots for segments of `segSize` bytes: REGION_BYTES' worth, but at most an eighth of
 * the process's address-space limit (ulimit -v, read from /proc/self/limits), so the
 * reservation never starves V8 and the other threads; 0 when not even MIN_SLOTS fit.
 */
export function slotBudget(segSize: number, limitsText = readLimits()): number {
  const m = /^Max address space\s+(\d+|unlimited)/m.exec(limitsText);
  const limit = m && m[1] !== 'unlimited' ? Number(m[1]) : Infinity;
  const slots = Math.max(MIN_SLOTS, Math.floor(Math.min(REGION_BYTES, limit / 8) / segSize));
  return slots * segSize > limit / 8 ? 0 : slots;
}

function readLimits(): string {
  try {
    return fs.readFileSync('/proc/self/limits', 'utf8');
  } catch {
    return ''; // not Linux: no limit known
  }
}

const perSegSize = new Map<number, SegmentMappings>();

/** This thread's mappings for segments of `segSize` bytes, or null without the native module. */
export function segmentMappings(segSize: number): SegmentMappings | null {
  const mod = loaded().module;
  if (!mod) return null;
  let m = perSegSize.get(segSize);
  if (!m) {
    let mappings: SegmentMappings;
    try {
      const slots = slotBudget(segSize);
      if (slots === 0) throw new Error('the address-space limit (ulimit -v) leaves too little');
      mappings = new SegmentMappings(mod, segSize, slots);
    } catch (e) {
      // No address space for even a few segments: this thread copies instead.
      loadedState = { module: null, why: `no address space for segment mappings (${(e as Error).message})` };
      return null;
    }
    perSegSize.set(segSize, mappings);
    setInterval(() => mappings.trim(IDLE_UNMAP_MS), IDLE_UNMAP_MS / 2).unref();
    m = mappings;
  }
  return m;
}
