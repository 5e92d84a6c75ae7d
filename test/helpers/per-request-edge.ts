/**
 * The Node app, codec and Upstash REST broker with the Workers edge's inbox (one subscription per
 * request, @upstash/redis `subscribe()`), for tests of that path without workerd.
 *
 * @example
 * const edge = await startPerRequestEdge(parseEdgeConfig({ UPSTASH_REDIS_REST_URL, UPSTASH_REDIS_REST_TOKEN }), logger);
 * await edge.close();
 */
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { Redis as UpstashRedis } from '@upstash/redis';
import { createApp } from '../../edge/app.ts';
import { createUpstashBroker } from '../../edge/broker/upstash.ts';
import { brokerLimits, type EdgeConfig } from '../../edge/config.ts';
import { createSharpCodec } from '../../edge/node/sharp-codec.ts';
import { redisKeys } from '../../shared/keys.ts';
import { scriptSources } from '../../shared/lua/node.ts';
import type { Logger } from '../../shared/log.ts';

export async function startPerRequestEdge(config: EdgeConfig, logger: Logger): Promise<{ url: string; close(): Promise<void> }> {
  const redis = new UpstashRedis({ url: config.UPSTASH_REDIS_REST_URL!, token: config.UPSTASH_REDIS_REST_TOKEN!, enableTelemetry: false });
  const broker = createUpstashBroker({
    redis,
    keys: redisKeys(config.KEY_PREFIX),
    limits: brokerLimits(config),
    scripts: scriptSources,
  });
  const app = createApp({ codec: createSharpCodec({ maxPixels: config.MAX_PIXELS }), broker, config, logger });
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await broker.close();
    },
  };
}
