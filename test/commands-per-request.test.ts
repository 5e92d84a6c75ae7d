/**
 * Redis commands per request, counted by Redis itself: INFO commandstats (which also counts the
 * commands a Lua script runs) before and after N sequential requests at concurrency 1, on a real
 * stack: the Node edge over HTTP, talking Upstash REST to the local REST server (or, as a switch,
 * ioredis), redis-server, and an in-process worker with the synthetic instant model. One request at
 * a time means batches of one job: the case where nothing is shared and every command counts.
 *
 * A count, not a timing, so it is stable. Set COMMANDS_LOG=1 to print the breakdown.
 */
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisServer, type RedisServerHandle } from '../dev/redis-server.ts';
import { startUpstashRestServer } from '../dev/upstash-rest/server.ts';
import { parseEdgeConfig, type EdgeConfig } from '../edge/config.ts';
import type { Logger } from '../shared/log.ts';
import { startNodeEdge, type NodeEdge } from '../edge/node/server.ts';
import { parseWorkerConfig } from '../gpu-worker/config.ts';
import { startWorker, type WorkerHandle } from '../gpu-worker/worker.ts';
import { createLogger } from '../shared/log.ts';
import { Redis as IoRedis } from 'ioredis';
import { predict } from './helpers/faults.ts';
import { startPerRequestEdge } from './helpers/per-request-edge.ts';

const TOKEN = 'commands-test-token-0123456789';
const REQUESTS = 20;
const logger = createLogger('commands-test', 'silent');
const SHOW = process.env.COMMANDS_LOG === '1';

let redisServer: RedisServerHandle;
let rest: Awaited<ReturnType<typeof startUpstashRestServer>>;
let inspector: IoRedis;
let image: Uint8Array;

beforeAll(async () => {
  redisServer = await startRedisServer();
  rest = await startUpstashRestServer({ redisUrl: redisServer.url, token: TOKEN, port: 0, logger });
  inspector = new IoRedis(redisServer.url);
  image = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 200, g: 120, b: 40 } } })
    .png()
    .toBuffer();
});

afterAll(async () => {
  await rest?.close();
  inspector?.disconnect();
  await redisServer?.stop();
});

/** calls per command, from INFO commandstats (`cmdstat_xadd:calls=3,usec=...`). */
async function commandCalls(): Promise<Map<string, number>> {
  const info = await inspector.info('commandstats');
  const calls = new Map<string, number>();
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(match[1]!, Number(match[2]));
  return calls;
}

/** Commands per request over REQUESTS sequential requests, by command (the inspector's INFO left out). */
async function measure(edgeEnv: Record<string, string>, startEdge: StartEdge = startNodeEdge) {
  const prefix = `cmd${Math.random().toString(36).slice(2, 8)}`;
  const worker: WorkerHandle = startWorker(
    parseWorkerConfig({ REDIS_URL: redisServer.url, KEY_PREFIX: prefix, MODEL: 'synthetic:instant', CONSUMER_NAME: `${prefix}-w` }),
    { logger },
  );
  let edge: Pick<NodeEdge, 'url' | 'close'> | undefined;
  try {
    await worker.ready;
    edge = await startEdge(parseEdgeConfig({ KEY_PREFIX: prefix, PORT: '0', HOST: '127.0.0.1', ...edgeEnv }), logger);
    // Warm up: script loading (EVALSHA's first NOSCRIPT, then EVAL) and connections are one-off costs.
    for (let i = 0; i < 3; i++) expect((await predict(edge.url, image)).status).toBe(200);
    const before = await commandCalls();
    for (let i = 0; i < REQUESTS; i++) {
      const reply = await predict(edge.url, image);
      expect(reply.status).toBe(200);
      expect(reply.body.batchSize).toBe(1);
    }
    const after = await commandCalls();
    const perRequest: Record<string, number> = {};
    let total = 0;
    for (const [command, calls] of after) {
      const delta = calls - (before.get(command) ?? 0) - (command === 'info' ? 1 : 0);
      if (delta <= 0) continue;
      perRequest[command] = delta / REQUESTS;
      total += delta / REQUESTS;
    }
    return { total, perRequest };
  } finally {
    await edge?.close();
    await worker.stop();
  }
}

type StartEdge = (config: EdgeConfig, logger: Logger) => Promise<Pick<NodeEdge, 'url' | 'close'>>;

const show = (name: string, { total, perRequest }: { total: number; perRequest: Record<string, number> }) => {
  if (SHOW) console.log(`${name}: ${total.toFixed(2)} commands per request`, perRequest);
};

/**
 * The floor of this design at concurrency 1, on both Node paths: enqueue-1.lua (EVALSHA + XLEN + XADD:
 * the bounded queue), one XREADGROUP (the fill read is skipped for a lone job, batcher.ts), and the
 * completion (complete-n.lua: EVALSHA + SET NX + PUBLISH + XACK + XDEL). Executed: 9; sent by the
 * clients: 3 (test/commands-per-image.test.ts counts those, at batch sizes 1, 8 and 32).
 * The wait costs nothing per request: the Node edge holds one subscription per process (a shared
 * SSE stream over REST, shared-inbox.ts; a subscriber connection over TCP). A Workers edge
 * subscribes per request: + SUBSCRIBE + UNSUBSCRIBE (measured below with a per-request inbox).
 * Slack of 0.25: an idle XREADGROUP timeout or a health PING between requests on a slow machine
 * adds 1/REQUESTS.
 */
const SLACK = 0.25;
const FLOOR = { evalsha: 2, xlen: 1, xadd: 1, set: 1, publish: 1, xack: 1, xdel: 1 };

describe('Redis commands per request (INFO commandstats, concurrency 1)', () => {
  it('Upstash REST path with the Node edge: 9 executed (the completion one script: 1 command sent per batch, not 4 per job)', async () => {
    const result = await measure({ UPSTASH_REDIS_REST_URL: rest.url, UPSTASH_REDIS_REST_TOKEN: TOKEN });
    show('upstash rest', result);
    expect(result.perRequest).toMatchObject(FLOOR);
    expect(result.perRequest.subscribe ?? 0).toBe(0);
    expect(result.perRequest.xreadgroup).toBeLessThanOrEqual(1 + SLACK);
    expect(result.total).toBeLessThanOrEqual(9 + SLACK);
  });

  it('Upstash REST path with a subscription per request (the Workers edge): 11', async () => {
    const result = await measure({ UPSTASH_REDIS_REST_URL: rest.url, UPSTASH_REDIS_REST_TOKEN: TOKEN }, startPerRequestEdge);
    show('upstash rest, per-request subscription', result);
    expect(result.perRequest).toMatchObject({ ...FLOOR, subscribe: 1, unsubscribe: 1 });
    expect(result.total).toBeLessThanOrEqual(11 + SLACK);
  });

  it('direct connection (ioredis): 9', async () => {
    const result = await measure({ EDGE_BROKER: 'ioredis', REDIS_URL: redisServer.url });
    show('ioredis', result);
    expect(result.perRequest).toMatchObject(FLOOR);
    expect(result.perRequest.xreadgroup).toBeLessThanOrEqual(1 + SLACK);
    expect(result.total).toBeLessThanOrEqual(9 + SLACK);
  });
});
