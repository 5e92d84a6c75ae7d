/**
 * Poison jobs: a job that fails again and again ends in the dead-letter stream with an error
 * answer, and nothing loops.
 *
 * 1. Kill on pickup, with real processes (redis-server, local Upstash REST server, the Node edge in
 *    this process, gpu-worker child processes): every time a worker takes the poison job, the test
 *    SIGKILLs that worker, as a segfault or the OOM killer would. The poison is an ordinary image:
 *    what makes it poison is the test watching the group's pending list (XPENDING) and killing
 *    whoever holds it, which is honest about the mechanism under test (delivery counting across
 *    dying workers) without adding a crash switch to the worker. Workers run with
 *    INFERENCE_DELAY_MS so the kill lands before the inference ends.
 * 2. An input whose inference throws, in-process (a classifier that throws for a marker tensor):
 *    its batch-mates get their results (each run alone), it alone gets inference_failed and is
 *    dead-lettered at once.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RedisServerHandle } from '../dev/redis-server.ts';
import type { NodeEdge } from '../edge/node/server.ts';
import { TfjsClassifier, type ClassifyRun } from '../gpu-worker/engine/tfjs/classifier.ts';
import { parseWorkerConfig } from '../gpu-worker/config.ts';
import { loadModel } from '../gpu-worker/engine/tfjs/load.ts';
import { startWorker, type BatchReport } from '../gpu-worker/worker.ts';
import { redisKeys } from '../shared/keys.ts';
import { createLogger } from '../shared/log.ts';
import { TENSOR_BYTES } from '../shared/tensor.ts';
import {
  colourPng,
  countPublishes,
  pendingEntries,
  predict,
  sleep,
  streamEntries,
  summary,
  tally,
  waitFor,
  type Reply,
} from './helpers/faults.ts';
import { spawnWorker, startLocalEdge, viaRest, type WorkerProcess } from './helpers/fixtures.ts';
import { JobQueue } from './helpers/job-queue.ts';
import { randomImage, type TinyModel } from './helpers/tiny-model.ts';
import { startBackbone, type Backbone } from './helpers/backbone.ts';

const TOKEN = 'poison-test-token-0123456789';
const logger = createLogger('faults-poison', 'silent');
const MAX_DELIVERIES = 3;

let base: Backbone;
let redisServer: RedisServerHandle;
let redis: Redis;
let rest: Backbone['rest'];
let tiny: TinyModel;
const workers: WorkerProcess[] = [];
let edge: NodeEdge | undefined;

beforeAll(async () => {
  base = await startBackbone({ token: TOKEN, seed: 7, logger });
  ({ redisServer, redis, rest, tiny } = base);
});

afterAll(async () => {
  await edge?.close();
  await Promise.all(workers.map((worker) => worker.tier.stop(2000)));
  await base?.stop();
});

describe('poison jobs', () => {
  it('a job whose every pickup kills its worker is dead-lettered after MAX_DELIVERIES, answered once; others keep being served', async () => {
    const prefix = 'f-poison';
    const keys = redisKeys(prefix);
    let serial = 0;
    const spawn = () => {
      const started = spawnWorker(`${prefix}-${++serial}`, {
        REDIS_URL: redisServer.url,
        KEY_PREFIX: prefix,
        ...tiny.env,
        BATCH_SIZE: '4',
        INFERENCE_DELAY_MS: '400',
        CLAIM_IDLE_MS: '1000',
        MAX_DELIVERIES: String(MAX_DELIVERIES),
      });
      workers.push(started);
      return started;
    };
    const pool = [spawn(), spawn()];
    edge = await startLocalEdge(viaRest(rest, TOKEN), logger, { KEY_PREFIX: prefix });
    await Promise.all(pool.map((w) => w.tier.ready));
    const published = await countPublishes(redisServer.url, prefix);
    const byConsumer = new Map(pool.map((w) => [w.consumer, w]));

    // The killer: whoever holds the poison job at a delivery count not yet punished dies; a
    // replacement worker is started each time, so two workers stay (or come back) in service.
    let poisonEntry: string | undefined;
    const kills: { consumer: string; deliveries: number }[] = [];
    let watching = true;
    const killer = (async () => {
      while (watching) {
        const held = poisonEntry ? (await pendingEntries(redis, keys)).find((p) => p.entryId === poisonEntry) : undefined;
        const victim = held ? byConsumer.get(held.consumer) : undefined;
        if (held && victim?.alive() && held.deliveries <= MAX_DELIVERIES && !kills.some((k) => k.deliveries === held.deliveries)) {
          victim.kill('SIGKILL');
          kills.push({ consumer: victim.consumer, deliveries: held.deliveries });
          const replacement = spawn();
          byConsumer.set(replacement.consumer, replacement);
        }
        await sleep(10);
      }
    })();

    try {
      const poisonImage = await colourPng(99);
      const poison = predict(edge.url, poisonImage);
      [poisonEntry] = await waitFor(
        async () => {
          const ids = (await redis.xrange(keys.stream, '-', '+')).map(([id]) => id);
          return ids.length > 0 ? ids : undefined;
        },
        5000,
        'the poison job in the stream',
        2,
      );
      // Meanwhile, ordinary traffic: 4 requests every 500 ms.
      const others: Promise<Reply>[] = [];
      for (let wave = 0; wave < 6; wave++) {
        for (let i = 0; i < 4; i++) others.push(predict(edge.url, await colourPng(wave * 4 + i)));
        await sleep(500);
      }
      const answer = await poison;
      const replies = await Promise.all(others);
      watching = false;
      await killer;

      // The poison request: one JSON error, saying what happened.
      expect(answer.status).toBe(500);
      expect(answer.body.error?.code).toBe('inference_failed');
      expect(answer.body.error?.message).toMatch(/after 3 attempts .*dead-letter stream/);
      // Killed at deliveries 1, 2 and 3; the 4th taker dead-lettered it without running it.
      expect(kills.map((k) => k.deliveries)).toEqual([1, 2, 3]);
      const dead = await streamEntries(redis, keys.deadLetter);
      expect(dead).toHaveLength(1);
      expect(dead[0]!.fields).toMatchObject({
        entry: poisonEntry,
        id: answer.requestId,
        deliveries: String(MAX_DELIVERIES + 1),
        reason: expect.stringMatching(/delivered 4 times \(MAX_DELIVERIES=3\)/),
        enc: 'z85',
      });
      expect(dead[0]!.fields.tensor).toHaveLength((TENSOR_BYTES / 4) * 5); // the input is kept for inspection
      expect(dead[0]!.fields.consumer).not.toBe(kills.at(-1)!.consumer);
      expect(published.counts.get(answer.requestId!)).toHaveLength(1);

      // Everyone else was served, exactly once, by the workers that stayed up.
      expect(tally(replies)).toEqual({ '200': replies.length });
      for (const reply of replies) expect(published.counts.get(reply.body.id!)).toHaveLength(1);
      expect(await redis.xlen(keys.stream)).toBe(0);
      expect(await pendingEntries(redis, keys)).toEqual([]);
      const lost = [answer, ...replies].filter((r) => r.status === 0 || r.body.error?.code === 'not_json').length;
      summary(`poison job, worker SIGKILL on each pickup x${kills.length}`, replies.length + 1, lost, {
        '200': replies.length,
        '500 inference_failed (dead-lettered)': 1,
        'deliveries of the poison job': MAX_DELIVERIES + 1,
        'poison answered after ms': answer.doneAt - answer.sentAt,
      });
    } finally {
      watching = false;
      await killer;
      await published.close();
    }
  });

  it('an input whose inference throws fails alone: its batch-mates are answered, it is dead-lettered at once', async () => {
    const prefix = 'f-throws';
    const config = parseWorkerConfig({
      REDIS_URL: redisServer.url,
      KEY_PREFIX: prefix,
      ...tiny.env,
      PREPROCESS: 'caffe',
      BACKEND: 'wasm',
      BATCH_SIZE: '8',
      MAX_BATCH_DELAY_MS: '50',
      CONSUMER_NAME: `${prefix}-w`,
    });
    const marker = new Uint8Array(TENSOR_BYTES).fill(7);
    const isMarker = (tensor: Uint8Array) => tensor[0] === 7 && tensor[1] === 7 && tensor[TENSOR_BYTES - 1] === 7;
    class Throwing extends TfjsClassifier {
      override classifyWithStats(tensors: Uint8Array[], topK?: number): Promise<ClassifyRun> {
        if (tensors.some(isMarker)) return Promise.reject(new Error('simulated crash in inference (poison input)'));
        return super.classifyWithStats(tensors, topK);
      }
    }
    const classifier = new Throwing(await loadModel(config));
    const queue = await JobQueue.open(redisServer.url, prefix);
    const batches: BatchReport[] = [];
    const good = await Promise.all([1, 2, 3].map((seed) => queue.enqueue(randomImage(seed))));
    const bad = await queue.enqueue(marker);
    const more = await Promise.all([4, 5, 6, 7].map((seed) => queue.enqueue(randomImage(seed))));
    const worker = startWorker(config, { logger, classifier, onBatch: (report) => batches.push(report) });
    try {
      await worker.ready;
      const results = await queue.waitForResults([...good, bad, ...more]);
      for (const id of [...good, ...more]) expect(results.get(id)).toMatchObject({ ok: true, batchSize: 1 });
      expect(results.get(bad)).toMatchObject({
        ok: false,
        error: { code: 'inference_failed', message: expect.stringMatching(/simulated crash .*dead-letter stream/) },
      });
      expect(batches[0]).toMatchObject({
        size: 8,
        live: 8,
        answered: 8,
        deadLettered: 1,
        retriedAlone: 8,
        inferenceError: expect.stringMatching(/simulated/),
      });
      const dead = await streamEntries(queue.redis, queue.keys.deadLetter);
      expect(dead).toHaveLength(1);
      expect(dead[0]!.fields).toMatchObject({
        id: bad,
        deliveries: '1',
        consumer: `${prefix}-w`,
        reason: expect.stringMatching(/inference threw: simulated/),
      });
      for (const id of [...good, bad, ...more]) expect(queue.results(id)).toHaveLength(1);

      // It keeps serving, in batches again.
      const after = await Promise.all([8, 9].map((seed) => queue.enqueue(randomImage(seed))));
      const later = await queue.waitForResults(after);
      for (const id of after) expect(later.get(id)).toMatchObject({ ok: true });
      expect(await queue.redis.xlen(queue.keys.stream)).toBe(0);
      expect(await queue.pendingCount()).toBe(0);
      expect(worker.stats()).toMatchObject({ deadLettered: 1, inferenceFailures: 1 });
      summary('inference throws on 1 input of a batch of 8', 10, 0, {
        ok: 9,
        'inference_failed (dead-lettered)': 1,
        'batch-mates failed': 0,
      });
    } finally {
      await worker.stop();
      classifier.dispose();
      await queue.close();
    }
  });
});
