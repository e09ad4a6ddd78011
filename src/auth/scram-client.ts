// Owns the client side of SCRAM-SHA-256 as libpq (fe-auth-scram.c) runs it: the
// client-first message with an empty user name, the proof, and checking the
// server's signature. Used by tests, the fuzzer and the benchmarks to speak to
// pg-walsender and to PostgreSQL the same way; pure, no I/O.

import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { saltedPassword, SCRAM_RAW_NONCE_LEN } from './scram.ts';

const hmac = (key: Buffer, data: string | Buffer): Buffer => createHmac('sha256', key).update(data).digest();

export type ScramClientOptions = {
  password: string;
  /** tls-server-end-point data (hash of the server certificate): selects SCRAM-SHA-256-PLUS. */
  channelBinding?: Buffer;
  /** "y,," instead of "n,,": the client could bind but the server offered no -PLUS. */
  clientSupportsBinding?: boolean;
  nonce?: string;
};

export class ScramClient {
  readonly mechanism: string;
  private readonly o: ScramClientOptions;
  private readonly gs2: string;
  private readonly nonce: string;
  private clientFirstBare = '';
  private expectedSignature: Buffer | null = null;

  constructor(o: ScramClientOptions) {
    this.o = o;
    this.mechanism = o.channelBinding ? 'SCRAM-SHA-256-PLUS' : 'SCRAM-SHA-256';
    this.gs2 = o.channelBinding ? 'p=tls-server-end-point,,' : o.clientSupportsBinding ? 'y,,' : 'n,,';
    this.nonce = o.nonce ?? randomBytes(SCRAM_RAW_NONCE_LEN).toString('base64');
  }

  clientFirst(): Buffer {
    this.clientFirstBare = `n=,r=${this.nonce}`;
    return Buffer.from(this.gs2 + this.clientFirstBare);
  }

  /** From server-first-message to client-final-message. Throws on a bad server message. */
  clientFinal(serverFirst: Buffer): Buffer {
    const sf = serverFirst.toString();
    const m = /^r=([^,]+),s=([^,]+),i=(\d+)$/.exec(sf);
    if (!m || !m[1]!.startsWith(this.nonce)) throw new Error(`unexpected SCRAM server-first-message: ${sf}`);
    const salted = saltedPassword(this.o.password, Buffer.from(m[2]!, 'base64'), Number(m[3]));
    const cbindInput = this.o.channelBinding ? Buffer.concat([Buffer.from(this.gs2), this.o.channelBinding]) : Buffer.from(this.gs2);
    const withoutProof = `c=${cbindInput.toString('base64')},r=${m[1]}`;
    const authMessage = `${this.clientFirstBare},${sf},${withoutProof}`;
    const clientKey = hmac(salted, 'Client Key');
    const storedKey = createHash('sha256').update(clientKey).digest();
    const signature = hmac(storedKey, authMessage);
    const proof = Buffer.alloc(clientKey.length);
    for (let i = 0; i < proof.length; i++) proof[i] = clientKey[i]! ^ signature[i]!;
    this.expectedSignature = hmac(hmac(salted, 'Server Key'), authMessage);
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`);
  }

  /** True when server-final-message carries the signature only the real server can compute. */
  verifyServerFinal(serverFinal: Buffer): boolean {
    const m = /^v=(.+)$/.exec(serverFinal.toString());
    if (!m || !this.expectedSignature) return false;
    const got = Buffer.from(m[1]!, 'base64');
    return got.length === this.expectedSignature.length && timingSafeEqual(got, this.expectedSignature);
  }
}
