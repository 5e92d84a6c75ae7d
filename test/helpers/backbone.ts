/**
 * What the end-to-end and fault tests stand on: a redis-server of their own, an ioredis client to
 * inspect it, the local Upstash REST server in front of it, the wasm backend, and a tiny real
 * model on disk for worker processes. `stop()` tears down all of it (after the test's own edges
 * and workers).
 *
 * @example
 * const base = await startBackbone({ token: 'test-token-0123456789', seed: 7 });
 * spawnWorker('w1', { REDIS_URL: base.redisServer.url, ...base.tiny.env });
 * await base.stop();
 */
import { Redis } from 'ioredis';
import { startRedisServer, type RedisServerHandle } from '../../dev/redis-server.ts';
import { startUpstashRestServer } from '../../dev/upstash-rest/server.ts';
import { selectBackend } from '../../gpu-worker/engine/tfjs/backend.ts';
import type { Logger } from '../../shared/log.ts';
import { createTinyModel, type TinyModel } from './tiny-model.ts';

export interface Backbone {
  redisServer: RedisServerHandle;
  redis: Redis;
  rest: Awaited<ReturnType<typeof startUpstashRestServer>>;
  tiny: TinyModel;
  stop(): Promise<void>;
}

export async function startBackbone(options: { token: string; seed: number; logger?: Logger }): Promise<Backbone> {
  const redisServer = await startRedisServer();
  const redis = new Redis(redisServer.url);
  const rest = await startUpstashRestServer({ redisUrl: redisServer.url, token: options.token, port: 0, logger: options.logger });
  await selectBackend('wasm');
  const tiny = await createTinyModel({ classes: 10, seed: options.seed });
  return {
    redisServer,
    redis,
    rest,
    tiny,
    async stop() {
      await rest.close();
      redis.disconnect();
      await redisServer.stop();
      await tiny.cleanup();
    },
  };
}
