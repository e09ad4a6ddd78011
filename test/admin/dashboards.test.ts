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

/** One query of the dashboard or the rules: its PromQL, and labels its legend or annotations print. */
type Query = { where: string; expr: string; printed: string[] };

const printedLabels = (text: unknown): string[] =>
  [...String(text ?? '').matchAll(/\{\{\s*(?:\$labels\.)?([a-zA-Z_]\w*)\s*\}\}/g)].map((m) => m[1]!);

/**
 * Every query in the dashboard: panel targets (expr, legendFormat), template variables
 * (query, whether a string or {query}, and definition), anywhere in the JSON.
 */
function dashboardQueries(node: unknown, where: string, out: Query[] = []): Query[] {
  if (Array.isArray(node)) node.forEach((x, i) => dashboardQueries(x, `${where}[${i}]`, out));
  else if (node !== null && typeof node === 'object') {
    const o = node as Json;
    if (typeof o.expr === 'string') out.push({ where, expr: o.expr, printed: printedLabels(o.legendFormat) });
    if (o.type === 'query' && 'definition' in o) {
      for (const q of [o.definition, typeof o.query === 'object' ? (o.query as Json | null)?.query : o.query]) {
        if (typeof q === 'string' && q !== '') out.push({ where: `${where} (variable ${String(o.name)})`, expr: q, printed: [] });
      }
    }
    for (const [k, v] of Object.entries(o)) if (k !== 'expr') dashboardQueries(v, `${where}/${k}`, out);
  }
  return out;
}

const PROMQL_KEYWORDS = new Set(['and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset']);
const LABEL_LISTS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);

/**
 * The metric names and label names one PromQL expression (or Grafana's label_values())
 * uses, by tokenizing it: every identifier that is not a function, keyword, label or
 * number/duration counts as a metric name, whatever its prefix.
 */
function analyze(expr: string): { metrics: string[]; labels: string[] } {
  const metrics: string[] = [];
  const labels: string[] = [];
  let e = expr;
  // Grafana's label_values(metric_selector, label) / label_values(label).
  e = e.replace(/label_values\(\s*(?:(.*),\s*)?([a-zA-Z_]\w*)\s*\)/g, (_, sel: string | undefined, label: string) => {
    labels.push(label);
    return sel ?? '';
  });
  e = e.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""'); // string literals
  e = e.replace(/\{([^}]*)\}/g, (_, body: string) => { // selectors: the label names they filter on
    for (const m of body.matchAll(/([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)/g)) labels.push(m[1]!);
    return ' ';
  });
  e = e.replace(/\[[^\]]*\]/g, ' '); // ranges and subqueries: durations, $__rate_interval
  e = e.replace(/\$\{?\w+\}?/g, ' '); // Grafana variables elsewhere
  const tokens = [...e.matchAll(/\d+(?:\.\d+)?(?:e[+-]?\d+)?(?:ms|[smhdwy])*|[a-zA-Z_:][a-zA-Z0-9_:]*|\(|\)|[^\s\w()]+/gi)].map((m) => m[0]);
  for (let i = 0; i < tokens.length; i++) {
    const tok = tokens[i]!;
    if (!/^[a-zA-Z_:]/.test(tok)) continue;
    const lower = tok.toLowerCase();
    if (LABEL_LISTS.has(lower) && tokens[i + 1] === '(') {
      for (i += 2; i < tokens.length && tokens[i] !== ')'; i++) if (/^[a-zA-Z_]/.test(tokens[i]!)) labels.push(tokens[i]!);
      continue;
    }
    if (PROMQL_KEYWORDS.has(lower)) continue;
    if (tokens[i + 1] === '(') continue; // a function or an aggregation
    if (['by', 'without'].includes(tokens[i + 1]?.toLowerCase() ?? '')) continue; // sum by (...) (...)
    metrics.push(tok);
  }
  return { metrics, labels };
}

/** What a set of queries uses that a live /metrics (plus recorded series and Prometheus's `up`) lacks. */
function missing(queries: Query[], live: ReturnType<typeof parseMetrics>, recorded: Set<string>): string[] {
  const problems: string[] = [];
  const known = (name: string): boolean => name === 'up' || recorded.has(name) || live.types.has(name)
    || live.types.has(name.replace(/_(bucket|sum|count)$/, ''));
  for (const q of queries) {
    const { metrics, labels } = analyze(q.expr);
    for (const name of metrics) if (!known(name)) problems.push(`${q.where}: metric ${name} is not in /metrics (${q.expr})`);
    const ours = metrics.filter((n) => live.samples.has(n));
    for (const label of [...labels, ...q.printed]) {
      if (label === 'instance' || label === 'job' || label === '__name__') continue; // added by Prometheus
      if (ours.length > 0 && !ours.some((n) => live.samples.get(n)!.some((smp) => label in smp.labels))) {
        problems.push(`${q.where}: label ${label} is on none of ${ours.join(', ')} (${q.expr})`);
      }
    }
  }
  return problems;
}

const dashboard = JSON.parse(fs.readFileSync(path.join(DIR, 'grafana/pg-walsender.json'), 'utf8')) as Json;
const prometheusConfig = parseYaml(fs.readFileSync(path.join(DIR, 'prometheus/prometheus.yml'), 'utf8')) as { rule_files: string[] };
// Every rule file Prometheus loads, not only alerts.yml.
const rules = prometheusConfig.rule_files.flatMap((f) =>
  (parseYaml(fs.readFileSync(path.join(DIR, 'prometheus', f), 'utf8')) as { groups: { rules: Json[] }[] }).groups.flatMap((g) => g.rules));
const alertRules = rules.filter((r) => r.alert !== undefined);

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

  const fromDashboard = dashboardQueries(dashboard, 'dashboard');
  const fromRules: Query[] = rules.map((r) => ({
    where: `rule ${String(r.alert ?? r.record)}`, expr: String(r.expr),
    printed: Object.values((r.annotations ?? {}) as Json).flatMap(printedLabels),
  }));
  const recorded = new Set(rules.filter((r) => typeof r.record === 'string').map((r) => String(r.record)));
  const metricCount = (qs: Query[]): number => new Set(qs.flatMap((q) => analyze(q.expr).metrics)).size;
  t.ok(metricCount(fromDashboard) >= 15, `the dashboard uses ${metricCount(fromDashboard)} metrics in ${fromDashboard.length} queries`);
  t.ok(metricCount(fromRules) >= 6, `the rules use ${metricCount(fromRules)} metrics in ${fromRules.length} rules`);
  t.same(missing(fromDashboard, live, recorded), [], 'every metric and label the dashboard uses is in /metrics');
  t.same(missing(fromRules, live, recorded), [], 'every metric and label the rules use is in /metrics');

  // The check itself finds what is wrong: an unknown name of any prefix, a selector, a
  // by() list, a legend and label_values() naming a label no series has.
  const bad: Query[] = [
    { where: 'a', expr: 'sum(rate(pg_walsender_sent_bytes_total[5m]))', printed: [] },
    { where: 'b', expr: 'pgws_ready{role="primary"} == 0', printed: [] },
    { where: 'c', expr: 'max by (standby) (pgws_standby_write_lag_bytes)', printed: [] },
    { where: 'd', expr: 'pgws_standby_write_lag_bytes', printed: ['standby_name'] },
    { where: 'e', expr: 'label_values(pgws_standby_sent_bytes_total, standby)', printed: [] },
    { where: 'f', expr: 'pgws_standby_write_lag_bytes > 256 * 1024 and on (instance) pgws_ready offset 5m', printed: [] },
  ];
  t.same(missing(bad, live, recorded).map((p) => p.split(':')[0]), ['a', 'b', 'c', 'd', 'e'], 'the check reports each bad query (and not the good one)');
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
  const names = alertRules.map((r) => String(r.alert));
  for (const want of ['PgWalsenderStandbyLagging', 'PgWalsenderNoStandbys', 'PgWalsenderUpstreamDown', 'PgWalsenderStoreFilling']) {
    t.ok(names.includes(want), `alert ${want}`);
  }
  for (const r of alertRules) {
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
