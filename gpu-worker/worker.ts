/**
 * The worker loop: read a batch of jobs from the Redis Stream, run one batched inference, answer
 * every job through complete.lua (ack + delete + result key + publish, exactly once per job).
 *
 * Two Redis connections: `reader` sits in blocking XREADGROUP calls, `writer` sends results, so a
 * blocked read never delays an answer.
 *
 * @example
 * const worker = startWorker(parseWorkerConfig(process.env), { logger });
 * await worker.ready;   // model loaded + warmed up, consumer group joined
 * await worker.stop();  // finishes the batch in hand, then closes its connections
 */
import * as tf from '@tensorflow/tfjs-core';
import { Redis } from 'ioredis';
import { redisKeys } from '../shared/keys.ts';
import { createLogger, type Logger } from '../shared/log.ts';
import { MAX_TOP_K, type ErrorCode } from '../shared/protocol.ts';
import { selectBackend } from './backend.ts';
import { readBatch } from './batcher.ts';
import { Classifier } from './classifier.ts';
import { defaultBatchSize, type WorkerConfig } from './config.ts';
import { parseEntry, type InvalidJob, type Job, type StreamEntry } from './jobs.ts';
import type { DownloadProgress } from './model/fetch.ts';
import { loadModel } from './model/load.ts';
import { defineCompleteJob, writeOutcomes, type Answer } from './outcomes.ts';

/** One read blocks this long at most, so stop() takes effect within about a second. */
const BLOCK_MS = 1000;

export interface WorkerOptions {
  logger?: Logger;
  /** A loaded classifier to use (the caller keeps ownership): skips backend choice and model loading. */
  classifier?: Classifier;
  /** Called after each batch has been answered. */
  onBatch?: (report: BatchReport) => void;
  /** Progress of the builtin model's first download. */
  onDownloadProgress?: (progress: DownloadProgress) => void;
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
  /** complete.lua calls that answered their job (0 when another worker already had). */
  answered: number;
  /** Writes that failed even after retries: those jobs stay pending for a later reclaim. */
  writeFailures: number;
  inferenceMs: number;
  /** Set when the batch's inference threw (its jobs got inference_failed results). */
  inferenceError?: string;
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
  inferenceFailures: number;
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
  const stats: WorkerStats = { batches: 0, jobs: 0, answered: 0, expired: 0, invalid: 0, inferenceFailures: 0 };
  let stopping = false;
  let batchSize = 1; // set once the backend is known
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

  async function start(): Promise<Classifier | undefined> {
    let classifier = options.classifier;
    if (!classifier) {
      const backend = await selectBackend(config.backend);
      for (const skipped of backend.skipped) log.debug(skipped, 'tfjs backend skipped');
      log.info({ backend: backend.name, package: backend.package, detail: backend.detail }, 'tfjs backend selected');
      const loaded = await loadModel(config, { onProgress: options.onDownloadProgress });
      log.info(
        { model: loaded.name, source: loaded.source, params: loaded.paramCount, classes: loaded.labels.length, loadMs: loaded.loadMs },
        'model loaded',
      );
      classifier = new Classifier(loaded);
      const warmUpMs = await classifier.warmUp();
      log.info({ warmUpMs: Math.round(warmUpMs) }, 'model warmed up');
    }
    if (stopping) return classifier;

    const connect = (role: string) => {
      const redis = new Redis(config.redisUrl, { connectionName: `gpu-worker:${consumer}:${role}` });
      let lastLogged = 0;
      redis.on('error', (error: Error) => {
        // ioredis reconnects by itself; say so once in a while, not on every retry.
        if (Date.now() - lastLogged > 5000) log.warn({ role, err: error.message }, 'redis connection error');
        lastLogged = Date.now();
      });
      return redis;
    };
    reader = connect('reader');
    writer = connect('writer');
    defineCompleteJob(writer);
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
        log.warn({ err: (error as Error).message, retryMs: delay }, 'could not create the consumer group');
        await sleep(delay);
      }
    }
  }

  async function loop(classifier: Classifier): Promise<void> {
    const batchOptions = {
      stream: keys.stream,
      group: keys.group,
      consumer,
      batchSize,
      maxDelayMs: config.maxBatchDelayMs,
      blockMs: BLOCK_MS,
    };
    let backoff = 100;
    while (!stopping) {
      let entries;
      try {
        entries = await readBatch(reader!, batchOptions);
        backoff = 100;
      } catch (error) {
        const message = (error as Error).message;
        log.warn({ err: message, retryMs: backoff }, 'reading jobs failed');
        if (message.includes('NOGROUP')) await ensureGroup(); // the stream or group was deleted
        else await sleep(backoff);
        backoff = Math.min(backoff * 2, 5000);
        continue;
      }
      if (entries.length === 0) continue;
      try {
        await processBatch(classifier, entries);
      } catch (error) {
        // A bug, not a bad job: keep serving; the batch's entries stay pending for a reclaim.
        log.error({ err: error, entries: entries.length }, 'batch failed unexpectedly');
      }
    }
  }

  async function processBatch(classifier: Classifier, entries: StreamEntry[]): Promise<void> {
    const now = Date.now();
    const live: Job[] = [];
    const invalid: InvalidJob[] = [];
    const drop: string[] = [];
    let expired = 0;
    for (const entry of entries) {
      const parsed = parseEntry(entry);
      if (parsed.kind === 'unanswerable') {
        log.warn({ entryId: parsed.entryId, reason: parsed.message }, 'dropping a stream entry that cannot be answered');
        drop.push(parsed.entryId);
      } else if (parsed.kind === 'invalid') {
        invalid.push(parsed);
      } else if (parsed.deadline <= now) {
        // Nobody waits for it any more (the edge has answered 504): don't spend compute on it.
        expired++;
        drop.push(parsed.entryId);
      } else {
        live.push(parsed);
      }
    }

    const answers: Answer[] = [];
    const failure = (job: Job | InvalidJob, code: ErrorCode, message: string) =>
      answers.push({ entryId: job.entryId, id: job.id, reply: job.reply, result: { ok: false, id: job.id, error: { code, message }, worker: consumer } });
    for (const job of invalid) failure(job, 'bad_request', job.message);

    let inferenceMs = 0;
    let inferenceError: string | undefined;
    let tensorsBefore = 0;
    let tensorsAfter = 0;
    if (live.length > 0) {
      try {
        const run = await classifier.classifyWithStats(live.map((job) => job.tensor), MAX_TOP_K);
        ({ inferenceMs, tensorsBefore, tensorsAfter } = run);
        live.forEach((job, i) =>
          answers.push({
            entryId: job.entryId,
            id: job.id,
            reply: job.reply,
            result: {
              ok: true,
              id: job.id,
              model: classifier.name,
              predictions: run.predictions[i] ?? [],
              queueMs: Math.max(0, job.readAt - job.enqueuedAt),
              inferenceMs: Math.round(inferenceMs * 10) / 10,
              batchSize: live.length,
              worker: consumer,
            },
          }),
        );
      } catch (error) {
        // Answer the jobs with an error rather than leave them hanging until their deadline.
        inferenceError = (error as Error).message;
        log.error({ err: error, batchSize: live.length }, 'inference failed');
        for (const job of live) failure(job, 'inference_failed', `inference failed: ${inferenceError}`);
      }
      if (tensorsAfter > tensorsBefore) log.warn({ tensorsBefore, tensorsAfter }, 'tensor count grew during a batch (leak?)');
    }

    const { answered, writeFailures } = await writeOutcomes(writer!, { keys, resultTtlMs: config.resultTtlMs, log }, drop, answers);
    stats.batches++;
    stats.jobs += entries.length;
    stats.answered += answered;
    stats.expired += expired;
    stats.invalid += entries.length - live.length - expired;
    if (inferenceError) stats.inferenceFailures++;
    const report: BatchReport = {
      size: entries.length,
      live: live.length,
      expired,
      invalid: entries.length - live.length - expired,
      answered,
      writeFailures,
      inferenceMs,
      inferenceError,
      tensorsBefore,
      tensorsAfter,
    };
    log.debug({ ...report, inferenceMs: Math.round(inferenceMs) }, 'batch done');
    options.onBatch?.(report);
  }

  const done = (async () => {
    let classifier: Classifier | undefined;
    try {
      classifier = await start();
      if (stopping) return;
      batchSize = config.batchSize ?? defaultBatchSize(tf.getBackend());
      log.info(
        {
          consumer,
          model: classifier!.name,
          stream: keys.stream,
          backend: tf.getBackend(),
          batchSize,
          maxBatchDelayMs: config.maxBatchDelayMs,
        },
        'worker ready',
      );
      markReady();
      await loop(classifier!);
    } finally {
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
