/**
 * Every Redis key and channel the two tiers share, named in one place.
 * A prefix lets several deployments (or test runs, or shards: shared/shards.ts) share one Redis.
 *
 * Every key holds the prefix as its hash tag (`{rn}`): on a Redis Cluster all keys of one prefix
 * live in one slot, so the scripts and pipelines that touch several of them (a result key and the
 * stream, say) never fail with CROSSSLOT, and shards with different prefixes spread over the
 * nodes. Channels are not keys (PUBLISH reaches every node), so they carry no tag.
 *
 * @example
 * const k = redisKeys('rn');
 * k.stream            // '{rn}:jobs'
 * k.result('abc')     // '{rn}:result:abc'
 * k.resultChannel('abc') // 'rn:done:abc'
 */
export const DEFAULT_KEY_PREFIX = 'rn';

export function redisKeys(prefix: string = DEFAULT_KEY_PREFIX) {
  const tag = `{${prefix}}`;
  return {
    /** Redis Stream of queued jobs. Its length is the backlog: workers XDEL each entry once done. */
    stream: `${tag}:jobs`,
    /** Consumer group that all workers of a deployment join. */
    group: 'workers',
    /**
     * Dead-letter stream: jobs the workers gave up on (delivered more than MAX_DELIVERIES times, or
     * whose inference threw on their own), each with its original fields plus why (deadletter-3.lua).
     * Capped (oldest dropped first); its entries are for inspection, nothing reads them back.
     */
    deadLetter: `${tag}:dead`,
    /** Per-request result key (string, JSON of JobResult), written with a TTL. */
    result: (id: string) => `${tag}:result:${id}`,
    /** Per-request pub/sub channel the worker publishes the result on (per-request subscriptions: the Workers edge). */
    resultChannel: (id: string) => `${prefix}:done:${id}`,
    /** Prefix of the rate limiter's keys (@upstash/ratelimit). */
    rateLimit: `${tag}:ratelimit`,
    /**
     * Worker heartbeats: one HASH, field = consumer name, value = JSON of WorkerHeartbeat
     * (protocol.ts). One HGETALL reads them all; each worker refreshes the key's TTL and prunes
     * entries past their `expiresAt`, and removes its own when it stops.
     */
    workers: `${tag}:workers`,
    /** Per-edge-process channel, for edges holding one long-lived subscription (Node: ioredis, or shared SSE over REST). */
    edgeChannel: (edgeId: string) => `${prefix}:edge:${edgeId}`,
  } as const;
}

export type RedisKeys = ReturnType<typeof redisKeys>;
