/**
 * The worker's health as a supervisor (Kubernetes probes) reads it, on the metrics port
 * (metrics.ts serves it: GET /livez, GET /readyz):
 *
 * - **live**: the worker is starting (a first model download may take minutes), serving or
 *   draining, and no inference has hung. An inference hangs when it has run longer than
 *   CLAIM_IDLE_MS and four times the longest batch this worker has measured: by then other workers
 *   are taking its jobs over, and a restart is the cure. A Redis outage leaves the worker live: its
 *   loops keep retrying, and a restart would not bring Redis back.
 * - **ready**: the model is loaded and warmed up, the worker is serving (not draining after
 *   SIGTERM), and both connections to every shard it serves are up.
 *
 * @example
 * const health = workerHealth({ phase: 'serving', inferenceMs: 0, hungAfterMs: 10_000, shards });
 * response.writeHead(health.ready ? 200 : 503).end(JSON.stringify(health));
 */

/** The paths metrics.ts serves them on (and deploy/kubernetes/ probes). */
export const WORKER_PROBES = { live: '/livez', ready: '/readyz' } as const;

/** starting: loading the model, joining the shards; serving; stopping: finishing the batch in hand; stopped. */
export type WorkerPhase = 'starting' | 'serving' | 'stopping' | 'stopped';

export interface ShardHealth {
  name: string;
  /** Both of the worker's connections to the shard are up. */
  connected: boolean;
}

export interface HealthInputs {
  phase: WorkerPhase;
  /** How long the inference in hand has run, ms (0: none). */
  inferenceMs: number;
  /** An inference running longer than this has hung. */
  hungAfterMs: number;
  shards: ShardHealth[];
}

export interface WorkerHealth {
  live: boolean;
  ready: boolean;
  phase: WorkerPhase;
  /** Set when the inference in hand has hung: how long it has run, ms. */
  hungInferenceMs?: number;
  shards: ShardHealth[];
}

/** The batch time, in longest batches measured, past which an inference has hung (and at least CLAIM_IDLE_MS). */
export const HUNG_AFTER_BATCHES = 4;

export function workerHealth({ phase, inferenceMs, hungAfterMs, shards }: HealthInputs): WorkerHealth {
  const hung = inferenceMs > hungAfterMs;
  return {
    live: phase !== 'stopped' && !hung,
    ready: phase === 'serving' && !hung && shards.every((shard) => shard.connected),
    phase,
    ...(hung && { hungInferenceMs: Math.round(inferenceMs) }),
    shards,
  };
}
