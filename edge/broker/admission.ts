/**
 * Admission by deadline: refuse at once (503 `queue_full`, Retry-After from the estimate) a
 * request that could only wait for its deadline, instead of queueing it for a 504.
 *
 * The live workers' heartbeats say how many images a second each answers when busy
 * (`imagesPerSec`) and how long its batches take (`batchMs`); the broker reads them at most once a
 * second per edge process, in the background, so no request waits for it (none at all while the
 * broker's status is read for other reasons as often: {@link Admission.status}). A new job waits about
 * backlog / capacity, plus two batches (the one in hand may be partial, and its own). It is admitted while the stream holds fewer jobs than
 * {@link admitBelow} gives for its time left, checked twice:
 *
 *  1. `admit()`, before the image is decoded: the backlog of the last read, less what the workers
 *     have answered since at their rate, or this process's own requests in progress if more. A
 *     flood is refused for the price of reading its bodies, not of decoding them (the decode is
 *     most of an edge's CPU per request).
 *  2. enqueue-1.lua, with the exact backlog: the check and the enqueue are one command, and other
 *     edges' jobs count too.
 *
 * `QUEUE_MAX` stays the hard cap. `ADMISSION=queue-max` turns the estimate off.
 *
 * No estimate, no admission rule (admit up to `QUEUE_MAX`, as before): at cold start, when a live
 * worker publishes no rate (an older worker, or a heartbeat that does not parse), or when the
 * estimate is older than {@link ESTIMATE_MAX_AGE_MS}. Heartbeats come from Redis, where anything
 * may write, so no heartbeat can make the edge refuse everything: a batch per live worker is
 * always admitted, batch times are weighted by the rate each heartbeat claims, and batch times
 * count for at most half the deadline.
 *
 * @example
 * const admission = createAdmission(() => broker.status(), limits);
 * const release = admission.admit(deadline, 1);          // throws 503 queue_full when it cannot make it
 * const maxBacklog = admission.limit(request.deadline); // ARGV[1] of enqueue-1.lua
 * if (typeof reply === 'number') throw admission.refusal(reply, request.deadline);
 */
import { type ApiError, queueFull } from '../errors.ts';
import { isLiveWorker, type WorkerHeartbeat } from '../../shared/protocol.ts';
import type { BrokerLimits, BrokerStatus } from './broker.ts';

/** Heartbeats are read at most this often per edge process. */
export const REFRESH_MS = 1_000;
/** An estimate older than this (heartbeats unreadable meanwhile) is not used. */
export const ESTIMATE_MAX_AGE_MS = 10_000;
/** Admit only while the estimated wait is within this share of the time left (rates drift, batches vary). */
const SAFETY = 0.8;

export interface Estimate {
  /** Images a second the live workers answer together, when busy. */
  imagesPerSec: number;
  /** Their recent batch time, ms: the mean of theirs, weighted by their rates. */
  batchMs: number;
  /** Jobs the live workers take in one batch each: always admitted. */
  batchCapacity: number;
}

/** The live workers' capacity; undefined when there is none, or some live worker publishes no rate. */
export function estimateOf(workers: WorkerHeartbeat[], now: number): Estimate | undefined {
  const live = workers.filter((beat) => isLiveWorker(beat, now));
  if (live.length === 0 || live.some((beat) => beat.imagesPerSec === undefined)) return undefined;
  const imagesPerSec = live.reduce((sum, beat) => sum + beat.imagesPerSec!, 0);
  return {
    imagesPerSec,
    // Weighted by rate: a heartbeat can only sway the batch time by claiming capacity too.
    batchMs: live.reduce((sum, beat) => sum + beat.imagesPerSec! * (beat.batchMs ?? 0), 0) / imagesPerSec,
    batchCapacity: live.reduce((sum, beat) => sum + beat.batchSize, 0),
  };
}

/**
 * The most jobs the stream may hold for a job with `budgetMs` left to be admitted: what the
 * workers answer in that time, less two batches (the one in hand may be partial, and the job's own).
 */
export function admitBelow(estimate: Estimate, budgetMs: number): number {
  const waitMs = SAFETY * budgetMs - Math.min(2 * estimate.batchMs, budgetMs / 2);
  return Math.max(estimate.batchCapacity, Math.floor((estimate.imagesPerSec * waitMs) / 1000));
}

export interface Admission {
  /**
   * Before decoding `jobs` images due at `deadline`: throws the refusal when the estimate says
   * they cannot be answered in time; else counts them in progress until the returned release.
   */
  admit(deadline: number, jobs: number, now?: number): () => void;
  /** ARGV[1] of enqueue-1.lua for a job due at `deadline`: QUEUE_MAX, or less by the estimate. */
  limit(deadline: number, now?: number): number;
  /** The answer for a job refused with the stream at `backlog` jobs. */
  refusal(backlog: number, deadline: number, now?: number): ApiError;
  /**
   * Read the broker's status now (the broker's own `status()`: GET /readyz, a sharded edge's
   * probes). Every read feeds the estimate, so an edge whose shards are probed more often than
   * REFRESH_MS makes no reads of its own for admission.
   */
  status(): Promise<BrokerStatus>;
}

export function createAdmission(read: () => Promise<BrokerStatus>, limits: BrokerLimits): Admission {
  let estimate: { value: Estimate | undefined; backlog: number; at: number } | undefined;
  /** Jobs of this process between admit() and their release. */
  let inProgress = 0;
  let refreshedAt = Number.NEGATIVE_INFINITY;
  let refreshing = false;

  async function readAndRecord(): Promise<BrokerStatus> {
    refreshedAt = Date.now();
    const status = await read();
    if (status.redisOk) estimate = { value: estimateOf(status.workers, Date.now()), backlog: status.backlog, at: Date.now() };
    return status;
  }

  /** Start a read of the heartbeats when the last is older than REFRESH_MS; never awaited by a request. */
  function refresh(now: number): void {
    if (!limits.admitByDeadline || refreshing || now - refreshedAt < REFRESH_MS) return;
    refreshing = true;
    readAndRecord()
      .catch(() => {})
      .finally(() => (refreshing = false));
  }

  const current = (now: number) =>
    limits.admitByDeadline && estimate && now - estimate.at <= ESTIMATE_MAX_AGE_MS ? estimate.value : undefined;

  const admission: Admission = {
    admit(deadline, jobs, now = Date.now()) {
      refresh(now);
      const value = current(now);
      if (value && estimate) {
        const drained = (value.imagesPerSec * (now - estimate.at)) / 1000;
        const backlog = Math.max(estimate.backlog - drained, inProgress);
        if (backlog + jobs > Math.min(limits.queueMax, admitBelow(value, deadline - now)))
          throw admission.refusal(Math.ceil(backlog + jobs), deadline, now);
      }
      inProgress += jobs;
      let released = false;
      return () => {
        if (!released) inProgress -= jobs;
        released = true;
      };
    },
    limit(deadline, now = Date.now()) {
      // Reads start here too (at most one a second): behind a sharded broker, admit() may have
      // been asked of another shard than the one this job goes to.
      refresh(now);
      const value = current(now);
      return value ? Math.min(limits.queueMax, admitBelow(value, deadline - now)) : limits.queueMax;
    },
    refusal(backlog, deadline, now = Date.now()) {
      const value = current(now);
      if (backlog >= limits.queueMax || !value) {
        return queueFull(`The queue is full (${limits.queueMax} jobs); retry shortly`, limits.retryAfterSeconds);
      }
      const budgetMs = deadline - now;
      const waitS = backlog / value.imagesPerSec + value.batchMs / 1000;
      // When enough of the backlog will have drained for a job with the same time left to get in.
      const drainS = (backlog - admitBelow(value, budgetMs)) / value.imagesPerSec;
      const retryAfter = Math.min(Math.max(1, Math.ceil(drainS)), Math.max(1, Math.ceil(budgetMs / 1000)));
      return queueFull(
        `The queue holds about ${waitS.toFixed(1)} s of work for the live workers (${Math.round(value.imagesPerSec)} images/s): ` +
          `this request would not be answered within its ${(budgetMs / 1000).toFixed(1)} s deadline; retry in ${retryAfter} s`,
        retryAfter,
      );
    },
    status: readAndRecord,
  };
  return admission;
}
