/**
 * The worker loop: read a batch of jobs from the Redis Stream, run one batched inference, answer
 * every job with shared/protocol.ts' completion commands (result key, publish, ack, delete; stored once).
 *
 * Two Redis connections: `reader` sits in blocking XREADGROUP calls, `writer` sends results, so a
 * blocked read never delays an answer.
 *
 * Nothing lost: a job stays in the group's pending list until it is answered. A worker that dies
 * holding jobs is found by the others' heartbeats (its beat stale, no read either: heartbeat.ts),
 * and the first live worker to see it takes its jobs over at once (XCLAIM, batcher.ts claimFrom).
 * The backstop, for a worker that is alive but stuck: before reading, at most every
 * CLAIM_IDLE_MS / 2, the worker takes over any job delivered more than CLAIM_IDLE_MS ago and still
 * unanswered (XAUTOCLAIM). Either way one at a time, each run alone.
 * No poison loop: a claimed job already delivered more than MAX_DELIVERIES times is not run again
 * but dead-lettered (deadletter-3.lua: copied to the dead-letter stream, answered with an
 * inference_failed error, acked and deleted, exactly once). When a batch's inference throws, its
 * jobs are run again one by one: batch-mates of a bad input get their results, and a job whose
 * inference throws on its own is answered with its error at once and dead-lettered (retrying it
 * later would only make its client wait past the deadline for the same error).
 *
 * Once ready, the worker writes a heartbeat every HEARTBEAT_MS (heartbeat.ts: the edge's /readyz,
 * /v1/models and admission estimate read them, with the throughput of throughput.ts) and removes
 * it on stop; with `options.metrics` it counts jobs, batches and timings for Prometheus (metrics.ts).
 *
 * The model is anything with the ImageClassifier surface: the engine engine/index.ts picks (ONNX
 * Runtime or TensorFlow.js, imported and loaded only then), or with MODEL=synthetic:* a
 * SyntheticClassifier that loads nothing and computes nothing (benchmarks of the queue alone).
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
import { fatalRedisError, probeRedis, redisConnectionOptions } from '../shared/redis-connection.ts';
import { createLogger, type Logger } from '../shared/log.ts';
import { MAX_TOP_K, type ErrorCode } from '../shared/protocol.ts';
import { claimFrom, claimOne, readBatch } from './batcher.ts';
import { defaultBatchSize, reclaimWithinMs, type WorkerConfig } from './config.ts';
import type { ClassifyRun, ImageClassifier } from './engine/image-classifier.ts';
import { parseEntry, type InvalidJob, type Job, type StreamEntry } from './jobs.ts';
import type { DownloadProgress } from './model/fetch.ts';
import { staleAfterMs, startHeartbeat, type Heartbeat } from './heartbeat.ts';
import { Throughput } from './throughput.ts';
import type { JobOutcome, WorkerMetrics } from './metrics.ts';
import { writeOutcomes, type Answer, type DeadLetterRecord } from './outcomes.ts';
import { pruneConsumers, PRUNE_EVERY_MS } from './consumers.ts';

/** One read blocks this long at most, so stop() takes effect within about a second. */
const BLOCK_MS = 1000;
/** XAUTOCLAIM calls per reclaim pass at most (each scans up to 10 pending entries). */
const CLAIM_CALLS_PER_PASS = 8;
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

export interface BatchReport {
  /** Entries read. */
  size: number;
  /** Jobs that went through inference. */
  live: number;
  /** Skipped because their deadline had passed (acked + deleted, no result). */
  expired: number;
  /** Malformed entries (error result, or dropped when not even answerable). */
  invalid: number;
  /** Jobs this batch answered first (not counted: a job another worker had already answered). */
  answered: number;
  /** Writes that failed even after retries: those jobs stay pending for a later reclaim. */
  writeFailures: number;
  inferenceMs: number;
  /** Entries of this batch taken over from a worker that died (XAUTOCLAIM; such a batch has one). */
  reclaimed: number;
  /** Jobs dead-lettered: delivered more than MAX_DELIVERIES times, or inference threw on them alone. */
  deadLettered: number;
  /** Set when the batch's inference threw: its jobs were then run one by one. */
  inferenceError?: string;
  /** Jobs run again alone because the batch's inference threw. */
  retriedAlone: number;
  /** tf.memory().numTensors before and after the inference: equal unless something leaks. */
  tensorsBefore: number;
  tensorsAfter: number;
}

export interface WorkerStats {
  batches: number;
  jobs: number;
  answered: number;
  expired: number;
  invalid: number;
  /** Batches whose inference threw. */
  inferenceFailures: number;
  /** Jobs taken over from workers that died. */
  reclaimed: number;
  deadLettered: number;
}

/** How a batch of one reclaimed entry came: its delivery count (undefined if acked meanwhile). */
interface Claim {
  deliveries: number | undefined;
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
  let heartbeat: Heartbeat | undefined;
  let pruneTimer: ReturnType<typeof setInterval> | undefined;
  /** Forget gone workers' consumers (consumers.ts); housekeeping, so a failure only logs. */
  const prune = () =>
    void pruneConsumers(writer!, keys, options.consumerGoneAfterMs).then(
      (removed) => removed.length > 0 && log.info({ removed }, 'removed the consumers of workers that are gone'),
      (error: unknown) => log.warn({ err: error }, 'could not prune gone consumers'),
    );
  const stats: WorkerStats = {
    batches: 0,
    jobs: 0,
    answered: 0,
    expired: 0,
    invalid: 0,
    inferenceFailures: 0,
    reclaimed: 0,
    deadLettered: 0,
  };
  let stopping = false;
  let batchSize = 1; // set once the engine is known
  let throughput = new Throughput(batchSize);
  /** Consumers the heartbeat found dead holding jobs: taken over before the next read. */
  const deadConsumers = new Set<string>();
  let warnedDeadline = false;
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

  async function loop(classifier: ImageClassifier): Promise<void> {
    const batchOptions = {
      stream: keys.stream,
      group: keys.group,
      consumer,
      batchSize,
      maxDelayMs: config.maxBatchDelayMs,
      blockMs: BLOCK_MS,
    };
    const claimEveryMs = Math.max(250, Math.floor(config.claimIdleMs / 2));
    let nextClaimAt = 0; // a first pass at once: jobs left by a worker that died before this one started
    let backoff = 100;
    let previousBatchSize = 0; // feeds the batcher's fill rule
    const onRedisError = async (what: string, error: unknown) => {
      const message = (error as Error).message;
      log.warn({ err: error, retryMs: backoff }, what);
      if (message.includes('NOGROUP'))
        await ensureGroup(); // the stream or group was deleted
      else await sleep(backoff);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    };
    while (!stopping) {
      if (deadConsumers.size > 0) {
        try {
          await takeOverDead(classifier);
          backoff = 100;
        } catch (error) {
          await onRedisError('taking over the jobs of a dead worker failed', error);
          continue;
        }
        if (stopping) break;
      }
      if (Date.now() >= nextClaimAt) {
        try {
          const more = await reclaimPass(classifier);
          nextClaimAt = more ? Date.now() : Date.now() + claimEveryMs;
          backoff = 100;
        } catch (error) {
          if (/unknown command/i.test((error as Error).message)) {
            // Redis before 6.2: serve anyway, but say loudly that dead workers' jobs stay stuck.
            log.error({ err: error }, 'this Redis has no XAUTOCLAIM (6.2+): jobs of workers that die will not be taken over');
            nextClaimAt = Number.POSITIVE_INFINITY;
            continue;
          }
          await onRedisError('reclaiming jobs failed', error);
          continue;
        }
        if (stopping) break;
      }
      let entries;
      try {
        // Block no longer than until the next reclaim pass is due (0: don't block at all).
        entries = await readBatch(reader!, { ...batchOptions, blockMs: Math.min(BLOCK_MS, nextClaimAt - Date.now()), previousBatchSize });
        backoff = 100;
      } catch (error) {
        await onRedisError('reading jobs failed', error);
        continue;
      }
      if (entries.length === 0) continue; // an idle timeout says nothing about traffic: keep the last size
      previousBatchSize = entries.length;
      const started = performance.now();
      await processSafely(classifier, entries);
      throughput.record(entries.length, performance.now() - started);
    }
  }

  /**
   * Take over the jobs of the consumers the heartbeat found dead, one at a time, each run alone
   * (one of them may be what killed its worker); at most a batch's worth per call, so new jobs
   * are read in between.
   */
  async function takeOverDead(classifier: ImageClassifier): Promise<void> {
    let taken = 0;
    for (const from of deadConsumers) {
      while (!stopping && taken < batchSize) {
        const claimed = await claimFrom(reader!, {
          stream: keys.stream,
          group: keys.group,
          consumer,
          from,
          minIdleMs: staleAfterMs(config.heartbeatMs),
        });
        if (!claimed) break;
        if (!claimed.entry) continue; // another worker was first, or the entry is gone
        taken++;
        log.info({ entryId: claimed.entry.entryId, deliveries: claimed.deliveries, from }, 'took over a job of a dead worker');
        await processSafely(classifier, [claimed.entry], { deliveries: claimed.deliveries });
      }
      if (taken >= batchSize || stopping) return;
      deadConsumers.delete(from);
    }
  }

  let claimCursor = '0-0';
  /**
   * Take over jobs idle for CLAIM_IDLE_MS (their worker died), one at a time, each run alone.
   * Returns true when it stopped before the end of the pending list (more may be waiting).
   */
  async function reclaimPass(classifier: ImageClassifier): Promise<boolean> {
    let taken = 0;
    for (let calls = 0; calls < CLAIM_CALLS_PER_PASS && !stopping; calls++) {
      const claimed = await claimOne(reader!, {
        stream: keys.stream,
        group: keys.group,
        consumer,
        minIdleMs: config.claimIdleMs,
        cursor: claimCursor,
      });
      claimCursor = claimed.cursor;
      if (claimed.entry) {
        log.info({ entryId: claimed.entry.entryId, deliveries: claimed.deliveries }, 'took over a job whose worker stopped answering');
        await processSafely(classifier, [claimed.entry], { deliveries: claimed.deliveries });
        if (++taken >= batchSize) return true;
      }
      if (claimCursor === '0-0') return false;
    }
    return true;
  }

  async function processSafely(classifier: ImageClassifier, entries: StreamEntry[], claim?: Claim): Promise<void> {
    try {
      await processBatch(classifier, entries, claim);
    } catch (error) {
      // A bug, not a bad job: keep serving; the batch's entries stay pending for a reclaim.
      log.error({ err: error, entries: entries.length }, 'batch failed unexpectedly');
    }
  }

  async function processBatch(classifier: ImageClassifier, entries: StreamEntry[], claim?: Claim): Promise<void> {
    const now = Date.now();
    const live: Job[] = [];
    const invalid: InvalidJob[] = [];
    const overDelivered: Job[] = [];
    const drop: string[] = [];
    let expired = 0;
    let unanswerable = 0;
    const expiredIds = new Set<string>();
    const deliveries = claim?.deliveries ?? 1;
    for (const entry of entries) {
      const parsed = parseEntry(entry);
      if (parsed.kind === 'unanswerable') {
        log.warn({ entryId: parsed.entryId, reason: parsed.message }, 'dropping a stream entry that cannot be answered');
        unanswerable++;
        drop.push(parsed.entryId);
      } else if (parsed.kind === 'invalid') {
        invalid.push(parsed);
      } else if (deliveries > config.maxDeliveries) {
        // Each earlier delivery ended with its worker gone: don't let this one take another worker
        // down. Dead-lettered even if expired, so that the dead-letter stream shows every poison job.
        overDelivered.push(parsed);
      } else if (parsed.deadline <= now) {
        // Nobody waits for it any more (the edge has answered 504): don't spend compute on it.
        expired++;
        expiredIds.add(parsed.entryId);
        drop.push(parsed.entryId);
      } else {
        live.push(parsed);
      }
      if (!warnedDeadline && parsed.kind === 'job' && parsed.deadline - parsed.enqueuedAt <= reclaimWithinMs(config)) {
        warnedDeadline = true;
        log.warn(
          { deadlineMs: parsed.deadline - parsed.enqueuedAt, claimIdleMs: config.claimIdleMs },
          'the edge gives jobs less time than CLAIM_IDLE_MS x 1.5: the jobs of a stuck worker would be taken over after their clients got 504 (set DEADLINE_MS on the workers as on the edge)',
        );
      }
    }

    const answers: Answer[] = [];
    const failure = (job: Job | InvalidJob, code: ErrorCode, message: string, deadLetter?: DeadLetterRecord) =>
      answers.push({
        entryId: job.entryId,
        id: job.id,
        reply: job.reply,
        result: { ok: false, id: job.id, error: { code, message }, worker: consumer },
        deadLetter,
      });
    for (const job of invalid) failure(job, 'bad_request', job.message);
    for (const job of overDelivered) {
      log.error(
        { id: job.id, entryId: job.entryId, deliveries, maxDeliveries: config.maxDeliveries },
        'dead-lettering a job that keeps failing',
      );
      failure(
        job,
        'inference_failed',
        `Gave up on this image after ${deliveries - 1} attempts that each ended without an answer (the worker processing it stopped: ` +
          'a crash, a kill or out of memory); the job was moved to the dead-letter stream',
        {
          reason: `delivered ${deliveries} times (MAX_DELIVERIES=${config.maxDeliveries}); no delivery was answered`,
          deliveries,
          consumer,
        },
      );
    }

    let inferenceMs = 0;
    let inferenceError: string | undefined;
    let retriedAlone = 0;
    let tensorsBefore = 0;
    let tensorsAfter = 0;
    const succeed = (job: Job, predictions: ClassifyRun['predictions'][number] | undefined, ms: number, size: number) =>
      answers.push({
        entryId: job.entryId,
        id: job.id,
        reply: job.reply,
        result: {
          ok: true,
          id: job.id,
          model: classifier.name,
          predictions: predictions ?? [],
          queueMs: Math.max(0, job.readAt - job.enqueuedAt),
          inferenceMs: Math.round(ms * 10) / 10,
          batchSize: size,
          worker: consumer,
        },
      });
    const run = async (jobs: Job[]): Promise<ClassifyRun | Error> => {
      try {
        const result = await classifier.classifyWithStats(
          jobs.map((job) => job.tensor),
          MAX_TOP_K,
        );
        ({ tensorsBefore, tensorsAfter } = result);
        inferenceMs += result.inferenceMs;
        return result;
      } catch (error) {
        return error instanceof Error ? error : new Error(String(error));
      }
    };
    if (live.length > 0) {
      if (config.inferenceDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, config.inferenceDelayMs));
      const batch = await run(live);
      if (!(batch instanceof Error)) {
        live.forEach((job, i) => succeed(job, batch.predictions[i], batch.inferenceMs, live.length));
      } else {
        inferenceError = batch.message;
        log.error(
          { err: batch, batchSize: live.length },
          live.length > 1 ? 'inference failed; running the jobs one by one' : 'inference failed',
        );
        // One bad input must not fail its batch-mates: run each alone. A job that fails alone gets
        // its error now (and a copy in the dead-letter stream): run again, it would fail again.
        for (const job of live) {
          const alone = live.length > 1 ? await run([job]) : batch;
          if (live.length > 1) retriedAlone++;
          if (!(alone instanceof Error)) {
            succeed(job, alone.predictions[0], alone.inferenceMs, 1);
            continue;
          }
          if (live.length > 1) log.error({ err: alone, id: job.id }, 'inference failed on one job alone');
          failure(job, 'inference_failed', `inference failed: ${alone.message} (the job was moved to the dead-letter stream)`, {
            reason: `inference threw: ${alone.message}`,
            deliveries,
            consumer,
          });
        }
      }
      if (tensorsAfter > tensorsBefore) log.warn({ tensorsBefore, tensorsAfter }, 'tensor count grew during a batch (leak?)');
    }

    const { answered, deadLettered, writeFailures, written } = await writeOutcomes(
      writer!,
      { keys, resultTtlMs: config.resultTtlMs, deadLetterMaxLen: config.deadLetterMaxLen, log },
      drop,
      answers,
    );
    if (metrics) {
      const count = (entryId: string, outcome: JobOutcome) => {
        const status = written.get(entryId);
        metrics.jobs.inc({ outcome: status === 'failed' ? 'write_failed' : status === 'duplicate' ? 'duplicate' : outcome });
      };
      for (const entryId of drop) count(entryId, expiredIds.has(entryId) ? 'expired' : 'dropped');
      for (const { entryId, result, deadLetter } of answers) count(entryId, deadLetter ? 'deadlettered' : result.ok ? 'ok' : 'invalid');
      metrics.batches.observe(entries.length);
      for (const job of live) metrics.queueWait.observe(Math.max(0, job.readAt - job.enqueuedAt) / 1000);
      if (live.length > 0) metrics.inference.observe(inferenceMs / 1000);
    }
    const report: BatchReport = {
      size: entries.length,
      live: live.length,
      expired,
      invalid: invalid.length + unanswerable,
      answered,
      writeFailures,
      reclaimed: claim ? entries.length : 0,
      deadLettered,
      inferenceMs,
      inferenceError,
      retriedAlone,
      tensorsBefore,
      tensorsAfter,
    };
    stats.batches++;
    stats.jobs += entries.length;
    stats.answered += answered;
    stats.expired += expired;
    stats.invalid += report.invalid;
    stats.reclaimed += report.reclaimed;
    stats.deadLettered += deadLettered;
    if (inferenceError) stats.inferenceFailures++;
    // The job ids are the edge's request ids: a request's log lines can be followed across tiers.
    log.debug({ ...report, inferenceMs: Math.round(inferenceMs), ids: answers.map((a) => a.id) }, 'batch done');
    options.onBatch?.(report);
  }

  const done = (async () => {
    let classifier: ImageClassifier | undefined;
    try {
      classifier = await start();
      if (stopping) return;
      const engine = classifier!.engine;
      batchSize = config.batchSize ?? defaultBatchSize(engine);
      throughput = new Throughput(batchSize);
      if (!options.classifier) {
        // One image and one full batch: engines prepare per input shape (ONNX Runtime's memory
        // plan, TensorRT's engine, GPU kernels), and the first real batch should not pay for it.
        const oneMs = await classifier!.warmUp(1);
        const batchMs = batchSize > 1 ? await classifier!.warmUp(batchSize) : oneMs;
        throughput.warmedUp(batchMs);
        // A synthetic model has nothing to warm up: it only tells its batch time.
        if (engine.name !== 'synthetic')
          log.info(
            { warmUpMs: Math.round(oneMs), ...(batchSize > 1 && { batchWarmUpMs: Math.round(batchMs), batchSize }) },
            'model warmed up',
          );
        if (2 * batchMs > config.claimIdleMs) {
          log.warn(
            { batchWarmUpMs: Math.round(batchMs), claimIdleMs: config.claimIdleMs },
            'a batch takes more than half of CLAIM_IDLE_MS: other workers may take over jobs this one is still computing (answered once, computed twice); raise CLAIM_IDLE_MS or lower BATCH_SIZE',
          );
        }
      }
      metrics?.setInfo({
        engine: engine.name,
        provider: engine.provider,
        threads: engine.threads,
        model: classifier!.name,
        batchSize,
        consumer,
      });
      metrics?.setBacklogSource(() => readBacklog(writer!));
      // Beat before saying ready (the log line and markReady), so an edge's /readyz already sees this worker.
      heartbeat = startHeartbeat({
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
          model: classifier!.name,
          labels: classifier!.labels.length,
          batchSize,
          pid: process.pid,
          host: hostname(),
          startedAt,
        },
        load: () => throughput.load(),
        onBeat: (ok) => void (ok || metrics?.heartbeatFailures.inc()),
        onDead: (dead) => {
          for (const { name, pending, idleMs } of dead) {
            if (!deadConsumers.has(name)) log.warn({ worker: name, pending, idleMs }, 'a worker died holding jobs; taking them over');
            deadConsumers.add(name);
          }
        },
      });
      await heartbeat.first;
      log.info(
        {
          consumer,
          model: classifier!.name,
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
      await loop(classifier!);
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
