/**
 * The worker's two Redis connections: `reader` sits in blocking XREADGROUP calls and `writer` sends
 * answers and housekeeping, so a blocked read never delays an answer. Both reconnect by themselves.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../shared/keys.ts';
import type { Logger } from '../shared/log.ts';
import { connectShard, fatalRedisError } from '../shared/redis-connection.ts';
import type { ShardSpec } from '../shared/shards.ts';
import type { WorkerConfig } from './config.ts';

export interface Connections {
  reader: Redis;
  writer: Redis;
  /** Cut the reader's blocking read short (it returns nothing, as on its timeout). Best effort. */
  unblockReader(): Promise<void>;
  close(): Promise<void>;
}

/** The two connections to one shard. */
export async function openConnections(
  shard: ShardSpec,
  config: Pick<WorkerConfig, 'redisTlsCa' | 'consumerName'>,
  log: Logger,
): Promise<Connections> {
  const connect = (role: string) => {
    const redis = connectShard(shard, config.redisTlsCa, { connectionName: `gpu-worker:${config.consumerName}:${role}` });
    let lastLogged = 0;
    redis.on('error', (error: Error) => {
      // ioredis reconnects by itself; say so once in a while, not on every retry.
      if (Date.now() - lastLogged > 5000)
        log.warn({ role, err: error, ...(fatalRedisError(error) && { reason: fatalRedisError(error) }) }, 'redis connection error');
      lastLogged = Date.now();
    });
    return redis;
  };
  const reader = connect('reader');
  const writer = connect('writer');
  /** CLIENT ID of the reader connection; a reconnect gets a new one. */
  let readerId: number | undefined;
  const learnReaderId = () =>
    reader.client('ID').then(
      (id) => void (readerId = id),
      () => undefined,
    );
  // On a cluster, CLIENT ID and UNBLOCK would reach some node, not the reader's: its BLOCK timeout bounds stop().
  // Learnt once connected, not awaited: a shard down at start must not hold the others up.
  if (!shard.cluster) reader.on('ready', () => void learnReaderId());
  return {
    reader,
    writer,
    async unblockReader() {
      // Some hosted Redis refuse CLIENT UNBLOCK, and after a reconnect the id is stale: then the
      // read's own BLOCK timeout bounds the wait.
      // Bounded: a shard that is down would queue the command until it is back.
      if (readerId !== undefined) await Promise.race([writer.client('UNBLOCK', readerId).catch(() => {}), sleep(1_000)]);
    },
    close: () => Promise.all([closeRedis(reader), closeRedis(writer)]).then(() => undefined),
  };
}

/** Create the consumer group (and the stream) unless it exists, retrying until `signal` aborts. */
export async function ensureGroup(redis: Redis, keys: RedisKeys, log: Logger, signal: AbortSignal): Promise<void> {
  for (let delay = 100; !signal.aborted; delay = Math.min(delay * 2, 5000)) {
    try {
      await redis.xgroup('CREATE', keys.stream, keys.group, '0', 'MKSTREAM');
      return;
    } catch (error) {
      if (String(error).includes('BUSYGROUP')) return;
      log.warn({ err: error, retryMs: delay }, 'could not create the consumer group');
      await sleep(delay, undefined, { signal }).catch(() => {});
    }
  }
}

/** For the backlog gauges: stream length and the group's pending count, one round trip. */
export async function readBacklog(redis: Redis, keys: RedisKeys): Promise<{ length: number; pending: number }> {
  const replies = (await redis.pipeline().xlen(keys.stream).xpending(keys.stream, keys.group).exec()) ?? [];
  const error = replies.find(([e]) => e)?.[0];
  if (error) throw error;
  const summary = replies[1]?.[1] as [number, ...unknown[]] | undefined;
  return { length: Number(replies[0]?.[1] ?? 0), pending: Number(summary?.[0] ?? 0) };
}

async function closeRedis(redis: Redis): Promise<void> {
  // QUIT lets pending replies arrive; if Redis is unreachable, don't wait for it.
  await Promise.race([redis.quit().catch(() => {}), sleep(1000)]);
  redis.disconnect();
}
