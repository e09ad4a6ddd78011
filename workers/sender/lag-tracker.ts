// walsender.c's LagTracker: samples of (flush position, time seen) taken as WAL is
// sent, consumed by the standby's write/flush/apply reports to compute
// write_lag/flush_lag/replay_lag, with PostgreSQL's interpolation rules. The ring is
// smaller than PostgreSQL's 8192 and allocated on first use, so an idle standby costs
// nothing; when it is full the newest sample is overwritten, as PostgreSQL does.

const RING = 1024;
export const LagHead = { WRITE: 0, FLUSH: 1, APPLY: 2 } as const;

export class LagTracker {
  private lsn: BigInt64Array | null = null;
  private time: BigInt64Array | null = null;
  private lastLsn = 0n;
  private writeHead = 0;
  private readonly readHeads = [0, 0, 0];
  private readonly lastReadLsn = [0n, 0n, 0n];
  private readonly lastReadTime = [0n, 0n, 0n];

  /** LagTrackerWrite: note that WAL up to `lsn` was handed out at `now` (µs). */
  write(lsn: bigint, now: bigint): void {
    if (lsn <= this.lastLsn) return;
    this.lastLsn = lsn;
    if (!this.lsn || !this.time) {
      this.lsn = new BigInt64Array(RING);
      this.time = new BigInt64Array(RING);
    }
    const next = (this.writeHead + 1) % RING;
    if (this.readHeads.includes(next)) {
      const cursor = this.writeHead > 0 ? this.writeHead - 1 : RING - 1;
      this.lsn[cursor] = lsn;
      this.time[cursor] = now;
    } else {
      this.lsn[this.writeHead] = lsn;
      this.time[this.writeHead] = now;
      this.writeHead = next;
    }
  }

  /** LagTrackerRead: the lag in µs for `head` having reached `lsn`, or -1 when unknown. */
  read(head: number, lsn: bigint, now: bigint): bigint {
    const L = this.lsn;
    const T = this.time;
    if (!L || !T) return -1n;
    let time = 0n;
    while (this.readHeads[head] !== this.writeHead && L[this.readHeads[head]!]! <= lsn) {
      const h = this.readHeads[head]!;
      time = T[h]!;
      this.lastReadLsn[head] = L[h]!;
      this.lastReadTime[head] = T[h]!;
      this.readHeads[head] = (h + 1) % RING;
    }
    if (this.readHeads[head] === this.writeHead) this.lastReadTime[head] = 0n;
    if (time > now) return -1n;
    if (time === 0n) {
      if (this.readHeads[head] === this.writeHead) return -1n; // nothing to interpolate towards
      const h = this.readHeads[head]!;
      if (this.lastReadTime[head] !== 0n) {
        const prevLsn = this.lastReadLsn[head]!;
        const prevTime = this.lastReadTime[head]!;
        const nextLsn = L[h]!;
        const nextTime = T[h]!;
        if (lsn < prevLsn || prevTime > nextTime || nextLsn <= prevLsn) return -1n;
        const fraction = Number(lsn - prevLsn) / Number(nextLsn - prevLsn);
        time = prevTime + BigInt(Math.round(Number(nextTime - prevTime) * fraction));
      } else {
        time = T[h]!; // only a future sample: the hypothetical lag if it were reached now
      }
    }
    return now - time;
  }
}
