// Framing of the upstream's messages over arbitrary socket chunks: whole messages
// (copied only when split), CopyData bodies as slices without copying, the helpers
// that read across slices, and a bad length.

import t from 'tap';
import { bytesAt, InboundQueue, slicesFrom } from '../../src/sources/upstream/inbound.ts';

const msg = (type: string, body: Buffer): Buffer => {
  const h = Buffer.alloc(5);
  h.write(type, 0);
  h.writeUInt32BE(body.length + 4, 1);
  return Buffer.concat([h, body]);
};

t.test('messages split anywhere come out whole, in order', async (t) => {
  const body = Buffer.from(Array.from({ length: 1000 }, (_, i) => i & 0xff));
  const stream = Buffer.concat([msg('Z', Buffer.from('I')), msg('d', body), msg('C', Buffer.from('COPY 0\0'))]);
  for (const cut of [1, 3, 5, 7, 100, 999, 1006, 1010]) {
    const q = new InboundQueue();
    q.push(stream.subarray(0, cut));
    const got: string[] = [];
    let m;
    while ((m = q.next())) got.push(m.type);
    q.push(stream.subarray(cut));
    while ((m = q.peek())) {
      if (m.type === 'd') {
        const s = q.nextSlices()!;
        t.equal(s.length, 1000);
        t.same(Buffer.concat(s.parts), body, `cut at ${cut}: the CopyData body`);
        got.push('d');
      } else {
        got.push(q.next()!.type);
      }
    }
    t.same(got, ['Z', 'd', 'C'], `cut at ${cut}`);
  }
});

t.test('slices are views of the received chunks, not copies', async (t) => {
  const body = Buffer.alloc(300, 7);
  const wire = msg('d', body);
  const a = Buffer.from(wire.subarray(0, 100));
  const b = Buffer.from(wire.subarray(100));
  const q = new InboundQueue();
  q.push(a);
  q.push(b);
  const s = q.nextSlices()!;
  t.equal(s.parts.length, 2);
  t.equal(s.parts[0]!.buffer, a.buffer, 'first slice shares the first chunk');
  t.equal(s.parts[1]!.buffer, b.buffer, 'second slice shares the second chunk');
});

t.test('bytesAt and slicesFrom across slices', async (t) => {
  const parts = [Buffer.from('abc'), Buffer.from('defg'), Buffer.from('hi')];
  t.equal(bytesAt(parts, 0, 2).toString(), 'ab');
  t.equal(bytesAt(parts, 2, 4).toString(), 'cdef');
  t.equal(bytesAt(parts, 5, 4).toString(), 'fghi');
  t.throws(() => bytesAt(parts, 7, 3), RangeError);
  t.same(slicesFrom(parts, 2).map(String), ['c', 'defg', 'hi']);
  t.same(slicesFrom(parts, 3, 8).map(String), ['defg', 'h']);
  t.same(slicesFrom(parts, 0, 3).map(String), ['abc']);
});

t.test('a bad length is an error', async (t) => {
  const q = new InboundQueue();
  q.push(Buffer.from([0x44, 0, 0, 0, 2]));
  t.throws(() => q.peek(), /invalid message length 2/);
});
