/**
 * A promise with a time limit, for calls that may never answer (a Redis that accepts a connection
 * and says nothing). Both tiers and both runtimes (Node, Workers) use it.
 *
 * @example
 * await withTimeout(redis.ping(), 2_000, 'no answer to PING within 2000 ms');
 */

/** `promise`, or a rejection with `message` once `ms` have passed; the timer never outlives it. */
export function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
