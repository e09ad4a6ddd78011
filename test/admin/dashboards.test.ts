// dashboards/: every metric name (and every label a selector filters on) that the
// Grafana dashboard and the Prometheus alert rules use exists in a live /metrics of the
// real process with a streaming standby; the files parse, the dashboard is importable
// (data source as a variable, unique panel ids), the alerts the issue asks for exist,
// and the compose file mounts files that exist.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { parse as parseYaml } from 'yaml';
import { parseServerCopyData } from '../../src/protocol/client.ts';
import { makeTempDir, waitUntil } from '../helpers/proc.ts';
import { REPO_ROOT } from '../helpers/server.ts';
import { WireClient } from '../helpers/wire.ts';
import { parseMetrics, startWithAdmin } from './helpers.ts';

const DIR = path.join(REPO_ROOT, 'dashboards');
type Json = Record<string, unknown>;

function exprs(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const x of node) exprs(x, out);
  else if (node !== null && typeof node === 'object') {
    for (const [k, v] of Object.entries(node as Json)) {
      if ((k === 'expr' || k === 'definition') && typeof v === 'string') out.push(v); // definition: template variables
      else exprs(v, out);
    }
  }
  return out;
}

/** Metric names (ours and the default process metrics) with the label names their selectors filter on. */
function usedMetrics(expressions: string[]): Map<string, Set<string>> {
  const used = new Map<string, Set<string>>();
  for (const e of expressions) {
    for (const m of e.matchAll(/\b((?:pgws|process|nodejs)_[a-z0-9_]+)(\{([^}]*)\})?/g)) {
      const labels = used.get(m[1]!) ?? new Set<string>();
      for (const l of (m[3] ?? '').matchAll(/(\w+)\s*(?:=~|!~|!=|=)/g)) labels.add(l[1]!);
      used.set(m[1]!, labels);
    }
  }
  return used;
}

const dashboard = JSON.parse(fs.readFileSync(path.join(DIR, 'grafana/pg-walsender.json'), 'utf8')) as Json;
const alerts = parseYaml(fs.readFileSync(path.join(DIR, 'prometheus/alerts.yml'), 'utf8')) as { groups: { rules: Json[] }[] };
const rules = alerts.groups.flatMap((g) => g.rules);

t.test('the dashboard and the rules use only metrics a live /metrics has', async (t) => {
  const data = await makeTempDir('pgws-dash-');
  t.teardown(() => data.remove());
  const { ws, admin } = await startWithAdmin(['--data-dir', data.path, '--demo-wal-segment-size', '1MB', '--demo-rate', '2MB', '--wal-keep-size', '256MB'], t);
  // A standby that streams and reports positions, so the per-standby families have series.
  const c = await WireClient.replication(ws.port, { application_name: 'dash' });
  c.query('START_REPLICATION 0/100000 TIMELINE 1');
  let end = 0n;
  for (let i = 0; i < 4; i++) {
    const m = await c.next();
    const d = m && m.type === 'd' ? parseServerCopyData(m.body) : null;
    if (d?.kind === 'w') end = d.dataStart + BigInt(d.data.length);
  }
  const reply = Buffer.alloc(34);
  reply.write('r', 0);
  for (const off of [1, 9, 17]) reply.writeBigUInt64BE(end, off);
  c.write(Buffer.concat([Buffer.from([0x64, 0, 0, 0, 38]), reply]));
  await waitUntil(async () => /pgws_standby_replay_lsn_bytes\{/.test((await admin.get('/metrics')).text), 5000, 'reply recorded');
  const live = parseMetrics((await admin.get('/metrics')).text);

  const fromDashboard = usedMetrics(exprs(dashboard));
  const fromRules = usedMetrics(rules.map((r) => String(r.expr)));
  t.ok(fromDashboard.size >= 15, `the dashboard uses ${fromDashboard.size} metrics`);
  t.ok(fromRules.size >= 6, `the rules use ${fromRules.size} metrics`);
  for (const [where, used] of [['dashboard', fromDashboard], ['alert rules', fromRules]] as const) {
    for (const [name, labels] of used) {
      t.ok(live.types.has(name), `${where}: ${name} is in /metrics`);
      const samples = live.samples.get(name) ?? [];
      for (const label of labels) {
        if (label === 'instance' || label === 'job') continue; // added by Prometheus
        t.ok(samples.some((s) => label in s.labels), `${where}: ${name} has label ${label}`);
      }
    }
  }
  c.end();
});

t.test('the dashboard is importable and provisioned', async (t) => {
  t.equal(dashboard.uid, 'pg-walsender');
  const templating = (dashboard.templating as { list: Json[] }).list;
  t.ok(templating.some((v) => v.type === 'datasource' && v.query === 'prometheus'), 'data source chosen by a variable');
  const panels = dashboard.panels as Json[];
  t.equal(new Set(panels.map((p) => p.id)).size, panels.length, 'unique panel ids');
  for (const p of panels.filter((x) => x.type !== 'row')) {
    t.same((p.datasource as Json).uid, '${datasource}', `${String(p.title)}: uses the data source variable`);
    t.ok((p.targets as Json[]).length > 0 && p.gridPos, `${String(p.title)}: has queries and a position`);
  }
  const titles = panels.map((p) => String(p.title));
  for (const want of ['Lag behind the flush position (bytes)', 'Lag (seconds)', 'Send rate', 'Active senders', 'Source flush rate', 'Upstream']) {
    t.ok(titles.includes(want), `panel "${want}"`);
  }
  const provider = parseYaml(fs.readFileSync(path.join(DIR, 'grafana/provisioning/dashboards/pg-walsender.yaml'), 'utf8')) as { providers: { options: { path: string } }[] };
  const compose = parseYaml(fs.readFileSync(path.join(DIR, 'compose.yaml'), 'utf8')) as { services: Record<string, { volumes?: string[]; build?: { context: string; dockerfile: string } }> };
  const grafanaMounts = compose.services.grafana!.volumes!.map((v) => v.split(':')[1]!);
  t.ok(grafanaMounts.some((m) => m.startsWith(provider.providers[0]!.options.path)), 'the dashboard is mounted where the provider looks');
});

t.test('alert rules, scrape config, compose file', async (t) => {
  const names = rules.map((r) => String(r.alert));
  for (const want of ['PgWalsenderStandbyLagging', 'PgWalsenderNoStandbys', 'PgWalsenderUpstreamDown', 'PgWalsenderStoreFilling']) {
    t.ok(names.includes(want), `alert ${want}`);
  }
  for (const r of rules) {
    t.match(r, { alert: /^PgWalsender/, expr: String, for: /^\d+[smh]$/, labels: { severity: /^(warning|critical)$/ }, annotations: { summary: String } });
    const e = String(r.expr);
    t.equal([...e].filter((ch) => ch === '(').length, [...e].filter((ch) => ch === ')').length, `${String(r.alert)}: balanced parentheses`);
  }
  const prom = parseYaml(fs.readFileSync(path.join(DIR, 'prometheus/prometheus.yml'), 'utf8')) as { rule_files: string[]; scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[] };
  for (const f of prom.rule_files) t.ok(fs.existsSync(path.join(DIR, 'prometheus', f)), `rule file ${f} exists`);
  const job = prom.scrape_configs.find((s) => s.job_name === 'pg-walsender')!;
  t.same(job.static_configs[0]!.targets, ['pg-walsender:9433'], 'scrapes the admin port');
  t.ok(rules.some((r) => String(r.expr).includes('up{job="pg-walsender"}')), 'the down alert matches the scrape job');

  const compose = parseYaml(fs.readFileSync(path.join(DIR, 'compose.yaml'), 'utf8')) as { services: Record<string, { image?: string; volumes?: string[]; build?: { context: string; dockerfile: string } }> };
  t.same(Object.keys(compose.services).sort(), ['grafana', 'pg-walsender', 'primary', 'prometheus', 'standby', 'workload']);
  const build = compose.services['pg-walsender']!.build!;
  t.ok(fs.existsSync(path.join(DIR, build.context, build.dockerfile)), 'pg-walsender is built from the Dockerfile');
  for (const [name, s] of Object.entries(compose.services)) {
    for (const v of s.volumes ?? []) {
      const src = v.split(':')[0]!;
      if (src.startsWith('.')) t.ok(fs.existsSync(path.join(DIR, src)), `${name}: ${src} exists`);
    }
  }
});
