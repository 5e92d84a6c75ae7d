/**
 * prune-consumers-2.lua through gpu-worker/consumers.ts, on a real redis-server: only consumers of
 * workers that are gone are removed (nothing pending, idle long enough, no heartbeat), and a
 * running worker prunes at start.
 */
import { describe, expect, it } from 'vitest';
import { useRedisServer } from './helpers/fixtures.ts';
import { pruneConsumers } from '../gpu-worker/consumers.ts';
import { parseWorkerConfig } from '../gpu-worker/config.ts';
import { startWorker } from '../gpu-worker/worker.ts';
import { createLogger } from '../shared/log.ts';
import { redisKeys } from '../shared/keys.ts';

const db = useRedisServer();

const consumerNames = async (keys: ReturnType<typeof redisKeys>) =>
  ((await db.redis.xinfo('CONSUMERS', keys.stream, keys.group)) as unknown[][])
    .map((fields) => String(fields[fields.indexOf('name') + 1]))
    .sort();

describe('pruning gone consumers', () => {
  it('removes only consumers with nothing pending, idle long enough and no heartbeat', async () => {
    const keys = redisKeys('prune');
    await db.redis.xgroup('CREATE', keys.stream, keys.group, '0', 'MKSTREAM');
    await db.redis.xadd(keys.stream, '*', 'id', 'job-1');
    await db.redis.xgroup('CREATECONSUMER', keys.stream, keys.group, 'gone');
    await db.redis.xreadgroup('GROUP', keys.group, 'gone-holding-a-job', 'COUNT', 1, 'STREAMS', keys.stream, '>');
    await db.redis.xgroup('CREATECONSUMER', keys.stream, keys.group, 'quiet-but-alive');
    await db.redis.hset(keys.workers, 'quiet-but-alive', '{}');
    await new Promise((resolve) => setTimeout(resolve, 80));
    await db.redis.xgroup('CREATECONSUMER', keys.stream, keys.group, 'just-started');

    expect(await pruneConsumers(db.redis, keys, 50)).toEqual(['gone']);
    expect(await consumerNames(keys)).toEqual(['gone-holding-a-job', 'just-started', 'quiet-but-alive']);
    // The held job is still pending on its consumer, for XAUTOCLAIM to take over.
    const [pending] = (await db.redis.xpending(keys.stream, keys.group)) as [number];
    expect(pending).toBe(1);
    // Nothing else qualifies: a second pass removes nothing.
    expect(await pruneConsumers(db.redis, keys, 50)).toEqual([]);
  });

  it('a worker prunes at start', async () => {
    const keys = redisKeys('prune-worker');
    await db.redis.xgroup('CREATE', keys.stream, keys.group, '0', 'MKSTREAM');
    await db.redis.xgroup('CREATECONSUMER', keys.stream, keys.group, 'old-host-4242');
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(await consumerNames(keys)).toEqual(['old-host-4242']);
    const config = parseWorkerConfig({
      REDIS_URL: db.url,
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
      expect(await db.redis.hkeys(keys.workers)).toEqual(['new-host-1']);
    } finally {
      await worker.stop();
    }
  });

  it('keeps everything under the default threshold (an hour of idleness)', async () => {
    const keys = redisKeys('prune-default');
    await db.redis.xgroup('CREATE', keys.stream, keys.group, '0', 'MKSTREAM');
    await db.redis.xgroup('CREATECONSUMER', keys.stream, keys.group, 'recent');
    expect(await pruneConsumers(db.redis, keys)).toEqual([]);
    expect(await consumerNames(keys)).toEqual(['recent']);
  });
});
