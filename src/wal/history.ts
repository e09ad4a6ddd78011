// Timeline history files (timeline.c): parsing with readTimeLineHistory's
// rules and messages, writing lines the way writeTimeLineHistory does, and the
// lookups tliSwitchPoint / tliOfPoint / tliInHistory.

import { formatLsn } from './segment.ts';

/**
 * One timeline of a history. `begin` is where the timeline starts (0n for the
 * first one), `end` is its switch point: where it ended and its child began.
 * The current (newest) timeline has end === null.
 */
export type TimelineHistoryEntry = { tli: number; begin: bigint; end: bigint | null };

/** A history file that readTimeLineHistory would reject (FATAL there); message is PG's errmsg. */
export class HistoryFileError extends Error {
  hint: string;
  constructor(message: string, hint: string) {
    super(message);
    this.name = 'HistoryFileError';
    this.hint = hint;
  }
}

const UINT32_MAX = 0xffffffff;

/** The history of a timeline that has no history file (timeline 1). */
export function initialHistory(tli: number = 1): TimelineHistoryEntry[] {
  return [{ tli, begin: 0n, end: null }];
}

/**
 * A subset of C sscanf("%u\t%X/%X"): how many fields were assigned.
 * Whitespace in the format matches any run of whitespace (including none);
 * %u and %X skip leading whitespace; %X accepts a 0x prefix.
 */
function scanHistoryLine(line: string): { n: number; tli: number; hi: number; lo: number } {
  const m1 = /^\s*\+?(\d+)/.exec(line);
  if (!m1) return { n: 0, tli: 0, hi: 0, lo: 0 };
  const tli = Number(m1[1]);
  let rest = line.slice(m1[0].length);
  const m2 = /^\s*(?:0[xX])?([0-9A-Fa-f]+)/.exec(rest);
  if (!m2 || tli > UINT32_MAX) return { n: 1, tli, hi: 0, lo: 0 };
  const hi = parseInt(m2[1]!, 16);
  rest = rest.slice(m2[0].length);
  const m3 = /^\/\s*(?:0[xX])?([0-9A-Fa-f]+)/.exec(rest);
  if (!m3 || hi > UINT32_MAX) return { n: 2, tli, hi, lo: 0 };
  const lo = parseInt(m3[1]!, 16);
  if (lo > UINT32_MAX) return { n: 2, tli, hi, lo: 0 };
  return { n: 3, tli, hi, lo };
}

/**
 * Parses the text of `<tli>.history` (readTimeLineHistory). The result is in
 * increasing TLI order (PostgreSQL keeps it newest first) and ends with the
 * entry for `tli` itself, which begins at the last switch point and has no end.
 * Throws HistoryFileError on the inputs PostgreSQL rejects.
 */
export function parseHistoryFile(text: string, tli: number): TimelineHistoryEntry[] {
  const result: TimelineHistoryEntry[] = [];
  let prevEnd = 0n;
  let lastTli = 0;
  for (const rawLine of text.split('\n')) {
    const line = rawLine.replace(/\r$/, '');
    const trimmed = line.trimStart();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const f = scanHistoryLine(line);
    if (f.n < 1) throw new HistoryFileError(`syntax error in history file: ${line}`, 'Expected a numeric timeline ID.');
    if (f.n !== 3) {
      throw new HistoryFileError(`syntax error in history file: ${line}`, 'Expected a write-ahead log switchpoint location.');
    }
    if (result.length > 0 && f.tli <= lastTli) {
      throw new HistoryFileError(`invalid data in history file: ${line}`, 'Timeline IDs must be in increasing sequence.');
    }
    lastTli = f.tli;
    const end = (BigInt(f.hi) << 32n) | BigInt(f.lo);
    result.push({ tli: f.tli, begin: prevEnd, end });
    prevEnd = end;
    // the remainder of each line (the reason) is ignored
  }
  if (result.length > 0 && tli <= lastTli) {
    throw new HistoryFileError(
      `invalid data in history file "${historyFileLabel(tli)}"`,
      "Timeline IDs must be less than child timeline's ID.",
    );
  }
  result.push({ tli, begin: prevEnd, end: null });
  return result;
}

function historyFileLabel(tli: number): string {
  return `pg_wal/${tli.toString(16).toUpperCase().padStart(8, '0')}.history`;
}

/** One history line as writeTimeLineHistory writes it: "%u\t%X/%X\t%s\n". */
export function formatHistoryLine(parentTli: number, switchPoint: bigint, reason: string): string {
  return `${parentTli}\t${formatLsn(switchPoint)}\t${reason}\n`;
}

/**
 * The whole new history file for a child of parentTli, as writeTimeLineHistory
 * builds it: the parent's history file copied verbatim (null when the parent
 * has none, i.e. timeline 1), then "\n" if there was a parent file, then the line.
 */
export function buildChildHistoryFile(
  parentText: string | null,
  parentTli: number,
  switchPoint: bigint,
  reason: string,
): string {
  return parentText === null
    ? formatHistoryLine(parentTli, switchPoint, reason)
    : `${parentText}\n${formatHistoryLine(parentTli, switchPoint, reason)}`;
}

/**
 * tliSwitchPoint: where `tli` ended and which timeline followed it. Null when
 * `tli` is the newest timeline of the history. Throws if `tli` is not in it.
 */
export function tliSwitchPoint(
  history: readonly TimelineHistoryEntry[],
  tli: number,
): { switchPoint: bigint; nextTli: number } | null {
  const i = history.findIndex((e) => e.tli === tli);
  if (i < 0) throw new Error(`requested timeline ${tli} is not in this server's history`);
  const e = history[i]!;
  if (e.end === null) return null;
  const next = history[i + 1];
  return { switchPoint: e.end, nextTli: next ? next.tli : 0 };
}

/** tliOfPoint: the timeline that was current at lsn. */
export function tliOfPoint(history: readonly TimelineHistoryEntry[], lsn: bigint): number {
  for (const e of history) {
    if ((e.begin === 0n || e.begin <= lsn) && (e.end === null || lsn < e.end)) return e.tli;
  }
  throw new Error('timeline history was not contiguous');
}

/** tliInHistory */
export function timelineIsInHistory(history: readonly TimelineHistoryEntry[], tli: number): boolean {
  return history.some((e) => e.tli === tli);
}

/** The newest timeline of a history (the last entry). */
export function newestTimeline(history: readonly TimelineHistoryEntry[]): number {
  const last = history[history.length - 1];
  if (!last) throw new Error('empty timeline history');
  return last.tli;
}
