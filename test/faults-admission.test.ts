/**
 * Admission by deadline, with real processes: redis-server, the local Upstash REST server, the
 * Node edge (`npm run edge`, its default Upstash REST broker) and a gpu-worker, each a child
 * process; the worker runs a synthetic timer model (a fixed time per batch, so what it can serve is
 * known). The edge has a process of its own so that this process's 200 clients do not share its
 * event loop.
 *
 * A flood of far more concurrent requests than the worker can answer within the deadline: none
 * waits for a 504; the ones admitted are all answered, the others refused at once (503
 * queue_full with a Retry-After from the estimate). Then hostile heartbeats in the hash: the edge
 * neither crashes nor refuses everything. The deadline is the one setting tuned (shorter, so the
 * test is short); the rest are the defaults.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnTier, type TierProcess } from '../dev/processes.ts';
import { freePort } from '../dev/redis-server.ts';
import { redisKeys } from '../shared/keys.ts';
import { createLogger } from '../shared/log.ts';
import { startBackbone, type Backbone } from './helpers/backbone.ts';
import { colourPng, predict, sleep, summary, tally, waitFor, type Reply } from './helpers/faults.ts';
import { spawnWorker, type WorkerProcess } from './helpers/fixtures.ts';

const TOKEN = 'admission-test-token-0123456789';
const PREFIX = 'f-admit';
const keys = redisKeys(PREFIX);
const DEADLINE_MS = 5_000;
/**
 * 4 images per 1 s batch: 4 images/s, so about 8 are admitted (80 % of the deadline, less two batches). Slow on
 * purpose: the edge spends about 10 ms of CPU on each admitted request here (decode, Z85, the REST
 * call) and the refused ones are read after those, so the more admitted, the later the refusals.
 */
const WORKER_ENV = { MODEL: 'synthetic:timer:1000', BATCH_SIZE: '4' };

let base: Backbone;
let edge: { url: string; tier: TierProcess };
let worker: WorkerProcess;
let image: Buffer;

beforeAll(async () => {
  base = await startBackbone({ token: TOKEN, seed: 5, logger: createLogger('admission-rest', 'silent') });
  image = await colourPng(3);
  worker = spawnWorker(`${PREFIX}-w`, { REDIS_URL: base.redisServer.url, KEY_PREFIX: PREFIX, ...WORKER_ENV });
  const port = await freePort();
  const tier = spawnTier({
    name: 'edge',
    entry: 'edge/node/main.ts',
    env: {
      UPSTASH_REDIS_REST_URL: base.rest.url,
      UPSTASH_REDIS_REST_TOKEN: TOKEN,
      PORT: String(port),
      HOST: '127.0.0.1',
      KEY_PREFIX: PREFIX,
      DEADLINE_MS: String(DEADLINE_MS),
    },
    readyMessage: 'edge listening',
    print: null,
  });
  edge = { url: `http://127.0.0.1:${port}`, tier };
  await Promise.all([tier.ready, worker.tier.ready]);
});

afterAll(async () => {
  await edge?.tier.stop(2000);
  await worker?.tier.stop(2000);
  await base?.stop();
});

const latency = (reply: Reply) => reply.doneAt - reply.sentAt;

describe('admission by deadline', () => {
  it('a flood against one worker: no 504, every admitted request answered, the others refused in under a second', async () => {
    // Cold start: no estimate yet, admitted as before; it starts the edge's first read of the heartbeats.
    const first = await predict(edge.url, image);
    expect(first.status).toBe(200);
    await sleep(1_100);

    const total = 200;
    const replies = await Promise.all(Array.from({ length: total }, () => predict(edge.url, image)));
    const counts = tally(replies);
    expect(Object.keys(counts).sort(), JSON.stringify(counts)).toEqual(['200', '503 queue_full']);
    const answered = replies.filter((r) => r.status === 200);
    const refused = replies.filter((r) => r.status === 503);
    // About 4 images/s x 2 s; the rest could only have waited for their deadline.
    expect(answered.length).toBeGreaterThanOrEqual(4);
    expect(answered.length).toBeLessThan(40);
    // Within the deadline, which runs from when the edge took the request.
    const totalMs = (reply: Reply) => (reply.body.timings as { totalMs: number }).totalMs;
    expect(Math.max(...answered.map(totalMs))).toBeLessThan(DEADLINE_MS);
    expect(Math.max(...refused.map(latency))).toBeLessThan(1_000);
    for (const reply of refused) {
      expect(reply.body.error!.message).toMatch(/images\/s.*deadline/);
      expect(Number(reply.retryAfter)).toBeGreaterThanOrEqual(1);
      expect(Number(reply.retryAfter)).toBeLessThanOrEqual(DEADLINE_MS / 1000);
    }
    await waitFor(async () => (await base.redis.xlen(keys.stream)) === 0, 10_000, 'the stream to drain');
    summary('flood of 200 concurrent, 1 worker (4 img/s), deadline 5 s', total, 0, {
      '200': answered.length,
      '503 queue_full': refused.length,
      'slowest answered ms (edge)': Math.max(...answered.map(totalMs)),
      'slowest answered ms (client)': Math.max(...answered.map(latency)),
      'slowest refused ms': Math.max(...refused.map(latency)),
      'Retry-After s': [...new Set(refused.map((r) => r.retryAfter))].join('/'),
    });
  });

  it('hostile heartbeats: the edge keeps answering, and refuses no more than the real worker needs', async () => {
    const real = (await base.redis.hget(keys.workers, worker.consumer))!;
    const now = Date.now();
    const parsed = JSON.parse(real) as Record<string, unknown>;
    await base.redis.hset(keys.workers, {
      'wrong-types': JSON.stringify({
        ...parsed,
        id: 'wrong-types',
        batchSize: 'lots',
        imagesPerSec: 'fast',
        lastSeen: now,
        expiresAt: now + 60_000,
      }),
      'absurd-numbers': JSON.stringify({
        ...parsed,
        id: 'absurd-numbers',
        imagesPerSec: 1e-300,
        batchMs: 3_600_000,
        lastSeen: now,
        expiresAt: now + 60_000,
      }),
      'huge-string': JSON.stringify({ ...parsed, id: 'x'.repeat(2_000_000) }),
      'not-json': '{"id": "unterminated',
    });
    await sleep(1_100); // the edge reads them
    // As many as the real worker alone gets admitted (about 8 at 4 images/s).
    const replies = await Promise.all(Array.from({ length: 6 }, () => predict(edge.url, image)));
    expect(tally(replies)).toEqual({ '200': 6 });
    const ready = await fetch(`${edge.url}/readyz`);
    expect(ready.status).toBe(200);
  });
});
