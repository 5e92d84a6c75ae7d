/**
 * Commands per image at batch sizes 1, 8 and 32, two counts side by side on a real stack (the Node
 * edge over TCP and over Upstash REST, redis-server, a worker with the synthetic instant model):
 *
 * - **sent**: what the clients send, what a per-command price bills (Upstash bills every command
 *   of a pipeline, and a script call as the call). Counted with MONITOR: a line whose source is
 *   a client, not `lua` (a script's inner calls).
 * - **executed**: what Redis runs, scripts' inner calls included (INFO commandstats).
 *
 * Batches are made exact: the jobs are all queued before the worker starts, so it reads them
 * BATCH_SIZE at a time. Housekeeping (heartbeats, reclaim passes, the edge's status reads, the
 * worker's idle reads) runs on clocks, not per image: counted apart, not in the per-image figures.
 *
 * Targets (issue 16): an edge sends 1 command per request; a worker 2 per batch (the read, and
 * the completion of the whole batch in one script).
 */
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startUpstashRestServer, type UpstashRestServer } from '../dev/upstash-rest/server.ts';
import { parseWorkerConfig } from '../gpu-worker/config.ts';
import { startWorker } from '../gpu-worker/worker.ts';
import { redisKeys } from '../shared/keys.ts';
import { createLogger } from '../shared/log.ts';
import { scriptSources } from '../shared/lua/node.ts';
import { SCRIPT_FILES } from '../shared/lua/scripts.ts';
import { colourPng, predict, waitFor } from './helpers/faults.ts';
import { startLocalEdge, useRedisServer, viaRest, viaTcp } from './helpers/fixtures.ts';

const TOKEN = 'per-image-test-token-0123456789';
const logger = createLogger('commands-per-image', 'silent');
const SHOW = process.env.COMMANDS_LOG === '1';
const db = useRedisServer();
let rest: UpstashRestServer;

const sha = (source: string) => createHash('sha1').update(source).digest('hex');
const SCRIPT_NAMES = new Map(Object.entries(scriptSources).map(([name, source]) => [sha(source), name]));
const SCRIPT_BY_FILE = new Map<string, string>(Object.entries(SCRIPT_FILES).map(([name, file]) => [file, name]));

beforeAll(async () => {
  rest = await startUpstashRestServer({ redisUrl: db.url, token: TOKEN, port: 0, logger });
});
afterAll(async () => {
  await rest?.close();
});

/** Commands of the per-image path: sent (the enqueue, the worker's reads and completions) and run inside those scripts. */
const SENT_PER_IMAGE = new Set(['enqueueJob', 'completeJobs', 'xreadgroup']);
const INNER_PER_IMAGE = new Set(['xlen', 'xadd', 'set', 'publish', 'xack', 'xdel']);

/** While `action` runs: the commands clients sent, by name (a script by its command name), and those scripts ran, by name. */
async function monitor(action: () => Promise<void>) {
  const monitoring = await new Redis(db.url).monitor();
  const sent = new Map<string, number>();
  const inner = new Map<string, number>();
  monitoring.on('monitor', (_time: string, args: string[], source: string) => {
    let name = args[0]!.toLowerCase();
    if (source === 'lua') return void inner.set(name, (inner.get(name) ?? 0) + 1);
    // ioredis sends a connection's first call of a script as EVAL (MONITOR shows its source escaped: named by its header line).
    if (name === 'evalsha') name = SCRIPT_NAMES.get(args[1]!) ?? name;
    if (name === 'eval') name = SCRIPT_BY_FILE.get(/^-- ([\w-]+\.lua)/.exec(args[1]!)?.[1] ?? '') ?? name;
    sent.set(name, (sent.get(name) ?? 0) + 1);
  });
  try {
    await action();
  } finally {
    monitoring.disconnect();
  }
  return { sent, inner };
}

const sum = (counts: Map<string, number>, filter: (name: string) => boolean) =>
  [...counts].filter(([name]) => filter(name)).reduce((total, [, n]) => total + n, 0);

/**
 * `images` requests to an edge over `via`, queued before a worker with BATCH_SIZE=`batch` starts,
 * so it reads full batches; then per image: sent and executed commands, and the housekeeping apart.
 */
async function perImage(via: Record<string, string | undefined>, batch: number, images: number) {
  const prefix = `pi${batch}${Math.random().toString(36).slice(2, 6)}`;
  const keys = redisKeys(prefix);
  const edge = await startLocalEdge(via, logger, { KEY_PREFIX: prefix, ADMISSION: 'queue-max' });
  const image = await colourPng(batch);
  // The group first, so the jobs wait for the worker's first read.
  await db.redis.xgroup('CREATE', keys.stream, keys.group, '0', 'MKSTREAM');
  try {
    const { sent, inner } = await monitor(async () => {
      const replies = Array.from({ length: images }, () => predict(edge.url, image));
      await waitFor(async () => (await db.redis.xlen(keys.stream)) === images, 10_000, 'every job queued');
      const worker = startWorker(
        parseWorkerConfig({
          REDIS_URL: db.url,
          KEY_PREFIX: prefix,
          MODEL: 'synthetic:instant',
          BATCH_SIZE: String(batch),
          METRICS_PORT: '0',
        }),
        { logger },
      );
      try {
        const answered = await Promise.all(replies);
        expect(answered.map((reply) => reply.status)).toEqual(Array(images).fill(200));
        expect(new Set(answered.map((reply) => reply.body.batchSize))).toEqual(new Set([batch]));
      } finally {
        await worker.stop();
      }
    });
    const batches = images / batch;
    // Reads beyond one per batch found nothing (the idle timeout, the stop): clock-driven, counted as housekeeping.
    const reads = Math.min(sent.get('xreadgroup') ?? 0, batches);
    const perImageSent = (sent.get('enqueueJob') ?? 0) + reads + (sent.get('completeJobs') ?? 0);
    const row = {
      batch,
      edgeSentPerRequest: (sent.get('enqueueJob') ?? 0) / images,
      workerSentPerBatch: (reads + (sent.get('completeJobs') ?? 0)) / batches,
      sentPerImage: perImageSent / images,
      executedPerImage: (perImageSent + sum(inner, (name) => INNER_PER_IMAGE.has(name))) / images,
      housekeepingSent: sum(sent, (name) => !SENT_PER_IMAGE.has(name)) + (sent.get('xreadgroup') ?? 0) - reads,
    };
    if (SHOW)
      console.log(JSON.stringify({ via: Object.keys(via)[0], ...row, sent: Object.fromEntries(sent), inner: Object.fromEntries(inner) }));
    return row;
  } finally {
    await edge.close();
  }
}

describe('commands per image (sent: MONITOR; executed: INFO commandstats)', () => {
  it.each([
    ['TCP (ioredis)', () => viaTcp(db.url)],
    ['Upstash REST', () => viaRest(rest, TOKEN)],
  ])('%s edge: 1 sent per request, 2 per batch by the worker, at batch 1, 8 and 32', async (_name, via) => {
    for (const [batch, images] of [
      [1, 8],
      [8, 32],
      [32, 64],
    ] as const) {
      const row = await perImage(via(), batch, images);
      expect(row.edgeSentPerRequest).toBe(1);
      expect(row.workerSentPerBatch).toBe(2);
      expect(row.sentPerImage).toBeCloseTo(1 + 2 / batch, 5);
      // Executed: the enqueue script and its XLEN + XADD; per batch the read and the completion script; per job its SET, PUBLISH, XACK, XDEL.
      expect(row.executedPerImage).toBeCloseTo(3 + 4 + 2 / batch, 5);
    }
  });
});
