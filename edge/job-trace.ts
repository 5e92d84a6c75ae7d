/**
 * One job's spans at the edge: `enqueue` (kind producer: until the stream holds the job; its
 * context is the `traceparent` the job carries, so the worker's spans hang under it) and then
 * `wait` (until the answer). A job enqueued again (ride-through after Redis lost it, or failover
 * to another shard) adds an event to `wait`.
 *
 * @example
 * const spans = jobTrace(tracing, parent, jobId, tensor.byteLength);
 * const result = await broker.submit({ ...job, traceparent: spans?.traceparent, onEnqueued: spans?.enqueued }).catch(spans?.failed);
 * spans?.answered(result);
 */
import { type Context, type Span, SpanKind } from '@opentelemetry/api';
import type { JobResult } from '../shared/protocol.ts';
import { contextWith, failSpan, type Tracing } from '../shared/tracing/index.ts';

export interface JobTrace {
  traceparent?: string;
  enqueued(entryId: string): void;
  answered(result: JobResult): void;
  /** Ends the open span as failed, and rethrows. */
  failed(error: unknown): never;
}

export function jobTrace(tracing: Tracing | undefined, parent: Context | undefined, jobId: string, bytes: number): JobTrace | undefined {
  if (!tracing || !parent) return undefined;
  const enqueue = tracing.tracer.startSpan(
    'enqueue',
    { kind: SpanKind.PRODUCER, attributes: { 'job.id': jobId, 'messaging.system': 'redis', 'messaging.message.body.size': bytes } },
    parent,
  );
  let wait: Span | undefined;
  // A failover's other attempt may still report its enqueue after the answer: nothing left to tell.
  let ended = false;
  const end = (span: Span) => {
    ended = true;
    span.end();
  };
  return {
    traceparent: tracing.traceparent(contextWith(parent, enqueue)),
    enqueued(entryId) {
      if (ended) return;
      if (wait) return void wait.addEvent('enqueued again', { 'messaging.message.id': entryId });
      enqueue.setAttribute('messaging.message.id', entryId);
      enqueue.end();
      wait = tracing.tracer.startSpan('wait', { attributes: { 'job.id': jobId } }, parent);
    },
    answered(result) {
      const span = wait ?? enqueue;
      span.setAttribute('worker', result.worker);
      if (result.ok) span.setAttributes({ 'batch.size': result.batchSize, 'queue.ms': result.queueMs, 'inference.ms': result.inferenceMs });
      else failSpan(span, Object.assign(new Error(result.error.message), { code: result.error.code }));
      end(span);
    },
    failed(error) {
      failSpan(wait ?? enqueue, error);
      end(wait ?? enqueue);
      throw error;
    },
  };
}
