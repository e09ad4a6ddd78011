// The sender task: one long-lived piscina task per client connection. The main thread
// transfers the untouched socket here; everything from the first byte on (startup,
// authentication, commands, streaming) happens on this worker thread. The task
// resolves when the connection is closed; its WalSnd slot is freed on every path.

import type net from 'node:net';
import { Piscina } from 'piscina';
import { FrontendReader } from '../src/protocol/frontend.ts';
import { ClientConnection } from './sender/client.ts';
import { senderContext, type SenderWorkerData } from './sender/context.ts';
import { runSession } from './sender/session.ts';
import { messageLengthLimit, messageTooLong } from './sender/limits.ts';
import { BATCH_BYTES } from './sender/batch-builder.ts';

export type SenderTask = {
  socket: net.Socket;
  connId: number;
  clientAddr: string;
  clientPort: number;
};


export default async function senderTask(task: SenderTask): Promise<void> {
  const ctx = senderContext(Piscina.workerData as SenderWorkerData, BATCH_BYTES);
  const conn = new ClientConnection(task.socket, new FrontendReader({ lengthLimit: messageLengthLimit, lengthError: messageTooLong }));
  await runSession(ctx, conn, task.connId, task.clientAddr, task.clientPort);
  await conn.waitClosed();
}
