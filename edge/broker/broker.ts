/**
 * The edge's view of the queue: submit one job and wait for its result. Runtime-specific
 * implementations: `upstash.ts` (REST, runs anywhere fetch does) and `../node/ioredis-broker.ts`
 * (direct TCP, Node only).
 */
import { parseHeartbeats } from '../../shared/protocol.ts';
import { withTimeout } from '../../shared/timeout.ts';
import type { JobResult, WireFormat, WorkerHeartbeat } from '../../shared/protocol.ts';

export interface SubmitRequest {
  id: string;
  /** TENSOR_BYTES of 224x224 RGB uint8, or (`format` jpeg, webp) that image as a file. */
  tensor: Uint8Array;
  /** WIRE_FORMAT: what `tensor` holds (default raw). */
  format?: WireFormat;
  /** Epoch ms; past it the edge answers 504 and workers skip the job. */
  deadline: number;
  /** Jobs of the HTTP request this one belongs to (a batch request: its images), which share its budgets. Default 1. */
  share?: number;
  /** Where the request comes from: a sharded broker tries that region's shards first (else EDGE_REGION's). */
  region?: string;
  /**
   * Told when this request's broker stops answering (ride-through.ts then holds the request): the
   * sharded broker (sharded.ts) enqueues it on another shard too.
   */
  onHold?: (error: unknown) => void;
  /** The W3C traceparent the job carries to the worker (tracing on: ../job-trace.ts). */
  traceparent?: string;
  /** Told each time the job is in the stream (again, after a ride-through or a failover), with its entry id. */
  onEnqueued?: (entryId: string) => void;
}

export interface Broker {
  /**
   * Enqueue and wait for the result. Rejects with ApiError: 503 `queue_full` (with Retry-After),
   * 504 `deadline_exceeded`, 503 `broker_unavailable`.
   */
  submit(request: SubmitRequest, signal?: AbortSignal): Promise<JobResult>;
  /**
   * Before decoding a request's `jobs` images: throws 503 `queue_full` at once when the workers
   * cannot answer them by `deadline` (admission.ts); else returns the release to call once the
   * request is answered.
   */
  admit(deadline: number, jobs: number): () => void;
  /**
   * Redis reachability and the workers' heartbeats, in one round trip (HGETALL of the heartbeat
   * hash + XLEN, pipelined). Never throws: an unreachable Redis is `redisOk: false`.
   */
  status(): Promise<BrokerStatus>;
  close(): Promise<void>;
}

export interface BrokerStatus {
  redisOk: boolean;
  /** Round trip of the status call, ms. */
  redisMs: number;
  /** Why Redis is not ok. */
  error?: string;
  /** Every well-formed heartbeat, newest first, stale ones included (filter with isLiveWorker). */
  workers: WorkerHeartbeat[];
  /** XLEN of the job stream: queued + in flight (every shard's, when sharded). */
  backlog: number;
  /** Each shard, when there are several (sharded.ts). */
  shards?: ShardStatus[];
}

/** One shard as the edge sees it. */
export interface ShardStatus {
  name: string;
  region?: string;
  /** `up`; `slow`: its status read took over SLOW_MS; `down`: unreachable, or answered garbage. */
  state: 'up' | 'slow' | 'down';
  latencyMs: number;
  backlog: number;
  /** Workers whose heartbeat on this shard is live. */
  workers: number;
  error?: string;
}

/** A status call waits this long at most: a sharded edge reports a shard that stopped answering down within it. */
export const STATUS_TIMEOUT_MS = 1_500;

/** Run a status read (`read` returns the raw HGETALL reply and XLEN) with a timeout; never throws. */
export async function readStatus(read: () => Promise<[unknown, unknown]>): Promise<BrokerStatus> {
  const started = Date.now();
  try {
    const [hash, length] = await withTimeout(read(), STATUS_TIMEOUT_MS, `no answer within ${STATUS_TIMEOUT_MS} ms`);
    const backlog = Number(length ?? 0);
    // A reply that is not what Redis gives is a broken broker, not one to trust.
    if (!Number.isSafeInteger(backlog) || backlog < 0) throw new Error(`XLEN answered ${JSON.stringify(length)}, not a count`);
    if (hash !== null && hash !== undefined && (typeof hash !== 'object' || Array.isArray(hash))) {
      throw new Error('HGETALL of the heartbeats answered something that is not a hash');
    }
    return {
      redisOk: true,
      redisMs: Date.now() - started,
      workers: parseHeartbeats(hash as Record<string, unknown> | null),
      backlog,
    };
  } catch (error) {
    return { redisOk: false, redisMs: Date.now() - started, error: (error as Error)?.message ?? String(error), workers: [], backlog: 0 };
  }
}

export interface BrokerLimits {
  /** Most jobs in the stream (waiting + in flight) before enqueueing is refused (admission.ts may refuse sooner). */
  queueMax: number;
  /** Seconds a client should wait after a 503 (RETRY_AFTER_S): queue_full at QUEUE_MAX, broker_unavailable. */
  retryAfterSeconds: number;
  /** Most requests held per edge process while the queue is unreachable (ride-through.ts). */
  holdMax: number;
  /** Refuse at once what the workers could not answer by its deadline (admission.ts); else only QUEUE_MAX. */
  admitByDeadline: boolean;
}

/** Resolve after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}
