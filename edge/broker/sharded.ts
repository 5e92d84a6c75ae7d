/**
 * One broker over several shards (QUEUES: shared/shards.ts), each a whole broker of its own
 * (upstash.ts or ../node/ioredis-broker.ts) with its own stream, workers and result keys.
 *
 * Which shard a request goes to: the healthy shards of its region (the request's own, as the
 * runtime tells it: Workers' `cf.continent`; else the edge's EDGE_REGION) if any,
 * else every healthy shard; of those, the less loaded of two picked at random (power of two
 * choices: close to the least loaded without every edge herding onto the same one), the load
 * being the shard's last read backlog plus this edge's requests on it since. A shard is skipped
 * while it is `down` (its status read failed, it answered garbage, or a request on it was held),
 * `slow` ones and those with no live worker only when nothing better is up, and for a second
 * after it refused a job as full. Regions match whatever their case.
 *
 * Failover within the request's deadline: when the request's shard stops answering (its broker's
 * ride-through holds the request: {@link SubmitRequest.onHold}), or refuses it (`queue_full`,
 * `broker_unavailable`), the job is enqueued on another shard too. The held attempt keeps going,
 * as without shards; the first answer wins and the others are cut short. Why nothing is answered
 * twice: only this function answers the client, once. Why nothing is lost: an attempt ends only by
 * an answer, a refusal, or the deadline, and a refused job goes on to the next shard while one is left.
 * A job may be computed on two shards (the lost shard's copy, once it is back): answered once.
 *
 * Health is read lazily: a request finding the views older than `probeEveryMs` starts a read of
 * every shard's status in the background (none waits for it); `status()` (GET /readyz) reads them
 * too. On Cloudflare Workers, where every read is a subrequest of a request, `probeEveryMs` is
 * off: health comes from requests' own failures and from /readyz.
 *
 * @example
 * const broker = createShardedBroker([{ name: 'eu', region: 'eu', broker: eu }, { name: 'us', broker: us }], { region: 'eu' });
 */
import { ApiError, brokerUnavailable } from '../errors.ts';
import { isLiveWorker, type JobResult, type WorkerHeartbeat } from '../../shared/protocol.ts';
import type { Logger } from '../../shared/log.ts';
import type { Broker, BrokerStatus, ShardStatus, SubmitRequest } from './broker.ts';

export interface BrokerShard {
  name: string;
  region?: string;
  broker: Broker;
}

export interface ShardedOptions {
  /** EDGE_REGION: shards of this region first. */
  region?: string;
  /** Read every shard's status when the last read is older than this (0: only on status()). */
  probeEveryMs?: number;
  /** Seconds a client should wait after a 503 no shard could take (RETRY_AFTER_S). */
  retryAfterSeconds: number;
  /** A shard whose status read takes longer than this is `slow`. */
  slowMs?: number;
  /** Attempts (shards tried) per job at most; each gets this share of a request's budgets. */
  maxAttempts?: number;
  logger?: Logger;
  /** The random source of the two choices (tests). */
  random?: () => number;
}

/** A shard that refused a job as full is skipped this long. */
const FULL_FOR_MS = 1_000;
/** Without probes (Workers), a shard marked down is tried again after this long. */
const DOWN_FOR_MS = 5_000;
const DEFAULT_SLOW_MS = 1_000;

interface View {
  shard: BrokerShard;
  status?: BrokerStatus;
  /** Set from a failed read or a held request; cleared by a good read or an answer. */
  down?: string;
  downAt: number;
  fullUntil: number;
  /** This edge's requests on the shard now. */
  inFlight: number;
}

/** Worse outcomes rank lower: a job refused everywhere is answered with the most telling refusal. */
const RANK: Record<string, number> = { deadline_exceeded: 3, queue_full: 2, broker_unavailable: 1 };

export function createShardedBroker(shards: BrokerShard[], options: ShardedOptions): Broker {
  const { logger, retryAfterSeconds } = options;
  const slowMs = options.slowMs ?? DEFAULT_SLOW_MS;
  const probeEveryMs = options.probeEveryMs ?? 0;
  const maxAttempts = Math.min(options.maxAttempts ?? shards.length, shards.length);
  const random = options.random ?? Math.random;
  const views: View[] = shards.map((shard) => ({ shard, downAt: 0, fullUntil: 0, inFlight: 0 }));
  let probedAt = Number.NEGATIVE_INFINITY;
  let probing: Promise<ShardStatus[]> | undefined;

  const isDown = (view: View) => view.down !== undefined && (probeEveryMs > 0 || Date.now() - view.downAt < DOWN_FOR_MS);
  const stateOf = (view: View): ShardStatus['state'] =>
    isDown(view) ? 'down' : view.status && view.status.redisMs > slowMs ? 'slow' : 'up';

  function markDown(view: View, error: unknown): void {
    const reason = (error as Error)?.message ?? String(error);
    if (view.down === undefined) logger?.warn({ shard: view.shard.name, err: reason }, 'shard down; sending its requests to the others');
    view.down = reason;
    view.downAt = Date.now();
  }

  function markUp(view: View): void {
    if (view.down === undefined) return;
    logger?.info({ shard: view.shard.name }, 'shard back up');
    view.down = undefined;
  }

  /** Read every shard's status (one at a time per shard: a read in progress is shared). */
  function probe(): Promise<ShardStatus[]> {
    probedAt = Date.now();
    probing ??= Promise.all(
      views.map(async (view) => {
        const status = await view.shard.broker.status();
        view.status = status;
        if (status.redisOk) markUp(view);
        else markDown(view, status.error);
        return shardStatus(view, status);
      }),
    ).finally(() => (probing = undefined));
    return probing;
  }

  const shardStatus = (view: View, status: BrokerStatus): ShardStatus => ({
    name: view.shard.name,
    ...(view.shard.region && { region: view.shard.region }),
    state: stateOf(view),
    latencyMs: status.redisMs,
    backlog: status.backlog,
    workers: status.workers.filter((beat) => isLiveWorker(beat, Date.now())).length,
    ...(status.error && { error: status.error }),
  });

  const load = (view: View) => (view.status?.backlog ?? 0) + view.inFlight;

  /** The shards in the order to try them: healthy ones first (the region's, then the rest), each tier by load. */
  function ranked(exclude: Set<View>, now: number, region = options.region): View[][] {
    const wanted = region?.toLowerCase();
    const tier = (view: View) => {
      const state = stateOf(view);
      if (state === 'down') return 4;
      if (view.fullUntil > now) return 3;
      // Slow, or known to have no live worker (its jobs could only wait for their deadline).
      if (state === 'slow' || (view.status?.redisOk && !view.status.workers.some((beat) => isLiveWorker(beat, now)))) return 2;
      return wanted && view.shard.region?.toLowerCase() === wanted ? 0 : 1;
    };
    const tiers: View[][] = [];
    for (const view of views) if (!exclude.has(view)) (tiers[tier(view)] ??= []).push(view);
    return tiers.filter(Boolean);
  }

  /** Power of two choices within the best tier. */
  function pick(exclude: Set<View>, region?: string): View | undefined {
    if (probeEveryMs > 0 && Date.now() - probedAt >= probeEveryMs) void probe().catch(() => {});
    const best = ranked(exclude, Date.now(), region ?? options.region)[0];
    if (!best) return undefined;
    if (best.length === 1) return best[0];
    const first = Math.floor(random() * best.length);
    const second = (first + 1 + Math.floor(random() * (best.length - 1))) % best.length;
    return load(best[second]!) < load(best[first]!) ? best[second] : best[first];
  }

  return {
    submit(request: SubmitRequest, signal?: AbortSignal): Promise<JobResult> {
      return new Promise<JobResult>((resolve, reject) => {
        const tried = new Set<View>();
        /** Attempts in progress, by the shard each went to. */
        const attempts = new Map<AbortController, View>();
        let settled = false;
        let refusal: unknown;
        const finish = (outcome: () => void) => {
          if (settled) return;
          settled = true;
          for (const attempt of attempts.keys()) attempt.abort();
          outcome();
        };
        const fail = () => finish(() => reject(refusal ?? brokerUnavailable(new Error('no shard could take the job'), retryAfterSeconds)));

        /** Enqueue on the next shard; false when none is left (or the time is up). */
        const attempt = (): boolean => {
          if (settled || tried.size >= maxAttempts || Date.now() >= request.deadline || signal?.aborted) return false;
          const view = pick(tried, request.region);
          if (!view) return false;
          tried.add(view);
          const controller = new AbortController();
          const onAbort = () => controller.abort();
          signal?.addEventListener('abort', onAbort, { once: true });
          attempts.set(controller, view);
          view.inFlight++;
          let failedOver = false;
          const failOver = () => {
            if (!failedOver) failedOver = attempt();
          };
          view.shard.broker
            .submit(
              {
                ...request,
                share: (request.share ?? 1) * maxAttempts,
                onHold: (error) => {
                  markDown(view, error);
                  failOver();
                },
              },
              controller.signal,
            )
            .then(
              (result) => {
                markUp(view);
                finish(() => resolve(result));
              },
              (error: unknown) => {
                if (settled) return;
                const code = error instanceof ApiError ? error.code : undefined;
                if (code === 'queue_full') view.fullUntil = Date.now() + FULL_FOR_MS;
                if (code === 'broker_unavailable') markDown(view, error);
                if (!refusal || (RANK[code ?? ''] ?? 0) >= (RANK[(refusal as ApiError).code ?? ''] ?? 0)) refusal = error;
                attempts.delete(controller);
                if (code === 'queue_full' || code === 'broker_unavailable') failOver();
                // Full where it could be enqueued, and held only where the shard is down: answer the
                // refusal now (503 with Retry-After), rather than when the down shard's hold ends.
                const onlyHeld = [...attempts.values()].every((other) => isDown(other));
                if (attempts.size === 0 || (code === 'queue_full' && onlyHeld)) fail();
              },
            )
            .finally(() => {
              view.inFlight--;
              signal?.removeEventListener('abort', onAbort);
            });
          return true;
        };
        if (!attempt()) fail();
      });
    },

    admit(deadline, jobs) {
      // The first shard, in the order submit() tries them, that would take the jobs.
      let refusal: unknown;
      for (const tier of ranked(new Set(), Date.now())) {
        for (const view of [...tier].sort((a, b) => load(a) - load(b))) {
          try {
            return view.shard.broker.admit(deadline, jobs);
          } catch (error) {
            refusal ??= error;
          }
        }
      }
      throw refusal;
    },

    async status(): Promise<BrokerStatus> {
      const started = Date.now();
      const each = await probe();
      const statuses = views.map((view) => view.status!);
      const ok = statuses.filter((status) => status.redisOk);
      // A worker serving several shards beats on each: counted once, by its newest beat.
      const workers = new Map<string, WorkerHeartbeat>();
      for (const beat of ok.flatMap((status) => status.workers)) {
        const known = workers.get(beat.id);
        if (!known || beat.lastSeen > known.lastSeen) workers.set(beat.id, beat);
      }
      return {
        redisOk: ok.length > 0,
        redisMs: Date.now() - started,
        ...(ok.length === 0 && { error: `every shard is down (${each.map((shard) => `${shard.name}: ${shard.error}`).join('; ')})` }),
        workers: [...workers.values()].sort((a, b) => b.lastSeen - a.lastSeen),
        backlog: ok.reduce((sum, status) => sum + status.backlog, 0),
        shards: each,
      };
    },

    async close() {
      await Promise.all(views.map((view) => view.shard.broker.close()));
    },
  };
}
