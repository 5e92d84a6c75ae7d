/**
 * Deadlines, with real processes: a job answered after its request gave up (504) must not reach
 * another request, a job whose deadline passed while queued is skipped, and result keys expire.
 * Real redis-server, the local Upstash REST server, one gpu-worker child process (tiny model) and
 * the Node edge in this process, over both brokers: ioredis (one reply channel per edge, shared by
 * every request: where a misrouted late result would show) and Upstash REST (a channel per request).
 *
 * Timeline per broker, with DEADLINE_MS=3000 and one worker taking one job at a time, each
 * INFERENCE_DELAY_MS=1700 long: A1, A2, A3 sent at t0. A1 is answered at ~1.7 s (200). A2 is
 * picked up at 1.7 s and answered at ~3.4 s, after its 504 at 3.0 s: a late result. A3, picked up
 * at 3.4 s, is past its deadline: dropped, never computed. B, sent when A2's 504 arrives, is
 * waiting when A2's late result is published, and must get its own result (~5.1 s, deadline 6 s).
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RedisServerHandle } from '../dev/redis-server.ts';
import { parseEdgeConfig } from '../edge/config.ts';
import { startNodeEdge, type NodeEdge } from '../edge/node/server.ts';
import { redisKeys } from '../shared/keys.ts';
import { createLogger } from '../shared/log.ts';
import { JobResult } from '../shared/protocol.ts';
import { colourPng, pendingEntries, predict, sleep, summary, waitFor } from './helpers/faults.ts';
import { spawnWorker, type WorkerProcess } from './helpers/fixtures.ts';
import type { TinyModel } from './helpers/tiny-model.ts';
import { startBackbone, type Backbone } from './helpers/backbone.ts';

const TOKEN = 'deadline-test-token-0123456789';
const logger = createLogger('faults-deadline', 'silent');
const PREFIX = 'f-deadline';
const DEADLINE_MS = 3000;
const RESULT_TTL_MS = 1000;

let base: Backbone;
let redisServer: RedisServerHandle;
let redis: Redis;
let listener: Redis;
let rest: Backbone['rest'];
let tiny: TinyModel;
let worker: WorkerProcess;
const edges: NodeEdge[] = [];
/** Every result published under the prefix: job id, when, and its key's PTTL at that moment. */
const publishes: { id: string; at: number; pttl: Promise<number> }[] = [];

beforeAll(async () => {
  base = await startBackbone({ token: TOKEN, seed: 7, logger });
  ({ redisServer, redis, rest, tiny } = base);
  listener = new Redis(redisServer.url);
  listener.on('pmessage', (_pattern: string, _channel: string, message: string) => {
    const result = JobResult.parse(JSON.parse(message));
    publishes.push({ id: result.id, at: Date.now(), pttl: redis.pttl(redisKeys(PREFIX).result(result.id)) });
  });
  await listener.psubscribe(`${PREFIX}:*`); // per-request channels (Upstash) and per-edge channels (ioredis)
  worker = spawnWorker(`${PREFIX}-w`, {
    REDIS_URL: redisServer.url,
    KEY_PREFIX: PREFIX,
    ...tiny.env,
    BATCH_SIZE: '1',
    INFERENCE_DELAY_MS: '1700',
    RESULT_TTL_MS: String(RESULT_TTL_MS),
  });
  await worker.tier.ready;
});

afterAll(async () => {
  await Promise.all(edges.map((edge) => edge.close()));
  await worker?.tier.stop(2000);
  listener?.disconnect();
  await base?.stop();
});

describe('deadlines', () => {
  it.each(['ioredis', 'upstash'] as const)(
    'over %s: 504 JSON at the deadline; a late result reaches nobody else; expired jobs skipped; result keys expire',
    async (broker) => {
      const keys = redisKeys(PREFIX);
      // ADMISSION=queue-max: requests that cannot make their deadline wait for it (with admission
      // by deadline they are refused at once: test/faults-admission.test.ts).
      const common = { PORT: '0', HOST: '127.0.0.1', KEY_PREFIX: PREFIX, DEADLINE_MS: String(DEADLINE_MS), ADMISSION: 'queue-max' };
      const edge = await startNodeEdge(
        parseEdgeConfig(
          broker === 'ioredis'
            ? { ...common, REDIS_URL: redisServer.url }
            : { ...common, UPSTASH_REDIS_REST_URL: rest.url, UPSTASH_REDIS_REST_TOKEN: TOKEN },
        ),
        logger,
      );
      edges.push(edge);
      const images = await Promise.all([1, 2, 3, 4].map(colourPng));
      publishes.length = 0;

      const first = [predict(edge.url, images[0]!)];
      await waitFor(async () => (await pendingEntries(redis, keys)).length === 1, 5000, 'A1 in hand');
      first.push(predict(edge.url, images[1]!));
      await sleep(50);
      first.push(predict(edge.url, images[2]!));
      const [a1, a2, a3] = await Promise.all(first);
      const b = await predict(edge.url, images[3]!); // sent as A2's 504 arrives
      await sleep(50);

      expect(a1!.status, JSON.stringify(a1!.body)).toBe(200);
      for (const late of [a2!, a3!]) {
        expect(late.status).toBe(504);
        expect(late.body).toMatchObject({ success: false, error: { code: 'deadline_exceeded', message: expect.any(String) } });
        expect(late.doneAt - late.sentAt).toBeGreaterThanOrEqual(DEADLINE_MS - 50);
        expect(late.doneAt - late.sentAt).toBeLessThan(DEADLINE_MS + 1000);
      }
      // B got its own result, not A2's late one, which was published while B was waiting.
      expect(b.status).toBe(200);
      expect(b.body.id).toBe(b.requestId);
      const late = publishes.find((p) => p.id === a2!.requestId);
      expect(late, 'A2 was computed and published late').toBeDefined();
      expect(late!.at).toBeGreaterThan(a2!.doneAt);
      expect(late!.at).toBeGreaterThan(b.sentAt);
      expect(late!.at).toBeLessThan(b.doneAt);
      expect(new Set([a1!.requestId, a2!.requestId, a3!.requestId, b.requestId]).size).toBe(4);
      // A3 was past its deadline at pickup: never computed, never answered.
      expect(publishes.some((p) => p.id === a3!.requestId)).toBe(false);
      expect(await redis.exists(keys.result(a3!.requestId!))).toBe(0);
      expect(worker.lines.some((l) => l.includes('took over'))).toBe(false);
      // Result keys carry RESULT_TTL_MS and are gone after it.
      for (const id of [a1!.requestId, a2!.requestId, b.requestId]) {
        const ttl = await publishes.find((p) => p.id === id)!.pttl;
        expect(ttl, id!).toBeGreaterThan(0);
        expect(ttl, id!).toBeLessThanOrEqual(RESULT_TTL_MS);
      }
      await sleep(RESULT_TTL_MS + 100);
      for (const id of [a1!.requestId, a2!.requestId, b.requestId]) expect(await redis.exists(keys.result(id!))).toBe(0);
      expect(await redis.xlen(keys.stream)).toBe(0);
      expect(await pendingEntries(redis, keys)).toEqual([]);
      const replies = [a1!, a2!, a3!, b];
      const lost = replies.filter(
        (r) => r.status === 0 || r.body.error?.code === 'not_json' || r.doneAt - r.sentAt > DEADLINE_MS + 1000,
      ).length;
      summary(`deadline passed x2 (${broker} edge): 1 late result, 1 expired job`, replies.length, lost, {
        '200': 2,
        '504 deadline_exceeded': 2,
        'late results delivered to another request': 0,
        'result keys left after RESULT_TTL_MS': 0,
      });
    },
  );
});
