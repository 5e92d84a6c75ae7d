import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { Hono } from 'hono';
import { requestId } from 'hono/request-id';
import { describe, expect, it } from 'vitest';
import { inSpan, startTracing } from '../../../shared/tracing/index.ts';
import { traceRequests, type TraceVariables } from './index.ts';

async function tracedApp() {
  const exporter = new InMemorySpanExporter();
  const tracing = await startTracing(
    { url: 'http://127.0.0.1:9/v1/traces', headers: {}, serviceName: 'edge-test', sampler: 'parentbased_always_on', ratio: 1 },
    { exporter },
  );
  const app = new Hono<{ Variables: TraceVariables }>();
  app.use(requestId());
  app.use('/predict', traceRequests(tracing));
  app.post('/predict', async (c) => {
    await inSpan(tracing, c.var.trace, 'decode', async () => undefined);
    if (c.req.query('fail')) throw new Error('broken');
    return c.json({ success: true });
  });
  app.onError((_error, c) => c.json({ success: false }, 500));
  const spans = async () => {
    await tracing.flush();
    return exporter.getFinishedSpans();
  };
  return { app, spans };
}

describe('traceRequests', () => {
  it("makes the request's server span, the parent of the handler's spans, with its request id", async () => {
    const { app, spans } = await tracedApp();
    const response = await app.request('/predict', { method: 'POST' });
    const [decode, root] = await spans();
    expect(root).toMatchObject({ name: 'POST /predict', kind: SpanKind.SERVER });
    expect(root!.attributes).toMatchObject({ 'http.response.status_code': 200, 'request.id': response.headers.get('x-request-id') });
    expect(root!.parentSpanContext).toBeUndefined();
    expect(decode!.parentSpanContext?.spanId).toBe(root!.spanContext().spanId);
  });

  it("continues a caller's trace, and marks a 500 failed with what was thrown", async () => {
    const { app, spans } = await tracedApp();
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const traceparent = `00-${traceId}-00f067aa0ba902b7-01`;
    expect((await app.request('/predict?fail=1', { method: 'POST', headers: { traceparent } })).status).toBe(500);
    const [, root] = await spans();
    expect(root!.spanContext().traceId).toBe(traceId);
    expect(root!.parentSpanContext?.spanId).toBe('00f067aa0ba902b7');
    expect(root!.status).toEqual({ code: SpanStatusCode.ERROR, message: 'broken' });
  });

  it('traces only the routes it is given', async () => {
    const { app, spans } = await tracedApp();
    app.get('/healthz', (c) => c.json({ ok: true }));
    await app.request('/healthz');
    expect(await spans()).toEqual([]);
  });
});
