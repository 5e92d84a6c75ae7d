/**
 * What every ioredis connection of both tiers shares (Node only: the Workers edge speaks REST):
 * the Lua scripts as commands (lua/node.ts), TLS with a private CA (`REDIS_TLS_CA`), the reconnect
 * policy, and telling the connection
 * errors no retry can fix (a certificate not trusted, a password refused) from an outage.
 *
 * Production reaches a hosted Redis as `rediss://default:<password>@<host>:6379`: TLS is on by
 * the scheme, verified against Node's CA store, or against REDIS_TLS_CA for a private CA.
 *
 * @example
 * const redis = new Redis(config.redisUrl, { ...redisConnectionOptions(config), connectionName: 'worker' });
 * redis.on('error', (error) => { const fatal = fatalRedisError(error); if (fatal) ... });
 */
import { readFileSync } from 'node:fs';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { ConfigError } from './config.ts';
import { ioredisScripts } from './lua/node.ts';

/** Reconnect at least every second while Redis is away, so service resumes soon after it is back. */
export const reconnectDelayMs = (attempt: number) => Math.min(attempt * 100, 1_000);

export function redisConnectionOptions(config: { redisUrl: string; redisTlsCa?: string }): RedisOptions {
  const options: RedisOptions = { retryStrategy: reconnectDelayMs, scripts: ioredisScripts };
  // A CA is for TLS connections only: with several shards, some may be plain redis://.
  if (!config.redisTlsCa || !config.redisUrl.startsWith('rediss:')) return options;
  let ca: Buffer;
  try {
    ca = readFileSync(config.redisTlsCa);
  } catch (error) {
    throw new ConfigError(
      `REDIS_TLS_CA: cannot read ${config.redisTlsCa} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
    );
  }
  return { ...options, tls: { ca } };
}

/**
 * A connection to one shard (shared/shards.ts) with `options` on top of
 * {@link redisConnectionOptions}: a Redis, or for a `cluster` shard a Cluster client seeded with
 * `url`. A Cluster routes each command to the node of its keys' slot and speaks the same commands
 * (every key of a shard shares one slot: shared/keys.ts), so it is typed as a Redis; what has no
 * key (PING, CLIENT ID, SUBSCRIBE) goes to some node.
 */
export function connectShard(shard: { url: string; cluster?: boolean }, tlsCa: string | undefined, options: RedisOptions = {}): Redis {
  const { retryStrategy, enableOfflineQueue, scripts, ...redisOptions } = {
    ...redisConnectionOptions({ redisUrl: shard.url, redisTlsCa: tlsCa }),
    ...options,
  };
  if (!shard.cluster) return new Redis(shard.url, { retryStrategy, enableOfflineQueue, scripts, ...redisOptions });
  const { hostname, port, username, password, protocol } = new URL(shard.url);
  const cluster = new Cluster([{ host: hostname, port: Number(port || 6379) }], {
    scripts,
    enableOfflineQueue,
    lazyConnect: redisOptions.lazyConnect,
    ...(retryStrategy && { clusterRetryStrategy: (times: number) => retryStrategy(times) ?? null }),
    redisOptions: {
      ...redisOptions,
      ...(username && { username: decodeURIComponent(username) }),
      ...(password && { password: decodeURIComponent(password) }),
      ...(protocol === 'rediss:' && { tls: { ...(redisOptions.tls ?? {}), servername: hostname } }),
    },
  });
  return cluster as unknown as Redis;
}

/** Node's codes for a certificate it does not trust. */
const UNTRUSTED = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_UNTRUSTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
]);

/**
 * One line naming the cause when `error` is one no reconnect can fix, else undefined (an outage:
 * keep retrying). Never holds the password: Redis' and Node's messages do not repeat it.
 */
export function fatalRedisError(error: unknown): string | undefined {
  const code = (error as NodeJS.ErrnoException | undefined)?.code ?? '';
  const message = String((error as Error | undefined)?.message ?? error).split('\n')[0]!;
  if (/^(WRONGPASS|NOAUTH)|invalid password|invalid username-password/i.test(message)) {
    return `Redis refused the credentials in REDIS_URL (${message})`;
  }
  if (UNTRUSTED.has(code)) {
    return `the TLS certificate of Redis is not trusted (${code}: ${message}); for a private CA, set REDIS_TLS_CA to the PEM file of the CA that signed it`;
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `the TLS certificate of Redis is for another host (${message})`;
  if (/wrong version number|unknown protocol|packet length too long/i.test(message)) {
    return `REDIS_URL is rediss:// but Redis does not speak TLS on that port (${message})`;
  }
  return undefined;
}

/** An error that says so (`fatal`), for callers that must not retry it. */
export class FatalRedisError extends Error {
  override name = 'FatalRedisError';
  readonly fatal = true;
}

/**
 * Connect once, without retrying: what no retry can fix is returned as `fatal` (the first error
 * ioredis reports says why; the connection itself only says "Connection is closed"), anything else
 * as `error` (Redis down or slow: it may come later).
 */
export async function probeRedis(
  config: { redisUrl: string; redisTlsCa?: string },
  timeoutMs = 5_000,
): Promise<{ ok: true } | { fatal: string } | { error: string }> {
  const { Redis } = await import('ioredis');
  const probe = new Redis(config.redisUrl, {
    ...redisConnectionOptions(config),
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    connectTimeout: timeoutMs,
  });
  let first: unknown;
  probe.on('error', (error: unknown) => void (first ??= error));
  try {
    await probe.connect();
    await probe.ping();
    return { ok: true };
  } catch (error) {
    const cause = first ?? error;
    const fatal = fatalRedisError(cause);
    return fatal ? { fatal } : { error: (cause as Error)?.message ?? String(cause) };
  } finally {
    probe.disconnect();
  }
}
