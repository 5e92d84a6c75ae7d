/**
 * Write a batch's outcomes in one pipeline:
 * - answered jobs: the completion commands of shared/protocol.ts (result key SET NX with TTL, PUBLISH,
 *   XACK, XDEL; XACK's reply tells the first answer from a repeat);
 * - jobs given up on: deadletter-3.lua (the same, plus a copy of the job in the dead-letter stream);
 * - entries nobody waits for (expired, unanswerable): XACK + XDEL, no result.
 * Commands that fail (Redis restarting, say) are retried a few times; all kinds are idempotent: a
 * retry never stores a second answer nor dead-letters twice (it may publish again, which edges ignore).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../shared/keys.ts';
import type { Logger } from '../shared/log.ts';
import { COMPLETION_ACK_INDEX, completionCommands, type ErrorCode, type JobResult } from '../shared/protocol.ts';

const WRITE_ATTEMPTS = 5;
/** Replies per completed job in the pipeline (completionCommands' length). */
const COMPLETION_WIDTH = 4;

export interface Answer {
  entryId: string;
  /** Job id: names the result key. */
  id: string;
  reply: string;
  result: JobResult;
  /** Set: the job is dead-lettered (deadletter-3.lua) with this record, instead of completed. */
  deadLetter?: DeadLetterRecord;
}

/** Why a job was given up on; stored with its copy in the dead-letter stream. */
export interface DeadLetterRecord {
  reason: string;
  /** Deliveries so far (XPENDING's count, this one included). */
  deliveries: number;
  consumer: string;
}

export interface OutcomeTarget {
  keys: RedisKeys;
  resultTtlMs: number;
  /** Most entries kept in the dead-letter stream. */
  deadLetterMaxLen: number;
  log: Logger;
}

/** An error answer to `job`, dead-lettered with `deadLetter` when given. */
export function errorAnswer(
  job: { entryId: string; id: string; reply: string },
  consumer: string,
  code: ErrorCode,
  message: string,
  deadLetter?: DeadLetterRecord,
): Answer {
  return {
    entryId: job.entryId,
    id: job.id,
    reply: job.reply,
    result: { ok: false, id: job.id, error: { code, message }, worker: consumer },
    deadLetter,
  };
}

type Op = { kind: 'drop'; entryId: string } | { kind: 'answer'; answer: Answer };

export interface WriteReport {
  /** Writes that answered their job (the completion's XACK, or deadletter-3.lua, returned 1). */
  answered: number;
  /** Of those, jobs dead-lettered. */
  deadLettered: number;
  /** Ops that still failed after every retry: those jobs stay pending for a later reclaim. */
  writeFailures: number;
  /** Per stream entry id: how its write ended (for the jobs_total metric). */
  written: Map<string, WriteStatus>;
}

/** `answered`: this write answered the job; `duplicate`: another worker had; `dropped`: acked unanswered. */
export type WriteStatus = 'answered' | 'duplicate' | 'dropped' | 'failed';

export async function completeJobs(redis: Redis, target: OutcomeTarget, drop: string[], answers: Answer[]): Promise<WriteReport> {
  const { keys, resultTtlMs, deadLetterMaxLen, log } = target;
  let pending: Op[] = [
    ...drop.map((entryId): Op => ({ kind: 'drop', entryId })),
    ...answers.map((answer): Op => ({ kind: 'answer', answer })),
  ];
  let answered = 0;
  let deadLettered = 0;
  const written = new Map<string, WriteStatus>();
  for (let attempt = 1; pending.length > 0 && attempt <= WRITE_ATTEMPTS; attempt++) {
    if (attempt > 1) await sleep(100 * 2 ** attempt);
    const pipeline = redis.pipeline();
    for (const op of pending) {
      if (op.kind === 'drop') {
        pipeline.xack(keys.stream, keys.group, op.entryId).xdel(keys.stream, op.entryId);
        continue;
      }
      const { entryId, id, reply, result, deadLetter } = op.answer;
      const json = JSON.stringify(result);
      if (deadLetter) {
        pipeline.deadLetterJob(
          keys.stream,
          keys.deadLetter,
          keys.result(id),
          keys.group,
          entryId,
          json,
          resultTtlMs,
          reply,
          deadLetterMaxLen,
          'reason',
          deadLetter.reason,
          'deliveries',
          String(deadLetter.deliveries),
          'consumer',
          deadLetter.consumer,
          'deadAt',
          String(Date.now()),
        );
      } else {
        for (const [name, ...args] of completionCommands(keys, { entryId, id, reply }, json, resultTtlMs)) pipeline.call(name, ...args);
      }
    }
    const width = (op: Op) => (op.kind === 'drop' ? 2 : op.answer.deadLetter ? 1 : COMPLETION_WIDTH);
    const ackAt = (op: Op) => (op.kind === 'answer' && !op.answer.deadLetter ? COMPLETION_ACK_INDEX : 0);
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
      else if (op.kind === 'drop') written.set(op.entryId, 'dropped');
      else if (own[ackAt(op)]?.[1] === 1) {
        answered++;
        if (op.answer.deadLetter) deadLettered++;
        written.set(op.answer.entryId, 'answered');
      } else written.set(op.answer.entryId, 'duplicate');
    }
    if (failed.length > 0) log.warn({ failed: failed.length, attempt, err: firstError(replies) }, 'writing results failed; retrying');
    pending = failed;
  }
  if (pending.length > 0) {
    const ids = pending.map((op) => (op.kind === 'drop' ? op.entryId : op.answer.id));
    log.error({ jobs: pending.length, ids }, 'could not write results; the jobs stay pending for a later reclaim');
  }
  for (const op of pending) written.set(op.kind === 'drop' ? op.entryId : op.answer.entryId, 'failed');
  return { answered, deadLettered, writeFailures: pending.length, written };
}

function firstError(replies: [Error | null, unknown][]): string | undefined {
  return replies.find(([error]) => error)?.[0]?.message;
}
