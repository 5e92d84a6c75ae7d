import { ROOT_CONTEXT, SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { describe, expect, it } from 'vitest';
import { contextWith, startTracing } from '../shared/tracing/index.ts';
import { errorAnswer } from './completion.ts';
import type { Job } from './jobs.ts';
import { parseEntry } from './jobs.ts';
import { type BatchFacts, traceBatch } from './tracing.ts';

const job = (n: number, traceparent?: string): Job => ({
  kind: 'job',
  entryId: `1-${n}`,
  id: `job-${n}`,
  reply: 'r',
  tensor: new Uint8Array(0),
  format: 'raw',
  enqueuedAt: 1_000,
  deadline: 99_000,
  readAt: 1_010,
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
      startedAt: 1_020,
      inference: { startedAt: 1_025, endedAt: 1_060 },
      write: { startedAt: 1_060, endedAt: 1_062 },
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
    traceBatch(tracing, jobs, facts);
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
      expect(dequeue).toMatchObject({ kind: SpanKind.CONSUMER, startTime: [1, 10_000_000], endTime: [1, 20_000_000] });
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

    exporter.reset();
    traceBatch(tracing, [job(4)], facts);
    traceBatch(undefined, jobs, facts);
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
