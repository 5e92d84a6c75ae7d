/**
 * The Node edge's Prometheus metrics (prom-client), served on EDGE_METRICS_PORT apart from the
 * API's port: every request's outcome (../middleware/request-metrics) and the process's default
 * metrics. Cloudflare Workers have no scrape endpoint: there, Workers Analytics counts requests.
 *
 * @example
 * const metrics = new EdgeMetrics();
 * createApp({ ...deps, observe: metrics.observe });
 * await serveMetrics(metrics.registry, { port: 9465, host: '0.0.0.0', log });
 */
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';
import type { RequestOutcome } from '../middleware/request-metrics/index.ts';

export const EDGE_METRIC_PREFIX = 'resnet_edge_';

export class EdgeMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'route' | 'status' | 'code'>;
  private readonly duration: Histogram<'route'>;

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({
      name: `${EDGE_METRIC_PREFIX}requests_total`,
      help: 'Requests answered, by route, HTTP status and API error code (ok below 400)',
      labelNames: ['route', 'status', 'code'],
      registers: [this.registry],
    });
    this.duration = new Histogram({
      name: `${EDGE_METRIC_PREFIX}request_duration_seconds`,
      help: 'Time from receiving a request to its answer, by route',
      labelNames: ['route'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [this.registry],
    });
  }

  readonly observe = ({ route, status, code, seconds }: RequestOutcome): void => {
    this.requests.inc({ route, status: String(status), code });
    this.duration.observe({ route }, seconds);
  };
}
