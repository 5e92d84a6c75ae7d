/**
 * Forget the consumers of workers that are gone (shared/lua/prune-consumers.lua). Workers are
 * named `<host>-<pid>` by default, so every restart or redeploy adds a consumer to the group; each
 * worker prunes at start and then every PRUNE_EVERY_MS. Only consumers with nothing pending, idle
 * for `minIdleMs` and without a heartbeat are removed (jobs a dead worker held are reclaimed by
 * XAUTOCLAIM first, which leaves it with nothing pending).
 *
 * @example
 * const removed = await pruneConsumers(writer, redisKeys()); // ['old-host-4242', ...]
 */
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../shared/keys.ts';
import { loadLuaScripts } from '../shared/lua/node.ts';

/** A consumer idle this long, with nothing pending and no heartbeat, belongs to a worker that is gone. */
export const CONSUMER_GONE_AFTER_MS = 60 * 60 * 1000;
export const PRUNE_EVERY_MS = 10 * 60 * 1000;

const script = loadLuaScripts()['prune-consumers'];

/** The names of the consumers removed. */
export async function pruneConsumers(redis: Redis, keys: RedisKeys, minIdleMs: number = CONSUMER_GONE_AFTER_MS): Promise<string[]> {
  if (!('pruneConsumers' in redis)) redis.defineCommand('pruneConsumers', { numberOfKeys: 2, lua: script });
  const prune = (redis as unknown as { pruneConsumers(stream: string, workers: string, group: string, minIdleMs: number): Promise<string[]> }).pruneConsumers;
  return prune.call(redis, keys.stream, keys.workers, keys.group, minIdleMs);
}
