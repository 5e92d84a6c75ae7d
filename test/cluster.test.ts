/**
 * Shards on a Redis Cluster: a real local cluster of 3 masters (redis-server in cluster mode,
 * joined by `redis-cli --cluster create`), three shards whose prefixes' hash tags fall on the three
 * nodes, a gpu-worker child process and a Node edge given all three as QUEUES (`"cluster": true`).
 *
 * Expected: every multi-key script and pipeline stays in one slot (no CROSSSLOT: each request is
 * answered), and the jobs spread over the three nodes, each counting its own XADDs.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisClusterHandle, startRedisCluster } from '../dev/redis-cluster.ts';
import type { NodeEdge } from '../edge/node/server.ts';
import { createLogger } from '../shared/log.ts';
import { colourPng, predict, tally } from './helpers/faults.ts';
import { spawnWorker, startLocalEdge, type WorkerProcess } from './helpers/fixtures.ts';

const logger = createLogger('cluster-test', 'silent');
let cluster: RedisClusterHandle;
let worker: WorkerProcess;
let edge: NodeEdge;
/** One prefix per master: its port -> the prefix. */
const prefixes = new Map<number, string>();

/** XADDs a node has run (scripts' inner calls included). */
async function xadds(port: number): Promise<number> {
  const client = new Redis(port, '127.0.0.1');
  try {
    const stats = (await client.info('commandstats')) as string;
    return Number(/cmdstat_xadd:calls=(\d+)/.exec(stats)?.[1] ?? 0);
  } finally {
    client.disconnect();
  }
}

beforeAll(async () => {
  cluster = await startRedisCluster(3);
  for (let i = 0; prefixes.size < 3 && i < 200; i++) {
    const port = await cluster.slotOwner(`{cl-${i}}`);
    if (!prefixes.has(port)) prefixes.set(port, `cl-${i}`);
  }
  const queues = JSON.stringify([...prefixes].map(([port, prefix]) => ({ name: `node-${port}`, url: cluster.url, cluster: true, prefix })));
  worker = spawnWorker('cluster-w', { QUEUES: queues, MODEL: 'synthetic:timer:10', METRICS_PORT: '0' });
  await worker.tier.ready;
  edge = await startLocalEdge({}, logger, { QUEUES: queues });
}, 60_000);

afterAll(async () => {
  await edge?.close();
  await worker?.tier.stop(2000);
  await cluster?.stop();
});

describe('shards on a Redis Cluster (3 masters)', () => {
  it('answers every request once, with each shard on its own node; /readyz shows the three', async () => {
    expect(prefixes.size).toBe(3);
    const before = await Promise.all([...prefixes.keys()].map(xadds));
    const image = await colourPng(2);
    const replies = [];
    for (let round = 0; round < 6; round++) replies.push(...(await Promise.all(Array.from({ length: 8 }, () => predict(edge.url, image)))));
    expect(tally(replies)).toEqual({ '200': 48 });
    for (const reply of replies) expect(reply.body.id).toBe(reply.requestId);
    const added = (await Promise.all([...prefixes.keys()].map(xadds))).map((count, i) => count - before[i]!);
    expect(added.reduce((sum, n) => sum + n, 0)).toBe(48);
    for (const count of added) expect(count).toBeGreaterThanOrEqual(4);
    const ready = (await (await fetch(`${edge.url}/readyz`)).json()) as { shards: { state: string; workers: number }[] };
    expect(ready.shards.map((shard) => [shard.state, shard.workers])).toEqual([
      ['up', 1],
      ['up', 1],
      ['up', 1],
    ]);
    expect(worker.lines.filter((line) => /CROSSSLOT|MOVED/.test(line))).toEqual([]);
  });
});
