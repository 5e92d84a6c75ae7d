/**
 * Several brokers, one service (QUEUES): two redis-servers (each its own process), a local
 * Upstash REST server in front of each, one gpu-worker child process serving both, and Node
 * edges over TCP and over REST, on the default settings but QUEUES.
 *
 * Expected (edge/broker/sharded.ts, gpu-worker/worker.ts): requests spread over both shards and
 * are answered once each, over both transports; /readyz shows each shard. One of the two shards
 * lost under load and not restarted (a REST front that hangs, one closed; a redis-server SIGKILLed): at least 99%
 * of the requests answered 200, each once with its own job, none lost, and the dead shard reported
 * down within 2 s; the worker keeps serving the other shard.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startUpstashRestServer, type UpstashRestServer } from '../dev/upstash-rest/server.ts';
import type { NodeEdge } from '../edge/node/server.ts';
import { redisKeys } from '../shared/keys.ts';
import { createLogger } from '../shared/log.ts';
import { colourPng, entriesAdded, hangingProxy, predict, sleep, summary, tally, type Reply } from './helpers/faults.ts';
import { spawnWorker, startLocalEdge, useRedisServer, type WorkerProcess } from './helpers/fixtures.ts';

const TOKEN = 'sharded-test-token-0123456789';
const PREFIX = 'sharded';
const logger = createLogger('sharded-test', 'silent');
const keys = redisKeys(PREFIX);

const shardA = useRedisServer();
const shardB = useRedisServer();
let restA: UpstashRestServer;
let restB: UpstashRestServer;
let worker: WorkerProcess;
const edges: NodeEdge[] = [];
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => void unhandled.push(reason);

const overTcp = () => ({ QUEUES: `${shardA.url},${shardB.url}` });
const overRest = () => ({
  QUEUES: JSON.stringify([
    { name: 'a', url: restA.url, token: TOKEN },
    { name: 'b', url: restB.url, token: TOKEN },
  ]),
});

async function edgeWith(env: Record<string, string>): Promise<NodeEdge> {
  const edge = await startLocalEdge({}, logger, { KEY_PREFIX: PREFIX, ...env });
  edges.push(edge);
  return edge;
}

interface ShardView {
  name: string;
  state: string;
  workers: number;
}
const readyz = async (edge: NodeEdge) => (await (await fetch(`${edge.url}/readyz`)).json()) as { shards?: ShardView[] };

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  restA = await startUpstashRestServer({ redisUrl: shardA.url, token: TOKEN, port: 0, logger });
  restB = await startUpstashRestServer({ redisUrl: shardB.url, token: TOKEN, port: 0, logger });
  worker = spawnWorker('sharded-w', { QUEUES: `${shardA.url},${shardB.url}`, KEY_PREFIX: PREFIX, MODEL: 'synthetic:timer:20' });
  await worker.tier.ready;
});

afterAll(async () => {
  process.off('unhandledRejection', onUnhandled);
  await Promise.all(edges.map((edge) => edge.close()));
  await worker?.tier.stop(2000);
  await restA?.close();
  await restB?.close();
});

/** Every 200 is its request's own job, and every request got one answer. */
function expectAnsweredOnce(replies: Reply[]): void {
  expect(new Set(replies.map((reply) => reply.requestId)).size).toBe(replies.length);
  for (const reply of replies.filter((r) => r.status === 200)) expect(reply.body.id).toBe(reply.requestId);
  expect(replies.filter((reply) => reply.status === 0)).toEqual([]);
}

/**
 * A request every `everyMs` for `forMs` to `edge`; `fault` runs at `faultAtMs`. Then: the shard
 * named `dead` is polled on /readyz until it is down (ms after the fault).
 */
async function underLoad(edge: NodeEdge, fault: () => Promise<void> | void, dead: string) {
  const image = await colourPng(5);
  const replies: Reply[] = [];
  const pending: Promise<unknown>[] = [];
  const load = setInterval(() => pending.push(predict(edge.url, image).then((reply) => replies.push(reply))), 25);
  let downAfterMs: number | undefined;
  try {
    await sleep(1_500);
    const faultAt = Date.now();
    await fault();
    while (Date.now() - faultAt < 5_000) {
      const shard = (await readyz(edge)).shards?.find((s) => s.name === dead);
      if (shard?.state === 'down') {
        downAfterMs = Date.now() - faultAt;
        break;
      }
      await sleep(50);
    }
    await sleep(2_500);
  } finally {
    clearInterval(load);
    await Promise.all(pending);
  }
  return { replies, downAfterMs };
}

describe('sharded queues (QUEUES)', () => {
  it('spreads requests over both shards, answers each once, over TCP and over REST; /readyz shows each shard', async () => {
    const image = await colourPng(1);
    for (const edge of [await edgeWith(overTcp()), await edgeWith(overRest())]) {
      const before = [await entriesAdded(shardA.redis, keys.stream), await entriesAdded(shardB.redis, keys.stream)];
      const replies: Reply[] = [];
      for (let round = 0; round < 5; round++) {
        replies.push(...(await Promise.all(Array.from({ length: 8 }, () => predict(edge.url, image)))));
      }
      expect(tally(replies)).toEqual({ '200': 40 });
      expectAnsweredOnce(replies);
      const added = [
        (await entriesAdded(shardA.redis, keys.stream)) - before[0]!,
        (await entriesAdded(shardB.redis, keys.stream)) - before[1]!,
      ];
      // Both shards took a fair part (power of two choices by backlog), and nothing was enqueued twice.
      expect(added[0]! + added[1]!).toBe(40);
      expect(Math.min(...added)).toBeGreaterThanOrEqual(8);
      const { shards } = await readyz(edge);
      expect(shards).toHaveLength(2);
      for (const shard of shards!) expect(shard).toMatchObject({ state: 'up', workers: 1 });
      const models = (await (await fetch(`${edge.url}/v1/models`)).json()) as { models: { workers: unknown[] }[]; shards: ShardView[] };
      // The worker serves both shards: listed once, and each shard counts it.
      expect(models.models[0]!.workers).toHaveLength(1);
      expect(models.shards.map((shard) => shard.workers)).toEqual([1, 1]);
    }
  });

  /** `fault` loses shard `dead` under load: the figures the docs' fault table quotes, and the bar. */
  async function loseOneShard(edge: NodeEdge, fault: () => Promise<void> | void, dead: string, what: string) {
    const { replies, downAfterMs } = await underLoad(edge, fault, dead);
    const ok = replies.filter((reply) => reply.status === 200).length;
    summary(`${what} (2 shards, default settings)`, replies.length, replies.length - ok, {
      statuses: tally(replies),
      'shard down after ms': downAfterMs,
    });
    expectAnsweredOnce(replies);
    expect(ok / replies.length).toBeGreaterThanOrEqual(0.99);
    expect(downAfterMs).toBeLessThanOrEqual(2_000);
    expect(worker.alive()).toBe(true);
  }

  it('one of two Upstash REST fronts hangs under load (accepts, never answers): >= 99% answered 200, each once; the shard down within 2 s', async () => {
    const proxy = await hangingProxy(restB.url);
    try {
      const queues = JSON.stringify([
        { name: 'a', url: restA.url, token: TOKEN },
        { name: 'hung', url: proxy.url, token: TOKEN },
      ]);
      await loseOneShard(await edgeWith({ QUEUES: queues }), () => proxy.hang(), 'hung', 'one of two Upstash REST fronts hangs under load');
    } finally {
      await proxy.close();
    }
  });

  it('one of two Upstash REST fronts closed under load (not restarted): >= 99% answered 200, each once; the dead shard down within 2 s', async () => {
    await loseOneShard(await edgeWith(overRest()), () => restA.close(), 'a', 'one of two Upstash REST fronts closed under load');
  });

  it('one of two redis-servers SIGKILLed under load (not restarted): >= 99% answered 200, each once; the dead shard down within 2 s', async () => {
    const edge = await edgeWith(overTcp());
    const kill = () => void shardA.server.process.kill('SIGKILL');
    await loseOneShard(edge, kill, new URL(shardA.url).host, 'one of two redis-servers SIGKILLed under load');
    // The worker serves the shard left.
    expect(tally(await Promise.all(Array.from({ length: 4 }, async () => predict(edge.url, await colourPng(9)))))).toEqual({ '200': 4 });
    expect(unhandled).toEqual([]);
  });
});
