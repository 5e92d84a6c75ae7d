/**
 * The Cloudflare Workers entry: the same Hono app as on Node, with the WASM codec and the Upstash
 * REST broker. Settings come from `[vars]` in wrangler.toml; UPSTASH_REDIS_REST_URL and
 * UPSTASH_REDIS_REST_TOKEN are secrets (`wrangler secret put`).
 */
import { Redis } from '@upstash/redis/cloudflare';
import type { Context, ExecutionContext } from 'hono';
import { createApp } from '../app.ts';
import { createUpstashBroker } from '../broker/upstash.ts';
import { brokerLimits, parseEdgeConfig } from '../config.ts';
import { errorBody } from '../errors.ts';
import { createPhotonCodec } from './photon-codec.ts';
import { createLimiter } from '../middleware/rate-limit/index.ts';
import { ConfigError } from '../../shared/config.ts';
import { redisKeys } from '../../shared/keys.ts';
import { createLogger } from '../../shared/log.ts';
import enqueueJob from '../../shared/lua/enqueue-1.lua';

type Env = Record<string, string | undefined>;

/** Subrequests a request may make besides the broker's: the rate limiter (up to 2) and one heartbeats read. */
const SUBREQUESTS_NOT_THE_QUEUES = 3;

let app: ReturnType<typeof createApp> | undefined;
let configError: string | undefined;

/** One app per isolate, built on its first request (bindings are only known then). */
function appFor(env: Env) {
  if (app || configError) return app;
  try {
    const config = parseEdgeConfig({ ...env, EDGE_BROKER: 'upstash' });
    const logger = createLogger('edge', config.LOG_LEVEL);
    const redis = new Redis({ url: config.UPSTASH_REDIS_REST_URL!, token: config.UPSTASH_REDIS_REST_TOKEN!, enableTelemetry: false });
    const broker = createUpstashBroker({
      redis,
      keys: redisKeys(config.KEY_PREFIX),
      limits: brokerLimits(config),
      scripts: { enqueueJob },
      // A few are the rate limiter's and the admission estimate's, not the queue's.
      subrequests: config.WORKERS_SUBREQUESTS - SUBREQUESTS_NOT_THE_QUEUES,
      logger,
    });
    const rateLimit = config.rateLimit && {
      limiter: createLimiter(redis, config.rateLimit, redisKeys(config.KEY_PREFIX).rateLimit),
      clientAddress: (c: Context) => c.req.header('cf-connecting-ip'),
    };
    app = createApp({ codec: createPhotonCodec(), broker, config, logger, rateLimit });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    configError = error.message;
    console.error(configError);
  }
  return app;
}

export default {
  fetch(request: Request, env: Env, ctx: ExecutionContext) {
    const edge = appFor(env);
    if (!edge) return Response.json(errorBody('internal_error', `The edge is misconfigured: ${configError}`), { status: 500 });
    return edge.fetch(request, env, ctx);
  },
};
