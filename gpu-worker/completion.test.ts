/**
 * The completion commands (shared/protocol.ts completionCommands) on a real redis-server: no script
 * guards them, so every prefix of the pipeline must leave a state the next writer finishes
 * correctly. A worker that died after its SET, a retried write and a second worker all end with
 * one stored answer (the first), the entry acked and deleted, and exactly one write reported as
 * the one that answered.
 */
import { describe, expect, it } from 'vitest';
import { redisKeys } from '../shared/keys.ts';
import { createLogger } from '../shared/log.ts';
import { completionCommands, type JobResult } from '../shared/protocol.ts';
import { useRedisServer } from '../test/helpers/fixtures.ts';
import { completeJobs, type Answer } from './completion.ts';

const db = useRedisServer();

const result = (id: string, worker: string): JobResult => ({ ok: false, id, error: { code: 'inference_failed', message: 'test' }, worker });

/** A stream with one job delivered to consumer `a` (pending), and what answering it needs. */
async function pendingJob(prefix: string) {
  const keys = redisKeys(prefix);
  await db.redis.xgroup('CREATE', keys.stream, keys.group, '$', 'MKSTREAM');
  const entryId = (await db.redis.xadd(keys.stream, '*', 'id', 'job-1', 'reply', `${prefix}:edge:x`))!;
  await db.redis.xreadgroup('GROUP', keys.group, 'a', 'COUNT', 1, 'STREAMS', keys.stream, '>');
  const target = { keys, resultTtlMs: 60_000, deadLetterMaxLen: 10, log: createLogger('outcomes-test', 'silent') };
  const answer = (worker: string): Answer => ({ entryId, id: 'job-1', reply: `${prefix}:edge:x`, result: result('job-1', worker) });
  return { keys, entryId, target, answer };
}

describe('completion without a script', () => {
  it('a worker that died after its SET: the next writer acks and deletes, the first answer stays', async () => {
    const { keys, entryId, target, answer } = await pendingJob('done-a');
    // The dead worker's pipeline got as far as SET + PUBLISH.
    const [set, publish] = completionCommands(
      keys,
      { entryId, id: 'job-1', reply: 'done-a:edge:x' },
      JSON.stringify(result('job-1', 'dead')),
      60_000,
    );
    await db.redis.call(...set!);
    await db.redis.call(...publish!);

    const report = await completeJobs(db.redis, target, [], [answer('second')]);
    expect(report.written.get(entryId)).toBe('answered');
    expect(JSON.parse((await db.redis.get(keys.result('job-1')))!).worker).toBe('dead');
    expect(await db.redis.xlen(keys.stream)).toBe(0);
    expect(await db.redis.xpending(keys.stream, keys.group)).toEqual([0, null, null, null]);
  });

  it('a retried write or a second worker: reported as a duplicate, nothing overwritten', async () => {
    const { keys, entryId, target, answer } = await pendingJob('done-b');
    const first = await completeJobs(db.redis, target, [], [answer('first')]);
    const again = await completeJobs(db.redis, target, [], [answer('second')]);
    expect([first.answered, again.answered]).toEqual([1, 0]);
    expect(again.written.get(entryId)).toBe('duplicate');
    expect(JSON.parse((await db.redis.get(keys.result('job-1')))!).worker).toBe('first');
    expect(await db.redis.pttl(keys.result('job-1'))).toBeGreaterThan(50_000);
    expect(await db.redis.xlen(keys.stream)).toBe(0);
  });
});
