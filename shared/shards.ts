/**
 * The brokers of one service (`QUEUES`): each is a shard with its own job stream, consumer group,
 * heartbeats and result keys. Edges spread requests over them and fail over between them
 * (edge/broker/sharded.ts); workers read from every shard they are given (gpu-worker/worker.ts).
 *
 * Two forms, both tiers alike:
 * - a comma list of Redis URLs: `redis://10.0.0.1:6379,redis://10.0.0.2:6379`;
 * - a JSON array of entries `{ "url", "token"?, "name"?, "region"?, "prefix"?, "cluster"? }`: an Upstash REST
 *   URL needs its `token` (the edge only: workers connect over TCP, to the same database's
 *   `rediss://` URL); `name` labels the shard in /readyz, logs and metrics (default: host:port,
 *   and /prefix when it has its own);
 *   `region` is matched against the edge's EDGE_REGION (nearest first); `prefix` is the shard's
 *   KEY_PREFIX (its keys' hash tag: shared/keys.ts), for several shards on one Redis or cluster;
 *   `cluster: true` says `url` is a seed node of a Redis Cluster (shards with different prefixes
 *   land on different slots, so spread over its nodes).
 *
 * Without QUEUES, the single-broker settings (REDIS_URL, UPSTASH_REDIS_REST_URL + TOKEN) make a
 * list of one, as before.
 *
 * @example
 * parseQueues('redis://a:6379,redis://b:6379', { prefix: 'rn', rest: false });
 * // [{ name: 'a:6379', url: 'redis://a:6379', prefix: 'rn', transport: 'ioredis' }, { name: 'b:6379', ... }]
 */
import { z } from 'zod';
import { maskedUrl } from './config.ts';
import type { Logger } from './log.ts';

export interface ShardSpec {
  /** Unique in the list: labels the shard in /readyz, logs and metrics. */
  name: string;
  url: string;
  /** `ioredis`: a direct connection (redis://, rediss://); `upstash`: Upstash REST over HTTP(S). */
  transport: 'ioredis' | 'upstash';
  /** Upstash REST token (transport `upstash`). */
  token?: string;
  /** Matched against EDGE_REGION: the edge prefers shards of its own region. */
  region?: string;
  /** The shard's KEY_PREFIX. */
  prefix: string;
  /** `url` is a seed node of a Redis Cluster (transport `ioredis`): commands go to the node of their keys' slot. */
  cluster?: true;
}

const NAME = /^[\w.:@/-]+$/;

const Entry = z.strictObject({
  url: z.string(),
  token: z.string().min(1).optional(),
  name: z.string().regex(NAME, { error: 'letters, digits, _ . : @ / - only' }).optional(),
  region: z
    .string()
    .regex(/^[\w.-]+$/, { error: 'letters, digits, _ . - only' })
    .optional(),
  prefix: z
    .string()
    .regex(/^[\w.-]+$/, { error: 'letters, digits, _ . - only' })
    .optional(),
  cluster: z.literal(true, { error: 'true, or leave it out' }).optional(),
});

export interface QueuesOptions {
  /** KEY_PREFIX: the prefix of entries that set none. */
  prefix: string;
  /** Whether Upstash REST entries are allowed (the edge: yes; workers: no). */
  rest: boolean;
}

/**
 * The shards QUEUES lists; throws an Error of one line naming the entry (its URL masked, never a
 * token) when the list is malformed, empty, or repeats a shard.
 */
export function parseQueues(text: string, options: QueuesOptions): ShardSpec[] {
  const trimmed = text.trim();
  let raw: unknown[];
  if (trimmed.startsWith('[')) {
    try {
      raw = JSON.parse(trimmed);
    } catch (error) {
      // Never the parser's message: V8 quotes the text around the error, and it may be a token.
      const at = /position (\d+)/.exec((error as Error).message)?.[1];
      throw new Error(`not valid JSON${at ? ` (at character ${at})` : ''}`);
    }
  } else {
    raw = trimmed
      .split(',')
      .map((url) => url.trim())
      .map((url) => ({ url }));
    if (raw.some((entry) => !(entry as { url: string }).url)) throw new Error('an empty entry in the comma list');
  }
  if (raw.length === 0) throw new Error('no shard listed: give at least one Redis URL');
  const shards = raw.map((entry, index) => shardOf(entry, index, options));
  const seen = new Map<string, number>();
  const names = new Map<string, number>();
  shards.forEach((shard, index) => {
    // One stream per endpoint and prefix: two entries naming the same would be one shard counted twice.
    const where = `${endpoint(shard.url)} ${shard.prefix}`;
    const first = seen.get(where);
    if (first !== undefined) {
      throw new Error(
        `entry ${index + 1} (${maskedUrl(shard.url)}) repeats entry ${first + 1}: the same database and prefix; give each shard on one Redis its own "prefix"`,
      );
    }
    const sameName = names.get(shard.name);
    if (sameName !== undefined)
      throw new Error(`entry ${index + 1} has the name "${shard.name}" of entry ${sameName + 1}: names must differ`);
    seen.set(where, index);
    names.set(shard.name, index);
  });
  return shards;
}

function shardOf(value: unknown, index: number, options: QueuesOptions): ShardSpec {
  const at = `entry ${index + 1}`;
  const parsed = Entry.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.join('.');
    throw new Error(`${at}: ${field ? `${field}: ` : ''}${issue.message}`);
  }
  const { url, token, name, region, prefix, cluster } = parsed.data;
  let protocol: string;
  let host: string;
  try {
    ({ protocol, host } = new URL(url));
  } catch {
    throw new Error(`${at}: not a URL (${JSON.stringify(maskedUrl(url))})`);
  }
  const rest = protocol === 'https:' || protocol === 'http:';
  if (!rest && protocol !== 'redis:' && protocol !== 'rediss:') {
    throw new Error(
      `${at}: expected a redis://, rediss://${options.rest ? ' or https:// (Upstash REST)' : ''} URL (got ${maskedUrl(url)})`,
    );
  }
  if (rest && !options.rest) {
    throw new Error(`${at}: workers connect over TCP: give the database's redis:// or rediss:// URL, not its REST URL (${maskedUrl(url)})`);
  }
  if (rest && !token)
    throw new Error(`${at}: an Upstash REST URL needs its "token" (JSON form: {"url": "${maskedUrl(url)}", "token": "..."})`);
  if (rest && cluster) throw new Error(`${at}: "cluster" is for a redis:// or rediss:// seed node, not a REST URL`);
  if (!rest && token)
    throw new Error(`${at}: a "token" belongs to an Upstash REST URL; a Redis URL carries its password (${maskedUrl(url)})`);
  return {
    // Shards on one Redis differ by prefix: so do their default names.
    name: name ?? (prefix && prefix !== options.prefix ? `${host}/${prefix}` : host),
    url,
    transport: rest ? 'upstash' : 'ioredis',
    ...(token && { token }),
    ...(region && { region }),
    prefix: prefix ?? options.prefix,
    ...(cluster && { cluster }),
  };
}

/** The database a URL names: host, port and (Redis) db number, whatever the scheme and credentials. */
function endpoint(url: string): string {
  const { hostname, port, protocol, pathname } = new URL(url);
  const tls = protocol === 'rediss:' || protocol === 'https:';
  const db = protocol.startsWith('redis') ? Number(pathname.slice(1) || 0) : 0;
  return `${hostname.toLowerCase()}:${port || (protocol.startsWith('redis') ? 6379 : tls ? 443 : 80)}/${db}`;
}

/** The zod check of a QUEUES variable: its shards, or the issue naming the bad entry. */
export const queuesVar = (ctx: z.RefinementCtx, text: string, options: QueuesOptions): ShardSpec[] | undefined => {
  try {
    return parseQueues(text, options);
  } catch (error) {
    ctx.addIssue({ code: 'custom', path: ['QUEUES'], message: (error as Error).message });
    return undefined;
  }
};

/** A shard's logger: the tier's own when it serves one shard, a child naming the shard when several. */
export const shardLogger = (logger: Logger, shard: ShardSpec, shards: number): Logger =>
  shards > 1 ? logger.child({ shard: shard.name }) : logger;
