/**
 * A local server speaking the Upstash Redis REST protocol in front of a real redis-server, so the
 * edge can run its production path (`@upstash/redis` over HTTP) on a laptop and in tests.
 *
 * Routes (all need `Authorization: Bearer <token>` or `?_token=<token>`, else 401 {"error":"Unauthorized"}):
 *   POST /                     body ["SET","k","v"]         -> {"result": ...} | 400 {"error": "ERR ..."}
 *   GET|POST /set/k/v          command in the path; a POST body is appended as the last argument
 *                              and query parameters after it (?EX=100 -> EX 100), as Upstash does
 *   POST /pipeline             [[cmd], [cmd], ...]          -> [{"result"}|{"error"}, ...] (non-atomic;
 *                              an entry that is not a command rejects the whole body with 400, nothing runs)
 *   POST /multi-exec           same shape, run inside MULTI/EXEC (a queuing error aborts it: 400)
 *   POST /subscribe/<channel>  SSE stream (see sse.ts), /psubscribe/<pattern> likewise; POST with
 *                              `Accept: text/event-stream` only
 *
 * `faults` (tests only) makes the streams misbehave the ways a real server or network can: frames
 * ended by a single LF or by CRLF instead of a blank line, the `subscribe` frame sent before the
 * subscription is live, silence (no frame, no keep-alive, connection open); `endStreams()` ends
 * them cleanly and `unsubscribeStreams()` sends an `unsubscribe` frame and keeps them open.
 *
 * Replies are encoded by encode.ts (base64 with `Upstash-Encoding: base64`). Commands go through
 * one shared ioredis connection (blocking/state-changing ones are refused, see commands.ts) with
 * no offline queue: if Redis is down a request gets a 503 at once instead of hanging.
 *
 * @example
 * const rest = await startUpstashRestServer({ redisUrl: 'redis://127.0.0.1:6379', token: 'secret' });
 * const redis = new Redis({ url: rest.url, token: 'secret' }); // from '@upstash/redis'
 * await redis.set('greeting', 'hello');
 * await rest.close();
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Server } from 'node:http';
import { serve } from '@hono/node-server';
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { Redis, type Pipeline, type RedisOptions } from 'ioredis';
import { createLogger, type Logger } from '../../shared/log.ts';
import { reconnectDelayMs } from '../../shared/redis-connection.ts';
import { parseCommand, RawCommand } from './commands.ts';
import { encodeReply, type JsonReply } from './encode.ts';
import { openEventStream, PubSubHub, type StreamFaults, type PubSubStats, type TopicKind } from './sse.ts';

export type { StreamFaults };

/** Upstash's request size limit. */
export const MAX_BODY_BYTES = 10 * 1024 * 1024;

export interface UpstashRestServerOptions {
  /** redis:// or rediss:// URL of the Redis to front. */
  redisUrl: string;
  /** The bearer token clients must send. */
  token: string;
  /** 0 or undefined: a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  logger?: Logger;
}

export interface UpstashRestServer {
  /** Base URL for `new Redis({ url, token })`, e.g. http://127.0.0.1:8079 */
  url: string;
  port: number;
  /** Live pub/sub counts: 0 listeners once every SSE client has gone. */
  stats(): PubSubStats;
  /** Listeners of one channel (or pattern) on the shared subscriber connection. */
  listenerCount(name: string, kind?: TopicKind): number;
  /** Tests only: how the SSE streams misbehave (read at every frame; change it at any time). */
  faults: StreamFaults;
  /** HTTP requests received so far (what a Cloudflare Worker counts as subrequests). */
  requestCount(): number;
  /** Tests only: end every open SSE stream cleanly (the server keeps running). */
  endStreams(): void;
  /** Tests only: send every open SSE stream an `unsubscribe` frame, stop its messages, keep it open. */
  unsubscribeStreams(): void;
  /** Ends SSE streams, stops listening and closes both Redis connections. Idempotent. */
  close(): Promise<void>;
}

export interface UpstashRestAppOptions {
  /** Connection for commands (RESP2, see {@link redisConnectionOptions}). */
  redis: Redis;
  hub: PubSubHub;
  token: string;
  logger?: Logger;
  /** Tests only (see the header). */
  faults?: StreamFaults;
}

type Entry = { result: JsonReply } | { error: string };
type Outcome = { status: 200; body: Entry | Entry[] } | { status: 400 | 503; body: { error: string } };

/**
 * Options for the two ioredis connections. RESP2 for commands, so replies have Upstash's shapes
 * (HGETALL as a flat array, scores as strings); the subscriber uses RESP3, where pub/sub messages
 * arrive as push frames that can never be confused with command replies.
 */
export function redisConnectionOptions(role: 'commands' | 'subscriber'): RedisOptions {
  return {
    protocol: role === 'commands' ? 2 : 3,
    connectionName: role === 'commands' ? 'upstash-rest' : 'upstash-rest-subscriber',
    lazyConnect: true,
    enableOfflineQueue: false, // Redis down -> immediate error (503), never an ever-growing queue
    maxRetriesPerRequest: 1,
    autoResendUnfulfilledCommands: false, // a command cut by a disconnect fails; it is not silently re-run
    commandTimeout: 30_000, // last resort against a Redis that accepts but never answers
    retryStrategy: reconnectDelayMs,
    // After a reconnect PubSubHub re-subscribes what still has listeners (and nothing else).
    autoResubscribe: false,
  };
}

/** The Hono app, for tests or to mount elsewhere. `closeStreams()` ends every open SSE stream. */
export function createUpstashRestApp({
  redis,
  hub,
  token,
  logger,
  faults = { framing: 'blank-line', confirmEarly: false, silent: false },
}: UpstashRestAppOptions): {
  app: Hono;
  closeStreams(): void;
  unsubscribeStreams(): void;
  faults: StreamFaults;
  requestCount(): number;
} {
  let requests = 0;
  if (!token) throw new Error('the Upstash REST token must not be empty');
  const expected = sha256(token);
  const streams = new Map<() => void, () => void>(); // end -> unsubscribe
  const track = (end: () => void, unsubscribe: () => void) => {
    streams.set(end, unsubscribe);
    return () => streams.delete(end);
  };

  const app = new Hono();

  app.onError((error, c) => {
    logger?.error({ err: error }, 'request failed');
    return c.json({ error: 'ERR internal server error' }, 500);
  });

  // Debug log per request: the endpoint or command name only (paths and bodies may hold user data).
  app.use('*', async (c, next) => {
    requests++;
    const started = performance.now();
    await next();
    const endpoint = new URL(c.req.url).pathname.split('/')[1] || '/';
    logger?.debug({ method: c.req.method, endpoint, status: c.res.status, ms: Math.round(performance.now() - started) }, 'request');
  });

  app.use('*', async (c, next) => {
    // Hash both sides so that timingSafeEqual compares equal lengths and leaks nothing.
    // The header, or Upstash's `_token` query parameter (for clients that cannot set headers).
    const match = /^Bearer\s+(\S+)\s*$/i.exec(c.req.header('authorization') ?? '');
    const presented = match?.[1] ?? c.req.query('_token');
    const given = sha256(presented ?? '');
    if (!timingSafeEqual(given, expected) || !presented) return c.json({ error: 'Unauthorized' }, 401);
    await next();
  });

  // A declared Content-Length is checked here, and the body then read in one piece straight from the
  // socket (@hono/node-server's fast path; hono's bodyLimit would first turn the request into a
  // web-stream Request: ~0.3 ms per 188 KB enqueue). Only a chunked body is counted as it streams.
  const tooLarge = (c: Context) => c.json({ error: `ERR request body is larger than the ${MAX_BODY_BYTES} byte limit` }, 413);
  const streamingLimit = bodyLimit({ maxSize: MAX_BODY_BYTES, onError: tooLarge });
  app.use('*', async (c, next) => {
    const declared = c.req.header('content-length');
    if (declared === undefined || c.req.header('transfer-encoding') !== undefined) return streamingLimit(c, next);
    if (Number(declared) > MAX_BODY_BYTES) return tooLarge(c);
    await next();
  });

  const respond = (c: Context, outcome: Outcome) => c.json(outcome.body, outcome.status);
  const wantsBase64 = (c: Context) => c.req.header('upstash-encoding')?.toLowerCase() === 'base64';

  // Only the command name is logged: arguments and bodies may hold user data.
  const unavailable = (error: unknown, command: string): Outcome => {
    logger?.warn({ command, err: error }, 'Redis unavailable');
    return { status: 503, body: { error: `ERR Redis is unavailable: ${errorMessage(error)}` } };
  };

  async function single(command: unknown, base64: boolean): Promise<Outcome> {
    const parsed = parseCommand(command);
    if (!parsed.ok) return { status: 400, body: { error: parsed.error } };
    try {
      const raw = new RawCommand(parsed.name, parsed.args);
      void redis.sendCommand(raw);
      const reply: unknown = await raw.promise;
      return { status: 200, body: { result: encodeReply(reply, base64) } };
    } catch (error) {
      if (isReplyError(error)) return { status: 400, body: { error: errorMessage(error) } };
      return unavailable(error, parsed.name);
    }
  }

  async function pipeline(commands: unknown[], base64: boolean): Promise<Outcome> {
    const parsed = commands.map(parseCommand);
    // As Upstash: a body that is not a list of well-formed commands is refused whole; a command
    // refused here (blocking, say) or by Redis gets its error in its entry.
    const invalid = parsed.findIndex((command) => !command.ok && command.malformed);
    const bad = parsed[invalid];
    if (bad && !bad.ok) return { status: 400, body: { error: `ERR command ${invalid + 1} of the pipeline: ${bad.error}` } };
    const batch = redis.pipeline() as unknown as Pipeline; // the runtime class, which has sendCommand
    for (const command of parsed) if (command.ok) batch.sendCommand(new RawCommand(command.name, command.args));
    let results: [Error | null, unknown][] = [];
    if (batch.length > 0) {
      try {
        results = (await batch.exec()) ?? [];
      } catch (error) {
        return unavailable(error, 'pipeline');
      }
    }
    const lost = results.find(([error]) => error && !isReplyError(error));
    if (lost) return unavailable(lost[0], 'pipeline');
    let next = 0;
    const entries = parsed.map((command): Entry => {
      if (!command.ok) return { error: command.error };
      const [error, reply] = results[next++] ?? [new Error('ERR no reply'), null];
      return error ? { error: error.message } : { result: encodeReply(reply, base64) };
    });
    return { status: 200, body: entries };
  }

  async function multiExec(commands: unknown[], base64: boolean): Promise<Outcome> {
    const parsed = commands.map(parseCommand);
    const invalid = parsed.findIndex((command) => !command.ok);
    const bad = parsed[invalid];
    if (bad && !bad.ok) {
      return { status: 400, body: { error: `EXECABORT Transaction discarded because of an invalid command ${invalid + 1}: ${bad.error}` } };
    }
    if (parsed.length === 0) return { status: 200, body: [] };
    const transaction = redis.multi() as unknown as Pipeline;
    for (const command of parsed) if (command.ok) transaction.sendCommand(new RawCommand(command.name, command.args));
    try {
      const results = await transaction.exec();
      if (!results) return { status: 400, body: { error: 'EXECABORT Transaction aborted' } };
      return {
        status: 200,
        body: results.map(([error, reply]): Entry => (error ? { error: error.message } : { result: encodeReply(reply, base64) })),
      };
    } catch (error) {
      if (!isReplyError(error)) return unavailable(error, 'multi-exec');
      // EXECABORT: say which queued command Redis rejected.
      const first = (error as { previousErrors?: Error[] }).previousErrors?.[0];
      return { status: 400, body: { error: first ? `${errorMessage(error)} ${first.message}` : errorMessage(error) } };
    }
  }

  /** The body parsed as JSON, or the 400 message if it is not JSON. */
  async function readJson(c: Context): Promise<{ ok: true; value: unknown } | { ok: false; error: string }> {
    const text = await c.req.text();
    try {
      return { ok: true, value: JSON.parse(text) as unknown };
    } catch {
      return { ok: false, error: 'ERR malformed JSON body: expected a JSON array like ["SET","key","value"]' };
    }
  }

  const batchRoute = (run: typeof pipeline) => async (c: Context) => {
    const body = await readJson(c);
    if (!body.ok) return c.json({ error: body.error }, 400);
    if (!Array.isArray(body.value))
      return c.json({ error: 'ERR body must be a JSON array of commands like [["SET","k","v"],["GET","k"]]' }, 400);
    return respond(c, await run(body.value, wantsBase64(c)));
  };
  app.post('/pipeline', batchRoute(pipeline));
  app.post('/multi-exec', batchRoute(multiExec));

  const subscribeRoute = (kind: TopicKind) => async (c: Context) => {
    const prefix = kind === 'channel' ? '/subscribe/' : '/psubscribe/';
    const name = decodePathSegment(new URL(c.req.url).pathname.slice(prefix.length));
    if (!name) return c.json({ error: `ERR missing ${kind} name: use ${prefix}<${kind}>` }, 400);
    if (!(c.req.header('accept') ?? '').includes('text/event-stream')) {
      return c.json({ error: `ERR ${prefix}<${kind}> streams events: send Accept: text/event-stream` }, 400);
    }
    try {
      const response = await openEventStream({ hub, kind, name, signal: c.req.raw.signal, track, logger, faults });
      return response ?? c.body(null, 204); // undefined: the client left before Redis confirmed
    } catch (error) {
      if (isReplyError(error)) return c.json({ error: errorMessage(error) }, 400);
      logger?.warn({ kind, err: error }, 'subscription failed');
      return c.json({ error: `ERR Redis is unavailable: ${errorMessage(error)}` }, 503);
    }
  };
  app.post('/subscribe/*', subscribeRoute('channel'));
  app.post('/psubscribe/*', subscribeRoute('pattern'));
  app.on(['GET', 'HEAD', 'PUT'], ['/subscribe/*', '/psubscribe/*'], (c) =>
    c.json({ error: `ERR method ${c.req.method} is not allowed: POST with Accept: text/event-stream` }, 405),
  );

  app.post('/', async (c) => {
    const body = await readJson(c);
    if (!body.ok) return c.json({ error: body.error }, 400);
    return respond(c, await single(body.value, wantsBase64(c)));
  });

  // Path form: /set/k/v, optional POST body as the last argument, then query parameters.
  app.on(['GET', 'HEAD', 'POST', 'PUT'], '/*', async (c) => {
    const url = new URL(c.req.url);
    const segments = url.pathname.split('/').slice(1);
    if (segments.at(-1) === '') segments.pop();
    const command: string[] = [];
    for (const segment of segments) {
      const decoded = decodePathSegment(segment);
      if (decoded === undefined) return c.json({ error: 'ERR malformed percent-encoding in the URL path' }, 400);
      command.push(decoded);
    }
    if (command.length === 0) return c.json({ error: 'ERR empty command: POST a JSON array like ["PING"] or GET /ping' }, 400);
    if (c.req.method === 'POST' || c.req.method === 'PUT') {
      const body = await c.req.text();
      if (body !== '') command.push(body);
    }
    for (const [key, value] of url.searchParams) {
      if (key === '_token') continue;
      command.push(key);
      if (value !== '') command.push(value);
    }
    return respond(c, await single(command, wantsBase64(c)));
  });

  app.all('*', (c) => c.json({ error: `ERR method ${c.req.method} is not allowed` }, 405));

  return {
    app,
    faults,
    closeStreams() {
      for (const end of [...streams.keys()]) end();
    },
    unsubscribeStreams() {
      for (const unsubscribe of [...streams.values()]) unsubscribe();
    },
    requestCount: () => requests,
  };
}

/**
 * Start the server: connect to Redis (rejecting with a clear error if it is unreachable), then
 * listen. Resolves once both are ready.
 *
 * @example
 * const redisServer = await startRedisServer();
 * const rest = await startUpstashRestServer({ redisUrl: redisServer.url, token: 'dev-token' });
 * console.log(rest.url); // http://127.0.0.1:<free port>
 * await rest.close();
 * await redisServer.stop();
 */
export async function startUpstashRestServer(options: UpstashRestServerOptions): Promise<UpstashRestServer> {
  const logger = options.logger ?? createLogger('upstash-rest');
  const host = options.host ?? '127.0.0.1';
  const redis = new Redis(options.redisUrl, redisConnectionOptions('commands'));
  const subscriber = new Redis(options.redisUrl, redisConnectionOptions('subscriber'));
  let lastError: Error | undefined;
  for (const [role, connection] of [
    ['commands', redis],
    ['subscriber', subscriber],
  ] as const) {
    // Log an outage once, not on every reconnection attempt; startup failures are thrown instead.
    let wasReady = false;
    let down = false;
    connection.on('error', (error: Error) => {
      lastError = error;
      if (wasReady && !down) logger.warn({ role, err: error }, 'Redis connection lost; reconnecting');
      down = true;
    });
    connection.on('ready', () => {
      if (wasReady && down) logger.info({ role }, 'Redis connection restored');
      wasReady = true;
      down = false;
    });
  }
  const disconnect = () => {
    redis.disconnect();
    subscriber.disconnect();
  };

  try {
    await Promise.all([redis.connect(), subscriber.connect()]);
  } catch (error) {
    disconnect();
    throw new Error(`cannot connect to Redis at ${redactUrl(options.redisUrl)}: ${errorMessage(lastError ?? error)}`);
  }

  let server: Server;
  let port: number;
  const hub = new PubSubHub(subscriber, logger);
  const { app, closeStreams, unsubscribeStreams, faults, requestCount } = createUpstashRestApp({
    redis,
    hub,
    token: options.token,
    logger,
  });
  try {
    ({ server, port } = await new Promise<{ server: Server; port: number }>((resolve, reject) => {
      const created = serve({ fetch: app.fetch, port: options.port ?? 0, hostname: host }, (info) =>
        resolve({ server: created as Server, port: info.port }),
      );
      created.once('error', reject);
    }));
  } catch (error) {
    disconnect();
    throw new Error(`cannot listen on ${host}:${options.port ?? 0}: ${errorMessage(error)}`);
  }

  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  logger.info({ url, redis: redactUrl(options.redisUrl) }, 'Upstash REST server listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    stats: () => hub.stats(),
    listenerCount: (name, kind) => hub.listenerCount(name, kind),
    faults,
    requestCount,
    endStreams: closeStreams,
    unsubscribeStreams,
    close() {
      closing ??= (async () => {
        closeStreams();
        await new Promise<void>((resolve) => {
          // Ended SSE responses and keep-alive sockets turn idle over the next few ticks: close
          // them as they do; requests still running after a grace period are cut.
          const idle = setInterval(() => server.closeIdleConnections(), 10);
          const cut = setTimeout(() => server.closeAllConnections(), 1_000);
          server.close(() => {
            clearInterval(idle);
            clearTimeout(cut);
            resolve();
          });
          server.closeIdleConnections();
        });
        disconnect();
        logger.info('Upstash REST server closed');
      })();
      return closing;
    },
  };
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function isReplyError(error: unknown): error is Error {
  return error instanceof Error && error.name === 'ReplyError';
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function decodePathSegment(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

/** redis://user:secret@host -> redis://user:***@host */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(invalid URL)';
  }
}
