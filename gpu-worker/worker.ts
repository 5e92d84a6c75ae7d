/**
 * The worker: a loop that reads a batch of jobs from the Redis Stream and hands it to named pieces:
 * triage.ts sorts the entries, inference.ts runs the live ones (isolating a failing image),
 * completion.ts writes every answer once, batch-report.ts records what happened. Between reads,
 * reclaimer.ts takes over the jobs of workers that died, and heartbeat.ts tells the edges (and the
 * other workers) that this one is alive and how fast it goes.
 *
 * It holds two Redis connections (connections.ts) per shard (QUEUES: shared/shards.ts), and runs
 * that loop on each shard. The loops take turns at the model (turns.ts): one inference at a time,
 * each shard's next batch read while another's is computed, and a shard that waits goes next, so
 * no shard starves while another is busy. Each batch is answered on the shard it came from, and
 * heartbeat, reclaim and dead-letter work per shard. A job stays in its group's pending list until
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
import { type RedisKeys, redisKeys } from '../shared/keys.ts';
import { createLogger, type Logger } from '../shared/log.ts';
import { probeRedis } from '../shared/redis-connection.ts';
import { type ShardSpec, shardLogger } from '../shared/shards.ts';
import { batchRunner } from './batch.ts';
import { type BatchReport, emptyStats, type WorkerStats } from './batch-report.ts';
import { readBatch } from './batcher.ts';
import { defaultBatchSize, type WorkerConfig } from './config.ts';
import { type Connections, ensureGroup, openConnections, readBacklog } from './connections.ts';
import { PRUNE_EVERY_MS, pruneConsumers } from './consumers.ts';
import type { ImageClassifier } from './engine/image-classifier.ts';
import { HUNG_AFTER_BATCHES, type WorkerHealth, type WorkerPhase, workerHealth } from './health.ts';
import { type Heartbeat, type HeartbeatLoad, staleAfterMs, startHeartbeat } from './heartbeat.ts';
import type { StreamEntry } from './jobs.ts';
import type { WorkerMetrics } from './metrics.ts';
import type { DownloadProgress } from './model/fetch.ts';
import { Reclaimer } from './reclaimer.ts';
import { Throughput } from './throughput.ts';
import { ShardShares } from './shard-shares.ts';
import { Turns } from './turns.ts';
import type { Tracing } from '../shared/tracing/index.ts';

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
  /** Traces of the jobs that carry a traceparent (shared/tracing); undefined: none. */
  tracing?: Tracing;
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
  /** Live and ready, as GET /livez and /readyz answer them (health.ts). */
  health(): WorkerHealth;
}

/** One shard as this worker serves it. */
interface Shard {
  spec: ShardSpec;
  keys: RedisKeys;
  log: Logger;
  connections: Connections;
  /** Whether its consumer group was joined at start (else its loop joins it first). */
  joined: boolean;
  heartbeat?: Heartbeat;
}

/** The load a shard's heartbeat publishes: its share (shard-shares.ts) of the worker's rate. */
const shareOf = (load: HeartbeatLoad & { longestBatchMs?: number }, share: number) =>
  load.imagesPerSec === undefined || share === 1 ? load : { ...load, imagesPerSec: load.imagesPerSec * share };

export function startWorker(config: WorkerConfig, options: WorkerOptions = {}): WorkerHandle {
  const log = options.logger ?? createLogger('gpu-worker');
  const consumer = config.consumerName;
  const metrics = options.metrics;
  const startedAt = Date.now();
  const stats = emptyStats();
  const turns = new Turns();
  const shares = new ShardShares(config.shards.map((spec) => spec.name));
  const shards: Shard[] = [];
  let pruneTimer: ReturnType<typeof setInterval> | undefined;
  /** Aborted by stop(): ends the loops and cuts every wait short. */
  const stopped = new AbortController();
  const isStopping = () => stopped.signal.aborted;
  let phase: WorkerPhase = 'starting';
  let batchSize = 1; // set once the engine is known
  let throughput = new Throughput(batchSize);
  let markReady!: () => void;
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  /** How a shard is named in errors: the setting it came from. */
  const settingOf = (spec: ShardSpec) => (config.shards.length === 1 ? 'REDIS_URL' : `QUEUES (${spec.name})`);

  const sleep = (ms: number) => setTimeout(ms, undefined, { signal: stopped.signal }).catch(() => {});

  /** Forget gone workers' consumers (consumers.ts); housekeeping, so a failure only logs. */
  const prune = () => {
    for (const shard of shards) {
      void pruneConsumers(shard.connections.writer, shard.keys, options.consumerGoneAfterMs).then(
        (removed) => removed.length > 0 && shard.log.info({ removed }, 'removed the consumers of workers that are gone'),
        (error: unknown) => shard.log.warn({ err: error }, 'could not prune gone consumers'),
      );
    }
  };

  async function start(): Promise<ImageClassifier | undefined> {
    // Before the model (minutes, the first time): a certificate or password that cannot work stops
    // the start with the reason; a Redis not up yet only warns, the connections keep trying.
    const probes = await Promise.all(config.shards.map((spec) => probeRedis({ redisUrl: spec.url, redisTlsCa: config.redisTlsCa })));
    config.shards.forEach((spec, i) => {
      const probe = probes[i]!;
      if ('fatal' in probe) throw new ConfigError(`${settingOf(spec)}: ${probe.fatal}`);
      if ('error' in probe) log.warn({ err: probe.error, shard: spec.name }, 'Redis is not reachable yet; retrying in the background');
    });
    let classifier = options.classifier;
    if (!classifier) {
      // Imported here: a worker with a synthetic model loads no engine.
      const { loadClassifier } = await import('./engine/index.ts');
      classifier = await loadClassifier(config, { log, onDownloadProgress: options.onDownloadProgress });
    }
    if (isStopping()) return classifier;
    for (const [i, spec] of config.shards.entries()) {
      const shardLog = shardLogger(log, spec, config.shards.length);
      const shard: Shard = {
        spec,
        keys: redisKeys(spec.prefix),
        log: shardLog,
        connections: await openConnections(spec, config, shardLog),
        joined: false,
      };
      shards.push(shard);
      // A shard down at start is joined by its own loop: the others serve meanwhile.
      if ('ok' in probes[i]! || config.shards.length === 1) {
        await ensureGroup(shard.connections.writer, shard.keys, shardLog, stopped.signal);
        shard.joined = true;
      }
    }
    return classifier;
  }

  async function loop(
    shard: Shard,
    reclaim: Reclaimer,
    processSafely: ReturnType<typeof batchRunner>,
    classifier: ImageClassifier,
  ): Promise<void> {
    const { keys, connections } = shard;
    if (!shard.joined) await ensureGroup(connections.writer, keys, shard.log, stopped.signal);
    let backoff = 100;
    let previousBatchSize = 0; // feeds the batcher's fill rule
    /** Run one step; on a Redis error wait (or recreate the group) and return false. */
    const step = async (what: string, action: () => Promise<void>): Promise<boolean> => {
      try {
        await action();
        backoff = 100;
        return true;
      } catch (error) {
        shard.log.warn({ err: error, retryMs: backoff }, what);
        // The stream or group was deleted (a Redis restarted empty): create it again.
        if ((error as Error).message.includes('NOGROUP')) await ensureGroup(connections.writer, keys, shard.log, stopped.signal);
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
        entries = await readBatch(connections.reader, {
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
      const waitedMs = await processSafely(classifier, entries);
      // The rate when busy: the time waiting for another shard's turn is not this batch's.
      throughput.record(entries.length, performance.now() - started - waitedMs);
      shares.record(shard.spec.name, entries.length);
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
    // With several shards a batch read may wait for the other shards' turns too.
    const heldMs = batchMs * config.shards.length;
    if (2 * heldMs > config.claimIdleMs) {
      log.warn(
        { batchWarmUpMs: Math.round(batchMs), shards: config.shards.length, claimIdleMs: config.claimIdleMs },
        'a batch (times the shards taking turns) takes more than half of CLAIM_IDLE_MS: other workers may take over jobs this one is still computing (answered once, computed twice); raise CLAIM_IDLE_MS or lower BATCH_SIZE',
      );
    }
  }

  function beat(classifier: ImageClassifier, shard: Shard, reclaim: Reclaimer): Heartbeat {
    const { engine } = classifier;
    return startHeartbeat({
      redis: shard.connections.writer,
      keys: shard.keys,
      intervalMs: config.heartbeatMs,
      log: shard.log,
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
      load: () => shareOf(throughput.load(), shares.of(shard.spec.name)),
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
      const loops = shards.map((shard) => {
        const processSafely = batchRunner({
          config,
          consumer,
          keys: shard.keys,
          redis: shard.connections.writer,
          log: shard.log,
          stats,
          metrics,
          onBatch: options.onBatch,
          turns,
          tracing: options.tracing,
        });
        const reclaimer = new Reclaimer({
          redis: shard.connections.reader,
          keys: shard.keys,
          consumer,
          claimIdleMs: config.claimIdleMs,
          deadIdleMs: staleAfterMs(config.heartbeatMs),
          batchSize,
          runAlone: async (entry, deliveries) => void (await processSafely(run, [entry], { deliveries })),
          stopping: isStopping,
          log: shard.log,
        });
        return { shard, processSafely, reclaimer };
      });
      metrics?.setInfo({
        engine: engine.name,
        provider: engine.provider,
        threads: engine.threads,
        model: classifier.name,
        batchSize,
        consumer,
      });
      metrics?.setBacklogSources(
        new Map(shards.map((shard) => [shard.spec.name, () => readBacklog(shard.connections.writer, shard.keys)])),
      );
      // Beat before saying ready (the log line and markReady), so an edge's /readyz already sees this worker.
      for (const { shard, reclaimer } of loops) shard.heartbeat = beat(classifier, shard, reclaimer);
      await Promise.all(shards.map((shard) => shard.heartbeat!.first));
      log.info(
        {
          consumer,
          model: classifier.name,
          ...(engine.name === 'synthetic' && { synthetic: true }),
          shards: shards.map((shard) => `${shard.spec.name} ${shard.keys.stream}`),
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
      if (!isStopping()) phase = 'serving';
      markReady();
      prune();
      pruneTimer = setInterval(prune, PRUNE_EVERY_MS);
      pruneTimer.unref();
      await Promise.all(loops.map(({ shard, reclaimer, processSafely }) => loop(shard, reclaimer, processSafely, run)));
    } finally {
      phase = 'stopping';
      clearInterval(pruneTimer);
      metrics?.setBacklogSources(new Map());
      await Promise.all(shards.map((shard) => shard.heartbeat?.stop()));
      await Promise.all(shards.map((shard) => shard.connections.close()));
      if (classifier && !options.classifier) classifier.dispose();
      log.info({ consumer, ...stats }, 'worker stopped');
      phase = 'stopped';
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
    health: () =>
      workerHealth({
        phase,
        inferenceMs: turns.busyMs(),
        hungAfterMs: Math.max(config.claimIdleMs, HUNG_AFTER_BATCHES * (throughput.load().longestBatchMs ?? 0)),
        shards: config.shards.map((spec) => {
          const open = shards.find((shard) => shard.spec === spec)?.connections;
          return { name: spec.name, connected: open?.reader.status === 'ready' && open.writer.status === 'ready' };
        }),
      }),
    async stop() {
      stopped.abort();
      if (phase === 'serving') phase = 'stopping';
      // Wake blocked XREADGROUPs now rather than after their BLOCK timeout: they return nothing, so
      // no entry is delivered to a worker that is leaving.
      await Promise.all(shards.map((shard) => shard.connections.unblockReader()));
      await done.catch(() => {});
    },
  };
}
