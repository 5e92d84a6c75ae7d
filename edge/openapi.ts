/**
 * The edge's API as an OpenAPI 3 document (`GET /openapi.json`), generated from zod schemas with
 * @hono/zod-openapi: the query schema here is the one `POST /predict` validates with, and the
 * response schemas are the ones test/openapi.test.ts checks real answers against, so the document
 * cannot drift from what the app does (that test also checks every route of the app is in it).
 *
 * @example
 * const app = new OpenAPIHono();
 * // ...routes...
 * documentApi(app); // serves GET /openapi.json
 */
import { z, type OpenAPIHono } from '@hono/zod-openapi';
import { RESIZE_MODES } from './image/codec.ts';
import { DEFAULT_TOP_K, ErrorCode, MAX_TOP_K } from '../shared/protocol.ts';
import { CHANNELS, IMAGE_SIZE } from '../shared/tensor.ts';

const topError = `top must be an integer from 1 to ${MAX_TOP_K}`;

/** `POST /predict`'s query; the route validates with it (400 invalid_parameter otherwise). */
export const PredictQuery = z.object({
  // Digits only: Number() would also take '1e1' or '0x10'.
  top: z
    .string()
    .regex(/^\d{1,2}$/, { error: topError })
    .transform(Number)
    .pipe(z.number().min(1, { error: topError }).max(MAX_TOP_K, { error: topError }))
    .default(DEFAULT_TOP_K)
    .openapi({
      param: { name: 'top', in: 'query' },
      description: `How many predictions`,
      type: 'integer',
      minimum: 1,
      maximum: MAX_TOP_K,
      default: DEFAULT_TOP_K,
      example: 3,
    }),
  resize: z
    .enum(RESIZE_MODES)
    .optional()
    .openapi({
      param: { name: 'resize', in: 'query' },
      description:
        '`squash` (default): the whole image to 224x224, nearest neighbour, like Keras `load_img`. `center-crop`: short side to 224 (antialiased), centre crop.',
    }),
});

export const ErrorBody = z
  .object({
    success: z.literal(false),
    error: z.object({ code: ErrorCode, message: z.string() }),
  })
  .openapi('Error', {
    example: { success: false, error: { code: 'unsupported_media_type', message: 'Not a JPEG, PNG, WebP or GIF image' } },
  });

const Prediction = z.object({ label: z.string(), probability: z.number().min(0).max(1) }).openapi('Prediction');

export const PredictionResult = z
  .object({
    success: z.literal(true),
    /** The job id: the request id, `-<n>` appended for the n-th image of a batch. */
    id: z.string().openapi({ description: 'Job id: the request id (x-request-id), with `-<n>` for the n-th image of a batch request' }),
    model: z.string(),
    predictions: z.array(Prediction),
    timings: z
      .object({
        preprocessMs: z.number().openapi({ description: 'edge decode + resize' }),
        queueMs: z.number().openapi({ description: 'enqueue to pickup by a worker' }),
        inferenceMs: z.number().openapi({ description: "the batch's inference on the worker" }),
        totalMs: z.number().openapi({ description: 'the whole request on the edge' }),
      })
      .openapi('Timings'),
    batchSize: z.number().int().positive().openapi({ description: 'size of the batch this image was computed in' }),
    worker: z.string().openapi({ description: 'the worker (consumer name) that answered' }),
  })
  .openapi('PredictionResult', {
    example: {
      success: true,
      id: '0b6f3a4e-2c1d-4c55-9d1e-7a0d3f2b9c10',
      model: 'keras-resnet50-imagenet',
      predictions: [
        { label: 'beagle', probability: 0.9878 },
        { label: 'Walker_hound', probability: 0.0031 },
      ],
      timings: { preprocessMs: 9, queueMs: 2, inferenceMs: 410, totalMs: 425 },
      batchSize: 1,
      worker: 'gpu-box-1-4242',
    },
  });

export const BatchResult = z
  .object({
    success: z.literal(true),
    id: z.string(),
    results: z
      .array(z.union([PredictionResult, ErrorBody]))
      .openapi({ description: 'One entry per "image" file, in request order; each succeeds or fails on its own' }),
  })
  .openapi('BatchResult');

export const Health = z.object({ ok: z.literal(true) }).openapi('Health');

const ReadinessDetail = {
  redis: z.object({ ok: z.boolean(), latencyMs: z.number() }),
  workers: z.number().int().nonnegative().openapi({ description: 'live workers (heartbeat within READY_WORKER_MAX_AGE_MS)' }),
  backlog: z.number().int().nonnegative().openapi({ description: 'jobs in the stream (waiting + in flight)' }),
};
export const Ready = z.object({ ok: z.literal(true), ...ReadinessDetail }).openapi('Ready');
export const NotReady = ErrorBody.extend(ReadinessDetail).openapi('NotReady');

export const Models = z
  .object({
    success: z.literal(true),
    models: z.array(
      z.object({
        name: z.string(),
        input: z.object({
          width: z.literal(IMAGE_SIZE),
          height: z.literal(IMAGE_SIZE),
          channels: z.literal(CHANNELS),
          dtype: z.literal('uint8'),
        }),
        labels: z.number().int().nonnegative().openapi({ description: 'number of classes' }),
        workers: z.array(
          z.object({
            id: z.string(),
            engine: z
              .string()
              .openapi({ description: 'what computes: onnx (ONNX Runtime), tfjs (TensorFlow.js), or synthetic (benchmarks)' }),
            provider: z.string().openapi({
              description: "ONNX Runtime's execution provider (tensorrt, cuda, cpu) or the tfjs backend (tensorflow, wasm, cpu)",
            }),
            threads: z.number().int().nonnegative().optional().openapi({ description: 'CPU threads one inference uses' }),
            batchSize: z.number().int().positive(),
            startedAt: z.number(),
            lastSeenMsAgo: z.number(),
          }),
        ),
      }),
    ),
  })
  .openapi('Models');

export const ServiceInfo = z.object({ service: z.string(), endpoints: z.record(z.string(), z.string()) }).openapi('ServiceInfo');

const json = <T extends z.ZodType>(schema: T, description: string) => ({ description, content: { 'application/json': { schema } } });
const errors = (description: string, codes: ErrorCode[]) =>
  json(ErrorBody, `${description} (error codes: ${codes.map((code) => `\`${code}\``).join(', ')})`);

/** Register every route of the app and serve the document at `GET /openapi.json`. */
// biome-ignore lint/suspicious/noExplicitAny: any app's Env
export function documentApi(app: OpenAPIHono<any>): void {
  const registry = app.openAPIRegistry;
  registry.registerComponent('securitySchemes', 'apiKey', {
    type: 'http',
    scheme: 'bearer',
    description: 'Only when the edge is configured with API_KEYS; otherwise /predict is open.',
  });

  registry.registerPath({
    method: 'post',
    path: '/predict',
    summary: 'Classify one image (or several: a batch request)',
    description:
      'Send the image as the multipart file field `image` (several `image` fields, up to MAX_IMAGES_PER_REQUEST, make a batch request answered with `results` in order), or as a raw `image/*` body. JPEG, PNG, WebP and GIF, recognised by their bytes.',
    security: [{ apiKey: [] }, {}],
    request: {
      query: PredictQuery,
      body: {
        required: true,
        content: {
          'multipart/form-data': {
            schema: z.object({
              image: z
                .union([z.string().openapi({ format: 'binary' }), z.array(z.string().openapi({ format: 'binary' }))])
                .openapi({ description: 'the image file; repeat the field for a batch request' }),
            }),
          },
          'image/*': { schema: z.string().openapi({ format: 'binary' }) },
        },
      },
    },
    responses: {
      200: {
        description: 'The top predictions (one image), or `results` in request order (batch request)',
        content: { 'application/json': { schema: z.union([PredictionResult, BatchResult]) } },
      },
      400: errors('Bad request', ['missing_image', 'too_many_files', 'empty_body', 'bad_request', 'invalid_parameter', 'corrupt_image']),
      401: errors('API keys are configured and the key is missing or wrong', ['unauthorized']),
      413: errors('Body over MAX_BODY_BYTES, or an image over MAX_PIXELS (read from its header)', ['payload_too_large', 'image_too_large']),
      415: errors('Not a JPEG, PNG, WebP or GIF, or neither multipart nor image/*', ['unsupported_media_type']),
      429: errors('Over RATE_LIMIT; see Retry-After', ['rate_limited']),
      500: errors('The worker could not run the model on this image', ['inference_failed', 'internal_error']),
      503: errors('The queue is full (or the workers could not answer before the deadline) or unreachable; see Retry-After', [
        'queue_full',
        'broker_unavailable',
      ]),
      504: errors('No result within DEADLINE_MS', ['deadline_exceeded']),
    },
  });
  registry.registerPath({
    method: 'get',
    path: '/',
    summary: "The demo page (Accept: text/html), or this service's endpoints as JSON",
    responses: {
      200: {
        description: 'HTML for browsers, JSON otherwise (Vary: Accept)',
        content: { 'text/html': { schema: z.string() }, 'application/json': { schema: ServiceInfo } },
      },
    },
  });
  registry.registerPath({
    method: 'get',
    path: '/healthz',
    summary: 'Liveness',
    responses: { 200: json(Health, 'The edge process answers') },
  });
  registry.registerPath({
    method: 'get',
    path: '/readyz',
    summary: 'Readiness: Redis answers and at least one worker sent a heartbeat recently',
    responses: { 200: json(Ready, 'Ready'), 503: json(NotReady, 'Not ready (`not_ready`); `error.message` says why') },
  });
  registry.registerPath({
    method: 'get',
    path: '/v1/models',
    summary: 'The model served, its input and label count, and the live workers',
    responses: { 200: json(Models, 'Models served by live workers'), 503: errors('Redis unreachable', ['broker_unavailable']) },
  });
  registry.registerPath({
    method: 'get',
    path: '/openapi.json',
    summary: 'This document',
    responses: { 200: { description: 'OpenAPI 3 document', content: { 'application/json': { schema: z.object({}).passthrough() } } } },
  });

  app.doc('/openapi.json', {
    openapi: '3.0.3',
    info: {
      title: 'resnet-edge',
      version: '0.1.0',
      description: 'Image classification (Keras ResNet50, ImageNet) behind a Hono edge and a Redis queue of GPU workers.',
    },
  });
}
