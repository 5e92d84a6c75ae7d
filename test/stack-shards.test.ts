/**
 * `npm start` with SHARDS=2: two redis-servers, each behind its own local Upstash REST server,
 * the edge and the worker given both as QUEUES, serving from both (a synthetic model: this is
 * about the queues), with the edge on Node and in workerd. Ctrl-C stops every tier, both queues included.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TierProcess } from '../dev/processes.ts';
import { startStack } from './helpers/fixtures.ts';
import { colourPng, predict, tally } from './helpers/faults.ts';

describe.each([
  ['Node', []],
  ['workerd', ['--workers']],
])('npm start (SHARDS=2), the edge on %s', (runtime, args) => {
  let stack: TierProcess;
  let url: string;
  const output: string[] = [];

  beforeAll(async () => {
    ({ stack, url } = await startStack(
      { SHARDS: '2', WORKERS: '1', MODEL: 'synthetic:instant', METRICS_PORT: '0', REDIS_URL: undefined, QUEUES: undefined },
      output,
      { args, detached: true },
    ));
  }, 240_000);

  afterAll(async () => {
    if (!stack || stack.child.exitCode !== null) return;
    const exited = new Promise((resolve) => stack.child.once('exit', resolve));
    process.kill(-stack.child.pid!, 'SIGINT');
    await exited;
    expect(stack.child.exitCode).toBe(0);
    expect(output.join('\n')).toContain('[stack] stopped');
  }, 60_000);

  it('runs two redis-servers, serves, and shows both shards up with the worker on each', async () => {
    const text = output.join('\n');
    expect(text.match(/\[stack\] redis-server on /g)).toHaveLength(2);
    expect(text).toContain(`(${runtime}), 1 worker(s), 2 shards: Upstash REST on`);
    const image = await colourPng(4);
    const replies = [];
    for (let round = 0; round < 4; round++) replies.push(...(await Promise.all(Array.from({ length: 6 }, () => predict(url, image)))));
    expect(tally(replies)).toEqual({ '200': 24 });
    const ready = (await (await fetch(`${url}/readyz`)).json()) as { shards: { name: string; state: string; workers: number }[] };
    expect(ready.shards.map((shard) => [shard.name, shard.state, shard.workers])).toEqual([
      ['shard-1', 'up', 1],
      ['shard-2', 'up', 1],
    ]);
  });
});
