/**
 * `npm start`: the whole local stack in one command.
 *
 *   redis-server (its own, on a free port; or REDIS_URL when set; SHARDS=N: N of them, each a
 *      shard of QUEUES: shared/shards.ts)
 *   -> the local Upstash REST server (the edge's production protocol, in front of that Redis; one per shard)
 *   -> WORKERS gpu-worker processes (default 1)
 *   -> the edge on PORT (default 8787), talking Upstash REST: on Node, or with `--workers`
 *      (`npm run dev:edge`) inside workerd via `wrangler dev --env local`
 *
 * It prints the curl line to try once every tier is ready. A worker that dies is started again
 * (backoff from 1 s doubling to 30 s, back to 1 s after a minute up; logged), while the other
 * workers and the edge keep serving; a worker that exits 2 (bad settings, or an engine that cannot
 * start) is not, since its twins would fail alike: the stack stops. Ctrl-C stops everything, each
 * tier once and in order: the edge, the workers (each finishes its batch), the REST server, Redis.
 * Tiers run in process groups of their own, so the terminal's SIGINT reaches only this process; a
 * second Ctrl-C kills them at once.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { EdgeEnv } from '../edge/config.ts';
import { CONFIG_EXIT_CODE, configOrExit, intVar, parseEnv } from '../shared/config.ts';
import { z } from 'zod';
import { hasRedisServer, REDIS_INSTALL_HINT, startRedisServer, type RedisServerHandle } from './redis-server.ts';
import { killTier, spawnTier, type TierProcess, wranglerDev } from './processes.ts';
import { startUpstashRestServer } from './upstash-rest/server.ts';

const StackEnv = z.object({
  WORKERS: intVar(1, 0, 64),
  PORT: intVar(8787, 0, 65535),
  UPSTASH_REST_PORT: intVar(0, 0, 65535),
  REDIS_URL: z.string().optional(),
  // Brokers: each its own redis-server and REST server; the edge and the workers get all of them as QUEUES.
  SHARDS: intVar(1, 1, 16),
});

const env = configOrExit(() => parseEnv(StackEnv, process.env));
if (env.SHARDS > 1 && env.REDIS_URL) {
  console.error('SHARDS: starts its own redis-servers; unset REDIS_URL (or SHARDS)');
  process.exit(CONFIG_EXIT_CODE);
}
const onWorkers = process.argv.includes('--workers');
if (!env.REDIS_URL && !hasRedisServer()) {
  console.error(REDIS_INSTALL_HINT);
  process.exit(1);
}

const say = (line: string) => console.log(`[stack] ${line}`);
/** Restarts of a crashed worker: 1 s, doubling to 30 s; back to 1 s once it has run for a minute. */
const RESTART_FIRST_MS = 1_000;
const RESTART_MAX_MS = 30_000;
const RESTART_RESET_AFTER_MS = 60_000;

let edge: TierProcess | undefined;
const workers: WorkerSlot[] = [];
const redises: RedisServerHandle[] = [];
const rests: Awaited<ReturnType<typeof startUpstashRestServer>>[] = [];
let stopping = false;

let secretsDir: string | undefined;

/** What the stack itself gives the edge: its port and its queues. */
const STACK_EDGE_SETTINGS = new Set([
  'PORT',
  'HOST',
  'REDIS_URL',
  'QUEUES',
  'UPSTASH_REDIS_REST_URL',
  'UPSTASH_REDIS_REST_TOKEN',
  'EDGE_BROKER',
]);

/**
 * The edge's other settings set in this shell (WIRE_FORMAT, API_KEYS, ...). The Node edge inherits
 * the environment; workerd sees only wrangler.toml and the env file, so they go into that file.
 */
function edgeSettingsFromShell(): Record<string, string | undefined> {
  const names = Object.keys(EdgeEnv.in.shape).filter((name) => !STACK_EDGE_SETTINGS.has(name));
  return Object.fromEntries(names.map((name) => [name, process.env[name]]));
}

/** A .env file only this user can read, removed on shutdown (wrangler dev --env-file). */
async function writeEdgeEnvFile(values: Record<string, string | undefined>): Promise<string> {
  secretsDir = await mkdtemp(join(tmpdir(), 'resnet-edge-'));
  const file = join(secretsDir, '.dev.vars');
  const lines = Object.entries(values)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${v}`);
  await writeFile(file, `${lines.join('\n')}\n`, { mode: 0o600 });
  return file;
}

/** One of the WORKERS: its process, started again when it dies. */
interface WorkerSlot {
  name: string;
  tier: TierProcess;
  stop(): Promise<void>;
}

function startWorker(i: number, queue: Record<string, string | undefined>): WorkerSlot {
  const name = env.WORKERS > 1 ? `worker-${i}` : 'worker';
  const spawnOne = () =>
    spawnTier({
      name,
      entry: 'gpu-worker/main.ts',
      env: {
        ...queue,
        CONSUMER_NAME: process.env.CONSUMER_NAME ? `${process.env.CONSUMER_NAME}-${i}` : undefined,
        // One /metrics port per worker: 9464, 9474, ... (10 apart: INFERENCE_PROCESSES children take base+1..).
        METRICS_PORT: String(Number(process.env.METRICS_PORT ?? 9464) + 10 * (i - 1)),
        // The cores shared out over the workers (ONNX Runtime would give each of them all).
        INFERENCE_THREADS: process.env.INFERENCE_THREADS ?? String(Math.max(1, Math.floor(availableParallelism() / env.WORKERS))),
      },
      readyMessage: 'worker ready',
      detached: true,
    });
  let delay = RESTART_FIRST_MS;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const watch = (tier: TierProcess) => {
    const startedAt = Date.now();
    say(`${name} started (pid ${tier.child.pid})`);
    tier.child.once('exit', (code, signal) => {
      if (stopping) return;
      const how = signal ?? `code ${code}`;
      if (code === CONFIG_EXIT_CODE) {
        say(`${name} exited (${how}): its settings or engine cannot work here, and the other workers share them; shutting down`);
        void shutdown(1);
        return;
      }
      if (Date.now() - startedAt >= RESTART_RESET_AFTER_MS) delay = RESTART_FIRST_MS;
      say(`${name} exited unexpectedly (${how}); restarting it in ${delay / 1000} s, the rest keeps serving`);
      timer = setTimeout(() => {
        if (stopping) return;
        slot.tier = spawnOne();
        watch(slot.tier);
        slot.tier.ready.then(
          () => say(`${name} is back`),
          () => {},
        );
      }, delay);
      delay = Math.min(delay * 2, RESTART_MAX_MS);
    });
  };
  const slot: WorkerSlot = {
    name,
    tier: spawnOne(),
    stop: () => {
      clearTimeout(timer);
      return slot.tier.stop();
    },
  };
  watch(slot.tier);
  return slot;
}

let signals = 0;
function onSignal(signal: NodeJS.Signals) {
  if (++signals === 1) return void shutdown(0);
  // A second Ctrl-C: no more waiting for batches.
  say(`${signal} again: killing every tier now`);
  for (const tier of [edge, ...workers.map((w) => w.tier)]) if (tier) killTier(tier.child, true, 'SIGKILL');
  process.exit(1);
}

async function shutdown(code: number) {
  if (stopping) return;
  stopping = true;
  // Front to back: no new requests first, then the workers finish what they hold, then the queue.
  if (edge) {
    say('stopping the edge');
    await edge.stop().catch(() => {});
  }
  if (workers.length > 0) {
    say(`stopping ${workers.length} worker(s) (each finishes the batch in hand)`);
    await Promise.allSettled(workers.map((worker) => worker.stop()));
  }
  if (rests.length > 0 || redises.length > 0) say('stopping the queue');
  await Promise.allSettled(rests.map((rest) => rest.close()));
  await Promise.allSettled(redises.map((redis) => redis.stop()));
  if (secretsDir) await rm(secretsDir, { recursive: true, force: true });
  say('stopped');
  process.exit(code);
}
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

try {
  const redisUrls: string[] = [];
  if (env.REDIS_URL) {
    redisUrls.push(env.REDIS_URL);
    say(`using REDIS_URL ${env.REDIS_URL.replace(/\/\/[^@]*@/, '//***@')}`);
  }
  for (let i = redisUrls.length; i < env.SHARDS; i++) {
    const redis = await startRedisServer();
    redises.push(redis);
    redisUrls.push(redis.url);
    say(`redis-server on ${redis.url}${env.SHARDS > 1 ? ` (shard-${i + 1})` : ''}`);
  }

  // A fresh random token per run: the local REST server demands it like Upstash does.
  const token = randomBytes(24).toString('base64url');
  for (const redisUrl of redisUrls) {
    const rest = await startUpstashRestServer({ redisUrl, token, port: env.SHARDS > 1 ? 0 : env.UPSTASH_REST_PORT });
    rests.push(rest);
    say(`Upstash REST server on ${rest.url}`);
  }

  // One broker: the single-broker settings; several: QUEUES (the workers' over TCP, the edge's over REST).
  const single = env.SHARDS === 1;
  const workerQueue = single ? { REDIS_URL: redisUrls[0] } : { REDIS_URL: undefined, QUEUES: redisUrls.join(',') };
  const edgeQueue = single
    ? { UPSTASH_REDIS_REST_URL: rests[0]!.url, UPSTASH_REDIS_REST_TOKEN: token, REDIS_URL: undefined, EDGE_BROKER: 'upstash' }
    : {
        QUEUES: JSON.stringify(rests.map((rest, i) => ({ name: `shard-${i + 1}`, url: rest.url, token }))),
        // Empty is unset (shared/config.ts): this also clears wrangler.toml's local UPSTASH_REDIS_REST_URL.
        REDIS_URL: '',
        UPSTASH_REDIS_REST_URL: '',
        UPSTASH_REDIS_REST_TOKEN: '',
        EDGE_BROKER: '',
      };
  for (let i = 1; i <= env.WORKERS; i++) workers.push(startWorker(i, workerQueue));
  edge = onWorkers
    ? spawnTier({
        name: 'edge',
        ...wranglerDev(env.PORT, await writeEdgeEnvFile({ ...edgeSettingsFromShell(), ...edgeQueue })),
        detached: true,
      })
    : spawnTier({
        name: 'edge',
        entry: 'edge/node/main.ts',
        env: { ...edgeQueue, PORT: String(env.PORT) },
        readyMessage: 'edge listening',
        detached: true,
      });
  say(`the edge started (pid ${edge.child.pid})`);
  // The edge is the front door: without it nothing is served, so the stack stops.
  edge.child.once('exit', (code, signal) => {
    if (stopping) return;
    say(`the edge exited unexpectedly (${signal ?? `code ${code}`}); shutting down`);
    void shutdown(1);
  });
  if (env.WORKERS > 0) say(`waiting for ${env.WORKERS} worker(s) to load and warm up the model (the first run downloads it)...`);
  await Promise.all([edge.ready, ...workers.map((worker) => worker.tier.ready)]);

  const url = `http://localhost:${env.PORT}`;
  // The first line is what scripts and tests wait for.
  const brokers = env.SHARDS > 1 ? `${env.SHARDS} shards: ` : '';
  console.log(`Ready: edge on ${url} (${onWorkers ? 'workerd' : 'Node'}), ${env.WORKERS} worker(s), ${brokers}Upstash REST on ${rests.map((rest) => rest.url).join(', ')}, Redis ${redisUrls.join(', ')}

  curl -F image=@../shared/fixtures/images/beagle.jpg ${url}/predict
  npm run predict -- ../shared/fixtures/images/beagle.jpg --url ${url}

Ctrl-C stops everything.
`);
} catch (error) {
  console.error(`[stack] failed to start: ${(error as Error).message}`);
  await shutdown(1);
}
