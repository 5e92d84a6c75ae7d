/**
 * The Node edge's shared result subscription against the local Upstash REST server and a real
 * redis-server: results reach the right mailbox by job id, and a stream that ends (the REST server
 * going away) sends the waiting requests to polling, new requests too while it is down, and is
 * re-opened by itself once the server is back.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startRedisServer, type RedisServerHandle } from '../../dev/redis-server.ts';
import { startUpstashRestServer, type UpstashRestServer } from '../../dev/upstash-rest/server.ts';
import { redisKeys } from '../../shared/keys.ts';
import { createLogger } from '../../shared/log.ts';
import type { JobResult } from '../../shared/protocol.ts';
import { LineSplitter, SILENT_AFTER_MS, sharedInbox } from './shared-inbox.ts';
import { createUpstashHttp } from './upstash-http.ts';

const TOKEN = 'shared-inbox-test-token-0123456789';
const logger = createLogger('shared-inbox-test', 'silent');
let redisServer: RedisServerHandle;
let publisher: Redis;

beforeAll(async () => {
  redisServer = await startRedisServer();
  publisher = new Redis(redisServer.url);
});

afterAll(async () => {
  publisher?.disconnect();
  await redisServer?.stop();
});

const answer = (id: string): JobResult => ({ ok: false, id, error: { code: 'inference_failed', message: `for ${id}` }, worker: 'test' });

async function waitFor(check: () => boolean, what: string, timeoutMs = 5_000) {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('sharedInbox', () => {
  it('routes each result to the mailbox of its job, over one subscription', async () => {
    const rest = await startUpstashRestServer({ redisUrl: redisServer.url, token: TOKEN, port: 0, logger });
    const http = createUpstashHttp({ url: rest.url, token: TOKEN });
    const inbox = sharedInbox({
      http,
      publish: (channel, message) => publisher.publish(channel, message),
      keys: redisKeys('inbox-a'),
      logger,
    });
    try {
      const boxes = ['a', 'b', 'c'].map((id) => inbox.open(id));
      expect(await Promise.all(boxes.map((box) => box.ready))).toEqual([true, true, true]);
      expect(new Set(boxes.map((box) => box.channel)).size).toBe(1);
      expect(rest.stats().listeners).toBe(1);
      // Another job's result, a malformed message, then each mailbox's own (in reverse order).
      await publisher.publish(boxes[0]!.channel, JSON.stringify(answer('unknown')));
      await publisher.publish(boxes[0]!.channel, 'not json');
      for (const id of ['c', 'b', 'a']) await publisher.publish(boxes[0]!.channel, JSON.stringify(answer(id)));
      const results = await Promise.all(boxes.map((box) => box.pushed));
      expect(results.map((r) => r?.id)).toEqual(['a', 'b', 'c']);
      for (const box of boxes) box.close();
    } finally {
      await inbox.close();
      await http.close();
      await rest.close();
    }
  });

  it('a stream that ends sends waiting and new requests to polling, and is re-opened once the server is back', async () => {
    const port = await freePort();
    let rest: UpstashRestServer = await startUpstashRestServer({ redisUrl: redisServer.url, token: TOKEN, port, logger });
    const http = createUpstashHttp({ url: rest.url, token: TOKEN });
    const inbox = sharedInbox({
      http,
      publish: (channel, message) => publisher.publish(channel, message),
      keys: redisKeys('inbox-b'),
      logger,
    });
    try {
      const waiting = inbox.open('before');
      expect(await waiting.ready).toBe(true);

      await rest.close(); // ends every SSE stream cleanly
      expect(await waiting.pushed).toBeNull();
      expect(waiting.failed()).toBe(true);
      const during = inbox.open('during');
      expect(await during.ready).toBe(false);
      expect(during.failed()).toBe(true);

      rest = await startUpstashRestServer({ redisUrl: redisServer.url, token: TOKEN, port, logger });
      await waitFor(() => rest.stats().listeners === 1, 'the inbox to subscribe again');
      const after = inbox.open('after');
      expect(await after.ready).toBe(true);
      await publisher.publish(after.channel, JSON.stringify(answer('after')));
      expect((await after.pushed)?.id).toBe('after');
      for (const box of [waiting, during, after]) box.close();
    } finally {
      await inbox.close();
      await http.close();
      await rest.close();
    }
  });
});

describe('sharedInbox keep-alive', () => {
  it(
    'an idle stream stays up past SILENT_AFTER_MS: its own keep-alive keeps it from looking silent',
    async () => {
      const rest = await startUpstashRestServer({ redisUrl: redisServer.url, token: TOKEN, port: 0, logger });
      const http = createUpstashHttp({ url: rest.url, token: TOKEN });
      const lines: string[] = [];
      const inbox = sharedInbox({
        http,
        publish: (channel, message) => publisher.publish(channel, message),
        keys: redisKeys('inbox-idle'),
        logger: createLogger('inbox', 'info', { write: (line: string) => void lines.push(line) }),
      });
      try {
        const box = inbox.open('idle');
        expect(await box.ready).toBe(true);
        await new Promise((resolve) => setTimeout(resolve, SILENT_AFTER_MS + 2_000));
        expect(lines.filter((line) => line.includes('result stream'))).toEqual([]);
        expect(box.failed()).toBe(false);
        await publisher.publish(box.channel, JSON.stringify(answer('idle')));
        expect((await box.pushed)?.id).toBe('idle');
        box.close();
      } finally {
        await inbox.close();
        await http.close();
        await rest.close();
      }
    },
    SILENT_AFTER_MS + 10_000,
  );
});

describe('LineSplitter', () => {
  it('splits at LF, CRLF and CR, across chunk boundaries (a CRLF split in two included)', () => {
    const lines = new LineSplitter();
    const out = [
      ...lines.feed('data: a\n\ndata: b\nda'),
      ...lines.feed('ta: c\r'),
      ...lines.feed('\ndata: d\rdata: e'),
      ...lines.feed('\n'),
    ];
    expect(out.filter((line) => line !== '')).toEqual(['data: a', 'data: b', 'data: c', 'data: d', 'data: e']);
  });
});
