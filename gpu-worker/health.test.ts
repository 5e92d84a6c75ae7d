import { describe, expect, it } from 'vitest';
import { workerHealth } from './health.ts';

const up = [{ name: 'a', connected: true }];

describe('workerHealth', () => {
  it('is live while starting, serving and draining; ready only while serving with every shard connected', () => {
    expect(workerHealth({ phase: 'starting', inferenceMs: 0, hungAfterMs: 10_000, shards: up })).toMatchObject({
      live: true,
      ready: false,
    });
    expect(workerHealth({ phase: 'serving', inferenceMs: 0, hungAfterMs: 10_000, shards: up })).toMatchObject({ live: true, ready: true });
    expect(workerHealth({ phase: 'stopping', inferenceMs: 0, hungAfterMs: 10_000, shards: up })).toMatchObject({
      live: true,
      ready: false,
    });
    expect(workerHealth({ phase: 'stopped', inferenceMs: 0, hungAfterMs: 10_000, shards: up })).toMatchObject({
      live: false,
      ready: false,
    });
    const oneDown = [...up, { name: 'b', connected: false }];
    expect(workerHealth({ phase: 'serving', inferenceMs: 0, hungAfterMs: 10_000, shards: oneDown })).toMatchObject({
      live: true,
      ready: false,
    });
  });

  it('is neither live nor ready once the inference in hand has run past the hung limit', () => {
    expect(workerHealth({ phase: 'serving', inferenceMs: 9_999, hungAfterMs: 10_000, shards: up })).toMatchObject({
      live: true,
      ready: true,
    });
    expect(workerHealth({ phase: 'serving', inferenceMs: 10_001, hungAfterMs: 10_000, shards: up })).toMatchObject({
      live: false,
      ready: false,
      hungInferenceMs: 10_001,
    });
  });
});
