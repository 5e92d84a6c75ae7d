/**
 * A throwaway Redis Cluster for tests: `masters` redis-servers in cluster mode on free ports
 * (no replicas, nothing persisted), joined with `redis-cli --cluster create` (Debian's
 * redis-tools), ready once CLUSTER INFO says `cluster_state:ok` on every node.
 *
 * @example
 * const cluster = await startRedisCluster(3);
 * cluster.url              // redis://127.0.0.1:<port of the first node>: a seed node
 * await cluster.slotOwner('{rn}')  // the port of the node serving that hash tag's slot
 * await cluster.stop();
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { type RedisServerHandle, startRedisServer } from './redis-server.ts';

const run = promisify(execFile);

export interface RedisClusterHandle {
  /** A seed node's URL. */
  url: string;
  nodes: RedisServerHandle[];
  /** The port of the master serving `key`'s slot. */
  slotOwner(key: string): Promise<number>;
  stop(): Promise<void>;
}

export async function startRedisCluster(masters = 3): Promise<RedisClusterHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'redis-cluster-'));
  const nodes = await Promise.all(
    Array.from({ length: masters }, (_, i) =>
      startRedisServer({
        args: ['--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${i}.conf`), '--cluster-node-timeout', '2000'],
      }),
    ),
  );
  const stop = async () => {
    await Promise.all(nodes.map((node) => node.stop()));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await run('redis-cli', [
      '--cluster',
      'create',
      ...nodes.map((node) => `127.0.0.1:${node.port}`),
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ]);
    const clients = nodes.map((node) => new Redis(node.url));
    try {
      for (const until = Date.now() + 10_000; ; ) {
        const infos = await Promise.all(clients.map((client) => client.cluster('INFO') as Promise<string>));
        if (infos.every((info) => info.includes('cluster_state:ok'))) break;
        if (Date.now() > until) throw new Error('the cluster did not reach cluster_state:ok within 10 s');
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    } finally {
      for (const client of clients) client.disconnect();
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    url: nodes[0]!.url,
    nodes,
    async slotOwner(key) {
      const client = new Redis(nodes[0]!.url);
      try {
        const slot = (await client.cluster('KEYSLOT', key)) as number;
        const ranges = (await client.cluster('SLOTS')) as unknown as [number, number, [string, number]][];
        const range = ranges.find(([from, to]) => slot >= from && slot <= to);
        if (!range) throw new Error(`no node serves slot ${slot}`);
        return range[2][1];
      } finally {
        client.disconnect();
      }
    },
    stop,
  };
}
