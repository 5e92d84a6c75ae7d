import { describe, expect, it } from 'vitest';
import { ShardShares } from './shard-shares.ts';

describe('ShardShares', () => {
  it('splits evenly without traffic, follows the recent split, never below even, and forgets after the window', () => {
    const shares = new ShardShares(['a', 'b', 'c', 'd']);
    expect(shares.of('a', 0)).toBe(0.25);
    shares.record('a', 30, 1_000);
    shares.record('b', 10, 1_000);
    expect(shares.of('a', 1_000)).toBe(0.75);
    expect(shares.of('b', 1_000)).toBe(0.25);
    expect(shares.of('c', 1_000)).toBe(0.25);
    // Another shard down: the one left carries everything and says so.
    shares.record('a', 40, 12_000);
    expect(shares.of('a', 12_000)).toBe(1);
    expect(shares.of('a', 30_000)).toBe(0.25);
  });
});
