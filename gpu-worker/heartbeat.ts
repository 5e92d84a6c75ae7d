/**
 * Worker heartbeats: every HEARTBEAT_MS a ready worker writes its WorkerHeartbeat (shared/protocol.ts)
 * into the heartbeat hash (keys.workers, field = consumer name), so that the edge can tell with one
 * HGETALL whether any worker is alive (GET /readyz), what they run (GET /v1/models) and how fast
 * they answer (its admission estimate).
 *
 * One round trip per beat: HSET + PEXPIRE + HGETALL + XINFO CONSUMERS + XPENDING, pipelined (no
 * script: the beat must not show up in the per-request EVALSHA counts). With the last three each
 * beat also looks after the others: it prunes entries past their expiresAt (workers that died
 * without removing theirs; the key's TTL removes the whole hash when no worker has beaten for a
 * while), and reports the consumers whose worker died holding jobs (consumers.ts deadConsumers),
 * which the worker then takes over at once instead of after CLAIM_IDLE_MS. stop() removes this
 * worker's entry.
 *
 * An entry expires after three missed beats, or after two of this worker's longest recent batch
 * if that is longer: an engine that computes on the event loop (tfjs) cannot beat in mid-batch,
 * and must not look dead for it.
 *
 * A beat that fails (Redis away) is logged and skipped; the next one is tried on schedule, and
 * beats never overlap. Nothing here throws into the worker.
 *
 * @example
 * const heartbeat = startHeartbeat({ redis, keys, intervalMs: 2000, log, info, onDead: (dead) => takeOver(dead) });
 * await heartbeat.first;  // the first beat written (or failed)
 * await heartbeat.stop(); // entry removed
 */
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../shared/keys.ts';
import type { Logger } from '../shared/log.ts';
import { parseHeartbeats, type WorkerHeartbeat } from '../shared/protocol.ts';
import { withTimeout } from '../shared/timeout.ts';
import { deadConsumers, type ConsumersReply, type DeadConsumer, type PendingSummaryReply } from './consumers.ts';

/** An entry is stale after this many missed beats. */
const STALE_AFTER_BEATS = 3;
/** How long a worker may be silent (no beat, no read) before it counts as dead. */
export const staleAfterMs = (intervalMs: number) => STALE_AFTER_BEATS * intervalMs;
/** The hash expires when nobody has beaten for this long (and at least KEY_TTL_MIN_MS). */
const KEY_TTL_BEATS = 12;
const KEY_TTL_MIN_MS = 60_000;
/** A beat (or the removal on stop) waits this long at most: ioredis queues commands while Redis is away. */
const CALL_TIMEOUT_MS = 2_000;

/** What a worker measures of itself, published with each beat. */
export type HeartbeatLoad = Pick<WorkerHeartbeat, 'imagesPerSec' | 'batchMs'>;
export type HeartbeatInfo = Omit<WorkerHeartbeat, 'lastSeen' | 'expiresAt' | keyof HeartbeatLoad>;

export interface HeartbeatOptions {
  redis: Redis;
  keys: Pick<RedisKeys, 'workers' | 'stream' | 'group'>;
  intervalMs: number;
  log: Logger;
  info: HeartbeatInfo;
  /** Read at each beat: the worker's recent throughput and batch time (batch.ts' BatchTimes). */
  load?: () => HeartbeatLoad & { longestBatchMs?: number };
  /** Called after each beat: whether it was written. */
  onBeat?: (ok: boolean) => void;
  /** Called after a beat that found consumers whose worker died holding jobs. */
  onDead?: (dead: DeadConsumer[]) => void;
}

export interface Heartbeat {
  /** Settles when the first beat has been written or has failed. */
  first: Promise<void>;
  /** Stop beating and remove this worker's entry (best effort, bounded). */
  stop(): Promise<void>;
}

export function startHeartbeat({ redis, keys, intervalMs, log, info, load, onBeat, onDead }: HeartbeatOptions): Heartbeat {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let inFlight: Promise<void> | undefined;
  let stopped = false;
  let failing = false;

  async function beat(): Promise<void> {
    const now = Date.now();
    const { longestBatchMs = 0, ...measured } = load?.() ?? {};
    const silentMs = Math.max(staleAfterMs(intervalMs), intervalMs + 2 * longestBatchMs);
    const entry: WorkerHeartbeat = { ...info, ...measured, lastSeen: now, expiresAt: now + silentMs };
    try {
      const replies = await bounded(
        redis
          .pipeline()
          .hset(keys.workers, info.id, JSON.stringify(entry))
          .pexpire(keys.workers, Math.max(KEY_TTL_MIN_MS, KEY_TTL_BEATS * intervalMs))
          .hgetall(keys.workers)
          .xinfo('CONSUMERS', keys.stream, keys.group)
          .xpending(keys.stream, keys.group)
          .exec(),
      );
      // The first three must succeed; the last two fail while the stream or group does not exist yet.
      const error = replies?.slice(0, 3).find(([e]) => e)?.[0];
      if (error) throw error;
      const hash = (replies?.[2]?.[1] ?? {}) as Record<string, string>;
      const stale = staleFields(hash, now);
      if (stale.length > 0) {
        await bounded(redis.hdel(keys.workers, ...stale));
        log.info({ workers: stale }, 'pruned stale worker heartbeats');
      }
      if (failing) log.info('heartbeat restored');
      failing = false;
      onBeat?.(true);
      const [[consumersError, consumers] = [], [pendingError, pending] = []] = replies?.slice(3) ?? [];
      if (onDead && !consumersError && !pendingError) {
        const dead = deadConsumers(
          { consumers: consumers as ConsumersReply, pending: pending as PendingSummaryReply, heartbeats: parseHeartbeats(hash) },
          { self: info.id, now, idleMs: staleAfterMs(intervalMs) },
        );
        if (dead.length > 0) onDead(dead);
      }
    } catch (error) {
      // Log an outage once, not every beat.
      if (!failing) log.warn({ err: error }, 'heartbeat failed; retrying on schedule');
      failing = true;
      onBeat?.(false);
    }
  }

  const tick = () => {
    if (stopped) return;
    inFlight ??= beat().finally(() => (inFlight = undefined));
    timer = setTimeout(tick, intervalMs);
  };
  const first = beat();
  inFlight = first.finally(() => (inFlight = undefined));
  timer = setTimeout(tick, intervalMs);

  return {
    first,
    async stop() {
      if (stopped) return;
      stopped = true;
      clearTimeout(timer);
      await inFlight;
      await bounded(redis.hdel(keys.workers, info.id)).catch((error: Error) =>
        log.warn({ err: error }, 'could not remove the worker heartbeat; it expires by itself'),
      );
    },
  };
}

/** Fields whose entry is past its expiresAt (or not a heartbeat at all). */
function staleFields(hash: Record<string, string>, now: number): string[] {
  return Object.entries(hash)
    .filter(([, json]) => {
      try {
        const expiresAt = (JSON.parse(json) as { expiresAt?: unknown }).expiresAt;
        return typeof expiresAt !== 'number' || expiresAt < now;
      } catch {
        return true;
      }
    })
    .map(([field]) => field);
}

const bounded = <T>(promise: Promise<T>): Promise<T> =>
  withTimeout(promise, CALL_TIMEOUT_MS, `no answer from Redis within ${CALL_TIMEOUT_MS} ms`);
