/**
 * Broker over the Upstash REST protocol (@upstash/redis): the edge's production path, and the only
 * one inside Cloudflare Workers. REST has no blocking commands, so instead of polling on a fixed
 * interval (the seed slept 0.25 s per round) each request:
 *
 *  1. makes sure an SSE subscription will receive its result (inbox.ts: its own subscription, or
 *     the edge process's shared one) and waits until it is confirmed,
 *  2. enqueues with enqueue-1.lua (EVALSHA),
 *  3. receives the result in the worker's PUBLISH, pushed the moment it exists.
 *
 * A request also reads its result key once after a second (and at its deadline, and by polling
 * when the stream fails), and rides outages through (ride-through.ts). Why each step is there:
 * docs/architecture.md, "Waiting for the result without polling".
 *
 * @example
 * const broker = createUpstashBroker({ redis: new Redis({ url, token }), keys: redisKeys(), limits, scripts });
 * // Node: one subscription for the whole process
 * const http = createUpstashHttp({ url, token }); // ../node/upstash-http.ts
 * const shared = createUpstashBroker({ redis: new Redis(http), keys, limits, scripts, inbox: sharedInbox({ http, keys }) });
 * const result = await broker.submit({ id, tensor, deadline: Date.now() + 30_000 });
 */
import type { Redis } from '@upstash/redis';
import { newJobFields } from '../../shared/protocol.ts';
import type { RedisKeys } from '../../shared/keys.ts';
import type { ScriptSources } from '../../shared/lua/scripts.ts';
import type { Logger } from '../../shared/log.ts';
import { withTimeout } from '../../shared/timeout.ts';
import { createAdmission } from './admission.ts';
import { Holds, NoRetry, rideThrough, type WaitOutcome } from './ride-through.ts';
import { perRequestInbox, type ResultInbox, storedResult } from './inbox.ts';
import { deadlineExceeded } from '../errors.ts';
import { readStatus, sleep, type Broker, type BrokerLimits, type SubmitRequest } from './broker.ts';

const SUBSCRIBE_TIMEOUT_MS = 2_000;
const POLL_FIRST_MS = 5;
const POLL_MAX_MS = 250;
/** A request waiting this long for its result starts checking that the queue is reachable. */
const PROBE_AFTER_MS = 1_000;
/** Between two checks while all is well, and while they fail. */
const PROBE_EVERY_MS = 1_000;
const PROBE_RETRY_MS = 250;
const PROBE_TIMEOUT_MS = 2_000;
/**
 * An enqueue unanswered this long fails like any transport failure (the request is held and
 * retried; a sharded edge sends it to another shard): a REST server that accepts the request but
 * never answers must not keep it until its deadline. If it was enqueued after all, the copy is
 * answered once (ride-through.ts).
 */
const ENQUEUE_TIMEOUT_MS = 5_000;
/** Calls to Redis failing for this long make an outage: waiting requests are answered 503. */
const OUTAGE_AFTER_MS = 1_000;

export interface UpstashBrokerOptions {
  redis: Redis;
  keys: RedisKeys;
  limits: BrokerLimits;
  scripts: Pick<ScriptSources, 'enqueueJob'>;
  /** Where results arrive (inbox.ts); default: a subscription per request (the only way on Workers). */
  inbox?: ResultInbox;
  /**
   * Calls to the REST server one request may make (Cloudflare Workers: 50 subrequests on the Free
   * plan, 1,000 on Paid); default: no limit. Polling is spread to fit, and one call is kept for the
   * last read at the deadline.
   */
  subrequests?: number;
  logger?: Logger;
}

/** Subscribe, enqueue, one look and the read at the deadline: a job's share of a budget is at least this. */
const MIN_CALLS_PER_JOB = 4;

/** One request's calls to the REST server, against its budget; the last one is kept for the read at the deadline. */
class Subrequests {
  private used = 0;

  constructor(private readonly budget: number) {}

  /** Whether a call may be made now (and counts it): false once only the last one is left. */
  take(): boolean {
    if (this.used >= this.budget - 1) return false;
    this.used++;
    return true;
  }

  /** The call kept for the read at the deadline. */
  last(): boolean {
    if (this.used >= this.budget) return false;
    this.used++;
    return true;
  }

  /** How long to wait for the next poll so the budget lasts until the deadline (all of it once spent). */
  spread(deadline: number): number {
    const left = this.budget - 1 - this.used;
    return Math.max(0, left <= 0 ? deadline - Date.now() : (deadline - Date.now()) / left);
  }

  get count(): number {
    return this.used;
  }
}

export function createUpstashBroker({
  redis,
  keys,
  limits,
  scripts,
  inbox = perRequestInbox(redis, keys),
  subrequests = Number.POSITIVE_INFINITY,
  logger,
}: UpstashBrokerOptions): Broker {
  const enqueue = redis.createScript<string | number>(scripts.enqueueJob);
  const health = new Health(redis);
  // One REST call: a pipeline of HGETALL (heartbeats) + XLEN (backlog).
  const status = () => readStatus(() => redis.pipeline().hgetall(keys.workers).xlen(keys.stream).exec<[unknown, number]>());
  const admission = createAdmission(status, limits);

  const holds = new Holds(limits.holdMax);

  return {
    async submit(request: SubmitRequest, clientSignal?: AbortSignal) {
      const { id, deadline } = request;
      /** GET of the job's result key (one REST call). */
      // Bounded, as every call of a request: a REST server that accepts and never answers must not
      // hold the request past its deadline (the read at the deadline included).
      const readResult = () =>
        storedResult(
          id,
          withTimeout(redis.get<unknown>(keys.result(id)), PROBE_TIMEOUT_MS, `no answer to GET within ${PROBE_TIMEOUT_MS} ms`),
        );
      const waitMs = deadline - Date.now();
      const giveUp = new AbortController(); // fires at the deadline, on a result, or when the client leaves
      const timer = setTimeout(() => giveUp.abort(), waitMs);
      clientSignal?.addEventListener('abort', () => giveUp.abort(), { once: true });
      // A Worker's subrequests are counted per HTTP request: a batch request's images share them.
      const calls = new Subrequests(Math.max(MIN_CALLS_PER_JOB, Math.floor(subrequests / (request.share ?? 1))));
      if (inbox.callsPerOpen > 0) calls.take();
      const mailbox = inbox.open(id);
      try {
        const listening = await Promise.race([
          mailbox.ready,
          sleep(Math.min(SUBSCRIBE_TIMEOUT_MS, waitMs), giveUp.signal).then(() => false),
        ]);
        if (giveUp.signal.aborted) throw deadlineExceeded(waitMs);
        // A subscription that did not confirm in time may miss the publish: poll instead.
        if (!listening) mailbox.fail();
        return await rideThrough(
          request,
          {
            enqueue: async () => {
              if (!calls.take()) throw new NoRetry(`gave up after ${calls.count} calls to the queue (this request's budget)`);
              try {
                const entryId = await withTimeout(
                  enqueue.exec([keys.stream], [String(admission.limit(deadline)), ...newJobFields(request, 'z85', mailbox.channel)]),
                  ENQUEUE_TIMEOUT_MS,
                  `no answer to the enqueue within ${ENQUEUE_TIMEOUT_MS} ms`,
                );
                health.succeeded();
                return typeof entryId === 'number' ? admission.refusal(entryId, deadline) : entryId;
              } catch (error) {
                // @upstash/redis appends the whole request body (the Z85 tensor) to its messages:
                // keep it out of logs and error bodies.
                const short = new Error(String((error as Error)?.message ?? error).split(', command was:')[0]);
                health.failed(short);
                throw short;
              }
            },
            wait: () => waitForResult(),
            reachable: async () => calls.take() && (await health.check()),
            // The read at the deadline may use the call kept for it.
            readResult: async () => (calls.take() || calls.last() ? readResult() : null),
            // Without a call left, take the job for queued: waiting is safe, a second copy is not.
            entryExists: async (entryId) => !calls.take() || Object.keys(await redis.xrange(keys.stream, entryId, entryId)).length > 0,
          },
          {
            holds,
            retryAfterSeconds: limits.retryAfterSeconds,
            signal: giveUp.signal,
            logger,
          },
        );
      } finally {
        clearTimeout(timer);
        giveUp.abort();
        mailbox.close();
      }

      /**
       * The pushed result; or, once the stream has failed, the result key polled; null at the
       * deadline; `lost` when the queue has been unreachable for OUTAGE_AFTER_MS meanwhile.
       */
      async function waitForResult(): Promise<WaitOutcome> {
        let nextProbeAt = Date.now() + PROBE_AFTER_MS;
        let pollDelay = POLL_FIRST_MS;
        let publishMayBeLost = false;
        let lookedOnce = false;
        while (!giveUp.signal.aborted) {
          const delivered = mailbox.delivered();
          if (delivered) return delivered;
          if (mailbox.failed()) {
            // Backoff, slowed further where the budget would not last until the deadline.
            await sleep(Math.max(pollDelay, calls.spread(deadline)), giveUp.signal);
            if (giveUp.signal.aborted) break;
            pollDelay = Math.min(pollDelay * 2, POLL_MAX_MS);
            if (!calls.take()) continue;
            try {
              const result = await readResult();
              health.succeeded();
              if (result) return result;
            } catch (error) {
              health.failed(error);
            }
          } else {
            const result = await Promise.race([mailbox.pushed, sleep(nextProbeAt - Date.now(), giveUp.signal).then(() => null)]);
            if (result) return result;
            if (giveUp.signal.aborted || mailbox.failed()) continue;
            if (!lookedOnce && calls.take()) {
              // A server may confirm a subscription a moment before it is live, and a fast worker's
              // publish then reaches nobody: look at the result key once, whatever the PING says.
              lookedOnce = true;
              const missed = await readResult().catch(() => null);
              if (missed) return missed;
            }
            // Without a call to spare, assume it is: the read at the deadline still comes.
            const reachable = calls.take() ? await health.check() : true;
            nextProbeAt = Date.now() + (reachable ? PROBE_EVERY_MS : PROBE_RETRY_MS);
            if (!reachable) publishMayBeLost = true;
            else if (publishMayBeLost) {
              // Back after a failure: the result may have been published while nobody listened.
              publishMayBeLost = false;
              const missed = calls.take() ? await readResult().catch(() => null) : null;
              if (missed) return missed;
            }
          }
          if (health.isDown()) return { lost: new Error(`lost contact while waiting for the result (${health.lastError})`) };
        }
        return null;
      }
    },
    admit: (deadline, jobs) => admission.admit(deadline, jobs),
    status: admission.status,
    close: () => inbox.close(),
  };
}

/**
 * Is the queue reachable? Shared by the waiting requests of one broker: at most one PING per
 * interval, whoever asks; every Redis call's outcome (enqueue, GET) counts as well.
 */
class Health {
  private probe?: { at: number; reachable: Promise<boolean> };
  private failingSince: number | undefined;
  lastError = '';

  constructor(private readonly redis: Redis) {}

  succeeded(): void {
    this.failingSince = undefined;
  }

  failed(error: unknown): void {
    this.failingSince ??= Date.now();
    this.lastError = (error as Error)?.message ?? String(error);
  }

  /** Calls have failed for OUTAGE_AFTER_MS, with no success since. */
  isDown(): boolean {
    return this.failingSince !== undefined && Date.now() - this.failingSince >= OUTAGE_AFTER_MS;
  }

  check(): Promise<boolean> {
    const interval = this.failingSince === undefined ? PROBE_EVERY_MS : PROBE_RETRY_MS;
    if (this.probe && Date.now() - this.probe.at < interval) return this.probe.reachable;
    const reachable = withTimeout(this.redis.ping(), PROBE_TIMEOUT_MS, `no answer to PING within ${PROBE_TIMEOUT_MS} ms`).then(
      () => {
        this.succeeded();
        return true;
      },
      (error: unknown) => {
        this.failed(error);
        return false;
      },
    );
    this.probe = { at: Date.now(), reachable };
    return reachable;
  }
}
