/**
 * The local Upstash REST server (dev/upstash-rest) against the REAL `@upstash/redis` client, with
 * its defaults (base64 responses, automatic deserialization, auto-pipelining), in front of a real
 * redis-server. A plain ioredis connection checks what actually landed in Redis and publishes.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Redis as UpstashRedis } from '@upstash/redis';
import { Redis as IORedis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startRedisServer, type RedisServerHandle } from '../dev/redis-server.ts';
import { MAX_BODY_BYTES, startUpstashRestServer, type UpstashRestServer } from '../dev/upstash-rest/server.ts';
import { createLogger } from '../shared/log.ts';
import { chunkedBody } from './helpers/bad-uploads.ts';

const TOKEN = `test-${randomBytes(12).toString('hex')}`;
const logger = createLogger('upstash-rest-test', 'silent');
const run = randomBytes(4).toString('hex'); // key prefix, so assertions never see another test's keys
const key = (name: string) => `${run}:${name}`;

let redisServer: RedisServerHandle;
let rest: UpstashRestServer;
let redis: UpstashRedis;
let direct: IORedis;

beforeAll(async () => {
  redisServer = await startRedisServer();
  rest = await startUpstashRestServer({ redisUrl: redisServer.url, token: TOKEN, logger });
  redis = new UpstashRedis({ url: rest.url, token: TOKEN });
  direct = new IORedis(redisServer.url);
});

afterAll(async () => {
  await direct?.quit();
  await rest?.close();
  await redisServer?.stop();
});

/** A raw request, to check status codes and bodies the client hides. */
async function raw(path: string, init: RequestInit & { auth?: string | null; base64?: boolean } = {}) {
  const headers = new Headers(init.headers);
  if (init.auth !== null) headers.set('Authorization', `Bearer ${init.auth ?? TOKEN}`);
  if (init.base64) headers.set('Upstash-Encoding', 'base64');
  const response = await fetch(`${rest.url}${path}`, { ...init, headers });
  return { status: response.status, type: response.headers.get('content-type'), body: (await response.json()) as unknown };
}

async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 3_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const sha1 = (text: string) => createHash('sha1').update(text).digest('hex');

describe('commands through @upstash/redis', () => {
  it('sets and gets strings, JSON objects and base64 text; missing keys are null', async () => {
    expect(await redis.set(key('s'), 'hello, world')).toBe('OK');
    expect(await redis.get(key('s'))).toBe('hello, world');
    expect(await direct.get(key('s'))).toBe('hello, world');

    const job = { id: 'abc', labels: ['beagle', 'hound'], score: 0.93, nested: { ok: true } };
    await redis.set(key('json'), job);
    expect(await redis.get(key('json'))).toEqual(job);

    const b64 = Buffer.from([0, 1, 2, 250, 251, 255, 10, 13]).toString('base64');
    await redis.set(key('b64'), b64);
    expect(await redis.get(key('b64'))).toBe(b64);

    const unicode = 'héllo wörld – 日本 🐶';
    await redis.set(key('unicode'), unicode);
    expect(await redis.get(key('unicode'))).toBe(unicode);
    expect(await direct.get(key('unicode'))).toBe(unicode);

    expect(await redis.get(key('missing'))).toBeNull();
  });

  it('returns integers as numbers', async () => {
    expect(await redis.incr(key('n'))).toBe(1);
    expect(await redis.incrby(key('n'), 41)).toBe(42);
    expect(await redis.exists(key('n'), key('missing'))).toBe(1);
  });

  it('handles hashes and lists', async () => {
    expect(await redis.hset(key('h'), { name: 'beagle', count: 3, meta: { a: 1 } })).toBe(3);
    expect(await redis.hgetall(key('h'))).toEqual({ name: 'beagle', count: 3, meta: { a: 1 } });
    expect(await redis.hget(key('h'), 'name')).toBe('beagle');

    expect(await redis.rpush(key('l'), 'a', 'b', 'c')).toBe(3);
    expect(await redis.lpush(key('l'), 'z')).toBe(4);
    expect(await redis.lrange(key('l'), 0, -1)).toEqual(['z', 'a', 'b', 'c']);
    expect(await redis.lpop(key('l'))).toBe('z');
    expect(await redis.llen(key('l'))).toBe(3);

    // Replies that ioredis would reshape (HGETALL, WITHSCORES, XREAD) must reach the client as Redis sent them.
    expect(await raw('/', { method: 'POST', body: JSON.stringify(['HGETALL', key('h')]) })).toMatchObject({
      body: { result: expect.arrayContaining(['name', 'beagle']) },
    });
    await redis.zadd(key('z'), { score: 1.5, member: 'a' }, { score: 2, member: 'b' });
    expect(await redis.zrange(key('z'), 0, -1, { withScores: true })).toEqual(['a', 1.5, 'b', 2]);
    expect(await redis.zscore(key('z'), 'a')).toBe(1.5);
  });

  it('runs explicit pipelines and MULTI/EXEC transactions', async () => {
    const p = redis.pipeline();
    p.set(key('p'), 'v');
    p.incr(key('pn'));
    p.get(key('p'));
    p.get(key('missing'));
    expect(await p.exec()).toEqual(['OK', 1, 'v', null]);

    const tx = redis.multi();
    tx.set(key('t'), 'one');
    tx.incr(key('tn'));
    tx.incr(key('tn'));
    tx.get(key('t'));
    expect(await tx.exec()).toEqual(['OK', 1, 2, 'one']);

    // A runtime error inside the transaction fails that command only, as in Redis (no rollback).
    const failing = redis.multi();
    failing.set(key('t2'), 'text');
    failing.incr(key('t2'));
    await expect(failing.exec()).rejects.toThrow(/Command 2 \[ incr \] failed: ERR value is not an integer/);
    expect(await direct.get(key('t2'))).toBe('text');
  });

  it('surfaces Redis error replies as errors', async () => {
    await redis.set(key('notnum'), 'abc');
    await expect(redis.incr(key('notnum'))).rejects.toThrow(/ERR value is not an integer or out of range/);
    // One failing command in an auto-pipelined batch does not spoil the others.
    const [bad, good] = await Promise.allSettled([redis.incr(key('notnum')), redis.get(key('notnum'))]);
    expect(bad.status).toBe('rejected');
    expect(good).toEqual({ status: 'fulfilled', value: 'abc' });
  });

  it('runs Lua: EVAL returning a string and a nested array, and scripts via EVALSHA', async () => {
    expect(await redis.eval('return ARGV[1]', [], ['from lua'])).toBe('from lua');
    expect(await redis.eval("return {1, 'two', {3, 'four'}, redis.status_reply('OK')}", [], [])).toEqual([1, 'two', [3, 'four'], 'OK']);

    const source = `return redis.call('GET', KEYS[1]) .. ':' .. ARGV[1] -- ${run}`;
    await redis.set(key('lua'), 'value');
    expect(await direct.script('EXISTS', sha1(source))).toEqual([0]);
    const script = redis.createScript<string>(source);
    // First call: EVALSHA -> NOSCRIPT -> EVAL fallback (the error must reach the client intact).
    expect(await script.exec([key('lua')], ['arg'])).toBe('value:arg');
    expect(await direct.script('EXISTS', sha1(source))).toEqual([1]);
    expect(await script.evalsha([key('lua')], ['again'])).toBe('value:again');
  });

  it('handles streams: XADD, XLEN, XRANGE', async () => {
    const id = await redis.xadd(key('stream'), '*', { job: 'j1', tensor: 'AAEC' });
    expect(id).toMatch(/^\d+-\d+$/);
    await redis.xadd(key('stream'), '*', { job: 'j2', tensor: 'AwQF' });
    expect(await redis.xlen(key('stream'))).toBe(2);
    const entries = await redis.xrange(key('stream'), '-', '+');
    expect(Object.keys(entries)).toHaveLength(2);
    expect(entries[id]).toEqual({ job: 'j1', tensor: 'AAEC' });
    const read = await redis.xread(key('stream'), '0-0', { count: 1 });
    expect(read).toEqual([[key('stream'), [[id, ['job', 'j1', 'tensor', 'AAEC']]]]]);
  });

  it('refuses blocking commands with a clear error', async () => {
    await expect(redis.xread(key('stream'), '0-0', { blockMS: 1_000 })).rejects.toThrow(/blocking command XREAD BLOCK is not supported/);
    const blpop = await raw('/', { method: 'POST', body: JSON.stringify(['BLPOP', key('q'), '0']) });
    expect(blpop).toMatchObject({ status: 400, body: { error: expect.stringMatching(/blocking command BLPOP/) } });
    const subscribe = await raw('/', { method: 'POST', body: JSON.stringify(['SUBSCRIBE', key('c')]) });
    expect(subscribe).toMatchObject({ status: 400, body: { error: expect.stringMatching(/\/subscribe\/<channel>/) } });
  });
});

describe('authentication', () => {
  it('rejects a wrong token (the client throws) and a missing one (401 JSON)', async () => {
    const wrong = new UpstashRedis({ url: rest.url, token: 'not-the-token' });
    await expect(wrong.get(key('s'))).rejects.toThrow(/Unauthorized/);

    expect(await raw('/', { method: 'POST', body: '["PING"]', auth: null })).toEqual({
      status: 401,
      type: expect.stringContaining('application/json'),
      body: { error: 'Unauthorized' },
    });
    expect((await raw('/pipeline', { method: 'POST', body: '[["PING"]]', auth: `${TOKEN}x` })).status).toBe(401);
    expect((await raw('/subscribe/x', { method: 'POST', auth: TOKEN.slice(0, -1) })).status).toBe(401);
    expect(await raw('/', { method: 'POST', body: '["PING"]' })).toMatchObject({ status: 200, body: { result: 'PONG' } });
  });

  it('accepts the token as the _token query parameter, as Upstash does', async () => {
    expect(await raw(`/ping?_token=${TOKEN}`, { auth: null })).toMatchObject({ status: 200, body: { result: 'PONG' } });
    expect((await raw(`/ping?_token=${TOKEN}x`, { auth: null })).status).toBe(401);
    expect((await raw('/ping?_token=', { auth: null })).status).toBe(401);
  });
});

describe('strict as Upstash documents', () => {
  it('streams /subscribe only to a POST that accepts text/event-stream', async () => {
    expect(await raw('/subscribe/x', { method: 'GET' })).toMatchObject({
      status: 405,
      body: { error: expect.stringMatching(/POST with Accept: text\/event-stream/) },
    });
    expect(await raw('/subscribe/x', { method: 'POST' })).toMatchObject({
      status: 400,
      body: { error: expect.stringMatching(/Accept: text\/event-stream/) },
    });
    expect((await raw('/psubscribe/x*', { method: 'POST', headers: { Accept: 'application/json' } })).status).toBe(400);
  });
});

describe('raw protocol', () => {
  it('answers malformed bodies with 400 JSON and never crashes', async () => {
    for (const body of ['["SET","k"', '{"command":"GET"}', '[]', '[null]', '[["GET","k"]]', '"PING"', '']) {
      const response = await raw('/', { method: 'POST', body });
      expect(response.status, body).toBe(400);
      expect(response.body, body).toEqual({ error: expect.stringMatching(/^ERR /) });
    }
    expect(await raw('/pipeline', { method: 'POST', body: '{"not":"an array"}' })).toMatchObject({ status: 400 });
    expect(await raw('/', { method: 'POST', body: '["PING"]' })).toMatchObject({ status: 200, body: { result: 'PONG' } });
  });

  it('rejects bodies over 10 MB with 413 JSON, declared or chunked', async () => {
    const body = JSON.stringify(['SET', key('big'), 'x'.repeat(MAX_BODY_BYTES)]);
    const tooLarge = { status: 413, type: expect.stringContaining('application/json'), body: { error: expect.stringMatching(/limit/) } };
    expect(await raw('/', { method: 'POST', body })).toEqual(tooLarge);
    // No Content-Length: counted as it streams (the bytes are not even JSON; the count stops it first).
    expect(await raw('/', { method: 'POST', body: chunkedBody(2 * MAX_BODY_BYTES), duplex: 'half' } as RequestInit)).toEqual(tooLarge);
    expect(await direct.exists(key('big'))).toBe(0);
  });

  it('encodes every string as base64 except a top-level OK, and is binary safe', async () => {
    const bytes = Buffer.from([0, 255, 128, 10, 0xc3, 0x28]); // not valid UTF-8
    await direct.set(key('bin'), bytes);
    const got = await raw('/', { method: 'POST', body: JSON.stringify(['GET', key('bin')]), base64: true });
    expect(Buffer.from((got.body as { result: string }).result, 'base64')).toEqual(bytes);

    expect((await raw('/', { method: 'POST', body: JSON.stringify(['SET', key('ok'), 'OK']), base64: true })).body).toEqual({
      result: 'OK',
    });
    const nested = await raw('/', { method: 'POST', body: JSON.stringify(['EVAL', "return {7, 'OK', {'x'}, false}", '0']), base64: true });
    expect(nested.body).toEqual({ result: [7, 'T0s=', ['eA=='], null] });
    expect((await raw('/', { method: 'POST', body: JSON.stringify(['GET', key('ok')]) })).body).toEqual({ result: 'OK' });
  });

  it('returns one entry per pipeline command, errors isolated, and aborts a MULTI on a queuing error', async () => {
    const pipeline = await raw('/pipeline', {
      method: 'POST',
      body: JSON.stringify([['SET', key('pp'), 'v'], ['NOSUCHCOMMAND'], ['BLPOP', key('q'), 0], ['GET', key('pp')]]),
    });
    expect(pipeline.status).toBe(200);
    expect(pipeline.body).toEqual([
      { result: 'OK' },
      { error: expect.stringMatching(/unknown command/) },
      { error: expect.stringMatching(/blocking command BLPOP/) },
      { result: 'v' },
    ]);
    // A body with an entry that is not a command is refused whole, as Upstash does: nothing runs.
    for (const bad of ['oops', [], [null], { cmd: 'GET' }]) {
      const refused = await raw('/pipeline', { method: 'POST', body: JSON.stringify([['SET', key('pw'), 'v'], bad]) });
      expect(refused, JSON.stringify(bad)).toMatchObject({
        status: 400,
        body: { error: expect.stringMatching(/^ERR command 2 of the pipeline: /) },
      });
    }
    expect(await direct.exists(key('pw'))).toBe(0);

    const multi = await raw('/multi-exec', { method: 'POST', body: JSON.stringify([['SET', key('mm'), 'v'], ['NOSUCHCOMMAND']]) });
    expect(multi).toMatchObject({ status: 400, body: { error: expect.stringMatching(/^EXECABORT .*unknown command/) } });
    expect(await direct.exists(key('mm'))).toBe(0);
  });

  it('supports the path form, with a POST body and query parameters appended', async () => {
    expect((await raw(`/set/${encodeURIComponent(key('path/slash'))}/v1`)).body).toEqual({ result: 'OK' });
    expect(await direct.get(key('path/slash'))).toBe('v1');
    expect((await raw(`/set/${key('pb')}?EX=100`, { method: 'POST', body: '{"json":"body"}' })).body).toEqual({ result: 'OK' });
    expect(await direct.get(key('pb'))).toBe('{"json":"body"}');
    expect((await raw(`/ttl/${key('pb')}`)).body).toEqual({ result: 100 });
    expect((await raw(`/get/${key('pb')}`, { base64: true })).body).toEqual({ result: Buffer.from('{"json":"body"}').toString('base64') });
  });
});

describe('pub/sub over SSE', () => {
  it('sends subscribe only once Redis confirms, then messages; unsubscribe cleans up', async () => {
    const channel = key('results:1');
    const subscriber = redis.subscribe<{ id: string; label: string }>(channel);
    const subscribed = new Promise<number>((resolve) => subscriber.on('subscribe', resolve));
    const received = new Promise<unknown>((resolve) => subscriber.on('message', resolve));

    expect(await subscribed).toBe(1);
    // The "ready" signal means Redis already has the subscription: a publish now must arrive.
    expect(rest.listenerCount(channel)).toBe(1);
    expect(await direct.pubsub('NUMSUB', channel)).toEqual([channel, 1]);
    expect(await direct.publish(channel, JSON.stringify({ id: '1', label: 'beagle, hound' }))).toBe(1);
    expect(await received).toEqual({ channel, message: { id: '1', label: 'beagle, hound' } });

    await subscriber.unsubscribe();
    await waitFor(() => rest.listenerCount(channel) === 0);
    await waitFor(async () => ((await direct.pubsub('NUMSUB', channel)) as [string, number])[1] === 0);
  });

  it('shares one Redis subscription between listeners of the same channel', async () => {
    const channel = key('shared');
    const a = redis.subscribe<string>(channel);
    const b = redis.subscribe<string>(channel);
    const gotA = new Promise<unknown>((resolve) => a.on('message', resolve));
    const gotB = new Promise<unknown>((resolve) => b.on('message', resolve));
    await Promise.all([new Promise((r) => a.on('subscribe', r)), new Promise((r) => b.on('subscribe', r))]);
    expect(rest.listenerCount(channel)).toBe(2);
    expect(await direct.publish(channel, 'plain text')).toBe(1); // one Redis subscriber for both
    expect(await Promise.all([gotA, gotB])).toEqual([
      { channel, message: 'plain text' },
      { channel, message: 'plain text' },
    ]);
    await a.unsubscribe();
    await waitFor(() => rest.listenerCount(channel) === 1);
    expect(await direct.pubsub('NUMSUB', channel)).toEqual([channel, 1]);
    await b.unsubscribe();
    await waitFor(() => rest.listenerCount(channel) === 0);
  });

  it('streams pattern subscriptions', async () => {
    const pattern = key('jobs:*');
    const subscriber = redis.psubscribe<{ n: number }>(pattern);
    const received = new Promise<unknown>((resolve) => subscriber.on('pmessage', resolve));
    await new Promise((resolve) => subscriber.on('psubscribe', resolve));
    await direct.publish(key('jobs:7'), JSON.stringify({ n: 7 }));
    expect(await received).toEqual({ pattern, channel: key('jobs:7'), message: { n: 7 } });
    await subscriber.unsubscribe();
    await waitFor(() => rest.listenerCount(pattern, 'pattern') === 0);
  });

  it('writes the exact SSE frames and releases the listener when the client aborts', async () => {
    const channel = key('raw');
    const abort = new AbortController();
    const response = await fetch(`${rest.url}/subscribe/${channel}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${TOKEN}`, Accept: 'text/event-stream' },
      body: '[]',
      signal: abort.signal,
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/event-stream');
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    const readUntil = async (needle: string) => {
      while (!text.includes(needle)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`stream ended before ${needle}`);
        text += decoder.decode(value, { stream: true });
      }
    };
    await readUntil('\n\n');
    expect(text).toBe(`data: subscribe,${channel},1\n\n`);
    await direct.publish(channel, 'a,b,c');
    await readUntil('a,b,c\n\n');
    expect(text).toBe(`data: subscribe,${channel},1\n\ndata: message,${channel},a,b,c\n\n`);

    expect(rest.listenerCount(channel)).toBe(1);
    abort.abort();
    await waitFor(() => rest.listenerCount(channel) === 0);
    await waitFor(async () => ((await direct.pubsub('NUMSUB', channel)) as [string, number])[1] === 0);
  });

  it('delivers 200 concurrent subscribe + publish round trips and leaks no listeners', async () => {
    const roundTrip = async (i: number) => {
      const channel = key(`many:${i}`);
      const subscriber = redis.subscribe<{ i: number }>(channel);
      const received = new Promise<unknown>((resolve) => subscriber.on('message', ({ message }) => resolve(message)));
      await new Promise((resolve) => subscriber.on('subscribe', resolve));
      await direct.publish(channel, JSON.stringify({ i }));
      const message = await received;
      await subscriber.unsubscribe();
      return message;
    };
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => roundTrip(i)));
    expect(results).toEqual(Array.from({ length: 200 }, (_, i) => ({ i })));
    await waitFor(() => rest.stats().listeners === 0, 5_000);
    expect(rest.stats()).toEqual({ channels: 0, patterns: 0, listeners: 0 });
    await waitFor(async () => ((await direct.pubsub('NUMSUB', key('many:0'), key('many:199'))) as unknown[])[3] === 0);
  });
});

describe('when Redis goes away', () => {
  it('answers 503 quickly instead of hanging', async () => {
    const doomed = await startRedisServer();
    const server = await startUpstashRestServer({ redisUrl: doomed.url, token: TOKEN, logger });
    try {
      const client = new UpstashRedis({ url: server.url, token: TOKEN });
      expect(await client.set('k', 'v')).toBe('OK');
      await doomed.stop();

      const started = Date.now();
      await expect(client.get('k')).rejects.toThrow(/Redis is unavailable/);
      const response = await fetch(`${server.url}/ping`, { headers: { Authorization: `Bearer ${TOKEN}` } });
      expect(response.status).toBe(503);
      expect(await response.json()).toEqual({ error: expect.stringMatching(/^ERR Redis is unavailable/) });
      const sse = await fetch(`${server.url}/subscribe/x`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${TOKEN}`, Accept: 'text/event-stream' },
      });
      expect(sse.status).toBe(503);
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      await server.close();
      await doomed.stop();
    }
  });

  it('restores live subscriptions after Redis restarts, and only those', async () => {
    const port = await freePort();
    let flaky = await startRedisServer({ port });
    const server = await startUpstashRestServer({ redisUrl: flaky.url, token: TOKEN, logger });
    const client = new UpstashRedis({ url: server.url, token: TOKEN });
    let publisher: IORedis | undefined;
    try {
      const kept = client.subscribe<string>('kept');
      const dropped = client.subscribe<string>('dropped');
      const received = new Promise<unknown>((resolve) => kept.on('message', resolve));
      await Promise.all([new Promise((r) => kept.on('subscribe', r)), new Promise((r) => dropped.on('subscribe', r))]);

      await flaky.stop();
      await dropped.unsubscribe(); // leaves while Redis is away
      await waitFor(() => server.listenerCount('dropped') === 0);
      flaky = await startRedisServer({ port });
      publisher = new IORedis(flaky.url);
      await waitFor(async () => ((await publisher!.pubsub('NUMSUB', 'kept')) as [string, number])[1] === 1, 5_000);
      expect(await publisher.pubsub('NUMSUB', 'dropped')).toEqual(['dropped', 0]);
      await publisher.publish('kept', 'after restart');
      expect(await received).toEqual({ channel: 'kept', message: 'after restart' });
      await kept.unsubscribe();
      await waitFor(() => server.stats().listeners === 0);
    } finally {
      await publisher?.quit();
      await server.close();
      await flaky.stop();
    }
  });

  it('refuses to start with a clear error when Redis is unreachable', async () => {
    const port = await freePort();
    await expect(startUpstashRestServer({ redisUrl: `redis://127.0.0.1:${port}`, token: TOKEN, logger })).rejects.toThrow(
      new RegExp(`cannot connect to Redis at redis://127.0.0.1:${port}.*ECONNREFUSED`),
    );
  });
});
