/**
 * Broker over the Upstash REST protocol (@upstash/redis): the edge's production path, and the only
 * one inside Cloudflare Workers. REST has no blocking commands, so instead of polling on a fixed
 * interval (the seed slept 0.25 s per round) each request:
 *
 *  1. opens an SSE subscription to its own result channel and waits for the `subscribe` event,
 *  2. enqueues with enqueue.lua (EVALSHA),
 *  3. receives the result in the worker's PUBLISH, pushed the moment it exists.
 *
 * Cost: 2 Redis commands per request (SUBSCRIBE, EVALSHA). Only if the SSE stream fails does the
 * request fall back to GET polling with exponential backoff (5 ms doubling to 250 ms); one last GET
 * at the deadline covers a result published while the stream was down.
 *
 * @example
 * const broker = createUpstashBroker({ redis: new Redis({ url, token }), keys: redisKeys(), limits, scripts });
 * const result = await broker.submit({ id, tensor, deadline: Date.now() + 30_000 });
 */
import type { Redis } from '@upstash/redis';
import { JobResult, jobToFieldList } from '../../shared/protocol.ts';
import type { RedisKeys } from '../../shared/keys.ts';
import type { LuaScripts } from '../../shared/lua/scripts.ts';
import { bytesToBase64 } from '../../shared/tensor.ts';
import type { Logger } from '../../shared/log.ts';
import {
  brokerUnavailable,
  deadlineExceeded,
  queueFull,
  sleep,
  type Broker,
  type BrokerLimits,
  type SubmitRequest,
} from './broker.ts';

const SUBSCRIBE_TIMEOUT_MS = 2_000;
const POLL_FIRST_MS = 5;
const POLL_MAX_MS = 250;

export interface UpstashBrokerOptions {
  redis: Redis;
  keys: RedisKeys;
  limits: BrokerLimits;
  scripts: Pick<LuaScripts, 'enqueue'>;
  logger?: Logger;
}

export function createUpstashBroker({ redis, keys, limits, scripts, logger }: UpstashBrokerOptions): Broker {
  const enqueue = redis.createScript<string | null>(scripts.enqueue);

  return {
    async submit(request: SubmitRequest, clientSignal?: AbortSignal) {
      const { id, tensor, deadline } = request;
      const channel = keys.resultChannel(id);
      const waitMs = deadline - Date.now();
      const giveUp = new AbortController(); // fires at the deadline, on a result, or when the client leaves
      const timer = setTimeout(() => giveUp.abort(), waitMs);
      clientSignal?.addEventListener('abort', () => giveUp.abort(), { once: true });

      let settle!: (result: JobResult | null) => void;
      const pushed = new Promise<JobResult | null>((resolve) => (settle = resolve));
      let streamFailed = false;
      let isSubscribed = false;
      let subscribed!: () => void;
      const ready = new Promise<void>((resolve) => (subscribed = resolve));

      const subscriber = redis.subscribe<unknown>(channel);
      subscriber.on('subscribe', () => {
        isSubscribed = true;
        subscribed();
      });
      subscriber.on('message', ({ message }) => {
        const parsed = JobResult.safeParse(message);
        if (parsed.success && parsed.data.id === id) settle(parsed.data);
      });
      subscriber.on('error', (error) => {
        streamFailed = true;
        logger?.warn({ id, err: String(error) }, 'result stream failed; polling instead');
        subscribed();
        settle(null);
      });
      giveUp.signal.addEventListener('abort', () => settle(null), { once: true });

      try {
        await Promise.race([ready, sleep(Math.min(SUBSCRIBE_TIMEOUT_MS, waitMs), giveUp.signal)]);
        if (giveUp.signal.aborted) throw deadlineExceeded(waitMs);
        if (!isSubscribed && !streamFailed) {
          // A subscription that did not confirm in time may miss the publish: poll instead.
          streamFailed = true;
          settle(null);
        }

        let entryId: string | null;
        try {
          entryId = await enqueue.exec([keys.stream], [String(limits.queueMax), ...toTextFields(request, channel)]);
        } catch (error) {
          throw brokerUnavailable(error);
        }
        if (entryId === null) throw queueFull(limits);

        const result = (await pushed) ?? (streamFailed ? await poll(redis, keys.result(id), giveUp.signal) : null);
        if (result) return result;
        // Deadline (or client gone): one last look, in case the publish was missed.
        const late = await readResult(redis, keys.result(id)).catch(() => null);
        if (late) return late;
        throw deadlineExceeded(waitMs);
      } finally {
        clearTimeout(timer);
        giveUp.abort();
        await subscriber.unsubscribe().catch(() => {});
      }
    },
    async close() {},
  };
}

function toTextFields(request: SubmitRequest, reply: string): string[] {
  const now = Date.now();
  return jobToFieldList({
    id: request.id,
    enc: 'b64', // JSON carries text only
    tensor: bytesToBase64(request.tensor),
    enqueuedAt: now,
    deadline: request.deadline,
    reply,
  }) as string[];
}

async function readResult(redis: Redis, key: string): Promise<JobResult | null> {
  const value = await redis.get<unknown>(key);
  if (value === null) return null;
  const parsed = JobResult.safeParse(value);
  return parsed.success ? parsed.data : null;
}

async function poll(redis: Redis, key: string, signal: AbortSignal): Promise<JobResult | null> {
  for (let delay = POLL_FIRST_MS; !signal.aborted; delay = Math.min(delay * 2, POLL_MAX_MS)) {
    const result = await readResult(redis, key).catch(() => null);
    if (result) return result;
    await sleep(delay, signal);
  }
  return null;
}
