/**
 * End to end on real parts: redis-server, the local Upstash REST server, two gpu-worker processes
 * (tiny real tfjs model, so this runs in seconds), and the Node edge over HTTP, talking Upstash
 * REST (the production protocol) or, as a switch, ioredis. The expected predictions come from the
 * same model loaded in this process, so the test checks that the whole path delivers the numbers.
 */
import { readFile } from 'node:fs/promises';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeEdge } from '../edge/node/server.ts';
import { createSharpCodec } from '../edge/node/sharp-codec.ts';
import { probeImage } from '../edge/image/probe.ts';
import { TfjsClassifier } from '../gpu-worker/engine/tfjs/classifier.ts';
import { parseWorkerConfig } from '../gpu-worker/config.ts';
import { loadModel } from '../gpu-worker/engine/tfjs/load.ts';
import { redisKeys } from '../shared/keys.ts';
import { createLogger } from '../shared/log.ts';
import type { Prediction } from '../shared/protocol.ts';
import type { RedisServerHandle } from '../dev/redis-server.ts';
import { spawnWorker, startLocalEdge, viaRest, viaTcp, type WorkerProcess } from './helpers/fixtures.ts';
import type { TinyModel } from './helpers/tiny-model.ts';
import { FIXTURES } from './helpers/images.ts';
import { startBackbone, type Backbone } from './helpers/backbone.ts';

const TOKEN = 'e2e-test-token-0123456789';
const logger = createLogger('e2e', 'silent');
const FILES = [
  'beagle.jpg',
  'coral_cat_1080p.jpg',
  'caffe_cat_gray.jpg',
  'ort_horse_rgba.png',
  'ort_lion.png',
  'ort_golden_retriever.jpg',
  'tfjsx_tiger.jpeg',
  'rembg_sports_car_alpha.png',
];

let base: Backbone;
let redisServer: RedisServerHandle;
let redis: Redis;
let rest: Backbone['rest'];
let tiny: TinyModel;
let workers: WorkerProcess[] = [];
let edge: NodeEdge;
const images = new Map<string, Buffer>();
const expected = new Map<string, Prediction[]>();

const restEdge = (env: Record<string, string> = {}) => startLocalEdge(viaRest(rest, TOKEN), logger, env);

beforeAll(async () => {
  base = await startBackbone({ token: TOKEN, seed: 7 });
  ({ redisServer, redis, rest, tiny } = base);

  // The tiny model answers in well under a millisecond: a little delay per batch lets the
  // concurrent requests queue up behind it, so batches form as they would with a real model.
  const workerEnv = { REDIS_URL: redisServer.url, ...tiny.env, BATCH_SIZE: '4', INFERENCE_DELAY_MS: '40' };
  workers = [1, 2].map((i) => spawnWorker(`e2e-worker-${i}`, workerEnv));
  edge = await restEdge();

  // What the model says for each photo, computed here without queue or HTTP.
  const classifier = new TfjsClassifier(await loadModel(parseWorkerConfig({ ...tiny.env, PREPROCESS: 'caffe' })));
  const codec = createSharpCodec({ maxPixels: 40e6 });
  for (const file of FILES) {
    const bytes = await readFile(FIXTURES + file);
    images.set(file, bytes);
    const [predictions] = await classifier.classify([await codec.toTensor(bytes, probeImage(bytes, 40e6), 'squash')]);
    expected.set(file, predictions!);
  }
  classifier.dispose();
  await Promise.all(workers.map((w) => w.tier.ready));
});

afterAll(async () => {
  await edge?.close();
  await Promise.all(workers.map((w) => w.tier.stop()));
  await base?.stop();
});

function post(url: string, file: string, query = '') {
  const body = new FormData();
  body.append('image', new Blob([new Uint8Array(images.get(file)!)]), file);
  return fetch(`${url}/predict${query}`, { method: 'POST', body });
}

function expectPredictions(actual: Prediction[], file: string, top = 5) {
  const want = expected.get(file)!.slice(0, top);
  expect(actual.map((p) => p.label)).toEqual(want.map((p) => p.label));
  actual.forEach((p, i) => expect(p.probability).toBeCloseTo(want[i]!.probability, 5));
}

describe('POST /predict end to end', () => {
  it('classifies a multipart upload through Upstash REST, queue and worker', async () => {
    const response = await post(edge.url, 'beagle.jpg');
    expect(response.status).toBe(200);
    const body = await response.json();
    expect(body).toMatchObject({ success: true, model: expect.any(String), id: response.headers.get('x-request-id') });
    expectPredictions(body.predictions, 'beagle.jpg');
    for (const key of ['preprocessMs', 'queueMs', 'inferenceMs', 'totalMs']) expect(body.timings[key]).toBeGreaterThanOrEqual(0);
    expect(body.timings.totalMs).toBeGreaterThanOrEqual(body.timings.inferenceMs);
    // The result key was written with a TTL.
    const ttl = await redis.pttl(redisKeys().result(body.id));
    expect(ttl).toBeGreaterThan(0);
  });

  it('accepts a raw image/* body and ?top=k', async () => {
    const response = await fetch(`${edge.url}/predict?top=2`, {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: new Uint8Array(images.get('ort_lion.png')!),
    });
    expect(response.status).toBe(200);
    const body = await response.json();
    expect(body.predictions).toHaveLength(2);
    expectPredictions(body.predictions, 'ort_lion.png', 2);
  });

  it('answers 50 concurrent requests with 2 workers, each exactly once and correctly', async () => {
    const results = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const file = FILES[i % FILES.length]!;
        const response = await post(edge.url, file);
        return { file, status: response.status, body: await response.json() };
      }),
    );
    for (const { file, status, body } of results) {
      expect(status, JSON.stringify(body)).toBe(200);
      expectPredictions(body.predictions, file);
    }
    const ids = new Set(results.map((r) => r.body.id));
    expect(ids.size).toBe(50);
    // Every job got exactly one result key, nothing is left queued or pending.
    for (const id of ids) expect(await redis.exists(redisKeys().result(id))).toBe(1);
    expect(await redis.xlen(redisKeys().stream)).toBe(0);
    const [pending] = (await redis.xpending(redisKeys().stream, 'workers')) as [number];
    expect(pending).toBe(0);
    // Both workers took part, and batches formed.
    expect(new Set(results.map((r) => r.body.worker))).toEqual(new Set(['e2e-worker-1', 'e2e-worker-2']));
    expect(Math.max(...results.map((r) => r.body.batchSize))).toBeGreaterThan(1);
  });

  it('answers a batch request (several "image" files) in order, each image its own job, a bad one failing alone', async () => {
    const files = ['ort_lion.png', 'beagle.jpg', 'tfjsx_tiger.jpeg', 'coral_cat_1080p.jpg'];
    const body = new FormData();
    files.forEach((file, i) => {
      body.append('image', new Blob([new Uint8Array(images.get(file)!)]), file);
      if (i === 1) body.append('image', new Blob([new TextEncoder().encode('not an image at all')]), 'notes.txt');
    });
    const response = await fetch(`${edge.url}/predict?top=3`, { method: 'POST', body });
    expect(response.status).toBe(200);
    const answer = await response.json();
    expect(answer).toMatchObject({ success: true, id: response.headers.get('x-request-id') });
    expect(answer.results).toHaveLength(5);
    const [lion, beagle, text, tiger, cat] = answer.results;
    expect(text).toEqual({ success: false, error: { code: 'unsupported_media_type', message: expect.any(String) } });
    for (const [entry, file] of [
      [lion, files[0]!],
      [beagle, files[1]!],
      [tiger, files[2]!],
      [cat, files[3]!],
    ] as const) {
      expect(entry.success).toBe(true);
      expectPredictions(entry.predictions, file, 3);
    }
    // Separate jobs: one id (and one result key) per image, numbered in request order.
    expect([lion.id, beagle.id, tiger.id, cat.id]).toEqual([1, 2, 4, 5].map((n) => `${answer.id}-${n}`));
    for (const entry of [lion, beagle, tiger, cat]) expect(await redis.exists(redisKeys().result(entry.id))).toBe(1);
  });

  it('works the same over a direct ioredis connection (EDGE_BROKER=ioredis)', async () => {
    const direct = await startLocalEdge(viaTcp(redisServer.url), logger);
    try {
      const response = await post(direct.url, 'tfjsx_tiger.jpeg');
      expect(response.status).toBe(200);
      expectPredictions((await response.json()).predictions, 'tfjsx_tiger.jpeg');
    } finally {
      await direct.close();
    }
  });

  it('refuses with 503 + Retry-After when the queue is full, trims nothing, and answers 504 past the deadline', async () => {
    // A prefix no worker reads: jobs stay queued.
    const prefix = 'e2e-full';
    const full = await restEdge({ KEY_PREFIX: prefix, QUEUE_MAX: '2', DEADLINE_MS: '1500', RETRY_AFTER_S: '3' });
    try {
      const first = [post(full.url, 'beagle.jpg'), post(full.url, 'ort_lion.png')];
      // Let both be queued before the third arrives.
      for (let i = 0; i < 100 && (await redis.xlen(redisKeys(prefix).stream)) < 2; i++) await new Promise((r) => setTimeout(r, 10));
      const third = await post(full.url, 'tfjsx_tiger.jpeg');
      expect(third.status).toBe(503);
      expect(third.headers.get('retry-after')).toBe('3');
      expect((await third.json()).error.code).toBe('queue_full');
      expect(await redis.xlen(redisKeys(prefix).stream)).toBe(2);

      const started = Date.now();
      for (const response of await Promise.all(first)) {
        expect(response.status).toBe(504);
        expect((await response.json()).error.code).toBe('deadline_exceeded');
      }
      expect(Date.now() - started).toBeLessThan(3000);
      expect(await redis.xlen(redisKeys(prefix).stream)).toBe(2); // still there: never trimmed
    } finally {
      await full.close();
    }
  });
});
