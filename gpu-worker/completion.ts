/**
 * Write a batch's outcomes in one pipeline:
 * - answered jobs and entries nobody waits for (expired, unanswerable): one complete-n.lua call
 *   (per job: result key SET NX with TTL, PUBLISH, XACK, XDEL; XACK's reply tells the first answer
 *   from a repeat; per dropped entry: XACK + XDEL, no result);
 * - jobs given up on: deadletter-3.lua each (the same, plus a copy of the job in the dead-letter stream).
 * Commands that fail (Redis restarting, say) are retried a few times; all kinds are idempotent: a
 * retry never stores a second answer nor dead-letters twice (it may publish again, which edges ignore).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../shared/keys.ts';
import type { Logger } from '../shared/log.ts';
import type { ErrorCode, JobResult } from '../shared/protocol.ts';

const WRITE_ATTEMPTS = 5;

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
    // One pipeline: complete-n.lua for every answer and drop (one command), then a deadletter-3.lua
    // call per job given up on (rare).
    const completed = pending.filter((op) => op.kind === 'answer' && !op.answer.deadLetter) as Extract<Op, { kind: 'answer' }>[];
    const dropped = pending.filter((op) => op.kind === 'drop') as Extract<Op, { kind: 'drop' }>[];
    const deadLetters = pending.filter((op) => op.kind === 'answer' && op.answer.deadLetter) as Extract<Op, { kind: 'answer' }>[];
    const pipeline = redis.pipeline();
    if (completed.length + dropped.length > 0) {
      pipeline.completeJobs(
        1 + completed.length,
        keys.stream,
        ...completed.map(({ answer }) => keys.result(answer.id)),
        keys.group,
        String(resultTtlMs),
        ...completed.flatMap(({ answer }) => [answer.entryId, answer.reply, JSON.stringify(answer.result)]),
        ...dropped.map((op) => op.entryId),
      );
    }
    for (const { answer } of deadLetters) {
      const { entryId, id, reply, result, deadLetter } = answer;
      pipeline.deadLetterJob(
        keys.stream,
        keys.deadLetter,
        keys.result(id),
        keys.group,
        entryId,
        JSON.stringify(result),
        resultTtlMs,
        reply,
        deadLetterMaxLen,
        'reason',
        deadLetter!.reason,
        'deliveries',
        String(deadLetter!.deliveries),
        'consumer',
        deadLetter!.consumer,
        'deadAt',
        String(Date.now()),
      );
    }
    let replies: [Error | null, unknown][];
    try {
      replies = (await pipeline.exec()) ?? [];
    } catch (error) {
      replies = [];
      log.warn({ err: error, attempt }, 'writing results failed; retrying');
    }
    // The script's reply first (XACK per op), then one per dead letter (1 or 0), in `ops` order.
    const ops: Op[] = [...completed, ...dropped];
    const acks: [Error | null, unknown][] = [];
    if (ops.length > 0) {
      const [error, value] = replies.shift() ?? [new Error('no reply'), null];
      for (let i = 0; i < ops.length; i++) acks.push(error ? [error, null] : [null, (value as number[] | null)?.[i]]);
    }
    ops.push(...deadLetters);
    acks.push(...replies.slice(0, deadLetters.length));
    const failed: Op[] = [];
    ops.forEach((op, i) => {
      const [error, acked] = acks[i] ?? [new Error('no reply'), null];
      if (error || (acked !== 0 && acked !== 1)) failed.push(op);
      else if (op.kind === 'drop') written.set(op.entryId, 'dropped');
      else if (acked === 1) {
        answered++;
        if (op.answer.deadLetter) deadLettered++;
        written.set(op.answer.entryId, 'answered');
      } else written.set(op.answer.entryId, 'duplicate');
    });
    if (failed.length > 0) log.warn({ failed: failed.length, attempt, err: firstError(acks) }, 'writing results failed; retrying');
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
