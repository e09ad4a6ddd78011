// Owns /openapi.json: an OpenAPI 3.0 document built from the routes fastify registered
// and their JSON schemas (collected through the onRoute hook), so every route and
// schema in the code appears in the document and nothing else does.

import type { FastifyInstance, RouteOptions } from 'fastify';

type Json = Record<string, unknown>;
type Route = { method: string; url: string; schema: Json; mutating: boolean };

/** Fastify's JSON-schema-only keywords that OpenAPI 3.0's Schema Object does not have. */
function toOpenApiSchema(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(toOpenApiSchema);
  if (schema === null || typeof schema !== 'object') return schema;
  const out: Json = {};
  for (const [k, v] of Object.entries(schema as Json)) {
    if (k === 'type' && Array.isArray(v)) {
      // OpenAPI 3.0 spells ["string", "null"] as type + nullable.
      const types = v.filter((x) => x !== 'null');
      if (types.length === 1) out.type = types[0];
      else out.anyOf = types.map((type) => ({ type }));
      if (v.includes('null')) out.nullable = true;
    } else if (k === 'properties' || k === 'patternProperties') {
      out[k] = Object.fromEntries(Object.entries(v as Json).map(([p, s]) => [p, toOpenApiSchema(s)]));
    } else {
      out[k] = toOpenApiSchema(v);
    }
  }
  return out;
}

export class OpenApiCollector {
  private readonly routes: Route[] = [];
  private doc: Json | null = null;

  /** Call before registering routes: remembers every route fastify adds. */
  attach(app: FastifyInstance): void {
    app.addHook('onRoute', (r: RouteOptions) => {
      const methods = Array.isArray(r.method) ? r.method : [r.method];
      for (const method of methods) {
        if (method === 'HEAD' || !r.schema) continue; // HEAD twins of GET routes are implicit
        const mutating = (r.config as { mutating?: boolean } | undefined)?.mutating === true;
        this.routes.push({ method: method.toLowerCase(), url: r.url, schema: r.schema as Json, mutating });
      }
    });
  }

  document(info: { title: string; version: string; description: string }): Json {
    this.doc ??= this.build(info);
    return this.doc;
  }

  private build(info: { title: string; version: string; description: string }): Json {
    const paths: Record<string, Json> = {};
    for (const r of this.routes) {
      const path = r.url.replace(/:(\w+)/g, '{$1}');
      const op: Json = { summary: r.schema.summary, operationId: `${r.method}${path.replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ?? '').toUpperCase())}` };
      const parameters: Json[] = [];
      for (const [where, key] of [['path', 'params'], ['query', 'querystring']] as const) {
        const s = r.schema[key] as { properties?: Json; required?: string[] } | undefined;
        for (const [name, schema] of Object.entries(s?.properties ?? {})) {
          parameters.push({ name, in: where, required: where === 'path' || (s?.required ?? []).includes(name), schema: toOpenApiSchema(schema) });
        }
      }
      if (parameters.length > 0) op.parameters = parameters;
      if (r.schema.body) {
        op.requestBody = { required: true, content: { 'application/json': { schema: toOpenApiSchema(r.schema.body) } } };
      }
      const responses: Json = {};
      for (const [code, schema] of Object.entries((r.schema.response ?? {}) as Record<string, Json>)) {
        const type = r.url === '/metrics' && code === '200' ? 'text/plain' : 'application/json';
        responses[code] = { description: String(schema.description ?? 'Response'), content: { [type]: { schema: toOpenApiSchema(schema) } } };
      }
      op.responses = responses;
      if (r.mutating) op.security = [{ bearerAuth: [] }];
      paths[path] = { ...paths[path], [r.method]: op };
    }
    return {
      openapi: '3.0.3',
      info,
      paths,
      components: {
        securitySchemes: {
          bearerAuth: {
            type: 'http', scheme: 'bearer',
            description: 'The admin token (admin_token or admin_token_file); without one, mutating routes answer 403.',
          },
        },
      },
    };
  }
}
