/**
 * Reports each request's outcome to the runtime's metrics (the Node edge counts them with
 * prom-client: ../../node/metrics.ts): its route (from a fixed set, so a scanner's paths add no
 * series), status, the API error code of an error answer (read from its JSON error body), and
 * its duration. A batch answer's per-image errors sit inside a 200 and count as `ok`.
 *
 * @example
 * app.use(requestMetrics((outcome) => counter.inc({ route: outcome.route, status: outcome.status, code: outcome.code })));
 */
import type { MiddlewareHandler } from 'hono';
import { EDGE_PROBES } from '../../health.ts';

export interface RequestOutcome {
  /** One of ROUTES, or `other`. */
  route: string;
  status: number;
  /** `ok` below 400; else the error body's `error.code` (`none` when the body has none). */
  code: string;
  seconds: number;
}

export const ROUTES = ['/predict', '/', EDGE_PROBES.live, EDGE_PROBES.ready, '/v1/models', '/openapi.json'] as const;

export function requestMetrics(observe: (outcome: RequestOutcome) => void): MiddlewareHandler {
  return async (c, next) => {
    const started = performance.now();
    await next();
    const { status } = c.res;
    let code = 'ok';
    if (status >= 400) {
      const body = (await c.res
        .clone()
        .json()
        .catch(() => undefined)) as { error?: { code?: unknown } } | undefined;
      code = typeof body?.error?.code === 'string' ? body.error.code : 'none';
    }
    const route = (ROUTES as readonly string[]).includes(c.req.path) ? c.req.path : 'other';
    observe({ route, status, code, seconds: (performance.now() - started) / 1000 });
  };
}
