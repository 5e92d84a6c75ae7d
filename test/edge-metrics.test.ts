/**
 * The Node edge's Prometheus metrics (EDGE_METRICS_PORT): a real edge over TCP to a real Redis,
 * with a real worker (synthetic model) answering; every outcome is counted by route, status and
 * API error code, on its own port, and the API's port does not serve them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../dev/redis-server.ts';
import type { NodeEdge } from '../edge/node/server.ts';
import { parseWorkerConfig } from '../gpu-worker/config.ts';
import { startWorker, type WorkerHandle } from '../gpu-worker/worker.ts';
import { createLogger } from '../shared/log.ts';
import { colourPng, predict } from './helpers/faults.ts';
import { startLocalEdge, useRedisServer, viaTcp } from './helpers/fixtures.ts';

const logger = createLogger('edge-metrics-test', 'silent');
const db = useRedisServer();
let edge: NodeEdge;
let worker: WorkerHandle;
let metricsPort: number;

beforeAll(async () => {
  metricsPort = await freePort();
  worker = startWorker(parseWorkerConfig({ REDIS_URL: db.url, KEY_PREFIX: 'em', MODEL: 'synthetic:instant', METRICS_PORT: '0' }), {
    logger,
  });
  await worker.ready;
  edge = await startLocalEdge(viaTcp(db.url), logger, { KEY_PREFIX: 'em', EDGE_METRICS_PORT: String(metricsPort) });
});
afterAll(async () => {
  await edge?.close();
  await worker?.stop();
});

describe('Node edge metrics (EDGE_METRICS_PORT)', () => {
  it('counts each answer by route, status and error code, on its own port', async () => {
    expect((await predict(edge.url, await colourPng(3))).status).toBe(200);
    expect((await predict(edge.url, new TextEncoder().encode('not an image'))).status).toBe(415);
    expect((await fetch(`${edge.url}/readyz`)).status).toBe(200);
    expect((await fetch(`${edge.url}/no/such/path`)).status).toBe(404);
    expect((await fetch(`${edge.url}/metrics`)).status).toBe(404); // not on the API's port

    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const count = (labels: string) => Number(text.match(new RegExp(`^resnet_edge_requests_total\\{${labels}\\} (\\d+)$`, 'm'))?.[1]);
    expect(count('route="/predict",status="200",code="ok"')).toBe(1);
    expect(count('route="/predict",status="415",code="unsupported_media_type"')).toBe(1);
    expect(count('route="/readyz",status="200",code="ok"')).toBe(1);
    expect(count('route="other",status="404",code="not_found"')).toBe(2);
    expect(text).toMatch(/^resnet_edge_request_duration_seconds_count\{route="\/predict"\} 2$/m);
    expect(text).toMatch(/^process_cpu_seconds_total /m);
  });
});
