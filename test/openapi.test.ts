/**
 * GET /openapi.json: a valid OpenAPI 3 document (swagger-parser), listing every route the app
 * serves, and true to what the edge answers: real answers from a real stack (redis-server, a worker
 * with the instant synthetic model, the Node edge over HTTP) must parse with the documented schemas,
 * with a status the document lists for that route.
 */
import { readFile } from 'node:fs/promises';
import SwaggerParser from '@apidevtools/swagger-parser';
import type { z } from '@hono/zod-openapi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnWorker, startLocalEdge, useRedisServer, viaTcp, type WorkerProcess } from './helpers/fixtures.ts';
import { createApp } from '../edge/app.ts';
import { parseEdgeConfig } from '../edge/config.ts';
import type { NodeEdge } from '../edge/node/server.ts';
import { BatchResult, ErrorBody, Health, Models, PredictionResult, Ready, ServiceInfo } from '../edge/openapi.ts';
import { createLogger } from '../shared/log.ts';
import { FIXTURES } from './helpers/images.ts';

interface Operation {
  responses: Record<string, unknown>;
}
type Document = { openapi: string; paths: Record<string, Record<string, Operation>> };

const db = useRedisServer();
let worker: WorkerProcess;
let edge: NodeEdge;
let doc: Document;
let beagle: Buffer;

beforeAll(async () => {
  worker = spawnWorker('openapi-worker', { REDIS_URL: db.url, MODEL: 'synthetic:instant', METRICS_PORT: '0' });
  edge = await startLocalEdge(viaTcp(db.url), createLogger('test', 'silent'));
  await worker.tier.ready;
  doc = (await (await fetch(`${edge.url}/openapi.json`)).json()) as Document;
  beagle = await readFile(`${FIXTURES}beagle.jpg`);
}, 60_000);

afterAll(async () => {
  await edge?.close();
  await worker?.tier.stop();
});

/** The response `schema` parses `body`, and the document lists `status` for `method path`. */
async function expectDocumented(response: Response, method: string, path: string, schema: z.ZodType) {
  const body = await response.json();
  expect(Object.keys(doc.paths[path]?.[method]?.responses ?? {}), `${method.toUpperCase()} ${path}`).toContain(String(response.status));
  const parsed = schema.safeParse(body);
  expect(
    parsed.success,
    `${method.toUpperCase()} ${path} ${response.status}: ${JSON.stringify(parsed.error?.issues)} in ${JSON.stringify(body).slice(0, 300)}`,
  ).toBe(true);
}

const upload = (...files: [Uint8Array, string][]) => {
  const form = new FormData();
  for (const [bytes, name] of files) form.append('image', new Blob([new Uint8Array(bytes)]), name);
  return { method: 'POST', body: form };
};

describe('GET /openapi.json', () => {
  it('is a valid OpenAPI 3 document', async () => {
    expect(doc.openapi).toMatch(/^3\./);
    await expect(SwaggerParser.validate(structuredClone(doc) as never)).resolves.toBeDefined();
  });

  it('documents every route the app serves, and no other', () => {
    const app = createApp({ codec: {} as never, broker: {} as never, config: parseEdgeConfig({ REDIS_URL: db.url }) });
    // Middleware (`ALL /*`) and the 405 answer for other methods on /predict are not operations.
    const served = app.routes.filter((r) => r.method !== 'ALL').map((r) => `${r.method.toLowerCase()} ${r.path}`);
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((method) => `${method} ${path}`));
    expect(new Set(documented)).toEqual(new Set(served));
  });

  it('describes the query POST /predict validates with', () => {
    const params = (doc.paths['/predict']!.post as unknown as { parameters: { name: string; schema: { maximum?: number } }[] }).parameters;
    expect(params.map((p) => p.name)).toEqual(['top', 'resize']);
    expect(params[0]!.schema.maximum).toBe(20);
  });
});

describe('real answers match the document', () => {
  it('POST /predict, one image', async () => {
    await expectDocumented(await fetch(`${edge.url}/predict`, upload([beagle, 'beagle.jpg'])), 'post', '/predict', PredictionResult);
  });

  it('POST /predict, a batch with a bad entry', async () => {
    const response = await fetch(`${edge.url}/predict?top=2`, upload([beagle, 'a.jpg'], [new TextEncoder().encode('text'), 'b.txt']));
    await expectDocumented(response.clone(), 'post', '/predict', BatchResult);
    expect((await response.json()).results.map((r: { success: boolean }) => r.success)).toEqual([true, false]);
  });

  it('POST /predict errors: 400, 413, 415', async () => {
    await expectDocumented(await fetch(`${edge.url}/predict?top=99`, upload([beagle, 'a.jpg'])), 'post', '/predict', ErrorBody);
    await expectDocumented(
      await fetch(`${edge.url}/predict`, {
        method: 'POST',
        headers: { 'content-type': 'image/jpeg' },
        body: new Uint8Array(11 * 1024 * 1024),
      }),
      'post',
      '/predict',
      ErrorBody,
    );
    await expectDocumented(
      await fetch(`${edge.url}/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }),
      'post',
      '/predict',
      ErrorBody,
    );
  });

  it('GET /, /healthz, /readyz, /v1/models', async () => {
    await expectDocumented(await fetch(`${edge.url}/`), 'get', '/', ServiceInfo);
    await expectDocumented(await fetch(`${edge.url}/healthz`), 'get', '/healthz', Health);
    await expectDocumented(await fetch(`${edge.url}/readyz`), 'get', '/readyz', Ready);
    const models = await fetch(`${edge.url}/v1/models`);
    await expectDocumented(models.clone(), 'get', '/v1/models', Models);
    expect((await models.json()).models[0].workers[0].id).toBe('openapi-worker');
  });
});
