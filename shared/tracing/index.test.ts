import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { describe, expect, it } from 'vitest';
import { contextWith, inSpan, isTraceparent, startTracing, type TracingSettings } from './index.ts';

const settings = (sampler: TracingSettings['sampler'] = 'parentbased_always_on'): TracingSettings => ({
  url: 'http://127.0.0.1:9/v1/traces',
  headers: {},
  serviceName: 'resnet-test',
  sampler,
  ratio: 1,
});

describe('tracing (shared/tracing)', () => {
  it('carries a span to another process as a traceparent, which continues its trace', async () => {
    const exporter = new InMemorySpanExporter();
    const tracing = await startTracing(settings(), { exporter });
    const producer = tracing.tracer.startSpan('enqueue', { kind: SpanKind.PRODUCER });
    const traceparent = tracing.traceparent(contextWith(ROOT_CONTEXT, producer));
    expect(isTraceparent(traceparent)).toBe(true);
    expect(traceparent).toBe(`00-${producer.spanContext().traceId}-${producer.spanContext().spanId}-01`);
    producer.end();

    const consumer = tracing.tracer.startSpan('dequeue', {}, tracing.parent(traceparent));
    consumer.end();
    await tracing.flush();
    const [first, second] = exporter.getFinishedSpans();
    expect(second!.spanContext().traceId).toBe(first!.spanContext().traceId);
    expect(second!.parentSpanContext?.spanId).toBe(first!.spanContext().spanId);
    expect(second!.resource.attributes['service.name']).toBe('resnet-test');
    await tracing.shutdown();
  });

  it('starts a new trace from a malformed traceparent, and gives none for a span not sampled', async () => {
    const tracing = await startTracing(settings('always_off'), { exporter: new InMemorySpanExporter() });
    expect(trace.getSpanContext(tracing.parent('00-zz-1'))).toBeUndefined();
    expect(isTraceparent(`00-${'a'.repeat(32)}-${'b'.repeat(16)}-01 `)).toBe(false);
    const span = tracing.tracer.startSpan('unsampled');
    expect(tracing.traceparent(contextWith(ROOT_CONTEXT, span))).toBeUndefined();
    await tracing.shutdown();
  });

  it('inSpan ends the span, marks it failed by a thrown error, and without tracing only runs the work', async () => {
    const exporter = new InMemorySpanExporter();
    const tracing = await startTracing(settings(), { exporter });
    const parent = contextWith(ROOT_CONTEXT, tracing.tracer.startSpan('root'));
    await expect(inSpan(tracing, parent, 'ok', async () => 7)).resolves.toBe(7);
    const failure = Object.assign(new Error('full'), { code: 'queue_full' });
    await expect(
      inSpan(tracing, parent, 'fails', async () => {
        throw failure;
      }),
    ).rejects.toBe(failure);
    await expect(inSpan(undefined, undefined, 'untraced', async () => 'ran')).resolves.toBe('ran');
    await tracing.flush();
    const spans = exporter.getFinishedSpans();
    expect(spans.map((span) => span.name)).toEqual(['ok', 'fails']);
    expect(spans[1]!.status).toEqual({ code: SpanStatusCode.ERROR, message: 'full' });
    expect(spans[1]!.attributes['error.type']).toBe('queue_full');
    await tracing.shutdown();
  });
});
