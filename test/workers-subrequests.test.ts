/**
 * The Workers edge inside workerd (wrangler dev, offline) keeps within a request's subrequest
 * budget (Cloudflare's Free plan: 50) when it has to poll: real redis-server, the local Upstash
 * REST server with silent result streams (a subscription is never confirmed, so every request
 * falls back to polling its result key), a gpu-worker child process with a synthetic 16 s model.
 * The REST server counts the calls it receives.
 *
 * One request answered after 16 s, one that cannot be answered within its 30 s deadline: together
 * they stay within 2 x 50 calls (polling as fast as without a budget, each would make about 150),
 * and the second gets its 504 at the deadline, after the one read kept for it.
 * (ADMISSION=queue-max, so that the second is queued at all: what is tested is its wait.)
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnTier, type TierProcess, wranglerDev } from '../dev/processes.ts';
import { freePort, startRedisServer, type RedisServerHandle } from '../dev/redis-server.ts';
import { startUpstashRestServer, type UpstashRestServer } from '../dev/upstash-rest/server.ts';
import { createLogger } from '../shared/log.ts';
import { colourPng, predict, summary } from './helpers/faults.ts';
import { spawnWorker, type WorkerProcess } from './helpers/fixtures.ts';

const TOKEN = 'subrequests-test-token-0123456789';
const DEADLINE_MS = 30_000; // the default (wrangler.toml): unbudgeted, ~120 GETs and ~30 PINGs of polling
const BUDGET = 50; // WORKERS_SUBREQUESTS' default: the Free plan
let redisServer: RedisServerHandle;
let rest: UpstashRestServer;
let worker: WorkerProcess;
let edge: TierProcess;
let url: string;
let dir: string;
const output: string[] = [];

beforeAll(async () => {
  redisServer = await startRedisServer();
  rest = await startUpstashRestServer({ redisUrl: redisServer.url, token: TOKEN, port: 0, logger: createLogger('rest', 'silent') });
  worker = spawnWorker('subreq-w', { REDIS_URL: redisServer.url, KEY_PREFIX: 'rn', MODEL: 'synthetic:timer:16000', BATCH_SIZE: '1' });
  dir = await mkdtemp(join(tmpdir(), 'subrequests-'));
  const secrets = join(dir, '.dev.vars');
  await writeFile(secrets, `UPSTASH_REDIS_REST_URL=${rest.url}\nUPSTASH_REDIS_REST_TOKEN=${TOKEN}\n`, { mode: 0o600 });
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  edge = spawnTier({ name: 'edge', ...wranglerDev(port, secrets, ['--var', 'ADMISSION:queue-max']), print: (line) => output.push(line) });
  await Promise.all([edge.ready, worker.tier.ready]).catch((error: Error) => {
    throw new Error(`${error.message}\n${output.join('\n')}`);
  });
}, 240_000);

afterAll(async () => {
  await edge?.stop(5_000);
  await worker?.tier.stop(2_000);
  await rest?.close();
  await redisServer?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('Workers edge, polling (result streams silent)', () => {
  it(`stays within ${BUDGET} subrequests per request, answering in time or with a 504 at the deadline`, async () => {
    const image = await colourPng(6);
    rest.faults.silent = true;
    const before = rest.requestCount();
    // Batch size 1, 16 s each: the first is answered after 16 s, the second could only be after 32 s.
    const first = predict(url, image);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const second = predict(url, image);
    const [answered, late] = await Promise.all([first, second]);
    const calls = rest.requestCount() - before;
    rest.faults.silent = false;
    expect(answered.status, JSON.stringify(answered.body)).toBe(200);
    expect(late.status, JSON.stringify(late.body)).toBe(504);
    expect(late.body.error?.code).toBe('deadline_exceeded');
    expect(late.doneAt - late.sentAt).toBeGreaterThanOrEqual(DEADLINE_MS - 100);
    expect(calls).toBeLessThanOrEqual(2 * BUDGET);
    summary(`Workers edge polling (silent result streams), deadline ${DEADLINE_MS} ms, budget ${BUDGET} subrequests per request`, 2, 0, {
      '200': 1,
      '504 at the deadline': 1,
      'calls to the REST server, both requests': calls,
    });
  }, 90_000);
});
