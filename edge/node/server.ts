/**
 * The Node adapter: sharp codec, Upstash REST or ioredis broker, served by @hono/node-server;
 * Prometheus metrics on EDGE_METRICS_PORT (metrics.ts).
 *
 * @example
 * const edge = await startNodeEdge(parseEdgeConfig(process.env));
 * console.log(edge.url); // http://127.0.0.1:8787
 * await edge.close();
 */
import { serve } from '@hono/node-server';
import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context } from 'hono';
import { Redis as UpstashRedis } from '@upstash/redis';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { errorBody } from '../errors.ts';
import { createApp } from '../app.ts';
import type { Broker, BrokerLimits } from '../broker/broker.ts';
import { createShardedBroker } from '../broker/sharded.ts';
import { createUpstashBroker } from '../broker/upstash.ts';
import { brokerLimits, type EdgeConfig } from '../config.ts';
import { createIoredisBroker } from './ioredis-broker.ts';
import { sharedInbox } from './shared-inbox.ts';
import { createUpstashHttp } from './upstash-http.ts';
import { createLimiter } from '../middleware/rate-limit/index.ts';
import { EdgeMetrics } from './metrics.ts';
import { createSharpCodec } from './sharp-codec.ts';
import { maskedUrl } from '../../shared/config.ts';
import { redisKeys } from '../../shared/keys.ts';
import { scriptSources } from '../../shared/lua/node.ts';
import { createLogger, type Logger } from '../../shared/log.ts';
import { serveMetrics } from '../../shared/metrics-server.ts';
import { type ShardSpec, shardLogger } from '../../shared/shards.ts';
import { startTracing } from '../../shared/tracing/index.ts';

export interface NodeEdge {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** How often a sharded edge reads every shard's status (health and backlog, for the choice of shard). */
const SHARD_PROBE_MS = 500;

/** The broker of one shard: a direct connection, or Upstash REST with one result subscription per process. */
function shardBroker(shard: ShardSpec, config: EdgeConfig, logger: Logger): Promise<Broker> | Broker {
  const keys = redisKeys(shard.prefix);
  const limits: BrokerLimits = brokerLimits(config);
  const log = shardLogger(logger, shard, config.shards.length);
  if (shard.transport === 'ioredis') {
    return createIoredisBroker({ url: shard.url, cluster: shard.cluster, tlsCa: config.REDIS_TLS_CA, keys, limits, logger: log });
  }
  // A pool of connections to Upstash REST (see upstash-http.ts for why not fetch).
  const http = createUpstashHttp({ url: shard.url, token: shard.token! });
  // One result subscription for the whole process (no SUBSCRIBE/UNSUBSCRIBE per request).
  const redis = new UpstashRedis(http);
  const inbox = sharedInbox({ http, publish: (channel, message) => redis.publish(channel, message), keys, logger: log });
  const broker = createUpstashBroker({ redis, keys, limits, scripts: scriptSources, inbox, logger: log });
  return { ...broker, close: () => broker.close().finally(() => http.close()) };
}

/** One broker per shard of the config; several behind one sharded broker (../broker/sharded.ts). */
export async function createNodeBroker(config: EdgeConfig, logger: Logger): Promise<Broker> {
  const brokers = await Promise.all(config.shards.map((shard) => shardBroker(shard, config, logger)));
  if (brokers.length === 1) return brokers[0]!;
  return createShardedBroker(
    config.shards.map((shard, i) => ({ name: shard.name, region: shard.region, broker: brokers[i]! })),
    { region: config.EDGE_REGION, probeEveryMs: SHARD_PROBE_MS, retryAfterSeconds: config.RETRY_AFTER_S, logger },
  );
}

export async function startNodeEdge(config: EdgeConfig, logger: Logger = createLogger('edge')): Promise<NodeEdge> {
  const broker = await createNodeBroker(config, logger);
  const rateLimitHttp = config.rateLimit && config.rateLimitDb ? createUpstashHttp(config.rateLimitDb) : undefined;
  const rateLimit = config.rateLimit &&
    rateLimitHttp && {
      limiter: createLimiter(new UpstashRedis(rateLimitHttp), config.rateLimit, redisKeys(config.rateLimitDb!.prefix).rateLimit),
      clientAddress: (c: Context) => getConnInfo(c).remote.address,
    };
  const metrics = config.EDGE_METRICS_PORT > 0 ? new EdgeMetrics() : undefined;
  const tracing = config.tracing && (await startTracing(config.tracing, { log: logger }));
  const app = createApp({
    codec: createSharpCodec({ maxPixels: config.MAX_PIXELS }),
    broker,
    config,
    logger,
    rateLimit,
    observe: metrics?.observe,
    tracing,
  });
  const metricsServer =
    metrics && (await serveMetrics(metrics.registry, { port: config.EDGE_METRICS_PORT, host: config.HOST, log: logger }));
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: app.fetch, port: config.PORT, hostname: config.HOST }, () => resolve(s));
  });
  // Requests Node's HTTP parser rejects (a non-numeric Content-Length, oversized headers) never
  // reach Hono: answer them in the API's JSON shape too.
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    if (!socket.writable) return void socket.destroy();
    const [status, reason] = error.code === 'HPE_HEADER_OVERFLOW' ? [431, 'Request Header Fields Too Large'] : [400, 'Bad Request'];
    const body = JSON.stringify(errorBody('bad_request', `Malformed HTTP request (${error.code ?? 'parse error'})`));
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
  const { port } = server.address() as AddressInfo;
  const host = config.HOST === '0.0.0.0' || config.HOST === '::' ? '127.0.0.1' : config.HOST;
  logger.info(
    {
      port,
      shards: config.shards.map(({ name, transport }) => `${name} (${transport})`),
      ...(config.tracing && { traces: maskedUrl(config.tracing.url) }),
    },
    'edge listening',
  );
  return {
    url: `http://${host}:${port}`,
    port,
    async close() {
      try {
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await metricsServer?.close();
        await broker.close();
        await rateLimitHttp?.close();
      } finally {
        await tracing?.shutdown();
      }
    },
  };
}
