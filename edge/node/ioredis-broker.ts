/**
 * Broker over a direct TCP connection (ioredis), for a self-hosted Node edge next to its Redis.
 * One subscriber connection per edge instance listens on the instance's own channel; each job
 * names that channel as its reply, and results are routed to waiting requests by id. Cost: 1
 * command per request (EVALSHA); the tensor travels as raw bytes.
 *
 * Outages are ridden through (../broker/ride-through.ts): no command is queued while Redis is
 * away, so an enqueue fails at once and the request is held and retried; if the subscriber
 * connection drops and is not back within 1 s, every waiting request is told contact is lost and
 * checks, once Redis answers again, whether its job survived (else it is enqueued again).
 * Reconnection attempts run at least every second, so service resumes about a second after Redis
 * is back. A connection back re-subscribes, then every waiting request GETs its result key once,
 * for a result published while nobody listened.
 *
 * @example
 * const broker = await createIoredisBroker({ url: 'redis://127.0.0.1:6379', keys: redisKeys(), limits, scripts });
 */
import { randomUUID } from 'node:crypto';
import { connectShard, fatalRedisError, FatalRedisError } from '../../shared/redis-connection.ts';
import { type JobResult, newJobFields } from '../../shared/protocol.ts';
import type { RedisKeys } from '../../shared/keys.ts';
import type { Logger } from '../../shared/log.ts';
import { createAdmission } from '../broker/admission.ts';
import { resultFor, storedResult } from '../broker/inbox.ts';
import { Holds, rideThrough, type WaitOutcome } from '../broker/ride-through.ts';
import { readStatus, type Broker, type BrokerLimits, type SubmitRequest } from '../broker/broker.ts';

/** A command unanswered this long fails (and is retried like any failure). */
const COMMAND_TIMEOUT_MS = 5_000;
/** How long the subscriber connection may be down before waiting requests are answered 503. */
const OUTAGE_GRACE_MS = 1_000;

export interface IoredisBrokerOptions {
  url: string;
  /** `url` is a seed node of a Redis Cluster. */
  cluster?: boolean;
  /** REDIS_TLS_CA: PEM file of a private CA. */
  tlsCa?: string;
  keys: RedisKeys;
  limits: BrokerLimits;
  logger?: Logger;
}

/** Settles one waiting request's current wait. */
type Waiter = (outcome: WaitOutcome) => void;

export async function createIoredisBroker({ url, cluster, tlsCa, keys, limits, logger }: IoredisBrokerOptions): Promise<Broker> {
  // Fail fast while Redis is down instead of queueing commands in memory; retry the connection
  // at least every second.
  const options = { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: true };
  // A Redis that accepts the connection but never answers must not hold requests: commands time out.
  const commands = connectShard({ url, cluster }, tlsCa, { ...options, commandTimeout: COMMAND_TIMEOUT_MS });
  const subscriber = connectShard({ url, cluster }, tlsCa, { ...options, enableOfflineQueue: true });
  let lastError = '';
  /** Set while the last connection error is one no retry fixes (certificate, password): requests get 503 at once. */
  let fatal: string | undefined;
  for (const connection of [commands, subscriber]) {
    connection.on('error', (error: Error) => {
      const reason = fatalRedisError(error);
      if (reason) fatal = reason;
      // Log an outage once, not on every reconnection attempt.
      if (error.message !== lastError) logger?.warn({ err: error, ...(reason && { reason }) }, 'redis connection error');
      lastError = error.message;
    });
    connection.on('ready', () => (fatal = undefined));
  }
  // Serve even while Redis cannot be reached (requests ride the outage through, or get the reason).
  await Promise.all([commands.connect(), subscriber.connect()].map((connecting) => connecting.catch(() => {})));

  const channel = keys.edgeChannel(randomUUID());
  const waiters = new Map<string, Waiter>();
  subscriber.on('message', (_channel: string, message: string) => {
    const result = resultFor(undefined, message);
    if (result) waiters.get(result.id)?.(result);
  });
  /** Whether results on `channel` reach us: no job is enqueued before (its publish would be lost). */
  let listening = false;
  subscriber.on('close', () => (listening = false));
  subscriber.subscribe(channel).then(
    () => (listening = true),
    () => {},
  ); // queued until connected

  // Outage watch on the subscriber connection (the one results arrive on).
  let outage: ReturnType<typeof setTimeout> | undefined;
  let down = false;
  let closed = false;
  subscriber.on('close', () => {
    if (closed || outage || down) return;
    outage = setTimeout(() => {
      outage = undefined;
      if (subscriber.status === 'ready') return;
      down = true;
      logger?.warn({ waiting: waiters.size, err: lastError }, 'lost the connection to Redis; the waiting requests hold until it is back');
      const lost = { lost: new Error(`lost the connection to Redis while waiting for the result (${lastError || 'closed'})`) };
      for (const waiter of waiters.values()) waiter(lost);
    }, OUTAGE_GRACE_MS);
  });
  subscriber.on('ready', () => {
    clearTimeout(outage);
    outage = undefined;
    const wasDown = down;
    down = false;
    if (wasDown) logger?.info('connection to Redis restored');
    // ioredis re-subscribes on reconnect; subscribing again resolves once that is in effect. Then
    // every waiting request checks its job: answered while nobody listened, still queued, or lost
    // with Redis (ride-through.ts).
    subscriber.subscribe(channel).then(
      () => {
        listening = true;
        for (const waiter of waiters.values()) waiter({ recheck: true });
      },
      () => {},
    );
  });

  const status = () =>
    readStatus(async () => {
      const replies = (await commands.pipeline().hgetall(keys.workers).xlen(keys.stream).exec()) ?? [];
      const error = replies.find(([e]) => e)?.[0];
      if (error) throw error;
      return [replies[0]?.[1], replies[1]?.[1]];
    });
  const admission = createAdmission(status, limits);

  const holds = new Holds(limits.holdMax);

  return {
    async submit(request: SubmitRequest, signal?: AbortSignal) {
      const { id, deadline } = request;
      const giveUp = new AbortController(); // fires at the deadline or when the client leaves
      const timer = setTimeout(() => giveUp.abort(), deadline - Date.now());
      signal?.addEventListener('abort', () => giveUp.abort(), { once: true });
      const tensor = Buffer.from(request.tensor.buffer, request.tensor.byteOffset, request.tensor.byteLength) as Uint8Array;
      // Registered before the first enqueue: a fast worker's result may arrive before wait() is called.
      let arrived: JobResult | undefined;
      let waiting: ((outcome: WaitOutcome) => void) | undefined;
      waiters.set(id, (outcome) => {
        if (waiting) waiting(outcome);
        else if (outcome && !('lost' in outcome) && !('recheck' in outcome)) arrived ??= outcome;
      });
      try {
        return await rideThrough(
          request,
          {
            enqueue: async () => {
              if (fatal && commands.status !== 'ready') throw new FatalRedisError(fatal);
              if (!listening) throw new Error(`not subscribed to the result channel yet (${lastError || 'connecting'})`);
              const fields = newJobFields({ ...request, tensor }, 'raw', channel);
              const entryId = await commands.enqueueJob(keys.stream, admission.limit(deadline), ...fields);
              return typeof entryId === 'number' ? admission.refusal(entryId, deadline) : entryId;
            },
            wait: () => {
              let onAbort: (() => void) | undefined;
              return new Promise<WaitOutcome>((resolve) => {
                if (arrived) return resolve(arrived);
                if (giveUp.signal.aborted) return resolve(null);
                // While the subscriber is down, its reconnection tells every waiter to check its job.
                waiting = resolve;
                onAbort = () => resolve(null);
                giveUp.signal.addEventListener('abort', onAbort, { once: true });
              }).finally(() => {
                waiting = undefined;
                if (onAbort) giveUp.signal.removeEventListener('abort', onAbort);
              });
            },
            reachable: () =>
              commands.ping().then(
                () => true,
                () => false,
              ),
            readResult: () => storedResult(id, commands.get(keys.result(id))),
            entryExists: async (entryId) => (await commands.xrange(keys.stream, entryId, entryId)).length > 0,
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
        waiters.delete(id);
      }
    },
    admit: (deadline, jobs) => admission.admit(deadline, jobs),
    status: admission.status,
    async close() {
      closed = true;
      clearTimeout(outage);
      subscriber.disconnect();
      commands.disconnect();
    },
  };
}
