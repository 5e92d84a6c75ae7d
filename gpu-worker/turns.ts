/**
 * The model's turns, for a worker serving several shards (worker.ts): one inference at a time, in
 * the order they were asked for (FIFO), so the shards' batches alternate while all have work and
 * no shard starves. Only inference takes a turn: reads and writes of one shard (retried while its
 * Redis is away) never hold up another's.
 *
 * @example
 * const turns = new Turns();
 * const { value, waitedMs } = await turns.run(() => infer(batch));
 */
export class Turns {
  private last: Promise<unknown> = Promise.resolve();
  /** When the action in hand started (performance.now()); undefined between turns. */
  private runningSince: number | undefined;

  /** Run `action` once the turns asked for before it are done; also says how long it waited. */
  run<T>(action: () => Promise<T>): Promise<{ value: T; waitedMs: number }> {
    const asked = performance.now();
    const turn = this.last.then(async () => {
      this.runningSince = performance.now();
      const waitedMs = this.runningSince - asked;
      try {
        return { value: await action(), waitedMs };
      } finally {
        this.runningSince = undefined;
      }
    });
    this.last = turn.catch(() => {});
    return turn;
  }

  /** How long the action in hand has run, ms (0 between turns): a hung inference shows here (health.ts). */
  busyMs(now = performance.now()): number {
    return this.runningSince === undefined ? 0 : now - this.runningSince;
  }
}
