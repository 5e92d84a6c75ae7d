/**
 * Run a batch's jobs through the classifier and turn each into an answer. One bad input must not
 * fail its batch-mates: when the batch's inference throws, each job runs again alone, and a job
 * that fails alone is answered with its error at once and dead-lettered (run again later, it would
 * only fail again after its client had waited).
 */
import type { Logger } from '../shared/log.ts';
import { MAX_TOP_K } from '../shared/protocol.ts';
import { type Answer, errorAnswer } from './completion.ts';
import type { ClassifyRun, ImageClassifier } from './engine/image-classifier.ts';
import type { Job } from './jobs.ts';

export interface InferenceOutcome {
  answers: Answer[];
  /** Every run's time added up (the batch's, then each job's alone when it threw). */
  inferenceMs: number;
  /** Set when the batch's inference threw. */
  inferenceError?: string;
  /** Jobs run again alone because the batch's inference threw. */
  retriedAlone: number;
  /** tf.memory().numTensors before and after the last run: equal unless something leaks. */
  tensorsBefore: number;
  tensorsAfter: number;
}

export async function infer(
  classifier: ImageClassifier,
  jobs: Job[],
  context: { consumer: string; deliveries: number; log: Logger },
): Promise<InferenceOutcome> {
  const { consumer, deliveries, log } = context;
  const outcome: InferenceOutcome = { answers: [], inferenceMs: 0, retriedAlone: 0, tensorsBefore: 0, tensorsAfter: 0 };
  const run = async (batch: Job[]): Promise<ClassifyRun | Error> => {
    try {
      const result = await classifier.classifyWithStats(
        batch.map((job) => job.tensor),
        MAX_TOP_K,
      );
      outcome.tensorsBefore = result.tensorsBefore;
      outcome.tensorsAfter = result.tensorsAfter;
      outcome.inferenceMs += result.inferenceMs;
      return result;
    } catch (error) {
      return error instanceof Error ? error : new Error(String(error));
    }
  };
  const succeed = (job: Job, predictions: ClassifyRun['predictions'][number] | undefined, ms: number, batchSize: number) =>
    outcome.answers.push({
      entryId: job.entryId,
      id: job.id,
      reply: job.reply,
      result: {
        ok: true,
        id: job.id,
        model: classifier.name,
        predictions: predictions ?? [],
        queueMs: Math.max(0, job.readAt - job.enqueuedAt),
        inferenceMs: Math.round(ms * 10) / 10,
        batchSize,
        worker: consumer,
      },
    });

  const batch = await run(jobs);
  if (!(batch instanceof Error)) {
    jobs.forEach((job, i) => succeed(job, batch.predictions[i], batch.inferenceMs, jobs.length));
  } else {
    outcome.inferenceError = batch.message;
    log.error(
      { err: batch, batchSize: jobs.length },
      jobs.length > 1 ? 'inference failed; running the jobs one by one' : 'inference failed',
    );
    for (const job of jobs) {
      const alone = jobs.length > 1 ? await run([job]) : batch;
      if (jobs.length > 1) outcome.retriedAlone++;
      if (!(alone instanceof Error)) {
        succeed(job, alone.predictions[0], alone.inferenceMs, 1);
        continue;
      }
      if (jobs.length > 1) log.error({ err: alone, id: job.id }, 'inference failed on one job alone');
      outcome.answers.push(
        errorAnswer(job, consumer, 'inference_failed', `inference failed: ${alone.message} (the job was moved to the dead-letter stream)`, {
          reason: `inference threw: ${alone.message}`,
          deliveries,
          consumer,
        }),
      );
    }
  }
  if (outcome.tensorsAfter > outcome.tensorsBefore) {
    log.warn({ tensorsBefore: outcome.tensorsBefore, tensorsAfter: outcome.tensorsAfter }, 'tensor count grew during a batch (leak?)');
  }
  return outcome;
}
