/**
 * The worker: a loop that reads a batch of jobs from the Redis Stream and hands it to named pieces:
 * triage.ts sorts the entries, inference.ts runs the live ones (isolating a failing image),
 * completion.ts writes every answer once, batch-report.ts records what happened. Between reads,
 * reclaimer.ts takes over the jobs of workers that died, and heartbeat.ts tells the edges (and the
 * other workers) that this one is alive and how fast it goes.
 *
 * Two Redis connections: `reader` sits in blocking XREADGROUP calls, `writer` sends answers, so a
 * blocked read never delays an answer. A job stays in the group's pending list until answered.
 *
 * @example
 * const worker = startWorker(parseWorkerConfig(process.env), { logger });
 * await worker.ready;   // model loaded + warmed up, consumer group joined
 * await worker.stop();  // finishes the batch in hand, then closes its connections
 */
import { hostname } from 'node:os';
import { Redis } from 'ioredis';
import { ConfigError } from '../shared/config.ts';
import { redisKeys } from '../shared/keys.ts';
import { createLogger, type Logger } from '../shared/log.ts';
import { fatalRedisError, probeRedis, redisConnectionOptions } from '../shared/redis-connection.ts';
import { batchRunner } from './batch.ts';
import { type BatchReport, emptyStats, type WorkerStats } from './batch-report.ts';
import { readBatch } from './batcher.ts';
import { defaultBatchSize, type WorkerConfig } from './config.ts';
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
  let stopping = false;
  let batchSize = 1; // set once the engine is known
  let throughput = new Throughput(batchSize);
  let reclaimer: Reclaimer | undefined;
  let wakeSleep: (() => void) | undefined;
  let reader: Redis | undefined;
  let writer: Redis | undefined;
  /** CLIENT ID of the reader connection, to cut its blocking read short on stop(). */
  let readerId: number | undefined;
  let markReady!: () => void;
  const ready = new Promise<void>((resolve) => (markReady = resolve));

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      wakeSleep = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  /** Forget gone workers' consumers (consumers.ts); housekeeping, so a failure only logs. */
  const prune = () =>
    void pruneConsumers(writer!, keys, options.consumerGoneAfterMs).then(
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
    if (stopping) return classifier;

    const connect = (role: string) => {
      const redis = new Redis(config.redisUrl, { ...redisConnectionOptions(config), connectionName: `gpu-worker:${consumer}:${role}` });
      let lastLogged = 0;
      redis.on('error', (error: Error) => {
        // ioredis reconnects by itself; say so once in a while, not on every retry.
        if (Date.now() - lastLogged > 5000)
          log.warn({ role, err: error, ...(fatalRedisError(error) && { reason: fatalRedisError(error) }) }, 'redis connection error');
        lastLogged = Date.now();
      });
      return redis;
    };
    reader = connect('reader');
    writer = connect('writer');
    await ensureGroup();
    const learnReaderId = () =>
      reader!.client('ID').then(
        (id) => void (readerId = id),
        () => undefined,
      );
    reader.on('ready', () => void learnReaderId()); // a reconnect gets a new id
    await learnReaderId();
    return classifier;
  }

  async function ensureGroup(): Promise<void> {
    for (let delay = 100; !stopping; delay = Math.min(delay * 2, 5000)) {
      try {
        await writer!.xgroup('CREATE', keys.stream, keys.group, '0', 'MKSTREAM');
        return;
      } catch (error) {
        if (String(error).includes('BUSYGROUP')) return;
        log.warn({ err: error, retryMs: delay }, 'could not create the consumer group');
        await sleep(delay);
      }
    }
  }

  /** For the backlog gauges: stream length and the group's pending count, one round trip. */
  async function readBacklog(redis: Redis): Promise<{ length: number; pending: number }> {
    const replies = (await redis.pipeline().xlen(keys.stream).xpending(keys.stream, keys.group).exec()) ?? [];
    const error = replies.find(([e]) => e)?.[0];
    if (error) throw error;
    const summary = replies[1]?.[1] as [number, ...unknown[]] | undefined;
    return { length: Number(replies[0]?.[1] ?? 0), pending: Number(summary?.[0] ?? 0) };
  }

  async function loop(classifier: ImageClassifier, reclaim: Reclaimer, processSafely: ReturnType<typeof batchRunner>): Promise<void> {
    let backoff = 100;
    let previousBatchSize = 0; // feeds the batcher's fill rule
    /** Run one step; on a Redis error wait (or recreate the group) and say whether to go on. */
    const step = async (what: string, action: () => Promise<void>): Promise<boolean> => {
      try {
        await action();
        backoff = 100;
        return !stopping;
      } catch (error) {
        log.warn({ err: error, retryMs: backoff }, what);
        if ((error as Error).message.includes('NOGROUP'))
          await ensureGroup(); // the stream or group was deleted
        else await sleep(backoff);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
        return false;
      }
    };
    while (!stopping) {
      if (reclaim.hasDead && !(await step('taking over the jobs of a dead worker failed', () => reclaim.takeOverDead()))) continue;
      if (reclaim.msUntilPass() === 0 && !(await step('reclaiming jobs failed', () => reclaim.reclaimIdle()))) continue;
      let entries: StreamEntry[] = [];
      const read = async () => {
        // Block no longer than until the next reclaim pass is due (0: don't block at all).
        entries = await readBatch(reader!, {
          stream: keys.stream,
          group: keys.group,
          consumer,
          batchSize,
          maxDelayMs: config.maxBatchDelayMs,
          blockMs: Math.min(BLOCK_MS, reclaim.msUntilPass()),
          previousBatchSize,
        });
      };
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
      redis: writer!,
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
      if (stopping || !classifier) return;
      const { engine } = classifier;
      batchSize = config.batchSize ?? defaultBatchSize(engine);
      throughput = new Throughput(batchSize);
      if (!options.classifier) await warmUp(classifier);
      const run = classifier;
      const processSafely = batchRunner({ config, consumer, keys, redis: writer!, log, stats, metrics, onBatch: options.onBatch });
      reclaimer = new Reclaimer({
        redis: reader!,
        keys,
        consumer,
        claimIdleMs: config.claimIdleMs,
        deadIdleMs: staleAfterMs(config.heartbeatMs),
        batchSize: () => batchSize,
        runAlone: (entry, deliveries) => processSafely(run, [entry], { deliveries }),
        stopping: () => stopping,
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
      metrics?.setBacklogSource(() => readBacklog(writer!));
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
      await Promise.all([reader, writer].map((redis) => redis && closeRedis(redis)));
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
      stopping = true;
      wakeSleep?.();
      // Wake a blocked XREADGROUP now instead of after its BLOCK timeout (it returns nothing, as on
      // a timeout, so no entry is delivered to a worker that is leaving). Best effort: some hosted
      // Redis refuse CLIENT UNBLOCK, and after a reconnect the id is stale; then BLOCK_MS bounds it.
      if (readerId !== undefined) await writer?.client('UNBLOCK', readerId).catch(() => {});
      await done.catch(() => {});
    },
  };
}

async function closeRedis(redis: Redis): Promise<void> {
  // QUIT lets pending replies arrive; if Redis is unreachable, don't wait for it.
  await Promise.race([redis.quit().catch(() => {}), new Promise((resolve) => setTimeout(resolve, 1000))]);
  redis.disconnect();
}
