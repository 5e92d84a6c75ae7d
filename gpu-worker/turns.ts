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

  /** Run `action` once the turns asked for before it are done; also says how long it waited. */
  run<T>(action: () => Promise<T>): Promise<{ value: T; waitedMs: number }> {
    const asked = performance.now();
    const turn = this.last.then(async () => {
      const waitedMs = performance.now() - asked;
      return { value: await action(), waitedMs };
    });
    this.last = turn.catch(() => {});
    return turn;
  }
}
