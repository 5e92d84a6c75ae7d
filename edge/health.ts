/**
 * Readiness and model listing, from the broker's status (one round trip: the workers' heartbeat
 * hash + the stream length). Same on Node and Workers.
 *
 * - `GET /readyz`: 200 while Redis answers and some worker's heartbeat is at most
 *   READY_WORKER_MAX_AGE_MS old; else 503 `not_ready` saying which. For load balancers and
 *   orchestrators: an edge without workers can only answer 504s. Sharded (QUEUES): ready while
 *   some shard answers and some worker is live, with each shard's state in `shards`.
 * - `GET /v1/models`: what the live workers serve (name, input, label count) and who serves it;
 *   sharded, each shard as in /readyz.
 *
 * @example
 * app.route('/', healthRoutes(broker, { readyWorkerMaxAgeMs: 15_000, retryAfterSeconds: 1 }));
 */
import { Hono } from 'hono';
import type { Broker, BrokerStatus, ShardStatus } from './broker/broker.ts';
import { brokerUnavailable, errorBody } from './errors.ts';
import { isLiveWorker, type WorkerHeartbeat } from '../shared/protocol.ts';
import { CHANNELS, IMAGE_SIZE } from '../shared/tensor.ts';

export interface HealthOptions {
  /** A worker whose last heartbeat is older than this does not count (READY_WORKER_MAX_AGE_MS). */
  readyWorkerMaxAgeMs: number;
  /** Retry-After of a 503 from /v1/models (RETRY_AFTER_S). */
  retryAfterSeconds: number;
}

/** The probe paths (liveness in app.ts, readiness here), as deploy/kubernetes/ asks them. */
export const EDGE_PROBES = { live: '/healthz', ready: '/readyz' } as const;

/** The wire tensor every model is fed (the edge resizes to it). */
export const MODEL_INPUT = { width: IMAGE_SIZE, height: IMAGE_SIZE, channels: CHANNELS, dtype: 'uint8' } as const;

export interface Readiness {
  ready: boolean;
  /** Why not ready. */
  reason?: string;
  redis: { ok: boolean; latencyMs: number };
  /** Live workers. */
  workers: number;
  backlog: number;
  /** Each shard (state, backlog, live workers), when there are several. */
  shards?: ShardStatus[];
}

export function readiness(status: BrokerStatus, maxAgeMs: number, now = Date.now()): Readiness {
  const live = status.workers.filter((beat) => isLiveWorker(beat, now, maxAgeMs));
  const detail = {
    redis: { ok: status.redisOk, latencyMs: status.redisMs },
    workers: live.length,
    backlog: status.backlog,
    ...(status.shards && { shards: status.shards }),
  };
  if (!status.redisOk) return { ready: false, reason: `redis unreachable: ${status.error ?? 'no answer'}`, ...detail };
  if (live.length === 0) {
    const latest = status.workers[0];
    const reason = latest
      ? `no live worker (last seen ${Math.round((now - latest.lastSeen) / 1000)} s ago: ${latest.id})`
      : 'no live worker (no heartbeat in Redis)';
    return { ready: false, reason, ...detail };
  }
  return { ready: true, ...detail };
}

/** The live workers grouped by model, newest heartbeat first. */
export function listModels(workers: WorkerHeartbeat[], maxAgeMs: number, now = Date.now()) {
  const models = new Map<string, { name: string; input: typeof MODEL_INPUT; labels: number; workers: object[] }>();
  for (const beat of workers) {
    if (!isLiveWorker(beat, now, maxAgeMs)) continue;
    const model = models.get(beat.model) ?? { name: beat.model, input: MODEL_INPUT, labels: beat.labels, workers: [] };
    models.set(beat.model, model);
    // Host and pid stay in Redis for operators; the id already names the worker in every result.
    model.workers.push({
      id: beat.id,
      engine: beat.engine,
      provider: beat.provider ?? beat.backend,
      ...(beat.threads !== undefined && { threads: beat.threads }),
      batchSize: beat.batchSize,
      startedAt: beat.startedAt,
      lastSeenMsAgo: Math.max(0, now - beat.lastSeen),
    });
  }
  return [...models.values()];
}

export function healthRoutes(broker: Broker, { readyWorkerMaxAgeMs, retryAfterSeconds }: HealthOptions) {
  const routes = new Hono();
  routes.get(EDGE_PROBES.ready, async (c) => {
    c.header('Cache-Control', 'no-store');
    const { ready, reason, ...detail } = readiness(await broker.status(), readyWorkerMaxAgeMs);
    if (ready) return c.json({ ok: true, ...detail });
    return c.json({ ...errorBody('not_ready', reason!), ...detail }, 503);
  });
  routes.get('/v1/models', async (c) => {
    c.header('Cache-Control', 'no-store');
    const status = await broker.status();
    if (!status.redisOk) {
      // Answered here rather than thrown: an outage is /readyz's news, not one warning per poll.
      const error = brokerUnavailable(new Error(status.error), retryAfterSeconds);
      return c.json(errorBody(error.code, error.message), 503, error.headers);
    }
    return c.json({
      success: true as const,
      models: listModels(status.workers, readyWorkerMaxAgeMs),
      ...(status.shards && { shards: status.shards }),
    });
  });
  return routes;
}
