import { describe, expect, it } from 'vitest';
import { Throughput } from './throughput.ts';

describe('Throughput', () => {
  it('knows nothing before a warm-up or a batch', () => {
    expect(new Throughput(8).load()).toEqual({});
  });

  it('starts from the warm-up, then the full batches decide; partial ones only change the batch time', () => {
    const throughput = new Throughput(8);
    throughput.warmedUp(400); // 8 images in 0.4 s
    expect(throughput.load(0)).toEqual({ imagesPerSec: 20, batchMs: 400, longestBatchMs: 400 });
    throughput.record(1, 100, 0); // a lone job: says nothing of a full batch's rate
    expect(throughput.load(0)).toEqual({ imagesPerSec: 20, batchMs: 100, longestBatchMs: 400 });
    throughput.record(8, 200, 0);
    throughput.record(8, 600, 0);
    expect(throughput.load(0)).toEqual({ imagesPerSec: 20, batchMs: 300, longestBatchMs: 600 });
  });

  it('without a warm-up, partial batches give a lower bound; old batches are forgotten', () => {
    const throughput = new Throughput(32);
    throughput.record(4, 250, 0);
    expect(throughput.load(0).imagesPerSec).toBe(16);
    // The rate is forgotten, not how long a batch can take (a quiet minute must not make it look dead).
    expect(throughput.load(120_000)).toEqual({ longestBatchMs: 250 });
  });
});
