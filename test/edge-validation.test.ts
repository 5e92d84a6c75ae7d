/**
 * The edge refuses bad uploads with the documented status and JSON error, over app.request and
 * over real HTTP, and a refused upload queues nothing (checked on a real redis-server).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useRedisServer } from './helpers/fixtures.ts';
import { createApp } from '../edge/app.ts';
import { parseEdgeConfig } from '../edge/config.ts';
import { createNodeBroker, startNodeEdge, type NodeEdge } from '../edge/node/server.ts';
import { createSharpCodec } from '../edge/node/sharp-codec.ts';
import type { Broker } from '../edge/broker/broker.ts';
import { redisKeys } from '../shared/keys.ts';
import { createLogger } from '../shared/log.ts';
import sharp from 'sharp';
import { freePort } from '../dev/redis-server.ts';
import { badUploads, chunkedBody, expectError } from './helpers/bad-uploads.ts';

const MAX_BODY_BYTES = 256 * 1024;
const logger = createLogger('test', 'silent');
const db = useRedisServer();
let broker: Broker;
let app: ReturnType<typeof createApp>;
let edge: NodeEdge;

beforeAll(async () => {
  const config = parseEdgeConfig({ REDIS_URL: db.url, MAX_BODY_BYTES: String(MAX_BODY_BYTES), PORT: '0', HOST: '127.0.0.1' });
  broker = await createNodeBroker(config, logger);
  app = createApp({ codec: createSharpCodec({ maxPixels: config.MAX_PIXELS }), broker, config, logger });
  edge = await startNodeEdge(config, logger);
});

afterAll(async () => {
  await edge?.close();
  await broker?.close();
});

const cases = badUploads(MAX_BODY_BYTES);

describe('bad uploads', () => {
  it.each(cases)('app.request: $name -> $status $code', async ({ init, path, status, code }) => {
    await expectError(await app.request(path ?? '/predict', init()), status, code);
  });

  it.each(cases)('HTTP: $name -> $status $code', async ({ init, path, status, code }) => {
    await expectError(await fetch(edge.url + (path ?? '/predict'), init()), status, code);
  });

  it('refuses a chunked body once it streams past the limit', async () => {
    const body = chunkedBody(4 * MAX_BODY_BYTES);
    const response = await fetch(`${edge.url}/predict`, {
      method: 'POST',
      headers: { 'content-type': 'image/jpeg' },
      body,
      duplex: 'half',
    } as RequestInit);
    await expectError(response, 413, 'payload_too_large');
  });

  it('answers requests the HTTP parser rejects with JSON too', async () => {
    const { connect } = await import('node:net');
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = connect(edge.port, '127.0.0.1', () =>
        socket.write('POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n'),
      );
      let data = '';
      socket.on('data', (chunk) => (data += chunk));
      socket.on('end', () => resolve(data));
      socket.on('error', reject);
    });
    expect(reply).toMatch(/^HTTP\/1\.1 400/);
    expect(JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4))).toMatchObject({ success: false, error: { code: 'bad_request' } });
  });

  it('GET /predict names the allowed method', async () => {
    expect((await app.request('/predict')).headers.get('allow')).toBe('POST');
  });

  it('queued nothing for any refused upload', async () => {
    expect(await db.redis.xlen(redisKeys().stream)).toBe(0);
  });
});

describe('error logs and Retry-After', () => {
  it('a 5xx is logged once with its reason as `err` (message, cause and stack), no second "msg" key; its Retry-After is RETRY_AFTER_S', async () => {
    const lines: string[] = [];
    const capture = createLogger('edge', 'info', { write: (line: string) => void lines.push(line) });
    // A REST URL where nothing listens: every call fails with the transport's own error.
    const config = parseEdgeConfig({
      UPSTASH_REDIS_REST_URL: `http://127.0.0.1:${await freePort()}`,
      UPSTASH_REDIS_REST_TOKEN: 'x'.repeat(20),
      DEADLINE_MS: '300',
      RETRY_AFTER_S: '7',
    });
    const down = await createNodeBroker(config, capture);
    try {
      const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#08f' } })
        .png()
        .toBuffer();
      const downApp = createApp({ codec: createSharpCodec({ maxPixels: config.MAX_PIXELS }), broker: down, config, logger: capture });
      const response = await downApp.request('/predict', {
        method: 'POST',
        headers: { 'content-type': 'image/png' },
        body: new Uint8Array(png),
      });
      expect(response.status).toBe(503);
      expect(response.headers.get('retry-after'), 'RETRY_AFTER_S').toBe('7');
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe('broker_unavailable');
      const failed = lines.filter((line) => line.includes('"request failed"'));
      expect(failed).toHaveLength(1);
      expect(failed[0]!.match(/"msg"/g)).toHaveLength(1);
      const record = JSON.parse(failed[0]!) as { code: string; err: { type: string; message: string; stack: string } };
      expect(record.code).toBe('broker_unavailable');
      expect(record.err.type).toBe('ApiError');
      expect(record.err.message).toMatch(/The queue is unavailable/);
      expect(record.err.stack).toMatch(/caused by:/i);
      expect(failed[0]).not.toContain('x'.repeat(20)); // the token
      const models = await downApp.request('/v1/models');
      expect(models.status).toBe(503);
      expect(models.headers.get('retry-after'), 'RETRY_AFTER_S').toBe('7');
      expect(((await models.json()) as { error: { code: string } }).error.code).toBe('broker_unavailable');
    } finally {
      await down.close();
    }
  });
});
