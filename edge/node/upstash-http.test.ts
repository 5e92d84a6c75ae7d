/**
 * The Node edge's undici transport as `@upstash/redis`' Requester, against the local Upstash REST
 * server and a real redis-server: the commands the edge sends (a script with a Z85 tensor, a
 * pipeline, GET of a JSON result, HGETALL) give what the library's own fetch client gives; errors
 * keep @upstash/redis' shape; a server that is not there fails after the retries; the event stream
 * carries a published message and refuses a bad token.
 */
import { randomBytes } from 'node:crypto';
import { errors, Redis as UpstashRedis } from '@upstash/redis';
import { Redis as IORedis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startRedisServer, type RedisServerHandle } from '../../dev/redis-server.ts';
import { startUpstashRestServer, type UpstashRestServer } from '../../dev/upstash-rest/server.ts';
import { createLogger } from '../../shared/log.ts';
import { z85Encode } from '../../shared/z85.ts';
import { createUpstashHttp, type UpstashHttp } from './upstash-http.ts';

const TOKEN = `http-test-${randomBytes(8).toString('hex')}`;
const logger = createLogger('upstash-http-test', 'silent');
let redisServer: RedisServerHandle;
let rest: UpstashRestServer;
let http: UpstashHttp;
let viaUndici: UpstashRedis;
let viaFetch: UpstashRedis;
let direct: IORedis;

beforeAll(async () => {
  redisServer = await startRedisServer();
  rest = await startUpstashRestServer({ redisUrl: redisServer.url, token: TOKEN, logger });
  http = createUpstashHttp({ url: rest.url, token: TOKEN });
  viaUndici = new UpstashRedis(http);
  viaFetch = new UpstashRedis({ url: rest.url, token: TOKEN, enableTelemetry: false });
  direct = new IORedis(redisServer.url);
});

afterAll(async () => {
  direct?.disconnect();
  await http?.close();
  await rest?.close();
  await redisServer?.stop();
});

describe('createUpstashHttp as the @upstash/redis transport', () => {
  it('runs a script with a tensor-sized argument, pipelines, GET and HGETALL like the fetch client', async () => {
    const tensor = z85Encode(randomBytes(150_528));
    const script = viaUndici.createScript<string>("return redis.call('XADD', KEYS[1], '*', 'tensor', ARGV[1])");
    const entryId = await script.exec(['http:jobs'], [tensor]);
    expect(entryId).toMatch(/^\d+-\d+$/);
    const [entry] = await direct.xrange('http:jobs', entryId, entryId);
    expect(entry![1][1]).toBe(tensor);

    const result = { ok: true, id: 'j1', predictions: [{ label: 'crème brûlée', probability: 0.98 }] };
    await direct.set('http:result', JSON.stringify(result));
    await direct.hset('http:workers', 'w1', JSON.stringify({ id: 'w1' }), 'w2', 'plain');
    for (const client of [viaUndici, viaFetch]) {
      expect(await client.get('http:result')).toEqual(result);
      expect(await client.get('http:missing')).toBeNull();
      expect(await client.hgetall('http:workers')).toEqual({ w1: { id: 'w1' }, w2: 'plain' });
      expect(await client.pipeline().incr('http:count').xlen('http:jobs').exec()).toEqual([expect.any(Number), 1]);
    }
  });

  it('answers a command Redis rejects with an UpstashError naming the command, not its arguments', async () => {
    const error = await viaUndici.eval('return redis.call("NOSUCHCOMMAND")', [], ['secret-argument']).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(errors.UpstashError);
    expect((error as Error).message).toMatch(/Unknown Redis command|unknown command/i);
    expect((error as Error).message).not.toContain('secret-argument');
  });

  it('refuses a wrong token, and fails after its retries when nothing listens', async () => {
    const wrong = createUpstashHttp({ url: rest.url, token: 'not-the-token' });
    await expect(new UpstashRedis(wrong).get('x')).rejects.toThrow(/Unauthorized/);
    await wrong.close();

    const nobody = createUpstashHttp({ url: `http://127.0.0.1:${await freePort()}`, token: TOKEN, retries: 2, backoffMs: () => 10 });
    const started = Date.now();
    await expect(new UpstashRedis(nobody).get('x')).rejects.toThrow(/ECONNREFUSED|connect/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(20); // two retries, 10 ms apart at least
    await nobody.close();
  });

  it('streams a subscription: the confirmation, then a message published meanwhile', async () => {
    const stop = new AbortController();
    const chunks = await http.eventStream('/subscribe/http:channel', stop.signal);
    let text = '';
    for await (const chunk of chunks) {
      text += chunk;
      if (text.includes('subscribe,http:channel,1')) await direct.publish('http:channel', '{"hello":"wörld"}');
      if (text.includes('message,')) break;
    }
    stop.abort();
    expect(text).toContain('data: subscribe,http:channel,1');
    expect(text).toContain('data: message,http:channel,{"hello":"wörld"}');

    const wrong = createUpstashHttp({ url: rest.url, token: 'not-the-token' });
    await expect(wrong.eventStream('/subscribe/http:channel', new AbortController().signal)).rejects.toThrow('subscribe answered HTTP 401');
    await wrong.close();
  });
});
