// Owns the JSON schemas of the admin API: what every route accepts and answers.
// fastify validates requests and serializes responses with them, and openapi.ts
// turns them into /openapi.json, so the document cannot drift from the code.

const nullable = (type: string, extra: Record<string, unknown> = {}) => ({ type: [type, 'null'], ...extra });
const lsn = (description: string) => nullable('string', { description: `${description} (%X/%X), null when unknown`, pattern: '^[0-9A-F]+/[0-9A-F]+$' });

export const errorSchema = {
  type: 'object',
  description: 'An error',
  required: ['statusCode', 'error', 'message'],
  properties: {
    statusCode: { type: 'integer' },
    error: { type: 'string', description: 'HTTP reason phrase' },
    message: { type: 'string', description: 'What went wrong' },
  },
} as const;

export const senderSchema = {
  type: 'object',
  description: 'One active sender: the columns of pg_stat_replication, plus bytes_sent',
  required: ['id', 'application_name', 'client_addr', 'client_port', 'backend_start', 'state', 'sent_lsn', 'write_lsn',
    'flush_lsn', 'replay_lsn', 'write_lag', 'flush_lag', 'replay_lag', 'reply_time', 'sync_state', 'slot_name', 'bytes_sent'],
  properties: {
    id: { type: 'integer', description: 'Connection id (pg_stat_replication.pid; the BackendKeyData process id)' },
    application_name: { type: 'string' },
    client_addr: nullable('string'),
    client_port: nullable('integer'),
    backend_start: { type: 'string', format: 'date-time' },
    state: { type: 'string', enum: ['startup', 'backup', 'catchup', 'streaming', 'stopping'] },
    sent_lsn: lsn('Last WAL position sent'),
    write_lsn: lsn('Last position the standby wrote'),
    flush_lsn: lsn('Last position the standby flushed'),
    replay_lsn: lsn('Last position the standby replayed'),
    write_lag: nullable('number', { description: 'Seconds (pg_stat_replication shows an interval)' }),
    flush_lag: nullable('number', { description: 'Seconds' }),
    replay_lag: nullable('number', { description: 'Seconds' }),
    reply_time: nullable('string', { format: 'date-time' }),
    sync_state: { type: 'string', enum: ['async'] },
    slot_name: nullable('string'),
    bytes_sent: { type: 'integer', description: 'WAL bytes sent on this connection' },
  },
} as const;

const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'integer', minimum: 1, description: 'Sender id (connection id)' } },
} as const;

const simple = (description: string, key: string, value: Record<string, unknown>) => ({
  type: 'object', description, required: [key], properties: { [key]: value },
});

const errors = (...codes: number[]) => Object.fromEntries(codes.map((c) => [c, errorSchema]));
const AUTH_ERRORS = [401, 403];

export const routeSchemas = {
  healthz: {
    summary: 'Liveness: the process is up',
    response: { 200: simple('Always ok while the process runs', 'status', { type: 'string', enum: ['ok'] }) },
  },
  readyz: {
    summary: 'Readiness: the replication listener is up and the WAL source is healthy',
    response: { 200: simple('Ready', 'status', { type: 'string', enum: ['ready'] }), ...errors(503) },
  },
  metrics: {
    summary: 'Prometheus metrics (text exposition format)',
    response: { 200: { type: 'string', description: 'Prometheus text format 0.0.4' } },
  },
  openapi: {
    summary: 'This OpenAPI 3.0 document',
    response: { 200: { type: 'object', description: 'OpenAPI document', additionalProperties: true } },
  },
  senders: {
    summary: 'Every active sender (pg_stat_replication)',
    response: { 200: { type: 'array', description: 'One object per sender holding a WalSnd slot', items: senderSchema } },
  },
  sender: {
    summary: 'One sender',
    params: idParams,
    response: { 200: senderSchema, ...errors(404) },
  },
  oldestSentLsn: {
    summary: 'Oldest sent position among active senders (GetOldestWALSendPointer)',
    response: { 200: simple('null when no sender has sent anything', 'oldest_sent_lsn', lsn('Oldest sent position')) },
  },
  terminateSender: {
    summary: 'Terminate one sender; its client gets FATAL 57P01 (as pg_terminate_backend)',
    params: idParams,
    response: {
      200: {
        type: 'object', description: 'Termination requested', required: ['id', 'terminated'],
        properties: { id: { type: 'integer' }, terminated: { type: 'boolean', enum: [true] } },
      },
      ...errors(404, ...AUTH_ERRORS),
    },
  },
  status: {
    summary: 'Server status: source, store, senders, version',
    response: {
      200: {
        type: 'object', description: 'Status',
        required: ['source', 'system_identifier', 'timeline', 'flush_lsn', 'store', 'senders', 'uptime_seconds', 'started_at',
          'version', 'ready', 'shutting_down'],
        properties: {
          source: {
            type: 'object', required: ['kind', 'state'],
            properties: { kind: { type: 'string', enum: ['demo', 'archive', 'upstream'] }, state: { type: 'string' } },
          },
          system_identifier: nullable('string', { description: 'Decimal, as IDENTIFY_SYSTEM shows it; null until the store has WAL' }),
          timeline: nullable('integer'),
          flush_lsn: lsn('The store\'s flush position'),
          store: {
            type: 'object', required: ['dir', 'retained_bytes', 'segments', 'filesystem_avail_bytes', 'filesystem_size_bytes'],
            properties: {
              dir: { type: 'string' },
              retained_bytes: nullable('integer'),
              segments: nullable('integer'),
              filesystem_avail_bytes: nullable('integer'),
              filesystem_size_bytes: nullable('integer'),
            },
          },
          senders: {
            type: 'object', required: ['active', 'max_wal_senders'],
            properties: { active: { type: 'integer' }, max_wal_senders: { type: 'integer' } },
          },
          uptime_seconds: { type: 'number' },
          started_at: { type: 'string', format: 'date-time' },
          version: { type: 'string' },
          ready: { type: 'boolean' },
          shutting_down: { type: 'boolean' },
        },
      },
    },
  },
  reload: {
    summary: 'Re-read the configuration file and environment (as SIGHUP)',
    response: {
      200: {
        type: 'object', description: 'Reloaded', required: ['applied', 'restart_required'],
        properties: {
          applied: {
            type: 'object', description: 'The reloadable settings now in effect',
            additionalProperties: { type: ['string', 'number'] },
          },
          restart_required: { type: 'array', items: { type: 'string' }, description: 'Changed settings that need a restart (not applied)' },
        },
      },
      ...errors(422, ...AUTH_ERRORS),
    },
  },
  shutdown: {
    summary: 'Shut down: drain (send all WAL to every streaming standby, then exit, as SIGTERM) or fast (as SIGINT)',
    body: {
      type: 'object', required: ['mode'], additionalProperties: false,
      properties: { mode: { type: 'string', enum: ['drain', 'fast'] } },
    },
    response: {
      202: simple('Shutdown started', 'mode', { type: 'string', enum: ['drain', 'fast'] }),
      ...errors(400, ...AUTH_ERRORS),
    },
  },
} as const;
