/**
 * WIRE_FORMAT: the job carries the 224x224 image as a JPEG (quality 95, 4:4:4) or lossless WebP
 * file instead of its raw pixels, encoded by the edge's codec (sharp on Node, photon on Workers)
 * and decoded by the worker (gpu-worker/wire.ts), through the real code on both sides:
 *
 * - accuracy with the real Keras ResNet50 (ONNX Runtime) on every fixture photo, against raw:
 *   lossless WebP gives the same tensor and the same answer; JPEG the same top-1 on every photo;
 *   with the bytes per job of each;
 * - end to end over TCP and over Upstash REST: the queued entry is the file (format field, its
 *   size), and the worker answers it;
 * - a file that is not a 224x224 image of its format is answered `bad_request`, the batch runs on.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startUpstashRestServer, type UpstashRestServer } from '../dev/upstash-rest/server.ts';
import { createPhotonCodec } from '../edge/cloudflare-workers/photon-codec.ts';
import { probeImage } from '../edge/image/probe.ts';
import { createSharpCodec } from '../edge/node/sharp-codec.ts';
import { parseWorkerConfig } from '../gpu-worker/config.ts';
import type { ImageClassifier } from '../gpu-worker/engine/image-classifier.ts';
import { loadClassifier } from '../gpu-worker/engine/index.ts';
import type { Job } from '../gpu-worker/jobs.ts';
import { decodeWireImages } from '../gpu-worker/wire.ts';
import { startWorker } from '../gpu-worker/worker.ts';
import { redisKeys } from '../shared/keys.ts';
import { createLogger } from '../shared/log.ts';
import { newJobFields, type WireFormat } from '../shared/protocol.ts';
import { TENSOR_BYTES } from '../shared/tensor.ts';
import { colourPng, predict, waitFor } from './helpers/faults.ts';
import { startLocalEdge, useRedisServer, viaRest, viaTcp } from './helpers/fixtures.ts';
import { FIXTURES } from './helpers/images.ts';

const TOKEN = 'wire-format-test-token-0123456789';
const logger = createLogger('wire-format-test', 'silent');
const codec = createSharpCodec({ maxPixels: 40_000_000 });
const db = useRedisServer();
let rest: UpstashRestServer;
let classifier: ImageClassifier;

beforeAll(async () => {
  rest = await startUpstashRestServer({ redisUrl: db.url, token: TOKEN, port: 0, logger });
  classifier = await loadClassifier(parseWorkerConfig({ ENGINE: 'onnx' }), { log: logger });
}, 300_000);
afterAll(async () => {
  classifier?.dispose();
  await rest?.close();
});

const asJob = (tensor: Uint8Array, format: WireFormat): Job => ({
  kind: 'job',
  entryId: '0-1',
  id: 'x',
  reply: 'r',
  tensor,
  format,
  enqueuedAt: 0,
  deadline: 0,
  readAt: 0,
});

describe('WIRE_FORMAT', () => {
  it.each([
    ['Node edge (sharp)', codec],
    ['Workers edge (photon, WebAssembly)', createPhotonCodec()],
  ] as const)(
    'encoded by the %s, on every fixture photo, with the real ResNet50: lossless WebP gives the same tensor and answer, JPEG the same top-1',
    async (encoder, wireCodec) => {
      const photos = readdirSync(FIXTURES).filter((file) => /\.(jpe?g|png)$/i.test(file));
      const totals: Record<string, { bytes: number; agree: number; maxDelta: number }> = {};
      for (const file of photos) {
        const bytes = new Uint8Array(readFileSync(FIXTURES + file));
        // One tensor for both encoders (the sharp decode): this compares the wire files, not the decoders.
        const tensor = await codec.toTensor(bytes, probeImage(bytes, 40_000_000), 'squash');
        const [raw] = (await classifier.classifyWithStats([tensor], 5)).predictions;
        for (const format of ['jpeg', 'webp'] as const) {
          const wire = await wireCodec.toWire!(tensor, format);
          const { jobs, invalid } = await decodeWireImages([asJob(wire, format)]);
          expect(invalid).toEqual([]);
          const [back] = (await classifier.classifyWithStats([jobs[0]!.tensor], 1000)).predictions;
          const probability = new Map(back!.map((p) => [p.label, p.probability]));
          const delta = Math.max(...raw!.map((p) => Math.abs(p.probability - (probability.get(p.label) ?? 0))));
          const total = (totals[format] ??= { bytes: 0, agree: 0, maxDelta: 0 });
          total.bytes += wire.length;
          total.agree += back![0]!.label === raw![0]!.label ? 1 : 0;
          total.maxDelta = Math.max(total.maxDelta, delta);
          if (format === 'webp') expect(Buffer.compare(Buffer.from(jobs[0]!.tensor), Buffer.from(tensor)), file).toBe(0);
        }
      }
      for (const [format, total] of Object.entries(totals)) {
        console.log(
          `wire format ${format} vs raw, encoded by the ${encoder}, ${photos.length} fixture photos (ResNet50, ONNX Runtime): ` +
            `mean ${Math.round(total.bytes / photos.length)} bytes per job (${(total.bytes / photos.length / TENSOR_BYTES).toFixed(3)}x raw), ` +
            `top-1 agreement ${total.agree}/${photos.length}, largest probability change of raw's top 5 ${total.maxDelta.toFixed(4)}`,
        );
        expect(total.agree, format).toBe(photos.length);
      }
      expect(totals.webp!.maxDelta).toBe(0);
      expect(totals.jpeg!.maxDelta).toBeLessThan(0.1);
      expect(totals.jpeg!.bytes / photos.length).toBeLessThan(0.3 * TENSOR_BYTES);
      expect(totals.webp!.bytes / photos.length).toBeLessThan(0.6 * TENSOR_BYTES);
    },
    120_000,
  );

  it.each([
    ['TCP', 'jpeg', () => viaTcp(db.url)],
    ['Upstash REST', 'webp', () => viaRest(rest, TOKEN)],
  ] as const)('over %s, WIRE_FORMAT=%s: the queued job is the file, and the worker answers it', async (_name, format, via) => {
    const prefix = `wire-${format}`;
    const keys = redisKeys(prefix);
    await db.redis.xgroup('CREATE', keys.stream, keys.group, '0', 'MKSTREAM');
    const edge = await startLocalEdge(via(), logger, { KEY_PREFIX: prefix, WIRE_FORMAT: format, ADMISSION: 'queue-max' });
    try {
      const reply = predict(edge.url, await colourPng(6));
      await waitFor(async () => (await db.redis.xlen(keys.stream)) === 1, 10_000, 'the job queued');
      const entries = (await db.redis.xrangeBuffer(keys.stream, '-', '+')) as [Buffer, Buffer[]][];
      const fields = entries[0]![1];
      const field = (name: string) => fields[fields.findIndex((f: Buffer, i: number) => i % 2 === 0 && f.toString() === name) + 1];
      expect(field('format')?.toString()).toBe(format);
      expect(field('tensor')!.length).toBeLessThan(TENSOR_BYTES / 4);
      const worker = startWorker(
        parseWorkerConfig({ REDIS_URL: db.url, KEY_PREFIX: prefix, MODEL: 'synthetic:instant', METRICS_PORT: '0' }),
        {
          logger,
        },
      );
      try {
        expect((await reply).status).toBe(200);
      } finally {
        await worker.stop();
      }
    } finally {
      await edge.close();
    }
  });

  it('a file that is not a 224x224 image of its format: bad_request, and its batch-mates are answered', async () => {
    const prefix = 'wire-bad';
    const keys = redisKeys(prefix);
    const tensor = await codec.toTensor(await colourPng(7), probeImage(await colourPng(7), 1e6), 'squash');
    const good = await codec.toWire!(tensor, 'jpeg');
    const small = new Uint8Array(
      await (await import('sharp'))
        .default(await colourPng(8))
        .jpeg()
        .toBuffer(),
    ); // 48x48
    const jobs = [
      ['good', good, 'jpeg'],
      ['junk', new TextEncoder().encode('not a jpeg at all'), 'jpeg'],
      ['small', small, 'jpeg'],
      ['mislabelled', good, 'webp'],
    ] as const;
    await db.redis.xgroup('CREATE', keys.stream, keys.group, '0', 'MKSTREAM');
    for (const [id, bytes, format] of jobs) {
      await db.redis.xadd(
        keys.stream,
        '*',
        ...newJobFields({ id, tensor: bytes, deadline: Date.now() + 30_000, format }, 'z85', `${prefix}:done:${id}`),
      );
    }
    const worker = startWorker(
      parseWorkerConfig({ REDIS_URL: db.url, KEY_PREFIX: prefix, MODEL: 'synthetic:instant', BATCH_SIZE: '4', METRICS_PORT: '0' }),
      { logger },
    );
    try {
      const results = await waitFor(
        async () => {
          const values = await Promise.all(jobs.map(([id]) => db.redis.get(keys.result(id))));
          return values.every(Boolean) ? values.map((value) => JSON.parse(value!)) : undefined;
        },
        10_000,
        'every job answered',
      );
      expect(results.map((r) => (r.ok ? 'ok' : r.error.code))).toEqual(['ok', 'bad_request', 'bad_request', 'bad_request']);
      expect(results[2].error.message).toMatch(/not a jpeg file of the wire image/);
    } finally {
      await worker.stop();
    }
  });
});
