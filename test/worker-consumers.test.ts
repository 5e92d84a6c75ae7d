/**
 * prune-consumers-2.lua through gpu-worker/consumers.ts, on a real redis-server: only consumers of
 * workers that are gone are removed (nothing pending, idle long enough, no heartbeat), and a
 * running worker prunes at start.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pruneConsumers } from '../gpu-worker/consumers.ts';
import { parseWorkerConfig } from '../gpu-worker/config.ts';
import { startWorker } from '../gpu-worker/worker.ts';
import { createLogger } from '../shared/log.ts';
import { redisKeys } from '../shared/keys.ts';
import { ioredisScripts } from '../shared/lua/node.ts';
import { startRedisServer, type RedisServerHandle } from '../dev/redis-server.ts';

let redisServer: RedisServerHandle;
let redis: Redis;

beforeAll(async () => {
  redisServer = await startRedisServer();
  redis = new Redis(redisServer.url, { scripts: ioredisScripts });
});

afterAll(async () => {
  redis?.disconnect();
  await redisServer?.stop();
});

const consumerNames = async (keys: ReturnType<typeof redisKeys>) =>
  ((await redis.xinfo('CONSUMERS', keys.stream, keys.group)) as unknown[][])
    .map((fields) => String(fields[fields.indexOf('name') + 1]))
    .sort();

describe('pruning gone consumers', () => {
  it('removes only consumers with nothing pending, idle long enough and no heartbeat', async () => {
    const keys = redisKeys('prune');
    await redis.xgroup('CREATE', keys.stream, keys.group, '0', 'MKSTREAM');
    await redis.xadd(keys.stream, '*', 'id', 'job-1');
    await redis.xgroup('CREATECONSUMER', keys.stream, keys.group, 'gone');
    await redis.xreadgroup('GROUP', keys.group, 'gone-holding-a-job', 'COUNT', 1, 'STREAMS', keys.stream, '>');
    await redis.xgroup('CREATECONSUMER', keys.stream, keys.group, 'quiet-but-alive');
    await redis.hset(keys.workers, 'quiet-but-alive', '{}');
    await new Promise((resolve) => setTimeout(resolve, 80));
    await redis.xgroup('CREATECONSUMER', keys.stream, keys.group, 'just-started');

    expect(await pruneConsumers(redis, keys, 50)).toEqual(['gone']);
    expect(await consumerNames(keys)).toEqual(['gone-holding-a-job', 'just-started', 'quiet-but-alive']);
    // The held job is still pending on its consumer, for XAUTOCLAIM to take over.
    const [pending] = (await redis.xpending(keys.stream, keys.group)) as [number];
    expect(pending).toBe(1);
    // Nothing else qualifies: a second pass removes nothing.
    expect(await pruneConsumers(redis, keys, 50)).toEqual([]);
  });

  it('a worker prunes at start', async () => {
    const keys = redisKeys('prune-worker');
    await redis.xgroup('CREATE', keys.stream, keys.group, '0', 'MKSTREAM');
    await redis.xgroup('CREATECONSUMER', keys.stream, keys.group, 'old-host-4242');
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(await consumerNames(keys)).toEqual(['old-host-4242']);
    const config = parseWorkerConfig({
      REDIS_URL: redisServer.url,
      KEY_PREFIX: 'prune-worker',
      MODEL: 'synthetic:instant',
      CONSUMER_NAME: 'new-host-1',
      METRICS_PORT: '0',
    });
    const worker = startWorker(config, { logger: createLogger('test', 'silent'), consumerGoneAfterMs: 50 });
    try {
      await worker.ready;
      for (let i = 0; i < 100 && (await consumerNames(keys)).length > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
      // (The worker's own consumer only appears once a read hands it a job.)
      expect(await consumerNames(keys)).toEqual([]);
      expect(await redis.hkeys(keys.workers)).toEqual(['new-host-1']);
    } finally {
      await worker.stop();
    }
  });

  it('keeps everything under the default threshold (an hour of idleness)', async () => {
    const keys = redisKeys('prune-default');
    await redis.xgroup('CREATE', keys.stream, keys.group, '0', 'MKSTREAM');
    await redis.xgroup('CREATECONSUMER', keys.stream, keys.group, 'recent');
    expect(await pruneConsumers(redis, keys)).toEqual([]);
    expect(await consumerNames(keys)).toEqual(['recent']);
  });
});
