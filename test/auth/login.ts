// A raw-protocol login for tests that must see exact messages and SQLSTATEs: answers
// whatever authentication request the server makes (cleartext, md5, SCRAM) with the
// codec's encoders and our SCRAM client, and collects the server's messages up to
// ReadyForQuery or an ErrorResponse.

import { md5Response, md5Verifier } from '../../src/auth/md5.ts';
import { ScramClient } from '../../src/auth/scram-client.ts';
import { AuthCode } from '../../src/protocol/backend.ts';
import { parseAuthentication, passwordMessage, saslInitialResponse, saslResponse, startupMessage } from '../../src/protocol/client.ts';
import { errorOf, WireClient, type BackendMessage } from '../helpers/wire.ts';

export type LoginResult = {
  client: WireClient;
  messages: BackendMessage[];
  /** Authentication request codes in the order the server sent them. */
  requests: number[];
  error: { severity: string; code: string; message: string; detail?: string } | null;
};

/** Starts a replication connection as `user` and authenticates with `password`. */
export async function login(port: number, user: string, password: string, params: Record<string, string> = {}): Promise<LoginResult> {
  const client = await WireClient.connect(port);
  client.write(startupMessage(Object.entries({ user, database: 'replication', replication: 'true', ...params })));
  const messages: BackendMessage[] = [];
  const requests: number[] = [];
  let scram: ScramClient | null = null;
  for (;;) {
    const m = await client.next();
    if (!m) return { client, messages, requests, error: null };
    messages.push(m);
    if (m.type === 'E') return { client, messages, requests, error: errorOf(m) };
    if (m.type === 'Z') return { client, messages, requests, error: null };
    if (m.type !== 'R') continue;
    const { code, data } = parseAuthentication(m.body);
    requests.push(code);
    if (code === AuthCode.PASSWORD) client.write(passwordMessage(password));
    else if (code === AuthCode.MD5) client.write(passwordMessage(md5Response(md5Verifier(password, user), data)));
    else if (code === AuthCode.SASL) {
      scram = new ScramClient({ password });
      client.write(saslInitialResponse(scram.mechanism, scram.clientFirst()));
    } else if (code === AuthCode.SASL_CONTINUE) client.write(saslResponse(scram!.clientFinal(data)));
    else if (code === AuthCode.SASL_FINAL && !scram!.verifyServerFinal(data)) throw new Error('bad SCRAM server signature');
  }
}
