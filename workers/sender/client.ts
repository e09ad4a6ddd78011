// One client socket as the sender task sees it: incoming bytes framed by the codec's
// FrontendReader, outgoing writes with backpressure, and a Waker that every event
// (data, drain, close, new WAL, timers) sets so the task's loops need no polling.

import type net from 'node:net';
import tls from 'node:tls';
import { errorResponse } from '../../src/protocol/backend.ts';
import { FrontendReader, type StartupPacket } from '../../src/protocol/frontend.ts';
import { PgError } from '../../src/protocol/errors.ts';
import { MessageRateLimit } from './limits.ts';
import { Waker, type GenerationWatch } from './waker.ts';

// Stop reading from a client that sends faster than we consume; resume once drained.
const MAX_BUFFERED_INPUT = 1 << 20;

export type FrontendMessage = { type: string; body: Buffer };

export class ClientConnection {
  /** The TCP socket, or the TLS socket over it once startTls succeeded. */
  socket: net.Socket;
  private readonly raw: net.Socket;
  readonly reader: FrontendReader;
  readonly waker = new Waker();
  closed = false;
  writeBlocked = false;
  /** Date.now() when writes last became blocked (meaningful while writeBlocked). */
  writeBlockedSince = 0;
  ssl = false;
  private paused = false;
  private readonly rate = new MessageRateLimit();

  constructor(socket: net.Socket, reader: FrontendReader) {
    this.socket = socket;
    this.raw = socket;
    this.reader = reader;
    socket.setNoDelay(true);
    this.listen(socket);
    socket.resume(); // a transferred socket does not read until told to
  }

  private readonly onData = (chunk: Buffer): void => {
    this.reader.push(chunk);
    if (this.reader.buffered > MAX_BUFFERED_INPUT && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
    this.waker.wake();
  };

  private readonly onDrain = (): void => {
    this.writeBlocked = false;
    this.waker.wake();
  };

  private readonly onGone = (): void => this.markClosed();

  private listen(s: net.Socket): void {
    s.on('data', this.onData);
    s.on('drain', this.onDrain);
    // Errors (ECONNRESET, EPIPE, a failed TLS handshake) end this connection only;
    // never let them escape the thread.
    s.on('error', this.onGone);
    s.on('close', this.onGone);
  }

  /**
   * SSLRequest accepted: send `answer` ('S') in clear, then run the TLS handshake
   * on the same socket; from then on every byte goes through TLS. The caller has
   * checked that nothing was buffered after the SSLRequest. Resolves true once
   * the handshake is done, false if it failed or the client left.
   */
  async startTls(answer: Buffer, secureContext: tls.SecureContext): Promise<boolean> {
    const raw = this.raw;
    raw.off('data', this.onData);
    raw.off('drain', this.onDrain);
    raw.write(answer);
    const secure = new tls.TLSSocket(raw, { isServer: true, secureContext });
    let done = false;
    secure.once('secure', () => { done = true; this.waker.wake(); });
    this.socket = secure;
    this.listen(secure);
    while (!done && !this.closed) await this.waker.wait();
    if (!done) return false;
    this.ssl = true;
    return true;
  }

  private markClosed(): void {
    this.closed = true;
    this.waker.wake();
  }

  /** Queue bytes; returns false when the caller should wait for drain. */
  write(buf: Buffer, cb?: () => void): boolean {
    if (this.closed || this.socket.destroyed) {
      cb?.();
      return false;
    }
    const ok = this.socket.write(buf, cb ? () => cb() : undefined);
    if (!ok && !this.writeBlocked) {
      this.writeBlocked = true;
      this.writeBlockedSince = Date.now();
    }
    return ok;
  }

  /**
   * Queue several buffers as one socket write (a writev): corked, so they reach the
   * kernel together; `cb` runs once all are written.
   */
  writeChunks(chunks: Buffer[], cb?: () => void): boolean {
    if (chunks.length === 1) return this.write(chunks[0], cb);
    if (this.closed || this.socket.destroyed) {
      cb?.();
      return false;
    }
    this.socket.cork();
    for (let i = 0; i < chunks.length - 1; i++) this.socket.write(chunks[i]);
    const ok = this.write(chunks[chunks.length - 1], cb);
    this.socket.uncork();
    return ok;
  }

  /**
   * Resolves once queued output drained, the connection closed or `interrupt()`
   * says to stop waiting (re-checked on every publication, as in nextMessage).
   * A client that does not read its results must not make us queue more of them.
   */
  async waitWritable(interrupt?: () => boolean, watch?: GenerationWatch): Promise<void> {
    while (this.writeBlocked && !this.closed && !interrupt?.()) {
      const unsubscribe = watch?.subscribe(watch.current(), () => this.waker.wake());
      await this.waker.wait();
      unsubscribe?.();
    }
  }

  afterConsume(): void {
    if (this.paused && this.reader.buffered <= MAX_BUFFERED_INPUT / 2) {
      this.paused = false;
      this.socket.resume();
    }
  }

  /** Next untyped startup-phase packet, or null if the connection closed. */
  async nextStartupPacket(): Promise<StartupPacket | null> {
    for (;;) {
      const p = this.reader.nextStartupPacket();
      if (p) return p;
      if (this.closed) return null;
      await this.waker.wait();
    }
  }

  /**
   * Next typed message; null on close or when `interrupt()` says to stop waiting.
   * With `watch`, every publication in the shared memory also wakes us to re-check
   * `interrupt` (shutdown, terminate), re-subscribing before each wait.
   */
  async nextMessage(interrupt?: () => boolean, watch?: GenerationWatch): Promise<FrontendMessage | null> {
    for (;;) {
      const m = this.nextBufferedMessage();
      if (m) {
        this.afterConsume();
        return m;
      }
      const gen = watch?.current() ?? 0;
      if (this.closed || interrupt?.()) return null;
      const unsubscribe = watch?.subscribe(gen, () => this.waker.wake());
      await this.waker.wait();
      unsubscribe?.();
    }
  }

  /** A complete message already received, or null; counted against the message rate limit. */
  nextBufferedMessage(): FrontendMessage | null {
    const m = this.reader.nextMessage();
    if (m) this.rate.count();
    return m;
  }

  /** Send an ErrorResponse; a FATAL one also ends the connection. */
  sendError(e: PgError): void {
    this.write(errorResponse({ severity: e.severity, code: e.code, message: e.message, detail: e.detail, hint: e.hint }));
    if (e.severity === 'FATAL' || e.severity === 'PANIC') this.end();
  }

  /**
   * Send `e` and stop at once: nothing more is read from this client (the
   * session's waits see it closed), the socket is destroyed once the error is
   * out, or after a second if the client does not read it.
   */
  abort(e: PgError): void {
    if (this.closed) return;
    const done = (): void => this.destroy();
    this.socket.write(errorResponse({ severity: e.severity, code: e.code, message: e.message, detail: e.detail, hint: e.hint }), done);
    setTimeout(done, 1000).unref();
    this.markClosed();
  }

  /** Flush what is queued, then close. */
  end(): void {
    if (this.closed) return;
    this.socket.end();
    // A client that never reads would keep the socket half-open forever.
    setTimeout(() => this.destroy(), 5000).unref();
  }

  destroy(): void {
    this.socket.destroy();
    this.raw.destroy();
    this.markClosed();
  }

  /** Resolves once the socket is fully closed. */
  async waitClosed(): Promise<void> {
    while (!this.closed) await this.waker.wait();
  }
}
