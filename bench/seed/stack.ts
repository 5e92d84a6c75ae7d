/**
 * The seed baseline as processes, like bench/pipeline.ts does ours: a redis-server of its own,
 * the seed web server (server.ts) and N seed model servers (worker.ts). A {@link LoadTarget}, so
 * the same `measureLoad` (closed loop + INFO commandstats) runs against both.
 *
 * @example
 * const seed = await startSeedStack({ workers: 1, workerEnv: { MODEL: 'resnet50' } });
 * const row = await measureLoad(seed, images, { concurrency: 8, requests: 100 });
 * await seed.stop();
 */
import { Redis } from 'ioredis';
import { startRedisServer, type RedisServerHandle } from '../../dev/redis-server.ts';
import { spawnTier, type TierProcess } from '../../dev/processes.ts';
import type { BytesPerJob } from '../bytes.ts';
import { cpuSampler, tierPrinter, type LoadTarget } from '../pipeline.ts';
import { IMAGE_QUEUE } from './protocol.ts';

export interface SeedStack extends LoadTarget {
  stop(): Promise<void>;
}

export async function startSeedStack(options: {
  workers: number;
  workerEnv: Record<string, string | undefined>;
  log?: (line: string) => void;
}): Promise<SeedStack> {
  const tiers: TierProcess[] = [];
  let redisServer: RedisServerHandle | undefined;
  let inspector: Redis | undefined;
  const print = tierPrinter(options.log);
  const stop = async () => {
    await Promise.allSettled(tiers.map((tier) => tier.stop(5_000)));
    inspector?.disconnect();
    await redisServer?.stop().catch(() => {});
  };
  try {
    redisServer = await startRedisServer();
    inspector = new Redis(redisServer.url, { connectionName: 'bench-inspector' });
    let url = '';
    const server = spawnTier({
      name: 'seed-server',
      entry: 'bench/seed/server.ts',
      env: { REDIS_URL: redisServer.url, PORT: '0' },
      readyMessage: 'seed server ready on',
      print: (line) => {
        url ||= /seed server ready on (\S+)/.exec(line)?.[1] ?? '';
        print(line);
      },
    });
    tiers.push(server);
    for (let i = 0; i < options.workers; i++) {
      tiers.push(
        spawnTier({
          name: `seed-worker-${i + 1}`,
          entry: 'bench/seed/worker.ts',
          env: { REDIS_URL: redisServer.url, ...options.workerEnv },
          readyMessage: 'seed worker ready',
          print,
        }),
      );
    }
    await Promise.all(tiers.map((tier) => tier.ready));
    const cpuMs = cpuSampler({
      server: [server.child.pid],
      workers: tiers.slice(1).map((t) => t.child.pid),
      redis: [redisServer.process.pid],
    });
    return { url, redis: inspector, cpuMs, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * Bytes of one queued job as the seed web server really enqueues it: a stack without model
 * servers, one upload, then the list entry is weighed (and the request abandoned).
 */
export async function seedBytesPerJob(image: { name: string; bytes: Uint8Array }, log?: (line: string) => void): Promise<BytesPerJob> {
  const stack = await startSeedStack({ workers: 0, workerEnv: {}, log });
  const abort = new AbortController();
  try {
    const form = new FormData();
    form.append('image', new Blob([new Uint8Array(image.bytes)]), image.name);
    let answer = 'none yet';
    void fetch(`${stack.url}/predict`, { method: 'POST', body: form, signal: abort.signal }).then(
      async (response) => (answer = `${response.status} ${await response.text()}`),
      () => {},
    );
    const giveUp = Date.now() + 10_000;
    while ((await stack.redis.llen(IMAGE_QUEUE)) === 0) {
      if (Date.now() > giveUp) throw new Error(`the seed server queued nothing within 10 s (answer: ${answer})`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const entry = await stack.redis.lindexBuffer(IMAGE_QUEUE, 0);
    const memoryUsage = Number(await stack.redis.call('MEMORY', 'USAGE', IMAGE_QUEUE, 'SAMPLES', '0'));
    return { payloadBytes: entry!.length, memoryUsage };
  } finally {
    abort.abort();
    await stack.stop();
  }
}
