// Owns the limits on what one client may make a sender thread do, so a broken or
// hostile client cannot crowd out the standbys sharing its thread:
//
// - message length: a Query (a replication command) is at most 64 KiB. The longest
//   command any client sends (START_REPLICATION SLOT "<63-byte name>" PHYSICAL
//   X/X TIMELINE n, or CREATE_REPLICATION_SLOT with options) is under 200 bytes,
//   so 64 KiB leaves a wide margin while never buffering megabytes for a command.
//   Other messages: 1 MiB (CopyData replies are 34 bytes). The startup packet
//   (10000 bytes) and authentication messages (65535 / 1024) have PostgreSQL's
//   own limits, enforced by the codec and src/auth/authenticate.ts.
// - message rate: at most 10 000 messages per second sustained (a burst of 20 000
//   allowed). A walreceiver replies at most once per batch it receives, which at
//   our 1 MiB batches is about a thousand per second at 1 GB/s; pg_receivewal
//   replies once per status interval. A client over the limit is sent
//   FATAL 53400 and closed.
//
// Input buffering (1 MiB, then the socket is paused) and output backpressure are in
// client.ts; the time allowed before authentication completes is
// authentication_timeout (session.ts).

import { PgError } from '../../src/protocol/errors.ts';

export const MAX_COMMAND_MESSAGE = 64 * 1024;
export const MAX_CLIENT_MESSAGE = 1 << 20;
export const MAX_MESSAGES_PER_SECOND = 10_000;
const BURST = 2 * MAX_MESSAGES_PER_SECOND;

/** FrontendReader's per-type limit after authentication. */
export function messageLengthLimit(type: string): number {
  return type === 'Q' ? MAX_COMMAND_MESSAGE : MAX_CLIENT_MESSAGE;
}

/** The error for a message whose length word is over its limit (framing is lost: FATAL). */
export function messageTooLong(type: string, length: number, limit: number): PgError {
  const what = type === 'Q' ? 'a replication command' : `a message of type "${type}"`;
  return new PgError('FATAL', '08P01', 'invalid message length', {
    detail: `The client announced ${length} bytes for ${what}; the limit is ${limit} bytes.`,
  });
}

/** A token bucket over the messages of one connection. */
export class MessageRateLimit {
  private tokens = BURST;
  private last = Date.now();

  /** Counts one message; throws FATAL 53400 when the client is over the limit. */
  count(): void {
    if (--this.tokens >= 0) return;
    const now = Date.now();
    this.tokens = Math.min(BURST, this.tokens + ((now - this.last) * MAX_MESSAGES_PER_SECOND) / 1000);
    this.last = now;
    if (this.tokens < 0) {
      throw new PgError('FATAL', '53400', 'terminating connection because the client sends messages too fast', {
        detail: `More than ${MAX_MESSAGES_PER_SECOND} messages per second, sustained.`,
      });
    }
  }
}
