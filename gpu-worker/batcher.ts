/**
 * Collect one batch from the job stream (consumer group read, new entries only).
 *
 * Waits up to `blockMs` for a first job. Once one arrived, keeps reading until the batch is full
 * or `maxDelayMs` have passed since that first arrival (Triton's max_queue_delay): a short wait
 * that lets concurrent requests share one forward pass. Under backlog the first read already
 * returns a full batch and nothing waits.
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
  const read = async (count: number, blockMs: number): Promise<StreamEntry[]> => {
    const reply = (await redis.xreadgroupBuffer(
      'GROUP',
      options.group,
      options.consumer,
      'COUNT',
      count,
      'BLOCK',
      Math.max(1, Math.ceil(blockMs)), // BLOCK 0 would mean "forever"
      'STREAMS',
      options.stream,
      '>',
    )) as XReadGroupReply;
    const readAt = Date.now();
    return (reply ?? []).flatMap(([, items]) => items.map(([id, fields]) => ({ entryId: id.toString(), fields, readAt })));
  };

  const batch = await read(options.batchSize, options.blockMs);
  if (batch.length === 0) return batch;
  const firstAt = Date.now();
  while (batch.length < options.batchSize) {
    const left = options.maxDelayMs - (Date.now() - firstAt);
    if (left <= 0) break;
    batch.push(...(await read(options.batchSize - batch.length, left)));
  }
  return batch;
}
