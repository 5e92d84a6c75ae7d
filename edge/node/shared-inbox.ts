/**
 * One long-lived SSE subscription (Upstash REST `/subscribe/<channel>`) per edge process, on the
 * process's own channel (keys.edgeChannel); every job names it as its reply and results are routed
 * to the waiting requests by job id. Waiting costs no Redis command per request (a per-request
 * subscription costs SUBSCRIBE + UNSUBSCRIBE). Node only: inside Workers a request cannot read a
 * stream that another request opened (see inbox.ts).
 *
 * The stream is opened with the edge's undici transport (upstash-http.ts) and split into events
 * with eventsource-parser, rather than with @upstash/redis `subscribe()`, which does not report a
 * stream that ends without an error; a long-lived stream must notice its end.
 *
 * When the stream fails or ends, the requests waiting on it fall back to polling their result keys
 * (the broker's fallback path, as for a failed per-request subscription), and the inbox reconnects
 * with backoff (100 ms doubling to 2 s). While it is down, new requests poll from the start rather
 * than wait for it.
 *
 * @example
 * const inbox = sharedInbox({ http: createUpstashHttp({ url, token }), keys: redisKeys(), logger });
 * const broker = createUpstashBroker({ redis, keys, limits, scripts, inbox });
 */
import { randomUUID } from 'node:crypto';
import { createParser } from 'eventsource-parser';
import type { RedisKeys } from '../../shared/keys.ts';
import type { Logger } from '../../shared/log.ts';
import { sleep } from '../broker/broker.ts';
import { Mailbox, resultFor, type ResultInbox } from '../broker/inbox.ts';
import type { UpstashHttp } from './upstash-http.ts';

const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 2_000;

export interface SharedInboxOptions {
  /** The transport to the Upstash REST server (the broker's client uses the same). */
  http: Pick<UpstashHttp, 'eventStream'>;
  keys: RedisKeys;
  logger?: Logger;
}

export function sharedInbox({ http, keys, logger }: SharedInboxOptions): ResultInbox {
  const channel = keys.edgeChannel(randomUUID());
  const mailboxes = new Map<string, Mailbox>();
  const stop = new AbortController();
  /** Mailboxes opened while (re)connecting: told when the subscription is confirmed or fails. */
  const waiting = new Set<Mailbox>();
  let state: 'connecting' | 'listening' | 'down' = 'connecting';

  const failAll = (reason: string) => {
    if (state === 'listening') logger?.warn({ err: reason, waiting: mailboxes.size }, 'result stream failed; waiting requests poll');
    state = 'down';
    for (const mailbox of mailboxes.values()) mailbox.fail();
    waiting.clear();
  };

  let retryMs = RETRY_FIRST_MS;
  let lastError = '';
  const onEvent = (data: string) => {
    const [kind, rest] = splitOnce(data);
    if (kind === 'subscribe') {
      if (state !== 'listening' && lastError) logger?.info({ channel }, 'result stream restored');
      state = 'listening';
      retryMs = RETRY_FIRST_MS;
      lastError = '';
      for (const mailbox of waiting) mailbox.listening();
      waiting.clear();
    } else if (kind === 'message') {
      const [, payload] = splitOnce(rest); // rest = <channel>,<payload>
      const result = resultFor(undefined, payload);
      if (result) mailboxes.get(result.id)?.deliver(result);
    }
  };

  const run = async () => {
    while (!stop.signal.aborted) {
      try {
        // The path as @upstash/redis builds it (not URL-encoded; channel names are prefix:edge:<uuid>).
        const chunks = await http.eventStream(`/subscribe/${channel}`, stop.signal);
        const parser = createParser({ onEvent: ({ data }) => onEvent(data) });
        for await (const text of chunks) parser.feed(text);
        throw new Error('the result stream ended');
      } catch (error) {
        if (stop.signal.aborted) break;
        const message = (error as Error)?.message ?? String(error);
        if (message !== lastError && state !== 'listening') logger?.warn({ err: error }, 'cannot open the result stream; retrying');
        lastError = message;
        failAll(message);
        await sleep(retryMs, stop.signal);
        retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
        if (!stop.signal.aborted) state = 'connecting';
      }
    }
  };
  const running = run();

  return {
    open(id) {
      const mailbox = new Mailbox(channel, () => {
        mailboxes.delete(id);
        waiting.delete(mailbox);
      });
      mailboxes.set(id, mailbox);
      if (state === 'listening') mailbox.listening();
      else if (state === 'down') mailbox.fail();
      else waiting.add(mailbox);
      return mailbox;
    },
    async close() {
      stop.abort();
      await running;
      for (const mailbox of mailboxes.values()) mailbox.fail();
    },
  };
}

/** `a,b,c` -> [`a`, `b,c`]. */
function splitOnce(text: string): [string, string] {
  const at = text.indexOf(',');
  return at < 0 ? [text, ''] : [text.slice(0, at), text.slice(at + 1)];
}
