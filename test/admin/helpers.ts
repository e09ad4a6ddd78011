// Test helpers for the admin API: start pg-walsender (process or in-process) with the
// admin API on a free port, make HTTP requests to it, and parse Prometheus text.

import type { AdminDeps } from '../../src/admin/app.ts';
import { createLogger } from '../../src/log.ts';
import { VERSION, type Server } from '../../src/server.ts';
import { freePort } from '../helpers/proc.ts';
import { startWalsender, type WalsenderProcess } from '../helpers/server.ts';

type Teardown = { teardown(fn: () => unknown): void };

export const TOKEN = 'test-admin-token-0123456789';

export type HttpResult = { status: number; headers: Headers; text: string; json: unknown };

export type AdminClient = {
  url: string;
  request(method: string, path: string, opts?: { token?: string; body?: unknown }): Promise<HttpResult>;
  get(path: string): Promise<HttpResult>;
};

export function adminClient(url: string): AdminClient {
  const request = async (method: string, path: string, opts: { token?: string; body?: unknown } = {}): Promise<HttpResult> => {
    const headers: Record<string, string> = {};
    if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(url + path, {
      method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body), signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    let json: unknown = null;
    try { json = JSON.parse(text); } catch { /* not JSON: /metrics */ }
    return { status: res.status, headers: res.headers, text, json };
  };
  return { url, request, get: (path) => request('GET', path) };
}

/** The real process with the admin API on a free loopback port; waits until the API listens. */
export async function startWithAdmin(args: string[], t: Teardown, opts: { env?: NodeJS.ProcessEnv } = {}):
Promise<{ ws: WalsenderProcess; admin: AdminClient }> {
  const adminPort = await freePort();
  const ws = await startWalsender([...args, '--admin-listen', `127.0.0.1:${adminPort}`], { t, env: opts.env });
  await ws.proc.waitFor(/admin API listening/, 10_000);
  return { ws, admin: adminClient(`http://127.0.0.1:${adminPort}`) };
}

/** AdminDeps over an in-process server; reload and shutdown are recorded, not performed, unless overridden. */
export function inProcessDeps(server: Server, over: Partial<AdminDeps> = {}): AdminDeps & { calls: string[] } {
  const calls: string[] = [];
  return {
    views: server.views, source: 'demo', storeDir: server.storeDir, version: VERSION, adminToken: null,
    log: createLogger('silent'), listening: () => server.listening(),
    reload: () => { calls.push('reload'); return { applied: { log_level: 'warn' }, restartRequired: [] }; },
    shutdown: (mode) => { calls.push(`shutdown ${mode}`); },
    ...over,
    calls,
  };
}

export type Sample = { labels: Record<string, string>; value: number };

/** Prometheus text format: sample name -> samples; `types` has every `# TYPE` name. */
export function parseMetrics(text: string): { samples: Map<string, Sample[]>; types: Map<string, string> } {
  const samples = new Map<string, Sample[]>();
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) { types.set(type[1]!, type[2]!); continue; }
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    const list = samples.get(m[1]!) ?? [];
    list.push({ labels, value: Number(m[3]) });
    samples.set(m[1]!, list);
  }
  return { samples, types };
}

/** The value of `name` for the sender with this id, or undefined when it has no such series. */
export function standbyValue(parsed: ReturnType<typeof parseMetrics>, name: string, id: number): number | undefined {
  return parsed.samples.get(name)?.find((s) => s.labels.sender_id === String(id))?.value;
}

export function lsnToNumber(lsn: string): number {
  const [hi, lo] = lsn.split('/');
  return parseInt(hi!, 16) * 2 ** 32 + parseInt(lo!, 16);
}
