import { describe, expect, it } from 'vitest';
import { jobToFieldList } from '../shared/protocol.ts';
import { TENSOR_BYTES } from '../shared/tensor.ts';
import type { StreamEntry } from './jobs.ts';
import { triage } from './triage.ts';

const NOW = 1_000_000;

function entry(entryId: string, fields: Partial<Record<string, string | Uint8Array>>): StreamEntry {
  const job = { id: entryId, enc: 'raw', tensor: new Uint8Array(TENSOR_BYTES), enqueuedAt: NOW - 100, deadline: NOW + 30_000, reply: 'r' };
  const list = jobToFieldList({ ...job, ...fields } as Parameters<typeof jobToFieldList>[0]).map((value) => Buffer.from(value));
  return { entryId, fields: list, readAt: NOW };
}

describe('triage', () => {
  const entries = [
    entry('1-0', {}),
    entry('2-0', { deadline: String(NOW - 1) }),
    entry('3-0', { enc: 'hex' }),
    entry('4-0', { id: '' }),
    { entryId: '5-0', fields: null, readAt: NOW },
  ];

  it('sorts live, expired, invalid and unanswerable entries', () => {
    const sorted = triage(entries, { now: NOW, deliveries: 1, maxDeliveries: 3 });
    expect(sorted.live.map((job) => job.entryId)).toEqual(['1-0']);
    expect(sorted.expired.map((job) => job.entryId)).toEqual(['2-0']);
    expect(sorted.invalid.map((job) => [job.entryId, job.message])).toEqual([['3-0', 'enc must be raw, z85 or b64, got "hex"']]);
    expect(sorted.unanswerable.map((item) => item.entryId)).toEqual(['4-0', '5-0']);
    expect(sorted.overDelivered).toEqual([]);
    // 2-0 was given 100 - 1 ms less than 1-0: the shortest deadline counts expired jobs too.
    expect(sorted.shortestDeadlineMs).toBe(-1 + 100);
  });

  it('gives up on jobs delivered more than maxDeliveries times, expired or not', () => {
    const sorted = triage(entries, { now: NOW, deliveries: 4, maxDeliveries: 3 });
    expect(sorted.overDelivered.map((job) => job.entryId)).toEqual(['1-0', '2-0']);
    expect(sorted.live).toEqual([]);
    expect(sorted.expired).toEqual([]);
    // Malformed entries are answered (or dropped) as on any delivery.
    expect(sorted.invalid).toHaveLength(1);
    expect(sorted.unanswerable).toHaveLength(2);
  });
});
