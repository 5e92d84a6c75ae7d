/**
 * The result stream against the ways a real Upstash (or the network in between) can differ from
 * the happy path, produced by the local REST server's fault switches (dev/upstash-rest/sse.ts):
 * real redis-server, the REST server, a gpu-worker child process (synthetic models), and the two
 * REST inboxes: the Node edge's shared stream and the Workers edge's per-request subscriptions.
 *
 * - Framing: events ended by a blank line, a single LF, or CRLF all arrive by push (no GET of a
 *   result key is needed: counted with INFO commandstats).
 * - A stream that ends, is unsubscribed, or goes silent: the waiting requests are answered well
 *   before their deadline (the default, 30 s), and the edge subscribes again.
 * - A subscription confirmed before it is live: the fast worker's publish is missed, and the one
 *   GET a second after enqueueing answers the request, not the deadline.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startUpstashRestServer, type UpstashRestServer } from '../dev/upstash-rest/server.ts';
import { parseEdgeConfig } from '../edge/config.ts';
import { SILENT_AFTER_MS } from '../edge/node/shared-inbox.ts';
import { redisKeys } from '../shared/keys.ts';
import { createLogger } from '../shared/log.ts';
import { colourPng, entriesAdded, predict, summary, tally, waitFor, type Reply } from './helpers/faults.ts';
import { type WorkerProcess, spawnWorker, startLocalEdge, useRedisServer, viaRest, viaTcp } from './helpers/fixtures.ts';
import { startPerRequestEdge } from './helpers/per-request-edge.ts';

const TOKEN = 'result-stream-test-token-0123456789';
const logger = createLogger('result-stream', 'silent');
const DEADLINE_MS = parseEdgeConfig({ REDIS_URL: 'redis://x' }).DEADLINE_MS; // the default

const db = useRedisServer();
let rest: UpstashRestServer;
const workers: WorkerProcess[] = [];
let image: Buffer;

beforeAll(async () => {
  rest = await startUpstashRestServer({ redisUrl: db.url, token: TOKEN, port: 0, logger });
  image = await colourPng(9);
});

afterAll(async () => {
  await Promise.all(workers.map((worker) => worker.tier.stop(2000)));
  await rest?.close();
});

async function worker(prefix: string, model: string): Promise<WorkerProcess> {
  const started = spawnWorker(`${prefix}-w`, { REDIS_URL: db.url, KEY_PREFIX: prefix, MODEL: model, BATCH_SIZE: '4' });
  workers.push(started);
  await started.tier.ready;
  return started;
}

const inboxes = {
  shared: (prefix: string) => startLocalEdge(viaRest(rest, TOKEN), logger, { KEY_PREFIX: prefix }),
  'per-request': (prefix: string) =>
    startPerRequestEdge(parseEdgeConfig({ ...viaRest(rest, TOKEN), PORT: '0', HOST: '127.0.0.1', KEY_PREFIX: prefix }), logger),
};

/** GETs Redis has run (the edges read result keys with GET only: a push delivers without one). */
async function gets(): Promise<number> {
  return Number(/^cmdstat_get:calls=(\d+)/m.exec(await db.redis.info('commandstats'))?.[1] ?? 0);
}

const latency = (reply: Reply) => reply.doneAt - reply.sentAt;

describe('the result stream', () => {
  it.each(['blank-line', 'lf', 'crlf'] as const)('frames ended by %s: every result pushed, on both inboxes', async (framing) => {
    const prefix = `rs-${framing}`;
    await worker(prefix, 'synthetic:instant');
    rest.faults.framing = framing;
    try {
      for (const [name, start] of Object.entries(inboxes)) {
        const edge = await start(`${prefix}`);
        try {
          const before = await gets();
          const replies = await Promise.all(Array.from({ length: 8 }, () => predict(edge.url, image)));
          expect(tally(replies), name).toEqual({ '200': 8 });
          expect(await gets(), `${name}: results read from their keys, not pushed`).toBe(before);
        } finally {
          await edge.close();
        }
      }
    } finally {
      rest.faults.framing = 'blank-line';
    }
  });

  it('under load, with a worker that answers at once, every result is pushed on both Node brokers (none found only by the read at the deadline)', async () => {
    const prefix = 'rs-load';
    await worker(prefix, 'synthetic:instant');
    const brokers = {
      upstash: () => inboxes.shared(prefix),
      ioredis: () => startLocalEdge(viaTcp(db.url), logger, { KEY_PREFIX: prefix }),
    };
    for (const [name, start] of Object.entries(brokers)) {
      const edge = await start();
      try {
        const before = await gets();
        const replies = await Promise.all(Array.from({ length: 200 }, () => predict(edge.url, image)));
        expect(tally(replies), name).toEqual({ '200': 200 });
        expect((await gets()) - before, `${name}: results read from their keys`).toBe(0);
      } finally {
        await edge.close();
      }
    }
  });

  it.each([
    ['ends cleanly', (): void => rest.endStreams()],
    ['is unsubscribed by the server', (): void => rest.unsubscribeStreams()],
    ['goes silent', (): void => void (rest.faults.silent = true)],
  ] as const)(
    'a shared stream that %s: the waiting requests are answered well before their deadline, and it subscribes again',
    async (fault, inject) => {
      const prefix = `rs-${fault.split(' ')[0]}`;
      const keys = redisKeys(prefix);
      await worker(prefix, 'synthetic:timer:1500');
      const edge = await inboxes.shared(prefix);
      try {
        expect((await predict(edge.url, image)).status).toBe(200);
        const waiting = Array.from({ length: 8 }, () => predict(edge.url, image));
        await waitFor(async () => (await entriesAdded(db.redis, keys.stream)) === 9, 10_000, 'all 8 jobs queued');
        inject();
        const replies = await Promise.all(waiting);
        rest.faults.silent = false;
        expect(tally(replies)).toEqual({ '200': 8 });
        const slowest = Math.max(...replies.map(latency));
        // Two batches of 1.5 s; the silence is noticed after SILENT_AFTER_MS.
        expect(slowest).toBeLessThan(DEADLINE_MS / 2);
        // Subscribed again: a new request is pushed its result (no polling: at most the one look a second in).
        await waitFor(() => rest.stats().listeners === 1, SILENT_AFTER_MS + 5_000, 'the edge to subscribe again');
        const before = await gets();
        expect((await predict(edge.url, image)).status).toBe(200);
        expect((await gets()) - before).toBeLessThanOrEqual(1);
        summary(`shared result stream ${fault} with 8 requests waiting`, 9, 0, {
          '200': 8,
          'slowest ms': slowest,
          'deadline ms': DEADLINE_MS,
        });
      } finally {
        rest.faults.silent = false;
        await edge.close();
      }
    },
  );

  it('a subscription confirmed before it is live: the missed publish is found by one GET, long before the deadline', async () => {
    const prefix = 'rs-early';
    await worker(prefix, 'synthetic:instant');
    const edge = await inboxes['per-request'](prefix);
    rest.faults.confirmEarly = true;
    try {
      const before = await gets();
      const replies = await Promise.all(Array.from({ length: 4 }, () => predict(edge.url, image)));
      expect(tally(replies)).toEqual({ '200': 4 });
      const slowest = Math.max(...replies.map(latency));
      expect(slowest).toBeLessThan(DEADLINE_MS / 4);
      // Their publishes were missed: one GET each found the results, no polling.
      expect((await gets()) - before).toBe(4);
      summary('per-request subscriptions confirmed before they are live, 4 requests', 4, 0, {
        '200': 4,
        'slowest ms': slowest,
        GETs: (await gets()) - before,
      });
    } finally {
      rest.faults.confirmEarly = false;
      await edge.close();
    }
  });
});
