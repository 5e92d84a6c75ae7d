/**
 * Hostile and broken input (test/corpus/cases.ts) against a real stack: redis-server, the local
 * Upstash REST server, ONE gpu-worker process (tiny real model) and the Node edge over HTTP. Every
 * case gets its documented status and JSON error code, or 200 with predictions; afterwards every
 * process is alive and nothing is left queued or pending. Each image case also runs through both
 * codecs in-process (sharp: Node, photon: Workers), which must end the same way unless the case
 * documents why they differ.
 */
import { request as httpRequest } from 'node:http';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError } from '../edge/errors.ts';
import type { ImageCodec } from '../edge/image/codec.ts';
import { probeImage } from '../edge/image/probe.ts';
import type { NodeEdge } from '../edge/node/server.ts';
import { createSharpCodec } from '../edge/node/sharp-codec.ts';
import { createPhotonCodec, createPhoton } from '../edge/cloudflare-workers/photon-codec.ts';
import { redisKeys } from '../shared/keys.ts';
import { createLogger } from '../shared/log.ts';
import { TENSOR_BYTES } from '../shared/tensor.ts';
import type { RedisServerHandle } from '../dev/redis-server.ts';
import { spawnWorker, startLocalEdge, viaRest, type WorkerProcess } from './helpers/fixtures.ts';
import {
  cases,
  expectedOutcome,
  inputBytes,
  MAX_BODY_BYTES,
  MAX_PIXELS,
  type HostileCase,
  type Outcome,
  type Send,
} from './corpus/cases.ts';
import type { TinyModel } from './helpers/tiny-model.ts';
import { startBackbone, type Backbone } from './helpers/backbone.ts';

const TOKEN = 'hostile-inputs-token-0123456789';
const logger = createLogger('hostile', 'silent');

let base: Backbone;
let redisServer: RedisServerHandle;
let redis: Redis;
let rest: Backbone['rest'];
let tiny: TinyModel;
let worker: WorkerProcess;
let edge: NodeEdge;
let jpeg: Uint8Array;

const summary = { http: 0, httpCrashes: [] as string[], inProcess: 0, inProcessCrashes: [] as string[] };

beforeAll(async () => {
  base = await startBackbone({ token: TOKEN, seed: 11 });
  ({ redisServer, redis, rest, tiny } = base);
  worker = spawnWorker('hostile-worker', { REDIS_URL: redisServer.url, ...tiny.env, BATCH_SIZE: '4' });
  edge = await startLocalEdge(viaRest(rest, TOKEN), logger, { MAX_BODY_BYTES: String(MAX_BODY_BYTES), MAX_PIXELS: String(MAX_PIXELS) });
  jpeg = await inputBytes(cases[0]!);
  await worker.tier.ready;
});

afterAll(async () => {
  const crashes = summary.httpCrashes.length + summary.inProcessCrashes.length;
  console.log(
    `hostile inputs: ${summary.http + summary.inProcess} tried, ${crashes} crashes ` +
      `(${summary.http} over HTTP to the Node edge, ${summary.inProcess} codec runs in-process; corpus: ${cases.length} cases)`,
  );
  for (const crash of [...summary.httpCrashes, ...summary.inProcessCrashes]) console.log(`  crash: ${crash}`);
  await edge?.close();
  await worker?.tier.stop();
  await base?.stop();
});

interface Answer {
  status: number;
  contentType: string;
  text: string;
}

/** Send over real HTTP; fetch for most, node:http for requests fetch will not make (a lying Content-Length). */
async function send(target: Send): Promise<Answer> {
  const url = edge.url + (target.path ?? '/predict');
  if ('init' in target) {
    const response = await fetch(url, target.init);
    return { status: response.status, contentType: response.headers.get('content-type') ?? '', text: await response.text() };
  }
  const { method, headers, body, end } = target.raw;
  return new Promise<Answer>((resolve, reject) => {
    const req = httpRequest(url, { method, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), text });
        req.destroy();
      });
    });
    req.on('error', reject);
    req.write(body);
    if (end) req.end();
  });
}

function requestFor(c: HostileCase, bytes: Uint8Array): Send {
  if (c.send) return c.send(bytes, { jpeg });
  const body = new FormData();
  body.append('image', new Blob([bytes as Uint8Array<ArrayBuffer>]), 'upload');
  return { init: { method: 'POST', body } };
}

describe('corpus', () => {
  it('has at least 30 cases with unique names, and every corpus file exists', async () => {
    expect(cases.length).toBeGreaterThanOrEqual(30);
    expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
    for (const c of cases) if (c.input && 'file' in c.input) expect((await inputBytes(c)).length, c.input.file).toBeGreaterThan(0);
  });
});

describe('hostile inputs over HTTP (Node edge, real stack)', () => {
  it.each(cases.map((c) => [`${c.group}: ${c.name}`, c] as const))('%s', async (_, c) => {
    summary.http++;
    let answer: Answer;
    try {
      answer = await send(requestFor(c, await inputBytes(c)));
    } catch (error) {
      summary.httpCrashes.push(`${c.name}: ${(error as Error).message} ${(error as Error).cause ?? ''}`);
      throw error;
    }
    if (answer.status >= 500 || !answer.contentType.includes('application/json')) {
      summary.httpCrashes.push(`${c.name}: ${answer.status} ${answer.contentType} ${answer.text.slice(0, 200)}`);
    }
    const where = `${answer.status} ${answer.text.slice(0, 300)}`;
    expect(answer.status, where).toBe(c.expect.status);
    expect(answer.contentType, where).toContain('application/json');
    const body = JSON.parse(answer.text);
    if (c.expect.status === 200) {
      expect(body.success, where).toBe(true);
      expect(body.predictions, where).toHaveLength(c.expect.predictions ?? 5);
      for (const p of body.predictions) expect(p).toEqual({ label: expect.any(String), probability: expect.any(Number) });
    } else {
      expect(body, where).toEqual({ success: false, error: { code: c.expect.code, message: expect.any(String) } });
      expect(body.error.message.length).toBeGreaterThan(5);
    }
  });

  it('leaves every process alive and nothing queued or pending', async () => {
    const health = await fetch(`${edge.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ ok: true });
    expect(worker.alive(), worker.lines.join('\n')).toBe(true);
    expect(await redis.ping()).toBe('PONG');
    // The worker still answers a good image (through the REST server and Redis).
    const body = new FormData();
    body.append('image', new Blob([jpeg as Uint8Array<ArrayBuffer>], { type: 'image/jpeg' }), 'ok.jpg');
    const response = await fetch(`${edge.url}/predict`, { method: 'POST', body });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ success: true, worker: 'hostile-worker', predictions: expect.any(Array) });
    expect(await redis.xlen(redisKeys().stream)).toBe(0);
    const [pending] = (await redis.xpending(redisKeys().stream, 'workers')) as [number];
    expect(Number(pending)).toBe(0);
    expect(summary.httpCrashes).toEqual([]);
  });
});

describe('image cases through both codecs in-process', () => {
  const decoder = createPhoton();
  const codecs: Record<'sharp' | 'photon', ImageCodec> = {
    sharp: createSharpCodec({ maxPixels: MAX_PIXELS }),
    photon: createPhotonCodec(decoder),
  };

  /** The pipeline the edge runs after reading the upload: probe, then decode + resize. */
  async function outcome(codec: ImageCodec, bytes: Uint8Array, mode: 'squash' | 'center-crop'): Promise<Outcome | `crash: ${string}`> {
    try {
      const tensor = await codec.toTensor(bytes, probeImage(bytes, MAX_PIXELS), mode);
      return tensor.length === TENSOR_BYTES ? 'ok' : `crash: tensor of ${tensor.length} bytes`;
    } catch (error) {
      if (error instanceof ApiError && [400, 413, 415].includes(error.status)) return `${error.status} ${error.code}`;
      return `crash: ${(error as Error)?.stack ?? String(error)}`;
    }
  }

  const imageCases = cases.filter((c) => c.image);
  it.each(imageCases.map((c) => [`${c.name}${c.photon ? ' (photon differs: documented)' : ''}`, c] as const))('%s', async (_, c) => {
    const bytes = await inputBytes(c);
    // Both resize modes, except on the 36 MP image (center-crop reads every pixel: seconds, no news).
    const modes = c.input && 'made' in c.input ? (['squash'] as const) : (['squash', 'center-crop'] as const);
    for (const name of ['sharp', 'photon'] as const) {
      for (const mode of modes) {
        summary.inProcess++;
        const actual = await outcome(codecs[name], bytes, mode);
        if (actual.startsWith('crash')) summary.inProcessCrashes.push(`${c.name} (${name}, ${mode}): ${actual}`);
        expect(actual, `${name}, ${mode}`).toBe(expectedOutcome(c, name));
      }
    }
  });

  it('photon survived every trap and still decodes a good image', async () => {
    expect(await outcome(codecs.photon, jpeg, 'squash')).toBe('ok');
    const { traps, instances } = decoder.stats();
    expect(traps).toBeGreaterThan(0);
    expect(instances).toBe(1 + traps); // a fresh instance after each trap, and only then
    expect(summary.inProcessCrashes).toEqual([]);
  });
});
