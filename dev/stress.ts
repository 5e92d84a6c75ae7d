/**
 * `npm run stress -- [--url URL] [--image FILE|DIR] [--concurrency N | --rate R] [--requests M | --duration S] [--json]`
 *
 * The seed's stress_test.py, made useful: closed-loop (N requests in flight) or open-loop (R
 * requests/s) load on POST /predict with autocannon, cycling through the images given, with a
 * progress bar; at the end throughput, latency percentiles, and counts by HTTP status and by the
 * API's error code. `--json` prints the summary as JSON instead.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';

export interface StressOptions {
  url: string;
  images: { name: string; bytes: Uint8Array }[];
  concurrency?: number;
  /** Open loop: requests per second overall (concurrency then only caps the connections). */
  rate?: number;
  requests?: number;
  durationSeconds?: number;
  progress?: boolean;
  /** Stops the run early (the summary covers what was sent). */
  signal?: AbortSignal;
  /** Called with each 200 answer's parsed JSON (e.g. to collect the edge's `timings`). */
  onSuccess?: (body: unknown) => void;
}

export interface StressSummary {
  url: string;
  requests: number;
  seconds: number;
  throughput: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  byStatus: Record<string, number>;
  byErrorCode: Record<string, number>;
  connectionErrors: number;
}

const IMAGE_TYPES: Record<string, string> = {
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.png': 'image/png',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
};

/** The images at `path`: one file, or every JPEG/PNG/WebP/GIF in a folder. */
export async function loadImages(path: string): Promise<StressOptions['images']> {
  const files = (await stat(path)).isDirectory()
    ? (await readdir(path))
        .filter((f) => extname(f).toLowerCase() in IMAGE_TYPES)
        .sort()
        .map((f) => join(path, f))
    : [path];
  if (files.length === 0) throw new Error(`no JPEG, PNG, WebP or GIF images in ${path}`);
  return Promise.all(files.map(async (file) => ({ name: basename(file), bytes: new Uint8Array(await readFile(file)) })));
}

const BOUNDARY = '----resnet-edge-stress';
function multipart({ name, bytes }: StressOptions['images'][number]): Buffer {
  const type = IMAGE_TYPES[extname(name).toLowerCase()] ?? 'application/octet-stream';
  return Buffer.concat([
    Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="${name}"\r\nContent-Type: ${type}\r\n\r\n`),
    bytes,
    Buffer.from(`\r\n--${BOUNDARY}--\r\n`),
  ]);
}

export async function runStress(options: StressOptions): Promise<StressSummary> {
  const bodies = options.images.map(multipart);
  const byErrorCode: Record<string, number> = {};
  let next = 0;
  // autocannon refuses more connections than requests.
  const concurrency = Math.min(options.concurrency ?? 8, options.requests ?? Infinity);
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: new URL('/predict', options.url).toString(),
        connections: concurrency,
        // autocannon rejects keys present with an undefined value.
        ...(options.rate ? { overallRate: options.rate } : {}),
        ...(options.requests ? { amount: options.requests } : { duration: options.durationSeconds ?? 10 }),
        timeout: 60,
        requests: [
          {
            method: 'POST',
            headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` },
            setupRequest: (request) => ({ ...request, body: bodies[next++ % bodies.length] }),
            onResponse: (status, body) => {
              if (status === 200) {
                if (options.onSuccess) {
                  try {
                    options.onSuccess(JSON.parse(body));
                  } catch {}
                }
                return;
              }
              let code = 'not_json';
              try {
                code = JSON.parse(body).error?.code ?? 'no_code';
              } catch {}
              byErrorCode[code] = (byErrorCode[code] ?? 0) + 1;
            },
          },
        ],
      },
      (error, done) => (error ? reject(error) : resolve(done)),
    );
    autocannon.track(instance, { renderProgressBar: options.progress ?? false, renderResultsTable: false, renderLatencyTable: false });
    options.signal?.addEventListener('abort', () => instance.stop(), { once: true });
  });
  const requests = result.requests.total;
  const byStatus = Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([status, { count }]) => [status, count ?? 0]));
  return {
    url: options.url,
    requests,
    seconds: result.duration,
    throughput: Math.round((requests / result.duration) * 100) / 100,
    latencyMs: { p50: result.latency.p50, p90: result.latency.p90, p99: result.latency.p99, max: result.latency.max },
    byStatus,
    byErrorCode,
    connectionErrors: result.errors,
  };
}

function printSummary(s: StressSummary) {
  console.log(`\n${s.requests} requests to ${s.url} in ${s.seconds.toFixed(1)} s: ${s.throughput} req/s`);
  console.log(`latency ms: p50 ${s.latencyMs.p50}  p90 ${s.latencyMs.p90}  p99 ${s.latencyMs.p99}  max ${s.latencyMs.max}`);
  console.log(
    `by status: ${
      Object.entries(s.byStatus)
        .map(([k, v]) => `${k} x${v}`)
        .join(', ') || 'none'
    }`,
  );
  if (Object.keys(s.byErrorCode).length)
    console.log(
      `by error code: ${Object.entries(s.byErrorCode)
        .map(([k, v]) => `${k} x${v}`)
        .join(', ')}`,
    );
  if (s.connectionErrors) console.log(`connection errors / timeouts: ${s.connectionErrors}`);
}

const USAGE =
  'usage: npm run stress -- [--url http://localhost:8787] [--image FILE|DIR] [--concurrency N | --rate R] [--requests M | --duration S] [--json]';

async function main() {
  let args;
  try {
    args = parseArgs({
      options: {
        url: { type: 'string', default: 'http://localhost:8787' },
        image: { type: 'string', default: new URL('../../shared/fixtures/images/', import.meta.url).pathname },
        concurrency: { type: 'string' },
        rate: { type: 'string' },
        requests: { type: 'string' },
        duration: { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  if (args.help) return console.log(USAGE);
  const positive = (name: string, value: string | undefined) => {
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0) {
      console.error(`--${name} must be a positive number (got ${JSON.stringify(value)})\n${USAGE}`);
      process.exit(2);
    }
    return n;
  };
  const interrupted = new AbortController();
  process.once('SIGINT', () => interrupted.abort()); // Ctrl-C: stop and still print the summary
  let images;
  try {
    images = await loadImages(args.image!);
  } catch (error) {
    console.error(`cannot read images: ${(error as Error).message}`);
    process.exit(2);
  }
  const summary = await runStress({
    url: args.url!,
    images,
    concurrency: positive('concurrency', args.concurrency),
    rate: positive('rate', args.rate),
    requests: positive('requests', args.requests),
    durationSeconds: positive('duration', args.duration),
    progress: !args.json,
    signal: interrupted.signal,
  });
  if (args.json) console.log(JSON.stringify(summary, null, 2));
  else printSummary(summary);
}

if (process.argv[1] && import.meta.url.endsWith(basename(process.argv[1]))) await main();
