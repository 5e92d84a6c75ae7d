/**
 * Broker over a direct TCP connection (ioredis), for a self-hosted Node edge next to its Redis.
 * One subscriber connection per edge instance listens on the instance's own channel; each job
 * names that channel as its reply, and results are routed to waiting requests by id. Cost: 1
 * command per request (EVALSHA); the tensor travels as raw bytes.
 *
 * @example
 * const broker = await createIoredisBroker({ url: 'redis://127.0.0.1:6379', keys: redisKeys(), limits, scripts });
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { JobResult, jobToFieldList } from '../../shared/protocol.ts';
import type { RedisKeys } from '../../shared/keys.ts';
import type { LuaScripts } from '../../shared/lua/scripts.ts';
import type { Logger } from '../../shared/log.ts';
import {
  brokerUnavailable,
  deadlineExceeded,
  queueFull,
  type Broker,
  type BrokerLimits,
  type SubmitRequest,
} from '../broker/broker.ts';

export interface IoredisBrokerOptions {
  url: string;
  keys: RedisKeys;
  limits: BrokerLimits;
  scripts: Pick<LuaScripts, 'enqueue'>;
  logger?: Logger;
}

type Waiter = (result: JobResult | null) => void;

export async function createIoredisBroker({ url, keys, limits, scripts, logger }: IoredisBrokerOptions): Promise<Broker> {
  // Fail fast while Redis is down instead of queueing commands in memory.
  const options = { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: true } as const;
  const commands = new Redis(url, options);
  const subscriber = new Redis(url, { ...options, enableOfflineQueue: true });
  for (const connection of [commands, subscriber]) {
    connection.on('error', (error) => logger?.warn({ err: error.message }, 'redis connection error'));
  }
  await Promise.all([commands.connect(), subscriber.connect()]);

  const channel = keys.edgeChannel(randomUUID());
  const waiters = new Map<string, Waiter>();
  subscriber.on('message', (_channel: string, message: string) => {
    let parsed;
    try {
      parsed = JobResult.safeParse(JSON.parse(message));
    } catch {
      return;
    }
    if (parsed.success) waiters.get(parsed.data.id)?.(parsed.data);
  });
  await subscriber.subscribe(channel);
  commands.defineCommand('enqueueJob', { numberOfKeys: 1, lua: scripts.enqueue });

  return {
    async submit(request: SubmitRequest, signal?: AbortSignal) {
      const { id, deadline } = request;
      const waitMs = deadline - Date.now();
      let onResult!: Waiter;
      const pushed = new Promise<JobResult | null>((resolve) => (onResult = resolve));
      const timer = setTimeout(() => onResult(null), waitMs);
      signal?.addEventListener('abort', () => onResult(null), { once: true });
      waiters.set(id, onResult);
      try {
        const fields = jobToFieldList({
          id,
          enc: 'raw',
          tensor: Buffer.from(request.tensor.buffer, request.tensor.byteOffset, request.tensor.byteLength) as Uint8Array,
          enqueuedAt: Date.now(),
          deadline,
          reply: channel,
        });
        let entryId: string | null;
        try {
          entryId = await (commands as unknown as EnqueueCommand).enqueueJob(keys.stream, limits.queueMax, ...fields);
        } catch (error) {
          throw brokerUnavailable(error);
        }
        if (entryId === null) throw queueFull(limits);
        const result = (await pushed) ?? (await readResult(commands, keys.result(id)));
        if (result) return result;
        throw deadlineExceeded(waitMs);
      } finally {
        clearTimeout(timer);
        waiters.delete(id);
      }
    },
    async close() {
      subscriber.disconnect();
      commands.disconnect();
    },
  };
}

interface EnqueueCommand {
  enqueueJob(stream: string, queueMax: number, ...fields: (string | Uint8Array)[]): Promise<string | null>;
}

/** One last look at the result key, in case the publish was missed (e.g. during a reconnect). */
async function readResult(redis: Redis, key: string): Promise<JobResult | null> {
  const value = await redis.get(key).catch(() => null);
  if (value === null) return null;
  const parsed = JobResult.safeParse(JSON.parse(value));
  return parsed.success ? parsed.data : null;
}
