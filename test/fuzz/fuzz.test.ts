// Seeded, time-bounded fuzzing of a running pg-walsender at every phase of a
// connection: before startup, the TLS request, each authentication method, the
// command loop and streaming. Random and mutated protocol messages (at least
// 100 000 delivered, from many connections in parallel) must never crash or hang the server:
// every connection ends with an ErrorResponse or a close, within a bound once the
// client stops; no connection gets an AuthenticationOk its bytes did not earn (see
// earnsOk in driver.ts); no internal error is logged; memory stays bounded; and two good
// pg_receivewal streams running throughout finish byte-identical. Inputs that found
// a bug are kept in test/fuzz/corpus/ and replayed first as regression fixtures.
//
// PGWS_FUZZ_SEED, PGWS_FUZZ_MESSAGES and PGWS_FUZZ_TIME_MS override the defaults.

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { md5Verifier } from '../../src/auth/md5.ts';
import { buildScramSecret } from '../../src/auth/scram.ts';
import { SETTINGS } from '../../src/config.ts';
import { receiveWal, waitForSegments } from '../helpers/pg.ts';
import { makeTempDir, sha256File, sleep } from '../helpers/proc.ts';
import { startWalsender } from '../helpers/server.ts';
import { makeTestPki } from '../auth/certs.ts';
import { FUZZ_PASSWORD, replayCase, runCase, type CaseResult, type Outcome } from './driver.ts';
import { generate, PHASES, prng, type Phase } from './generators.ts';

const SEED = Number(process.env.PGWS_FUZZ_SEED ?? 0x5eed5);
const MESSAGES = Number(process.env.PGWS_FUZZ_MESSAGES ?? 100_000);
const TIME_MS = Number(process.env.PGWS_FUZZ_TIME_MS ?? 55_000);
const PARALLEL = 24;
const CASE = { finTimeoutMs: 10_000, quietMs: 150 };
const CORPUS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'corpus');
const MB = 1 << 20;

const tmp = await makeTempDir('pgws-fuzz-');
t.teardown(() => tmp.remove());
const pki = await makeTestPki(tmp.path);
const cheap = (pw: string): string => buildScramSecret(pw, Buffer.alloc(16, 9), 16); // few iterations: the fuzzer logs in often
fs.writeFileSync(path.join(tmp.path, 'users'), `fztrust - replication
fz ${cheap(FUZZ_PASSWORD)} replication
fzmd5 ${md5Verifier(FUZZ_PASSWORD, 'fzmd5')} replication
fzpw ${cheap(FUZZ_PASSWORD)} replication
fzgood ${buildScramSecret('good')} replication
`);
fs.writeFileSync(path.join(tmp.path, 'hba'), `hostssl replication fzgood 127.0.0.1/32 scram-sha-256
host replication fztrust 127.0.0.1/32 trust
host replication fz      127.0.0.1/32 scram-sha-256
host replication fzmd5   127.0.0.1/32 md5
host replication fzpw    127.0.0.1/32 password
`);
const dataDir = path.join(tmp.path, 'data');
const keep = SETTINGS.some((s) => s.name === 'wal_keep_size') ? ['--wal-keep-size', '1GB'] : [];
const ws = await startWalsender(['--data-dir', dataDir, '--demo-wal-segment-size', '1MB', '--demo-rate', '2MB', ...keep,
  '--max-wal-senders', '200', '--authentication-timeout', '15s', '--wal-sender-timeout', '15s',
  '--hba-file', path.join(tmp.path, 'hba'), '--users-file', path.join(tmp.path, 'users'),
  '--ssl-cert-file', pki.serverCert, '--ssl-key-file', pki.serverKey], { t, timeoutMs: 30_000 });

const rssKiB = (): number => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${ws.proc.child.pid}/status`, 'utf8'))![1]);
// The log is kept as a 1 MiB tail: collect internal errors as they appear (each
// line is unique by its timestamp and connection).
const seenErrors = new Set<string>();
const internalErrors = (): string[] => {
  for (const l of ws.proc.output().split('\n')) {
    if (/"msg":"sender failed"|"level":60|uncaught|sender task ended abnormally|worker thread/i.test(l)) seenErrors.add(l);
  }
  return [...seenErrors];
};
const watcher = setInterval(internalErrors, 100);
t.teardown(() => clearInterval(watcher));

/** Saves an input that found a bug, for the replay below (and to commit). */
function save(r: CaseResult, why: string): string {
  fs.mkdirSync(CORPUS, { recursive: true });
  const name = `${r.phase}-${createHash('sha256').update(r.bytes).digest('hex').slice(0, 12)}.bin`;
  fs.writeFileSync(path.join(CORPUS, name), r.bytes);
  return `${name} (${why})`;
}

t.test('corpus: inputs that found bugs are replayed first', async (t) => {
  const files = fs.existsSync(CORPUS) ? fs.readdirSync(CORPUS).filter((f) => f.endsWith('.bin')).sort() : [];
  t.ok(files.length > 0, `${files.length} regression inputs`);
  const before = internalErrors().length;
  for (const f of files) {
    const phase = f.split('-')[0] as Phase;
    t.ok(PHASES.includes(phase), `${f}: known phase`);
    // Optional <name>.json: {"code": SQLSTATE expected, "noRead": replay as a client that does not read}.
    const specFile = path.join(CORPUS, f.replace(/\.bin$/, '.json'));
    const spec = fs.existsSync(specFile) ? JSON.parse(fs.readFileSync(specFile, 'utf8')) as { code?: string; noRead?: boolean } : {};
    const r = await replayCase(ws.port, phase, prng(1), fs.readFileSync(path.join(CORPUS, f)), { ...CASE, noRead: spec.noRead ?? false });
    t.not(r.outcome, 'hang', `${f}: ${r.outcome}`);
    t.not(r.outcome, 'preamble-failed', `${f}: ${r.detail}`);
    t.notOk(r.unearnedOk, `${f}: no unearned AuthenticationOk`);
    if (spec.code) t.equal(r.code, spec.code, `${f}: ErrorResponse ${spec.code}`);
  }
  t.equal(internalErrors().length, before, 'no internal error logged');
  t.notOk(ws.proc.hasExited, 'server alive');
});

t.test(`fuzz: ${MESSAGES} messages, seed ${SEED}, at most ${TIME_MS} ms, with two good streams`, async (t) => {
  const good = [];
  for (const [i, env] of [
    { user: 'fzgood', env: { PGPASSWORD: 'good', PGSSLMODE: 'verify-full', PGSSLROOTCERT: pki.caCert, PGCHANNELBINDING: 'require' } },
    { user: 'fztrust', env: {} },
  ].entries()) {
    const dir = await makeTempDir(`pgws-fuzz-recv${i}-`);
    t.teardown(() => dir.remove());
    const proc = receiveWal({ host: 'localhost', port: ws.port, dir: dir.path, user: env.user, env: env.env, appName: `good${i}` });
    t.teardown(() => proc.kill());
    const m = await proc.waitFor(/starting log streaming at (\S+)/, 20_000);
    const [hi, lo] = m[1]!.split('/').map((x) => parseInt(x, 16));
    good.push({ dir: dir.path, proc, first: Math.floor((hi! * 2 ** 32 + lo!) / MB) });
  }
  await sleep(300);
  const baseline = rssKiB();
  let peak = baseline;
  const sampler = setInterval(() => { try { peak = Math.max(peak, rssKiB()); } catch { /* exited: asserted below */ } }, 200);

  const outcomes = new Map<Outcome, number>();
  const byPort = new Map<number, CaseResult>();
  const bugs: string[] = [];
  let sent = 0;
  const perPhase = new Map<Phase, number>();
  let cases = 0;
  const began = Date.now();
  const deadline = began + TIME_MS;
  const loop = async (): Promise<void> => {
    while (sent < MESSAGES && Date.now() < deadline && !ws.proc.hasExited) {
      const r = prng((SEED ^ Math.imul(cases + 1, 0x9e3779b1)) >>> 0);
      cases++;
      const phase = r.pick(PHASES);
      const flood = r.int(50) === 0;
      const count = flood ? 200 + r.int(1300) : 1 + r.int(40);
      const res = await runCase(ws.port, phase, r, (ctx) => generate(r, phase, ctx, count, flood), { ...CASE, noRead: r.int(6) === 0 }).catch((e: unknown) => {
        // Refused at connect: only acceptable if the server died (asserted below).
        bugs.push(`connect failed: ${(e as Error).message}`);
        return null;
      });
      if (!res) continue;
      sent += res.delivered; // only what was written before the server closed counts
      perPhase.set(phase, (perPhase.get(phase) ?? 0) + res.delivered);
      outcomes.set(res.outcome, (outcomes.get(res.outcome) ?? 0) + 1);
      byPort.set(res.clientPort, res);
      if (res.outcome === 'hang') bugs.push(save(res, `no close ${CASE.finTimeoutMs} ms after the client stopped`));
      if (res.outcome === 'preamble-failed') bugs.push(`${phase}: preamble failed: ${res.detail}`);
      if (res.unearnedOk) bugs.push(save(res, 'AuthenticationOk without the right credentials'));
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, loop));
  clearInterval(sampler);
  const seconds = (Date.now() - began) / 1000;
  t.comment(`${sent} messages in ${cases} connections, ${seconds.toFixed(1)} s; outcomes ${JSON.stringify(Object.fromEntries(outcomes))}`);

  t.notOk(ws.proc.hasExited, 'the server never crashed');
  for (const line of internalErrors()) {
    const port = Number(/"clientPort":(\d+)/.exec(line)?.[1]);
    const r = byPort.get(port);
    bugs.push(r ? save(r, `internal error: ${line.slice(0, 300)}`) : `internal error: ${line.slice(0, 300)}`);
  }
  t.same(bugs, [], 'no hang, no unearned AuthenticationOk, no internal error (inputs saved to test/fuzz/corpus/)');
  t.ok(sent >= MESSAGES, `at least ${MESSAGES} messages delivered (${sent})`);
  t.comment(`delivered per phase: ${JSON.stringify(Object.fromEntries(perPhase))}`);
  for (const p of PHASES) t.ok((perPhase.get(p) ?? 0) >= MESSAGES / PHASES.length / 10, `phase ${p} was fuzzed (${perPhase.get(p) ?? 0} messages)`);
  const growthMB = (peak - baseline) / 1024;
  t.ok(growthMB < 256, `server RSS grew by ${growthMB.toFixed(1)} MB during the fuzz (bounded)`);

  // The good streams: the segments they completed during the fuzz and the next one.
  const open = fs.readdirSync(dataDir).find((n) => n.endsWith('.partial'))!;
  const last = parseInt(open.slice(16, 24), 16);
  for (const g of good) {
    const names: string[] = [];
    for (let s = g.first; s <= last; s++) names.push(`00000001000000000000${s.toString(16).toUpperCase().padStart(4, '0')}`);
    t.ok(names.length >= 3, `good stream spans ${names.length} segments`);
    await waitForSegments(g.dir, names, 30_000, { segmentSize: MB, proc: g.proc });
    let identical = 0;
    for (const n of names) if (await sha256File(path.join(g.dir, n)) === await sha256File(path.join(dataDir, n))) identical++;
    t.equal(identical, names.length, `${g.proc.name}: all ${names.length} segments byte-identical`);
    t.notOk(g.proc.hasExited, 'still streaming');
  }
});
