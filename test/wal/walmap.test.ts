// The native segment mappings (src/wal/walmap.ts, native/walmap.c): a mapping holds the
// file's bytes, one inode maps once, held slots are never reused, a full region says
// "copy instead", idle mappings are dropped; and a segment truncated under a mapping
// costs one connection an error, never the process (the kernel copies, user space never reads).

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { SegmentMappings, segmentMappings, slotBudget, walReadMethod, WALMAP_PATH } from '../../src/wal/walmap.ts';
import { SegmentReader } from '../../src/wal/segment-reader.ts';
import { segmentFileName } from '../../src/wal/segment.ts';

const SEG = 1 << 20;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgws-walmap-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

function segmentFile(name: string, fill: number): string {
  const p = path.join(dir, name);
  const b = Buffer.alloc(SEG);
  for (let i = 0; i < SEG; i += 4096) b.writeUInt32BE(i ^ (fill * 0x01010101), i);
  fs.writeFileSync(p, b);
  return p;
}

t.test('the native module is built and used (tests never silently cover only the copy path)', async (t) => {
  t.ok(fs.existsSync(WALMAP_PATH), `${WALMAP_PATH} exists (npm test builds it)`);
  t.same(walReadMethod(), { method: 'mmap', why: '' });
});

t.test('mappings: contents, one per inode, LRU reuse of unheld slots only, null when all are held', async (t) => {
  const mod = (await import('node:module')).createRequire(import.meta.url)(WALMAP_PATH);
  const maps = new SegmentMappings(mod, SEG, 2);
  const files = [0, 1, 2].map((i) => segmentFile(`f${i}`, i + 1));
  const fds = files.map((f) => fs.openSync(f, 'r'));
  t.teardown(() => fds.forEach((fd) => fs.closeSync(fd)));

  const a = maps.acquire(fds[0])!;
  t.ok(a.bytes.equals(fs.readFileSync(files[0])), 'a mapping holds the file\'s bytes');
  const fd0again = fs.openSync(files[0], 'r');
  const a2 = maps.acquire(fd0again)!;
  fs.closeSync(fd0again);
  t.equal(a2, a, 'the same inode through another descriptor: the same mapping');
  t.equal(a.refs, 2);
  const b = maps.acquire(fds[1])!;
  t.not(b.slot, a.slot);
  t.equal(maps.acquire(fds[2]), null, 'both slots held: null, the caller copies instead');
  maps.release(b);
  const c = maps.acquire(fds[2])!;
  t.equal(c.slot, b.slot, 'the unheld slot is reused');
  t.ok(c.bytes.equals(fs.readFileSync(files[2])), 'and now holds the other file\'s bytes');
  t.ok(a.bytes.equals(fs.readFileSync(files[0])), 'the held mapping is untouched');
  t.throws(() => { maps.release(b); }, /released more often/, 'a double release is refused');
  maps.release(a);
  maps.release(a2);
  maps.release(c);
  t.same(maps.stats(), { mapped: 2, held: 0, slots: 2 }, 'unheld mappings stay cached');
  maps.trim(0);
  t.same(maps.stats(), { mapped: 0, held: 0, slots: 2 }, 'trim drops unheld mappings');
});

t.test('a file that cannot be mapped: null (the caller copies), and the slot keeps what it held', async (t) => {
  const mod = (await import('node:module')).createRequire(import.meta.url)(WALMAP_PATH);
  const maps = new SegmentMappings(mod, SEG, 1);
  const file = segmentFile('kept', 5);
  const fd = fs.openSync(file, 'r');
  t.teardown(() => fs.closeSync(fd));
  const held = maps.acquire(fd)!;
  maps.release(held); // unheld: the one slot may be reused
  const proc = fs.openSync('/proc/self/status', 'r'); // procfs has no mmap
  t.teardown(() => fs.closeSync(proc));
  t.equal(maps.acquire(proc), null, 'not mappable: null');
  t.equal(maps.mapFailures, 1);
  t.match(maps.lastMapError, /mmap/);
  t.ok(held.bytes.equals(fs.readFileSync(file)), 'the slot still maps the earlier file');
  t.equal(maps.acquire(fd), held, 'and serves it again');
  maps.release(held);
});

t.test('a renamed .partial keeps its mapping; a replaced file gets a new one', async (t) => {
  const maps = segmentMappings(SEG)!;
  maps.trim(0);
  const name = segmentFileName(1, 5n, SEG);
  segmentFile(`${name}.partial`, 7);
  const reader = new SegmentReader(dir, SEG);
  const lsn = 5n * BigInt(SEG);
  const first = reader.mappedRun(1, lsn, [8192, 8192])!;
  t.ok(Buffer.concat(first.slices).equals(fs.readFileSync(path.join(dir, `${name}.partial`)).subarray(0, 16384)), 'slices are the WAL bytes');
  reader.releaseMapping(first.mapping);
  reader.close();
  fs.renameSync(path.join(dir, `${name}.partial`), path.join(dir, name));
  const second = reader.mappedRun(1, lsn + 16384n, [8192])!;
  t.equal(second.mapping, first.mapping, 'renamed: same inode, same mapping');
  reader.releaseMapping(second.mapping);
  reader.close();
  segmentFile(`${name}.new`, 9);
  fs.renameSync(path.join(dir, `${name}.new`), path.join(dir, name));
  const third = reader.mappedRun(1, lsn, [4096])!;
  t.not(third.mapping, first.mapping, 'replaced by another file: a new mapping');
  t.ok(third.slices[0].equals(fs.readFileSync(path.join(dir, name)).subarray(0, 4096)), 'with the new file\'s bytes');
  reader.releaseMapping(third.mapping);
  reader.close();
  t.equal(maps.stats().held, 0, 'nothing held once the reader closed and the caller released');
});

t.test('a run past the end of a short (still growing) file is an error, not a mapping past EOF', async (t) => {
  const name = segmentFileName(1, 9n, SEG);
  fs.writeFileSync(path.join(dir, `${name}.partial`), Buffer.alloc(8192, 1));
  const reader = new SegmentReader(dir, SEG);
  t.throws(() => reader.mappedRun(1, 9n * BigInt(SEG), [8192, 8192]), { code: 'XX001' });
  const ok = reader.mappedRun(1, 9n * BigInt(SEG), [8192])!;
  t.ok(ok.slices[0].equals(Buffer.alloc(8192, 1)), 'what the file holds is served');
  reader.releaseMapping(ok.mapping);
  reader.close();
});

t.test('a segment truncated under a mapping ends the write with an error; the process lives', async (t) => {
  // In a child process, so a crash (SIGBUS) would show as a signal rather than kill tap.
  const file = segmentFile('victim', 3);
  const script = `
    import net from 'node:net';
    import fs from 'node:fs';
    import { segmentMappings } from ${JSON.stringify(new URL('../../src/wal/walmap.ts', import.meta.url).href)};
    const fd = fs.openSync(${JSON.stringify(file)}, 'r');
    const m = segmentMappings(${SEG}).acquire(fd);
    fs.truncateSync(${JSON.stringify(file)}, 4096);
    const srv = net.createServer((c) => c.resume());
    srv.listen(0, '127.0.0.1', () => {
      const s = net.connect(srv.address().port, '127.0.0.1', () => {
        s.write(m.bytes.subarray(0, ${SEG}), (err) => {
          console.log('write ended:', err ? err.code : 'ok');
          s.destroy(); srv.close();
        });
      });
      s.on('error', () => {});
    });
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  t.equal(r.signal, null, `no signal (stderr: ${r.stderr.slice(-300)})`);
  t.equal(r.status, 0, 'exit 0');
  t.match(r.stdout, /write ended: EFAULT/, 'the kernel\'s copy failed with EFAULT');
});

t.test('less address space (ulimit -v): fewer slots, or none and the copying path', async (t) => {
  const fake = (maxBytes: number) => ({
    reserve(length: number): Buffer {
      if (length > maxBytes) throw new Error('mmap (reserve): Cannot allocate memory');
      return Buffer.alloc(0);
    },
    mapAt(): void {},
    unmapAt(): void {},
  });
  t.equal(new SegmentMappings(fake(8 * SEG), SEG, 32).stats().slots, 8, 'halved until it fits');
  t.throws(() => new SegmentMappings(fake(4 * SEG), SEG, 32), /Cannot allocate memory/, 'not even the minimum: an error');
  const limits = (v: string): string => `Limit Soft Limit Hard Limit Units\nMax address space         ${v}            ${v}            bytes\n`;
  t.equal(slotBudget(16 << 20, limits('unlimited')), 256, 'no limit: 4 GiB of 16 MiB slots');
  t.equal(slotBudget(16 << 20, limits('3072000000')), 22, 'ulimit -v: an eighth of it');
  t.equal(slotBudget(256 << 20, limits('3072000000')), 0, 'too little for 8 slots: none');
  t.equal(slotBudget(1 << 30, ''), 8, 'limits unknown: REGION_BYTES, at least 8 slots');
  // The real module in a process limited to 3 GB of address space: 16 MiB segments get fewer
  // slots; 256 MiB segments cannot get the minimum, so the thread reports the copying path.
  const walmap = JSON.stringify(new URL('../../src/wal/walmap.ts', import.meta.url).href);
  const probe = (segSize: number): string => spawnSync('bash', ['-c', `ulimit -v 3000000; exec "$0" --input-type=module -e "$1"`, process.execPath,
    `import { segmentMappings, walReadMethod } from ${walmap}; const m = segmentMappings(${segSize}); console.log(JSON.stringify({ slots: m ? m.stats().slots : 0, ...walReadMethod() }));`],
  { encoding: 'utf8', timeout: 30_000 }).stdout.trim();
  const small = JSON.parse(probe(16 << 20) || '{}') as { slots?: number; method?: string };
  t.equal(small.method, 'mmap', '16 MiB segments: mapped');
  t.equal(small.slots, 22, 'with an eighth of the limit in slots');
  const big = JSON.parse(probe(256 << 20) || '{}') as { slots?: number; method?: string; why?: string };
  t.same([big.slots, big.method], [0, 'read'], '256 MiB segments: the copying path');
  t.match(big.why, /no address space for segment mappings/);
});
