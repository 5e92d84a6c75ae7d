/**
 * Fault-injection helpers for test/faults*.test.ts: HTTP calls that record status and timing, and
 * views of the queue's pending list (the worker processes they kill: fixtures.ts spawnWorker). Each fault test prints one summary line through {@link summary}.
 */
import { Redis } from 'ioredis';
import sharp from 'sharp';
import type { RedisKeys } from '../../shared/keys.ts';

export interface Reply {
  status: number;
  body: { success: boolean; id?: string; worker?: string; error?: { code: string; message: string }; [key: string]: unknown };
  /** The x-request-id header: the job id. */
  requestId: string | null;
  retryAfter: string | null;
  /** When the request was sent and when its answer was complete (epoch ms). */
  sentAt: number;
  doneAt: number;
}

/** POST an image (with `headers`); never throws: a transport failure is status 0 (counted as lost by the tests). */
export async function predict(url: string, image: Uint8Array, headers: Record<string, string> = {}): Promise<Reply> {
  const sentAt = Date.now();
  try {
    const response = await fetch(`${url}/predict`, {
      method: 'POST',
      headers: { 'content-type': 'image/png', ...headers },
      body: new Uint8Array(image),
    });
    const text = await response.text();
    let body: Reply['body'];
    try {
      body = JSON.parse(text);
    } catch {
      body = { success: false, error: { code: 'not_json', message: text.slice(0, 200) } };
    }
    return {
      status: response.status,
      body,
      requestId: response.headers.get('x-request-id'),
      retryAfter: response.headers.get('retry-after'),
      sentAt,
      doneAt: Date.now(),
    };
  } catch (error) {
    return {
      status: 0,
      body: { success: false, error: { code: 'transport', message: String(error) } },
      requestId: null,
      retryAfter: null,
      sentAt,
      doneAt: Date.now(),
    };
  }
}

/** A small solid-colour PNG, a different colour per seed. */
export async function colourPng(seed: number): Promise<Buffer> {
  const background = { r: (seed * 67) % 256, g: (seed * 131) % 256, b: (seed * 29) % 256 };
  return sharp({ create: { width: 48, height: 48, channels: 3, background } })
    .png()
    .toBuffer();
}

export interface PendingEntry {
  entryId: string;
  consumer: string;
  idleMs: number;
  deliveries: number;
}

/** The group's pending entries list (XPENDING, extended form). */
export async function pendingEntries(redis: Redis, keys: RedisKeys): Promise<PendingEntry[]> {
  const rows = (await redis.xpending(keys.stream, keys.group, '-', '+', 10_000).catch(() => [])) as [string, string, number, number][];
  return rows.map(([entryId, consumer, idleMs, deliveries]) => ({ entryId, consumer, idleMs, deliveries }));
}

/** Entries ever added to a stream (XINFO STREAM entries-added, Redis 7+); 0 if it does not exist. */
export async function entriesAdded(redis: Redis, key: string): Promise<number> {
  const info = (await redis.xinfo('STREAM', key).catch(() => null)) as unknown[] | null;
  if (!info) return 0;
  return Number(info[info.indexOf('entries-added') + 1]);
}

/** The job id (`id` field) of each stream entry still in the stream. */
export async function jobIdsOf(redis: Redis, keys: RedisKeys, entryIds: string[]): Promise<Map<string, string>> {
  const ids = new Map<string, string>();
  for (const entryId of entryIds) {
    const [entry] = (await redis.xrange(keys.stream, entryId, entryId)) as [string, string[]][];
    const fields = entry?.[1] ?? [];
    const at = fields.indexOf('id');
    if (at >= 0 && at % 2 === 0) ids.set(entryId, fields[at + 1]!);
  }
  return ids;
}

/** The fields of every entry of a stream, as objects (tensors left out unless asked for). */
export async function streamEntries(redis: Redis, key: string): Promise<{ entryId: string; fields: Record<string, string> }[]> {
  const entries = (await redis.xrange(key, '-', '+')) as [string, string[]][];
  return entries.map(([entryId, list]) => {
    const fields: Record<string, string> = {};
    for (let i = 0; i + 1 < list.length; i += 2) fields[list[i]!] = list[i + 1]!;
    return { entryId, fields };
  });
}

/** Counts every result published on a deployment's reply channels (`prefix`), by job id. */
export async function countPublishes(url: string, prefix: string): Promise<{ counts: Map<string, string[]>; close(): Promise<void> }> {
  const subscriber = new Redis(url);
  const counts = new Map<string, string[]>();
  subscriber.on('pmessage', (_pattern: string, _channel: string, message: string) => {
    let id: string;
    try {
      id = JSON.parse(message).id;
    } catch {
      return;
    }
    counts.set(id, [...(counts.get(id) ?? []), message]);
  });
  // Per-request channels (<prefix>:done:<id>) and per-edge ones (<prefix>:edge:<edge id>).
  await subscriber.psubscribe(`${prefix}:done:*`, `${prefix}:edge:*`);
  return { counts, close: async () => void subscriber.disconnect() };
}

/** Poll `check` every `everyMs` until it returns a truthy value; throws after `timeoutMs`. */
export async function waitFor<T>(check: () => T | Promise<T>, timeoutMs: number, what: string, everyMs = 20): Promise<NonNullable<T>> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Count replies by `status code`, e.g. {"200": 38, "503 broker_unavailable": 2}. */
export function tally(replies: Reply[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const reply of replies) {
    const key = reply.status === 200 ? '200' : `${reply.status} ${reply.body.error?.code ?? '?'}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

/**
 * One line per fault test, for the fault table of docs/reliability.md, e.g.
 * `faults: worker SIGKILL x1 (mid-batch), requests 40, lost 0 | 200: 40 | reclaimed 4`.
 */
export function summary(faults: string, requests: number, lost: number, details: Record<string, unknown> = {}): string {
  const extra = Object.entries(details)
    .map(([key, value]) => `${key} ${typeof value === 'object' ? JSON.stringify(value) : String(value)}`)
    .join(', ');
  const line = `faults: ${faults}, requests ${requests}, lost ${lost}${extra ? ` | ${extra}` : ''}`;
  console.log(line);
  return line;
}

export interface HangingProxy {
  url: string;
  /** From now on nothing passes either way, and new connections are accepted and held: a black hole. */
  hang(): void;
  close(): Promise<void>;
}

/** A TCP proxy in front of `target` (http://host:port) that can be made to stop answering without closing anything. */
export async function hangingProxy(target: string): Promise<HangingProxy> {
  const { createServer, connect } = await import('node:net');
  const { hostname, port } = new URL(target);
  const sockets = new Set<import('node:net').Socket>();
  let hung = false;
  const server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    if (hung) return; // held open, never answered
    const upstream = connect(Number(port), hostname);
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.on('data', (chunk) => hung || upstream.write(chunk));
    upstream.on('data', (chunk) => hung || client.write(chunk));
    client.on('end', () => hung || upstream.end());
    upstream.on('end', () => hung || client.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const address = server.address() as import('node:net').AddressInfo;
  return {
    url: `http://127.0.0.1:${address.port}`,
    hang: () => void (hung = true),
    close: async () => {
      // Stop accepting first: a client still running would otherwise open a connection close() waits for.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}
