/**
 * One long-lived SSE subscription (Upstash REST `/subscribe/<channel>`) per edge process, on the
 * process's own channel (keys.edgeChannel); every job names it as its reply and results are routed
 * to the waiting requests by job id. Waiting costs no Redis command per request (a per-request
 * subscription costs SUBSCRIBE + UNSUBSCRIBE). Node only: inside Workers a request cannot read a
 * stream that another request opened (see inbox.ts).
 *
 * The stream is opened with the edge's undici transport (upstash-http.ts), rather than with
 * @upstash/redis `subscribe()`, which does not report a stream that ends without an error; a
 * long-lived stream must notice each way it can die:
 *
 *  - it ends (cleanly or not), or the server sends an `unsubscribe` frame;
 *  - it goes silent: while nothing arrives, the inbox PUBLISHes a keep-alive on its own channel
 *    every KEEPALIVE_MS (so a busy stream costs nothing), and a stream with no bytes for
 *    SILENT_AFTER_MS is taken for dead.
 *
 * Events are read line by line (`data: ` lines; LF, CRLF or CR), as the official client does:
 * Upstash frames events with a blank line, the official client's own mock with a single newline,
 * and a parser that waits for the blank line would hold every event of the second kind.
 *
 * When the stream dies, the requests waiting on it fall back to polling their result keys at once
 * (the broker's fallback path, as for a failed per-request subscription), and the inbox reconnects
 * with backoff (100 ms doubling to 2 s). While it is down, new requests poll from the start rather
 * than wait for it.
 *
 * @example
 * const http = createUpstashHttp({ url, token });
 * const inbox = sharedInbox({ http, publish: (channel, message) => new Redis(http).publish(channel, message), keys: redisKeys(), logger });
 * const broker = createUpstashBroker({ redis, keys, limits, scripts, inbox });
 */
import { randomUUID } from 'node:crypto';
import type { RedisKeys } from '../../shared/keys.ts';
import type { Logger } from '../../shared/log.ts';
import { sleep } from '../broker/broker.ts';
import { Mailbox, resultFor, type ResultInbox } from '../broker/inbox.ts';
import type { UpstashHttp } from './upstash-http.ts';

const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 2_000;
/** With nothing received for this long, the inbox publishes a keep-alive to itself. */
export const KEEPALIVE_MS = 5_000;
/** With nothing received for this long the stream is dead: a live one hears its own keep-alive within about KEEPALIVE_MS. */
export const SILENT_AFTER_MS = 10_000;
/** What the keep-alive publishes: not a result, so no mailbox takes it. */
const KEEPALIVE_MESSAGE = 'keepalive';

export interface SharedInboxOptions {
  /** The transport to the Upstash REST server (the broker's client uses the same). */
  http: Pick<UpstashHttp, 'eventStream'>;
  /** PUBLISH, for the keep-alive (the broker's REST client). */
  publish: (channel: string, message: string) => Promise<unknown>;
  keys: RedisKeys;
  logger?: Logger;
}

export function sharedInbox({ http, publish, keys, logger }: SharedInboxOptions): ResultInbox {
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
  /** Ends the current stream's read (a frame or the silence watch says it is dead). */
  let drop: ((reason: string) => void) | undefined;
  const onEvent = (data: string) => {
    const [kind, rest] = splitOnce(data);
    if (kind === 'unsubscribe') {
      drop?.('the server unsubscribed the result stream');
    } else if (kind === 'subscribe') {
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

  /** Read one stream until it dies; throws why. */
  const readStream = async () => {
    const dead = new AbortController();
    const abort = () => dead.abort();
    stop.signal.addEventListener('abort', abort, { once: true });
    let reason = 'the result stream ended';
    drop = (why) => {
      reason = why;
      dead.abort();
    };
    let lastByteAt = Date.now();
    const watch = setInterval(() => {
      const quietMs = Date.now() - lastByteAt;
      if (quietMs >= SILENT_AFTER_MS) drop?.(`the result stream was silent for ${quietMs} ms`);
      else if (quietMs >= KEEPALIVE_MS && state === 'listening') void publish(channel, KEEPALIVE_MESSAGE).catch(() => {});
    }, KEEPALIVE_MS / 5);
    try {
      // The path as @upstash/redis builds it (not URL-encoded; channel names are prefix:edge:<uuid>).
      const chunks = await http.eventStream(`/subscribe/${channel}`, dead.signal);
      const lines = new LineSplitter();
      for await (const text of chunks) {
        lastByteAt = Date.now();
        for (const line of lines.feed(text)) if (line.startsWith('data:')) onEvent(line.slice(line.startsWith('data: ') ? 6 : 5));
        if (dead.signal.aborted) break;
      }
    } catch (error) {
      if (!dead.signal.aborted) throw error;
    } finally {
      clearInterval(watch);
      stop.signal.removeEventListener('abort', abort);
      drop = undefined;
    }
    throw new Error(reason);
  };

  const run = async () => {
    while (!stop.signal.aborted) {
      try {
        await readStream();
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
    callsPerOpen: 0,
    async close() {
      stop.abort();
      await running;
      for (const mailbox of mailboxes.values()) mailbox.fail();
    },
  };
}

/** Splits a text stream into lines at LF, CRLF or CR, across chunk boundaries. */
export class LineSplitter {
  private rest = '';

  feed(text: string): string[] {
    const lines = (this.rest + text).split(/\r\n|\r|\n/);
    // A chunk ending in CR may be the first half of a CRLF: keep the CR with the rest.
    this.rest = lines.pop()!;
    if (this.rest === '' && text.endsWith('\r')) this.rest = '\r';
    return lines;
  }
}

/** `a,b,c` -> [`a`, `b,c`]. */
function splitOnce(text: string): [string, string] {
  const at = text.indexOf(',');
  return at < 0 ? [text, ''] : [text.slice(0, at), text.slice(at + 1)];
}
