/**
 * The group's consumers: find the ones whose worker died holding jobs ({@link deadConsumers}), and
 * forget the ones that are gone for good (shared/lua/prune-consumers-2.lua). Workers are
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
import type { WorkerHeartbeat } from '../shared/protocol.ts';

/** A consumer idle this long, with nothing pending and no heartbeat, belongs to a worker that is gone. */
export const CONSUMER_GONE_AFTER_MS = 60 * 60 * 1000;
export const PRUNE_EVERY_MS = 10 * 60 * 1000;

/** The names of the consumers removed. */
export async function pruneConsumers(redis: Redis, keys: RedisKeys, minIdleMs: number = CONSUMER_GONE_AFTER_MS): Promise<string[]> {
  return redis.pruneConsumers(keys.stream, keys.workers, keys.group, minIdleMs);
}

/** XINFO CONSUMERS' reply: one flat [name, v, pending, v, idle, v, ...] list per consumer. */
export type ConsumersReply = unknown[][];
/** XPENDING's summary form: [count, lowest id, highest id, [[consumer, count], ...] | null]. */
export type PendingSummaryReply = [number, string | null, string | null, [string, string][] | null];

export interface DeadConsumer {
  name: string;
  /** Its pending entries: jobs it read and never answered. */
  pending: number;
  /** Since its last read, ms (XINFO CONSUMERS' idle). */
  idleMs: number;
}

/**
 * The consumers whose worker died holding jobs: entries pending, no live heartbeat (the entry
 * is gone or past its expiresAt, which each worker sets from its own beat interval and batch
 * time), and no read for `idleMs` either. A worker that is alive keeps one of the two fresh:
 * it beats on a timer and reads between batches. Pure, so testable without Redis; the heartbeat
 * reads the three replies in its own round trip.
 */
export function deadConsumers(
  replies: { consumers: ConsumersReply | null; pending: PendingSummaryReply | null; heartbeats: WorkerHeartbeat[] },
  options: { self: string; now: number; idleMs: number },
): DeadConsumer[] {
  const holding = new Map((replies.pending?.[3] ?? []).map(([name, count]) => [String(name), Number(count)]));
  const beats = new Map(replies.heartbeats.map((beat) => [beat.id, beat]));
  const dead: DeadConsumer[] = [];
  for (const fields of replies.consumers ?? []) {
    // Key/value pairs: look keys up at even positions only (a consumer may be named "idle").
    const field = (key: string) => fields[fields.findIndex((value, i) => i % 2 === 0 && value === key) + 1];
    const name = String(field('name'));
    const pending = holding.get(name) ?? 0;
    const idleMs = Number(field('idle'));
    if (name === options.self || pending === 0 || !(idleMs >= options.idleMs)) continue;
    const beat = beats.get(name);
    if (beat && beat.expiresAt > options.now) continue;
    dead.push({ name, pending, idleMs });
  }
  return dead;
}
