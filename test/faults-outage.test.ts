/**
 * Redis stopped while requests are in flight, then started again on the same port: real
 * redis-server, the local Upstash REST server, a gpu-worker child process, and two Node edges in
 * this process, one per broker (Upstash REST and ioredis). Nothing is restarted but Redis.
 *
 * Expected: in-flight requests are answered (a 200, or a 503 `broker_unavailable` JSON within a few
 * seconds, not at the 30 s deadline); requests during the outage get 503 at once; no unhandled
 * rejection or crash; service resumes within a few seconds of Redis coming back.
 *
 * Then the local Upstash REST server restarted while requests wait: the Node edge's one shared
 * result stream ends with it; the waiting requests poll their result keys and are all answered, and
 * the edge subscribes again by itself.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startRedisServer, type RedisServerHandle } from '../dev/redis-server.ts';
import { startUpstashRestServer } from '../dev/upstash-rest/server.ts';
import { parseEdgeConfig } from '../edge/config.ts';
import { startNodeEdge, type NodeEdge } from '../edge/node/server.ts';
import { selectBackend } from '../gpu-worker/engine/tfjs/backend.ts';
import { redisKeys } from '../shared/keys.ts';
import { createLogger } from '../shared/log.ts';
import { colourPng, entriesAdded, pendingEntries, predict, sleep, spawnWorker, summary, tally, waitFor, type Reply, type WorkerProcess } from './helpers/faults.ts';
import { createTinyModel, type TinyModel } from './helpers/tiny-model.ts';

const TOKEN = 'outage-test-token-0123456789';
const logger = createLogger('faults-outage', 'silent');
const PREFIX = 'f-outage';
const DEADLINE_MS = 20_000;

let redisServer: RedisServerHandle;
let rest: Awaited<ReturnType<typeof startUpstashRestServer>>;
let tiny: TinyModel;
let worker: WorkerProcess | undefined;
const edges: { name: 'upstash' | 'ioredis'; edge: NodeEdge }[] = [];
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => void unhandled.push(reason);

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  redisServer = await startRedisServer();
  rest = await startUpstashRestServer({ redisUrl: redisServer.url, token: TOKEN, port: 0, logger });
  await selectBackend('wasm');
  tiny = await createTinyModel({ classes: 10, seed: 7 });
});

afterAll(async () => {
  process.off('unhandledRejection', onUnhandled);
  await Promise.all(edges.map(({ edge }) => edge.close()));
  await worker?.tier.stop(2000);
  await rest?.close();
  await redisServer?.stop();
  await tiny?.cleanup();
});

describe('Redis outage', () => {
  it('in-flight requests get 503 in seconds, new ones at once; service resumes after Redis returns, over both brokers', async () => {
    worker = spawnWorker(`${PREFIX}-w`, {
      REDIS_URL: redisServer.url,
      KEY_PREFIX: PREFIX,
      ...tiny.env,
      BATCH_SIZE: '4',
      INFERENCE_DELAY_MS: '800',
      CLAIM_IDLE_MS: '1000',
    });
    const common = { PORT: '0', HOST: '127.0.0.1', KEY_PREFIX: PREFIX, DEADLINE_MS: String(DEADLINE_MS) };
    edges.push({ name: 'upstash', edge: await startNodeEdge(parseEdgeConfig({ ...common, UPSTASH_REDIS_REST_URL: rest.url, UPSTASH_REDIS_REST_TOKEN: TOKEN }), logger) });
    edges.push({ name: 'ioredis', edge: await startNodeEdge(parseEdgeConfig({ ...common, REDIS_URL: redisServer.url }), logger) });
    await worker.tier.ready;
    const image = await colourPng(3);
    const keys = redisKeys(PREFIX);
    const probe = new Redis(redisServer.url, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
    await probe.connect();
    probe.on('error', () => {});
    const all: Reply[] = [];
    const send = async (url: string) => {
      const reply = await predict(url, image);
      all.push(reply);
      return reply;
    };

    // Warm: both edges answer.
    for (const { edge } of edges) expect((await send(edge.url)).status).toBe(200);

    // In flight: 6 per edge; the worker holds a batch of 4 (800 ms each), the rest waits.
    const inFlight = edges.flatMap(({ edge }) => Array.from({ length: 6 }, () => send(edge.url)));
    await waitFor(
      async () => (await entriesAdded(probe, keys.stream)) === 14 && (await pendingEntries(probe, keys)).length > 0,
      10_000,
      'all 12 jobs queued and a batch in hand',
    );
    probe.disconnect();
    const stoppedAt = Date.now();
    await redisServer.stop();

    // During the outage: new requests are refused at once.
    await sleep(200);
    const during = await Promise.all(edges.flatMap(({ edge }) => [send(edge.url), send(edge.url)]));
    for (const reply of during) {
      expect(reply.status, JSON.stringify(reply.body)).toBe(503);
      expect(reply.body.error?.code).toBe('broker_unavailable');
      expect(reply.doneAt - reply.sentAt).toBeLessThan(1000);
    }
    // In flight: each answered, 200 (done before the stop) or 503, within seconds of the stop.
    const flown = await Promise.all(inFlight);
    for (const reply of flown) {
      expect([200, 503], JSON.stringify(reply.body)).toContain(reply.status);
      if (reply.status === 503) expect(reply.body.error?.code).toBe('broker_unavailable');
      expect(reply.doneAt - stoppedAt).toBeLessThan(5000);
    }
    const inFlightSlowestMs = Math.max(...flown.map((r) => r.doneAt - stoppedAt));

    // Back on the same port, empty (nothing was persisted): nothing restarted but Redis.
    await sleep(Math.max(0, 3000 - (Date.now() - stoppedAt)));
    const downMs = Date.now() - stoppedAt;
    redisServer = await startRedisServer({ port: redisServer.port });
    const restartedAt = Date.now();
    const resumeMs: Record<string, number> = {};
    await Promise.all(
      edges.map(async ({ name, edge }) => {
        await waitFor(async () => (await send(edge.url)).status === 200, 15_000, `${name} edge to answer 200 again`, 100);
        resumeMs[name] = Date.now() - restartedAt;
      }),
    );
    for (const ms of Object.values(resumeMs)) expect(ms).toBeLessThan(8000);
    const after = await Promise.all(edges.flatMap(({ edge }) => Array.from({ length: 4 }, () => send(edge.url))));
    expect(tally(after)).toEqual({ '200': 8 });

    // Same worker process all along, and no stray rejection in the edges' process.
    expect(worker.alive()).toBe(true);
    expect(worker.lines.filter((l) => l.includes('worker ready'))).toHaveLength(1);
    expect(unhandled).toEqual([]);
    const lost = all.filter((r) => r.status === 0 || r.body.error?.code === 'not_json' || r.doneAt - r.sentAt > DEADLINE_MS).length;
    expect(lost).toBe(0);
    expect(all.every((r) => r.status === 200 || (r.status === 503 && r.body.error?.code === 'broker_unavailable'))).toBe(true);
    summary(`redis-server stopped x1 for ${(downMs / 1000).toFixed(1)} s with 12 requests in flight (2 brokers)`, all.length, lost, {
      statuses: tally(all),
      'in-flight answered within ms of the stop': inFlightSlowestMs,
      'resumed ms after restart': resumeMs,
      'unhandled rejections': unhandled.length,
    });
  });

  it('the REST server restarted while requests wait: the shared result stream ends, every request is answered, then it subscribes again', async () => {
    const prefix = 'f-rest';
    const keys = redisKeys(prefix);
    const port = await freePort();
    let restServer = await startUpstashRestServer({ redisUrl: redisServer.url, token: TOKEN, port, logger });
    const restWorker = spawnWorker(`${prefix}-w`, { REDIS_URL: redisServer.url, KEY_PREFIX: prefix, MODEL: 'synthetic:timer:800', BATCH_SIZE: '4' });
    const edge = await startNodeEdge(
      parseEdgeConfig({ PORT: '0', HOST: '127.0.0.1', KEY_PREFIX: prefix, DEADLINE_MS: String(DEADLINE_MS), UPSTASH_REDIS_REST_URL: restServer.url, UPSTASH_REDIS_REST_TOKEN: TOKEN }),
      logger,
    );
    const probe = new Redis(redisServer.url);
    try {
      await restWorker.tier.ready;
      const image = await colourPng(5);
      expect((await predict(edge.url, image)).status).toBe(200);
      expect(restServer.stats().listeners).toBe(1); // the edge's one subscription, not one per request

      // 8 in flight: two batches of 4 at 800 ms each; the REST server goes away once all are queued.
      const inFlight = Array.from({ length: 8 }, () => predict(edge.url, image));
      await waitFor(async () => (await entriesAdded(probe, keys.stream)) === 9, 10_000, 'all 8 jobs queued');
      await restServer.close();
      restServer = await startUpstashRestServer({ redisUrl: redisServer.url, token: TOKEN, port, logger });
      const replies = await Promise.all(inFlight);
      expect(tally(replies)).toEqual({ '200': 8 });

      await waitFor(() => restServer.stats().listeners === 1, 5_000, 'the edge to subscribe again');
      const after = await Promise.all(Array.from({ length: 4 }, () => predict(edge.url, image)));
      expect(tally(after)).toEqual({ '200': 4 });
      expect(restServer.stats().listeners).toBe(1);
      expect(unhandled).toEqual([]);
      summary('local Upstash REST server restarted x1 with 8 requests waiting on the shared result stream', 12, 0, { statuses: tally([...replies, ...after]) });
    } finally {
      probe.disconnect();
      await edge.close();
      await restWorker.tier.stop(2000);
      await restServer.close();
    }
  });
});
