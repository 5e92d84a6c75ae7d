/**
 * The synthetic models (MODEL=synthetic:instant, synthetic:timer:<ms>) against a real redis-server:
 * a `npm run worker` process that loads no engine, and in-process workers whose timer model
 * holds each batch for its delay. Jobs are enqueued exactly as the edge does (enqueue-1.lua).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisServer, type RedisServerHandle } from '../dev/redis-server.ts';
import { defaultBatchSize, parseWorkerConfig } from '../gpu-worker/config.ts';
import { SyntheticClassifier } from '../gpu-worker/engine/synthetic.ts';
import { startWorker, type BatchReport } from '../gpu-worker/worker.ts';
import { ConfigError } from '../shared/config.ts';
import { createLogger } from '../shared/log.ts';
import { TENSOR_BYTES } from '../shared/tensor.ts';
import { spawnWorker } from './helpers/fixtures.ts';
import { JobQueue } from './helpers/job-queue.ts';
import { randomImage } from './helpers/tiny-model.ts';

const logger = createLogger('synthetic-test', process.env.TEST_LOG_LEVEL ?? 'silent');
let redis: RedisServerHandle;
let counter = 0;
const nextPrefix = () => `syn${process.pid}x${++counter}`;

beforeAll(async () => {
  redis = await startRedisServer();
});

afterAll(async () => {
  await redis?.stop();
});

describe('config', () => {
  it('parses synthetic:instant and synthetic:timer:<ms> without PREPROCESS; batches 32 unless BATCH_SIZE is set', () => {
    expect(parseWorkerConfig({ MODEL: 'synthetic:instant' })).toMatchObject({
      model: { kind: 'synthetic', delayMs: 0 },
      modelName: 'synthetic:instant',
    });
    expect(parseWorkerConfig({ MODEL: 'synthetic:timer:50' })).toMatchObject({
      model: { kind: 'synthetic', delayMs: 50 },
      modelName: 'synthetic:timer:50',
    });
    expect(defaultBatchSize(new SyntheticClassifier({ delayMs: 0 }).engine)).toBe(32);
  });

  it.each(['synthetic:', 'synthetic:timer', 'synthetic:timer:-1', 'synthetic:timer:1.5', 'synthetic:timer:600001', 'synthetic:gpu'])(
    'rejects MODEL=%s naming the accepted forms',
    (value) => {
      expect(() => parseWorkerConfig({ MODEL: value })).toThrow(ConfigError);
      expect(() => parseWorkerConfig({ MODEL: value })).toThrow(/MODEL: expected synthetic:instant or synthetic:timer:<ms>/);
    },
  );
});

describe('SyntheticClassifier', () => {
  it('gives the same distinct top-k for the same tensor, different ones for different tensors, at once', async () => {
    const classifier = new SyntheticClassifier({ delayMs: 0 });
    const [a, b] = [randomImage(1), randomImage(2)];
    const run = await classifier.classifyWithStats([a, b, a], 20);
    const [pa, pb, pa2] = run.predictions;
    expect(pa).toEqual(pa2);
    expect(pa).not.toEqual(pb);
    expect(new Set(pa!.map((p) => p.label)).size).toBe(20);
    expect(pa![0]!.label).toMatch(/^class_\d+$/);
    expect(pa!.map((p) => p.probability)).toEqual([...pa!.map((p) => p.probability)].sort((x, y) => y - x));
    expect(run.inferenceMs).toBeLessThan(50);
    await expect(classifier.classifyWithStats([new Uint8Array(TENSOR_BYTES - 1)])).rejects.toThrow(RangeError);
  });
});

describe('worker with a synthetic model', () => {
  it('npm run worker with synthetic:instant: no engine loaded, ready log says synthetic, a job in, a result out', async () => {
    const prefix = nextPrefix();
    const worker = spawnWorker(`${prefix}-w`, { REDIS_URL: redis.url, KEY_PREFIX: prefix, MODEL: 'synthetic:instant' });
    const queue = await JobQueue.open(redis.url, prefix);
    try {
      await worker.tier.ready;
      const ready = worker.lines.find((line) => line.includes('] worker ready'));
      expect(ready).toContain('model=synthetic:instant');
      expect(ready).toContain('synthetic=true');
      expect(ready).toContain('engine=synthetic');
      expect(ready).toContain('batchSize=32');
      expect(worker.lines.some((line) => /engine selected|model loaded|model warmed up|converting/.test(line))).toBe(false);

      const image = randomImage(3);
      const id = await queue.enqueue(image, { enc: 'b64' });
      const result = (await queue.waitForResults([id])).get(id);
      const expected = (await new SyntheticClassifier({ delayMs: 0 }).classifyWithStats([image])).predictions[0];
      expect(result).toMatchObject({ ok: true, id, model: 'synthetic:instant', batchSize: 1, predictions: expected });
    } finally {
      await queue.close();
      await worker.tier.stop();
    }
  });

  it('synthetic:timer:<ms> holds each batch for its delay, whatever its size', async () => {
    const prefix = nextPrefix();
    const batches: BatchReport[] = [];
    const config = parseWorkerConfig({
      REDIS_URL: redis.url,
      KEY_PREFIX: prefix,
      MODEL: 'synthetic:timer:150',
      BATCH_SIZE: '4',
      MAX_BATCH_DELAY_MS: '20',
      CONSUMER_NAME: `${prefix}-w`,
    });
    const queue = await JobQueue.open(redis.url, prefix);
    // A backlog first, so the first read takes a full batch of 4, then one more.
    for (let i = 0; i < 5; i++) await queue.enqueue(randomImage(10 + i));
    const worker = startWorker(config, { logger, onBatch: (report) => batches.push(report) });
    try {
      const started = Date.now();
      await worker.ready;
      await waitFor(() => batches.reduce((n, b) => n + b.answered, 0) === 5);
      expect(batches.map((b) => b.size)).toEqual([4, 1]);
      for (const batch of batches) expect(batch.inferenceMs).toBeGreaterThanOrEqual(149);
      expect(Date.now() - started).toBeGreaterThanOrEqual(300);
      const one = await queue.enqueue(randomImage(20));
      const sent = Date.now();
      const result = (await queue.waitForResults([one])).get(one);
      expect(Date.now() - sent).toBeGreaterThanOrEqual(149);
      expect(result).toMatchObject({ ok: true, model: 'synthetic:timer:150', batchSize: 1 });
      if (result?.ok) expect(result.inferenceMs).toBeGreaterThanOrEqual(149);
    } finally {
      await worker.stop();
      await queue.close();
    }
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
