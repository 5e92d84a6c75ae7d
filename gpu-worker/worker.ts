/**
 * The worker: a loop that reads a batch of jobs from the Redis Stream and hands it to named pieces:
 * triage.ts sorts the entries, inference.ts runs the live ones (isolating a failing image),
 * completion.ts writes every answer once, batch-report.ts records what happened. Between reads,
 * reclaimer.ts takes over the jobs of workers that died, and heartbeat.ts tells the edges (and the
 * other workers) that this one is alive and how fast it goes.
 *
 * It holds two Redis connections (connections.ts). A job stays in the group's pending list until
 * it is answered.
 *
 * @example
 * const worker = startWorker(parseWorkerConfig(process.env), { logger });
 * await worker.ready;   // model loaded + warmed up, consumer group joined
 * await worker.stop();  // finishes the batch in hand, then closes its connections
 */
import { hostname } from 'node:os';
import { setTimeout } from 'node:timers/promises';
import { ConfigError } from '../shared/config.ts';
import { redisKeys } from '../shared/keys.ts';
import { createLogger, type Logger } from '../shared/log.ts';
import { probeRedis } from '../shared/redis-connection.ts';
import { batchRunner } from './batch.ts';
import { type BatchReport, emptyStats, type WorkerStats } from './batch-report.ts';
import { readBatch } from './batcher.ts';
import { defaultBatchSize, type WorkerConfig } from './config.ts';
import { type Connections, ensureGroup, openConnections, readBacklog } from './connections.ts';
import { PRUNE_EVERY_MS, pruneConsumers } from './consumers.ts';
import type { ImageClassifier } from './engine/image-classifier.ts';
import { type Heartbeat, staleAfterMs, startHeartbeat } from './heartbeat.ts';
import type { StreamEntry } from './jobs.ts';
import type { WorkerMetrics } from './metrics.ts';
import type { DownloadProgress } from './model/fetch.ts';
import { Reclaimer } from './reclaimer.ts';
import { Throughput } from './throughput.ts';

export type { BatchReport, WorkerStats } from './batch-report.ts';

/** One read blocks this long at most, so stop() takes effect within about a second. */
const BLOCK_MS = 1000;
/** Longest wait between retries of a failed read: service resumes soon after Redis is back. */
const MAX_BACKOFF_MS = 2000;

export interface WorkerOptions {
  logger?: Logger;
  /** A loaded classifier to use (the caller keeps ownership): skips engine choice and model loading. */
  classifier?: ImageClassifier;
  /** Called after each batch has been answered. */
  onBatch?: (report: BatchReport) => void;
  /** Progress of the builtin model's first download. */
  onDownloadProgress?: (progress: DownloadProgress) => void;
  /** Prometheus metrics to update (the caller serves them; see metrics.ts). */
  metrics?: WorkerMetrics;
  /** Idle time after which a consumer with nothing pending and no heartbeat is removed (consumers.ts); tests shorten it. */
  consumerGoneAfterMs?: number;
}

export interface WorkerHandle {
  consumer: string;
  /** Resolves once the model is warm and the consumer group is joined; rejects if startup fails. */
  ready: Promise<void>;
  /** Settles when the loop has ended and the connections are closed. */
  done: Promise<void>;
  /** Finish the batch in hand, stop reading, close the connections. Idempotent. */
  stop(): Promise<void>;
  stats(): WorkerStats;
}

export function startWorker(config: WorkerConfig, options: WorkerOptions = {}): WorkerHandle {
  const log = options.logger ?? createLogger('gpu-worker');
  const keys = redisKeys(config.keyPrefix);
  const consumer = config.consumerName;
  const metrics = options.metrics;
  const startedAt = Date.now();
  const stats = emptyStats();
  let heartbeat: Heartbeat | undefined;
  let pruneTimer: ReturnType<typeof setInterval> | undefined;
  /** Aborted by stop(): ends the loop and cuts every wait short. */
  const stopped = new AbortController();
  const isStopping = () => stopped.signal.aborted;
  let batchSize = 1; // set once the engine is known
  let throughput = new Throughput(batchSize);
  let connections: Connections | undefined;
  let markReady!: () => void;
  const ready = new Promise<void>((resolve) => (markReady = resolve));

  const sleep = (ms: number) => setTimeout(ms, undefined, { signal: stopped.signal }).catch(() => {});

  /** Forget gone workers' consumers (consumers.ts); housekeeping, so a failure only logs. */
  const prune = () =>
    void pruneConsumers(connections!.writer, keys, options.consumerGoneAfterMs).then(
      (removed) => removed.length > 0 && log.info({ removed }, 'removed the consumers of workers that are gone'),
      (error: unknown) => log.warn({ err: error }, 'could not prune gone consumers'),
    );

  async function start(): Promise<ImageClassifier | undefined> {
    // Before the model (minutes, the first time): a certificate or password that cannot work stops
    // the start with the reason; a Redis not up yet only warns, the connections keep trying.
    const probe = await probeRedis(config);
    if ('fatal' in probe) throw new ConfigError(`REDIS_URL: ${probe.fatal}`);
    if ('error' in probe) log.warn({ err: probe.error }, 'Redis is not reachable yet; retrying in the background');
    let classifier = options.classifier;
    if (!classifier) {
      // Imported here: a worker with a synthetic model loads no engine.
      const { loadClassifier } = await import('./engine/index.ts');
      classifier = await loadClassifier(config, { log, onDownloadProgress: options.onDownloadProgress });
    }
    if (isStopping()) return classifier;
    connections = await openConnections(config, log);
    await ensureGroup(connections.writer, keys, log, stopped.signal);
    return classifier;
  }

  async function loop(classifier: ImageClassifier, reclaim: Reclaimer, processSafely: ReturnType<typeof batchRunner>): Promise<void> {
    let backoff = 100;
    let previousBatchSize = 0; // feeds the batcher's fill rule
    /** Run one step; on a Redis error wait (or recreate the group) and return false. */
    const step = async (what: string, action: () => Promise<void>): Promise<boolean> => {
      try {
        await action();
        backoff = 100;
        return true;
      } catch (error) {
        log.warn({ err: error, retryMs: backoff }, what);
        // The stream or group was deleted (a Redis restarted empty): create it again.
        if ((error as Error).message.includes('NOGROUP')) await ensureGroup(connections!.writer, keys, log, stopped.signal);
        else await sleep(backoff);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
        return false;
      }
    };
    while (!isStopping()) {
      if (reclaim.hasDead) {
        if (!(await step('taking over the jobs of a dead worker failed', () => reclaim.takeOverDead()))) continue;
        if (isStopping()) break;
      }
      if (reclaim.msUntilPass() === 0) {
        if (!(await step('reclaiming jobs failed', () => reclaim.reclaimIdle()))) continue;
        if (isStopping()) break;
      }
      let entries: StreamEntry[] = [];
      const read = async () => {
        // Block no longer than until the next reclaim pass is due (0: don't block at all).
        entries = await readBatch(connections!.reader, {
          stream: keys.stream,
          group: keys.group,
          consumer,
          batchSize,
          maxDelayMs: config.maxBatchDelayMs,
          blockMs: Math.min(BLOCK_MS, reclaim.msUntilPass()),
          previousBatchSize,
        });
      };
      // Entries read are run even when stop() came meanwhile: they are delivered to this worker.
      if (!(await step('reading jobs failed', read)) || entries.length === 0) continue; // an idle timeout says nothing about traffic
      previousBatchSize = entries.length;
      const started = performance.now();
      await processSafely(classifier, entries);
      throughput.record(entries.length, performance.now() - started);
    }
  }

  /** One image and one full batch: engines prepare per input shape (ONNX Runtime's memory plan, TensorRT's engine, GPU kernels). */
  async function warmUp(classifier: ImageClassifier): Promise<void> {
    const oneMs = await classifier.warmUp(1);
    const batchMs = batchSize > 1 ? await classifier.warmUp(batchSize) : oneMs;
    throughput.warmedUp(batchMs);
    // A synthetic model has nothing to warm up: it only tells its batch time.
    if (classifier.engine.name !== 'synthetic') {
      log.info({ warmUpMs: Math.round(oneMs), ...(batchSize > 1 && { batchWarmUpMs: Math.round(batchMs), batchSize }) }, 'model warmed up');
    }
    if (2 * batchMs > config.claimIdleMs) {
      log.warn(
        { batchWarmUpMs: Math.round(batchMs), claimIdleMs: config.claimIdleMs },
        'a batch takes more than half of CLAIM_IDLE_MS: other workers may take over jobs this one is still computing (answered once, computed twice); raise CLAIM_IDLE_MS or lower BATCH_SIZE',
      );
    }
  }

  function beat(classifier: ImageClassifier, reclaim: Reclaimer): Heartbeat {
    const { engine } = classifier;
    return startHeartbeat({
      redis: connections!.writer,
      keys,
      intervalMs: config.heartbeatMs,
      log,
      info: {
        id: consumer,
        engine: engine.name,
        provider: engine.provider,
        threads: engine.threads,
        backend: engine.provider,
        model: classifier.name,
        labels: classifier.labels.length,
        batchSize,
        pid: process.pid,
        host: hostname(),
        startedAt,
      },
      load: () => throughput.load(),
      onBeat: (ok) => void (ok || metrics?.heartbeatFailures.inc()),
      onDead: (dead) => reclaim.markDead(dead),
    });
  }

  const done = (async () => {
    let classifier: ImageClassifier | undefined;
    try {
      classifier = await start();
      if (isStopping() || !classifier) return;
      const { engine } = classifier;
      batchSize = config.batchSize ?? defaultBatchSize(engine);
      throughput = new Throughput(batchSize);
      if (!options.classifier) await warmUp(classifier);
      const run = classifier;
      const processSafely = batchRunner({
        config,
        consumer,
        keys,
        redis: connections!.writer,
        log,
        stats,
        metrics,
        onBatch: options.onBatch,
      });
      const reclaimer = new Reclaimer({
        redis: connections!.reader,
        keys,
        consumer,
        claimIdleMs: config.claimIdleMs,
        deadIdleMs: staleAfterMs(config.heartbeatMs),
        batchSize,
        runAlone: (entry, deliveries) => processSafely(run, [entry], { deliveries }),
        stopping: isStopping,
        log,
      });
      metrics?.setInfo({
        engine: engine.name,
        provider: engine.provider,
        threads: engine.threads,
        model: classifier.name,
        batchSize,
        consumer,
      });
      metrics?.setBacklogSource(() => readBacklog(connections!.writer, keys));
      // Beat before saying ready (the log line and markReady), so an edge's /readyz already sees this worker.
      heartbeat = beat(classifier, reclaimer);
      await heartbeat.first;
      log.info(
        {
          consumer,
          model: classifier.name,
          ...(engine.name === 'synthetic' && { synthetic: true }),
          stream: keys.stream,
          engine: engine.name,
          provider: engine.provider,
          threads: engine.threads,
          batchSize,
          maxBatchDelayMs: config.maxBatchDelayMs,
          claimIdleMs: config.claimIdleMs,
          maxDeliveries: config.maxDeliveries,
          heartbeatMs: config.heartbeatMs,
        },
        'worker ready',
      );
      if (config.inferenceDelayMs > 0) {
        log.warn({ inferenceDelayMs: config.inferenceDelayMs }, 'INFERENCE_DELAY_MS slows every batch down: for tests and benchmarks only');
      }
      markReady();
      prune();
      pruneTimer = setInterval(prune, PRUNE_EVERY_MS);
      pruneTimer.unref();
      await loop(classifier, reclaimer, processSafely);
    } finally {
      clearInterval(pruneTimer);
      metrics?.setBacklogSource(undefined);
      await heartbeat?.stop();
      await connections?.close();
      if (classifier && !options.classifier) classifier.dispose();
      log.info({ consumer, ...stats }, 'worker stopped');
    }
  })();
  // ready rejects with the startup error; neither promise may become an unhandled rejection.
  const readyOrFailed = Promise.race([
    ready,
    done.then(() => {
      throw new Error('the worker stopped before it was ready');
    }),
  ]);
  readyOrFailed.catch(() => {});
  done.catch(() => {});

  return {
    consumer,
    ready: readyOrFailed,
    done,
    stats: () => ({ ...stats }),
    async stop() {
      stopped.abort();
      // Wake a blocked XREADGROUP now rather than after its BLOCK timeout: it returns nothing, so
      // no entry is delivered to a worker that is leaving.
      await connections?.unblockReader();
      await done.catch(() => {});
    },
  };
}
