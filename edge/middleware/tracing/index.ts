/**
 * The root span of a request's trace (kind server, `POST /predict`), continuing the caller's trace
 * when it sends a W3C `traceparent` header. Handlers read the span's context from `c.var.trace` to
 * hang their own spans under it (../../app.ts); the request id is an attribute, so a trace and the
 * request's log lines find each other.
 *
 * @example
 * app.use('/predict', traceRequests(tracing));
 * app.post('/predict', (c) => inSpan(tracing, c.var.trace, 'decode', () => decode(bytes)));
 */
import type { Context } from '@opentelemetry/api';
import { SpanKind } from '@opentelemetry/api';
import type { MiddlewareHandler } from 'hono';
import { contextWith, failSpan, TRACEPARENT, type Tracing } from '../../../shared/tracing/index.ts';

export interface TraceVariables {
  /** The request's span, as the parent context of the handler's spans. */
  trace?: Context;
  requestId?: string;
}

export function traceRequests(tracing: Tracing): MiddlewareHandler<{ Variables: TraceVariables }> {
  return async (c, next) => {
    const parent = tracing.parent(c.req.header(TRACEPARENT));
    const route = c.req.routePath;
    const span = tracing.tracer.startSpan(
      `${c.req.method} ${route}`,
      { kind: SpanKind.SERVER, attributes: { 'http.request.method': c.req.method, 'http.route': route } },
      parent,
    );
    c.set('trace', contextWith(parent, span));
    try {
      await next();
    } finally {
      const id = c.get('requestId');
      if (id) span.setAttribute('request.id', id);
      span.setAttribute('http.response.status_code', c.res.status);
      // Hono's onError has answered a thrown error by now; c.error is what was thrown.
      if (c.res.status >= 500) failSpan(span, c.error ?? new Error(`HTTP ${c.res.status}`));
      span.end();
    }
  };
}
