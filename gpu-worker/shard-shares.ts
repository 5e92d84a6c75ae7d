/**
 * What share of a worker's rate each of its shards gets, for the rate its heartbeat publishes on
 * that shard (edges admit by it: edge/broker/admission.ts). Each shard's share is the part of the
 * recent images that came from it, never below an even split: a shard that was quiet (or just came
 * back) must still be admitted to, and one that carries everything while another is down gets
 * the whole rate, not half of it.
 *
 * @example
 * const shares = new ShardShares(['a', 'b']);
 * shares.record('b', 32);
 * shares.of('b'); // 1: all recent images came from b
 * shares.of('a'); // 0.5: the even split is the floor
 */
/** Images older than this no longer count. */
const WINDOW_MS = 10_000;

export class ShardShares {
  private readonly recent: { shard: string; images: number; at: number }[] = [];

  constructor(private readonly shards: readonly string[]) {}

  record(shard: string, images: number, now = Date.now()): void {
    this.recent.push({ shard, images, at: now });
    while (this.recent.length > 0 && this.recent[0]!.at < now - WINDOW_MS) this.recent.shift();
  }

  of(shard: string, now = Date.now()): number {
    const even = 1 / this.shards.length;
    const counted = this.recent.filter((batch) => batch.at >= now - WINDOW_MS);
    const total = counted.reduce((sum, batch) => sum + batch.images, 0);
    if (total === 0) return even;
    const mine = counted.filter((batch) => batch.shard === shard).reduce((sum, batch) => sum + batch.images, 0);
    return Math.max(even, mine / total);
  }
}
