/**
 * Prometheus metrics of one worker process (prom-client), served as text on
 * `http://<METRICS_HOST>:<METRICS_PORT>/metrics`, beside the worker's health (`/livez`, `/readyz`:
 * health.ts). Each WorkerMetrics has its own registry, so several in-process workers (tests) do
 * not collide.
 *
 * With INFERENCE_PROCESSES=N the supervisor serves nothing: child i (1..N) listens on
 * METRICS_PORT+i, each with its own `consumer` label (Prometheus scrapes N targets; summing them
 * in PromQL is exact, while the backlog gauges are the same queue seen N times: use max()).
 *
 * @example
 * const metrics = new WorkerMetrics({ defaultMetrics: true });
 * const worker = startWorker(config, { metrics });
 * const server = await serveWorkerMetrics(metrics, { port: 9464, host: '0.0.0.0', log, health: worker.health });
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Logger } from '../shared/log.ts';
import { type MetricsServer, serveMetrics } from '../shared/metrics-server.ts';
import { WORKER_PROBES, type WorkerHealth } from './health.ts';
import { withTimeout } from '../shared/timeout.ts';

export const METRIC_PREFIX = 'resnet_worker_';

/**
 * How a job read by this worker ended (the `outcome` label of resnet_worker_jobs_total):
 * ok: answered with predictions; invalid: answered bad_request (malformed job); deadlettered:
 * answered inference_failed and copied to the dead-letter stream (inference threw on it alone, or
 * it kept killing workers); expired: past its deadline when read, acked unanswered; dropped: not
 * even answerable (no id or reply channel); duplicate: computed, but another worker had answered
 * first (the completion's XACK returned 0); write_failed: its write failed after retries, so it stays pending
 * and is reclaimed (counted again) later.
 */
export const JOB_OUTCOMES = ['ok', 'invalid', 'deadlettered', 'expired', 'dropped', 'duplicate', 'write_failed'] as const;
export type JobOutcome = (typeof JOB_OUTCOMES)[number];

export interface Backlog {
  /** XLEN: queued + in flight (workers delete entries once answered). */
  length: number;
  /** XPENDING summary count: delivered to a worker, not yet acked. */
  pending: number;
}

const SCRAPE_TIMEOUT_MS = 1_000;

export class WorkerMetrics {
  readonly registry = new Registry();
  readonly jobs: Counter<'outcome'>;
  readonly batches: Histogram;
  readonly queueWait: Histogram;
  readonly inference: Histogram;
  readonly heartbeatFailures: Counter;
  private readonly info: Gauge<'engine' | 'provider' | 'threads' | 'model' | 'batch_size' | 'consumer'>;
  private backlogSources = new Map<string, () => Promise<Backlog>>();

  constructor(options: { defaultMetrics?: boolean; log?: Logger } = {}) {
    const registers = [this.registry];
    if (options.defaultMetrics) collectDefaultMetrics({ register: this.registry });
    this.jobs = new Counter({
      name: `${METRIC_PREFIX}jobs_total`,
      help: 'Jobs read from the queue, by how they ended',
      labelNames: ['outcome'],
      registers,
    });
    // Every outcome from 0, so that rate() and alerts see the series before the first such job.
    for (const outcome of JOB_OUTCOMES) this.jobs.inc({ outcome }, 0);
    this.batches = new Histogram({
      name: `${METRIC_PREFIX}batch_size`,
      help: 'Entries per batch read from the queue',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
      registers,
    });
    this.queueWait = new Histogram({
      name: `${METRIC_PREFIX}queue_wait_seconds`,
      help: 'From enqueue (edge clock) to pickup by this worker, per job run',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.inference = new Histogram({
      name: `${METRIC_PREFIX}inference_seconds`,
      help: 'Inference time per batch (all its runs, when it was retried job by job)',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.heartbeatFailures = new Counter({
      name: `${METRIC_PREFIX}heartbeat_failures_total`,
      help: 'Heartbeats that could not be written to Redis',
      registers,
    });
    this.info = new Gauge({
      name: `${METRIC_PREFIX}info`,
      help: 'What this worker runs (always 1)',
      labelNames: ['engine', 'provider', 'threads', 'model', 'batch_size', 'consumer'],
      registers,
    });
    // Read on scrape, not on a timer: no Redis commands while nobody looks. One series per shard.
    let last: Promise<Map<string, Backlog>> | undefined;
    const read = () => (last ??= this.readBacklogs(options.log).finally(() => setTimeout(() => (last = undefined), 0)));
    new Gauge({
      name: `${METRIC_PREFIX}queue_length`,
      help: 'Jobs in the stream of each shard (XLEN: queued + in flight), read at scrape time',
      labelNames: ['shard'],
      registers,
      async collect() {
        for (const [shard, backlog] of await read()) this.set({ shard }, backlog.length);
      },
    });
    new Gauge({
      name: `${METRIC_PREFIX}queue_pending`,
      help: "Jobs delivered to a worker and not yet acked, per shard (the group's XPENDING count), read at scrape time",
      labelNames: ['shard'],
      registers,
      async collect() {
        for (const [shard, backlog] of await read()) this.set({ shard }, backlog.pending);
      },
    });
  }

  /** Set once the worker is ready. */
  setInfo(labels: { engine: string; provider: string; threads: number; model: string; batchSize: number; consumer: string }): void {
    this.info.reset();
    const { engine, provider, model, consumer } = labels;
    this.info.set({ engine, provider, threads: String(labels.threads), model, batch_size: String(labels.batchSize), consumer }, 1);
  }

  /** Where the backlog gauges read from: each shard's Redis connection, by shard name. */
  setBacklogSources(sources: Map<string, () => Promise<Backlog>>): void {
    this.backlogSources = sources;
  }

  /** Every shard's backlog that could be read (a shard that cannot keeps its gauges' last value; the scrape still succeeds). */
  private async readBacklogs(log?: Logger): Promise<Map<string, Backlog>> {
    const read = await Promise.all(
      [...this.backlogSources].map(async ([shard, source]) => {
        try {
          return [shard, await withTimeout(source(), SCRAPE_TIMEOUT_MS, `no answer from Redis within ${SCRAPE_TIMEOUT_MS} ms`)] as const;
        } catch (error) {
          log?.warn({ err: error, shard }, 'could not read the backlog for /metrics');
          return undefined;
        }
      }),
    );
    return new Map(read.filter((entry) => entry !== undefined));
  }
}

/**
 * Serve GET /metrics, and with `health` GET /livez and GET /readyz (200 or 503, the health as
 * JSON: health.ts), on the worker's metrics port.
 */
export function serveWorkerMetrics(
  metrics: WorkerMetrics,
  options: { port: number; host: string; log: Logger; health?: () => WorkerHealth },
): Promise<MetricsServer | undefined> {
  const { health } = options;
  const probe = (ready: boolean) => () => {
    const now = health!();
    return { status: (ready ? now.ready : now.live) ? 200 : 503, body: now };
  };
  return serveMetrics(metrics.registry, {
    ...options,
    routes: health && { [WORKER_PROBES.live]: probe(false), [WORKER_PROBES.ready]: probe(true) },
  });
}
