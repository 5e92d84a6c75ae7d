/**
 * Take over the jobs of workers that died, one at a time, each run alone (one of them may be what
 * killed its worker, and running it alone keeps its batch-mates' delivery counts down):
 * - at once, from a consumer the heartbeat found dead holding jobs (batcher.ts claimFrom);
 * - the backstop, for a worker alive but stuck: every CLAIM_IDLE_MS / 2, any job delivered more
 *   than CLAIM_IDLE_MS ago and still unanswered (XAUTOCLAIM, batcher.ts claimOne).
 * At most a batch's worth per call, so new jobs are read in between.
 */
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../shared/keys.ts';
import type { Logger } from '../shared/log.ts';
import { claimFrom, claimOne } from './batcher.ts';
import type { DeadConsumer } from './consumers.ts';
import type { StreamEntry } from './jobs.ts';

/** XAUTOCLAIM calls per pass at most. */
const CLAIM_CALLS_PER_PASS = 8;

export interface ReclaimerOptions {
  redis: Redis;
  keys: RedisKeys;
  consumer: string;
  claimIdleMs: number;
  /** How long a dead consumer's job must have been idle (its heartbeat's staleness). */
  deadIdleMs: number;
  /** Most jobs taken over per call. */
  batchSize: number;
  /** Run one taken-over entry alone; `deliveries` counts this one. */
  runAlone: (entry: StreamEntry, deliveries: number | undefined) => Promise<void>;
  stopping: () => boolean;
  log: Logger;
}

export class Reclaimer {
  private readonly dead = new Set<string>();
  private cursor = '0-0';
  /** A first pass at once: jobs left by a worker that died before this one started. */
  private nextPassAt = 0;
  private readonly passEveryMs: number;

  constructor(private readonly options: ReclaimerOptions) {
    this.passEveryMs = Math.max(250, Math.floor(options.claimIdleMs / 2));
  }

  /** Consumers the heartbeat found dead holding jobs: taken over before the next read. */
  markDead(dead: DeadConsumer[]): void {
    for (const { name, pending, idleMs } of dead) {
      if (!this.dead.has(name)) this.options.log.warn({ worker: name, pending, idleMs }, 'a worker died holding jobs; taking them over');
      this.dead.add(name);
    }
  }

  get hasDead(): boolean {
    return this.dead.size > 0;
  }

  /** Until the next pass is due (0: now): a read blocks no longer. */
  msUntilPass(now = Date.now()): number {
    return Math.max(0, this.nextPassAt - now);
  }

  async takeOverDead(): Promise<void> {
    const { redis, keys, consumer, deadIdleMs, log } = this.options;
    let taken = 0;
    for (const from of this.dead) {
      while (!this.options.stopping() && taken < this.options.batchSize) {
        const claimed = await claimFrom(redis, { stream: keys.stream, group: keys.group, consumer, from, minIdleMs: deadIdleMs });
        if (!claimed) break;
        if (!claimed.entry) continue; // another worker was first, or the entry is gone
        taken++;
        log.info({ entryId: claimed.entry.entryId, deliveries: claimed.deliveries, from }, 'took over a job of a dead worker');
        await this.options.runAlone(claimed.entry, claimed.deliveries);
      }
      if (taken >= this.options.batchSize || this.options.stopping()) return;
      this.dead.delete(from);
    }
  }

  /** One pass over the jobs idle past CLAIM_IDLE_MS; the next is due at once if it stopped short. */
  async reclaimIdle(): Promise<void> {
    try {
      const more = await this.pass();
      this.nextPassAt = more ? Date.now() : Date.now() + this.passEveryMs;
    } catch (error) {
      if (!/unknown command/i.test((error as Error).message)) throw error;
      // Redis before 6.2: serve anyway, but say loudly that dead workers' jobs stay stuck.
      this.options.log.error({ err: error }, 'this Redis has no XAUTOCLAIM (6.2+): jobs of workers that die will not be taken over');
      this.nextPassAt = Number.POSITIVE_INFINITY;
    }
  }

  /** Returns true when it stopped before the end of the pending list (more may be waiting). */
  private async pass(): Promise<boolean> {
    const { redis, keys, consumer, claimIdleMs, log } = this.options;
    let taken = 0;
    for (let calls = 0; calls < CLAIM_CALLS_PER_PASS && !this.options.stopping(); calls++) {
      const claimed = await claimOne(redis, {
        stream: keys.stream,
        group: keys.group,
        consumer,
        minIdleMs: claimIdleMs,
        cursor: this.cursor,
      });
      this.cursor = claimed.cursor;
      if (claimed.entry) {
        log.info({ entryId: claimed.entry.entryId, deliveries: claimed.deliveries }, 'took over a job whose worker stopped answering');
        await this.options.runAlone(claimed.entry, claimed.deliveries);
        if (++taken >= this.options.batchSize) return true;
      }
      if (this.cursor === '0-0') return false;
    }
    return true;
  }
}
