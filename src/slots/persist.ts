// Crash-safe persistence of persistent replication slots in the data directory,
// pg_replslot/<name>/state as PostgreSQL lays them out (our own JSON content):
// write a temporary file, fsync it, rename it over the state file, fsync the
// directory. A slot's state is written by whoever holds it (the creating or streaming
// connection, the admin API, or the retention pass, which acquires a released slot to
// mark it lost), so writers never race on one slot.

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { threadId } from 'node:worker_threads';
import { formatLsn, parseLsn } from '../protocol/lsn.ts';
import { WAL_STATUS_NAMES, WalStatus } from '../shmem/layout.ts';
import type { NewSlot, ReplicationSlot } from './slots.ts';

export const SLOT_DIR = 'pg_replslot';

type SlotFile = { name: string; restart_lsn: string | null; restart_tli: number; wal_status: string; invalidated_at: string | null };

function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
}

function stateText(s: ReplicationSlot): string {
  const body: SlotFile = {
    name: s.name,
    restart_lsn: s.restartLsn === 0n ? null : formatLsn(s.restartLsn),
    restart_tli: s.restartTli,
    wal_status: WAL_STATUS_NAMES[s.walStatus] ?? 'reserved',
    invalidated_at: s.invalidatedAt === 0n ? null : formatLsn(s.invalidatedAt),
  };
  return JSON.stringify(body) + '\n';
}

/** Write one slot's state durably (sender and ingest threads). */
export function saveSlot(dataDir: string, s: ReplicationSlot): void {
  const base = path.join(dataDir, SLOT_DIR);
  const dir = path.join(base, s.name);
  if (!fs.existsSync(dir)) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fsyncDir(base);
  }
  const tmp = path.join(dir, `state.tmp.${process.pid}.${threadId}`);
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, stateText(s));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, path.join(dir, 'state'));
  fsyncDir(dir);
}

async function fsyncDirAsync(dir: string): Promise<void> {
  const h = await fsp.open(dir, 'r');
  try { await h.sync(); } finally { await h.close(); }
}

/** saveSlot for the main thread, which must not block on fsync. */
export async function saveSlotAsync(dataDir: string, s: ReplicationSlot): Promise<void> {
  const base = path.join(dataDir, SLOT_DIR);
  const dir = path.join(base, s.name);
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  await fsyncDirAsync(base);
  const tmp = path.join(dir, `state.tmp.${process.pid}.${threadId}`);
  const h = await fsp.open(tmp, 'w', 0o600);
  try {
    await h.writeFile(stateText(s));
    await h.sync();
  } finally {
    await h.close();
  }
  await fsp.rename(tmp, path.join(dir, 'state'));
  await fsyncDirAsync(dir);
}

/** removeSlot for the main thread. */
export async function removeSlotAsync(dataDir: string, name: string): Promise<void> {
  const base = path.join(dataDir, SLOT_DIR);
  const doomed = path.join(base, `${name}.tmp`);
  await fsp.rm(doomed, { recursive: true, force: true });
  try {
    await fsp.rename(path.join(base, name), doomed);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  await fsyncDirAsync(base);
  await fsp.rm(doomed, { recursive: true, force: true });
}

/** Remove a dropped slot's directory durably. */
export function removeSlot(dataDir: string, name: string): void {
  const base = path.join(dataDir, SLOT_DIR);
  const dir = path.join(base, name);
  if (!fs.existsSync(dir)) return;
  // Rename first, so a crash mid-removal never leaves a half-deleted slot that loads.
  const doomed = path.join(base, `${name}.tmp`);
  fs.rmSync(doomed, { recursive: true, force: true });
  fs.renameSync(dir, doomed);
  fsyncDir(base);
  fs.rmSync(doomed, { recursive: true, force: true });
}

/**
 * The restart_lsn in a slot's state file (what a restart would load): 0n for NULL,
 * null when there is no readable file (not saved yet). Retention thread.
 */
export function savedRestartLsn(dataDir: string, name: string): bigint | null {
  try {
    const body = JSON.parse(fs.readFileSync(path.join(dataDir, SLOT_DIR, name, 'state'), 'utf8')) as SlotFile;
    return body.restart_lsn === null ? 0n : parseLsn(body.restart_lsn);
  } catch {
    return null;
  }
}

/** Persistent slots found in the data directory (startup, main thread). */
export function loadSlots(dataDir: string): NewSlot[] {
  const base = path.join(dataDir, SLOT_DIR);
  if (!fs.existsSync(base)) return [];
  const out: NewSlot[] = [];
  for (const name of fs.readdirSync(base).sort()) {
    if (name.endsWith('.tmp')) {
      fs.rmSync(path.join(base, name), { recursive: true, force: true }); // an interrupted drop
      continue;
    }
    const dir = path.join(base, name);
    // A save cut short leaves its temporary file; the state file it was replacing stands.
    for (const f of fs.readdirSync(dir)) if (f.startsWith('state.tmp.')) fs.rmSync(path.join(dir, f), { force: true });
    const file = path.join(dir, 'state');
    if (!fs.existsSync(file)) {
      // The first save of a new slot never reached its rename: the creating command had
      // not answered yet, so the slot does not exist (PostgreSQL creates it in a .tmp directory).
      fs.rmSync(dir, { recursive: true, force: true });
      continue;
    }
    const bad = (why: string): Error => new Error(`could not read replication slot file "${file}": ${why}`);
    let body: SlotFile;
    try {
      body = JSON.parse(fs.readFileSync(file, 'utf8')) as SlotFile;
    } catch (e) {
      throw bad((e as Error).message);
    }
    // A damaged position stops the start (PostgreSQL PANICs on a bad slot file) rather
    // than loading as NULL, which would let retention remove the WAL the slot holds.
    const lsnField = (key: 'restart_lsn' | 'invalidated_at'): bigint => {
      const text = body[key];
      if (text === null || text === undefined) return 0n;
      const lsn = typeof text === 'string' ? parseLsn(text) : null;
      if (lsn === null) throw bad(`invalid ${key} ${JSON.stringify(text)}`);
      return lsn;
    };
    const status = WAL_STATUS_NAMES.indexOf(body.wal_status as (typeof WAL_STATUS_NAMES)[number]);
    out.push({
      name: body.name,
      temporary: false,
      activePid: 0,
      restartLsn: lsnField('restart_lsn'),
      restartTli: body.restart_tli,
      walStatus: status < 0 ? WalStatus.RESERVED : status,
      invalidatedAt: lsnField('invalidated_at'),
    });
  }
  return out;
}
