// Owns the admin HTTP API (fastify on the main thread): health and readiness, the
// Prometheus scrape, the senders (pg_stat_replication), terminating one sender,
// status, reload and shutdown, and /openapi.json. Everything it shows comes from the
// shared memory (WalSnd slots, control block), read with bounded spinning only, so
// the main thread never waits on a sender. Mutating routes need the bearer token;
// with no token configured they answer 403 and do nothing.

import { createHash, timingSafeEqual } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from '../log.ts';
import { formatLsn, pgNow } from '../protocol/lsn.ts';
import { peekFlush, shutdownMode, sourceState, startTime, storeIdentity, storeIsReady } from '../shmem/control.ts';
import { ShutdownMode, SourceState, type SharedViews } from '../shmem/layout.ts';
import { oldestSentPosition, requestTerminate, snapshotWalSnds } from '../shmem/walsnd.ts';
import { createMetrics, METRIC_PREFIX, SOURCE_STATE_NAMES } from './metrics.ts';
import { registerSlotMetrics, registerSlotRoutes } from './slots.ts';
import { OpenApiCollector } from './openapi.ts';
import { routeSchemas as S } from './schemas.ts';
import { pgTimeToIso, pgTimeToUnixSeconds, senderRow } from './senders.ts';
import { StoreStatsCache } from './store-stats.ts';

export type ShutdownRequestMode = 'drain' | 'fast';

/** What a reload applied: the reloadable settings now in effect, and changes needing a restart. */
export type ReloadOutcome = { applied: Record<string, string | number>; restartRequired: string[] };

export type AdminDeps = {
  views: SharedViews;
  source: 'demo' | 'archive' | 'upstream';
  storeDir: string;
  /** pg-walsender's own state (replication slots); defaults to storeDir. */
  dataDir?: string;
  version: string;
  /** null: mutating routes are disabled. */
  adminToken: string | null;
  log: Logger;
  /** True while the replication listener accepts connections. */
  listening(): boolean;
  /** Re-read the settings (as SIGHUP); throws with a one-line message when they are invalid. */
  reload(): ReloadOutcome;
  /** Start shutting down; the process exits when done. */
  shutdown(mode: ShutdownRequestMode): void;
};

/** Why the server is not ready, or null when it is. */
export function notReadyReason(deps: Pick<AdminDeps, 'views' | 'listening'>): string | null {
  if (shutdownMode(deps.views) !== ShutdownMode.NONE) return 'shutting down';
  if (!deps.listening()) return 'the replication listener is not accepting connections';
  const state = sourceState(deps.views);
  if (state === SourceState.DISK_FULL) return 'WAL ingest is paused: the store\'s file system is full (stored WAL is still served)';
  if (state !== SourceState.RUNNING && state !== SourceState.WAITING) {
    return `the WAL source is ${SOURCE_STATE_NAMES[state] ?? 'in an unknown state'}`;
  }
  if (!storeIsReady(deps.views)) return 'the store has no WAL yet';
  return null;
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/** Build the app (routes registered, not listening); tests use app.inject(). */
export function buildAdminApp(deps: AdminDeps): FastifyInstance {
  // Scrapes and health checks every few seconds would drown the log: requests are not
  // logged one by one; mutating routes log what they did.
  const app = Fastify({
    // pino's Logger and fastify's logger type differ only in generics.
    loggerInstance: deps.log.child({ component: 'admin' }) as unknown as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
  });
  const openapi = new OpenApiCollector();
  openapi.attach(app);
  const store = new StoreStatsCache(deps.storeDir);
  const ready = (): boolean => notReadyReason(deps) === null;
  const metrics = createMetrics({ views: deps.views, source: deps.source, version: deps.version, storeStats: () => store.get(), ready });
  registerSlotMetrics(metrics.registry, deps.views, METRIC_PREFIX);
  const tokenDigest = deps.adminToken === null ? null : digest(deps.adminToken);

  const fail = (reply: FastifyReply, statusCode: number, error: string, message: string): FastifyReply =>
    reply.code(statusCode).send({ statusCode, error, message });

  /** onRequest hook of mutating routes: runs before the body is even parsed. */
  const requireToken = async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    if (tokenDigest === null) {
      return fail(reply, 403, 'Forbidden', 'mutating admin routes are disabled: no admin token is configured (set admin_token or admin_token_file)');
    }
    const m = /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? '');
    // Compare digests: constant time, and equal lengths whatever the client sent.
    if (m === null || !timingSafeEqual(digest(m[1]!), tokenDigest)) {
      req.log.warn({ route: req.routeOptions.url, remote: req.ip }, 'admin request with a missing or wrong bearer token');
      reply.header('www-authenticate', 'Bearer realm="pg-walsender"');
      return fail(reply, 401, 'Unauthorized', m === null ? 'a bearer token is required' : 'invalid bearer token');
    }
    return undefined;
  };
  const mutating = { config: { mutating: true }, onRequest: requireToken };

  app.setErrorHandler((err: { statusCode?: number; message: string }, req, reply) => {
    const code = err.statusCode !== undefined && err.statusCode >= 400 ? err.statusCode : 500;
    if (code >= 500) req.log.error({ err }, 'admin request failed');
    return fail(reply, code, STATUS_CODES[code] ?? 'Error', err.message);
  });
  app.setNotFoundHandler((req, reply) => fail(reply, 404, 'Not Found', `no route ${req.method} ${req.url}`));

  app.get('/healthz', { schema: S.healthz }, async () => ({ status: 'ok' }));

  app.get('/readyz', { schema: S.readyz }, async (_req, reply) => {
    const reason = notReadyReason(deps);
    return reason === null ? { status: 'ready' } : fail(reply, 503, 'Service Unavailable', reason);
  });

  app.get('/metrics', { schema: S.metrics }, async (_req, reply) => {
    const text = await metrics.scrape();
    return reply.type(metrics.registry.contentType).send(text);
  });

  app.get('/openapi.json', { schema: S.openapi }, async () => openapi.document({
    title: 'pg-walsender admin API', version: deps.version,
    description: 'Senders (pg_stat_replication), status, metrics, reload and shutdown of a pg-walsender.',
  }));

  app.get('/api/v1/senders', { schema: S.senders }, async () => snapshotWalSnds(deps.views).map(senderRow));

  app.get('/api/v1/senders/oldest-sent-lsn', { schema: S.oldestSentLsn }, async () => {
    const oldest = oldestSentPosition(deps.views);
    return { oldest_sent_lsn: oldest === null ? null : formatLsn(oldest) };
  });

  app.get<{ Params: { id: number } }>('/api/v1/senders/:id', { schema: S.sender }, async (req, reply) => {
    const s = snapshotWalSnds(deps.views).find((x) => x.pid === req.params.id);
    return s ? senderRow(s) : fail(reply, 404, 'Not Found', `no active sender with id ${req.params.id}`);
  });

  app.delete<{ Params: { id: number } }>('/api/v1/senders/:id', { schema: S.terminateSender, ...mutating }, async (req, reply) => {
    const { id } = req.params;
    if (!requestTerminate(deps.views, id)) return fail(reply, 404, 'Not Found', `no active sender with id ${id}`);
    req.log.info({ senderId: id, remote: req.ip }, 'sender termination requested through the admin API');
    return { id, terminated: true };
  });

  registerSlotRoutes(app, deps.views, deps.dataDir ?? deps.storeDir, mutating, fail);

  app.get('/api/v1/status', { schema: S.status }, async () => {
    const id = storeIdentity(deps.views);
    const flush = peekFlush(deps.views);
    const st = await store.get();
    const started = startTime(deps.views);
    return {
      source: { kind: deps.source, state: SOURCE_STATE_NAMES[sourceState(deps.views)] ?? 'unknown' },
      system_identifier: id ? id.sysid.toString() : null,
      timeline: id ? flush.timeline : null,
      flush_lsn: id ? formatLsn(flush.flushLsn) : null,
      store: {
        dir: deps.storeDir,
        retained_bytes: st?.retainedBytes ?? null,
        segments: st?.segments ?? null,
        filesystem_avail_bytes: st?.fsAvailBytes ?? null,
        filesystem_size_bytes: st?.fsSizeBytes ?? null,
      },
      senders: { active: snapshotWalSnds(deps.views).length, max_wal_senders: deps.views.maxWalSenders },
      uptime_seconds: pgTimeToUnixSeconds(pgNow()) - pgTimeToUnixSeconds(started),
      started_at: pgTimeToIso(started),
      version: deps.version,
      ready: ready(),
      shutting_down: shutdownMode(deps.views) !== ShutdownMode.NONE,
    };
  });

  app.post('/api/v1/reload', { schema: S.reload, ...mutating }, async (req, reply) => {
    let outcome: ReloadOutcome;
    try {
      outcome = deps.reload();
    } catch (e) {
      return fail(reply, 422, 'Unprocessable Entity',
        `configuration not reloaded, current settings kept: ${(e as Error).message}`);
    }
    req.log.info({ remote: req.ip, ...outcome }, 'configuration reloaded through the admin API');
    return { applied: outcome.applied, restart_required: outcome.restartRequired };
  });

  app.post<{ Body: { mode: ShutdownRequestMode } }>('/api/v1/shutdown', { schema: S.shutdown, ...mutating }, async (req, reply) => {
    const { mode } = req.body;
    req.log.info({ mode, remote: req.ip }, 'shutdown requested through the admin API');
    // Answer first: a fast shutdown may end the process before a late reply is written.
    reply.code(202).send({ mode });
    setImmediate(() => deps.shutdown(mode));
    return reply;
  });

  return app;
}

export type AdminServer = { app: FastifyInstance; port: number; close(): Promise<void> };

/** Build and listen on host:port (port 0 = any free port). */
export async function startAdminServer(deps: AdminDeps, listen: { host: string; port: number }): Promise<AdminServer> {
  const app = buildAdminApp(deps);
  await app.listen({ host: listen.host, port: listen.port });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : listen.port;
  deps.log.info({ host: listen.host, port, mutatingRoutes: deps.adminToken === null ? 'disabled (no admin token)' : 'enabled' },
    'admin API listening');
  return { app, port, close: () => app.close() };
}
