/**
 * A batch's spans, in the trace of each job that carries a `traceparent` (the edge's enqueue span:
 * shared/tracing). A batch holds jobs of many traces, so each traced job gets its own copy of the
 * batch's spans: `dequeue` (kind consumer: read off the stream until its batch starts), `batch`
 * (until its answer is written), and under it `inference` and `write`. A job read past its
 * deadline gets its `dequeue` only, failed: the worker acked it unanswered (the edge had answered
 * 504). They are made after the batch from the times it recorded, so tracing adds nothing to the
 * batch's own path; a worker with tracing off, or a batch of untraced jobs, makes none.
 *
 * Times are this host's clock, the edge's spans the edge's: a few ms of skew between hosts can show a
 * worker span a little outside its parent.
 *
 * @example
 * traceBatch(tracing, sorted, { ...times, answers, written, size, consumer, stream: keys.stream, group: keys.group });
 */
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { contextWith, type Tracing } from '../shared/tracing/index.ts';
import type { Answer, WriteStatus } from './completion.ts';
import type { Job } from './jobs.ts';

/** Epoch ms with a fraction (performance.timeOrigin-based): the precision spans keep. */
export const preciseNow = () => performance.timeOrigin + performance.now();

export interface BatchTimes {
  /** When the batch began (its entries were read just before). */
  startedAt: number;
  /** The model's run, once the batch had its turn; absent when no job was live. */
  inference?: { startedAt: number; endedAt: number; error?: string };
  /** The answers' write (complete-n.lua), retries included. */
  write: { startedAt: number; endedAt: number };
}

export interface BatchFacts extends BatchTimes {
  answers: Answer[];
  written: Map<string, WriteStatus>;
  /** Entries in the batch (live or not). */
  size: number;
  consumer: string;
  stream: string;
  group: string;
}

/** The batch's jobs that got this far: computed (`live`) or skipped as past their deadline. */
export interface TracedJobs {
  live: Job[];
  expired: Job[];
}

export function traceBatch(tracing: Tracing | undefined, { live, expired }: TracedJobs, facts: BatchFacts): void {
  if (!tracing || !(live.some((job) => job.traceparent) || expired.some((job) => job.traceparent))) return;
  const { tracer } = tracing;
  const dequeue = (job: Job) => {
    const parent = tracing.parent(job.traceparent);
    const span = tracer.startSpan(
      'dequeue',
      {
        kind: SpanKind.CONSUMER,
        startTime: job.readAt,
        attributes: {
          'job.id': job.id,
          'messaging.message.id': job.entryId,
          'messaging.system': 'redis',
          'messaging.operation.type': 'receive',
          'messaging.destination.name': facts.stream,
          'messaging.consumer.group.name': facts.group,
          'queue.ms': Math.max(0, job.readAt - job.enqueuedAt),
        },
      },
      parent,
    );
    return { span, parent };
  };
  for (const job of expired.filter((job) => job.traceparent)) {
    const { span } = dequeue(job);
    span.setStatus({ code: SpanStatusCode.ERROR, message: 'read past its deadline: acknowledged unanswered' });
    span.setAttribute('error.type', 'deadline_exceeded');
    span.end(facts.startedAt);
  }
  const answerOf = new Map(facts.answers.map((answer) => [answer.entryId, answer.result]));
  for (const job of live.filter((job) => job.traceparent)) {
    const { span, parent } = dequeue(job);
    span.end(facts.startedAt);
    const common = { 'job.id': job.id, 'messaging.message.id': job.entryId };
    const batch = tracer.startSpan(
      'batch',
      { startTime: facts.startedAt, attributes: { ...common, 'batch.size': facts.size, worker: facts.consumer } },
      parent,
    );
    const inBatch = contextWith(parent, batch);
    if (facts.inference) {
      const inference = tracer.startSpan(
        'inference',
        { startTime: facts.inference.startedAt, attributes: { 'batch.live': live.length } },
        inBatch,
      );
      // The whole batch's run threw: each job ran again alone (inference.ts); the answer says how that went.
      if (facts.inference.error) inference.addEvent('batch inference failed; jobs run again alone', { message: facts.inference.error });
      inference.end(facts.inference.endedAt);
    }
    const write = tracer.startSpan(
      'write',
      { startTime: facts.write.startedAt, attributes: { 'write.status': facts.written.get(job.entryId) ?? 'failed' } },
      inBatch,
    );
    write.end(facts.write.endedAt);
    const result = answerOf.get(job.entryId);
    if (result && !result.ok) {
      batch.setStatus({ code: SpanStatusCode.ERROR, message: result.error.message });
      batch.setAttribute('error.type', result.error.code);
    }
    batch.end(facts.write.endedAt);
  }
}
