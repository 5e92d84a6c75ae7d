/**
 * The edge's one Hono app. Runtime-specific parts (image codec, broker, logger) are injected, so
 * the Node entry (`node/`) and the Workers entry share routes, validation, limits and errors.
 *
 * @example
 * const app = createApp({ codec: createSharpCodec(limits), broker, config: parseEdgeConfig(process.env) });
 * serve({ fetch: app.fetch, port: 8787 });
 */
import { OpenAPIHono, type z } from '@hono/zod-openapi';
import { cors } from 'hono/cors';
import { HTTPException } from 'hono/http-exception';
import { requestId, type RequestIdVariables } from 'hono/request-id';
import type { Broker } from './broker/broker.ts';
import type { EdgeConfig } from './config.ts';
import { withDemoPage } from './demo/index.ts';
import { ApiError, errorBody, type ErrorBody } from './errors.ts';
import { EDGE_PROBES, healthRoutes } from './health.ts';
import { type RequestOutcome, requestMetrics } from './middleware/request-metrics/index.ts';
import type { ImageCodec, ResizeMode } from './image/codec.ts';
import { probeImage, type ImageInfo } from './image/probe.ts';
import { readImages } from './upload.ts';
import { documentApi, type PredictionResult, PredictQuery } from './openapi.ts';
import { accessLog } from './middleware/access-log/index.ts';
import { apiKey } from './middleware/api-key/index.ts';
import { rateLimit, type RateLimitOptions } from './middleware/rate-limit/index.ts';
import { jobTrace } from './job-trace.ts';
import { traceRequests, type TraceVariables } from './middleware/tracing/index.ts';
import type { Logger } from '../shared/log.ts';
import type { WireFormat } from '../shared/protocol.ts';
import { inSpan, type Tracing } from '../shared/tracing/index.ts';
import type { Context as TraceContext } from '@opentelemetry/api';

export interface AppDeps {
  codec: ImageCodec;
  broker: Broker;
  config: Pick<
    EdgeConfig,
    | 'MAX_BODY_BYTES'
    | 'MAX_PIXELS'
    | 'DEADLINE_MS'
    | 'DEFAULT_RESIZE'
    | 'MAX_IMAGES_PER_REQUEST'
    | 'READY_WORKER_MAX_AGE_MS'
    | 'RETRY_AFTER_S'
  > &
    Partial<Pick<EdgeConfig, 'WIRE_FORMAT'>> &
    Partial<Pick<EdgeConfig, 'apiKeys' | 'corsOrigins'>>;
  logger?: Logger;
  /** Per-caller rate limit (RATE_LIMIT); the runtime adapter builds it and knows client addresses. */
  rateLimit?: Pick<RateLimitOptions, 'limiter' | 'clientAddress'>;
  /** Where a request comes from, for a sharded broker's nearest shards (Workers: its `cf.continent`). */
  regionOf?: (request: Request) => string | undefined;
  /** Each request's outcome, for the runtime's metrics (the Node edge's: node/metrics.ts). */
  observe?: (outcome: RequestOutcome) => void;
  /** Traces (shared/tracing): set only when OTEL_EXPORTER_OTLP_ENDPOINT is; else no span is made. */
  tracing?: Tracing;
}

interface Decoded {
  /** The tensor, or (`format` not raw) it as an image file. */
  tensor: Uint8Array;
  format: WireFormat;
  info: ImageInfo;
  preprocessMs: number;
}

interface PredictJob {
  /** Epoch ms the request started: timings and the deadline count from here. */
  started: number;
  /** Images in the request (each a job). */
  jobs: number;
  top: number;
  signal: AbortSignal;
  /** The request's region (AppDeps.regionOf). */
  region?: string;
  /** The request's span (tracing on). */
  trace?: TraceContext;
}

/** One image's answer (the whole body of a one-image request), as documented in openapi.ts. */
type PredictionBody = z.infer<typeof PredictionResult>;

export function createApp({ codec, broker, config, logger, rateLimit: limits, regionOf, observe, tracing }: AppDeps) {
  const app = new OpenAPIHono<{ Variables: RequestIdVariables & TraceVariables }>();

  // limitLength 0 ignores any id a client sends: the id also names the job's Redis keys, so it is ours.
  app.use(requestId({ limitLength: 0 }));
  if (observe) app.use(requestMetrics(observe));
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
  // After the key and rate checks: a refused caller costs no trace (metrics and logs count it).
  if (tracing) app.use('/predict', traceRequests(tracing));

  // The demo page for browsers (Accept: text/html), this JSON for other clients.
  app.get(
    '/',
    withDemoPage((c) =>
      c.json({
        service: 'image classification (Keras ResNet50, ImageNet)',
        endpoints: {
          'POST /predict':
            'multipart field "image" (or a raw image/* body; several "image" fields: a batch); ?top=1..20, ?resize=squash|center-crop',
          'GET /healthz': 'liveness',
          'GET /readyz': 'readiness: Redis answers and a worker is alive',
          'GET /v1/models': 'the model served, its input and the live workers',
          'GET /openapi.json': 'this API as an OpenAPI 3 document',
        },
      }),
    ),
  );
  app.get(EDGE_PROBES.live, (c) => c.json({ ok: true }));
  app.route('/', healthRoutes(broker, { readyWorkerMaxAgeMs: config.READY_WORKER_MAX_AGE_MS, retryAfterSeconds: config.RETRY_AFTER_S }));

  /**
   * Probe and decode one image to the wire tensor; throws ApiError (4xx) for a bad image.
   * `since`: when its preprocessing started (a one-image request counts reading the upload too).
   */
  function decode(bytes: Uint8Array, resize: ResizeMode, trace: TraceContext | undefined, since = Date.now()): Promise<Decoded> {
    return inSpan(tracing, trace, 'decode', async (span) => {
      if (bytes.byteLength === 0) throw new ApiError(400, 'empty_body', 'The uploaded image is empty');
      const info = probeImage(bytes, config.MAX_PIXELS);
      span?.setAttributes({ 'image.format': info.format, 'image.width': info.width, 'image.height': info.height });
      const tensor = await codec.toTensor(bytes, info, resize);
      // A smaller job (WIRE_FORMAT): the same pixels as a 224x224 image file, decoded on the worker.
      const format = config.WIRE_FORMAT ?? 'raw';
      if (format === 'raw' || !codec.toWire) return { tensor, format: 'raw', info, preprocessMs: Date.now() - since };
      return { tensor: await codec.toWire(tensor, format), format, info, preprocessMs: Date.now() - since };
    });
  }

  /** Queue one decoded image as job `jobId` and wait for its answer. */
  async function answer(decoded: Decoded, jobId: string, job: PredictJob): Promise<PredictionBody> {
    const spans = jobTrace(tracing, job.trace, jobId, decoded.tensor.byteLength);
    const submitted = broker.submit(
      {
        id: jobId,
        tensor: decoded.tensor,
        format: decoded.format,
        deadline: job.started + config.DEADLINE_MS,
        share: job.jobs,
        region: job.region,
        traceparent: spans?.traceparent,
        onEnqueued: spans?.enqueued,
      },
      job.signal,
    );
    const result = await (spans ? submitted.catch(spans.failed) : submitted);
    spans?.answered(result);
    if (!result.ok) {
      throw new ApiError(result.error.code === 'bad_request' ? 400 : 500, result.error.code, result.error.message);
    }
    const totalMs = Date.now() - job.started;
    const { format, width, height } = decoded.info;
    // The job's size on the queue (WIRE_FORMAT), what a broker's bandwidth bills.
    logger?.info(
      {
        id: jobId,
        format,
        width,
        height,
        wireFormat: decoded.format,
        wireBytes: decoded.tensor.byteLength,
        totalMs,
        worker: result.worker,
      },
      'predicted',
    );
    return {
      success: true,
      id: jobId,
      model: result.model,
      predictions: result.predictions.slice(0, job.top),
      timings: { preprocessMs: decoded.preprocessMs, queueMs: result.queueMs, inferenceMs: result.inferenceMs, totalMs },
      batchSize: result.batchSize,
      worker: result.worker,
    };
  }

  /** One image's failure inside a batch answer, in the API's error shape. */
  function entryError(error: unknown): ErrorBody {
    if (error instanceof ApiError) return errorBody(error.code, error.message);
    logger?.error({ err: error }, 'unhandled error in a batch entry');
    return errorBody('internal_error', 'Internal error');
  }

  app.post('/predict', async (c) => {
    const id = c.get('requestId');
    const query = PredictQuery.safeParse(c.req.query());
    if (!query.success) {
      const issue = query.error.issues[0]!;
      throw new ApiError(400, 'invalid_parameter', `${issue.path.join('.')}: ${issue.message}`);
    }
    const started = Date.now();
    const resize = query.data.resize ?? config.DEFAULT_RESIZE;
    const trace = c.get('trace');
    const images = await inSpan(tracing, trace, 'receive', () =>
      readImages(c.req.raw, { maxBytes: config.MAX_BODY_BYTES, maxImages: config.MAX_IMAGES_PER_REQUEST }),
    );
    const job: PredictJob = {
      started,
      jobs: images.length,
      top: query.data.top,
      signal: c.req.raw.signal,
      region: regionOf?.(c.req.raw),
      trace,
    };
    // Refused here, before the decode, when the workers cannot answer in time anyway.
    const release = broker.admit(job.started + config.DEADLINE_MS, images.length);
    try {
      if (images.length === 1) return c.json(await answer(await decode(images[0]!, resize, trace, job.started), id, job));

      // A batch: each image is its own job (workers may still run them in one batch), decoded one at
      // a time (a Worker isolate has 128 MB) and queued at once; each may fail on its own.
      const answers: Promise<PredictionBody | ErrorBody>[] = [];
      for (const [i, bytes] of images.entries()) {
        try {
          const decoded = await decode(bytes, resize, trace);
          answers.push(answer(decoded, `${id}-${i + 1}`, job).catch(entryError));
        } catch (error) {
          answers.push(Promise.resolve(entryError(error)));
        }
      }
      return c.json({ success: true as const, id, results: await Promise.all(answers) });
    } finally {
      release();
    }
  });
  app.all('/predict', (c) => {
    c.header('Allow', 'POST');
    return c.json(errorBody('method_not_allowed', `${c.req.method} is not allowed on /predict; use POST`), 405);
  });

  documentApi(app);

  app.notFound((c) => c.json(errorBody('not_found', `No route for ${c.req.method} ${c.req.path.slice(0, 100)}`), 404));
  app.onError((error, c) => {
    if (error instanceof ApiError) {
      for (const [name, value] of Object.entries(error.headers)) c.header(name, value);
      if (error.status >= 500) logger?.warn({ id: c.get('requestId'), code: error.code, err: error }, 'request failed');
      return c.json(errorBody(error.code, error.message), error.status);
    }
    // Middleware such as bearerAuth throw a ready response (already in our JSON shape).
    if (error instanceof HTTPException) {
      const response = error.getResponse();
      response.headers.set('x-request-id', c.get('requestId'));
      return response;
    }
    logger?.error({ id: c.get('requestId'), err: error }, 'unhandled error');
    return c.json(errorBody('internal_error', 'Internal error'), 500);
  });
  return app;
}
