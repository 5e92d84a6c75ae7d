/**
 * Who may call: API keys, CORS and request ids wired into the real app (Node edge config), and
 * logs that carry request ids but never keys or image bytes.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useRedisServer } from './helpers/fixtures.ts';
import { createApp } from '../edge/app.ts';
import { parseEdgeConfig } from '../edge/config.ts';
import { createNodeBroker } from '../edge/node/server.ts';
import { createSharpCodec } from '../edge/node/sharp-codec.ts';
import type { Broker } from '../edge/broker/broker.ts';
import { ConfigError } from '../shared/config.ts';

const KEY = 'k_live_edge_access_0123456789';
const logLines: string[] = [];
const db = useRedisServer();
let broker: Broker;
let app: ReturnType<typeof createApp>;

beforeAll(async () => {
  const config = parseEdgeConfig({
    REDIS_URL: db.url,
    API_KEYS: `${KEY}, k_live_second_key_98765`,
    CORS_ORIGINS: 'https://app.example',
  });
  const logger = pino(
    {},
    new Writable({
      write: (chunk, _encoding, done) => {
        logLines.push(String(chunk));
        done();
      },
    }),
  );
  broker = await createNodeBroker(config, logger);
  app = createApp({ codec: createSharpCodec({ maxPixels: config.MAX_PIXELS }), broker, config, logger });
});
afterAll(async () => {
  await broker?.close();
});

const textUpload = (headers: Record<string, string> = {}) =>
  app.request('/predict', { method: 'POST', headers: { 'content-type': 'image/png', ...headers }, body: 'SECRET-IMAGE-BYTES' });

describe('API keys', () => {
  it('answers 401 JSON without a valid key, and lets a valid key through to validation', async () => {
    const missing = await textUpload();
    expect(missing.status).toBe(401);
    expect((await missing.json()).error.code).toBe('unauthorized');
    expect(missing.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect((await textUpload({ authorization: 'Bearer k_live_wrong_key_000000000' })).status).toBe(401);
    const ok = await textUpload({ authorization: `Bearer ${KEY}` });
    expect(ok.status).toBe(415); // past auth, refused by validation
    expect((await textUpload({ authorization: 'Bearer k_live_second_key_98765' })).status).toBe(415);
  });

  it('keeps /healthz open', async () => {
    expect((await app.request('/healthz')).status).toBe(200);
  });

  it('never logs keys or image bytes, and logs request ids', async () => {
    const response = await textUpload({ authorization: `Bearer ${KEY}` });
    const id = response.headers.get('x-request-id');
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    const logs = logLines.join('');
    expect(logs).toContain(id);
    expect(logs).not.toContain(KEY);
    expect(logs).not.toContain('SECRET-IMAGE-BYTES');
  });

  it('ignores a client-sent request id (it names Redis keys)', async () => {
    const response = await textUpload({ authorization: `Bearer ${KEY}`, 'x-request-id': 'chosen-by-client' });
    expect(response.headers.get('x-request-id')).not.toBe('chosen-by-client');
  });
});

describe('CORS', () => {
  const preflight = (origin: string) =>
    app.request('/predict', {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization' },
    });

  it('allows the configured origin and no other', async () => {
    const allowed = await preflight('https://app.example');
    expect(allowed.headers.get('access-control-allow-origin')).toBe('https://app.example');
    expect(allowed.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('authorization');
    const other = await preflight('https://evil.example');
    expect(other.headers.get('access-control-allow-origin')).not.toBe('https://evil.example');
  });
});

describe('config', () => {
  it('refuses short API keys and a rate limit without the Upstash REST database', () => {
    expect(() => parseEdgeConfig({ REDIS_URL: db.url, API_KEYS: 'short' })).toThrow(ConfigError);
    expect(() => parseEdgeConfig({ REDIS_URL: db.url, RATE_LIMIT: '10/1m' })).toThrow(
      /RATE_LIMIT: rate limiting runs on the Upstash REST database/,
    );
    expect(() => parseEdgeConfig({ REDIS_URL: db.url, RATE_LIMIT: 'ten per minute' })).toThrow(/expected <requests>\/<window>/);
    expect(
      parseEdgeConfig({ UPSTASH_REDIS_REST_URL: 'http://127.0.0.1:1', UPSTASH_REDIS_REST_TOKEN: 't', RATE_LIMIT: '60/1m' }).rateLimit,
    ).toEqual({ requests: 60, window: '1 m' });
  });
});
