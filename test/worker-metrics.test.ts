/**
 * The worker's Prometheus /metrics on real parts: a worker process (synthetic timer model, so a
 * batch takes a known time), redis-server, and the Node edge over HTTP. Values are read from the
 * exposition text with regexes and compared with what the test made happen.
 */
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../dev/redis-server.ts';
import { spawnTier } from '../dev/processes.ts';
import type { NodeEdge } from '../edge/node/server.ts';
import { redisKeys } from '../shared/keys.ts';
import { createLogger } from '../shared/log.ts';
import { jobToFieldList } from '../shared/protocol.ts';
import { TENSOR_BYTES } from '../shared/tensor.ts';
import { type WorkerProcess, spawnWorker, startLocalEdge, useRedisServer, viaTcp } from './helpers/fixtures.ts';
import { colourPng, predict, waitFor } from './helpers/faults.ts';

const PREFIX = 'metrics';
const keys = redisKeys(PREFIX);
const logger = createLogger('metrics-test', 'silent');
const DELAY_MS = 400;

const db = useRedisServer();
let edge: NodeEdge;
let worker: WorkerProcess;
let metricsUrl: string;

/** The worker's one shard, as the backlog gauges label it (REDIS_URL's host:port). */
const shard = () => new URL(db.url).host;

beforeAll(async () => {
  const port = await freePort();
  metricsUrl = `http://127.0.0.1:${port}/metrics`;
  worker = spawnWorker('metrics-w1', {
    REDIS_URL: db.url,
    KEY_PREFIX: PREFIX,
    MODEL: `synthetic:timer:${DELAY_MS}`,
    BATCH_SIZE: '2',
    MAX_BATCH_DELAY_MS: '0',
    METRICS_PORT: String(port),
    METRICS_HOST: '127.0.0.1',
  });
  edge = await startLocalEdge(viaTcp(db.url), logger, { KEY_PREFIX: PREFIX });
  await worker.tier.ready;
});

afterAll(async () => {
  await edge?.close();
  await worker?.tier.stop(2000);
});

/**
 * A base port with the next `count - 1` free too, below Linux's ephemeral range (32768+): ports
 * picked with port 0 (freePort) and outgoing connections come from that range, so base+1 and
 * base+2 of a freePort() could be taken by the time the children bind them.
 */
async function freePortRun(count: number): Promise<number> {
  const bind = (port: number) =>
    new Promise<ReturnType<typeof createServer> | undefined>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(undefined));
      server.listen(port, '127.0.0.1', () => resolve(server));
    });
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 12_000);
    const servers = await Promise.all(Array.from({ length: count }, (_, i) => bind(base + i)));
    await Promise.all(servers.map((server) => server && new Promise((resolve) => server.close(resolve))));
    if (servers.every(Boolean)) return base;
  }
  throw new Error(`no run of ${count} free ports found`);
}

async function scrape(url = metricsUrl): Promise<string> {
  const response = await fetch(url);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
  return response.text();
}

/** The value of one sample, e.g. value(text, 'resnet_worker_jobs_total{outcome="ok"}'); undefined if absent. */
function value(text: string, sample: string): number | undefined {
  const escaped = sample.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const match = new RegExp(`^${escaped} (\\S+)$`, 'm').exec(text);
  return match ? Number(match[1]) : undefined;
}

describe('worker /metrics', () => {
  it('shows the backlog while jobs wait, then job outcomes, batch sizes, queue wait and inference times, and the info labels', async () => {
    const before = await scrape();
    expect(
      value(
        before,
        'resnet_worker_info{engine="synthetic",provider="none",threads="0",model="synthetic:timer:400",batch_size="2",consumer="metrics-w1"}',
      ),
    ).toBe(1);
    expect(value(before, `resnet_worker_queue_length{shard="${shard()}"}`)).toBe(0);
    expect(value(before, 'resnet_worker_batch_size_count')).toBe(0);
    expect(before).toMatch(/^process_cpu_user_seconds_total \d/m); // prom-client's default process metrics
    expect(before).toMatch(/^nodejs_eventloop_lag_seconds \d/m);

    // 5 requests, batches of at most 2 taking 400 ms each: while the first batch runs, 3 wait.
    const image = await colourPng(5);
    const replies = Promise.all(Array.from({ length: 5 }, () => predict(edge.url, image)));
    // Scrape between two identical readings of the queue, so the values compared cannot have moved.
    const backlog = async () => [await db.redis.xlen(keys.stream), ((await db.redis.xpending(keys.stream, keys.group)) as [number])[0]];
    const during = await waitFor(
      async () => {
        const [length, pending] = await backlog();
        const text = await scrape();
        const [lengthAfter, pendingAfter] = await backlog();
        return length === lengthAfter && pending === pendingAfter && length! >= 3 && pending! > 0 ? { length, pending, text } : undefined;
      },
      5000,
      'a steady backlog of 3 or more jobs with a batch in hand',
      5,
    );
    expect(value(during.text, `resnet_worker_queue_length{shard="${shard()}"}`)).toBe(during.length);
    expect(value(during.text, `resnet_worker_queue_pending{shard="${shard()}"}`)).toBe(during.pending);

    // One job already past its deadline: acked unanswered ('expired').
    await db.redis.xadd(
      keys.stream,
      '*',
      ...(jobToFieldList({
        id: 'expired-job',
        enc: 'raw',
        tensor: Buffer.alloc(TENSOR_BYTES),
        enqueuedAt: Date.now() - 5000,
        deadline: Date.now() - 1000,
        reply: 'nobody',
      }) as string[]),
    );

    for (const reply of await replies) expect(reply.status, JSON.stringify(reply.body)).toBe(200);
    await waitFor(async () => (await db.redis.xlen(keys.stream)) === 0, 5000, 'the stream to drain');
    await waitFor(async () => value(await scrape(), 'resnet_worker_jobs_total{outcome="expired"}') === 1, 3000, 'the expired job counted');

    const after = await scrape();
    expect(value(after, 'resnet_worker_jobs_total{outcome="ok"}')).toBe(5);
    expect(value(after, 'resnet_worker_jobs_total{outcome="expired"}')).toBe(1);
    expect(value(after, 'resnet_worker_jobs_total{outcome="deadlettered"}')).toBe(0); // every outcome listed, from 0
    // Every entry read lands in exactly one batch; batches hold at most BATCH_SIZE.
    expect(value(after, 'resnet_worker_batch_size_sum')).toBe(6);
    const batches = value(after, 'resnet_worker_batch_size_count')!;
    expect(batches).toBeGreaterThanOrEqual(3);
    expect(value(after, 'resnet_worker_batch_size_bucket{le="2"}')).toBe(batches);
    // Inference: one observation per batch that ran something, each about DELAY_MS.
    const inferences = value(after, 'resnet_worker_inference_seconds_count')!;
    expect(inferences).toBeGreaterThanOrEqual(3);
    expect(value(after, 'resnet_worker_inference_seconds_sum')!).toBeGreaterThanOrEqual((inferences * DELAY_MS * 0.9) / 1000);
    expect(value(after, 'resnet_worker_inference_seconds_bucket{le="0.25"}')).toBe(0);
    // Queue wait: one per job run; the last pair waited for two batches ahead of it.
    expect(value(after, 'resnet_worker_queue_wait_seconds_count')).toBe(5);
    expect(value(after, 'resnet_worker_queue_wait_seconds_bucket{le="0.5"}')!).toBeLessThan(5);
    expect(value(after, `resnet_worker_queue_length{shard="${shard()}"}`)).toBe(0);
    expect(value(after, `resnet_worker_queue_pending{shard="${shard()}"}`)).toBe(0);
    expect(value(after, 'resnet_worker_heartbeat_failures_total')).toBe(0);
  });

  it('answers 404 off /metrics', async () => {
    const response = await fetch(metricsUrl.replace('/metrics', '/other'));
    expect(response.status).toBe(404);
  });

  it('INFERENCE_PROCESSES=2: each child serves its own /metrics on METRICS_PORT+1 and +2', async () => {
    const base = await freePortRun(3);
    const supervisor = spawnTier({
      name: 'metrics-supervisor',
      entry: 'gpu-worker/main.ts',
      env: {
        REDIS_URL: db.url,
        KEY_PREFIX: `${PREFIX}-multi`,
        MODEL: 'synthetic:instant',
        INFERENCE_PROCESSES: '2',
        CONSUMER_NAME: 'multi',
        METRICS_PORT: String(base),
        METRICS_HOST: '127.0.0.1',
        LOG_LEVEL: 'info',
      },
      readyMessage: 'all inference processes ready',
      print: null,
    });
    try {
      await supervisor.ready;
      for (const slot of [1, 2]) {
        const text = await scrape(`http://127.0.0.1:${base + slot}/metrics`);
        expect(text).toMatch(new RegExp(`^resnet_worker_info\\{[^}]*consumer="multi-${slot}"[^}]*\\} 1$`, 'm'));
      }
      await expect(fetch(`http://127.0.0.1:${base}/metrics`)).rejects.toThrow(); // the supervisor serves none
    } finally {
      await supervisor.stop(5000);
    }
  });
});
