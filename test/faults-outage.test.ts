/**
 * Redis killed under load, then started again empty on the same port: real redis-server, the
 * local Upstash REST server, a gpu-worker child process, and two Node edges in this process, one
 * per broker (Upstash REST and ioredis), on the default settings. Nothing is restarted but Redis.
 *
 * Expected (edge/broker/ride-through.ts): requests sent before and during the outage are held and
 * answered once Redis is back, jobs lost with it enqueued again; each answered once; none past its
 * deadline; no unhandled rejection or crash. Down past the deadline: 503 `broker_unavailable` with
 * Retry-After at the deadline, and at once beyond OUTAGE_HOLD_MAX held requests.
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
import { type NamedEdge, type WorkerProcess, spawnWorker, startBothEdges, startLocalEdge, viaRest } from './helpers/fixtures.ts';
import { selectBackend } from '../gpu-worker/engine/tfjs/backend.ts';
import { redisKeys } from '../shared/keys.ts';
import { createLogger } from '../shared/log.ts';
import { colourPng, entriesAdded, pendingEntries, predict, sleep, summary, tally, waitFor, type Reply } from './helpers/faults.ts';
import { createTinyModel, type TinyModel } from './helpers/tiny-model.ts';

const TOKEN = 'outage-test-token-0123456789';
const logger = createLogger('faults-outage', 'silent');
const PREFIX = 'f-outage';
const DEADLINE_MS = 20_000;

let redisServer: RedisServerHandle;
let rest: Awaited<ReturnType<typeof startUpstashRestServer>>;
let tiny: TinyModel;
let worker: WorkerProcess | undefined;
const edges: NamedEdge[] = [];
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
  it('redis-server killed under load and restarted empty 3 s later, default settings: requests held and re-enqueued, all answered, once each, over both brokers', async () => {
    worker = spawnWorker(`${PREFIX}-w`, {
      REDIS_URL: redisServer.url,
      KEY_PREFIX: PREFIX,
      ...tiny.env,
      BATCH_SIZE: '4',
      INFERENCE_DELAY_MS: '200',
    });
    edges.push(...(await startBothEdges({ rest, token: TOKEN, redisUrl: redisServer.url }, logger, { KEY_PREFIX: PREFIX })));
    const deadlineMs = parseEdgeConfig({ REDIS_URL: redisServer.url }).DEADLINE_MS; // the default
    await worker.tier.ready;
    const image = await colourPng(3);
    const keys = redisKeys(PREFIX);
    const probe = new Redis(redisServer.url, {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      retryStrategy: () => null,
    });
    await probe.connect();
    probe.on('error', () => {});
    const all: (Reply & { edge: string })[] = [];
    const pending: Promise<unknown>[] = [];
    const send = (name: string, url: string) => pending.push(predict(url, image).then((reply) => all.push({ ...reply, edge: name })));

    // Warm: both edges answer.
    for (const { name, edge } of edges) {
      send(name, edge.url);
      await Promise.all(pending);
    }
    expect(tally(all)).toEqual({ '200': 2 });

    // Load all along: a request to each edge every 100 ms.
    const load = setInterval(() => edges.forEach(({ name, edge }) => send(name, edge.url)), 100);
    const rssBefore = process.memoryUsage().rss;
    let rssMax = rssBefore;
    const sampling = setInterval(() => (rssMax = Math.max(rssMax, process.memoryUsage().rss)), 100);
    try {
      await sleep(1_500);
      await waitFor(async () => (await pendingEntries(probe, keys)).length > 0, 10_000, 'a batch in hand', 5);
      probe.disconnect();
      const stoppedAt = Date.now();
      await redisServer.stop();
      await sleep(3_000);
      // Back on the same port, empty (nothing was persisted): nothing restarted but Redis.
      redisServer = await startRedisServer({ port: redisServer.port });
      const downMs = Date.now() - stoppedAt;
      await sleep(3_000);
      clearInterval(load);
      await Promise.all(pending);
      clearInterval(sampling);

      const counts = tally(all);
      const answered = all.filter((r) => r.status === 200).length;
      const slowest = Math.max(...all.map((r) => r.doneAt - r.sentAt));
      const sentDuring = all.filter((r) => r.sentAt >= stoppedAt && r.sentAt < stoppedAt + downMs).length;
      expect(answered / all.length).toBeGreaterThanOrEqual(0.9);
      expect(slowest).toBeLessThan(deadlineMs);
      // One answer per request, each its own job.
      expect(new Set(all.map((r) => r.requestId)).size).toBe(all.length);
      for (const reply of all.filter((r) => r.status === 200)) expect(reply.body.id).toBe(reply.requestId);
      expect(sentDuring).toBeGreaterThan(40);
      // Same worker process all along (it recreated the group itself), and no stray rejection.
      expect(worker.alive()).toBe(true);
      expect(worker.lines.filter((l) => l.includes('worker ready'))).toHaveLength(1);
      expect(unhandled).toEqual([]);
      summary(
        `redis-server killed under load, restarted empty ${(downMs / 1000).toFixed(1)} s later (2 brokers, default settings)`,
        all.length,
        all.length - answered,
        {
          statuses: counts,
          'sent while down': sentDuring,
          'slowest ms': slowest,
          'edge process RSS growth MB': Math.round((rssMax - rssBefore) / 2 ** 20),
          'unhandled rejections': unhandled.length,
        },
      );
    } finally {
      clearInterval(load);
      clearInterval(sampling);
      await Promise.all(pending);
    }
  });

  it('Redis down longer than the deadline: the held requests get 503 broker_unavailable with Retry-After at their deadline, those past OUTAGE_HOLD_MAX at once', async () => {
    const holdMax = 4;
    const deadlineMs = 2_000;
    const prefix = 'f-hold';
    const down = await startRedisServer();
    const settings = { KEY_PREFIX: prefix, DEADLINE_MS: String(deadlineMs), OUTAGE_HOLD_MAX: String(holdMax) };
    const fronts = await startBothEdges({ rest, token: TOKEN, redisUrl: down.url }, logger, settings);
    const image = await colourPng(4);
    try {
      // The ioredis edge's Redis goes away; the REST server's too, for the Upstash edge (its Redis is redisServer).
      await down.stop();
      await redisServer.stop();
      const results = await Promise.all(
        fronts.map(async ({ name, edge }) => ({
          name,
          replies: await Promise.all(Array.from({ length: 10 }, () => predict(edge.url, image))),
        })),
      );
      for (const { name, replies } of results) {
        expect(tally(replies), name).toEqual({ '503 broker_unavailable': 10 });
        for (const reply of replies) expect(reply.retryAfter, name).toBe('1');
        const held = replies.filter((r) => r.doneAt - r.sentAt >= deadlineMs - 100);
        const refused = replies.filter((r) => r.doneAt - r.sentAt < 1_000);
        expect(held, name).toHaveLength(holdMax);
        expect(refused, name).toHaveLength(10 - holdMax);
        for (const reply of held) {
          expect(reply.doneAt - reply.sentAt, name).toBeLessThan(deadlineMs + 1_000);
          expect(reply.body.error!.message).toMatch(/still unreachable at this request's deadline/);
        }
      }
      summary(`Redis down past the deadline (${deadlineMs} ms, OUTAGE_HOLD_MAX ${holdMax}), 10 requests per broker`, 20, 0, {
        'held, 503 at the deadline': holdMax * 2,
        'refused at once': (10 - holdMax) * 2,
      });
    } finally {
      await Promise.all(fronts.map(({ edge }) => edge.close()));
      redisServer = await startRedisServer({ port: redisServer.port });
    }
  });

  it('the REST server restarted while requests wait: the shared result stream ends, every request is answered, then it subscribes again', async () => {
    const prefix = 'f-rest';
    const keys = redisKeys(prefix);
    const port = await freePort();
    let restServer = await startUpstashRestServer({ redisUrl: redisServer.url, token: TOKEN, port, logger });
    const restWorker = spawnWorker(`${prefix}-w`, {
      REDIS_URL: redisServer.url,
      KEY_PREFIX: prefix,
      MODEL: 'synthetic:timer:800',
      BATCH_SIZE: '4',
    });
    const edge = await startLocalEdge(viaRest(restServer, TOKEN), logger, { KEY_PREFIX: prefix, DEADLINE_MS: String(DEADLINE_MS) });
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
      summary('local Upstash REST server restarted x1 with 8 requests waiting on the shared result stream', 12, 0, {
        statuses: tally([...replies, ...after]),
      });
    } finally {
      probe.disconnect();
      await edge.close();
      await restWorker.tier.stop(2000);
      await restServer.close();
    }
  });
});
