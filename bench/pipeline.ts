/**
 * The full pipeline as separate processes, for the end-to-end, capacity and scale-out sections of
 * `npm run bench`: a redis-server of its own, the local Upstash REST server, the edge on Node
 * (Upstash REST broker, sharp codec) and N gpu-worker processes. Each tier is its own process, as
 * in production, so the bench process (which also generates the load) competes with them only as
 * a client would.
 *
 * {@link measureLoad} runs one closed-loop load (dev/stress.ts, autocannon) and reads Redis'
 * `INFO commandstats` before and after it, so each row carries the Redis commands per request,
 * script-internal calls included.
 *
 * @example
 * const stack = await startPipeline({ workers: 2, workerEnv: { MODEL: 'synthetic:instant' } });
 * const row = await measureLoad(stack, images, { concurrency: 8, requests: 200 });
 * await stack.stop();
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { freePort, startRedisServer, type RedisServerHandle } from '../dev/redis-server.ts';
import { spawnTier, type TierProcess } from '../dev/processes.ts';
import { runStress, type StressOptions, type StressSummary } from '../dev/stress.ts';
import { median, round } from './stats.ts';

export interface PipelineOptions {
  workers: number;
  /** Settings of every worker (MODEL, BATCH_SIZE, BACKEND...). */
  workerEnv: Record<string, string | undefined>;
  /** Extra edge settings (DEADLINE_MS, QUEUE_MAX...). */
  edgeEnv?: Record<string, string | undefined>;
  /**
   * How the edge reaches Redis: 'upstash' (default: REST through the local Upstash REST server, the
   * production protocol; the Node edge holds one shared result subscription) or 'ioredis' (direct TCP, what a self-hosted Node edge can use).
   */
  broker?: 'upstash' | 'ioredis';
  /**
   * Brokers, each its own redis-server (default 1). More than one: the edge (over TCP: `broker`
   * must be 'ioredis') and the workers are given them all as QUEUES, and the CPU of each is
   * sampled apart (`redis-1`, `redis-2`, ...).
   */
  shards?: number;
  /** Tier log lines (warnings and errors only unless `verbose`). */
  log?: (line: string) => void;
  verbose?: boolean;
}

/** What a load runs against: an HTTP endpoint and the Redis behind it. */
export interface LoadTarget {
  url: string;
  /** An inspector connection to the Redis the pipeline uses. */
  redis: Redis;
  /** CPU time used so far by each process of the stack (workers summed), where the OS tells. */
  cpuMs?(): Record<string, number>;
}

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ: 100 on every Linux this runs on). */
const USER_HZ = 100;

/** user + system CPU ms of a process, from /proc (Linux); undefined elsewhere or once it is gone. */
export function processCpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    // The fields after the command name, which is in parentheses and may hold spaces.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / USER_HZ;
  } catch {
    return undefined;
  }
}

/** `pid` and every process below it (a supervised worker's inference processes), from /proc. */
export function processTree(pid: number | undefined): number[] {
  if (pid === undefined) return [];
  let children: number[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      children = children.concat(
        readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number),
      );
    }
  } catch {
    // gone, or not Linux
  }
  return [pid, ...children.flatMap(processTree)];
}

/** CPU ms per named process group, e.g. { edge, rest, workers, redis }; each process with its children. */
export function cpuSampler(groups: Record<string, (number | undefined)[]>): () => Record<string, number> {
  return () => {
    const sample: Record<string, number> = {};
    for (const [name, pids] of Object.entries(groups)) {
      const times = pids
        .flatMap(processTree)
        .map(processCpuMs)
        .filter((t): t is number => t !== undefined);
      if (times.length) sample[name] = times.reduce((a, b) => a + b, 0);
    }
    return sample;
  };
}

export interface Pipeline extends LoadTarget {
  redisUrl: string;
  /** Every shard's Redis URL (one unless `shards`). */
  shardUrls: string[];
  stop(): Promise<void>;
}

/** One tier's log printer: problems always, everything when verbose. */
export function tierPrinter(log: ((line: string) => void) | undefined, verbose = false) {
  return (line: string) => {
    if (verbose || /\b(WARN|ERROR|FATAL)\b|error|exited/i.test(line)) log?.(`    ${line}`);
  };
}

export async function startPipeline(options: PipelineOptions): Promise<Pipeline> {
  const tiers: TierProcess[] = [];
  const servers: RedisServerHandle[] = [];
  let inspector: Redis | undefined;
  const shards = options.shards ?? 1;
  if (shards > 1 && options.broker !== 'ioredis') throw new Error('startPipeline: several shards need the ioredis broker');
  const print = tierPrinter(options.log, options.verbose);
  const stop = async () => {
    // Edge first (no new jobs), then workers, then the REST server and Redis.
    for (const group of [
      tiers.filter((t) => t.name === 'edge'),
      tiers.filter((t) => t.name !== 'edge' && t.name !== 'rest'),
      tiers.filter((t) => t.name === 'rest'),
    ]) {
      await Promise.allSettled(group.map((tier) => tier.stop(5_000)));
    }
    inspector?.disconnect();
    await Promise.allSettled(servers.map((server) => server.stop()));
  };
  try {
    for (let i = 0; i < shards; i++) servers.push(await startRedisServer());
    const redisServer = servers[0]!;
    const urls = servers.map((server) => server.url);
    // One broker: REDIS_URL; several: QUEUES.
    const queues = shards > 1 ? { QUEUES: urls.join(','), REDIS_URL: undefined } : { REDIS_URL: redisServer.url, QUEUES: undefined };
    inspector = new Redis(redisServer.url, { connectionName: 'bench-inspector' });
    const token = randomBytes(24).toString('base64url');
    const restPort = await freePort();
    const rest = spawnTier({
      name: 'rest',
      entry: 'dev/upstash-rest/main.ts',
      env: { REDIS_URL: redisServer.url, UPSTASH_REDIS_REST_TOKEN: token, UPSTASH_REST_PORT: String(restPort), LOG_LEVEL: 'warn' },
      readyMessage: 'Upstash REST server on',
      print,
    });
    tiers.push(rest);
    await rest.ready;
    const workers = Array.from({ length: options.workers }, (_, i) =>
      spawnTier({
        name: `worker-${i + 1}`,
        entry: 'gpu-worker/main.ts',
        // METRICS_PORT 0: no /metrics (several workers on one machine would want the same port).
        env: {
          ...queues,
          CONSUMER_NAME: `bench-${i + 1}`,
          INFERENCE_PROCESSES: '1',
          METRICS_PORT: '0',
          ...options.workerEnv,
        },
        readyMessage: 'worker ready',
        print,
      }),
    );
    tiers.push(...workers);
    const port = await freePort();
    const edge = spawnTier({
      name: 'edge',
      entry: 'edge/node/main.ts',
      env: {
        PORT: String(port),
        HOST: '127.0.0.1',
        ...(options.broker === 'ioredis'
          ? {
              ...queues,
              EDGE_BROKER: shards > 1 ? undefined : 'ioredis',
              UPSTASH_REDIS_REST_URL: undefined,
              UPSTASH_REDIS_REST_TOKEN: undefined,
            }
          : {
              EDGE_BROKER: 'upstash',
              UPSTASH_REDIS_REST_URL: `http://127.0.0.1:${restPort}`,
              UPSTASH_REDIS_REST_TOKEN: token,
              REDIS_URL: undefined,
            }),
        // Access logs off: the bench measures the pipeline, not a terminal.
        LOG_LEVEL: 'warn',
        ...options.edgeEnv,
      },
      readyMessage: 'edge ready on',
      print,
    });
    tiers.push(edge);
    await Promise.all(tiers.map((tier) => tier.ready));
    const cpuMs = cpuSampler({
      edge: [edge.child.pid],
      ...(options.broker === 'ioredis' ? {} : { rest: [rest.child.pid] }),
      workers: workers.map((w) => w.child.pid),
      ...(shards > 1
        ? Object.fromEntries(servers.map((server, i) => [`redis-${i + 1}`, [server.process.pid]]))
        : { redis: [redisServer.process.pid] }),
    });
    return { url: `http://127.0.0.1:${port}`, redis: inspector, redisUrl: redisServer.url, shardUrls: urls, cpuMs, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * Commands that run on a clock, whatever the traffic: each worker's heartbeat every HEARTBEAT_MS
 * (HSET + PEXPIRE + HGETALL + XINFO CONSUMERS + XPENDING, HDEL when pruning), its reclaim scan
 * (XAUTOCLAIM, every CLAIM_IDLE_MS / 2), the edge's health PING (at most one a second while some
 * request has waited over a second), and the edge's status reads (HGETALL + XLEN, for admission
 * and shard probes; see clockXlens). Per request they shrink as traffic grows, so they are
 * reported apart.
 */
export const HOUSEKEEPING_COMMANDS = new Set(['hset', 'pexpire', 'hgetall', 'hdel', 'xautoclaim', 'ping', 'xinfo', 'xpending']);

/**
 * XLENs of the edge's status reads: XLEN also runs inside every enqueue (per request), so the
 * clock's share is told apart by count: each status read is one HGETALL + XLEN, and each
 * heartbeat one HSET + HGETALL, so the status reads are the HGETALLs the heartbeats do not explain.
 */
const clockXlens = (delta: (command: string) => number) => Math.max(0, Math.min(delta('xlen'), delta('hgetall') - delta('hset')));

/** `INFO commandstats` as command -> calls. */
export async function commandStats(redis: Redis): Promise<Map<string, number>> {
  const info = await redis.info('commandstats');
  const stats = new Map<string, number>();
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) stats.set(match[1]!, Number(match[2]));
  return stats;
}

export interface LoadOptions {
  concurrency: number;
  requests: number;
  /** Requests sent (and not measured) before the timed run: warm connections, JIT, batch formation. */
  warmup?: number;
  progress?: boolean;
}

export interface LoadRow {
  concurrency: number;
  requests: number;
  ok: number;
  errors: number;
  seconds: number;
  throughput: number;
  latencyMs: StressSummary['latencyMs'];
  byStatus: Record<string, number>;
  byErrorCode: Record<string, number>;
  /**
   * Redis commands executed during the timed run (script-internal calls included) / successful
   * requests, housekeeping left out (see HOUSEKEEPING_COMMANDS).
   */
  commandsPerRequest: number;
  /** Housekeeping commands during the run / successful requests: they run on a clock, not per request. */
  housekeepingPerRequest: number;
  /** Per command, calls / successful requests (the inspector's own INFO calls left out). */
  commandBreakdown: Record<string, number>;
  /** CPU ms per successful request of each process of the stack (and of this load generator), where measurable. */
  cpuMsPerRequest?: Record<string, number>;
  /**
   * Median of the edge's own split (its JSON `timings`) where the response has one; `overhead` is
   * the median over requests of total - inference: what serving one request added to its batch's
   * inference, as the edge measured it (queue wait, decode, hops; not the client's own HTTP time).
   */
  timingsMs?: { preprocess: number; queue?: number; inference: number; total: number; overhead: number };
}

/** One closed-loop load: `concurrency` requests in flight until `requests` have been answered. */
export async function measureLoad(target: LoadTarget, images: StressOptions['images'], options: LoadOptions): Promise<LoadRow> {
  if (options.warmup) {
    await runStress({ url: target.url, images, concurrency: Math.min(options.concurrency, options.warmup), requests: options.warmup });
  }
  const timings: { preprocess: number; queue?: number; inference: number; total: number }[] = [];
  const before = await commandStats(target.redis);
  const cpuBefore = target.cpuMs?.() ?? {};
  const loadBefore = process.cpuUsage();
  const summary = await runStress({
    url: target.url,
    images,
    concurrency: options.concurrency,
    requests: options.requests,
    progress: options.progress,
    onSuccess: (body) => {
      const t = (body as { timings?: { preprocessMs: number; queueMs?: number; inferenceMs: number; totalMs: number } }).timings;
      if (t) timings.push({ preprocess: t.preprocessMs, queue: t.queueMs, inference: t.inferenceMs, total: t.totalMs });
    },
  });
  const after = await commandStats(target.redis);
  const ok = summary.byStatus['200'] ?? 0;
  const cpuAfter = target.cpuMs?.();
  const loadCpu = process.cpuUsage(loadBefore);
  const cpuMsPerRequest = cpuAfter && {
    ...Object.fromEntries(Object.entries(cpuAfter).map(([name, ms]) => [name, round((ms - (cpuBefore[name] ?? 0)) / Math.max(1, ok), 2)])),
    load: round((loadCpu.user + loadCpu.system) / 1000 / Math.max(1, ok), 2),
  };
  const breakdown: Record<string, number> = {};
  const delta = (command: string) => (after.get(command) ?? 0) - (before.get(command) ?? 0);
  const statusXlens = clockXlens(delta);
  let total = -statusXlens;
  let housekeeping = statusXlens;
  for (const command of after.keys()) {
    if (command === 'info' || delta(command) <= 0) continue;
    // Redis 7 counts subcommands apart (`xinfo|consumers`).
    if (HOUSEKEEPING_COMMANDS.has(command.split('|')[0]!)) housekeeping += delta(command);
    else total += delta(command);
    breakdown[command] = round(delta(command) / Math.max(1, ok), 2);
  }
  return {
    concurrency: options.concurrency,
    requests: summary.requests,
    ok,
    errors: summary.requests - ok + summary.connectionErrors,
    seconds: round(summary.seconds, 1),
    throughput: summary.throughput,
    latencyMs: summary.latencyMs,
    byStatus: summary.byStatus,
    byErrorCode: summary.byErrorCode,
    commandsPerRequest: round(total / Math.max(1, ok), 2),
    housekeepingPerRequest: round(housekeeping / Math.max(1, ok), 2),
    commandBreakdown: Object.fromEntries(Object.entries(breakdown).sort(([, a], [, b]) => b - a)),
    cpuMsPerRequest,
    timingsMs:
      timings.length > 0
        ? {
            preprocess: median(timings.map((t) => t.preprocess)),
            queue: timings[0]!.queue === undefined ? undefined : median(timings.map((t) => t.queue!)),
            inference: round(median(timings.map((t) => t.inference)), 1),
            total: median(timings.map((t) => t.total)),
            overhead: round(median(timings.map((t) => t.total - t.inference)), 1),
          }
        : undefined,
  };
}
