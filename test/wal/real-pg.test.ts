// Checks the WAL-format code against a throwaway PostgreSQL 15 cluster (1 MiB
// segments): page headers, CRCs, the record walk compared with pg_waldump,
// findEndOfWal against pg_controldata, and crash recovery that replays
// generated NOOP records appended after the real end of WAL.
import t from 'tap';
import type { Test } from 'tap';
import { spawnSync } from 'node:child_process';
import type { SpawnSyncReturns } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { xlogRecordCrc } from '../../src/wal/crc32c.ts';
import { WalGenerator, findEndOfWal } from '../../src/wal/generator.ts';
import { XLP_FIRST_IS_CONTRECORD, XLP_LONG_HEADER, majorVersionFromMagic, readPageHeader, validateSegmentLongHeader } from '../../src/wal/page.ts';
import { walkSegment } from '../../src/wal/reader.ts';
import { readRecordHeader } from '../../src/wal/record.ts';
import { formatLsn, parseSegmentFileName, segmentFileName, segnoOf } from '../../src/wal/segment.ts';

const BIN = '/usr/lib/postgresql/15/bin';
const MB = 1024 * 1024;
const isRoot = process.getuid?.() === 0;

t.test(
  'real PostgreSQL 15 WAL',
  { timeout: 60_000, skip: existsSync(join(BIN, 'initdb')) ? false : 'PostgreSQL 15 binaries not installed' },
  realPgTest,
);

function parseLsn(s: string): bigint {
  const [hi, lo] = s.split('/');
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

async function realPgTest(t: Test): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'walpg-'));
  const data = join(dir, 'data');
  const walDir = join(data, 'pg_wal');
  const logFile = join(dir, 'log');
  let pgUid = -1;
  let pgGid = -1;
  if (isRoot) {
    pgUid = Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim());
    pgGid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim());
    chownSync(dir, pgUid, pgGid);
  }
  const asPg = (cmd: string, args: string[]): SpawnSyncReturns<string> => {
    const r = isRoot
      ? spawnSync('runuser', ['-u', 'postgres', '--', cmd, ...args], { encoding: 'utf8', maxBuffer: 256 * MB })
      : spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 * MB });
    return r;
  };
  const mustPg = (cmd: string, args: string[]): string => {
    const r = asPg(cmd, args);
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  };
  let running = false;
  const pgCtl = (...args: string[]) => mustPg(join(BIN, 'pg_ctl'), ['-D', data, '-w', ...args]);
  const start = () => {
    pgCtl('-l', logFile, '-o', `-c listen_addresses='' -k ${dir} -p 5432 -c fsync=off -c wal_keep_size=64MB`, 'start');
    running = true;
  };
  const stop = (mode: string) => {
    pgCtl('-m', mode, 'stop');
    running = false;
  };
  const psql = (sql: string) => mustPg(join(BIN, 'psql'), ['-X', '-q', '-At', '-h', dir, '-p', '5432', '-U', 'postgres', '-c', sql]);
  t.teardown(() => {
    if (running) asPg(join(BIN, 'pg_ctl'), ['-D', data, '-w', '-m', 'immediate', 'stop']);
    rmSync(dir, { recursive: true, force: true });
  });
  const waldump = (args: string[]) => {
    const r = spawnSync(join(BIN, 'pg_waldump'), args, { encoding: 'utf8', maxBuffer: 256 * MB });
    const lsns = [...r.stdout.matchAll(/lsn: ([0-9A-F]+\/[0-9A-F]+)/g)].map((m) => parseLsn(m[1]!));
    return { ...r, lsns };
  };
  const controlData = () => {
    const out = spawnSync(join(BIN, 'pg_controldata'), [data], { encoding: 'utf8' }).stdout;
    return {
      sysid: BigInt(/Database system identifier:\s+(\d+)/.exec(out)![1]!),
      checkpoint: parseLsn(/Latest checkpoint location:\s+(\S+)/.exec(out)![1]!),
    };
  };

  mustPg(join(BIN, 'initdb'), ['-D', data, '--wal-segsize=1', '-A', 'trust', '-U', 'postgres', '--no-sync']);
  start();
  t.equal(psql('show wal_segment_size'), '1MB\n');
  // A 3 MB logical message spans whole segments (contrecords, a segment holding only a continuation);
  // the commit flushes it before the immediate (crash) stop.
  psql(
    "create table t(a int); insert into t select generate_series(1, 20000); select pg_switch_wal(); " +
      "begin; insert into t values (1); select pg_logical_emit_message(true, 'x', repeat('x', 3000000)); commit;",
  );
  stop('immediate');
  const { sysid } = controlData();

  // Which segments hold current WAL: from the oldest one whose header is valid.
  const segs = readdirSync(walDir)
    .map((name) => ({ name, parsed: parseSegmentFileName(name, MB) }))
    .filter((s) => s.parsed && !s.parsed.partial)
    .map((s) => ({ name: s.name, segno: s.parsed!.segno, tli: s.parsed!.tli }))
    .sort((a, b) => (a.segno < b.segno ? -1 : 1));
  t.ok(segs.length >= 5, `${segs.length} segments`);
  const first = segs[0]!;
  const dump = waldump(['-p', walDir, '-s', formatLsn(first.segno * BigInt(MB))]);
  const endMatch = /invalid record length at ([0-9A-F]+\/[0-9A-F]+): wanted 24, got 0/.exec(dump.stderr);
  t.ok(endMatch, `pg_waldump stops at the end of WAL: ${dump.stderr.trim()}`);
  const walEnd = parseLsn(endMatch![1]!);
  const lastSegno = segnoOf(walEnd, MB);

  const ours: bigint[] = [];
  let contSegments = 0;
  let onlyContinuation = 0;
  for (const s of segs) {
    const buf = readFileSync(join(walDir, s.name));
    t.equal(buf.length, MB);
    const segStartLsn = s.segno * BigInt(MB);
    const reason = validateSegmentLongHeader(buf, { segStartLsn, segSize: MB, sysid, fileTli: s.tli });
    if (s.segno > lastSegno) {
      // Recycled segment not yet reached: it still holds an older segment's pages.
      t.match(reason, /^unexpected pageaddr /, `${s.name} is a recycled segment`);
      t.equal(findEndOfWal(buf, segStartLsn, MB), null);
      continue;
    }
    t.equal(reason, null, `${s.name} long header is valid`);
    const h = readPageHeader(buf, 0);
    t.equal(majorVersionFromMagic(h.magic), 15);
    t.ok(h.info & XLP_LONG_HEADER);
    t.equal(h.long!.sysid, sysid, 'xlp_sysid = pg_controldata sysid');
    if (h.info & XLP_FIRST_IS_CONTRECORD) contSegments++;
    const it = walkSegment(buf, segStartLsn, MB);
    let step;
    while (!(step = it.next()).done) ours.push(step.value.lsn);
    const cont = /record at ([0-9A-F]+\/[0-9A-F]+) continues in the next segment/.exec(step.value);
    if (cont) ours.push(parseLsn(cont[1]!));
    if (step.value === 'segment holds only a continued record') onlyContinuation++;
    if (s.segno === lastSegno) t.match(step.value, `invalid record length at ${formatLsn(walEnd)}`);
  }
  t.ok(contSegments >= 3, `segments starting with a continued record: ${contSegments}`);
  t.ok(onlyContinuation >= 1, 'a segment holds nothing but a continuation');
  t.equal(ours.length, dump.lsns.length, `record count matches pg_waldump (${ours.length})`);
  t.same(ours, dump.lsns, 'record LSNs match pg_waldump');

  // Explicit CRC check on the last record (the COMMIT or a later one).
  const lastBuf = readFileSync(join(walDir, segmentFileName(1, lastSegno, MB)));
  const end = findEndOfWal(lastBuf, lastSegno * BigInt(MB), MB)!;
  t.equal(end.endLsn, walEnd, 'findEndOfWal = pg_waldump end of WAL');
  t.equal(end.lastRecordLsn, dump.lsns[dump.lsns.length - 1], 'last record');
  const lastOff = Number(end.lastRecordLsn - lastSegno * BigInt(MB));
  const lastHdr = readRecordHeader(lastBuf, lastOff);
  if (lastOff % 8192 + lastHdr.totLen <= 8192) t.equal(xlogRecordCrc(lastBuf, lastOff, lastHdr.totLen), lastHdr.crc, 'xl_crc');

  // Append generated NOOP records after the real end of WAL and let crash recovery replay them.
  const g = new WalGenerator({ sysid, tli: 1, segSize: MB, startLsn: end.endLsn, prevRecPtr: end.prevRecPtr });
  const gen = g.generate(Math.floor(1.5 * MB));
  let lsn = gen.startLsn;
  for (let i = 0; i < gen.bytes.length; ) {
    const segno = segnoOf(lsn, MB);
    const path = join(walDir, segmentFileName(1, segno, MB));
    const seg = segno === lastSegno ? readFileSync(path) : Buffer.alloc(MB);
    const off = Number(lsn % BigInt(MB));
    const n = Math.min(MB - off, gen.bytes.length - i);
    seg.set(gen.bytes.subarray(i, i + n), off);
    seg.fill(0, off + n); // nothing stale after the new end
    writeFileSync(path, seg, { mode: 0o600 });
    if (isRoot) chownSync(path, pgUid, pgGid);
    i += n;
    lsn += BigInt(n);
  }
  start();
  const log = readFileSync(logFile, 'utf8');
  t.match(log, `redo done at ${formatLsn(g.prevRecPtr)}`, 'crash recovery replayed up to the last generated record');
  t.ok(parseLsn(psql('select pg_current_wal_lsn()').trim()) > g.endLsn, 'server continues after the generated WAL');
  stop('fast');

  const ctl = controlData();
  const after = waldump(['-p', walDir, '-s', formatLsn(end.lastRecordLsn)]);
  const generated = after.lsns.filter((l) => l >= gen.startLsn && l < gen.endLsn);
  t.equal(generated.length, (after.stdout.match(/desc: NOOP/g) ?? []).length, 'the generated records are NOOPs');
  t.ok(generated.length > 1400, `${generated.length} generated records replayed and dumped`);
  t.equal(generated[generated.length - 1], g.prevRecPtr);
  const finalSegno = segnoOf(ctl.checkpoint, MB);
  const finalEnd = findEndOfWal(readFileSync(join(walDir, segmentFileName(1, finalSegno, MB))), finalSegno * BigInt(MB), MB);
  t.equal(finalEnd?.lastRecordLsn, ctl.checkpoint, 'last record = shutdown checkpoint (pg_controldata)');
}
