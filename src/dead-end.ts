// The main thread's only conversation with a client: PostgreSQL's dead-end backend
// for a server with no room left (postmaster.c, CAC_TOOMANY). Every sender task is
// busy, so this connection is refused here, at once, instead of waiting in a queue
// where no authentication_timeout runs. Like the dead-end backend it answers an
// SSLRequest or GSSENCRequest with 'N' and reads the StartupMessage before sending
// FATAL 53300 "sorry, too many clients already", because libpq shows an error's text
// only after the startup packet ("server sent an error response during SSL exchange"
// otherwise). With TLS configured it cannot do the handshake here, so an SSLRequest
// gets the error at once, as from PostgreSQL when it cannot fork a backend. Bounded:
// one second and MAX_STARTUP_PACKET_LENGTH bytes; protocol bytes only, never WAL.

import type net from 'node:net';
import { errorResponse } from './protocol/backend.ts';
import { SqlState } from './protocol/errors.ts';
import { MAX_STARTUP_PACKET_LENGTH, NEGOTIATE_GSS_CODE, NEGOTIATE_SSL_CODE } from './protocol/startup.ts';

const TOO_MANY_CLIENTS = errorResponse({ severity: 'FATAL', code: SqlState.TOO_MANY_CONNECTIONS, message: 'sorry, too many clients already' });
const DEAD_END_MS = 1000;

export function refuseTooManyClients(socket: net.Socket, tlsConfigured: boolean): void {
  let buf = Buffer.alloc(0);
  let negotiations = 0;
  const refuse = (): void => {
    socket.removeAllListeners('data');
    socket.on('data', () => {}); // read and drop the rest, so the close is a FIN after the error
    socket.end(TOO_MANY_CLIENTS);
  };
  socket.on('error', () => {});
  socket.setTimeout(DEAD_END_MS, () => socket.destroy());
  socket.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 8) {
      const len = buf.readInt32BE(0);
      const code = buf.readInt32BE(4);
      const negotiation = len === 8 && (code === NEGOTIATE_SSL_CODE || code === NEGOTIATE_GSS_CODE);
      if (!negotiation || negotiations++ > 1 || (code === NEGOTIATE_SSL_CODE && tlsConfigured)) {
        // The StartupMessage (or anything else): no need to wait for all of it.
        refuse();
        return;
      }
      socket.write('N');
      buf = buf.subarray(8);
    }
    if (buf.length > MAX_STARTUP_PACKET_LENGTH) refuse();
  });
  socket.resume();
}
