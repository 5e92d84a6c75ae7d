import { ROOT_CONTEXT, SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { describe, expect, it } from 'vitest';
import { contextWith, startTracing } from '../shared/tracing/index.ts';
import { errorAnswer } from './completion.ts';
import type { Job } from './jobs.ts';
import { parseEntry } from './jobs.ts';
import { type BatchFacts, traceBatch } from './tracing.ts';

/** Epoch ms, as the worker's clock gives them (a small number would be read as a performance.now() time). */
const T0 = 1_796_000_000_000;
const hrTime = (ms: number) => [Math.floor(ms / 1000), (ms % 1000) * 1_000_000];

const job = (n: number, traceparent?: string): Job => ({
  kind: 'job',
  entryId: `1-${n}`,
  id: `job-${n}`,
  reply: 'r',
  tensor: new Uint8Array(0),
  format: 'raw',
  enqueuedAt: T0,
  deadline: T0 + 30_000,
  readAt: T0 + 10,
  ...(traceparent && { traceparent }),
});

describe('traceBatch', () => {
  it("gives each traced job its copy of the batch's spans, under the edge's enqueue span; untraced jobs none", async () => {
    const exporter = new InMemorySpanExporter();
    const tracing = await startTracing(
      { url: 'http://127.0.0.1:9/v1/traces', headers: {}, serviceName: 'worker-test', sampler: 'parentbased_always_on', ratio: 1 },
      { exporter },
    );
    const enqueues = [1, 2].map((n) => tracing.tracer.startSpan(`enqueue-${n}`, { kind: SpanKind.PRODUCER }));
    const jobs = [
      job(1, tracing.traceparent(contextWith(ROOT_CONTEXT, enqueues[0]!))),
      job(2),
      job(3, tracing.traceparent(contextWith(ROOT_CONTEXT, enqueues[1]!))),
    ];
    const facts: BatchFacts = {
      startedAt: T0 + 20,
      inference: { startedAt: T0 + 25, endedAt: T0 + 60 },
      write: { startedAt: T0 + 60, endedAt: T0 + 62 },
      answers: [errorAnswer(jobs[2]!, 'w1', 'inference_failed', 'NaN out')],
      written: new Map([
        ['1-1', 'answered'],
        ['1-3', 'answered'],
      ]),
      size: 3,
      consumer: 'w1',
      stream: 'rn:jobs',
      group: 'workers',
    };
    traceBatch(tracing, { live: jobs, expired: [] }, facts);
    await tracing.flush();
    const spans = exporter.getFinishedSpans();
    expect(spans.map((span) => span.name)).toEqual(['dequeue', 'inference', 'write', 'batch', 'dequeue', 'inference', 'write', 'batch']);
    for (const [i, enqueue] of enqueues.entries()) {
      const [dequeue, inference, write, batch] = spans.slice(4 * i, 4 * i + 4);
      const traceId = enqueue.spanContext().traceId;
      expect([dequeue, inference, write, batch].every((span) => span!.spanContext().traceId === traceId)).toBe(true);
      expect(dequeue!.parentSpanContext?.spanId).toBe(enqueue.spanContext().spanId);
      expect(batch!.parentSpanContext?.spanId).toBe(enqueue.spanContext().spanId);
      expect(inference!.parentSpanContext?.spanId).toBe(batch!.spanContext().spanId);
      expect(write!.parentSpanContext?.spanId).toBe(batch!.spanContext().spanId);
      expect(dequeue).toMatchObject({ kind: SpanKind.CONSUMER, startTime: hrTime(T0 + 10), endTime: hrTime(T0 + 20) });
      expect(dequeue!.attributes).toMatchObject({
        'queue.ms': 10,
        'messaging.destination.name': 'rn:jobs',
        'messaging.consumer.group.name': 'workers',
      });
      expect(batch!.attributes).toMatchObject({ 'batch.size': 3, worker: 'w1' });
    }
    expect(spans[3]!.status.code).toBe(SpanStatusCode.UNSET);
    expect(spans[7]!.status).toEqual({ code: SpanStatusCode.ERROR, message: 'NaN out' });
    expect(spans[7]!.attributes['error.type']).toBe('inference_failed');

    // A job read past its deadline: its dequeue only, failed.
    exporter.reset();
    const late = tracing.tracer.startSpan('enqueue-late', { kind: SpanKind.PRODUCER });
    traceBatch(tracing, { live: [], expired: [job(5, tracing.traceparent(contextWith(ROOT_CONTEXT, late)))] }, facts);
    await tracing.flush();
    const [expired, ...others] = exporter.getFinishedSpans();
    expect(others).toEqual([]);
    expect(expired).toMatchObject({ name: 'dequeue', status: { code: SpanStatusCode.ERROR } });
    expect(expired!.attributes['error.type']).toBe('deadline_exceeded');
    expect(expired!.parentSpanContext?.spanId).toBe(late.spanContext().spanId);

    exporter.reset();
    traceBatch(tracing, { live: [job(4)], expired: [job(6)] }, facts);
    traceBatch(undefined, { live: jobs, expired: [] }, facts);
    await tracing.flush();
    expect(exporter.getFinishedSpans()).toEqual([]);
    await tracing.shutdown();
  });

  it("reads a job's traceparent field, and ignores a malformed one (a trace never fails a job)", () => {
    const traceparent = `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`;
    const entry = (value: string) => ({
      entryId: '1-1',
      readAt: 1,
      fields: [
        'id',
        'j',
        'reply',
        'r',
        'enqueuedAt',
        '1',
        'deadline',
        '2',
        'enc',
        'raw',
        'tensor',
        'x',
        'format',
        'jpeg',
        'traceparent',
        value,
      ].map((v) => Buffer.from(v)),
    });
    expect(parseEntry(entry(traceparent))).toMatchObject({ kind: 'job', traceparent });
    const malformed = parseEntry(entry('00-not-a-trace'));
    expect(malformed.kind).toBe('job');
    expect(malformed).not.toHaveProperty('traceparent');
  });
});
