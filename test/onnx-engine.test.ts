/**
 * The ONNX Runtime engine in the worker, for real: in-process workers and `npm run worker`
 * processes against a real redis-server, the tiny tfjs model converted to ONNX on first start.
 * The engine's choice, its fallback to tfjs, a forced engine that cannot start (exit 2), and its
 * memory over thousands of inferences.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../dev/processes.ts';
import { startRedisServer, type RedisServerHandle } from '../dev/redis-server.ts';
import { parseWorkerConfig } from '../gpu-worker/config.ts';
import { selectBackend } from '../gpu-worker/engine/tfjs/backend.ts';
import { startWorker } from '../gpu-worker/worker.ts';
import { redisKeys } from '../shared/keys.ts';
import { createLogger } from '../shared/log.ts';
import { parseHeartbeats } from '../shared/protocol.ts';
import { spawnWorker } from './helpers/fixtures.ts';
import { JobQueue } from './helpers/job-queue.ts';
import { expectedPredictions, expectSamePredictions } from './helpers/predictions.ts';
import { createTinyModel, randomImage, saveModel, type TinyModel } from './helpers/tiny-model.ts';

const logger = createLogger('onnx-engine-test', process.env.TEST_LOG_LEVEL ?? 'silent');
let redis: RedisServerHandle;
let tiny: TinyModel;
/** A model with a layer ONNX has no conversion for here (UpSampling2D). */
let upsampling: { dir: string; env: Record<string, string> };
let prefixCounter = 0;
const nextPrefix = () => `onnx${process.pid}x${++prefixCounter}`;

beforeAll(async () => {
  await selectBackend('wasm'); // the tfjs side: making the models, and what they must answer
  [redis, tiny] = await Promise.all([startRedisServer(), createTinyModel({ seed: 11 })]);
  const input = tfl.input({ shape: [224, 224, 3] });
  let x = tfl.layers.conv2d({ filters: 4, kernelSize: 8, strides: 8, activation: 'relu' }).apply(input) as tfl.SymbolicTensor;
  x = tfl.layers.upSampling2d({ size: [2, 2], name: 'upsample' }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.globalAveragePooling2d({}).apply(x) as tfl.SymbolicTensor;
  const output = tfl.layers.dense({ units: 10, activation: 'softmax' }).apply(x) as tfl.SymbolicTensor;
  const model = tfl.model({ inputs: input, outputs: output });
  const dir = await saveModel(model, { labels: Array.from({ length: 10 }, (_, i) => `class_${i}`) });
  model.dispose();
  upsampling = { dir, env: { MODEL: dir, PREPROCESS: 'caffe', MODEL_CACHE_DIR: `${dir}-cache` } };
});

afterAll(async () => {
  await tiny?.cleanup();
  if (upsampling)
    await Promise.all([upsampling.dir, upsampling.env.MODEL_CACHE_DIR!].map((path) => rm(path, { recursive: true, force: true })));
  await redis?.stop();
});

describe('ENGINE=onnx in the worker', () => {
  it('answers jobs with what the tfjs model computes, and names engine, provider and threads in its heartbeat', async () => {
    const prefix = nextPrefix();
    const queue = await JobQueue.open(redis.url, prefix);
    const worker = startWorker(
      parseWorkerConfig({
        REDIS_URL: redis.url,
        KEY_PREFIX: prefix,
        ...tiny.env,
        ENGINE: 'onnx',
        BATCH_SIZE: '4',
        CONSUMER_NAME: `${prefix}-w`,
      }),
      { logger },
    );
    try {
      await worker.ready;
      const images = [1, 2, 3, 4, 5, 6].map((seed) => randomImage(seed));
      const ids = await Promise.all(images.map((image) => queue.enqueue(image)));
      const results = await queue.waitForResults(ids);
      ids.forEach((id, i) => {
        const result = results.get(id);
        if (!result?.ok) throw new Error(`expected a result, got ${JSON.stringify(result)}`);
        expectSamePredictions(result.predictions, expectedPredictions(tiny.model, tiny.labels, images[i]!));
      });
      const [beat] = parseHeartbeats(await queue.redis.hgetall(redisKeys(prefix).workers));
      expect(beat).toMatchObject({
        id: `${prefix}-w`,
        engine: 'onnx',
        provider: 'cpu',
        threads: availableParallelism(),
        backend: 'cpu',
        batchSize: 4,
      });
      expect(await queue.pendingCount()).toBe(0);
    } finally {
      await worker.stop();
      await queue.close();
    }
  });
});

describe('npm run worker: which engine', () => {
  it('with the defaults, ONNX Runtime on the CPU here: converted on the first start, read from the cache on the next', async () => {
    const cacheDir = await mkdtemp(join(tmpdir(), 'onnx-engine-cache-'));
    const prefix = nextPrefix();
    const env = { REDIS_URL: redis.url, KEY_PREFIX: prefix, ...tiny.env, MODEL_CACHE_DIR: cacheDir, METRICS_PORT: '0' };
    try {
      const first = spawnWorker(`${prefix}-1`, env);
      await first.tier.ready;
      await first.tier.stop();
      const selected = first.lines.find((line) => line.includes('] engine selected'));
      expect(selected).toContain('engine=onnx');
      expect(selected).toContain('provider=cpu');
      expect(selected).toContain(`threads=${availableParallelism()}`);
      expect(selected).toMatch(/detail=onnxruntime-node \d+\.\d+\.\d+, cpu execution provider/);
      expect(first.lines.find((line) => line.includes('] worker ready'))).toMatch(
        /engine=onnx provider=cpu threads=\d+ batchSize=8 maxBatchDelayMs=5/,
      );
      expect(first.lines.some((line) => line.includes('] model converted to ONNX'))).toBe(true);
      expect((await readdir(join(cacheDir, 'onnx'))).filter((name) => name.endsWith('.onnx'))).toHaveLength(1);

      const second = spawnWorker(`${prefix}-2`, env);
      await second.tier.ready;
      await second.tier.stop();
      expect(second.lines.some((line) => /converting the model|model converted/.test(line))).toBe(false);
      expect(second.lines.find((line) => line.includes('] engine selected'))).toContain('engine=onnx');
    } finally {
      await rm(cacheDir, { recursive: true, force: true });
    }
  });

  it('ENGINE=auto runs a model ONNX cannot take on tfjs, saying which layer, and serves it', async () => {
    const prefix = nextPrefix();
    const worker = spawnWorker(`${prefix}-w`, { REDIS_URL: redis.url, KEY_PREFIX: prefix, ...upsampling.env, METRICS_PORT: '0' });
    const queue = await JobQueue.open(redis.url, prefix);
    try {
      await worker.tier.ready;
      const skipped = worker.lines.filter((line) => line.includes('] engine skipped')).join('\n');
      expect(skipped).toMatch(
        /the model cannot be converted to ONNX: layer "upsample" \(UpSampling2D\): no ONNX conversion for UpSampling2D/,
      );
      expect(worker.lines.find((line) => line.includes('] engine selected'))).toMatch(/engine=tfjs provider=wasm/);
      const id = await queue.enqueue(randomImage(1));
      expect((await queue.waitForResults([id])).get(id)?.ok).toBe(true);
    } finally {
      await worker.tier.stop();
      await queue.close();
    }
  });

  it.each([
    [
      'ENGINE=onnx, a model ONNX cannot take',
      () => ({ ...upsampling.env, ENGINE: 'onnx' }),
      /ENGINE=onnx: nothing could start here: onnx \(tensorrt, cuda\): no execution provider of tensorrt, cuda is installed .*; onnx \(cpu\): the model cannot be converted to ONNX: layer "upsample" \(UpSampling2D\)/,
    ],
    [
      'EXECUTION_PROVIDER=cuda without the CUDA provider',
      () => ({ ...tiny.env, EXECUTION_PROVIDER: 'cuda' }),
      /EXECUTION_PROVIDER=cuda: nothing could start here: onnx \(cuda\): no execution provider of cuda is installed \(cuda: not installed \(onnxruntime-node has no libonnxruntime_providers_cuda\.so; on a GPU host: ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules\/onnxruntime-node\/script\/install\)\)/,
    ],
    [
      'BACKEND=tensorflow without libtensorflow',
      () => ({ ...tiny.env, BACKEND: 'tensorflow' }),
      /BACKEND=tensorflow: nothing could start here: tfjs \(tensorflow\): BACKEND=tensorflow: no native TensorFlow binding/,
    ],
  ])('%s: exits 2 with the reason', async (_what, env, reason) => {
    const prefix = nextPrefix();
    const worker = spawnWorker(`${prefix}-w`, { REDIS_URL: redis.url, KEY_PREFIX: prefix, METRICS_PORT: '0', ...env() });
    const { code } = await worker.exited;
    expect(code).toBe(2);
    expect(worker.lines.join('\n')).toMatch(reason);
    expect(worker.lines.join('\n')).toContain('FATAL worker failed');
  });
});

describe('memory', () => {
  it('one session per process: RSS stays flat over 2,000 inferences of the tiny model', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--expose-gc', '--import', 'tsx', 'test/helpers/onnx-memory.ts', JSON.stringify({ env: tiny.env, inferences: 2000 })],
      { cwd: REPO_ROOT, timeout: 120_000 },
    );
    const { engine, samples } = JSON.parse(stdout.trim().split('\n').at(-1)!) as {
      engine: { name: string };
      samples: { after: number; rssMb: number }[];
    };
    expect(engine.name).toBe('onnx');
    expect(samples.map((s) => s.after)).toEqual([250, 500, 750, 1000, 1250, 1500, 1750, 2000]);
    // 2,000 inferences of 1 and 4 images move 750 MB of input: a per-call leak of even one input
    // (150 KB) would add 150 MB between the halves. The allocator's noise is transient (the RSS of
    // this process swings by up to ~30 MB between samples with no trend, measured over 12,000
    // inferences), so the lowest sample of each half is compared.
    const low = (part: typeof samples) => Math.min(...part.map((s) => s.rssMb));
    const growth = low(samples.slice(4)) - low(samples.slice(0, 4));
    expect(growth, JSON.stringify(samples)).toBeLessThan(16);
  });
});
