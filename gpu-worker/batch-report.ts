/**
 * What one batch did, told three ways: the BatchReport (tests, the debug log line), the running
 * WorkerStats (the stop log line), and the Prometheus metrics (metrics.ts).
 */
import type { Answer, WriteReport } from './completion.ts';
import type { Job } from './jobs.ts';
import type { JobOutcome, WorkerMetrics } from './metrics.ts';

export interface BatchReport {
  /** Entries read. */
  size: number;
  /** Jobs that went through inference. */
  live: number;
  /** Skipped because their deadline had passed (acked + deleted, no result). */
  expired: number;
  /** Malformed entries (error result, or dropped when not even answerable). */
  invalid: number;
  /** Jobs this batch answered first (not counted: a job another worker had already answered). */
  answered: number;
  /** Writes that failed even after retries: those jobs stay pending for a later reclaim. */
  writeFailures: number;
  inferenceMs: number;
  /** Entries of this batch taken over from a worker that died (such a batch has one). */
  reclaimed: number;
  /** Jobs dead-lettered: delivered more than MAX_DELIVERIES times, or inference threw on them alone. */
  deadLettered: number;
  /** Set when the batch's inference threw: its jobs were then run one by one. */
  inferenceError?: string;
  /** Jobs run again alone because the batch's inference threw. */
  retriedAlone: number;
  /** tf.memory().numTensors before and after the inference: equal unless something leaks. */
  tensorsBefore: number;
  tensorsAfter: number;
}

export interface WorkerStats {
  batches: number;
  jobs: number;
  answered: number;
  expired: number;
  invalid: number;
  /** Batches whose inference threw. */
  inferenceFailures: number;
  /** Jobs taken over from workers that died. */
  reclaimed: number;
  deadLettered: number;
}

export const emptyStats = (): WorkerStats => ({
  batches: 0,
  jobs: 0,
  answered: 0,
  expired: 0,
  invalid: 0,
  inferenceFailures: 0,
  reclaimed: 0,
  deadLettered: 0,
});

export function addToStats(stats: WorkerStats, report: BatchReport): void {
  stats.batches++;
  stats.jobs += report.size;
  stats.answered += report.answered;
  stats.expired += report.expired;
  stats.invalid += report.invalid;
  stats.reclaimed += report.reclaimed;
  stats.deadLettered += report.deadLettered;
  if (report.inferenceError) stats.inferenceFailures++;
}

/** Count each job by how it ended, and the batch's size and timings. */
export function recordMetrics(
  metrics: WorkerMetrics,
  batch: { size: number; expired: string[]; dropped: string[]; answers: Answer[]; live: Job[]; inferenceMs: number },
  written: WriteReport['written'],
): void {
  const count = (entryId: string, outcome: JobOutcome) => {
    const status = written.get(entryId);
    metrics.jobs.inc({ outcome: status === 'failed' ? 'write_failed' : status === 'duplicate' ? 'duplicate' : outcome });
  };
  for (const entryId of batch.expired) count(entryId, 'expired');
  for (const entryId of batch.dropped) count(entryId, 'dropped');
  for (const { entryId, result, deadLetter } of batch.answers) count(entryId, deadLetter ? 'deadlettered' : result.ok ? 'ok' : 'invalid');
  metrics.batches.observe(batch.size);
  for (const job of batch.live) metrics.queueWait.observe(Math.max(0, job.readAt - job.enqueuedAt) / 1000);
  if (batch.live.length > 0) metrics.inference.observe(batch.inferenceMs / 1000);
}
