/**
 * Worker heartbeats, GET /readyz and GET /v1/models on real parts: redis-server, the local Upstash
 * REST server, the Node edge over HTTP with either broker, and worker processes (synthetic model:
 * no weights, starts in about a second). Redis is stopped and restarted for the outage case.
 */
import { hostname } from 'node:os';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisServer, type RedisServerHandle } from '../dev/redis-server.ts';
import { startUpstashRestServer } from '../dev/upstash-rest/server.ts';
import type { NodeEdge } from '../edge/node/server.ts';
import { type NamedEdge, type WorkerProcess, spawnWorker, startBothEdges } from './helpers/fixtures.ts';
import { redisKeys } from '../shared/keys.ts';
import { createLogger } from '../shared/log.ts';
import { WorkerHeartbeat } from '../shared/protocol.ts';
import { colourPng, predict, sleep, waitFor } from './helpers/faults.ts';

const TOKEN = 'health-test-token-0123456789';
const PREFIX = 'health';
const keys = redisKeys(PREFIX);
const logger = createLogger('health-test', 'silent');

let redisServer: RedisServerHandle;
let rest: Awaited<ReturnType<typeof startUpstashRestServer>>;
let inspector: Redis;
const edges: NamedEdge[] = [];
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  redisServer = await startRedisServer();
  rest = await startUpstashRestServer({ redisUrl: redisServer.url, token: TOKEN, port: 0, logger });
  inspector = new Redis(redisServer.url, { retryStrategy: () => 200 });
  inspector.on('error', () => {});
  edges.push(
    ...(await startBothEdges({ rest, token: TOKEN, redisUrl: redisServer.url }, logger, {
      KEY_PREFIX: PREFIX,
      READY_WORKER_MAX_AGE_MS: '3000',
    })),
  );
});

afterAll(async () => {
  await Promise.all(edges.map(({ edge }) => edge.close()));
  await Promise.all(workers.map((w) => w.tier.stop(2000)));
  inspector?.disconnect();
  await rest?.close();
  await redisServer?.stop();
});

const startWorkerProcess = (consumer: string, env: Record<string, string> = {}) => {
  const worker = spawnWorker(consumer, {
    REDIS_URL: redisServer.url,
    KEY_PREFIX: PREFIX,
    MODEL: 'synthetic:instant',
    HEARTBEAT_MS: '300',
    METRICS_PORT: '0',
    ...env,
  });
  workers.push(worker);
  return worker;
};

async function get(edge: NodeEdge, path: string) {
  const response = await fetch(`${edge.url}${path}`);
  return { status: response.status, body: await response.json(), headers: response.headers };
}

async function heartbeats(): Promise<Record<string, WorkerHeartbeat>> {
  const hash = await inspector.hgetall(keys.workers);
  return Object.fromEntries(Object.entries(hash).map(([field, json]) => [field, WorkerHeartbeat.parse(JSON.parse(json))]));
}

describe('health and readiness', () => {
  it('/healthz is liveness only; /readyz is 503 not_ready while no worker has ever beaten; /v1/models lists none', async () => {
    for (const { name, edge } of edges) {
      expect((await get(edge, '/healthz')).body, name).toEqual({ ok: true });
      const ready = await get(edge, '/readyz');
      expect(ready.status, name).toBe(503);
      expect(ready.body, name).toMatchObject({
        success: false,
        error: { code: 'not_ready', message: 'no live worker (no heartbeat in Redis)' },
        redis: { ok: true },
        workers: 0,
      });
      expect(ready.headers.get('x-request-id'), name).toBeTruthy();
      const models = await get(edge, '/v1/models');
      expect(models.status, name).toBe(200);
      expect(models.body, name).toEqual({ success: true, models: [] });
    }
  });

  it('a stale heartbeat (a worker that died) does not make the edge ready, and says when it was last seen', async () => {
    const now = Date.now();
    const dead: WorkerHeartbeat = {
      id: 'dead-worker',
      engine: 'tfjs',
      provider: 'wasm',
      threads: 1,
      backend: 'wasm',
      model: 'm',
      labels: 1000,
      batchSize: 4,
      pid: 1,
      host: 'gone',
      startedAt: now - 120_000,
      lastSeen: now - 42_000,
      expiresAt: now - 30_000,
    };
    await inspector.hset(keys.workers, dead.id, JSON.stringify(dead));
    for (const { name, edge } of edges) {
      const ready = await get(edge, '/readyz');
      expect(ready.status, name).toBe(503);
      expect(ready.body.error.message, name).toMatch(/^no live worker \(last seen 4[23] s ago: dead-worker\)$/);
      expect((await get(edge, '/v1/models')).body.models, name).toEqual([]);
    }
  });

  it('a running worker beats with the right fields (and prunes the dead entry); /readyz 200, /v1/models lists it; gone on stop', async () => {
    const worker = startWorkerProcess('health-w1', { BATCH_SIZE: '3' });
    await worker.tier.ready;

    // Written before "worker ready"; the dead entry is pruned by that first beat.
    const beats = await heartbeats();
    expect(Object.keys(beats)).toEqual(['health-w1']);
    const beat = beats['health-w1']!;
    expect(beat).toMatchObject({
      id: 'health-w1',
      engine: 'synthetic',
      provider: 'none',
      threads: 0,
      backend: 'none',
      model: 'synthetic:instant',
      labels: 1000,
      batchSize: 3,
      host: hostname(),
    });
    expect(beat.pid).toBe(worker.tier.child.pid);
    expect(beat.startedAt).toBeLessThanOrEqual(beat.lastSeen);
    expect(Date.now() - beat.lastSeen).toBeLessThan(1000);
    expect(beat.expiresAt - beat.lastSeen).toBe(3 * 300);
    const ttl = await inspector.pttl(keys.workers);
    expect(ttl).toBeGreaterThan(30_000); // the whole hash expires if every worker dies

    // It keeps beating.
    await waitFor(async () => (await heartbeats())['health-w1']!.lastSeen >= beat.lastSeen + 500, 3000, 'a later heartbeat');

    for (const { name, edge } of edges) {
      const ready = await get(edge, '/readyz');
      expect(ready.status, `${name} ${JSON.stringify(ready.body)}`).toBe(200);
      expect(ready.body).toMatchObject({ ok: true, redis: { ok: true, latencyMs: expect.any(Number) }, workers: 1, backlog: 0 });
      expect(ready.headers.get('cache-control')).toBe('no-store');
      const models = await get(edge, '/v1/models');
      expect(models.status, name).toBe(200);
      expect(models.body, name).toEqual({
        success: true,
        models: [
          {
            name: 'synthetic:instant',
            input: { width: 224, height: 224, channels: 3, dtype: 'uint8' },
            labels: 1000,
            workers: [
              {
                id: 'health-w1',
                engine: 'synthetic',
                provider: 'none',
                threads: 0,
                batchSize: 3,
                startedAt: beat.startedAt,
                lastSeenMsAgo: expect.any(Number),
              },
            ],
          },
        ],
      });
      expect(models.body.models[0].workers[0].lastSeenMsAgo).toBeLessThan(1000);
    }
    // The id in /v1/models is the one answering predictions.
    const answer = await predict(edges[0]!.edge.url, await colourPng(1));
    expect(answer.body.worker).toBe('health-w1');

    // Graceful stop removes the entry at once (no waiting for it to go stale).
    await worker.tier.stop();
    expect((await worker.exited).code).toBe(0);
    expect(await inspector.hexists(keys.workers, 'health-w1')).toBe(0);
    for (const { name, edge } of edges) {
      const ready = await get(edge, '/readyz');
      expect(ready.status, name).toBe(503);
      expect(ready.body.error.code).toBe('not_ready');
    }
  });

  it('Redis down: /readyz 503 with the reason and /v1/models 503; the worker keeps running and beats again once Redis is back', async () => {
    const worker = startWorkerProcess('health-w2');
    await worker.tier.ready;
    for (const { edge } of edges) expect((await get(edge, '/readyz')).status).toBe(200);

    await redisServer.stop();
    await sleep(2500); // past a beat's 2 s timeout: failed beats, logged
    for (const { name, edge } of edges) {
      const started = Date.now();
      const ready = await get(edge, '/readyz');
      expect(ready.status, name).toBe(503);
      expect(ready.body.error.code, name).toBe('not_ready');
      expect(ready.body.error.message, name).toMatch(/^redis unreachable: /);
      expect(ready.body.redis.ok, name).toBe(false);
      expect(Date.now() - started, name).toBeLessThan(2500);
      const models = await get(edge, '/v1/models');
      expect(models.status, name).toBe(503);
      expect(models.body.error.code, name).toBe('broker_unavailable');
    }
    expect(worker.alive()).toBe(true);

    // Back on the same port, empty: the worker's next beats fill the hash again.
    redisServer = await startRedisServer({ port: redisServer.port });
    await waitFor(
      async () => (await inspector.hexists(keys.workers, 'health-w2').catch(() => 0)) === 1,
      8000,
      'the heartbeat after the restart',
      100,
    );
    for (const { name, edge } of edges) {
      await waitFor(async () => (await get(edge, '/readyz')).status === 200, 5000, `${name} ready again`, 100);
    }
    expect(worker.alive()).toBe(true);
    expect(worker.lines.some((line) => line.includes('heartbeat failed'))).toBe(true);
    expect(worker.lines.some((line) => line.includes('heartbeat restored'))).toBe(true);
    await worker.tier.stop();
    expect((await worker.exited).code).toBe(0);
  });
});
