/**
 * The batcher's fill rule (gpu-worker/batcher.ts) against a real redis-server, counted with INFO
 * commandstats: a lone job after a lone job is returned by one XREADGROUP, without the fill wait;
 * after a batch of several, or when the first read finds several, the batch waits and fills.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { readBatch, type BatchReadOptions } from '../gpu-worker/batcher.ts';
import { redisKeys } from '../shared/keys.ts';
import { useRedisServer } from './helpers/fixtures.ts';

const db = useRedisServer();
const keys = redisKeys('fill');

beforeAll(async () => {
  await db.redis.xgroup('CREATE', keys.stream, keys.group, '0', 'MKSTREAM');
});

const xreadgroupCalls = async () => Number(/cmdstat_xreadgroup:calls=(\d+)/.exec(await db.redis.info('commandstats'))?.[1] ?? 0);
const add = () => db.redis.xadd(keys.stream, '*', 'n', '1');

/** Entries read, XREADGROUP calls it took, and whether a job added after the first read joined the batch. */
async function read(previousBatchSize: number, queued: number) {
  for (let i = 0; i < queued; i++) await add();
  const options: BatchReadOptions = {
    stream: keys.stream,
    group: keys.group,
    consumer: 'c',
    batchSize: 8,
    maxDelayMs: 300,
    blockMs: 1000,
    previousBatchSize,
  };
  const before = await xreadgroupCalls();
  // A job arriving during the fill wait: in the batch only if the batcher waited for company.
  const late = new Promise((resolve) => setTimeout(resolve, 100)).then(add);
  const batch = await readBatch(db.redis, options);
  await late;
  const calls = (await xreadgroupCalls()) - before;
  await db.redis.xtrim(keys.stream, 'MAXLEN', 0);
  await db.redis.xgroup('SETID', keys.stream, keys.group, '$');
  return { size: batch.length, calls };
}

describe('fill rule', () => {
  it('a lone job after a lone batch: one read, no wait', async () => {
    expect(await read(1, 1)).toEqual({ size: 1, calls: 1 });
    expect(await read(0, 1)).toEqual({ size: 1, calls: 1 }); // the first batch after start
  });

  it('a lone job after a batch of several: waits MAX_BATCH_DELAY_MS and fills', async () => {
    expect(await read(2, 1)).toEqual({ size: 2, calls: 2 });
  });

  it('several jobs at the first read: waits and fills, whatever came before', async () => {
    expect(await read(1, 2)).toEqual({ size: 3, calls: 2 });
  });
});
