import { describe, expect, it } from 'vitest';
import { parseHeartbeats, type WorkerHeartbeat } from '../../shared/protocol.ts';
import { admitBelow, createAdmission, estimateOf } from './admission.ts';
import type { BrokerStatus } from './broker.ts';

const now = 1_000_000;
const beat = (id: string, extra: Partial<WorkerHeartbeat> = {}): WorkerHeartbeat => ({
  id,
  engine: 'synthetic',
  backend: 'none',
  model: 'm',
  labels: 10,
  batchSize: 4,
  pid: 1,
  host: 'h',
  startedAt: 0,
  lastSeen: now,
  expiresAt: now + 6_000,
  ...extra,
});

describe('estimateOf', () => {
  it("sums the live workers' rates; none without a rate from every live worker", () => {
    const workers = [
      beat('a', { imagesPerSec: 10, batchMs: 200 }),
      beat('b', { imagesPerSec: 6, batchMs: 600 }),
      beat('dead', { expiresAt: now - 1 }),
    ];
    expect(estimateOf(workers, now)).toEqual({ imagesPerSec: 16, batchMs: 350, batchCapacity: 8 });
    expect(estimateOf([...workers, beat('older-worker')], now)).toBeUndefined();
    expect(estimateOf([], now)).toBeUndefined();
  });
});

describe('admitBelow', () => {
  it('admits what the workers answer within 80 % of the time left, less two batches', () => {
    expect(admitBelow({ imagesPerSec: 16, batchMs: 250, batchCapacity: 4 }, 3_000)).toBe(30); // 16 x (2.4 - 0.5)
  });

  it('always admits a batch per worker, and counts a batch for at most half the deadline', () => {
    expect(admitBelow({ imagesPerSec: 0.001, batchMs: 0, batchCapacity: 4 }, 30_000)).toBe(4);
    expect(admitBelow({ imagesPerSec: 100, batchMs: 3_600_000, batchCapacity: 4 }, 30_000)).toBe(900);
  });
});

describe('hostile heartbeats', () => {
  it('are skipped, or lose only their rate: the edge then admits as without an estimate', () => {
    const hash = {
      good: JSON.stringify(beat('good', { imagesPerSec: 20, batchMs: 100 })),
      words: JSON.stringify({ ...beat('words'), batchSize: 'lots', lastSeen: 'now' }),
      absurd: JSON.stringify(beat('absurd', { imagesPerSec: 1e300, batchMs: -5 })),
      huge: JSON.stringify(beat('x'.repeat(1_000_000))),
      nonsense: '{"id":',
      array: '[1,2,3]',
    };
    const beats = parseHeartbeats(hash);
    expect(beats.map((b) => b.id).sort()).toEqual(['absurd', 'good']);
    expect(beats.find((b) => b.id === 'absurd')).toMatchObject({ imagesPerSec: undefined, batchMs: undefined });
    expect(estimateOf(beats, now)).toBeUndefined();
  });
});

describe('createAdmission', () => {
  const status = (workers: WorkerHeartbeat[]): BrokerStatus => ({ redisOk: true, redisMs: 1, workers, backlog: 0 });
  const limits = { queueMax: 512, retryAfterSeconds: 1, holdMax: 128, admitByDeadline: true };
  /** Admission over one live worker answering 16 images/s in 250 ms batches, counting its reads. */
  const oneWorker16PerSec = () => {
    let reads = 0;
    const admission = createAdmission(async () => {
      reads++;
      return status([beat('a', { imagesPerSec: 16, batchMs: 250, lastSeen: Date.now(), expiresAt: Date.now() + 6_000 })]);
    }, limits);
    return { admission, reads: () => reads };
  };

  it('with ADMISSION=queue-max, reads nothing and admits up to QUEUE_MAX', () => {
    let reads = 0;
    const admission = createAdmission(
      async () => {
        reads++;
        return status([]);
      },
      { ...limits, admitByDeadline: false },
    );
    const release = admission.admit(Date.now() + 10, 1);
    release();
    expect(admission.limit(Date.now() + 10)).toBe(512);
    expect(reads).toBe(0);
  });

  it('admits up to QUEUE_MAX until the first read of the heartbeats is in, then by the estimate', async () => {
    const { admission, reads } = oneWorker16PerSec();
    const deadline = Date.now() + 3_000;
    admission.admit(deadline, 1)(); // a request starts the first read...
    expect(admission.limit(deadline)).toBe(512); // ...still cold: the read has only started
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(admission.limit(deadline)).toBeGreaterThan(25);
    expect(admission.limit(deadline)).toBeLessThan(32);
    admission.admit(deadline, 1)();
    expect(reads()).toBe(1); // at most one read per second
    const refusal = admission.refusal(100, deadline);
    expect(refusal).toMatchObject({ status: 503, code: 'queue_full' });
    expect(refusal.message).toMatch(/about 6\.5 s of work for the live workers \(16 images\/s\)/);
    expect(refusal.headers['Retry-After']).toBe('3'); // the time left caps it
    expect(admission.refusal(512, deadline).message).toMatch(/The queue is full \(512 jobs\)/);
  });

  it("uses the broker's other status reads (GET /readyz, a sharded edge's probes) and then makes none of its own", async () => {
    const { admission, reads } = oneWorker16PerSec();
    const deadline = Date.now() + 3_000;
    expect((await admission.status()).workers).toHaveLength(1); // the probe's read
    expect(admission.limit(deadline)).toBeLessThan(32); // already the estimate
    admission.admit(deadline, 1)();
    expect(reads()).toBe(1);
  });
});
