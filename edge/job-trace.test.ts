import { ROOT_CONTEXT, SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { describe, expect, it } from 'vitest';
import { contextWith, startTracing } from '../shared/tracing/index.ts';
import { jobTrace } from './job-trace.ts';

async function traced() {
  const exporter = new InMemorySpanExporter();
  const tracing = await startTracing(
    { url: 'http://127.0.0.1:9/v1/traces', headers: {}, serviceName: 'edge-test', sampler: 'parentbased_always_on', ratio: 1 },
    { exporter },
  );
  const root = tracing.tracer.startSpan('POST /predict');
  const spans = async () => {
    await tracing.flush();
    return exporter.getFinishedSpans();
  };
  return { tracing, parent: contextWith(ROOT_CONTEXT, root), root, spans };
}

const ok = { ok: true as const, id: 'j', model: 'm', predictions: [], queueMs: 3, inferenceMs: 7, batchSize: 2, worker: 'w1' };

describe('jobTrace', () => {
  it('carries the enqueue span as the traceparent, then waits; a later enqueue is an event, one after the answer nothing', async () => {
    const { tracing, parent, root, spans } = await traced();
    const job = jobTrace(tracing, parent, 'j', 100)!;
    expect(job.traceparent).toMatch(new RegExp(`^00-${root.spanContext().traceId}-[\\da-f]{16}-01$`));
    job.enqueued('1-0');
    job.enqueued('2-0'); // enqueued again (ride-through)
    job.answered(ok);
    job.enqueued('3-0'); // a failover's late attempt
    const [enqueue, wait, ...rest] = await spans();
    expect(rest).toEqual([]);
    expect(enqueue).toMatchObject({ name: 'enqueue', kind: SpanKind.PRODUCER });
    expect(job.traceparent).toContain(enqueue!.spanContext().spanId);
    expect(enqueue!.attributes['messaging.message.id']).toBe('1-0');
    expect(wait!.name).toBe('wait');
    expect(wait!.parentSpanContext?.spanId).toBe(root.spanContext().spanId);
    expect(wait!.events.map((event) => event.attributes?.['messaging.message.id'])).toEqual(['2-0']);
    expect(wait!.attributes).toMatchObject({ worker: 'w1', 'batch.size': 2, 'queue.ms': 3, 'inference.ms': 7 });
  });

  it("fails the open span with the worker's error code, or with what the broker threw", async () => {
    const { tracing, parent, spans } = await traced();
    const answered = jobTrace(tracing, parent, 'a', 1)!;
    answered.enqueued('1-0');
    answered.answered({ ok: false, id: 'a', error: { code: 'inference_failed', message: 'NaN' }, worker: 'w1' });
    const refused = jobTrace(tracing, parent, 'b', 1)!;
    const full = Object.assign(new Error('the queue is full'), { code: 'queue_full' });
    expect(() => refused.failed(full)).toThrow(full);
    const [, wait, enqueue] = await spans();
    expect(wait).toMatchObject({ name: 'wait', status: { code: SpanStatusCode.ERROR, message: 'NaN' } });
    expect(wait!.attributes['error.type']).toBe('inference_failed');
    expect(enqueue).toMatchObject({ name: 'enqueue', status: { code: SpanStatusCode.ERROR } });
    expect(enqueue!.attributes['error.type']).toBe('queue_full');
  });

  it('is nothing without tracing or a parent', () => {
    expect(jobTrace(undefined, ROOT_CONTEXT, 'j', 1)).toBeUndefined();
  });
});
