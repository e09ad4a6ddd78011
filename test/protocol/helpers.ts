// Shared assertions for the protocol codec tests: exact PgError matching and
// fixture helpers (hex in, chunked delivery).
import type { Test } from 'tap';
import { PgError } from '../../src/protocol/errors.ts';

type Tap = Pick<Test, 'fail' | 'equal'>;

export type ExpectedError = { severity: string; code: string; message: string; hint?: string; detail?: string };

/** Asserts that fn throws a PgError with exactly these fields. */
export function throwsPg(t: Tap, fn: () => unknown, want: ExpectedError, label?: string): void {
  const name = label ?? want.message;
  try {
    fn();
  } catch (e) {
    if (!(e instanceof PgError)) {
      t.fail(`${name}: threw non-PgError ${String(e)}`);
      return;
    }
    t.equal(`${e.severity} ${e.code} ${e.message}`, `${want.severity} ${want.code} ${want.message}`, name);
    if (want.hint !== undefined) t.equal(e.hint, want.hint, `${name} (hint)`);
    if (want.detail !== undefined) t.equal(e.detail, want.detail, `${name} (detail)`);
    return;
  }
  t.fail(`${name}: did not throw`);
}

export const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** Every way to cut `buf` into two pieces, plus byte-by-byte delivery. */
export function* splits(buf: Buffer): Generator<Buffer[]> {
  for (let i = 0; i <= buf.length; i++) yield [buf.subarray(0, i), buf.subarray(i)];
  yield [...buf].map((b) => Buffer.from([b]));
}
