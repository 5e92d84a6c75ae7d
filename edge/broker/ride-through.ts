/**
 * One request's life in the queue, shared by both brokers, with Redis blips ridden through: the
 * request keeps its tensor until it is answered, so a failed enqueue is retried, and a job lost
 * with Redis (restarted empty) is enqueued again, until the request's deadline.
 *
 *  1. Enqueue. A transport failure (Redis away, the REST server answering 5xx) makes the request
 *     *held*: it retries with backoff (100 ms doubling to 1 s). Held requests are bounded per edge
 *     process (OUTAGE_HOLD_MAX: each keeps its tensor and upload in memory); beyond that, 503
 *     `broker_unavailable` at once, as without ride-through.
 *  2. Wait for the result (the broker's push path). When the broker reports contact lost, the
 *     request is held again and waits until Redis answers, then looks: the result key (answered
 *     meanwhile: done), else the job's entry (still queued: wait again), else the job was lost with
 *     Redis: back to 1.
 *
 * Why a job is never answered twice, nor lost: the client gets the first result this function
 * returns, once. A job seen queued is enqueued again only when neither its entry nor its result
 * exists; a worker deletes an entry only after writing its result (complete-n.lua), so
 * "neither" means Redis lost both. Copies are still possible, answered
 * once: an enqueue whose reply was lost (the XADD ran) is retried, and a worker may answer a lost
 * copy after Redis is back; every copy writes the same result key (SET NX: the first wins) and
 * the edge keeps the first answer.
 *
 * At the deadline: 504 `deadline_exceeded` while the queue works (the workers were too slow); 503
 * `broker_unavailable` with Retry-After while it is still unreachable.
 *
 * @example
 * const result = await rideThrough(request, { enqueue, wait, reachable, readResult, entryExists }, { holds, retryAfterSeconds, signal });
 */
import type { ApiError } from '../errors.ts';
import type { JobResult } from '../../shared/protocol.ts';
import type { Logger } from '../../shared/log.ts';
import { brokerUnavailable, deadlineExceeded } from '../errors.ts';
import { sleep, type SubmitRequest } from './broker.ts';

/** Thrown by a step that must not be retried (a spent subrequest budget, say): 503 at once. */
export class NoRetry extends Error {
  override name = 'NoRetry';
  readonly fatal = true;
}

const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 1_000;

/**
 * What waiting ended with: the result; the deadline (null); contact lost (the job may be gone);
 * or contact back after a break (look whether the job was answered, or lost, meanwhile).
 */
export type WaitOutcome = JobResult | null | { lost: unknown } | { recheck: true };

/** The broker-specific steps. Each may throw on a transport failure. */
export interface QueueSteps {
  /** Enqueue the job: its entry id, or the ApiError that refuses it (queue full). */
  enqueue(): Promise<string | ApiError>;
  /** Wait for the pushed result, until the deadline. */
  wait(entryId: string): Promise<WaitOutcome>;
  /** Does Redis answer? Never throws. */
  reachable(): Promise<boolean>;
  readResult(): Promise<JobResult | null>;
  entryExists(entryId: string): Promise<boolean>;
}

/** How many requests an edge process holds while the queue is unreachable. */
export class Holds {
  private held = 0;

  constructor(readonly max: number) {}

  get count(): number {
    return this.held;
  }

  tryAcquire(): boolean {
    if (this.held >= this.max) return false;
    this.held++;
    return true;
  }

  release(): void {
    this.held--;
  }
}

export async function rideThrough(
  request: SubmitRequest,
  steps: QueueSteps,
  options: {
    holds: Holds;
    retryAfterSeconds: number;
    signal: AbortSignal;
    /** Told when the request starts being held (the first failure), with its id. */
    logger?: Logger;
  },
): Promise<JobResult> {
  const { deadline } = request;
  const budgetMs = deadline - Date.now();
  const { holds, retryAfterSeconds, signal } = options;
  let held = false;
  let lastError: unknown;
  const hold = (error: unknown) => {
    lastError = error;
    // A certificate or password that cannot work: waiting would not help (redis-connection.ts).
    if ((error as { fatal?: boolean })?.fatal) throw brokerUnavailable(error, retryAfterSeconds);
    if (held) return;
    request.onHold?.(error);
    if (!holds.tryAcquire()) throw brokerUnavailable(error, retryAfterSeconds);
    held = true;
    options.logger?.warn(
      { id: request.id, err: error, held: holds.count },
      'queue unreachable; holding the request until it is back or its deadline',
    );
  };
  const unhold = () => {
    if (held) holds.release();
    held = false;
  };
  const timeUp = () => signal.aborted || Date.now() >= deadline;
  // A step that never answers (a Redis that accepts the connection but says nothing) must not keep
  // the request past its deadline: each is raced against it, and then counts as `fallback`.
  const aborted = new Promise<void>((resolve) =>
    signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true }),
  );
  const bounded = <T>(step: Promise<T>, fallback: T) => Promise.race([step, aborted.then(() => fallback)]);
  const giveUp = () =>
    held
      ? brokerUnavailable(
          new Error(`still unreachable at this request's deadline (${(lastError as Error)?.message ?? String(lastError)})`),
          retryAfterSeconds,
        )
      : deadlineExceeded(budgetMs);

  try {
    for (let delay = RETRY_FIRST_MS; ; delay = Math.min(delay * 2, RETRY_MAX_MS)) {
      if (timeUp()) throw giveUp();
      let entryId: string | ApiError;
      try {
        const enqueued = await bounded(steps.enqueue(), undefined);
        if (enqueued === undefined) throw giveUp();
        entryId = enqueued;
      } catch (error) {
        if (timeUp()) throw giveUp();
        hold(error);
        await sleep(Math.min(delay, deadline - Date.now()), signal);
        continue;
      }
      if (typeof entryId !== 'string') throw entryId;
      unhold();
      request.onEnqueued?.(entryId);
      delay = RETRY_FIRST_MS;

      for (;;) {
        const outcome = await steps.wait(entryId);
        if (outcome === null) {
          // Deadline (or the client left): one last look, in case the push was missed.
          const late = await steps.readResult().catch(() => null); // its own timeout: see the broker
          if (late) return late;
          throw giveUp();
        }
        if (!('lost' in outcome) && !('recheck' in outcome)) return outcome;
        if ('lost' in outcome) {
          hold(outcome.lost);
          for (let probe = RETRY_FIRST_MS; !(await bounded(steps.reachable(), false)); probe = Math.min(probe * 2, RETRY_MAX_MS)) {
            if (timeUp()) throw giveUp();
            await sleep(Math.min(probe, deadline - Date.now()), signal);
          }
        }
        if (timeUp()) throw giveUp();
        // The entry first: a worker deletes it only after writing the result, so an entry gone and
        // then no result means Redis lost both (the other order races a worker finishing between
        // the two reads). Unknown (a failed read) counts as still there: waiting is safe.
        const queued = await bounded(
          steps.entryExists(entryId).catch(() => true),
          true,
        );
        const result = await bounded(
          steps.readResult().catch(() => undefined),
          undefined,
        );
        if (result) return result; // answered while nobody listened
        if (!queued && result === null) {
          hold(new Error('the job was lost with Redis (restarted empty?)'));
          break; // enqueue it again
        }
        unhold();
      }
    }
  } finally {
    unhold();
  }
}
