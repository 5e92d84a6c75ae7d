/**
 * `npm run stress` against a real stack (redis-server, a worker with the tiny model, the Node
 * edge): it counts what it sent, by HTTP status and by the API's error code.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalEdge, useRedisServer, viaTcp } from './helpers/fixtures.ts';
import type { NodeEdge } from '../edge/node/server.ts';
import { selectBackend } from '../gpu-worker/engine/tfjs/backend.ts';
import { parseWorkerConfig } from '../gpu-worker/config.ts';
import { startWorker, type WorkerHandle } from '../gpu-worker/worker.ts';
import { createLogger } from '../shared/log.ts';
import { loadImages, runStress } from '../dev/stress.ts';
import { createTinyModel, type TinyModel } from './helpers/tiny-model.ts';
import { FIXTURES } from './helpers/images.ts';

const logger = createLogger('stress-test', 'silent');
const db = useRedisServer();
let tiny: TinyModel;
let worker: WorkerHandle;
const edges: NodeEdge[] = [];

beforeAll(async () => {
  await selectBackend('wasm');
  tiny = await createTinyModel();
  worker = startWorker(parseWorkerConfig({ REDIS_URL: db.url, ...tiny.env, PREPROCESS: 'caffe' }), { logger });
  await worker.ready;
});
afterAll(async () => {
  await Promise.all(edges.map((edge) => edge.close()));
  await worker?.stop();
  await tiny?.cleanup();
});

async function edge(env: Record<string, string> = {}) {
  const started = await startLocalEdge(viaTcp(db.url), logger, env);
  edges.push(started);
  return started;
}

describe('npm run stress', () => {
  it('loads a folder of images, or one file', async () => {
    expect((await loadImages(FIXTURES)).map((i) => i.name)).toContain('beagle.jpg');
    expect(await loadImages(`${FIXTURES}beagle.jpg`)).toHaveLength(1);
    await expect(loadImages('/nonexistent')).rejects.toThrow();
  });

  it('sends the requested count, cycling the images, and reports latency percentiles', async () => {
    const { url } = await edge();
    const summary = await runStress({ url, images: await loadImages(FIXTURES), requests: 24, concurrency: 4 });
    expect(summary.requests).toBe(24);
    expect(summary.byStatus).toEqual({ '200': 24 });
    expect(summary.byErrorCode).toEqual({});
    expect(summary.latencyMs.p50).toBeGreaterThan(0);
    expect(summary.latencyMs.max).toBeGreaterThanOrEqual(summary.latencyMs.p99);
    expect(summary.throughput).toBeGreaterThan(0);
  });

  it('counts refusals by status and error code', async () => {
    // No worker reads this prefix: one job fills the queue, the rest are refused or time out.
    const { url } = await edge({ KEY_PREFIX: 'stress-full', QUEUE_MAX: '1', DEADLINE_MS: '300' });
    const summary = await runStress({ url, images: await loadImages(`${FIXTURES}beagle.jpg`), requests: 12, concurrency: 4 });
    expect(summary.requests).toBe(12);
    expect((summary.byStatus['503'] ?? 0) + (summary.byStatus['504'] ?? 0)).toBe(12);
    expect(summary.byErrorCode.queue_full).toBe(summary.byStatus['503']);
    expect(summary.byErrorCode.deadline_exceeded).toBe(summary.byStatus['504']);
    expect(summary.byErrorCode.queue_full).toBeGreaterThan(0);
  });
});
