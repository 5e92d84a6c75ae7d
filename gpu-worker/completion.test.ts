/**
 * The completion (complete-n.lua) on a real redis-server. A worker that died after its SET (a
 * script runs whole, but a worker of an older release wrote with a pipeline), a retried write and
 * a second worker all end with one stored answer (the first), the entry acked and deleted, and
 * exactly one write reported as the one that answered; a batch's answers and drops are one call.
 */
import { describe, expect, it } from 'vitest';
import { redisKeys } from '../shared/keys.ts';
import { createLogger } from '../shared/log.ts';
import type { JobResult } from '../shared/protocol.ts';
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

describe('completion', () => {
  it('a worker that died after its SET: the next writer acks and deletes, the first answer stays', async () => {
    const { keys, entryId, target, answer } = await pendingJob('done-a');
    // The dead worker got as far as SET + PUBLISH.
    const json = JSON.stringify(result('job-1', 'dead'));
    await db.redis.set(keys.result('job-1'), json, 'PX', 60_000, 'NX');
    await db.redis.publish('done-a:edge:x', json);

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

  it('answers and drops a whole batch in one command', async () => {
    const keys = redisKeys('done-c');
    await db.redis.xgroup('CREATE', keys.stream, keys.group, '$', 'MKSTREAM');
    const ids = ['j1', 'j2', 'j3', 'j4'];
    const entries: string[] = [];
    for (const id of ids) entries.push((await db.redis.xadd(keys.stream, '*', 'id', id, 'reply', 'done-c:edge:x'))!);
    await db.redis.xreadgroup('GROUP', keys.group, 'a', 'COUNT', 10, 'STREAMS', keys.stream, '>');
    const target = { keys, resultTtlMs: 60_000, deadLetterMaxLen: 10, log: createLogger('outcomes-test', 'silent') };
    const before = Number(/cmdstat_evalsha:calls=(\d+)/.exec(await db.redis.info('commandstats'))?.[1] ?? 0);
    const answers = ids.slice(0, 3).map((id, i): Answer => ({ entryId: entries[i]!, id, reply: 'done-c:edge:x', result: result(id, 'w') }));
    const report = await completeJobs(db.redis, target, [entries[3]!], answers);
    const after = Number(/cmdstat_evalsha:calls=(\d+)/.exec(await db.redis.info('commandstats'))?.[1] ?? 0);
    expect(after - before).toBeLessThanOrEqual(1); // 0 when the script was not loaded yet (EVAL, then EVALSHA next time)
    expect(report.answered).toBe(3);
    expect([...report.written.values()]).toEqual(['answered', 'answered', 'answered', 'dropped']);
    expect(await db.redis.exists(...ids.map((id) => keys.result(id)))).toBe(3);
    expect(await db.redis.xlen(keys.stream)).toBe(0);
    expect((await db.redis.xpending(keys.stream, keys.group))[0]).toBe(0);
  });
});
