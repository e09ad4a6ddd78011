// Owns one established connection to the upstream server (handshake.ts makes it):
// framing of the server's messages, simple queries and their result sets, and the
// COPY-both stream of START_REPLICATION, whose CopyData is handed over synchronously
// as it arrives so WAL never piles up in memory. Server errors surface as
// UpstreamError with the server's fields; everything else as ConnectError.

import type net from 'node:net';
import {
  parseCommandComplete, parseDataRow, parseErrorFields, parseRowDescription, query as queryMessage, terminate,
} from '../../protocol/client.ts';
import type { HostTarget } from './conninfo.ts';
import { InboundQueue } from './inbound.ts';

/** An ErrorResponse from the upstream server. */
export class UpstreamError extends Error {
  readonly severity: string;
  readonly code: string;
  readonly detail: string | undefined;
  constructor(fields: Map<string, string>) {
    super(fields.get('M') ?? 'unknown error');
    this.name = 'UpstreamError';
    this.severity = fields.get('V') ?? fields.get('S') ?? 'ERROR';
    this.code = fields.get('C') ?? 'XX000';
    this.detail = fields.get('D');
  }
}

/** Could not connect, authenticate or talk to the upstream (libpq-style message). */
export class ConnectError extends Error {
  /** Refused: authentication or the server's certificate failed, TLS was required but missing. */
  readonly auth: boolean;
  constructor(message: string, auth = false) {
    super(message);
    this.name = 'ConnectError';
    this.auth = auth;
  }
}

export type BackendMessage = { type: string; body: Buffer };
/** `database`: a plain SQL session on that database instead of a physical replication one (tools, benchmarks). */
export type ConnectOptions = { warn?: (msg: string) => void; database?: string };
export type QueryResult = { fields: string[]; rows: (string | null)[][]; tag: string };

/**
 * Consumes CopyData payloads synchronously while streaming, as slices of the received
 * chunks (see inbound.ts); any other message ends the stream.
 */
export type CopyHandler = { data(parts: Buffer[], length: number): void; other(m: BackendMessage): void };

export class UpstreamConnection {
  readonly target: HostTarget;
  readonly parameters = new Map<string, string>();
  readonly tlsInUse: boolean;
  private readonly socket: net.Socket;
  private readonly inbound = new InboundQueue();
  private waiter: (() => void) | null = null;
  private copy: CopyHandler | null = null;
  private closedWith: Error | null = null;
  lastReceiveMs = Date.now();

  /** Made by connectUpstream (handshake.ts): wraps a socket that finished SSL negotiation. */
  constructor(socket: net.Socket, target: HostTarget, tlsInUse: boolean, pending: Buffer | null) {
    this.socket = socket;
    this.target = target;
    this.tlsInUse = tlsInUse;
    if (pending && pending.length > 0) this.inbound.push(pending);
    socket.on('data', (chunk: Buffer) => {
      this.lastReceiveMs = Date.now();
      this.inbound.push(chunk);
      try {
        this.pump();
      } catch (e) {
        socket.destroy(e as Error); // lost framing: nothing more can be read
      }
    });
    const closed = (e?: Error): void => {
      if (!this.closedWith) this.closedWith = new ConnectError(e ? `connection to upstream lost: ${e.message}` : 'server closed the connection unexpectedly');
      this.pump();
    };
    socket.on('error', closed);
    socket.on('close', () => closed());
    socket.resume();
  }

  get serverVersionNum(): number {
    const m = /^(\d+)(?:\.(\d+))?/.exec(this.parameters.get('server_version') ?? '');
    if (!m) return 0;
    const major = Number(m[1]);
    return major >= 10 ? major * 10000 + Number(m[2] ?? 0) : major * 10000 + Number(m[2] ?? 0) * 100;
  }

  get closed(): boolean {
    return this.closedWith !== null;
  }

  write(buf: Buffer): void {
    if (!this.closedWith) this.socket.write(buf);
  }

  /** Next message, waiting for it; throws once the connection is gone. */
  async next(timeoutMs = 0): Promise<BackendMessage> {
    for (;;) {
      const m = this.inbound.next();
      if (m) return m;
      if (this.closedWith) throw this.closedWith;
      await new Promise<void>((resolve, reject) => {
        let timer: NodeJS.Timeout | undefined;
        if (timeoutMs > 0) {
          timer = setTimeout(() => { this.waiter = null; reject(new ConnectError(`no answer from server within ${timeoutMs} ms`)); }, timeoutMs);
        }
        this.waiter = () => { if (timer) clearTimeout(timer); resolve(); };
      });
    }
  }

  private pump(): void {
    if (this.copy) {
      for (;;) {
        const h = this.copy;
        if (!h) break;
        const peeked = this.inbound.peek();
        if (!peeked) break;
        if (peeked.type === 'd') {
          const m = this.inbound.nextSlices()!;
          h.data(m.parts, m.length);
          continue;
        }
        const m = this.inbound.next()!;
        if (m.type === 'N' || m.type === 'S') continue; // libpq tolerates these inside COPY
        this.copy = null;
        h.other(m);
      }
      if (this.copy && this.closedWith) {
        const h = this.copy;
        this.copy = null;
        h.other({ type: '\0', body: Buffer.alloc(0) });
      }
      return;
    }
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /** Deliver CopyData synchronously as it arrives (null: back to awaited messages). */
  setCopyHandler(h: CopyHandler | null): void {
    this.copy = h;
    if (h) this.pump();
  }

  /** Simple query; collects one result set. Throws UpstreamError on ErrorResponse (after ReadyForQuery). */
  async query(sql: string, timeoutMs = 30_000): Promise<QueryResult> {
    this.write(queryMessage(sql));
    const results = await this.readResults(timeoutMs);
    return results[0] ?? { fields: [], rows: [], tag: '' };
  }

  /** Results up to ReadyForQuery; the first result set may already have started (fields given). */
  async readResults(timeoutMs = 30_000, fields: string[] | null = null): Promise<QueryResult[]> {
    const results: QueryResult[] = [];
    let cur: QueryResult | null = fields ? { fields, rows: [], tag: '' } : null;
    let error: UpstreamError | null = null;
    for (;;) {
      const m = await this.next(timeoutMs);
      switch (m.type) {
        case 'T': cur = { fields: parseRowDescription(m.body).map((f) => f.name), rows: [], tag: '' }; break;
        case 'D': (cur ??= { fields: [], rows: [], tag: '' }).rows.push(parseDataRow(m.body).map((v) => (v === null ? null : v.toString('utf8')))); break;
        case 'C': (cur ??= { fields: [], rows: [], tag: '' }).tag = parseCommandComplete(m.body); results.push(cur); cur = null; break;
        case 'E': error = new UpstreamError(parseErrorFields(m.body)); if (error.severity === 'FATAL') throw error; break;
        case 'Z': if (error) throw error; return results;
        case 'I': case 'N': case 'S': break;
        case 'W': throw new ConnectError('unexpected CopyBothResponse');
        default: throw new ConnectError(`unexpected message type "${m.type}" from server`);
      }
    }
  }

  /**
   * Send a START_REPLICATION. 'copy' once CopyBothResponse arrived; 'results' when the
   * server skipped COPY (start exactly at the end of a historic timeline).
   */
  async startCopy(sql: string, timeoutMs = 30_000): Promise<{ kind: 'copy' } | { kind: 'results'; results: QueryResult[] }> {
    this.write(queryMessage(sql));
    for (;;) {
      const m = await this.next(timeoutMs);
      if (m.type === 'W') return { kind: 'copy' };
      if (m.type === 'N' || m.type === 'S') continue;
      if (m.type === 'E') {
        const e = new UpstreamError(parseErrorFields(m.body));
        if (e.severity !== 'FATAL') await this.readResults(timeoutMs).catch(() => {});
        throw e;
      }
      if (m.type === 'T') {
        return { kind: 'results', results: await this.readResults(timeoutMs, parseRowDescription(m.body).map((f) => f.name)) };
      }
      throw new ConnectError(`unexpected message type "${m.type}" in answer to START_REPLICATION`);
    }
  }

  /** Close politely (Terminate), then the socket. */
  close(): void {
    if (!this.closedWith) {
      try { this.socket.write(terminate()); } catch { /* closing anyway */ }
      this.closedWith = new ConnectError('connection closed');
    }
    this.socket.end();
    this.socket.destroy();
  }
}
