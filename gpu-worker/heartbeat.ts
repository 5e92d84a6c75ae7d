/**
 * Worker heartbeats: every HEARTBEAT_MS a ready worker writes its WorkerHeartbeat (shared/protocol.ts)
 * into the heartbeat hash (keys.workers, field = consumer name), so that the edge can tell with one
 * HGETALL whether any worker is alive (GET /readyz) and what they run (GET /v1/models).
 *
 * One round trip per beat: HSET + PEXPIRE + HGETALL, pipelined (no script: the beat must not show
 * up in the per-request EVALSHA counts). The HGETALL lets each beat prune entries past their
 * expiresAt (workers that died without removing theirs); the key's TTL removes the whole hash
 * when no worker has beaten for a while. stop() removes this worker's entry.
 *
 * A beat that fails (Redis away) is logged and skipped; the next one is tried on schedule, and
 * beats never overlap. Nothing here throws into the worker.
 *
 * @example
 * const heartbeat = startHeartbeat({ redis, keys, intervalMs: 5000, log, beat: () => ({ id, backend, ... }) });
 * await heartbeat.first;  // the first beat written (or failed)
 * await heartbeat.stop(); // entry removed
 */
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../shared/keys.ts';
import type { Logger } from '../shared/log.ts';
import type { WorkerHeartbeat } from '../shared/protocol.ts';

/** An entry is stale after this many missed beats. */
const STALE_AFTER_BEATS = 3;
/** The hash expires when nobody has beaten for this long (and at least KEY_TTL_MIN_MS). */
const KEY_TTL_BEATS = 12;
const KEY_TTL_MIN_MS = 60_000;
/** A beat (or the removal on stop) waits this long at most: ioredis queues commands while Redis is away. */
const CALL_TIMEOUT_MS = 2_000;

export type HeartbeatInfo = Omit<WorkerHeartbeat, 'lastSeen' | 'expiresAt'>;

export interface HeartbeatOptions {
  redis: Redis;
  keys: Pick<RedisKeys, 'workers'>;
  intervalMs: number;
  log: Logger;
  info: HeartbeatInfo;
  /** Called after each beat: whether it was written. */
  onBeat?: (ok: boolean) => void;
}

export interface Heartbeat {
  /** Settles when the first beat has been written or has failed. */
  first: Promise<void>;
  /** Stop beating and remove this worker's entry (best effort, bounded). */
  stop(): Promise<void>;
}

export function startHeartbeat({ redis, keys, intervalMs, log, info, onBeat }: HeartbeatOptions): Heartbeat {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let inFlight: Promise<void> | undefined;
  let stopped = false;
  let failing = false;

  async function beat(): Promise<void> {
    const now = Date.now();
    const entry: WorkerHeartbeat = { ...info, lastSeen: now, expiresAt: now + STALE_AFTER_BEATS * intervalMs };
    try {
      const replies = await withTimeout(
        redis
          .pipeline()
          .hset(keys.workers, info.id, JSON.stringify(entry))
          .pexpire(keys.workers, Math.max(KEY_TTL_MIN_MS, KEY_TTL_BEATS * intervalMs))
          .hgetall(keys.workers)
          .exec(),
      );
      const error = replies?.find(([e]) => e)?.[0];
      if (error) throw error;
      const stale = staleFields((replies?.[2]?.[1] ?? {}) as Record<string, string>, now);
      if (stale.length > 0) {
        await withTimeout(redis.hdel(keys.workers, ...stale));
        log.info({ workers: stale }, 'pruned stale worker heartbeats');
      }
      if (failing) log.info('heartbeat restored');
      failing = false;
      onBeat?.(true);
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
      await withTimeout(redis.hdel(keys.workers, info.id)).catch((error: Error) =>
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

function withTimeout<T>(promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from Redis within ${CALL_TIMEOUT_MS} ms`)), CALL_TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
