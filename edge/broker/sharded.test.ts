import { describe, expect, it } from 'vitest';
import { queueFull } from '../errors.ts';
import type { JobResult } from '../../shared/protocol.ts';
import type { Broker, BrokerStatus, SubmitRequest } from './broker.ts';
import { createShardedBroker } from './sharded.ts';

/** A shard whose answer the test chooses: `answer` per request, its status, the requests it got. */
function shard(answer: (request: SubmitRequest) => Promise<JobResult>, status: Partial<BrokerStatus> = {}) {
  const got: SubmitRequest[] = [];
  const broker: Broker = {
    submit: (request) => {
      got.push(request);
      return answer(request);
    },
    admit: () => () => {},
    status: async () => ({ redisOk: true, redisMs: 1, workers: [], backlog: 0, ...status }),
    close: async () => {},
  };
  return { broker, got };
}

const ok = (request: SubmitRequest): Promise<JobResult> =>
  Promise.resolve({ ok: true, id: request.id, predictions: [], worker: 'w', model: 'm', inferenceMs: 1 } as unknown as JobResult);
const job = (id: string, region?: string): SubmitRequest => ({ id, tensor: new Uint8Array(0), deadline: Date.now() + 5_000, region });

describe('the sharded broker', () => {
  it("sends a request to its region's shard, else the edge's region, else the less loaded", async () => {
    const eu = shard(ok);
    const us = shard(ok);
    const broker = createShardedBroker(
      [
        { name: 'eu', region: 'EU', broker: eu.broker },
        { name: 'us', region: 'NA', broker: us.broker },
      ],
      { region: 'EU', retryAfterSeconds: 1 },
    );
    await broker.submit(job('1', 'NA'));
    await broker.submit(job('2'));
    expect(us.got.map((r) => r.id)).toEqual(['1']);
    expect(eu.got.map((r) => r.id)).toEqual(['2']);
  });

  it('fails over: a full shard, then a held one, send the job on; the first answer wins; a shard marked down is skipped', async () => {
    const full = shard(() => Promise.reject(queueFull('full', 1)));
    const stuck = shard(
      (request) =>
        new Promise<JobResult>(() => {
          request.onHold?.(new Error('connection refused'));
        }),
    );
    const good = shard(ok);
    let calls = 0;
    // The order of the two random choices: always the first two shards left, in list order.
    const random = () => [0, 0.99][calls++ % 2]!;
    const broker = createShardedBroker(
      [
        { name: 'full', broker: full.broker },
        { name: 'stuck', broker: stuck.broker },
        { name: 'good', broker: good.broker },
      ],
      { retryAfterSeconds: 1, random },
    );
    const result = await broker.submit(job('a'));
    expect(result.id).toBe('a');
    expect([full.got.length, stuck.got.length, good.got.length]).toEqual([1, 1, 1]);
    // Next: "stuck" is down and "full" refused a moment ago: straight to "good".
    await broker.submit(job('b'));
    expect(good.got.map((r) => r.id)).toEqual(['a', 'b']);
    expect(stuck.got).toHaveLength(1);
  });

  it('answers the most telling refusal when every shard refuses, and reports each shard', async () => {
    const full = shard(() => Promise.reject(queueFull('full', 3)));
    const down = shard(() => Promise.reject(queueFull('also full', 1)), { redisOk: false, error: 'ECONNREFUSED', backlog: 0 });
    const broker = createShardedBroker(
      [
        { name: 'a', broker: full.broker },
        { name: 'b', broker: down.broker },
      ],
      { retryAfterSeconds: 1 },
    );
    await expect(broker.submit(job('x'))).rejects.toMatchObject({ code: 'queue_full' });
    const status = await broker.status();
    expect(status.redisOk).toBe(true);
    expect(status.shards?.map((s) => [s.name, s.state])).toEqual([
      ['a', 'up'],
      ['b', 'down'],
    ]);
  });

  it('prefers a shard with a live worker over one without (once their status is known)', async () => {
    const now = Date.now();
    const beat = {
      id: 'w',
      engine: 'onnx',
      model: 'm',
      labels: 1,
      batchSize: 1,
      pid: 1,
      host: 'h',
      startedAt: now,
      lastSeen: now,
      expiresAt: now + 10_000,
    };
    const empty = shard(ok);
    const served = shard(ok, { workers: [beat] as never });
    const broker = createShardedBroker(
      [
        { name: 'empty', broker: empty.broker },
        { name: 'served', broker: served.broker },
      ],
      { retryAfterSeconds: 1 },
    );
    await broker.status();
    for (let i = 0; i < 4; i++) await broker.submit(job(`j${i}`));
    expect([empty.got.length, served.got.length]).toEqual([0, 4]);
  });

  it('answers queue_full at once when the only other attempt is held on a shard that is down', async () => {
    const stuck = shard(
      (request) =>
        new Promise<JobResult>(() => {
          request.onHold?.(new Error('connection refused'));
        }),
    );
    const full = shard(() => Promise.reject(queueFull('full', 2)));
    const broker = createShardedBroker(
      [
        { name: 'stuck', broker: stuck.broker },
        { name: 'full', broker: full.broker },
      ],
      { retryAfterSeconds: 1, random: () => 0 },
    );
    // The held attempt never ends: without the rule the promise would never settle.
    await expect(broker.submit(job('q'))).rejects.toMatchObject({ code: 'queue_full' });
    expect([stuck.got.length, full.got.length]).toEqual([1, 1]);
  });
});
