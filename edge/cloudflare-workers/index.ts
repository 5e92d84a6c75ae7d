/**
 * The Cloudflare Workers entry: the same Hono app as on Node, with the WASM codec and the Upstash
 * REST broker (one per shard of QUEUES, behind ../broker/sharded.ts). Settings come from `[vars]`
 * in wrangler.toml; UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN, or QUEUES (it holds the
 * tokens), are secrets (`wrangler secret put`).
 */
import { Redis } from '@upstash/redis/cloudflare';
import type { Context, ExecutionContext } from 'hono';
import { createApp } from '../app.ts';
import { createShardedBroker } from '../broker/sharded.ts';
import { createUpstashBroker } from '../broker/upstash.ts';
import { brokerLimits, parseEdgeConfig } from '../config.ts';
import { errorBody } from '../errors.ts';
import { createPhotonCodec } from './photon-codec.ts';
import { createLimiter } from '../middleware/rate-limit/index.ts';
import { ConfigError } from '../../shared/config.ts';
import { redisKeys } from '../../shared/keys.ts';
import { shardLogger } from '../../shared/shards.ts';
import { createLogger } from '../../shared/log.ts';
import enqueueJob from '../../shared/lua/enqueue-1.lua';
import { startTracing, type Tracing } from '../../shared/tracing/index.ts';

type Env = Record<string, string | undefined>;

/** Subrequests a request may make besides the broker's: the rate limiter (up to 2) and one heartbeats read. */
const SUBREQUESTS_NOT_THE_QUEUES = 3;

interface Edge {
  app: ReturnType<typeof createApp>;
  tracing?: Tracing;
}

let edge: Promise<Edge | undefined> | undefined;
let configError: string | undefined;

/** One app per isolate, built on its first request (bindings are only known then). */
function edgeFor(env: Env): Promise<Edge | undefined> {
  // A build that failed unexpectedly is tried again by the next request.
  edge ??= buildEdge(env).catch((error: unknown) => {
    edge = undefined;
    throw error;
  });
  return edge;
}

async function buildEdge(env: Env): Promise<Edge | undefined> {
  try {
    // Workers reach Redis over REST only.
    const config = parseEdgeConfig(env.QUEUES ? env : { ...env, EDGE_BROKER: 'upstash' });
    const tcp = config.shards.find((shard) => shard.transport !== 'upstash');
    if (tcp) throw new ConfigError(`QUEUES: ${tcp.name}: Cloudflare Workers reach Redis over Upstash REST only (https:// with a token)`);
    const logger = createLogger('edge', config.LOG_LEVEL);
    // Spans go out over fetch at the end of each request (see fetch below): one more subrequest.
    const tracing = config.tracing && (await startTracing(config.tracing, { log: logger, onFlushOnly: true }));
    const notTheQueues = SUBREQUESTS_NOT_THE_QUEUES + (tracing ? 1 : 0);
    const restClient = (db: { url: string; token?: string }) => new Redis({ url: db.url, token: db.token!, enableTelemetry: false });
    // Failover may enqueue a job on a second shard: each attempt gets its share of the subrequests.
    const maxAttempts = Math.min(2, config.shards.length);
    const brokers = config.shards.map((shard) => ({
      name: shard.name,
      region: shard.region,
      broker: createUpstashBroker({
        redis: restClient(shard),
        keys: redisKeys(shard.prefix),
        limits: brokerLimits(config),
        scripts: { enqueueJob },
        // A few are the rate limiter's and the admission estimate's, not the queue's.
        subrequests: config.WORKERS_SUBREQUESTS - notTheQueues,
        logger: shardLogger(logger, shard, config.shards.length),
      }),
    }));
    // No background probes: every read would be a subrequest of some request.
    const broker =
      brokers.length === 1
        ? brokers[0]!.broker
        : createShardedBroker(brokers, { region: config.EDGE_REGION, retryAfterSeconds: config.RETRY_AFTER_S, maxAttempts, logger });
    const rateLimit = config.rateLimit &&
      config.rateLimitDb && {
        limiter: createLimiter(restClient(config.rateLimitDb), config.rateLimit, redisKeys(config.rateLimitDb.prefix).rateLimit),
        clientAddress: (c: Context) => c.req.header('cf-connecting-ip'),
      };
    // The continent Cloudflare serves the request from (EU, NA, AS, ...): shards of that "region" first.
    const regionOf = (request: Request) => (request as { cf?: { continent?: string } }).cf?.continent;
    return { app: createApp({ codec: createPhotonCodec(), broker, config, logger, rateLimit, regionOf, tracing }), tracing };
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    configError = error.message;
    console.error(configError);
    return undefined;
  }
}

export default {
  async fetch(request: Request, env: Env, ctx: ExecutionContext) {
    const built = await edgeFor(env);
    if (!built) return Response.json(errorBody('internal_error', `The edge is misconfigured: ${configError}`), { status: 500 });
    const response = await built.app.fetch(request, env, ctx);
    // The request's spans have ended (the tracing middleware ends its root span before answering):
    // export them while the request lives, for an isolate may be frozen or evicted once it is done.
    if (built.tracing) ctx.waitUntil(built.tracing.flush());
    return response;
  },
};
