import { describe, expect, it } from 'vitest';
import { parseEdgeConfig } from './config.ts';

describe('edge config', () => {
  it('READY_WORKER_MAX_AGE_MS: defaults to 15 s, and a bad value stops with a message naming it', () => {
    expect(() => parseEdgeConfig({ REDIS_URL: 'redis://x', READY_WORKER_MAX_AGE_MS: '10' })).toThrow(
      /READY_WORKER_MAX_AGE_MS: expected an integer from 1000/,
    );
    expect(parseEdgeConfig({ REDIS_URL: 'redis://x' }).READY_WORKER_MAX_AGE_MS).toBe(15_000);
  });
});
