// The Dockerfile, checked without a Docker engine: its shape (multi-stage: dependencies
// and runtime on the official node:24 slim image, the native walmap module built in
// the full node:24 image; production dependencies only, non-root user, both ports, the
// data dir a volume, HEALTHCHECK) and a replay of its steps in a clean copy: the deps
// stage's npm install, the native stage's build, the COPY lines, then CMD with the image's ENV. The
// HEALTHCHECK command must pass and a replication client must get WAL, which catches a
// runtime file or dependency the image would miss. Differences from a real build: the
// copy runs on this repository's Node 24 (the image has its own), listens on free
// loopback ports and keeps its data in a temp dir; npm may use its local cache.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { parseServerCopyData } from '../../src/protocol/client.ts';
import { freePort, makeTempDir, run, spawnLogged } from '../helpers/proc.ts';
import { NODE, REPO_ROOT } from '../helpers/server.ts';
import { rowOf, WireClient } from '../helpers/wire.ts';

type Stage = { from: string; name: string | null; lines: string[] };

function parseDockerfile(text: string): Stage[] {
  const lines = text.replace(/\\\n\s*/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  for (const line of lines) {
    const [instr, ...rest] = line.split(/\s+/);
    const value = rest.join(' ');
    if (instr === 'ARG' && stages.length === 0) {
      const [k, v] = value.split('=');
      args.set(k!, v ?? '');
    } else if (instr === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(value)!;
      stages.push({ from: m[1]!.replace(/\$\{(\w+)\}/g, (_, k: string) => args.get(k) ?? ''), name: m[2] ?? null, lines: [] });
    } else {
      stages.at(-1)!.lines.push(line);
    }
  }
  return stages;
}

/**
 * .dockerignore as the Docker CLI applies it to the build context: patterns relative to
 * the context root (Go filepath.Match plus **), a pattern that matches a directory
 * excludes what is inside it, `!` re-includes, the last matching pattern wins.
 */
function dockerIgnore(text: string): (rel: string) => boolean {
  const rules = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#')).map((l) => {
    const negate = l.startsWith('!');
    const pat = path.posix.normalize((negate ? l.slice(1) : l).trim().replace(/^\/+/, '')).replace(/\/+$/, '');
    const re = pat.split(/(\*\*\/?|\*|\?)/).map((part) => (part.startsWith('**') ? '(?:.*/)?' + (part.endsWith('/') ? '' : '.*')
      : part === '*' ? '[^/]*' : part === '?' ? '[^/]' : part.replace(/[.+^${}()|[\]\\]/g, '\\$&'))).join('');
    return { negate, re: new RegExp(`^${re}$`) };
  });
  return (rel: string): boolean => {
    const parts = rel.split('/');
    const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/')); // the path and each parent directory
    let excluded = false;
    for (const r of rules) if (candidates.some((c) => r.re.test(c))) excluded = !r.negate;
    return excluded;
  };
}

/** COPY from the build context: what the context holds after .dockerignore. */
function copyFromContext(ignored: (rel: string) => boolean, rel: string, target: string): number {
  if (ignored(rel)) return 0;
  const src = path.join(REPO_ROOT, rel);
  if (!fs.statSync(src).isDirectory()) {
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.copyFileSync(src, target);
    return 1;
  }
  let n = 0;
  for (const e of fs.readdirSync(src)) n += copyFromContext(ignored, `${rel}/${e}`, path.join(target, e));
  return n;
}

const instr = (s: Stage, name: string): string[] => s.lines.filter((l) => l.startsWith(`${name} `)).map((l) => l.slice(name.length + 1).trim());
const jsonArgs = (v: string): string[] => JSON.parse(v) as string[];

t.test('Dockerfile: shape, and a replay of its steps in a clean copy', async (t) => {
  const stages = parseDockerfile(fs.readFileSync(path.join(REPO_ROOT, 'Dockerfile'), 'utf8'));
  t.same(stages.map((s) => s.name), ['deps', 'native', null], 'multi-stage: dependencies, native module, runtime');
  const [deps, native, final] = stages as [Stage, Stage, Stage];
  for (const s of [deps, final]) t.match(s.from, /^node:24(\.\d+)*-slim$/, 'official node:24 slim image');
  t.match(native.from, /^node:24(\.\d+)*$/, 'the native module is built in the official full node:24 image (gcc, headers)');
  const install = instr(deps, 'RUN').find((r) => r.startsWith('npm ci'));
  t.match(install, /--omit=dev/, 'production dependencies only');

  const env: Record<string, string> = {};
  for (const e of instr(final, 'ENV')) for (const m of e.matchAll(/(\w+)=(\S+)/g)) env[m[1]!] = m[2]!;
  const user = instr(final, 'USER')[0];
  t.ok(user && user !== 'root' && user !== '0', `runs as a non-root user (${user})`);
  t.same(instr(final, 'EXPOSE').join(' ').split(/\s+/).sort(), ['5433', '9433'], 'both ports exposed');
  t.match(env, { PGWS_LISTEN: '0.0.0.0:5433', PGWS_ADMIN_LISTEN: '0.0.0.0:9433' }, 'configured by environment');
  t.same(jsonArgs(instr(final, 'VOLUME')[0]!), [env.PGWS_DATA_DIR], 'the data dir is the volume');
  const healthcheck = instr(final, 'HEALTHCHECK')[0]!;
  const hcCmd = JSON.parse(healthcheck.slice(healthcheck.indexOf('CMD ') + 4)) as string[];
  const cmd = jsonArgs(instr(final, 'CMD')[0]!);
  t.equal(cmd[0], 'node');
  t.equal(hcCmd[0], 'node');

  // Replay: the deps stage in a clean directory, then the runtime stage's COPY lines,
  // each from the build context as .dockerignore leaves it.
  const ignored = dockerIgnore(fs.readFileSync(path.join(REPO_ROOT, '.dockerignore'), 'utf8'));
  t.ok(ignored('test/admin/x.ts') && ignored('README.md') && ignored('node_modules/a/b.js') && !ignored('src/main.ts'),
    'the .dockerignore reading excludes tests, docs and node_modules, keeps the sources');
  const tmp = await makeTempDir('pgws-docker-');
  t.teardown(() => tmp.remove());
  const stageDirs = new Map<string, string>();
  for (const name of ['deps', 'native', 'app']) {
    stageDirs.set(name, path.join(tmp.path, name));
    fs.mkdirSync(stageDirs.get(name)!);
  }
  const depsDir = stageDirs.get('deps')!;
  const app = stageDirs.get('app')!;
  /** A stage's COPY lines into `dir` (its WORKDIR /app), from the context or an earlier stage. */
  const replayCopies = (stage: Stage, dir: string): void => {
    for (const c of instr(stage, 'COPY')) {
      const parts = c.split(/\s+/);
      const fromStage = parts[0]!.startsWith('--from=') ? parts[0]!.slice('--from='.length) : null;
      const srcs = parts.filter((p) => !p.startsWith('--')).slice(0, -1);
      const dest = parts.at(-1)!;
      for (const src of srcs) {
        const rel = fromStage ? path.relative('/app', src) : src;
        const target = dest.endsWith('/') && dest !== './' ? path.join(dir, dest, path.basename(rel)) : path.join(dir, dest === './' ? rel : dest);
        if (fromStage) {
          t.ok(fs.existsSync(path.join(stageDirs.get(fromStage)!, rel)), `COPY --from=${fromStage} ${src}: the stage made it`);
          fs.cpSync(path.join(stageDirs.get(fromStage)!, rel), target, { recursive: true });
        } else {
          t.ok(copyFromContext(ignored, rel, target) > 0, `COPY ${src} finds it in the build context`);
        }
      }
    }
  };
  replayCopies(deps, depsDir);
  const npmArgs = install!.split('&&')[0]!.trim().split(/\s+/).slice(1);
  const npm = await run('npm', [...npmArgs, '--prefer-offline'], { cwd: depsDir, timeoutMs: 180_000 });
  t.equal(npm.code, 0, `npm ${npmArgs.join(' ')}: ${npm.stderr.slice(-500)}`);
  replayCopies(native, stageDirs.get('native')!);
  for (const r of instr(native, 'RUN')) {
    // The node:24 image has Node's headers in /usr/local/include/node; here they come with
    // the pinned Node package (the stage's copy has no node_modules to find them in).
    const headers = fs.globSync(path.join(REPO_ROOT, 'node_modules/node/node_modules/node-*/include/node'))[0];
    const built = await run('bash', ['-c', r], { cwd: stageDirs.get('native')!, timeoutMs: 120_000, env: { ...process.env, NODE_API_INCLUDE: headers } });
    t.equal(built.code, 0, `native stage: RUN ${r}: ${built.stderr.slice(-500)}`);
  }
  replayCopies(final, app);
  const devDeps = Object.keys((JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> }).devDependencies);
  t.same(devDeps.filter((d) => fs.existsSync(path.join(app, 'node_modules', d))), [], 'no devDependency in the image');
  t.ok(fs.existsSync(path.join(app, 'node_modules', 'fastify')), 'runtime dependencies installed');

  // CMD with the image's ENV (ports and data dir moved to free loopback ports and a temp dir).
  const [port, adminPort] = [await freePort(), await freePort()];
  const runEnv = {
    ...env, PATH: process.env.PATH, PGWS_LISTEN: `127.0.0.1:${port}`, PGWS_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
    PGWS_DATA_DIR: path.join(tmp.path, 'data'), PGWS_DEMO_WAL_SEGMENT_SIZE: '1MB',
  };
  const proc = spawnLogged(NODE, cmd.slice(1), { cwd: app, env: runEnv, name: 'pg-walsender (image replay)' });
  t.teardown(() => proc.kill('SIGKILL'));
  await proc.waitFor(/admin API listening/, 20_000);
  const hc = await run(NODE, hcCmd.slice(1), { cwd: app, env: runEnv });
  t.equal(hc.code, 0, `HEALTHCHECK command passes ${hc.stderr}`);
  const health = await fetch(`http://127.0.0.1:${adminPort}/healthz`);
  t.same(await health.json(), { status: 'ok' });

  const c = await WireClient.replication(port);
  c.query('IDENTIFY_SYSTEM');
  const flush = rowOf((await c.until('Z'))[1]!)[2]!;
  c.query(`START_REPLICATION ${flush.replace(/[0-9A-F]{5}$/, '00000')} TIMELINE 1`);
  t.equal((await c.next())?.type, 'W');
  const msg = await c.next();
  t.equal(msg && parseServerCopyData(msg.body).kind, 'w', 'the sender thread streams WAL from the copy');
  c.end();
  proc.child.kill('SIGTERM');
  t.equal((await proc.exited).code, 0, 'SIGTERM (STOPSIGNAL): exit 0');
  t.notMatch(proc.output(), /"level":50|Cannot find module|ERR_MODULE_NOT_FOUND/, 'no error logged');
  t.match(proc.output(), /"walRead":"mmap"/, 'the image\'s senders use the native module it built');
});
