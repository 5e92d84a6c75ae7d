/**
 * The worker's settings, from environment variables.
 *
 * @example
 * const config = parseWorkerConfig(process.env); // throws ConfigError naming each bad variable
 * config.model // { kind: 'builtin' } | { kind: 'dir', path } | { kind: 'url', url } | { kind: 'synthetic', delayMs }
 */
import { availableParallelism, homedir, hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import {
  deadlineVar,
  intVar,
  keyPrefixVar,
  logLevelVar,
  optionalIntVar,
  parseEnv,
  redisTlsCaVar,
  redisUrlVar,
  refuseTlsCaWithoutTls,
} from '../shared/config.ts';
import { queuesVar, type ShardSpec } from '../shared/shards.ts';
import { TRACING_VARS, tracingSettings } from '../shared/tracing/config.ts';
import type { EngineInfo } from './engine/image-classifier.ts';
import { BUILTIN_MODEL } from './model/builtin.ts';
import { PREPROCESS_MODES, type PreprocessMode } from './model/preprocess.ts';

export const ENGINE_CHOICES = ['auto', 'onnx', 'tfjs'] as const;
export type EngineChoice = (typeof ENGINE_CHOICES)[number];
/** ONNX Runtime's execution providers (engine/onnx/index.ts). */
export const PROVIDER_CHOICES = ['auto', 'tensorrt', 'cuda', 'cpu'] as const;
export type ProviderChoice = (typeof PROVIDER_CHOICES)[number];
/** tfjs backends (engine/tfjs/backend.ts). */
export const BACKEND_CHOICES = ['auto', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

export const DEFAULT_MODEL_CACHE_DIR = join(homedir(), '.cache', 'resnet-edge', 'models');

/**
 * Where the model comes from: the pinned npm package, a local directory, a URL of model.json, or
 * no model at all (`synthetic:instant`, `synthetic:timer:<ms>`: fake answers after `delayMs` per
 * batch, for benchmarks; see engine/synthetic.ts).
 */
export type ModelSource =
  | { kind: 'builtin' }
  | { kind: 'dir'; path: string }
  | { kind: 'url'; url: string }
  | { kind: 'synthetic'; delayMs: number };

const SYNTHETIC_MODEL = /^synthetic:(?:instant|timer:(\d{1,6}))$/;
const MAX_SYNTHETIC_DELAY_MS = 600_000;

export const WorkerEnv = z
  .object({
    // Unset, and no QUEUES: redis://127.0.0.1:6379.
    REDIS_URL: redisUrlVar().optional(),
    // Several brokers (shards), each read fairly: shared/shards.ts.
    QUEUES: z.string().optional(),
    REDIS_TLS_CA: redisTlsCaVar(),
    KEY_PREFIX: keyPrefixVar(),
    // Unset: per engine (see defaultBatchSize).
    BATCH_SIZE: optionalIntVar(1, 1024),
    // Like Triton's max_queue_delay: how long a partial batch waits for more jobs after its first
    // one. The same on every engine (measured: docs/engines.md).
    MAX_BATCH_DELAY_MS: intVar(5, 0, 10_000),
    MODEL: z.string().default('resnet50'),
    LABELS: z.string().optional(),
    PREPROCESS: z.enum(PREPROCESS_MODES, { error: `expected one of ${PREPROCESS_MODES.join(', ')}` }).optional(),
    MODEL_NAME: z.string().optional(),
    MODEL_CACHE_DIR: z.string().default(DEFAULT_MODEL_CACHE_DIR),
    ENGINE: z.enum(ENGINE_CHOICES, { error: `expected one of ${ENGINE_CHOICES.join(', ')}` }).default('auto'),
    EXECUTION_PROVIDER: z.enum(PROVIDER_CHOICES, { error: `expected one of ${PROVIDER_CHOICES.join(', ')}` }).default('auto'),
    BACKEND: z.enum(BACKEND_CHOICES, { error: `expected one of ${BACKEND_CHOICES.join(', ')}` }).default('auto'),
    // ONNX Runtime uses all cores from one process; the tfjs wasm backend one thread per process,
    // so a CPU box on wasm wants one process per core ('auto').
    INFERENCE_PROCESSES: countOrAuto('1', 64, 'auto (one per core)'),
    // ONNX Runtime's intra-op threads per process. auto: the cores shared out over INFERENCE_PROCESSES.
    INFERENCE_THREADS: countOrAuto('auto', 256, 'auto (cores / INFERENCE_PROCESSES)'),
    CONSUMER_NAME: z
      .string()
      .regex(/^[\w.:@-]+$/, { error: 'letters, digits, _ . : @ - only' })
      .optional(),
    RESULT_TTL_MS: intVar(60_000, 1_000, 7 * 24 * 3_600_000),
    // A job delivered this long ago and still unanswered is taken over (XAUTOCLAIM) by another
    // worker: the backstop for a worker that is alive but stuck (a dead one is found sooner, by its
    // heartbeat). Must be well above the longest batch, or live workers get robbed; and its
    // takeover must come before the deadline (checked below).
    CLAIM_IDLE_MS: intVar(10_000, 1_000, 24 * 3_600_000),
    // The edge's DEADLINE_MS (set both alike): only to refuse a CLAIM_IDLE_MS that would take a
    // stuck worker's jobs over after their clients were answered 504.
    DEADLINE_MS: deadlineVar(),
    // Deliveries a job gets before it is dead-lettered instead of run again (poison jobs).
    MAX_DELIVERIES: intVar(3, 1, 1_000),
    // Most entries kept in the dead-letter stream (each holds its tensor: ~150-200 KB).
    DEAD_LETTER_MAXLEN: intVar(100, 1, 1_000_000),
    // How often a ready worker writes its heartbeat (GET /readyz, GET /v1/models on the edge).
    // A worker silent for 3 beats (no beat, no read) counts as dead: its jobs are taken over.
    HEARTBEAT_MS: intVar(2_000, 100, 300_000),
    // Prometheus GET /metrics; 0: off. With INFERENCE_PROCESSES=N, child i (1..N) uses METRICS_PORT+i.
    METRICS_PORT: intVar(9464, 0, 65535),
    METRICS_HOST: z.string().default('0.0.0.0'),
    // Tests and benchmarks only: a synthetic delay added to every batch's inference.
    INFERENCE_DELAY_MS: intVar(0, 0, 600_000),
    LOG_LEVEL: logLevelVar(),
    // Traces (OpenTelemetry): off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (shared/tracing/config.ts).
    ...TRACING_VARS,
  })
  .transform((env, ctx) => {
    const engine = resolveEngine(env, ctx);
    if (!engine) return z.NEVER;
    const processes = env.INFERENCE_PROCESSES ?? availableParallelism();
    const model = modelSource(env.MODEL);
    if (!model) {
      ctx.addIssue({
        code: 'custom',
        path: ['MODEL'],
        message: `expected synthetic:instant or synthetic:timer:<ms> (ms from 0 to ${MAX_SYNTHETIC_DELAY_MS}), got ${JSON.stringify(env.MODEL)}`,
      });
      return z.NEVER;
    }
    // A synthetic model never sees pixels, so it needs no preprocessing.
    if (model.kind !== 'builtin' && model.kind !== 'synthetic' && !env.PREPROCESS) {
      // A wrong guess here gives confident wrong answers, so custom models must say what they expect.
      ctx.addIssue({
        code: 'custom',
        path: ['PREPROCESS'],
        message: `required for a custom MODEL: one of ${PREPROCESS_MODES.join(', ')} (Keras ResNet/VGG: caffe; MobileNet/Inception: tf; torchvision: torch)`,
      });
      return z.NEVER;
    }
    const shards = shardsOf(env, ctx);
    if (!shards) return z.NEVER;
    if (reclaimWithinMs({ claimIdleMs: env.CLAIM_IDLE_MS }) >= env.DEADLINE_MS) {
      ctx.addIssue({
        code: 'custom',
        path: ['CLAIM_IDLE_MS'],
        message:
          `${env.CLAIM_IDLE_MS} ms: a stuck worker's jobs would be taken over up to ${reclaimWithinMs({ claimIdleMs: env.CLAIM_IDLE_MS })} ms after delivery, ` +
          `after their DEADLINE_MS (${env.DEADLINE_MS} ms) has passed; use less than ${Math.ceil(env.DEADLINE_MS / 1.5)} or set DEADLINE_MS to the edge's`,
      });
      return z.NEVER;
    }
    if (env.METRICS_PORT > 0 && processes > 1 && env.METRICS_PORT + processes > 65535) {
      ctx.addIssue({
        code: 'custom',
        path: ['METRICS_PORT'],
        message: `with INFERENCE_PROCESSES=${processes} the children listen on METRICS_PORT+1..+${processes}: pick a port below ${65536 - processes}`,
      });
      return z.NEVER;
    }
    return {
      shards,
      redisTlsCa: env.REDIS_TLS_CA,
      batchSize: env.BATCH_SIZE,
      maxBatchDelayMs: env.MAX_BATCH_DELAY_MS,
      model,
      labels: env.LABELS,
      preprocess: (env.PREPROCESS ?? BUILTIN_MODEL.preprocess) as PreprocessMode,
      modelName: env.MODEL_NAME ?? defaultModelName(model),
      modelCacheDir: resolve(env.MODEL_CACHE_DIR),
      engine,
      executionProvider: env.EXECUTION_PROVIDER as ProviderChoice,
      backend: env.BACKEND as BackendChoice,
      inferenceProcesses: processes,
      inferenceThreads: env.INFERENCE_THREADS ?? Math.max(1, Math.floor(availableParallelism() / processes)),
      consumerName: env.CONSUMER_NAME ?? `${hostname()}-${process.pid}`,
      resultTtlMs: env.RESULT_TTL_MS,
      claimIdleMs: env.CLAIM_IDLE_MS,
      deadlineMs: env.DEADLINE_MS,
      maxDeliveries: env.MAX_DELIVERIES,
      deadLetterMaxLen: env.DEAD_LETTER_MAXLEN,
      inferenceDelayMs: env.INFERENCE_DELAY_MS,
      heartbeatMs: env.HEARTBEAT_MS,
      metricsPort: env.METRICS_PORT,
      metricsHost: env.METRICS_HOST,
      logLevel: env.LOG_LEVEL,
      tracing: tracingSettings(env, 'resnet-gpu-worker'),
    };
  });

export type WorkerConfig = z.infer<typeof WorkerEnv>;

const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/** QUEUES' shards (REDIS_URL beside it is refused), or REDIS_URL's one. */
function shardsOf(
  env: { QUEUES?: string; REDIS_URL?: string; REDIS_TLS_CA?: string; KEY_PREFIX: string },
  ctx: z.RefinementCtx,
): ShardSpec[] | undefined {
  if (!env.QUEUES) {
    const url = env.REDIS_URL ?? DEFAULT_REDIS_URL;
    if (refuseTlsCaWithoutTls({ ...env, REDIS_URL: url }, ctx)) return undefined;
    return [{ name: new URL(url).host, url, transport: 'ioredis', prefix: env.KEY_PREFIX }];
  }
  if (env.REDIS_URL) {
    ctx.addIssue({ code: 'custom', path: ['REDIS_URL'], message: 'set beside QUEUES: list every broker in QUEUES, or unset QUEUES' });
    return undefined;
  }
  const shards = queuesVar(ctx, env.QUEUES, { prefix: env.KEY_PREFIX, rest: false });
  if (shards && env.REDIS_TLS_CA && !shards.some((shard) => shard.url.startsWith('rediss:'))) {
    ctx.addIssue({ code: 'custom', path: ['REDIS_TLS_CA'], message: 'set, but no QUEUES entry is rediss:// (TLS): unset REDIS_TLS_CA' });
    return undefined;
  }
  return shards;
}

/** The latest a stuck worker's job is taken over: CLAIM_IDLE_MS, plus up to half of it until the next pass. */
export const reclaimWithinMs = (config: Pick<WorkerConfig, 'claimIdleMs'>) => 1.5 * config.claimIdleMs;

/**
 * The batch size when BATCH_SIZE is unset (measured: docs/engines.md). A GPU computes a batch of 32
 * in about the time of one image, so big batches pay; libtensorflow (tfjs-node) is treated alike.
 * On the CPU a batch of N takes about N times one image: ONNX Runtime gains a little from 8 (its
 * threads stay busier), the tfjs wasm and cpu backends nothing, and a worker that grabs many jobs
 * keeps them from idle workers for seconds. A synthetic model stands in for a GPU in benchmarks:
 * a batch costs its delay whatever its size, so 32 as well.
 */
export function defaultBatchSize(engine: Pick<EngineInfo, 'name' | 'provider' | 'gpu'>): number {
  if (engine.gpu || engine.name === 'synthetic' || engine.provider === 'tensorflow') return 32;
  return engine.name === 'onnx' ? 8 : 4;
}

/** `auto` (undefined here) or an integer 1..max. */
function countOrAuto(fallback: string, max: number, auto: string) {
  return z
    .string()
    .default(fallback)
    .transform((value, ctx) => {
      if (value === 'auto') return undefined;
      if (/^\d+$/.test(value) && Number(value) >= 1 && Number(value) <= max) return Number(value);
      ctx.addIssue({ code: 'custom', message: `expected an integer from 1 to ${max}, or ${auto}` });
      return z.NEVER;
    });
}

/**
 * ENGINE, with what EXECUTION_PROVIDER and BACKEND imply: naming an ONNX Runtime provider picks
 * ONNX Runtime, naming a tfjs backend picks tfjs (so settings written before ENGINE existed, such
 * as BACKEND=tensorflow, keep their meaning). Contradictions are refused.
 */
function resolveEngine(
  env: { ENGINE: EngineChoice; EXECUTION_PROVIDER: ProviderChoice; BACKEND: BackendChoice },
  ctx: z.RefinementCtx,
): EngineChoice | undefined {
  const provider = env.EXECUTION_PROVIDER !== 'auto';
  const backend = env.BACKEND !== 'auto';
  const refuse = (path: string, message: string) => {
    ctx.addIssue({ code: 'custom', path: [path], message });
    return undefined;
  };
  if (provider && backend)
    return refuse(
      'EXECUTION_PROVIDER',
      `EXECUTION_PROVIDER=${env.EXECUTION_PROVIDER} is ONNX Runtime's, BACKEND=${env.BACKEND} is tfjs': set one of them`,
    );
  if (provider && env.ENGINE === 'tfjs')
    return refuse('EXECUTION_PROVIDER', `an ONNX Runtime provider, but ENGINE=tfjs (tfjs takes BACKEND)`);
  if (backend && env.ENGINE === 'onnx') return refuse('BACKEND', `a tfjs backend, but ENGINE=onnx (ONNX Runtime takes EXECUTION_PROVIDER)`);
  if (provider) return 'onnx';
  if (backend) return 'tfjs';
  return env.ENGINE;
}

export const parseWorkerConfig = (env: Record<string, string | undefined>): WorkerConfig => parseEnv(WorkerEnv, env);

/** undefined: a `synthetic:` value that is not one of the synthetic models. */
function modelSource(value: string): ModelSource | undefined {
  if (value === 'resnet50') return { kind: 'builtin' };
  if (value.startsWith('synthetic:')) {
    const match = SYNTHETIC_MODEL.exec(value);
    const delayMs = Number(match?.[1] ?? 0);
    return match && delayMs <= MAX_SYNTHETIC_DELAY_MS ? { kind: 'synthetic', delayMs } : undefined;
  }
  if (/^https?:\/\//i.test(value)) return { kind: 'url', url: value.endsWith('/') ? `${value}model.json` : value };
  // A directory holding model.json, or the model.json file itself.
  const path = resolve(value);
  return { kind: 'dir', path: basename(path) === 'model.json' ? dirname(path) : path };
}

function defaultModelName(model: ModelSource): string {
  if (model.kind === 'builtin') return BUILTIN_MODEL.name;
  if (model.kind === 'synthetic') return model.delayMs > 0 ? `synthetic:timer:${model.delayMs}` : 'synthetic:instant';
  if (model.kind === 'dir') return basename(model.path);
  const parts = new URL(model.url).pathname.split('/').filter(Boolean);
  return parts.at(-1) === 'model.json' ? (parts.at(-2) ?? 'model') : (parts.at(-1) ?? 'model');
}
