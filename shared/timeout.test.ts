import { describe, expect, it } from 'vitest';
import { withTimeout } from './timeout.ts';

describe('withTimeout', () => {
  it('passes an answer through, and rejects with the message when there is none in time', async () => {
    expect(await withTimeout(Promise.resolve(7), 50, 'late')).toBe(7);
    await expect(withTimeout(new Promise(() => {}), 20, 'no answer within 20 ms')).rejects.toThrow('no answer within 20 ms');
    await expect(withTimeout(Promise.reject(new Error('refused')), 50, 'late')).rejects.toThrow('refused');
  });
});
