/**
 * The seed tutorial's web server (bench baseline, see protocol.ts), on Hono + Node: decode the
 * upload with the edge's own sharp codec (so decode costs the same), caffe-preprocess to float32,
 * RPUSH base64 JSON, then GET every 0.25 s until the result is there. It also answers the
 * timings our edge gives (preprocess, inference, total), so the bench can compare overheads.
 *
 * The tutorial waits forever; here SEED_MAX_WAIT_MS (default 300 s) answers 504, so a lost job
 * cannot hang a bench run. Env: REDIS_URL, PORT (0: any), MAX_PIXELS.
 * Prints `seed server ready on <url>` when listening.
 */
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { Redis } from 'ioredis';
import { sleep } from '../../edge/broker/broker.ts';
import { ApiError, errorBody } from '../../edge/errors.ts';
import { probeImage } from '../../edge/image/probe.ts';
import { createSharpCodec } from '../../edge/node/sharp-codec.ts';
import { CLIENT_SLEEP_MS, IMAGE_QUEUE, seedJob } from './protocol.ts';

const maxPixels = Number(process.env.MAX_PIXELS ?? 40_000_000);
const maxWaitMs = Number(process.env.SEED_MAX_WAIT_MS ?? 300_000);
const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const codec = createSharpCodec({ maxPixels });

const app = new Hono();
app.post('/predict', async (c) => {
  const started = Date.now();
  const file = (await c.req.formData()).get('image');
  if (!(file instanceof File)) throw new ApiError(400, 'missing_image', 'Missing the multipart file field "image"');
  const bytes = new Uint8Array(await file.arrayBuffer());
  const tensor = await codec.toTensor(bytes, probeImage(bytes, maxPixels), 'squash');
  const preprocessMs = Date.now() - started;
  const id = randomUUID();
  await redis.rpush(IMAGE_QUEUE, seedJob(id, tensor));
  const giveUp = Date.now() + maxWaitMs;
  while (Date.now() < giveUp) {
    const output = await redis.get(id);
    if (output !== null) {
      await redis.del(id);
      const { predictions, inferenceMs } = JSON.parse(output) as { predictions: unknown; inferenceMs: number };
      // Timings in the shape of our edge's, for the bench (the tutorial answers predictions only).
      return c.json({ success: true, predictions, timings: { preprocessMs, inferenceMs, totalMs: Date.now() - started } });
    }
    await sleep(CLIENT_SLEEP_MS);
  }
  throw new ApiError(504, 'deadline_exceeded', `No result within ${maxWaitMs} ms`);
});
app.onError((error, c) =>
  error instanceof ApiError
    ? c.json(errorBody(error.code, error.message), error.status)
    : c.json(errorBody('internal_error', String(error)), 500),
);

const server = serve({ fetch: app.fetch, port: Number(process.env.PORT ?? 0), hostname: '127.0.0.1' }, (info: AddressInfo) => {
  console.log(`seed server ready on http://127.0.0.1:${info.port}`);
});
process.once('SIGTERM', () => {
  server.close();
  redis.disconnect();
  process.exit(0);
});
