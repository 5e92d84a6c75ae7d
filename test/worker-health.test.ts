/**
 * The worker's GET /livez and /readyz (gpu-worker/health.ts) on its metrics port, with real
 * processes and the default settings:
 *
 * - a worker still loading its model (served by a local HTTP server that holds model.json back)
 *   is live but not ready, and ready once the model is loaded and warm;
 * - a worker whose Redis is killed stays live (its loops retry) and is not ready, naming the
 *   shard; ready again once Redis is back;
 * - a worker whose inference hangs (runs past CLAIM_IDLE_MS, the one setting tuned here) is
 *   neither live nor ready, and both again once it returns;
 * - a worker draining after SIGTERM is not ready.
 */
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, type RedisServerHandle, startRedisServer } from '../dev/redis-server.ts';
import { selectBackend } from '../gpu-worker/engine/tfjs/backend.ts';
import type { WorkerHealth } from '../gpu-worker/health.ts';
import { redisKeys } from '../shared/keys.ts';
import { newJobFields } from '../shared/protocol.ts';
import { TENSOR_BYTES } from '../shared/tensor.ts';
import { waitFor } from './helpers/faults.ts';
import { spawnWorker, type WorkerProcess } from './helpers/fixtures.ts';
import { createTinyModel, type TinyModel } from './helpers/tiny-model.ts';

let tiny: TinyModel;
let redisServer: RedisServerHandle;

beforeAll(async () => {
  await selectBackend('wasm'); // for building the tiny model here
  tiny = await createTinyModel();
  redisServer = await startRedisServer();
}, 60_000);
afterAll(async () => {
  await redisServer?.stop();
  await tiny?.cleanup();
});

const probe = async (port: number, path: '/livez' | '/readyz') => {
  const response = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: response.status, health: (await response.json()) as WorkerHealth };
};

/** Probe `path` until `accept` holds for the reply, which it returns. */
const probeUntil = (
  port: number,
  path: '/livez' | '/readyz',
  accept: (reply: Awaited<ReturnType<typeof probe>>) => boolean,
  ms: number,
  what: string,
) =>
  waitFor(
    async () => {
      const reply = await probe(port, path);
      return accept(reply) ? reply : undefined;
    },
    ms,
    what,
  );

/** Queue one job `id` (an all-zero tensor) on the default prefix's stream. */
const queueJob = (redis: Redis, id: string) =>
  redis.xadd(
    redisKeys().stream,
    '*',
    ...newJobFields({ id, tensor: new Uint8Array(TENSOR_BYTES), deadline: Date.now() + 30_000 }, 'z85', redisKeys().resultChannel(id)),
  );

/** A worker on the tiny model with its metrics port; stopped with SIGTERM by `stop()`. */
async function startWorker(env: Record<string, string>): Promise<{ worker: WorkerProcess; port: number; stop(): Promise<void> }> {
  const port = await freePort();
  const worker = spawnWorker(`health-${port}`, { ...tiny.env, REDIS_URL: redisServer.url, METRICS_PORT: String(port), ...env });
  // Served from the start, before the model: wait for the port, not for "worker ready".
  await waitFor(
    () =>
      fetch(`http://127.0.0.1:${port}/livez`).then(
        () => true,
        () => false,
      ),
    30_000,
    'the health port',
  );
  return {
    worker,
    port,
    async stop() {
      if (!worker.alive()) return;
      worker.kill('SIGTERM');
      await worker.exited;
    },
  };
}

describe('worker health (GET /livez, /readyz on METRICS_PORT)', () => {
  it('is live but not ready while the model loads, and ready once it is loaded and warm', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const models: Server = createServer(async (request, response) => {
      if (request.url!.endsWith('model.json')) await held;
      try {
        response.end(await readFile(join(tiny.dir, request.url!.replace('/tiny/', ''))));
      } catch {
        response.writeHead(404).end();
      }
    });
    models.listen(0, '127.0.0.1');
    await once(models, 'listening');
    const url = `http://127.0.0.1:${(models.address() as AddressInfo).port}/tiny/model.json`;
    const { worker, port, stop } = await startWorker({ MODEL: url });
    try {
      const live = await probe(port, '/livez');
      const ready = await probe(port, '/readyz');
      expect(live).toMatchObject({ status: 200, health: { live: true, ready: false, phase: 'starting' } });
      expect(ready).toMatchObject({ status: 503, health: { ready: false, phase: 'starting' } });
      release();
      await worker.tier.ready;
      expect(await probe(port, '/readyz')).toMatchObject({
        status: 200,
        health: { live: true, ready: true, phase: 'serving', shards: [{ connected: true }] },
      });
    } finally {
      release();
      await stop();
      models.closeAllConnections();
      models.close();
    }
  }, 60_000);

  it('stays live but is not ready while its Redis is down, and is ready again once Redis is back', async () => {
    const { worker, port, stop } = await startWorker({});
    try {
      await worker.tier.ready;
      expect((await probe(port, '/readyz')).status).toBe(200);
      await redisServer.stop();
      const down = await probeUntil(port, '/readyz', (reply) => reply.status === 503, 10_000, 'not ready without Redis');
      expect(down.health).toMatchObject({ live: true, ready: false, phase: 'serving', shards: [{ connected: false }] });
      expect((await probe(port, '/livez')).status).toBe(200);
      redisServer = await startRedisServer({ port: redisServer.port });
      await waitFor(async () => (await probe(port, '/readyz')).status === 200, 20_000, 'ready again with Redis back');
      expect(worker.alive()).toBe(true);
    } finally {
      await stop();
    }
  }, 60_000);

  it('is neither live nor ready while an inference hangs past CLAIM_IDLE_MS, and both again once it returns', async () => {
    // The synthetic model warms up at once, so the hang limit is CLAIM_IDLE_MS; the batch takes longer.
    const { worker, port, stop } = await startWorker({ MODEL: 'synthetic:instant', INFERENCE_DELAY_MS: '4000', CLAIM_IDLE_MS: '1000' });
    const redis = new Redis(redisServer.url);
    try {
      await worker.tier.ready;
      const keys = redisKeys();
      await queueJob(redis, 'hung');
      const hung = await probeUntil(port, '/livez', (reply) => reply.status === 503, 10_000, 'not live while the inference hangs');
      expect(hung.health).toMatchObject({ live: false, ready: false, phase: 'serving' });
      expect(hung.health.hungInferenceMs).toBeGreaterThanOrEqual(1000); // past it, rounded to the ms
      await waitFor(async () => (await redis.get(keys.result('hung'))) !== null, 10_000, 'the job answered');
      expect((await probe(port, '/livez')).status).toBe(200);
      expect((await probe(port, '/readyz')).status).toBe(200);
    } finally {
      redis.disconnect();
      await stop();
    }
  }, 60_000);

  it('is not ready while it drains after SIGTERM, and answers 404 with the paths elsewhere', async () => {
    // A slow batch in hand: the worker finishes it after SIGTERM, and is not ready meanwhile.
    const { worker, port, stop } = await startWorker({ MODEL: 'synthetic:timer:3000', BATCH_SIZE: '1' });
    try {
      await worker.tier.ready;
      const notFound = await fetch(`http://127.0.0.1:${port}/health`);
      expect(notFound.status).toBe(404);
      expect(await notFound.text()).toMatch(/\/metrics, \/livez, \/readyz/);
      const redis = new Redis(redisServer.url);
      try {
        const keys = redisKeys();
        await queueJob(redis, 'slow');
        await waitFor(async () => Number((await redis.xpending(keys.stream, keys.group))[0]) === 1, 10_000, 'the job delivered');
        worker.kill('SIGTERM');
        const draining = await probeUntil(port, '/readyz', (reply) => reply.health.phase === 'stopping', 5_000, 'draining');
        expect(draining).toMatchObject({ status: 503, health: { live: true, ready: false } });
        expect((await worker.exited).code).toBe(0);
        expect(await redis.get(keys.result('slow'))).toContain('"ok":true');
      } finally {
        redis.disconnect();
      }
    } finally {
      await stop();
    }
  }, 60_000);
});
