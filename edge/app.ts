/**
 * The edge's one Hono app. Runtime-specific parts (image codec, broker, logger) are injected, so
 * the Node entry (`node/`) and the Workers entry share routes, validation, limits and errors.
 *
 * @example
 * const app = createApp({ codec: createSharpCodec(limits), broker, config: parseEdgeConfig(process.env) });
 * serve({ fetch: app.fetch, port: 8787 });
 */
import { Hono, type Context } from 'hono';
import { cors } from 'hono/cors';
import { HTTPException } from 'hono/http-exception';
import { requestId, type RequestIdVariables } from 'hono/request-id';
import { z } from 'zod';
import type { Broker } from './broker/broker.ts';
import type { EdgeConfig } from './config.ts';
import { ApiError, errorBody } from './errors.ts';
import { RESIZE_MODES, type ImageCodec } from './image/codec.ts';
import { probeImage } from './image/probe.ts';
import { accessLog } from './middleware/access-log/index.ts';
import { apiKey } from './middleware/api-key/index.ts';
import { rateLimit, type RateLimitOptions } from './middleware/rate-limit/index.ts';
import { DEFAULT_TOP_K, MAX_TOP_K } from '../shared/protocol.ts';
import type { Logger } from '../shared/log.ts';

export interface AppDeps {
  codec: ImageCodec;
  broker: Broker;
  config: Pick<EdgeConfig, 'MAX_BODY_BYTES' | 'MAX_PIXELS' | 'DEADLINE_MS' | 'DEFAULT_RESIZE'> &
    Partial<Pick<EdgeConfig, 'apiKeys' | 'corsOrigins'>>;
  logger?: Logger;
  /** Per-caller rate limit (RATE_LIMIT); the runtime adapter builds it and knows client addresses. */
  rateLimit?: Pick<RateLimitOptions, 'limiter' | 'clientAddress'>;
}

/** Slack for the multipart envelope around an image of MAX_BODY_BYTES. */
const MULTIPART_OVERHEAD = 64 * 1024;

const PredictQuery = z.object({
  // Digits only: Number() would also take '1e1' or '0x10'.
  top: z
    .string()
    .regex(/^\d{1,2}$/, { error: `top must be an integer from 1 to ${MAX_TOP_K}` })
    .transform(Number)
    .pipe(z.number().min(1, { error: `top must be an integer from 1 to ${MAX_TOP_K}` }).max(MAX_TOP_K, { error: `top must be an integer from 1 to ${MAX_TOP_K}` }))
    .default(DEFAULT_TOP_K),
  resize: z.enum(RESIZE_MODES).optional(),
});

export function createApp({ codec, broker, config, logger, rateLimit: limits }: AppDeps) {
  const app = new Hono<{ Variables: RequestIdVariables }>();

  // limitLength 0 ignores any id a client sends: the id also names the job's Redis keys, so it is ours.
  app.use(requestId({ limitLength: 0 }));
  if (logger) app.use(accessLog(logger));
  if (config.corsOrigins?.length) {
    app.use(
      cors({
        origin: config.corsOrigins.includes('*') ? '*' : config.corsOrigins,
        allowMethods: ['GET', 'POST', 'OPTIONS'],
        allowHeaders: ['Authorization', 'Content-Type'],
        exposeHeaders: ['X-Request-Id', 'Retry-After', 'RateLimit-Limit', 'RateLimit-Remaining'],
        maxAge: 600,
      }),
    );
  }
  if (config.apiKeys?.length) app.use('/predict', apiKey(config.apiKeys));
  if (limits) app.use('/predict', rateLimit({ ...limits, logger }));

  app.get('/', (c) =>
    c.json({
      service: 'image classification (Keras ResNet50, ImageNet)',
      endpoints: {
        'POST /predict': 'multipart field "image" (or a raw image/* body); ?top=1..20, ?resize=squash|center-crop',
        'GET /healthz': 'liveness',
      },
    }),
  );
  app.get('/healthz', (c) => c.json({ ok: true }));

  app.post('/predict', async (c) => {
    const started = Date.now();
    const id = c.get('requestId');

    const query = PredictQuery.safeParse(c.req.query());
    if (!query.success) {
      const issue = query.error.issues[0]!;
      throw new ApiError(400, 'invalid_parameter', `${issue.path.join('.')}: ${issue.message}`);
    }
    const bytes = await readUpload(c, config.MAX_BODY_BYTES);
    const info = probeImage(bytes, config.MAX_PIXELS);
    const tensor = await codec.toTensor(bytes, info, query.data.resize ?? config.DEFAULT_RESIZE);
    const preprocessMs = Date.now() - started;

    const result = await broker.submit({ id, tensor, deadline: started + config.DEADLINE_MS }, c.req.raw.signal);
    if (!result.ok) {
      throw new ApiError(result.error.code === 'bad_request' ? 400 : 500, result.error.code, result.error.message);
    }
    const totalMs = Date.now() - started;
    logger?.info({ id, format: info.format, width: info.width, height: info.height, totalMs, worker: result.worker }, 'predicted');
    return c.json({
      success: true as const,
      id,
      model: result.model,
      predictions: result.predictions.slice(0, query.data.top),
      timings: { preprocessMs, queueMs: result.queueMs, inferenceMs: result.inferenceMs, totalMs },
      batchSize: result.batchSize,
      worker: result.worker,
    });
  });
  app.all('/predict', (c) => {
    c.header('Allow', 'POST');
    return c.json(errorBody('method_not_allowed', `${c.req.method} is not allowed on /predict; use POST`), 405);
  });

  app.notFound((c) => c.json(errorBody('not_found', `No route for ${c.req.method} ${c.req.path.slice(0, 100)}`), 404));
  app.onError((error, c) => {
    if (error instanceof ApiError) {
      for (const [name, value] of Object.entries(error.headers)) c.header(name, value);
      if (error.status >= 500) logger?.warn({ code: error.code, msg: error.message }, 'request failed');
      return c.json(errorBody(error.code, error.message), error.status);
    }
    // Middleware such as bearerAuth throw a ready response (already in our JSON shape).
    if (error instanceof HTTPException) {
      const response = error.getResponse();
      response.headers.set('x-request-id', c.get('requestId'));
      return response;
    }
    logger?.error({ err: error }, 'unhandled error');
    return c.json(errorBody('internal_error', 'Internal error'), 500);
  });
  return app;
}

/** The uploaded image's bytes: one multipart `image` file, or a raw image/* body. */
async function readUpload(c: Context, maxBytes: number): Promise<Uint8Array> {
  const contentType = (c.req.header('content-type') ?? '').toLowerCase();
  const isMultipart = contentType.startsWith('multipart/form-data');
  const limit = maxBytes + (isMultipart ? MULTIPART_OVERHEAD : 0);
  const tooLarge = () => new ApiError(413, 'payload_too_large', `The upload is over the ${maxBytes}-byte limit`);

  const declared = Number(c.req.header('content-length'));
  if (Number.isFinite(declared) && declared > limit) throw tooLarge();
  const body = await readBodyLimited(c.req.raw, limit, tooLarge);

  if (isMultipart) {
    let form: FormData;
    try {
      form = await new Response(body, { headers: { 'content-type': contentType } }).formData();
    } catch {
      throw new ApiError(400, 'bad_request', 'Malformed multipart/form-data body');
    }
    const files = form.getAll('image');
    if (files.length === 0) throw new ApiError(400, 'missing_image', 'Missing the multipart file field "image"');
    if (files.length > 1) throw new ApiError(400, 'too_many_files', 'Send exactly one "image" file per request');
    const file = files[0]!;
    if (typeof file === 'string') throw new ApiError(400, 'missing_image', 'The field "image" must be a file, not text');
    if (file.size === 0) throw new ApiError(400, 'empty_body', 'The uploaded image is empty');
    if (file.size > maxBytes) throw tooLarge();
    return new Uint8Array(await file.arrayBuffer());
  }
  if (contentType.startsWith('image/') || contentType.startsWith('application/octet-stream')) {
    if (body.byteLength === 0) throw new ApiError(400, 'empty_body', 'The request body is empty');
    return body;
  }
  if (body.byteLength === 0) {
    throw new ApiError(400, 'missing_image', 'No image: send multipart/form-data with an "image" file, or a raw image/* body');
  }
  throw new ApiError(
    415,
    'unsupported_media_type',
    `Unsupported Content-Type "${contentType || 'none'}": send multipart/form-data with an "image" file, or a raw image/* body`,
  );
}

/** Read the body, counting bytes as they stream so an undeclared (chunked) oversize body stops early. */
async function readBodyLimited(request: Request, limit: number, tooLarge: () => ApiError): Promise<Uint8Array<ArrayBuffer>> {
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw tooLarge();
    }
    chunks.push(value);
  }
  const body = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return body;
}

