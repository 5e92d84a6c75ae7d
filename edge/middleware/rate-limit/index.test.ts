import { Redis as UpstashRedis } from '@upstash/redis';
import { Redis } from 'ioredis';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLimiter, rateLimit } from './index.ts';
import { startRedisServer, type RedisServerHandle } from '../../../dev/redis-server.ts';
import { startUpstashRestServer } from '../../../dev/upstash-rest/server.ts';
import { createLogger } from '../../../shared/log.ts';

let redisServer: RedisServerHandle;
let rest: Awaited<ReturnType<typeof startUpstashRestServer>>;
let app: Hono;

beforeAll(async () => {
  redisServer = await startRedisServer();
  rest = await startUpstashRestServer({
    redisUrl: redisServer.url,
    token: 'rate-limit-test-token',
    port: 0,
    logger: createLogger('t', 'silent'),
  });
  const redis = new UpstashRedis({ url: rest.url, token: 'rate-limit-test-token', enableTelemetry: false });
  const limiter = createLimiter(redis, { requests: 2, window: '30 s' }, 'test:ratelimit');
  app = new Hono()
    .use('/predict', rateLimit({ limiter, clientAddress: (c) => c.req.header('x-test-client') }))
    .post('/predict', (c) => c.json({ success: true }));
});
afterAll(async () => {
  await rest?.close();
  await redisServer?.stop();
});

const post = (headers: Record<string, string>) => app.request('/predict', { method: 'POST', headers });

describe('rateLimit (real @upstash/ratelimit over the Upstash REST protocol)', () => {
  it('answers 429 + Retry-After past the limit, per API key', async () => {
    const alice = { authorization: 'Bearer k_live_alice_0123456789' };
    expect((await post(alice)).status).toBe(200);
    const second = await post(alice);
    expect(second.status).toBe(200);
    expect(second.headers.get('ratelimit-remaining')).toBe('0');
    const third = await post(alice);
    expect(third.status).toBe(429);
    expect(Number(third.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Number(third.headers.get('retry-after'))).toBeLessThanOrEqual(30);
    expect(await third.json()).toMatchObject({ success: false, error: { code: 'rate_limited' } });
    // Another key has its own budget.
    expect((await post({ authorization: 'Bearer k_live_bob_000000000000' })).status).toBe(200);
  });

  it('limits by client address without a key, and never stores a raw key', async () => {
    for (let i = 0; i < 2; i++) expect((await post({ 'x-test-client': '203.0.113.7' })).status).toBe(200);
    expect((await post({ 'x-test-client': '203.0.113.7' })).status).toBe(429);
    expect((await post({ 'x-test-client': '203.0.113.8' })).status).toBe(200);
    const redis = new Redis(redisServer.url);
    const keys = await redis.keys('test:ratelimit*');
    redis.disconnect();
    expect(keys.some((k) => k.includes('203.0.113.7'))).toBe(true);
    expect(keys.join(' ')).not.toContain('alice');
  });

  it('lets requests through when the limiter cannot reach Redis', async () => {
    const broken = createLimiter(
      new UpstashRedis({ url: 'http://127.0.0.1:9', token: 'x', retry: false, enableTelemetry: false }),
      { requests: 1, window: '1 s' },
      'x',
    );
    const open = new Hono()
      .use(rateLimit({ limiter: broken, clientAddress: () => '1.2.3.4', logger: createLogger('t', 'silent') }))
      .post('/', (c) => c.text('ok'));
    expect((await open.request('/', { method: 'POST' })).status).toBe(200);
  });
});
