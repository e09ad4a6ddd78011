// One client socket as the sender task sees it: incoming bytes framed by the codec's
// FrontendReader, outgoing writes with backpressure, and a Waker that every event
// (data, drain, close, new WAL, timers) sets so the task's loops need no polling.

import type net from 'node:net';
import { errorResponse } from '../../src/protocol/backend.ts';
import { FrontendReader, type StartupPacket } from '../../src/protocol/frontend.ts';
import { PgError } from '../../src/protocol/errors.ts';
import { Waker, type GenerationWatch } from './waker.ts';

// Stop reading from a client that sends faster than we consume; resume once drained.
const MAX_BUFFERED_INPUT = 1 << 20;

export type FrontendMessage = { type: string; body: Buffer };

export class ClientConnection {
  readonly socket: net.Socket;
  readonly reader: FrontendReader;
  readonly waker = new Waker();
  closed = false;
  writeBlocked = false;
  private paused = false;

  constructor(socket: net.Socket, reader: FrontendReader) {
    this.socket = socket;
    this.reader = reader;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.reader.push(chunk);
      if (this.reader.buffered > MAX_BUFFERED_INPUT && !this.paused) {
        this.paused = true;
        socket.pause();
      }
      this.waker.wake();
    });
    socket.on('drain', () => {
      this.writeBlocked = false;
      this.waker.wake();
    });
    // Errors (ECONNRESET, EPIPE) end this connection only; never let them escape the thread.
    socket.on('error', () => this.markClosed());
    socket.on('close', () => this.markClosed());
    socket.resume(); // a transferred socket does not read until told to
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
    if (!ok) this.writeBlocked = true;
    return ok;
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
      const m = this.reader.nextMessage();
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

  /** Send an ErrorResponse; a FATAL one also ends the connection. */
  sendError(e: PgError): void {
    this.write(errorResponse({ severity: e.severity, code: e.code, message: e.message, detail: e.detail, hint: e.hint }));
    if (e.severity === 'FATAL' || e.severity === 'PANIC') this.end();
  }

  /** Flush what is queued, then close. */
  end(): void {
    if (this.closed) return;
    this.socket.end();
    // A client that never reads would keep the socket half-open forever.
    setTimeout(() => this.socket.destroy(), 5000).unref();
  }

  destroy(): void {
    this.socket.destroy();
    this.markClosed();
  }

  /** Resolves once the socket is fully closed. */
  async waitClosed(): Promise<void> {
    while (!this.closed) await this.waker.wait();
  }
}
