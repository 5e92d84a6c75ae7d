/**
 * Collect one batch from the job stream (consumer group read, new entries only).
 *
 * Waits up to `blockMs` for a first job (a blocking read wakes the moment a job is added). If the
 * batch is not full, it waits `maxDelayMs` (Triton's max_queue_delay), then takes what has arrived
 * with one non-blocking read: a short wait that lets concurrent requests share one forward pass.
 * Under backlog the first read already returns a full batch and nothing waits.
 *
 * The fill wait is a local timer, not `BLOCK maxDelayMs`: Redis only checks blocked clients'
 * timeouts on its `hz` tick (every 100 ms by default), so a 5 ms BLOCK could last ~100 ms.
 */
import type { Redis } from 'ioredis';
import type { StreamEntry } from './jobs.ts';

export interface BatchReadOptions {
  stream: string;
  group: string;
  consumer: string;
  batchSize: number;
  maxDelayMs: number;
  /** How long one read blocks when the queue is empty; bounds how fast stop() takes effect. */
  blockMs: number;
}

type XReadGroupReply = [key: Buffer, items: [id: Buffer, fields: Buffer[] | null][]][] | null;

export async function readBatch(redis: Redis, options: BatchReadOptions): Promise<StreamEntry[]> {
  const read = async (count: number, blockMs?: number): Promise<StreamEntry[]> => {
    const block = blockMs === undefined ? [] : ['BLOCK', Math.max(1, Math.ceil(blockMs))]; // BLOCK 0 = forever
    const reply = (await redis.xreadgroupBuffer(
      'GROUP',
      options.group,
      options.consumer,
      'COUNT',
      count,
      ...(block as ['BLOCK', number]),
      'STREAMS',
      options.stream,
      '>',
    )) as XReadGroupReply;
    const readAt = Date.now();
    return (reply ?? []).flatMap(([, items]) => items.map(([id, fields]) => ({ entryId: id.toString(), fields, readAt })));
  };

  const batch = await read(options.batchSize, options.blockMs);
  if (batch.length === 0 || batch.length >= options.batchSize || options.maxDelayMs <= 0) return batch;
  await new Promise((resolve) => setTimeout(resolve, options.maxDelayMs));
  batch.push(...(await read(options.batchSize - batch.length)));
  return batch;
}
