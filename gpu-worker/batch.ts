/**
 * One batch, start to end: triage.ts sorts the entries, inference.ts runs the live ones,
 * completion.ts writes every answer (and acks what needs none), batch-report.ts records it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../shared/keys.ts';
import type { Logger } from '../shared/log.ts';
import { addToStats, type BatchReport, recordMetrics, type WorkerStats } from './batch-report.ts';
import { type Answer, completeJobs, errorAnswer } from './completion.ts';
import { reclaimWithinMs, type WorkerConfig } from './config.ts';
import type { ImageClassifier } from './engine/image-classifier.ts';
import { infer, type InferenceOutcome } from './inference.ts';
import type { StreamEntry } from './jobs.ts';
import type { WorkerMetrics } from './metrics.ts';
import { triage } from './triage.ts';
import { Turns } from './turns.ts';
import { type BatchTimes, preciseNow, traceBatch } from './tracing.ts';
import { decodeWireImages } from './wire.ts';
import type { Tracing } from '../shared/tracing/index.ts';

/** A batch of one entry taken over from a dead worker: its delivery count (undefined if acked meanwhile). */
export interface Claim {
  deliveries: number | undefined;
}

export interface BatchContext {
  config: WorkerConfig;
  consumer: string;
  keys: RedisKeys;
  /** The connection answers are written on. */
  redis: Redis;
  log: Logger;
  stats: WorkerStats;
  metrics?: WorkerMetrics;
  onBatch?: (report: BatchReport) => void;
  /** Whose turn it is at the model, when several shards share it (turns.ts). */
  turns?: Turns;
  /** Traces (shared/tracing): the spans of traced jobs (tracing.ts); undefined when off. */
  tracing?: Tracing;
}

/**
 * Returns the function that runs one batch and resolves with the ms it waited for its turn at the
 * model; it never throws (a bug leaves the entries pending for a reclaim).
 */
export function batchRunner(
  context: BatchContext,
): (classifier: ImageClassifier, entries: StreamEntry[], claim?: Claim) => Promise<number> {
  const { config, consumer, keys, redis, log, stats, metrics, onBatch, tracing } = context;
  const turns = context.turns ?? new Turns();
  let warnedDeadline = false;

  return async function processSafely(classifier: ImageClassifier, entries: StreamEntry[], claim?: Claim): Promise<number> {
    try {
      return await processBatch(classifier, entries, claim);
    } catch (error) {
      // A bug, not a bad job: keep serving; the batch's entries stay pending for a reclaim.
      log.error({ err: error, entries: entries.length }, 'batch failed unexpectedly');
      return 0;
    }
  };

  async function processBatch(classifier: ImageClassifier, entries: StreamEntry[], claim?: Claim): Promise<number> {
    const deliveries = claim?.deliveries ?? 1;
    const startedAt = preciseNow();
    const sorted = triage(entries, { now: Date.now(), deliveries, maxDeliveries: config.maxDeliveries });
    for (const { entryId, message } of sorted.unanswerable) {
      log.warn({ entryId, reason: message }, 'dropping a stream entry that cannot be answered');
    }
    if (!warnedDeadline && sorted.shortestDeadlineMs !== undefined && sorted.shortestDeadlineMs <= reclaimWithinMs(config)) {
      warnedDeadline = true;
      log.warn(
        { deadlineMs: sorted.shortestDeadlineMs, claimIdleMs: config.claimIdleMs },
        'the edge gives jobs less time than CLAIM_IDLE_MS x 1.5: the jobs of a stuck worker would be taken over after their clients got 504 (set DEADLINE_MS on the workers as on the edge)',
      );
    }
    // Image files (WIRE_FORMAT jpeg, webp) back to tensors; one that does not decode is a bad request.
    const wire = await decodeWireImages(sorted.live);
    sorted.live = wire.jobs;
    sorted.invalid.push(...wire.invalid);
    const answers: Answer[] = sorted.invalid.map((job) => errorAnswer(job, consumer, 'bad_request', job.message));
    for (const job of sorted.overDelivered) {
      log.error(
        { id: job.id, entryId: job.entryId, deliveries, maxDeliveries: config.maxDeliveries },
        'dead-lettering a job that keeps failing',
      );
      answers.push(
        errorAnswer(
          job,
          consumer,
          'inference_failed',
          `Gave up on this image after ${deliveries - 1} attempts that each ended without an answer (the worker processing it stopped: ` +
            'a crash, a kill or out of memory); the job was moved to the dead-letter stream',
          {
            reason: `delivered ${deliveries} times (MAX_DELIVERIES=${config.maxDeliveries}); no delivery was answered`,
            deliveries,
            consumer,
          },
        ),
      );
    }
    let inference: Omit<InferenceOutcome, 'answers'> = { inferenceMs: 0, retriedAlone: 0, tensorsBefore: 0, tensorsAfter: 0 };
    let waitedMs = 0;
    let inferenceTimes: BatchTimes['inference'];
    if (sorted.live.length > 0) {
      const turn = await turns.run(async () => {
        const inferenceStartedAt = preciseNow();
        if (config.inferenceDelayMs > 0) await sleep(config.inferenceDelayMs);
        const outcome = await infer(classifier, sorted.live, { consumer, deliveries, log });
        inferenceTimes = { startedAt: inferenceStartedAt, endedAt: preciseNow(), error: outcome.inferenceError };
        return outcome;
      });
      waitedMs = turn.waitedMs;
      answers.push(...turn.value.answers);
      inference = turn.value;
    }

    const dropped = sorted.unanswerable.map(({ entryId }) => entryId);
    const expired = sorted.expired.map(({ entryId }) => entryId);
    const writeStartedAt = preciseNow();
    const written = await completeJobs(
      redis,
      { keys, resultTtlMs: config.resultTtlMs, deadLetterMaxLen: config.deadLetterMaxLen, log },
      [...dropped, ...expired],
      answers,
    );
    traceBatch(tracing, sorted, {
      startedAt,
      inference: inferenceTimes,
      write: { startedAt: writeStartedAt, endedAt: preciseNow() },
      answers,
      written: written.written,
      size: entries.length,
      consumer,
      stream: keys.stream,
      group: keys.group,
    });
    if (metrics) {
      recordMetrics(
        metrics,
        { size: entries.length, expired, dropped, answers, live: sorted.live, inferenceMs: inference.inferenceMs },
        written.written,
      );
    }
    const report: BatchReport = {
      size: entries.length,
      live: sorted.live.length,
      expired: sorted.expired.length,
      invalid: sorted.invalid.length + sorted.unanswerable.length,
      answered: written.answered,
      writeFailures: written.writeFailures,
      reclaimed: claim ? entries.length : 0,
      deadLettered: written.deadLettered,
      inferenceMs: inference.inferenceMs,
      inferenceError: inference.inferenceError,
      retriedAlone: inference.retriedAlone,
      tensorsBefore: inference.tensorsBefore,
      tensorsAfter: inference.tensorsAfter,
    };
    addToStats(stats, report);
    // The job ids are the edge's request ids: a request's log lines can be followed across tiers.
    log.debug({ ...report, inferenceMs: Math.round(inference.inferenceMs), ids: answers.map((a) => a.id) }, 'batch done');
    onBatch?.(report);
    return waitedMs;
  }
}
