/**
 * Pub/sub over Server-Sent Events, the way `@upstash/redis` `subscribe()`/`psubscribe()` reads it.
 *
 * All SSE clients share ONE Redis subscriber connection: a channel (or pattern) is SUBSCRIBEd when
 * its first listener arrives and UNSUBSCRIBEd when its last one leaves, so hundreds of short-lived
 * subscriptions per second cost no extra connections. The `subscribe` event is written only after
 * Redis has confirmed the subscription: clients treat it as "ready" and only then enqueue the work
 * whose result will be published. Frames (the client splits on "\n" and reads `data: ` lines):
 *
 *   data: subscribe,<channel>,1            data: psubscribe,<pattern>,1
 *   data: message,<channel>,<payload>      data: pmessage,<pattern>,<channel>,<payload>
 *
 * After a Redis reconnect the hub re-subscribes the topics that still have listeners, so the
 * subscriber connection must not auto-resubscribe by itself (see redisConnectionOptions).
 *
 * Payloads are sent as UTF-8 text, never base64. A payload containing a newline cannot be framed
 * this way (the client would cut it); JSON payloads never contain raw newlines.
 *
 * @example
 * const hub = new PubSubHub(subscriberConnection, logger);
 * const release = await hub.listen('channel', 'results:42', (frame) => write(frame));
 * release(); // last listener gone: UNSUBSCRIBE results:42
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../../shared/log.ts';

export type TopicKind = 'channel' | 'pattern';
type Listener = (frame: Uint8Array) => void;

interface Topic {
  refs: number; // listeners waiting for confirmation + confirmed listeners
  listeners: Set<Listener>; // confirmed listeners, which receive messages
  ready: Promise<void>;
}

export interface PubSubStats {
  channels: number;
  patterns: number;
  listeners: number;
}

const encoder = new TextEncoder();

export class PubSubHub {
  private readonly topics = new Map<string, Topic>();

  constructor(
    private readonly subscriber: Redis,
    private readonly logger?: Logger,
  ) {
    subscriber.on('messageBuffer', (channel: Buffer, message: Buffer) => {
      const name = channel.toString();
      this.dispatch('channel', name, `data: message,${name},${message.toString('utf8')}\n\n`);
    });
    subscriber.on('pmessageBuffer', (pattern: string | Buffer, channel: Buffer, message: Buffer) => {
      const name = pattern.toString();
      this.dispatch('pattern', name, `data: pmessage,${name},${channel.toString()},${message.toString('utf8')}\n\n`);
    });
    // After a reconnect the new connection has no subscriptions: restore those with listeners.
    subscriber.on('ready', () => {
      for (const key of this.topics.keys()) {
        const [kind, name] = [key.startsWith('c:') ? 'channel' : 'pattern', key.slice(2)] as const;
        (kind === 'channel' ? subscriber.subscribe(name) : subscriber.psubscribe(name)).catch((error: unknown) =>
          this.logger?.warn({ kind, err: error }, 're-subscribe failed'),
        );
      }
    });
  }

  /**
   * Add a listener; resolves once Redis has confirmed the subscription, with a release function
   * (idempotent). Rejects if Redis refuses or is unreachable.
   */
  async listen(kind: TopicKind, name: string, listener: Listener): Promise<() => void> {
    const key = topicKey(kind, name);
    let topic = this.topics.get(key);
    if (!topic) {
      const ready = (kind === 'channel' ? this.subscriber.subscribe(name) : this.subscriber.psubscribe(name)).then(() => {});
      const created: Topic = { refs: 0, listeners: new Set(), ready };
      // A failed subscription is forgotten at once so that the next listener tries again.
      ready.catch(() => {
        if (this.topics.get(key) === created) this.topics.delete(key);
      });
      this.topics.set(key, created);
      topic = created;
    }
    const current = topic;
    current.refs++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      current.listeners.delete(listener);
      current.refs--;
      if (current.refs === 0 && this.topics.get(key) === current) {
        this.topics.delete(key);
        const leave = kind === 'channel' ? this.subscriber.unsubscribe(name) : this.subscriber.punsubscribe(name);
        leave.catch((error: unknown) => {
          // While Redis is away this is expected: the reconnect re-subscribes only live topics.
          if (this.subscriber.status === 'ready') this.logger?.warn({ kind, err: error }, 'unsubscribe failed');
        });
      }
    };
    try {
      await current.ready;
    } catch (error) {
      release();
      throw error;
    }
    if (!released) current.listeners.add(listener);
    return release;
  }

  /** Listeners (confirmed or still waiting for Redis) of one channel or pattern: 0 once all have left. */
  listenerCount(name: string, kind: TopicKind = 'channel'): number {
    return this.topics.get(topicKey(kind, name))?.refs ?? 0;
  }

  stats(): PubSubStats {
    let channels = 0;
    let patterns = 0;
    let listeners = 0;
    for (const [key, topic] of this.topics) {
      if (key.startsWith('c:')) channels++;
      else patterns++;
      listeners += topic.refs;
    }
    return { channels, patterns, listeners };
  }

  private dispatch(kind: TopicKind, name: string, frame: string) {
    const topic = this.topics.get(topicKey(kind, name));
    if (!topic || topic.listeners.size === 0) return;
    const bytes = encoder.encode(frame);
    for (const listener of [...topic.listeners]) listener(bytes);
  }
}

/** A frame ended by a blank line, ended by `end` instead. */
function reframe(bytes: Uint8Array, end: string): Uint8Array {
  return encoder.encode(new TextDecoder().decode(bytes).replace(/\n\n$/, end));
}

const topicKey = (kind: TopicKind, name: string) => `${kind === 'channel' ? 'c' : 'p'}:${name}`;

const KEEPALIVE_MS = 15_000;
/** A client that stops reading is dropped once this many frames are queued for it. */
const MAX_QUEUED_FRAMES = 10_000;

/** Tests only: ways a stream can misbehave (server.ts `faults`), read at every frame. */
export interface StreamFaults {
  /** How a frame ends: a blank line (Upstash), a single LF (the official client's mock), CRLF. */
  framing: 'blank-line' | 'lf' | 'crlf';
  /** Send the `subscribe` frame CONFIRM_EARLY_MS before subscribing in Redis (a publish meanwhile is lost). */
  confirmEarly: boolean;
  /** Send nothing at all (no frame, no keep-alive) while the connection stays open. */
  silent: boolean;
}

const FRAME_END = { 'blank-line': '\n\n', lf: '\n', crlf: '\r\n' } as const;
const CONFIRM_EARLY_MS = 300;

export interface SseOptions {
  hub: PubSubHub;
  kind: TopicKind;
  name: string;
  /** Aborted when the HTTP client goes away. */
  signal: AbortSignal;
  /** Called with functions that end this stream (when the server shuts down) and unsubscribe it (faults). */
  track: (end: () => void, unsubscribe: () => void) => () => void;
  logger?: Logger;
  faults?: StreamFaults;
}

/**
 * Subscribe, wait for Redis to confirm, then return the event-stream Response (or throw, before any
 * byte is sent, if the subscription failed). The listener is released when the client disconnects,
 * the stream is cancelled, or the server closes.
 */
export async function openEventStream({ hub, kind, name, signal, track, logger, faults }: SseOptions): Promise<Response | undefined> {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let open = true;
  let started = false;
  const early: Uint8Array[] = [];
  let release: (() => void) | undefined;
  let untrack: (() => void) | undefined;
  let keepalive: ReturnType<typeof setInterval> | undefined;

  const end = () => {
    if (!open) return;
    open = false;
    release?.();
    untrack?.();
    if (keepalive) clearInterval(keepalive);
    signal.removeEventListener('abort', end);
    try {
      controller.close();
    } catch {
      // already closed or cancelled
    }
  };
  const send = (bytes: Uint8Array) => {
    if (!open || faults?.silent) return;
    const frame = faults && faults.framing !== 'blank-line' ? reframe(bytes, FRAME_END[faults.framing]) : bytes;
    if (!started) {
      early.push(frame);
      return;
    }
    if ((controller.desiredSize ?? 0) < -MAX_QUEUED_FRAMES) {
      logger?.warn({ kind }, 'SSE client is not reading; dropping it');
      end();
      return;
    }
    controller.enqueue(frame);
  };

  const body = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
    cancel() {
      end();
    },
  });

  const confirmation = encoder.encode(`data: ${kind === 'channel' ? 'subscribe' : 'psubscribe'},${name},1\n\n`);
  const unsubscribe = () => {
    release?.();
    send(encoder.encode(`data: ${kind === 'channel' ? 'unsubscribe' : 'punsubscribe'},${name},0\n\n`));
  };
  signal.addEventListener('abort', end, { once: true });
  untrack = track(end, unsubscribe);
  if (faults?.confirmEarly) {
    // Confirmed before Redis has: whatever is published until it has, is lost.
    started = true;
    send(confirmation);
    setTimeout(() => {
      if (open)
        void hub.listen(kind, name, send).then(
          (leave) => (open ? (release = leave) : leave()),
          () => end(),
        );
    }, CONFIRM_EARLY_MS);
    return new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' } });
  }
  try {
    release = await hub.listen(kind, name, send);
  } catch (error) {
    end();
    throw error;
  }
  if (!open) {
    // The client left (or the server closed) while Redis was confirming.
    release();
    return undefined;
  }
  started = true;
  send(confirmation);
  for (const frame of early.splice(0)) send(frame);
  keepalive = setInterval(() => send(encoder.encode(': keepalive\n\n')), KEEPALIVE_MS);
  keepalive.unref();

  return new Response(body, {
    status: 200,
    headers: { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', 'X-Accel-Buffering': 'no' },
  });
}
