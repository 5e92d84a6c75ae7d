/**
 * Test-side view of the job queue: enqueue exactly as the edge does (enqueue-1.lua with the fields of
 * jobToFieldList), and record every result published on the reply channels.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { redisKeys, type RedisKeys } from '../../shared/keys.ts';
import { ioredisScripts } from '../../shared/lua/node.ts';
import { jobToFieldList, JobResult, type TensorEncoding } from '../../shared/protocol.ts';
import { z85Encode } from '../../shared/z85.ts';

export interface EnqueueOptions {
  enc?: TensorEncoding;
  /** ms from now; negative = already expired. */
  deadlineInMs?: number;
  id?: string;
  /** Send this instead of the encoded tensor (for malformed-job tests). */
  rawTensorField?: string | Uint8Array;
}

export class JobQueue {
  readonly keys: RedisKeys;
  readonly redis: Redis;
  private readonly subscriber: Redis;
  /** Every message published on `<prefix>:done:*`, by channel. */
  readonly published = new Map<string, string[]>();

  private constructor(
    url: string,
    readonly prefix: string,
  ) {
    this.keys = redisKeys(prefix);
    this.redis = new Redis(url, { scripts: ioredisScripts });
    this.subscriber = new Redis(url);
    this.subscriber.on('pmessage', (_pattern: string, channel: string, message: string) => {
      const list = this.published.get(channel) ?? [];
      list.push(message);
      this.published.set(channel, list);
    });
  }

  static async open(url: string, prefix: string): Promise<JobQueue> {
    const queue = new JobQueue(url, prefix);
    await queue.subscriber.psubscribe(`${prefix}:done:*`);
    return queue;
  }

  /** Returns the job id. */
  async enqueue(tensor: Uint8Array, options: EnqueueOptions = {}): Promise<string> {
    const id = options.id ?? randomUUID();
    const enc = options.enc ?? 'raw';
    const now = Date.now();
    const fields = jobToFieldList({
      id,
      enc,
      tensor: options.rawTensorField ?? encodeTensor(tensor, enc),
      enqueuedAt: now,
      deadline: now + (options.deadlineInMs ?? 30_000),
      reply: this.keys.resultChannel(id),
    });
    const entryId = await this.redis.enqueueJob(this.keys.stream, 10_000, ...fields.map(toArg));
    if (typeof entryId === 'number') throw new Error(`queue full (${entryId} jobs)`);
    return id;
  }

  results(id: string): JobResult[] {
    return (this.published.get(this.keys.resultChannel(id)) ?? []).map((text) => JobResult.parse(JSON.parse(text)));
  }

  async waitForResults(ids: string[], timeoutMs = 10_000): Promise<Map<string, JobResult>> {
    const until = Date.now() + timeoutMs;
    while (ids.some((id) => this.results(id).length === 0)) {
      if (Date.now() > until) {
        const missing = ids.filter((id) => this.results(id).length === 0).length;
        throw new Error(`${missing} of ${ids.length} results did not arrive within ${timeoutMs} ms`);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return new Map(ids.map((id) => [id, this.results(id)[0]!]));
  }

  async pendingCount(): Promise<number> {
    const summary = (await this.redis.xpending(this.keys.stream, this.keys.group)) as [number, ...unknown[]];
    return Number(summary[0]);
  }

  async close(): Promise<void> {
    await Promise.all([this.redis.quit(), this.subscriber.quit()]);
  }
}

/** As each edge writes it: raw (ioredis), z85 (Upstash REST), b64 (REST edges before Z85). */
function encodeTensor(tensor: Uint8Array, enc: TensorEncoding): string | Uint8Array {
  if (enc === 'raw') return tensor;
  return enc === 'z85' ? z85Encode(tensor) : Buffer.from(tensor.buffer, tensor.byteOffset, tensor.byteLength).toString('base64');
}

const toArg = (value: string | Uint8Array) =>
  typeof value === 'string' ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
