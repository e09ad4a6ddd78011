// The replication slots in the admin API (/api/v1/slots: list, create, drop, like
// pg_replication_slots and pg_create/drop_physical_replication_slot) and in the
// metrics (restart_lsn, retained bytes, wal_status, active). Reads the slot array in
// shared memory with bounded spinning only; the files are written asynchronously so
// the main thread never waits on fsync.

import type { FastifyInstance, FastifyReply, RouteShorthandOptions } from 'fastify';
import { Gauge, type Registry } from 'prom-client';
import { PgError } from '../protocol/errors.ts';
import { formatLsn } from '../protocol/lsn.ts';
import { peekFlush, storeIdentity } from '../shmem/control.ts';
import { WAL_STATUS_NAMES, type SharedViews } from '../shmem/layout.ts';
import { removeSlotAsync, saveSlotAsync } from '../slots/persist.ts';
import {
  acquireSlot, adminHolderId, createSlot, ensureWalReserved, freeSlot, listSlots, readSlot, releaseSlot, SlotLockBusy, type ReplicationSlot,
} from '../slots/slots.ts';

/** Run a bounded slot-lock change now, or again shortly while the lock stays busy (never spin long here). */
function settle(change: () => void): void {
  try {
    change();
  } catch (e) {
    if (!(e instanceof SlotLockBusy)) throw e;
    setTimeout(() => settle(change), 10);
  }
}

/**
 * A bounded slot-lock operation, tried again a few times over about 100 ms while the lock
 * stays busy (its holder's thread was descheduled, say), before the caller gets 503.
 * A failed bounded attempt changes nothing, so retrying is safe.
 */
async function retryBusy<T>(op: () => T): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return op();
    } catch (e) {
      if (!(e instanceof SlotLockBusy) || attempt >= 20) throw e;
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const slotSchema = {
  type: 'object',
  required: ['slot_name', 'slot_type', 'temporary', 'active', 'active_pid', 'restart_lsn', 'wal_status', 'retained_bytes'],
  properties: {
    slot_name: { type: 'string' },
    slot_type: { type: 'string', enum: ['physical'] },
    temporary: { type: 'boolean' },
    active: { type: 'boolean' },
    active_pid: { type: ['integer', 'null'], description: 'connection id of the sender using it' },
    restart_lsn: { type: ['string', 'null'] },
    wal_status: { type: 'string', enum: [...WAL_STATUS_NAMES] },
    retained_bytes: { type: ['integer', 'null'], description: 'WAL it holds back: flush position minus restart_lsn' },
  },
} as const;
const errorRef = { type: 'object', properties: { statusCode: { type: 'integer' }, error: { type: 'string' }, message: { type: 'string' } } } as const;

const listSchema = { summary: 'Every replication slot (pg_replication_slots)', response: { 200: { type: 'array', items: slotSchema } } };
const createSchema = {
  summary: 'Create a persistent physical replication slot (pg_create_physical_replication_slot)',
  body: {
    type: 'object', required: ['name'], additionalProperties: false,
    properties: { name: { type: 'string' }, reserve_wal: { type: 'boolean', default: false } },
  },
  response: { 201: slotSchema, 400: errorRef, 401: errorRef, 403: errorRef, 409: errorRef, 503: errorRef },
};
const dropSchema = {
  summary: 'Drop a replication slot that no standby is using (pg_drop_replication_slot)',
  params: { type: 'object', properties: { name: { type: 'string' } } },
  response: {
    200: { type: 'object', properties: { slot_name: { type: 'string' }, dropped: { type: 'boolean' } } },
    401: errorRef, 403: errorRef, 404: errorRef, 409: errorRef, 503: errorRef,
  },
};

function row(s: ReplicationSlot, flushLsn: bigint) {
  return {
    slot_name: s.name,
    slot_type: 'physical',
    temporary: s.temporary,
    active: s.activePid !== 0,
    active_pid: s.activePid === 0 ? null : s.activePid,
    restart_lsn: s.restartLsn === 0n ? null : formatLsn(s.restartLsn),
    wal_status: WAL_STATUS_NAMES[s.walStatus] ?? 'reserved',
    retained_bytes: s.restartLsn === 0n ? null : Math.max(0, Number(flushLsn - s.restartLsn)),
  };
}

/** PostgreSQL's SQLSTATEs as HTTP statuses. */
function httpStatus(e: PgError): number {
  if (e.code === '42704') return 404;
  if (e.code === '42710' || e.code === '55006') return 409;
  if (e.code === '53400' || e.code === '55000') return 503;
  return 400;
}

export function registerSlotRoutes(app: FastifyInstance, views: SharedViews, dataDir: string, mutating: RouteShorthandOptions,
  fail: (reply: FastifyReply, code: number, error: string, message: string) => FastifyReply): void {
  const pgFail = (reply: FastifyReply, e: unknown): FastifyReply => {
    if (!(e instanceof PgError)) throw e;
    const code = httpStatus(e);
    return fail(reply, code, code === 404 ? 'Not Found' : code === 409 ? 'Conflict' : code === 503 ? 'Service Unavailable' : 'Bad Request', e.message);
  };

  app.get('/api/v1/slots', { schema: listSchema }, async () => {
    const { flushLsn } = peekFlush(views);
    return listSlots(views).map((s) => row(s, flushLsn));
  });

  app.post<{ Body: { name: string; reserve_wal?: boolean } }>('/api/v1/slots', {
    ...mutating, schema: createSchema,
  }, async (req, reply) => {
    let flush = peekFlush(views);
    const reserve = req.body.reserve_wal === true;
    const holder = adminHolderId();
    let i: number;
    try {
      i = await retryBusy(() => createSlot(views, { name: req.body.name, temporary: false, activePid: holder,
        restartLsn: reserve ? flush.flushLsn : 0n, restartTli: reserve ? flush.timeline : 0 }, true));
    } catch (e) {
      return pgFail(reply, e);
    }
    const id = storeIdentity(views); // null before the store holds WAL: nothing to remove yet
    if (reserve && id) {
      try {
        const reserved = flush;
        flush = await retryBusy(() => ensureWalReserved(views, i, reserved, () => peekFlush(views), id.segSize, true));
      } catch (e) {
        settle(() => freeSlot(views, i, holder, true));
        return pgFail(reply, e);
      }
    }
    const created = readSlot(views, i)!;
    try {
      await saveSlotAsync(dataDir, created);
    } catch (e) {
      await removeSlotAsync(dataDir, created.name).catch(() => {});
      settle(() => freeSlot(views, i, holder, true));
      throw e;
    }
    settle(() => releaseSlot(views, i, holder, true));
    req.log.info({ slot: req.body.name, reserveWal: reserve, remote: req.ip }, 'replication slot created through the admin API');
    return reply.code(201).send(row({ ...created, activePid: 0 }, flush.flushLsn));
  });

  app.delete<{ Params: { name: string } }>('/api/v1/slots/:name', {
    ...mutating, schema: dropSchema,
  }, async (req, reply) => {
    const holder = adminHolderId();
    let i: number;
    try {
      i = await retryBusy(() => acquireSlot(views, req.params.name, holder, true));
    } catch (e) {
      return pgFail(reply, e);
    }
    const s = readSlot(views, i)!;
    try {
      if (!s.temporary) await removeSlotAsync(dataDir, s.name);
    } catch (e) {
      settle(() => releaseSlot(views, i, holder, true));
      throw e;
    }
    settle(() => freeSlot(views, i, holder, true));
    req.log.info({ slot: s.name, remote: req.ip }, 'replication slot dropped through the admin API');
    return { slot_name: s.name, dropped: true };
  });
}

/** Per-slot gauges, read from shared memory at scrape time; a dropped slot's series go. */
export function registerSlotMetrics(registry: Registry, views: SharedViews, prefix: string): void {
  type Row = { s: ReplicationSlot; labels: { slot_name: string; wal_status: string; temporary: string } };
  const rows = (): { list: Row[]; flushLsn: bigint } => ({
    flushLsn: peekFlush(views).flushLsn,
    list: listSlots(views).map((s) => ({ s, labels: { slot_name: s.name, wal_status: WAL_STATUS_NAMES[s.walStatus] ?? 'reserved', temporary: String(s.temporary) } })),
  });
  const family = (name: string, help: string, value: (s: ReplicationSlot, flushLsn: bigint) => number | null): void => {
    new Gauge({
      name: prefix + name, help, labelNames: ['slot_name', 'wal_status', 'temporary'], registers: [registry],
      collect() {
        this.reset();
        const { list, flushLsn } = rows();
        for (const r of list) {
          const v = value(r.s, flushLsn);
          if (v !== null) this.set(r.labels, v);
        }
      },
    });
  };
  family('replication_slot_active', '1 while a standby streams with the replication slot.', (s) => (s.activePid !== 0 ? 1 : 0));
  family('replication_slot_restart_lsn_bytes', 'The slot\'s restart_lsn in bytes since 0/0 (no series while NULL).',
    (s) => (s.restartLsn === 0n ? null : Number(s.restartLsn)));
  family('replication_slot_retained_bytes', 'WAL the slot holds back: flush position minus restart_lsn.',
    (s, flush) => (s.restartLsn === 0n ? null : Math.max(0, Number(flush - s.restartLsn))));
  new Gauge({
    name: `${prefix}max_replication_slots`, help: 'The max_replication_slots setting.', registers: [registry],
    collect() { this.set(views.maxReplicationSlots); },
  });
}
