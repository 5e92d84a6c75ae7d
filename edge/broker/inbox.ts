/**
 * Where the Upstash REST broker's requests receive their results. REST has no blocking reads, so a
 * result is pushed over an SSE subscription (Upstash `/subscribe/<channel>`); two ways to hold one:
 *
 *  - {@link perRequestInbox}: each request subscribes to its own channel (SUBSCRIBE + UNSUBSCRIBE
 *    per request). The only way inside Cloudflare Workers, where a request cannot read a stream
 *    another request opened.
 *  - `sharedInbox` (../node/shared-inbox.ts): one long-lived subscription per edge process, results routed
 *    by job id (no Redis command per request). The Node edge's way.
 *
 * Either way a request gets a {@link Mailbox}: the channel its job names as `reply`, a promise
 * that it is listening, and the pushed result, or null once the push path has failed (the broker
 * then polls the result key).
 */
import type { Redis } from '@upstash/redis';
import { JobResult } from '../../shared/protocol.ts';
import type { RedisKeys } from '../../shared/keys.ts';
import type { Logger } from '../../shared/log.ts';

export interface ResultInbox {
  /** Start listening for job `id`'s result. */
  open(id: string): Mailbox;
  /** Calls to the REST server each open() makes (a subscription per request: 1). */
  readonly callsPerOpen: number;
  close(): Promise<void>;
}

/** One request's view of its inbox. */
export class Mailbox {
  /** Resolves true once a publish on `channel` reaches this mailbox, false when listening failed. */
  readonly ready: Promise<boolean>;
  /** The pushed result, or null once the push path has failed (look at the result key instead). */
  readonly pushed: Promise<JobResult | null>;
  private settle!: (result: JobResult | null) => void;
  private confirm!: (ok: boolean) => void;
  private result: JobResult | undefined;
  private broken = false;

  constructor(
    /** The channel the job names as its reply. */
    readonly channel: string,
    private readonly onClose: () => void = () => {},
  ) {
    this.ready = new Promise((resolve) => (this.confirm = resolve));
    this.pushed = new Promise((resolve) => (this.settle = resolve));
  }

  /** The pushed result, if one arrived (kept even if the stream failed afterwards). */
  delivered(): JobResult | undefined {
    return this.result;
  }

  /** The push path has failed: poll. */
  failed(): boolean {
    return this.broken;
  }

  listening(): void {
    this.confirm(true);
  }

  deliver(result: JobResult): void {
    this.result ??= result;
    this.settle(result);
  }

  /** The push path is gone (stream error, or no subscription confirmed in time). */
  fail(): void {
    this.broken = true;
    this.confirm(false);
    this.settle(null);
  }

  close(): void {
    this.settle(null);
    this.onClose();
  }
}

/** A channel message's payload as a JobResult for job `id`, or undefined (another job's, or malformed). */
export function resultFor(id: string | undefined, message: unknown): JobResult | undefined {
  let data = message;
  if (typeof message === 'string') {
    try {
      data = JSON.parse(message);
    } catch {
      return undefined;
    }
  }
  const parsed = JobResult.safeParse(data);
  return parsed.success && (id === undefined || parsed.data.id === id) ? parsed.data : undefined;
}

/** A job's stored result key as a JobResult (GET's reply: JSON text over TCP, already parsed over REST), or null. */
export async function storedResult(id: string, reply: Promise<unknown>): Promise<JobResult | null> {
  const value = await reply;
  return value === null ? null : (resultFor(id, value) ?? null);
}

/**
 * One SSE subscription per request, on the job's own channel (keys.resultChannel), with
 * @upstash/redis `subscribe()`. Costs SUBSCRIBE + UNSUBSCRIBE per request.
 *
 * @example
 * const broker = createUpstashBroker({ redis, keys, limits, scripts, inbox: perRequestInbox(redis, keys) });
 */
export function perRequestInbox(redis: Redis, keys: RedisKeys, logger?: Logger): ResultInbox {
  return {
    open(id) {
      const subscriber = redis.subscribe<unknown>(keys.resultChannel(id));
      const mailbox = new Mailbox(keys.resultChannel(id), () => void subscriber.unsubscribe().catch(() => {}));
      subscriber.on('subscribe', () => mailbox.listening());
      // The server ended the subscription: nothing more will be pushed, so poll.
      subscriber.on('unsubscribe', () => mailbox.fail());
      subscriber.on('message', ({ message }) => {
        const result = resultFor(id, message);
        if (result) mailbox.deliver(result);
      });
      subscriber.on('error', (error) => {
        logger?.warn({ id, err: error }, 'result stream failed; polling instead');
        mailbox.fail();
      });
      return mailbox;
    },
    callsPerOpen: 1,
    async close() {},
  };
}
