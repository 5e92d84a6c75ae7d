/**
 * Collect one batch from the job stream (consumer group read, new entries only), and take over
 * one job whose worker died: of a consumer found dead by its heartbeat ({@link claimFrom}), or any
 * job unanswered for CLAIM_IDLE_MS ({@link claimOne}, XAUTOCLAIM).
 *
 * Waits up to `blockMs` for a first job (a blocking read wakes the moment a job is added). If the
 * batch is not full, it may wait `maxDelayMs` (Triton's max_queue_delay), then take what has
 * arrived with one non-blocking read (the "fill" read): a short wait that lets concurrent requests
 * share one forward pass. Under backlog the first read already returns a full batch and nothing waits.
 *
 * The fill rule: wait and fill only when traffic suggests company is coming, that is when this
 * first read returned more than one job, or the previous batch (`previousBatchSize`) had more than
 * one. A lone request after a lone request (concurrency 1, or a quiet API) then costs neither the
 * wait nor the extra XREADGROUP (a Redis command per request). When load rises,
 * the first batch that finds more than one job turns filling back on, so batches still fill; the
 * price is that the very first pair of a burst may be split across two batches.
 *
 * The fill wait is a local timer, not `BLOCK maxDelayMs`: Redis only checks blocked clients'
 * timeouts on its `hz` tick (every 100 ms by default), so a 5 ms BLOCK could last ~100 ms.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import type { StreamEntry } from './jobs.ts';

export interface BatchReadOptions {
  stream: string;
  group: string;
  consumer: string;
  batchSize: number;
  maxDelayMs: number;
  /** How long one read blocks when the queue is empty; bounds how fast stop() takes effect. 0: no wait. */
  blockMs: number;
  /** Entries in the batch read before this one (0 at start): more than 1 turns the fill wait on (see the fill rule above). */
  previousBatchSize: number;
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

  const batch = await read(options.batchSize, options.blockMs > 0 ? options.blockMs : undefined);
  if (batch.length === 0 || batch.length >= options.batchSize || options.maxDelayMs <= 0) return batch;
  if (batch.length === 1 && options.previousBatchSize <= 1) return batch; // a lone job, as the last one was: no company expected
  await sleep(options.maxDelayMs);
  batch.push(...(await read(options.batchSize - batch.length)));
  return batch;
}

export interface ClaimOptions {
  stream: string;
  group: string;
  consumer: string;
  /** Only entries delivered at least this long ago (and not acked since) are taken. */
  minIdleMs: number;
  /** Where the scan of the pending entries list resumes; '0-0' starts over. */
  cursor: string;
}

export interface Claimed {
  /** The next cursor; '0-0' once the scan has gone through the whole pending list. */
  cursor: string;
  entry?: StreamEntry;
  /** Deliveries of `entry` so far, this one included (XPENDING); undefined if it was acked meanwhile. */
  deliveries?: number;
}

/**
 * Take over at most one job whose worker died: XAUTOCLAIM ... COUNT 1 (Buffer replies, so the
 * tensor stays binary) moves an entry idle for `minIdleMs` to `consumer` and adds one to its
 * delivery count, which XPENDING then reads. One at a time on purpose: a claimed job may be the
 * one that killed its worker, so it runs alone, and if it kills this worker too no other job
 * gets its delivery count raised with it.
 */
export async function claimOne(redis: Redis, options: ClaimOptions): Promise<Claimed> {
  const { stream, group, consumer } = options;
  // Redis 7: [cursor, [[id, fields]...], [deleted ids]]; 6.2: no third element, deleted entries as [id, null].
  const reply = (await redis.callBuffer('XAUTOCLAIM', stream, group, consumer, options.minIdleMs, options.cursor, 'COUNT', 1)) as [
    Buffer,
    [Buffer, Buffer[] | null][],
    Buffer[]?,
  ];
  const cursor = reply[0].toString();
  const item = reply[1][0];
  if (!item) return { cursor };
  const entry: StreamEntry = { entryId: item[0].toString(), fields: item[1], readAt: Date.now() };
  const pending = (await redis.xpending(stream, group, entry.entryId, entry.entryId, 1)) as [string, string, number, number][];
  return { cursor, entry, deliveries: pending[0]?.[3] };
}

/**
 * Take over the oldest job of consumer `from`, a worker found dead (consumers.ts deadConsumers):
 * XPENDING ... IDLE minIdleMs <from> finds it, XCLAIM ... minIdleMs moves it to `consumer` (Buffer
 * reply). The idle guard makes two survivors racing for the same entry safe: the first claim
 * resets its idle time, so the second takes nothing. One at a time, run alone, as claimOne.
 * Returns undefined when `from` holds nothing (more) that is idle enough.
 */
export async function claimFrom(
  redis: Redis,
  options: Omit<ClaimOptions, 'cursor'> & { from: string },
): Promise<Omit<Claimed, 'cursor'> | undefined> {
  const { stream, group, consumer, minIdleMs, from } = options;
  const [oldest] = (await redis.xpending(stream, group, 'IDLE', minIdleMs, '-', '+', 1, from)) as [string, string, number, number][];
  if (!oldest) return undefined;
  const [entryId, , , deliveries] = oldest;
  const reply = (await redis.callBuffer('XCLAIM', stream, group, consumer, minIdleMs, entryId)) as [Buffer, Buffer[] | null][];
  const item = reply[0];
  // Claimed by another worker first (empty), or deleted meanwhile (Redis 6.2: [id, null]).
  if (!item?.[1]) return {};
  return { entry: { entryId: item[0].toString(), fields: item[1], readAt: Date.now() }, deliveries: deliveries + 1 };
}
