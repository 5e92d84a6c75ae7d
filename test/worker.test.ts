/**
 * The gpu-worker against a real redis-server, with a tiny real tfjs model (test/helpers/tiny-model.ts)
 * on the wasm backend. Jobs are enqueued exactly as the edge does (enqueue-1.lua).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisServer, type RedisServerHandle } from '../dev/redis-server.ts';
import { selectBackend, BackendError, type SelectedBackend } from '../gpu-worker/engine/tfjs/backend.ts';
import { TfjsClassifier } from '../gpu-worker/engine/tfjs/classifier.ts';
import { parseWorkerConfig } from '../gpu-worker/config.ts';
import { loadModel } from '../gpu-worker/engine/tfjs/load.ts';
import { preprocess } from '../gpu-worker/engine/tfjs/preprocess.ts';
import { ModelLoadError, parseLabels } from '../gpu-worker/model/files.ts';
import type { PreprocessMode } from '../gpu-worker/model/preprocess.ts';
import { startWorker, type BatchReport, type WorkerHandle } from '../gpu-worker/worker.ts';
import { createLogger } from '../shared/log.ts';
import type { JobResult } from '../shared/protocol.ts';
import { TENSOR_BYTES } from '../shared/tensor.ts';
import { JobQueue } from './helpers/job-queue.ts';
import { expectedPredictions, expectSamePredictions } from './helpers/predictions.ts';
import { createTinyModel, randomImage, type TinyModel } from './helpers/tiny-model.ts';

const logger = createLogger('gpu-worker-test', process.env.TEST_LOG_LEVEL ?? 'silent');
const ROOT = new URL('..', import.meta.url).pathname;

let redis: RedisServerHandle;
let tiny: TinyModel;
let backend: SelectedBackend;
let listenersBefore: { uncaught: NodeJS.UncaughtExceptionListener[]; rejection: NodeJS.UnhandledRejectionListener[] };
let prefixCounter = 0;
const nextPrefix = () => `t${process.pid}x${++prefixCounter}`;

beforeAll(async () => {
  listenersBefore = { uncaught: process.listeners('uncaughtException'), rejection: process.listeners('unhandledRejection') };
  [redis, backend] = await Promise.all([startRedisServer(), selectBackend('auto')]);
  tiny = await createTinyModel();
});

afterAll(async () => {
  await tiny?.cleanup();
  await redis?.stop();
});

function configFor(prefix: string, env: Record<string, string> = {}) {
  return parseWorkerConfig({
    REDIS_URL: redis.url,
    KEY_PREFIX: prefix,
    ...tiny.env,
    PREPROCESS: 'caffe',
    BACKEND: 'wasm',
    BATCH_SIZE: '8',
    MAX_BATCH_DELAY_MS: '20',
    RESULT_TTL_MS: '60000',
    CONSUMER_NAME: `${prefix}-w`,
    ...env,
  });
}

/** Start a worker that records its batch reports; resolves once it is ready. */
async function runWorker(prefix: string, env: Record<string, string> = {}, classifier?: TfjsClassifier) {
  const batches: BatchReport[] = [];
  const worker = startWorker(configFor(prefix, env), { logger, classifier, onBatch: (report) => batches.push(report) });
  await worker.ready;
  return { worker, batches };
}

function okResult(result: JobResult | undefined) {
  if (!result?.ok) throw new Error(`expected a successful result, got ${JSON.stringify(result)}`);
  return result;
}

describe('backend choice', () => {
  it('falls back to wasm here, reporting why the native bindings cannot be used', () => {
    expect(backend.name).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    // Absent, or (npm ci runs no install script) present without libtensorflow and its binding.
    const missing = expect.stringMatching(
      /^(not installed|installed without its native binding \(its install script, which downloads libtensorflow, has not run: .*\))$/,
    );
    expect(backend.skipped).toEqual([
      { package: '@tensorflow/tfjs-node-gpu', reason: missing },
      { package: '@tensorflow/tfjs-node', reason: missing },
    ]);
  });

  it('leaves no re-throwing process listeners behind from the wasm runtime', () => {
    expect(process.listeners('uncaughtException')).toEqual(listenersBefore.uncaught);
    expect(process.listeners('unhandledRejection')).toEqual(listenersBefore.rejection);
  });

  it('skips a native package that is installed but broken, whatever it throws', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'broken-binding-'));
    const broken = join(dir, 'broken.mjs');
    await writeFile(broken, "throw new Error('libtensorflow.so.2: cannot open shared object file');\n");
    try {
      const chosen = await selectBackend('auto', { nativePackages: [broken] });
      expect(chosen.name).toBe('wasm');
      expect(chosen.skipped[0]?.reason).toContain('libtensorflow.so.2: cannot open shared object file');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses BACKEND=tensorflow when no native binding loads, naming why', async () => {
    const error = await selectBackend('tensorflow').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendError);
    expect((error as Error).message).toMatch(
      /@tensorflow\/tfjs-node-gpu: (not installed|installed without its native binding .*); @tensorflow\/tfjs-node: (not installed|installed without its native binding .*)/,
    );
    expect(tf.getBackend()).toBe('wasm');
  });
});

describe('config', () => {
  it('npm run worker prints the problem and exits with code 2 on bad config', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'gpu-worker/main.ts'], {
      cwd: ROOT,
      env: { ...process.env, BATCH_SIZE: '-1', BACKEND: 'quantum' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const [code] = (await once(child, 'exit')) as [number];
    expect(code).toBe(2);
    expect(stderr).toContain('Invalid configuration:');
    expect(stderr).toMatch(/BATCH_SIZE: expected an integer/);
    expect(stderr).toMatch(/BACKEND: expected one of/);
  });
});

describe('model loading', () => {
  it('loads the sharded model from a directory, with its labels, and checks its shape', async () => {
    const loaded = await loadModel(configFor('unused'));
    try {
      expect(loaded.labels).toEqual(tiny.labels);
      expect(loaded.paramCount).toBe(tiny.model.countParams());
      expect(loaded.outputsProbabilities).toBe(true);
      expect(loaded.name).toBe(tiny.dir.split('/').at(-1));
    } finally {
      loaded.model.dispose();
    }
  });

  it('loads a model from an http URL, with labels.json found next to model.json', async () => {
    const server: Server = createServer(async (req, res) => {
      try {
        res.end(await readFile(join(tiny.dir, req.url!.replace('/models/tiny/', ''))));
      } catch {
        res.statusCode = 404;
        res.end();
      }
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as { port: number };
    try {
      const loaded = await loadModel(configFor('unused', { MODEL: `http://127.0.0.1:${port}/models/tiny/model.json` }));
      const classifier = new TfjsClassifier(loaded);
      const image = randomImage(7);
      expectSamePredictions((await classifier.classify([image]))[0]!, expectedPredictions(tiny.model, tiny.labels, image));
      expect(loaded.name).toBe('tiny');
      classifier.dispose();
    } finally {
      server.close();
    }
  });

  it('accepts labels as an array, an object keyed "0".."N-1", or Keras [wnid, name] pairs', () => {
    expect(parseLabels(['a', 'b'])).toEqual(['a', 'b']);
    expect(parseLabels({ 1: 'b', 0: 'a' })).toEqual(['a', 'b']);
    expect(parseLabels({ 0: ['n01440764', 'tench'], 1: ['n01443537', 'goldfish'] })).toEqual(['tench', 'goldfish']);
    expect(() => parseLabels({ 0: 'a', 2: 'c' })).toThrow(/keys "0".."1"/);
    expect(() => parseLabels([])).toThrow(/no labels/);
  });

  it('explains a missing labels file, a class-count mismatch and a wrong input shape', async () => {
    const unlabelled = await createTinyModel({ labels: 'none' });
    const wrongInput = await createTinyModel({ inputShape: [32, 32, 3] });
    const dir = await mkdtemp(join(tmpdir(), 'labels-'));
    try {
      await expect(loadModel(configFor('x', { MODEL: unlabelled.dir }))).rejects.toThrow(
        /could not read labels from .*labels\.json.*set LABELS/,
      );
      await writeFile(join(dir, 'three.json'), JSON.stringify(['a', 'b', 'c']));
      await expect(loadModel(configFor('x', { ...tiny.env, LABELS: join(dir, 'three.json') }))).rejects.toThrow(
        /outputs 10 classes but there are 3 labels/,
      );
      await expect(loadModel(configFor('x', { MODEL: wrongInput.dir }))).rejects.toThrow(ModelLoadError);
      await expect(loadModel(configFor('x', { MODEL: wrongInput.dir }))).rejects.toThrow(/\[null,224,224,3\].*\[null,32,32,3\]/);
      await expect(loadModel(configFor('x', { MODEL: join(dir, 'nothing-here') }))).rejects.toThrow(/could not read .*model\.json/);
    } finally {
      await Promise.all([unlabelled.cleanup(), wrongInput.cleanup(), rm(dir, { recursive: true, force: true })]);
    }
  });

  it('applies softmax when the model outputs logits', async () => {
    const logits = await createTinyModel({ softmax: false, seed: 3 });
    const loaded = await loadModel(configFor('x', { MODEL: logits.dir }));
    const classifier = new TfjsClassifier(loaded);
    try {
      expect(loaded.outputsProbabilities).toBe(false);
      const image = randomImage(11);
      const [predictions] = await classifier.classify([image]);
      expect(predictions!.reduce((sum, p) => sum + p.probability, 0)).toBeCloseTo(1, 5);
      expectSamePredictions(predictions!, expectedPredictions(logits.model, logits.labels, image, false));
    } finally {
      classifier.dispose();
      await logits.cleanup();
    }
  });
});

describe('preprocessing', () => {
  const pixel = [10, 128, 250]; // R, G, B
  it.each<[PreprocessMode, number[]]>([
    ['caffe', [250 - 103.939, 128 - 116.779, 10 - 123.68]],
    ['tf', [10 / 127.5 - 1, 128 / 127.5 - 1, 250 / 127.5 - 1]],
    ['torch', [(10 / 255 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (250 / 255 - 0.406) / 0.225]],
    ['none', [10, 128, 250]],
  ])('%s', (mode, expected) => {
    const out = tf.tidy(() => preprocess(tf.tensor4d(pixel, [1, 1, 1, 3]), mode).dataSync());
    Array.from(out).forEach((value, i) => expect(value).toBeCloseTo(expected[i]!, 4));
  });
});

describe('worker loop', () => {
  it('answers raw, z85 and b64 jobs with the model predictions: result key with TTL + publish, entries gone', async () => {
    const prefix = nextPrefix();
    const queue = await JobQueue.open(redis.url, prefix);
    const tensorsAtStart = tf.memory().numTensors;
    const { worker, batches } = await runWorker(prefix);
    try {
      const images = [1, 2, 3, 4, 5, 6].map((seed) => randomImage(seed));
      const encodings = ['raw', 'z85', 'b64'] as const;
      const ids = await Promise.all(images.map((image, i) => queue.enqueue(image, { enc: encodings[i % 3] })));
      const results = await queue.waitForResults(ids);
      for (const [i, id] of ids.entries()) {
        const result = okResult(results.get(id));
        expect(result).toMatchObject({ id, model: tiny.dir.split('/').at(-1), worker: `${prefix}-w` });
        expectSamePredictions(result.predictions, expectedPredictions(tiny.model, tiny.labels, images[i]!));
        expect(result.queueMs).toBeGreaterThanOrEqual(0);
        expect(result.inferenceMs).toBeGreaterThan(0);
        const stored = await queue.redis.get(queue.keys.result(id));
        expect(stored).toBe(queue.published.get(queue.keys.resultChannel(id))![0]);
        const ttl = await queue.redis.pttl(queue.keys.result(id));
        expect(ttl).toBeGreaterThan(50_000);
        expect(ttl).toBeLessThanOrEqual(60_000);
      }
      expect(await queue.redis.xlen(queue.keys.stream)).toBe(0);
      expect(await queue.pendingCount()).toBe(0);
      for (const batch of batches) expect(batch.tensorsAfter).toBe(batch.tensorsBefore);
    } finally {
      await worker.stop();
      await queue.close();
    }
    // The worker loaded its own copy of the model and disposed it on stop.
    expect(tf.memory().numTensors).toBe(tensorsAtStart);
  });

  it('forms batches: a backlog is read BATCH_SIZE at a time, and a partial batch waits MAX_BATCH_DELAY_MS', async () => {
    const prefix = nextPrefix();
    const queue = await JobQueue.open(redis.url, prefix);
    const backlog = await Promise.all(Array.from({ length: 12 }, (_, i) => queue.enqueue(randomImage(100 + i))));
    const { worker, batches } = await runWorker(prefix, { MAX_BATCH_DELAY_MS: '400' });
    try {
      const results = await queue.waitForResults(backlog);
      expect(backlog.map((id) => okResult(results.get(id)).batchSize)).toEqual([...Array(8).fill(8), ...Array(4).fill(4)]);

      // Two jobs 100 ms apart land in one batch: the first waits for company up to 400 ms.
      const first = await queue.enqueue(randomImage(200));
      await new Promise((resolve) => setTimeout(resolve, 100));
      const second = await queue.enqueue(randomImage(201));
      const pair = await queue.waitForResults([first, second]);
      expect(okResult(pair.get(first)).batchSize).toBe(2);
      expect(okResult(pair.get(second)).batchSize).toBe(2);
      expect(batches.map((b) => b.live)).toEqual([8, 4, 2]);
      for (const batch of batches) expect(batch.tensorsAfter).toBe(batch.tensorsBefore);
    } finally {
      await worker.stop();
      await queue.close();
    }
  });

  it('skips jobs past their deadline: no compute, no result, entry acked and deleted', async () => {
    const prefix = nextPrefix();
    const queue = await JobQueue.open(redis.url, prefix);
    const expired = await Promise.all([1, 2, 3].map((seed) => queue.enqueue(randomImage(seed), { deadlineInMs: -1 })));
    const live = await queue.enqueue(randomImage(4));
    const { worker, batches } = await runWorker(prefix);
    try {
      await queue.waitForResults([live]);
      expect(batches).toHaveLength(1);
      expect(batches[0]).toMatchObject({ size: 4, live: 1, expired: 3, answered: 1 });
      for (const id of expired) {
        expect(await queue.redis.exists(queue.keys.result(id))).toBe(0);
        expect(queue.results(id)).toEqual([]);
      }
      expect(await queue.redis.xlen(queue.keys.stream)).toBe(0);
      expect(await queue.pendingCount()).toBe(0);
      expect(worker.stats().expired).toBe(3);
    } finally {
      await worker.stop();
      await queue.close();
    }
  });

  it('answers malformed tensors with bad_request and keeps serving', async () => {
    const prefix = nextPrefix();
    const queue = await JobQueue.open(redis.url, prefix);
    const { worker } = await runWorker(prefix);
    try {
      const short = await queue.enqueue(randomImage(1), { rawTensorField: new Uint8Array(100) });
      const longB64 = await queue.enqueue(randomImage(1), {
        enc: 'b64',
        rawTensorField: Buffer.alloc(TENSOR_BYTES + 3).toString('base64'),
      });
      const junkB64 = await queue.enqueue(randomImage(1), { enc: 'b64', rawTensorField: '!'.repeat(200_704) });
      const shortZ85 = await queue.enqueue(randomImage(1), { enc: 'z85', rawTensorField: '0'.repeat(188_155) });
      // Right length, one character outside the alphabet (a quote), and a group over 32 bits ('%nSc1' = 2^32).
      const quoteZ85 = await queue.enqueue(randomImage(1), { enc: 'z85', rawTensorField: `${'0'.repeat(188_159)}"` });
      const overflowZ85 = await queue.enqueue(randomImage(1), { enc: 'z85', rawTensorField: `%nSc1${'0'.repeat(188_155)}` });
      const unknownEnc = await queue.enqueue(randomImage(1), { enc: 'b85' as 'z85' });
      const good = await queue.enqueue(randomImage(5));
      const malformed = [short, longB64, junkB64, shortZ85, quoteZ85, overflowZ85, unknownEnc];
      const results = await queue.waitForResults([...malformed, good]);
      for (const id of malformed) {
        expect(results.get(id)).toMatchObject({ ok: false, id, error: { code: 'bad_request' }, worker: `${prefix}-w` });
      }
      const message = (id: string) => (results.get(id) as { error: { message: string } }).error.message;
      expect(message(short)).toMatch(/expected 150528 bytes .* got 100/);
      expect(message(shortZ85)).toMatch(/expected 188160 Z85 characters \(150528 bytes\), got 188155/);
      expect(message(quoteZ85)).toMatch(/not Z85 text .*byte 34 at 188159 is outside the alphabet/);
      expect(message(overflowZ85)).toMatch(/not Z85 text .*exceeds 32 bits/);
      expect(message(unknownEnc)).toMatch(/enc must be raw, z85 or b64, got "b85"/);
      okResult(results.get(good));

      const after = await queue.enqueue(randomImage(6));
      okResult((await queue.waitForResults([after])).get(after));
      expect(await queue.pendingCount()).toBe(0);
      expect(await queue.redis.xlen(queue.keys.stream)).toBe(0);
    } finally {
      await worker.stop();
      await queue.close();
    }
  });

  it('answers inference_failed when the model throws, without leaking tensors', async () => {
    const prefix = nextPrefix();
    const queue = await JobQueue.open(redis.url, prefix);
    const broken = new TfjsClassifier(await loadModel(configFor(prefix)));
    broken.dispose(); // its weights are gone: predict throws
    const { worker, batches } = await runWorker(prefix, {}, broken);
    const tensorsBefore = tf.memory().numTensors;
    try {
      const ids = await Promise.all([1, 2].map((seed) => queue.enqueue(randomImage(seed))));
      const results = await queue.waitForResults(ids);
      for (const id of ids) {
        expect(results.get(id)).toMatchObject({
          ok: false,
          error: { code: 'inference_failed', message: expect.stringMatching(/disposed/) },
        });
      }
      expect(batches.length).toBeGreaterThan(0);
      expect(batches.every((b) => b.inferenceError !== undefined)).toBe(true);
      expect(tf.memory().numTensors).toBe(tensorsBefore);
      expect(await queue.pendingCount()).toBe(0);
    } finally {
      await worker.stop();
      await queue.close();
    }
  });

  it('two workers on one stream answer each of 60 jobs exactly once', async () => {
    const prefix = nextPrefix();
    const queue = await JobQueue.open(redis.url, prefix);
    const workers = await Promise.all([
      runWorker(prefix, { CONSUMER_NAME: `${prefix}-a`, BATCH_SIZE: '4' }),
      runWorker(prefix, { CONSUMER_NAME: `${prefix}-b`, BATCH_SIZE: '4' }),
    ]);
    try {
      const ids = await Promise.all(Array.from({ length: 60 }, (_, i) => queue.enqueue(randomImage(i), { enc: i % 2 ? 'raw' : 'b64' })));
      const results = await queue.waitForResults(ids, 20_000);
      await new Promise((resolve) => setTimeout(resolve, 100)); // let any duplicate publish arrive
      for (const id of ids) expect(queue.results(id)).toHaveLength(1);
      expect(new Set([...results.values()].map((r) => r.worker))).toEqual(new Set([`${prefix}-a`, `${prefix}-b`]));
      const answered = workers.reduce((sum, { worker }) => sum + worker.stats().answered, 0);
      expect(answered).toBe(60);
      expect(await queue.pendingCount()).toBe(0);
      expect(await queue.redis.xlen(queue.keys.stream)).toBe(0);
      for (const { batches } of workers) for (const batch of batches) expect(batch.tensorsAfter).toBe(batch.tensorsBefore);
    } finally {
      await Promise.all(workers.map(({ worker }) => worker.stop()));
      await queue.close();
    }
  });

  it('stop() finishes the batch in hand, leaves nothing pending and closes its connections', async () => {
    const prefix = nextPrefix();
    const queue = await JobQueue.open(redis.url, prefix);
    const ids = await Promise.all(Array.from({ length: 20 }, (_, i) => queue.enqueue(randomImage(i))));
    let worker: WorkerHandle | undefined;
    let stopped: Promise<void> | undefined;
    worker = startWorker(configFor(prefix, { BATCH_SIZE: '4' }), {
      logger,
      onBatch: () => (stopped ??= worker!.stop()), // stop while the first batch is being answered
    });
    await worker.ready;
    await queue.waitForResults(ids.slice(0, 4));
    const started = Date.now();
    await stopped;
    expect(Date.now() - started).toBeLessThan(2000);
    expect(worker.stats().jobs).toBe(4);
    expect(await queue.pendingCount()).toBe(0);
    expect(await queue.redis.xlen(queue.keys.stream)).toBe(16);
    const clients = await queue.redis.client('LIST');
    expect(String(clients)).not.toContain(`gpu-worker:${prefix}-w`);
    await worker.stop(); // idempotent

    // The rest is still there for the next worker.
    const { worker: next } = await runWorker(prefix, { CONSUMER_NAME: `${prefix}-next` });
    await queue.waitForResults(ids);
    await next.stop();
    expect(await queue.redis.xlen(queue.keys.stream)).toBe(0);
    await queue.close();
  });

  it('stop() during a batch fill wait still answers the entries it has read', async () => {
    const prefix = nextPrefix();
    const queue = await JobQueue.open(redis.url, prefix);
    const ids = await Promise.all([1, 2].map((i) => queue.enqueue(randomImage(i))));
    // Two jobs waiting: the first read takes both and then waits MAX_BATCH_DELAY_MS for company.
    const worker = startWorker(configFor(prefix, { BATCH_SIZE: '8', MAX_BATCH_DELAY_MS: '3000' }), { logger });
    await worker.ready;
    while ((await queue.pendingCount()) < 2) await new Promise((resolve) => setTimeout(resolve, 20));
    await worker.stop(); // during the fill wait: both entries are delivered to this worker
    expect(worker.stats().jobs).toBe(2);
    for (const result of (await queue.waitForResults(ids)).values()) okResult(result);
    expect(await queue.pendingCount()).toBe(0);
    await queue.close();
  });

  it('rides out a Redis restart: reconnects, recreates the consumer group, keeps answering', async () => {
    let own = await startRedisServer();
    const { port } = own;
    const prefix = nextPrefix();
    const { worker } = await runWorker(prefix, { REDIS_URL: own.url });
    let queue = await JobQueue.open(own.url, prefix);
    try {
      const before = await queue.enqueue(randomImage(1));
      okResult((await queue.waitForResults([before])).get(before));
      await queue.close();
      await own.stop(); // nothing persisted: the stream and the group are gone
      await new Promise((resolve) => setTimeout(resolve, 300));
      own = await startRedisServer({ port });
      queue = await JobQueue.open(own.url, prefix);
      const after = await queue.enqueue(randomImage(2));
      okResult((await queue.waitForResults([after], 15_000)).get(after));
      expect(await queue.pendingCount()).toBe(0);
    } finally {
      await worker.stop();
      await queue.close().catch(() => {});
      await own.stop();
    }
  });

  it('reports startup failure through ready, and stop() before ready is clean', async () => {
    const failing = startWorker(configFor(nextPrefix(), { MODEL: '/nonexistent/model' }), { logger });
    await expect(failing.ready).rejects.toThrow(/could not read .*model\.json/);
    await expect(failing.done).rejects.toThrow(ModelLoadError);

    const early = startWorker(configFor(nextPrefix()), { logger });
    await early.stop();
    await expect(early.ready).rejects.toThrow(/stopped before it was ready/);
  });
});

describe('npm run worker', () => {
  it('prints "worker ready", serves jobs, exits 0 on SIGTERM; INFERENCE_PROCESSES=2 runs and restarts two consumers', async () => {
    const prefix = nextPrefix();
    const queue = await JobQueue.open(redis.url, prefix);
    const child = spawn(process.execPath, ['--import', 'tsx', 'gpu-worker/main.ts'], {
      cwd: ROOT,
      env: {
        ...process.env,
        REDIS_URL: redis.url,
        KEY_PREFIX: prefix,
        ...tiny.env,
        PREPROCESS: 'caffe',
        BACKEND: 'wasm',
        INFERENCE_PROCESSES: '2',
        CONSUMER_NAME: `${prefix}-p`,
        LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    type Line = { msg?: string; consumer?: string; pid?: number };
    const lines: Line[] = [];
    const waiters: { test: (line: Line) => boolean; resolve: (line: Line) => void }[] = [];
    const waitForLine = (test: (line: Line) => boolean) =>
      new Promise<Line>((resolve) => {
        const seen = lines.find(test);
        if (seen) resolve(seen);
        else waiters.push({ test, resolve });
      });
    createInterface({ input: child.stdout! }).on('line', (text) => {
      const line = JSON.parse(text) as Line;
      lines.push(line);
      for (const waiter of waiters.filter((w) => w.test(line))) waiter.resolve(line);
    });
    const ready = (consumer: string, notPid?: number) =>
      waitForLine((l) => l.msg === 'worker ready' && l.consumer === consumer && l.pid !== notPid);
    try {
      await waitForLine((l) => l.msg === 'all inference processes ready');
      const [first] = await Promise.all([ready(`${prefix}-p-1`), ready(`${prefix}-p-2`)]);
      const ids = await Promise.all(Array.from({ length: 16 }, (_, i) => queue.enqueue(randomImage(i))));
      const results = await queue.waitForResults(ids, 15_000);
      expect([...results.values()].every((r) => r.ok && r.worker.startsWith(`${prefix}-p-`))).toBe(true);

      // A crashed inference process comes back under the same consumer name.
      process.kill(first.pid!, 'SIGKILL');
      await ready(`${prefix}-p-1`, first.pid);
      const more = await Promise.all([1, 2, 3].map((seed) => queue.enqueue(randomImage(seed))));
      await queue.waitForResults(more, 15_000);

      child.kill('SIGTERM');
      const [code] = (await once(child, 'exit')) as [number];
      expect(code).toBe(0);
      expect(lines.filter((l) => l.msg === 'inference process exited; restarting')).toHaveLength(1);
      expect(lines.filter((l) => l.msg === 'worker stopped')).toHaveLength(2);
      expect(await queue.pendingCount()).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await queue.close();
    }
  });
});
