/**
 * Per-caller rate limit on the same Upstash REST database as the queue (@upstash/ratelimit,
 * sliding window). The caller is the API key when keys are configured (stored hashed, never
 * raw), else the client's IP address. Over the limit: 429 with Retry-After. If Redis cannot be
 * reached the request is let through: the queue answers 503 on its own then.
 *
 * @example
 * const limiter = new Ratelimit({ redis, limiter: Ratelimit.slidingWindow(60, '60 s') });
 * app.use('/predict', rateLimit({ limiter, clientAddress: (c) => c.req.header('cf-connecting-ip') }));
 */
import { Ratelimit } from '@upstash/ratelimit';
import type { Context, MiddlewareHandler } from 'hono';
import { errorBody } from '../../errors.ts';
import type { Logger } from '../../../shared/log.ts';

export interface RateLimitOptions {
  limiter: Pick<Ratelimit, 'limit'>;
  /** The client's address, as the runtime knows it (socket on Node, cf-connecting-ip on Workers). */
  clientAddress: (c: Context) => string | undefined;
  logger?: Logger;
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** Who is calling: a hash of the bearer key if there is one, else the address. */
async function callerOf(c: Context, clientAddress: RateLimitOptions['clientAddress']): Promise<string> {
  const key = /^Bearer\s+(.+)$/i.exec(c.req.header('authorization') ?? '')?.[1];
  if (key) return `key:${(await sha256Hex(key)).slice(0, 32)}`;
  return `ip:${clientAddress(c) ?? 'unknown'}`;
}

export function rateLimit({ limiter, clientAddress, logger }: RateLimitOptions): MiddlewareHandler {
  return async (c, next) => {
    let verdict;
    try {
      verdict = await limiter.limit(await callerOf(c, clientAddress));
    } catch (error) {
      logger?.warn({ err: error }, 'rate limiter unavailable; letting the request through');
      return next();
    }
    c.header('RateLimit-Limit', String(verdict.limit));
    c.header('RateLimit-Remaining', String(verdict.remaining));
    if (!verdict.success) {
      const retryAfter = Math.max(1, Math.ceil((verdict.reset - Date.now()) / 1000));
      return c.json(errorBody('rate_limited', `Rate limit of ${verdict.limit} requests exceeded; retry in ${retryAfter} s`), 429, {
        'Retry-After': String(retryAfter),
      });
    }
    return next();
  };
}

/** A sliding-window limiter over an Upstash REST client, e.g. 60 requests per `'1 m'`. */
export function createLimiter(
  redis: ConstructorParameters<typeof Ratelimit>[0]['redis'],
  rule: { requests: number; window: Parameters<typeof Ratelimit.slidingWindow>[1] },
  prefix: string,
): Ratelimit {
  return new Ratelimit({ redis, limiter: Ratelimit.slidingWindow(rule.requests, rule.window), prefix, analytics: false });
}
