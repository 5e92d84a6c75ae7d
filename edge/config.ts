/**
 * The edge's settings, from environment variables (Node) or bindings (Workers).
 *
 * Which brokers it uses: every shard of `QUEUES` (shared/shards.ts); or one, over `EDGE_BROKER`,
 * by default Upstash REST when `UPSTASH_REDIS_REST_URL` is set, else a direct connection to `REDIS_URL`.
 */
import { z } from 'zod';
import {
  deadlineVar,
  intVar,
  keyPrefixVar,
  logLevelVar,
  parseEnv,
  redisTlsCaVar,
  redisUrlVar,
  refuseTlsCaWithoutTls,
  urlVar,
} from '../shared/config.ts';
import { WIRE_FORMATS } from '../shared/protocol.ts';
import { queuesVar, type ShardSpec } from '../shared/shards.ts';
import { TRACING_VARS, tracingSettings } from '../shared/tracing/config.ts';
import type { BrokerLimits } from './broker/broker.ts';
import { RESIZE_MODES } from './image/codec.ts';

const MiB = 1024 * 1024;

export const EdgeEnv = z
  .object({
    PORT: intVar(8787, 0, 65535),
    HOST: z.string().default('0.0.0.0'),
    KEY_PREFIX: keyPrefixVar(),
    MAX_BODY_BYTES: intVar(10 * MiB, 1024, 100 * MiB),
    MAX_PIXELS: intVar(40_000_000, 1, 1_000_000_000),
    // Most "image" files in one POST /predict (a batch request); MAX_BODY_BYTES bounds them all together.
    MAX_IMAGES_PER_REQUEST: intVar(8, 1, 64),
    DEADLINE_MS: deadlineVar(),
    // GET /readyz answers 200 only while some worker's heartbeat is at most this old.
    READY_WORKER_MAX_AGE_MS: intVar(15_000, 1_000, 3_600_000),
    QUEUE_MAX: intVar(512, 1, 10_000_000),
    RETRY_AFTER_S: intVar(1, 1, 3600),
    // Requests an edge process holds (tensor and upload in memory, retrying) while the queue is
    // unreachable; beyond it, 503 broker_unavailable at once.
    OUTAGE_HOLD_MAX: intVar(128, 0, 100_000),
    // Node edge only: Prometheus GET /metrics on this port of HOST (0: off).
    EDGE_METRICS_PORT: intVar(0, 0, 65535),
    // Cloudflare Workers only: subrequests one request may make (Free plan 50, Paid 1,000).
    WORKERS_SUBREQUESTS: intVar(50, 10, 100_000),
    // deadline: refuse at once (503 queue_full) a request the live workers could not answer before
    // its deadline, from their heartbeats; queue-max: refuse only at QUEUE_MAX (requests may wait for a 504).
    ADMISSION: z.enum(['deadline', 'queue-max'], { error: 'expected deadline or queue-max' }).default('deadline'),
    DEFAULT_RESIZE: z.enum(RESIZE_MODES).default('squash'),
    // What a job carries: the raw 224x224 pixels, or them as a JPEG or lossless WebP file (shared/protocol.ts).
    WIRE_FORMAT: z.enum(WIRE_FORMATS, { error: `expected one of ${WIRE_FORMATS.join(', ')}` }).default('raw'),
    EDGE_BROKER: z.enum(['upstash', 'ioredis']).optional(),
    // Several brokers (shards), instead of the single-broker settings: shared/shards.ts.
    QUEUES: z.string().optional(),
    // The shards whose "region" this is are tried first (the nearest).
    EDGE_REGION: z
      .string()
      .regex(/^[\w.-]+$/, { error: 'letters, digits, _ . - only' })
      .optional(),
    UPSTASH_REDIS_REST_URL: urlVar(['http:', 'https:']).optional(),
    UPSTASH_REDIS_REST_TOKEN: z.string().optional(),
    REDIS_URL: redisUrlVar().optional(),
    REDIS_TLS_CA: redisTlsCaVar(),
    API_KEYS: z
      .string()
      .transform((value) =>
        value
          .split(',')
          .map((key) => key.trim())
          .filter(Boolean),
      )
      .refine((keys) => keys.every((key) => /^[A-Za-z0-9._~+/-]{16,}=*$/.test(key)), {
        error: 'comma-separated keys of at least 16 characters from A-Z a-z 0-9 . _ ~ + / -',
      })
      .optional(),
    RATE_LIMIT: z
      .string()
      .regex(/^\d+\/\d+(ms|s|m|h|d)$/, { error: 'expected <requests>/<window>, e.g. 60/1m or 10/10s' })
      .optional(),
    CORS_ORIGINS: z.string().optional(),
    LOG_LEVEL: logLevelVar(),
    // Traces (OpenTelemetry): off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (shared/tracing/config.ts).
    ...TRACING_VARS,
  })
  .transform((env, ctx) => {
    const shards = env.QUEUES ? shardsOfQueues(env, ctx) : singleShard(env, ctx);
    if (!shards) return z.NEVER;
    if (env.EDGE_REGION && !shards.some((shard) => shard.region?.toLowerCase() === env.EDGE_REGION!.toLowerCase())) {
      ctx.addIssue({
        code: 'custom',
        path: ['EDGE_REGION'],
        message: env.QUEUES
          ? `no shard of QUEUES has "region": "${env.EDGE_REGION}" (regions: ${[...new Set(shards.map((s) => s.region).filter(Boolean))].join(', ') || 'none'})`
          : 'picks among the shards of QUEUES by their "region": set QUEUES, or unset EDGE_REGION',
      });
      return z.NEVER;
    }
    // The rate limiter's counters live on an Upstash REST database: UPSTASH_REDIS_REST_URL's (even
    // with EDGE_BROKER=ioredis), or the first of QUEUES.
    const rateLimitDb = env.QUEUES
      ? shards.find((shard) => shard.transport === 'upstash')
      : env.UPSTASH_REDIS_REST_URL && env.UPSTASH_REDIS_REST_TOKEN
        ? { url: env.UPSTASH_REDIS_REST_URL, token: env.UPSTASH_REDIS_REST_TOKEN, prefix: env.KEY_PREFIX }
        : undefined;
    if (env.RATE_LIMIT && !rateLimitDb) {
      ctx.addIssue({
        code: 'custom',
        path: ['RATE_LIMIT'],
        message: env.QUEUES
          ? 'rate limiting runs on an Upstash REST database: list one in QUEUES (the first is used)'
          : 'rate limiting runs on the Upstash REST database: set UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN too',
      });
      return z.NEVER;
    }
    return {
      ...env,
      shards,
      rateLimitDb: rateLimitDb && { url: rateLimitDb.url, token: rateLimitDb.token!, prefix: rateLimitDb.prefix },
      apiKeys: env.API_KEYS ?? [],
      rateLimit: env.RATE_LIMIT ? parseRateLimit(env.RATE_LIMIT) : undefined,
      corsOrigins: env.CORS_ORIGINS?.split(',')
        .map((origin) => origin.trim())
        .filter(Boolean),
      tracing: tracingSettings(env, 'resnet-edge'),
    };
  });
export type EdgeConfig = z.infer<typeof EdgeEnv>;

interface BrokerEnv {
  KEY_PREFIX: string;
  EDGE_BROKER?: 'upstash' | 'ioredis';
  QUEUES?: string;
  UPSTASH_REDIS_REST_URL?: string;
  UPSTASH_REDIS_REST_TOKEN?: string;
  REDIS_URL?: string;
  REDIS_TLS_CA?: string;
}

/** QUEUES' shards; the single-broker settings beside it are refused (which would win is not obvious). */
function shardsOfQueues(env: BrokerEnv, ctx: z.RefinementCtx): ShardSpec[] | undefined {
  for (const name of ['EDGE_BROKER', 'REDIS_URL', 'UPSTASH_REDIS_REST_URL', 'UPSTASH_REDIS_REST_TOKEN'] as const) {
    if (env[name] === undefined) continue;
    ctx.addIssue({ code: 'custom', path: [name], message: 'set beside QUEUES: list every broker in QUEUES, or unset QUEUES' });
    return undefined;
  }
  const shards = queuesVar(ctx, env.QUEUES!, { prefix: env.KEY_PREFIX, rest: true });
  if (shards && env.REDIS_TLS_CA && !shards.some((shard) => shard.url.startsWith('rediss:'))) {
    ctx.addIssue({ code: 'custom', path: ['REDIS_TLS_CA'], message: 'set, but no QUEUES entry is rediss:// (TLS): unset REDIS_TLS_CA' });
    return undefined;
  }
  return shards;
}

/** The one broker of the single-broker settings, as a list of one shard. */
function singleShard(env: BrokerEnv, ctx: z.RefinementCtx): ShardSpec[] | undefined {
  const broker = env.EDGE_BROKER ?? (env.UPSTASH_REDIS_REST_URL ? 'upstash' : env.REDIS_URL ? 'ioredis' : undefined);
  if (!broker) {
    ctx.addIssue({
      code: 'custom',
      path: ['UPSTASH_REDIS_REST_URL'],
      message:
        'set UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN (Upstash REST), or REDIS_URL (direct connection), or QUEUES (several)',
    });
    return undefined;
  }
  if (broker === 'upstash' && (!env.UPSTASH_REDIS_REST_URL || !env.UPSTASH_REDIS_REST_TOKEN)) {
    ctx.addIssue({
      code: 'custom',
      path: [env.UPSTASH_REDIS_REST_URL ? 'UPSTASH_REDIS_REST_TOKEN' : 'UPSTASH_REDIS_REST_URL'],
      message: 'the Upstash REST broker needs both UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN',
    });
    return undefined;
  }
  if (refuseTlsCaWithoutTls(env, ctx)) return undefined;
  if (broker === 'ioredis' && !env.REDIS_URL) {
    ctx.addIssue({ code: 'custom', path: ['REDIS_URL'], message: 'EDGE_BROKER=ioredis needs REDIS_URL' });
    return undefined;
  }
  const url = broker === 'upstash' ? env.UPSTASH_REDIS_REST_URL! : env.REDIS_URL!;
  return [
    {
      name: new URL(url).host,
      url,
      transport: broker,
      ...(broker === 'upstash' && { token: env.UPSTASH_REDIS_REST_TOKEN! }),
      prefix: env.KEY_PREFIX,
    },
  ];
}

/** `60/1m` -> 60 requests per sliding window of "1 m" (@upstash/ratelimit's duration format). */
function parseRateLimit(rule: string): { requests: number; window: `${number} ${'ms' | 's' | 'm' | 'h' | 'd'}` } {
  const [, requests, amount, unit] = /^(\d+)\/(\d+)(ms|s|m|h|d)$/.exec(rule)!;
  return { requests: Number(requests), window: `${Number(amount)} ${unit as 'ms' | 's' | 'm' | 'h' | 'd'}` };
}

export const parseEdgeConfig = (env: Record<string, string | undefined>): EdgeConfig => parseEnv(EdgeEnv, env);

/** The queue limits both brokers take. */
export const brokerLimits = (config: EdgeConfig): BrokerLimits => ({
  queueMax: config.QUEUE_MAX,
  retryAfterSeconds: config.RETRY_AFTER_S,
  holdMax: config.OUTAGE_HOLD_MAX,
  admitByDeadline: config.ADMISSION === 'deadline',
});
