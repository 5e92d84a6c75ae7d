/**
 * The Node edge's HTTP transport to Upstash REST, on undici's `request` API: a {@link Requester}
 * for `@upstash/redis` (which otherwise calls the global `fetch`) and the SSE stream of the shared
 * result subscription. Node's built-in fetch spends a large share of the edge's CPU per job in the
 * WHATWG Request/Response/streams layers (figures: docs/architecture.md); undici's `request`
 * skips them. Workers keep `fetch`, which is native there.
 *
 * Replies are asked for as plain JSON (no `Upstash-Encoding: base64`): everything this service
 * stores is UTF-8 text (Z85 tensors, JSON results, counters), and the client's base64 step only
 * exists for binary values. Errors have @upstash/redis' shape (UpstashError with the server's
 * message); network errors are retried like its own client does (`retries`, exponential backoff).
 *
 * @example
 * const http = createUpstashHttp({ url, token });
 * const redis = new Redis(http); // from '@upstash/redis'
 * for await (const text of await http.eventStream('/subscribe/rn:edge:1', signal)) ...
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { errors, type Requester, type UpstashRequest, type UpstashResponse } from '@upstash/redis';
import { Pool } from 'undici';

export interface UpstashHttpOptions {
  /** UPSTASH_REDIS_REST_URL (a path prefix is kept). */
  url: string;
  token: string;
  /** Attempts after the first when the connection fails (not on HTTP errors). Default 2. */
  retries?: number;
  /** Wait before retry n (0-based), ms. Default 20 * 2^n: fail over to a 503 fast. */
  backoffMs?: (attempt: number) => number;
  /** Most connections kept open to the REST server. Default 64. */
  connections?: number;
}

export interface UpstashHttp extends Requester {
  /**
   * POST `path` asking for `text/event-stream`; the body as text chunks (not yet split into
   * events). Rejects when the server answers anything but 2xx.
   */
  eventStream(path: string, signal: AbortSignal): Promise<AsyncIterable<string>>;
  close(): Promise<void>;
}

export function createUpstashHttp({
  url,
  token,
  retries = 2,
  backoffMs = (n) => 20 * 2 ** n,
  connections = 64,
}: UpstashHttpOptions): UpstashHttp {
  const base = new URL(url);
  const prefix = base.pathname.replace(/\/$/, '');
  const pool = new Pool(base.origin, { connections });
  const authorization = `Bearer ${token}`;
  let syncToken = '';

  const post = async (path: string, body: string | undefined, headers: Record<string, string>, signal?: AbortSignal) => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await pool.request({ path: prefix + path, method: 'POST', headers: { authorization, ...headers }, body, signal });
      } catch (error) {
        if (signal?.aborted || attempt >= retries) throw error;
        await sleep(backoffMs(attempt));
      }
    }
  };

  return {
    async request<TResult>(req: UpstashRequest): Promise<UpstashResponse<TResult>> {
      if (req.isStreaming) throw new Error('streaming requests go through eventStream() (see shared-inbox.ts)');
      const body = JSON.stringify(req.body);
      const headers: Record<string, string> = { 'content-type': 'application/json', ...req.headers };
      if (syncToken) headers['upstash-sync-token'] = syncToken;
      const response = await post(`/${(req.path ?? []).join('/')}`, body, headers, req.signal);
      const text = await response.body.text();
      const nextToken = response.headers['upstash-sync-token'];
      if (typeof nextToken === 'string') syncToken = nextToken;
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch (error) {
        throw new errors.UpstashJSONParseError(text, { cause: error });
      }
      if (response.statusCode >= 300) {
        throw new errors.UpstashError(
          `${(parsed as { error?: string }).error ?? `HTTP ${response.statusCode}`}, command was: ${commandName(req.body)}`,
        );
      }
      return parsed as UpstashResponse<TResult>;
    },
    async eventStream(path, signal) {
      const response = await post(path, undefined, { accept: 'text/event-stream' }, signal);
      if (response.statusCode >= 300) {
        await response.body.dump().catch(() => {});
        throw new Error(`${path.split('/')[1]} answered HTTP ${response.statusCode}`);
      }
      return decoded(response.body);
    },
    close: () => pool.close(),
  };
}

/** UTF-8 text of a byte stream, chunk by chunk (a character split across chunks is kept whole). */
async function* decoded(bytes: AsyncIterable<Uint8Array>): AsyncIterable<string> {
  const decoder = new TextDecoder();
  for await (const chunk of bytes) yield decoder.decode(chunk, { stream: true });
}

/** The command's name only: its arguments may hold user data (a tensor, a result). */
function commandName(body: unknown): string {
  if (!Array.isArray(body)) return '?';
  return Array.isArray(body[0]) ? `pipeline of ${body.length}` : String(body[0] ?? '?');
}
