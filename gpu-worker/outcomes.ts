/**
 * Write a batch's outcomes in one pipeline:
 * - answered jobs: complete.lua (XACK + XDEL, and for the first ack only: result key with TTL + PUBLISH);
 * - entries nobody waits for (expired, unanswerable): XACK + XDEL, no result.
 * Commands that fail (Redis restarting, say) are retried a few times; both kinds are idempotent,
 * and complete.lua's XACK guard means a retry never publishes twice.
 */
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../shared/keys.ts';
import { loadLuaScripts } from '../shared/lua/node.ts';
import type { Logger } from '../shared/log.ts';
import type { JobResult } from '../shared/protocol.ts';

const WRITE_ATTEMPTS = 5;

export interface Answer {
  entryId: string;
  /** Job id: names the result key. */
  id: string;
  reply: string;
  result: JobResult;
}

interface CompleteJobCommand {
  completeJob(stream: string, resultKey: string, group: string, entryId: string, resultJson: string, ttlMs: number, reply: string): unknown;
}

/** Register complete.lua on a connection (ioredis uses EVALSHA, falling back to EVAL once). */
export function defineCompleteJob(redis: Redis): void {
  redis.defineCommand('completeJob', { numberOfKeys: 2, lua: loadLuaScripts().complete });
}

type Op = { kind: 'drop'; entryId: string } | { kind: 'answer'; answer: Answer };

export async function writeOutcomes(
  redis: Redis,
  target: { keys: RedisKeys; resultTtlMs: number; log: Logger },
  drop: string[],
  answers: Answer[],
): Promise<{ answered: number; writeFailures: number }> {
  const { keys, resultTtlMs, log } = target;
  let pending: Op[] = [
    ...drop.map((entryId): Op => ({ kind: 'drop', entryId })),
    ...answers.map((answer): Op => ({ kind: 'answer', answer })),
  ];
  let answered = 0;
  for (let attempt = 1; pending.length > 0 && attempt <= WRITE_ATTEMPTS; attempt++) {
    if (attempt > 1) await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt));
    const pipeline = redis.pipeline();
    for (const op of pending) {
      if (op.kind === 'drop') {
        pipeline.xack(keys.stream, keys.group, op.entryId).xdel(keys.stream, op.entryId);
      } else {
        const { entryId, id, reply, result } = op.answer;
        (pipeline as unknown as CompleteJobCommand).completeJob(
          keys.stream, keys.result(id), keys.group, entryId, JSON.stringify(result), resultTtlMs, reply,
        );
      }
    }
    const width = (op: Op) => (op.kind === 'drop' ? 2 : 1);
    let replies: [Error | null, unknown][];
    try {
      replies = (await pipeline.exec()) ?? [];
    } catch (error) {
      replies = pending.flatMap((op) => Array.from({ length: width(op) }, (): [Error, null] => [error as Error, null]));
    }
    const failed: Op[] = [];
    let at = 0;
    for (const op of pending) {
      const own = replies.slice(at, at + width(op));
      at += width(op);
      if (own.length < width(op) || own.some(([error]) => error)) failed.push(op);
      else if (op.kind === 'answer' && own[0]?.[1] === 1) answered++;
    }
    if (failed.length > 0) log.warn({ failed: failed.length, attempt }, 'writing results failed; retrying');
    pending = failed;
  }
  if (pending.length > 0) log.error({ jobs: pending.length }, 'could not write results; the jobs stay pending for a later reclaim');
  return { answered, writeFailures: pending.length };
}
