/**
 * The processes tests stand on, started one way: a redis-server of the file's own, Node edges on
 * free local ports over either broker, worker processes (the real `npm run worker` entry). Every integration file owns its Redis: vitest runs files in
 * parallel processes, and a Redis per file keeps each file's keys, command counters (INFO
 * commandstats) and outages its own, for the few milliseconds a redis-server takes to start.
 *
 * @example
 * const redis = useRedisServer();                     // started before the file's tests, stopped after
 * const edge = await startLocalEdge(viaTcp(redis.url), logger, { KEY_PREFIX: 'mine' });
 */
import { Redis, type RedisOptions } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { spawnTier, type TierProcess } from '../../dev/processes.ts';
import { freePort, type RedisServerHandle, startRedisServer } from '../../dev/redis-server.ts';
import { parseEdgeConfig } from '../../edge/config.ts';
import { type NodeEdge, startNodeEdge } from '../../edge/node/server.ts';
import type { Logger } from '../../shared/log.ts';
import { ioredisScripts } from '../../shared/lua/node.ts';

type Env = Record<string, string | undefined>;

export interface RedisFixture {
  readonly server: RedisServerHandle;
  readonly url: string;
  /** A client for the test to look and write with (with the scripts as commands). */
  readonly redis: Redis;
}

/** A redis-server for this file's tests, with a client: started in beforeAll, stopped in afterAll. */
export function useRedisServer(options: { client?: RedisOptions } = {}): RedisFixture {
  let server: RedisServerHandle | undefined;
  let redis: Redis | undefined;
  beforeAll(async () => {
    server = await startRedisServer();
    redis = new Redis(server.url, { scripts: ioredisScripts, ...options.client });
    redis.on('error', () => {}); // tests that stop Redis see the failures in their own calls
  });
  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
  });
  const started = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('useRedisServer(): used before its beforeAll ran');
    return value;
  };
  return {
    get server() {
      return started(server);
    },
    get url() {
      return started(server).url;
    },
    get redis() {
      return started(redis);
    },
  };
}

/** Edge settings for the Upstash REST broker through a local REST server. */
export const viaRest = (rest: { url: string }, token: string): Env => ({
  UPSTASH_REDIS_REST_URL: rest.url,
  UPSTASH_REDIS_REST_TOKEN: token,
});
/** Edge settings for the direct (ioredis) broker. */
export const viaTcp = (redisUrl: string): Env => ({ REDIS_URL: redisUrl });

/** A Node edge on a free port of 127.0.0.1, with the defaults unless `env` says otherwise. */
export function startLocalEdge(broker: Env, logger: Logger, env: Env = {}): Promise<NodeEdge> {
  return startNodeEdge(parseEdgeConfig({ PORT: '0', HOST: '127.0.0.1', ...broker, ...env }), logger);
}

export interface NamedEdge {
  name: 'upstash' | 'ioredis';
  edge: NodeEdge;
}

/** One Node edge per broker, alike otherwise: the Upstash REST one first, then the direct one. */
export async function startBothEdges(
  via: { rest: { url: string }; token: string; redisUrl: string },
  logger: Logger,
  env: Env = {},
): Promise<NamedEdge[]> {
  return [
    { name: 'upstash', edge: await startLocalEdge(viaRest(via.rest, via.token), logger, env) },
    { name: 'ioredis', edge: await startLocalEdge(viaTcp(via.redisUrl), logger, env) },
  ];
}

/** Set FAULTS_LOG=1 to see the workers' log lines. */
const SHOW_LOGS = process.env.FAULTS_LOG === '1';

export interface WorkerProcess {
  consumer: string;
  tier: TierProcess;
  /** Settles with the exit code (null if killed by a signal) and signal when the process is gone. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Its formatted log lines, for assertions and for diagnosing a failure. */
  lines: string[];
  alive(): boolean;
  kill(signal: NodeJS.Signals): void;
}

/** Start `gpu-worker/main.ts` as a child process (its default engine, caffe preprocessing, info logs unless `env` says otherwise). */
export function spawnWorker(consumer: string, env: Record<string, string>): WorkerProcess {
  const lines: string[] = [];
  const tier = spawnTier({
    name: consumer,
    entry: 'gpu-worker/main.ts',
    env: { PREPROCESS: 'caffe', LOG_LEVEL: 'info', ...env, CONSUMER_NAME: consumer },
    readyMessage: 'worker ready',
    print: (line) => {
      lines.push(line);
      if (SHOW_LOGS) console.log(line);
    },
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    tier.child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    consumer,
    tier,
    exited,
    lines,
    alive: () => tier.child.exitCode === null && tier.child.signalCode === null,
    kill: (signal) => void tier.child.kill(signal),
  };
}

/**
 * `npm start` (dev/stack.ts, with `args` such as `--workers`) on a free port of 127.0.0.1, its
 * lines into `output`; resolves once it prints "Ready:", or rejects with everything it printed.
 * `detached`: its own process group, as a shell's foreground job (Ctrl-C is then `-pid`).
 */
export async function startStack(
  env: Env,
  output: string[],
  options: { args?: string[]; detached?: boolean } = {},
): Promise<{ stack: TierProcess; url: string }> {
  const port = await freePort();
  const stack = spawnTier({
    name: 'stack',
    command: [process.execPath, '--import', 'tsx', 'dev/stack.ts', ...(options.args ?? [])],
    env: { ...env, PORT: String(port) },
    readyMessage: 'Ready:',
    print: (line) => output.push(line),
    detached: options.detached,
  });
  await stack.ready.catch((error) => {
    throw new Error(`${error.message}\n${output.join('\n')}`);
  });
  return { stack, url: `http://127.0.0.1:${port}` };
}
