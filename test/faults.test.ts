/**
 * "Nothing lost, nothing hung", with real processes: redis-server, the local Upstash REST server,
 * the Node edge (in this process, Upstash REST broker) and gpu-worker CHILD processes running the
 * tiny model. Faults: a worker SIGKILLed in the middle of a batch, a worker restarted (SIGTERM)
 * under load, and a full queue under load. Each test prints one `faults: ...` summary line.
 *
 * The workers run with INFERENCE_DELAY_MS (a synthetic per-batch delay, for tests only) so that
 * "in the middle of a batch" lasts long enough to be hit on purpose; everything the faults are
 * about (heartbeat, takeover, deadline) runs on the default settings.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RedisServerHandle } from '../dev/redis-server.ts';
import type { NodeEdge } from '../edge/node/server.ts';
import { redisKeys } from '../shared/keys.ts';
import { createLogger } from '../shared/log.ts';
import {
  colourPng,
  countPublishes,
  entriesAdded,
  jobIdsOf,
  pendingEntries,
  predict,
  summary,
  tally,
  waitFor,
  type Reply,
} from './helpers/faults.ts';
import { spawnWorker, startLocalEdge, viaRest, type WorkerProcess } from './helpers/fixtures.ts';
import { parseEdgeConfig } from '../edge/config.ts';
import type { TinyModel } from './helpers/tiny-model.ts';
import { startBackbone, type Backbone } from './helpers/backbone.ts';

const TOKEN = 'faults-test-token-0123456789';
const logger = createLogger('faults', 'silent');
/** How late past its deadline an answer may come (HTTP + event loop), and still count. */
const SLACK_MS = 1000;

let base: Backbone;
let redisServer: RedisServerHandle;
let redis: Redis;
let rest: Backbone['rest'];
let tiny: TinyModel;
const workers: WorkerProcess[] = [];
const edges: NodeEdge[] = [];
const images: Buffer[] = [];

beforeAll(async () => {
  base = await startBackbone({ token: TOKEN, seed: 7, logger });
  ({ redisServer, redis, rest, tiny } = base);
  for (let i = 0; i < 8; i++) images.push(await colourPng(i));
});

afterAll(async () => {
  await Promise.all(edges.map((edge) => edge.close()));
  await Promise.all(workers.map((worker) => worker.tier.stop(2000)));
  await base?.stop();
});

function worker(consumer: string, prefix: string, env: Record<string, string> = {}): WorkerProcess {
  const started = spawnWorker(consumer, {
    REDIS_URL: redisServer.url,
    KEY_PREFIX: prefix,
    ...tiny.env,
    BATCH_SIZE: '4',
    ...env,
  });
  workers.push(started);
  return started;
}

async function edge(prefix: string, env: Record<string, string> = {}): Promise<NodeEdge> {
  const started = await startLocalEdge(viaRest(rest, TOKEN), logger, { KEY_PREFIX: prefix, ...env });
  edges.push(started);
  return started;
}

/** Replies that are not one well-formed answer in time: no JSON body, transport failure, or late. */
function lostOf(replies: Reply[], deadlineMs: number): Reply[] {
  return replies.filter((r) => r.status === 0 || r.body.error?.code === 'not_json' || r.doneAt - r.sentAt > deadlineMs + SLACK_MS);
}

/** Every answered job was published exactly once on its reply channel. */
function expectPublishedOnce(counts: Map<string, string[]>, ids: string[]) {
  for (const id of ids) expect(counts.get(id)?.length ?? 0, id).toBe(1);
}

describe('faults', () => {
  it('a worker SIGKILLed in the middle of a batch, default settings: the survivor sees it dead by its heartbeat and answers its jobs within half the deadline, each once', async () => {
    const prefix = 'f-kill';
    const keys = redisKeys(prefix);
    const deadlineMs = parseEdgeConfig({ REDIS_URL: redisServer.url }).DEADLINE_MS; // the default
    const env = { INFERENCE_DELAY_MS: '300' };
    const [victim, survivor] = [worker(`${prefix}-a`, prefix, env), worker(`${prefix}-b`, prefix, env)];
    const [front] = await Promise.all([edge(prefix), victim.tier.ready, survivor.tier.ready]);
    const published = await countPublishes(redisServer.url, prefix);
    try {
      const total = 40;
      const pending = Array.from({ length: total }, (_, i) => predict(front.url, images[i % images.length]!));
      // Mid-batch: the victim has read a full batch (its entries are pending) and is computing it.
      await waitFor(
        async () => (await pendingEntries(redis, keys)).filter((p) => p.consumer === victim.consumer).length === 4,
        10_000,
        'the victim to hold a full batch',
        5,
      );
      victim.kill('SIGKILL');
      expect(await victim.exited).toEqual({ code: null, signal: 'SIGKILL' });
      // What it held when it died (read after its death, so exact).
      const held = (await pendingEntries(redis, keys)).filter((p) => p.consumer === victim.consumer);
      const heldJobs = await jobIdsOf(
        redis,
        keys,
        held.map((p) => p.entryId),
      );
      expect(held.length).toBeGreaterThan(0);

      const replies = await Promise.all(pending);
      const lost = lostOf(replies, deadlineMs);
      expect(tally(replies)).toEqual({ '200': total });
      expect(lost).toEqual([]);
      const ids = replies.map((r) => r.body.id!);
      expect(new Set(ids).size).toBe(total);
      for (const reply of replies) expect(reply.body.id).toBe(reply.requestId);
      // The victim's batch was answered by the survivor, which found it dead by its heartbeat
      // (not by CLAIM_IDLE_MS, the backstop), within half the deadline.
      expect(heldJobs.size).toBe(held.length);
      const byId = new Map(replies.map((r) => [r.body.id!, r]));
      for (const id of heldJobs.values()) expect(byId.get(id)?.body.worker).toBe(survivor.consumer);
      const heldSlowest = Math.max(...[...heldJobs.values()].map((id) => byId.get(id)!.doneAt - byId.get(id)!.sentAt));
      expect(heldSlowest).toBeLessThan(deadlineMs / 2);
      expectPublishedOnce(published.counts, ids);
      expect(await redis.xlen(keys.stream)).toBe(0);
      expect(await pendingEntries(redis, keys)).toEqual([]);
      expect(survivor.lines.filter((l) => l.includes('took over a job of a dead worker')).length).toBe(held.length);
      expect(survivor.lines.some((l) => l.includes('a worker died holding jobs') && l.includes(victim.consumer))).toBe(true);
      const slowest = Math.max(...replies.map((r) => r.doneAt - r.sentAt));
      summary('worker SIGKILL x1 (mid-batch, 2 workers, default settings)', total, lost.length, {
        '200': replies.filter((r) => r.status === 200).length,
        'taken over by survivor': heldJobs.size,
        "slowest of the dead worker's jobs ms": heldSlowest,
        'slowest ms': slowest,
        'deadline ms': deadlineMs,
      });
    } finally {
      await published.close();
      await survivor.tier.stop(2000);
    }
  });

  it('a worker restarted under load: SIGTERM finishes the batch in hand and exits 0; a new worker answers the rest', async () => {
    const prefix = 'f-restart';
    const keys = redisKeys(prefix);
    const deadlineMs = 20_000;
    const env = { INFERENCE_DELAY_MS: '400' };
    const first = worker(`${prefix}-1`, prefix, env);
    const [front] = await Promise.all([edge(prefix, { DEADLINE_MS: String(deadlineMs) }), first.tier.ready]);
    const published = await countPublishes(redisServer.url, prefix);
    let second: WorkerProcess | undefined;
    try {
      const total = 24;
      const pending = Array.from({ length: total }, (_, i) => predict(front.url, images[i % images.length]!));
      const held = await waitFor(
        async () => {
          const mine = (await pendingEntries(redis, keys)).filter((p) => p.consumer === first.consumer);
          return mine.length === 4 && (await entriesAdded(redis, keys.stream)) === total ? mine : undefined;
        },
        10_000,
        'the first worker to hold a full batch with every job queued',
        5,
      );
      const heldJobs = await jobIdsOf(
        redis,
        keys,
        held.map((p) => p.entryId),
      );
      const signalledAt = Date.now();
      first.kill('SIGTERM');
      expect(await first.exited).toEqual({ code: 0, signal: null });
      const drainMs = Date.now() - signalledAt;
      expect(drainMs).toBeLessThan(3000);
      // It finished what it had and took nothing more: nothing of it is pending, the rest waits.
      expect((await pendingEntries(redis, keys)).filter((p) => p.consumer === first.consumer)).toEqual([]);
      const waiting = await redis.xlen(keys.stream);
      expect(waiting).toBeGreaterThan(0);
      expect(waiting).toBeLessThanOrEqual(total - held.length);
      const health = await fetch(`${front.url}/healthz`);
      expect(health.status).toBe(200);

      second = worker(`${prefix}-2`, prefix, env);
      await second.tier.ready;
      const replies = await Promise.all(pending);
      const lost = lostOf(replies, deadlineMs);
      expect(tally(replies)).toEqual({ '200': total });
      expect(lost).toEqual([]);
      const byId = new Map(replies.map((r) => [r.body.id!, r]));
      for (const id of heldJobs.values()) expect(byId.get(id)?.body.worker).toBe(first.consumer);
      const bySecond = replies.filter((r) => r.body.worker === second!.consumer).length;
      expect(bySecond).toBe(waiting);
      expectPublishedOnce(published.counts, [...byId.keys()]);
      expect(await redis.xlen(keys.stream)).toBe(0);
      expect(await pendingEntries(redis, keys)).toEqual([]);
      summary('worker SIGTERM x1 (restart under load)', total, lost.length, {
        '200': replies.filter((r) => r.status === 200).length,
        'by first worker': total - bySecond,
        'by its replacement': bySecond,
        'drain ms': drainMs,
        'exit code': 0,
      });
    } finally {
      await published.close();
      await second?.tier.stop(2000);
    }
  });

  it('a full queue under load: 503 + Retry-After, nothing trimmed, every accepted request answered', async () => {
    const prefix = 'f-full';
    const keys = redisKeys(prefix);
    const queueMax = 8;
    const deadlineMs = 20_000;
    const front = await edge(prefix, { QUEUE_MAX: String(queueMax), RETRY_AFTER_S: '2', DEADLINE_MS: String(deadlineMs) });
    let drainer: WorkerProcess | undefined;
    try {
      // Wave 1, no worker yet: exactly QUEUE_MAX accepted; the stream holds exactly those.
      const wave1 = Array.from({ length: 30 }, (_, i) => predict(front.url, images[i % images.length]!));
      const settled: Reply[] = [];
      for (const reply of wave1) void reply.then((r) => settled.push(r));
      await waitFor(() => settled.length >= 30 - queueMax, 10_000, 'the refused requests of wave 1');
      expect(settled.every((r) => r.status === 503 && r.body.error?.code === 'queue_full' && r.retryAfter === '2')).toBe(true);
      const accepted1 = 30 - settled.length;
      expect(accepted1).toBe(queueMax);
      expect(await redis.xlen(keys.stream)).toBe(accepted1); // accepted and unanswered: all there

      // Wave 2, while a slow worker drains: the stream never exceeds QUEUE_MAX, nothing is trimmed.
      drainer = worker(`${prefix}-w`, prefix, { BATCH_SIZE: '2', INFERENCE_DELAY_MS: '150' });
      await drainer.tier.ready;
      let maxLen = 0;
      const sampling = setInterval(() => void redis.xlen(keys.stream).then((n) => (maxLen = Math.max(maxLen, n))), 10);
      const wave2: Promise<Reply>[] = [];
      for (let i = 0; i < 30; i++) {
        wave2.push(predict(front.url, images[i % images.length]!));
        await new Promise((resolve) => setTimeout(resolve, 40));
      }
      const replies = [...(await Promise.all(wave1)), ...(await Promise.all(wave2))];
      clearInterval(sampling);
      const lost = lostOf(replies, deadlineMs);
      const counts = tally(replies);
      expect(Object.keys(counts).sort()).toEqual(['200', '503 queue_full']);
      expect(lost).toEqual([]);
      for (const reply of replies.filter((r) => r.status === 503)) expect(reply.retryAfter).toBe('2');
      // Every entry ever added was answered: none was trimmed (a trimmed one would be a 504).
      const added = await entriesAdded(redis, keys.stream);
      expect(added).toBe(counts['200']);
      expect(maxLen).toBeLessThanOrEqual(queueMax);
      expect(await redis.xlen(keys.stream)).toBe(0);
      expect(await pendingEntries(redis, keys)).toEqual([]);
      summary('queue full (QUEUE_MAX 8) x2 waves of 30', replies.length, lost.length, {
        '200': counts['200'],
        '503 queue_full': counts['503 queue_full'],
        'entries added': added,
        trimmed: added - (counts['200'] ?? 0),
        'max XLEN': maxLen,
      });
    } finally {
      await drainer?.tier.stop(2000);
    }
  });
});
