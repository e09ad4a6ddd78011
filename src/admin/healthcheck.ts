// The container's HEALTHCHECK: GET /healthz on the admin API this process's settings
// point at (PGWS_ADMIN_LISTEN, default 127.0.0.1:9433; a wildcard address is probed
// on loopback). Exit 0 when it answers 200, 1 otherwise; 1 also when the API is off.

const listen = (process.env.PGWS_ADMIN_LISTEN ?? '127.0.0.1:9433').trim();
if (listen.toLowerCase() === 'off') {
  process.stderr.write('healthcheck: admin_listen is off, nothing to probe\n');
  process.exit(1);
}
const m = /^\[(.+)\]:(\d+)$/.exec(listen) ?? /^([^:]+):(\d+)$/.exec(listen);
if (!m) {
  process.stderr.write(`healthcheck: cannot read PGWS_ADMIN_LISTEN "${listen}"\n`);
  process.exit(1);
}
const host = m[1] === '0.0.0.0' ? '127.0.0.1' : m[1] === '::' ? '::1' : m[1]!;
const url = `http://${host.includes(':') ? `[${host}]` : host}:${m[2]}/healthz`;
try {
  const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
  process.exit(res.ok ? 0 : 1);
} catch (e) {
  process.stderr.write(`healthcheck: ${url}: ${(e as Error).message}\n`);
  process.exit(1);
}
