/**
 * The queue protocol between the edge and the workers.
 *
 * A job is one Redis Stream entry with the fields of {@link JobFields}. The edge enqueues it with
 * `lua/enqueue-1.lua` (bounded: never trims), a worker reads it with XREADGROUP, and finishes a
 * whole batch with `lua/complete-n.lua`: per job, result key (first answer wins), publish on the
 * job's reply channel, ack, delete.
 */
import { z } from 'zod';
import { z85Encode } from './z85.ts';

/**
 * How the tensor field is encoded: raw bytes over TCP; Z85 (shared/z85.ts, 1.25x the bytes, JSON-safe)
 * over a text transport (REST/JSON). Workers still accept base64 ('b64', 1.33x), which edges wrote
 * before Z85, so jobs queued by an older edge during an upgrade are answered.
 */
export const TensorEncoding = z.enum(['raw', 'z85', 'b64']);
export type TensorEncoding = z.infer<typeof TensorEncoding>;

/** Stream entry fields, in the order they are written. All values travel as strings (or raw bytes). */
export const JOB_FIELDS = ['id', 'enc', 'tensor', 'enqueuedAt', 'deadline', 'reply'] as const;
export interface JobFields {
  /** Request id (UUID); names the result key. */
  id: string;
  enc: TensorEncoding;
  /** TENSOR_BYTES of uint8 HWC RGB, raw, Z85 or base64 per `enc`. */
  tensor: string | Uint8Array;
  /** Epoch ms when the edge enqueued the job. */
  enqueuedAt: number;
  /** Epoch ms after which nobody waits for the answer: a worker skips the job. */
  deadline: number;
  /** Pub/sub channel to publish the result on. */
  reply: string;
  /** What `tensor` holds (WIRE_FORMATS); written after the others, and only when not `raw`. */
  format?: WireFormat;
  /** W3C Trace Context of the edge's enqueue span (shared/tracing); written last, only when tracing is on. */
  traceparent?: string;
}

/** Flatten job fields to the field/value list that XADD (and enqueue-1.lua's ARGV) take. */
export function jobToFieldList(job: JobFields): (string | Uint8Array)[] {
  return JOB_FIELDS.flatMap((name) => {
    const value = job[name];
    return [name, typeof value === 'number' ? String(value) : value];
  });
}

/**
 * What a job's `tensor` field holds (WIRE_FORMAT): `raw`, the 224x224 RGB pixels (TENSOR_BYTES);
 * `jpeg` (quality 95, no chroma subsampling) or `webp` (lossless), the same pixels as a 224x224
 * image file, which the worker decodes (docs/performance.md, "Wire format", has the bytes and the
 * accuracy of each). A job without a `format` field is `raw`.
 */
export const WIRE_FORMATS = ['raw', 'jpeg', 'webp'] as const;
export type WireFormat = (typeof WIRE_FORMATS)[number];

type NewJob = { id: string; tensor: Uint8Array; deadline: number; format?: WireFormat; traceparent?: string };

/**
 * The fields an edge enqueues for `job`, enqueued now: the tensor (or the image file of its
 * `format`) as raw bytes (a binary transport: TCP) or as Z85 text (JSON carries text only; Z85 has
 * no character JSON must escape). An image file is zero-padded to a multiple of 4 bytes for Z85:
 * JPEG and WebP decoders stop at their own end marker.
 */
export function newJobFields(job: NewJob, enc: 'z85', reply: string): string[];
export function newJobFields(job: NewJob, enc: 'raw', reply: string): (string | Uint8Array)[];
export function newJobFields(job: NewJob, enc: 'raw' | 'z85', reply: string): (string | Uint8Array)[] {
  const format = job.format ?? 'raw';
  const bytes = enc === 'z85' && job.tensor.length % 4 !== 0 ? padded(job.tensor) : job.tensor;
  const fields = jobToFieldList({
    id: job.id,
    enc,
    tensor: enc === 'z85' ? z85Encode(bytes) : bytes,
    enqueuedAt: Date.now(),
    deadline: job.deadline,
    reply,
  });
  if (format !== 'raw') fields.push('format', format);
  if (job.traceparent) fields.push('traceparent', job.traceparent);
  return fields;
}

function padded(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(bytes.length / 4) * 4);
  out.set(bytes);
  return out;
}

/** Most labels a worker returns; the edge slices to the requested `top`. */
export const MAX_TOP_K = 20;
export const DEFAULT_TOP_K = 5;

export const Prediction = z.object({ label: z.string(), probability: z.number() });
export type Prediction = z.infer<typeof Prediction>;

export const ErrorCode = z.enum([
  'bad_request',
  'missing_image',
  'too_many_files',
  'empty_body',
  'unsupported_media_type',
  'payload_too_large',
  'image_too_large',
  'corrupt_image',
  'invalid_parameter',
  'queue_full',
  'deadline_exceeded',
  'broker_unavailable',
  'inference_failed',
  'not_found',
  'method_not_allowed',
  'unauthorized',
  'rate_limited',
  'not_ready',
  'internal_error',
]);
export type ErrorCode = z.infer<typeof ErrorCode>;

/** What a worker writes to the result key and publishes. */
export const JobResult = z.discriminatedUnion('ok', [
  z.object({
    ok: z.literal(true),
    id: z.string(),
    model: z.string(),
    predictions: z.array(Prediction),
    /** ms from enqueue to the worker picking the job up, and for the batch's inference. */
    queueMs: z.number(),
    inferenceMs: z.number(),
    batchSize: z.number().int(),
    worker: z.string(),
  }),
  z.object({
    ok: z.literal(false),
    id: z.string(),
    error: z.object({ code: ErrorCode, message: z.string() }),
    worker: z.string(),
  }),
]);
export type JobResult = z.infer<typeof JobResult>;

/**
 * What each worker process writes to the heartbeat hash (keys.workers, field = its consumer name)
 * every HEARTBEAT_MS, once it is ready to serve; removed when it stops. Times are the worker's
 * epoch ms, so readers assume clocks roughly in sync (seconds, not minutes).
 */
/** Heartbeats come from Redis, where anything may write: bounded strings and plausible numbers only. */
const name = z.string().min(1).max(256);
const label = z.string().max(256);
const epochMs = z.number().finite().nonnegative();

export const WorkerHeartbeat = z.object({
  /** Consumer name: the `worker` field of the results it writes. */
  id: name,
  /** What computes: 'onnx', 'tfjs' or 'synthetic' (workers from before ENGINE existed wrote none: tfjs). */
  engine: label.default('tfjs'),
  /** ONNX Runtime's execution provider ('tensorrt', 'cuda', 'cpu'), tfjs' backend, or 'none'. */
  provider: label.optional(),
  /** CPU threads one inference uses (0: none). */
  threads: z.number().int().min(0).max(100_000).optional(),
  /**
   * The provider under its old name: edges from before `engine` existed require it, so workers
   * keep writing it during upgrades. Readers use `provider ?? backend`.
   */
  backend: label,
  model: label,
  /** Classes the model tells apart (1000 for ImageNet). */
  labels: z.number().int().min(0).max(10_000_000),
  batchSize: z.number().int().positive().max(100_000),
  pid: z.number().int(),
  host: label,
  startedAt: epochMs,
  lastSeen: epochMs,
  /** lastSeen + a few heartbeat intervals (or batches): past it the entry is stale and anyone may prune it. */
  expiresAt: epochMs,
  /**
   * Images a second this worker answers when it is busy (full batches, recent ones; the warm-up's
   * before any). Absent until known; the edge's admission estimate sums it over live workers.
   */
  imagesPerSec: z.number().positive().max(10_000_000).optional().catch(undefined),
  /** Mean time of its recent batches, ms (inference and writing the answers). */
  batchMs: z.number().nonnegative().max(3_600_000).optional().catch(undefined),
});
export type WorkerHeartbeat = z.infer<typeof WorkerHeartbeat>;

/** A real heartbeat is a few hundred characters; anything much longer is not one. */
const MAX_HEARTBEAT_CHARS = 16_384;

/**
 * The well-formed heartbeats of a heartbeat hash (HGETALL's reply: JSON strings, or objects
 * already parsed by @upstash/redis), newest first, stale ones included (see isLiveWorker).
 * Malformed entries are skipped, not thrown on.
 */
export function parseHeartbeats(hash: Record<string, unknown> | null | undefined): WorkerHeartbeat[] {
  const beats: WorkerHeartbeat[] = [];
  for (const value of Object.values(hash ?? {})) {
    let data = value;
    if (typeof value === 'string') {
      if (value.length > MAX_HEARTBEAT_CHARS) continue;
      try {
        data = JSON.parse(value);
      } catch {
        continue;
      }
    }
    const parsed = WorkerHeartbeat.safeParse(data);
    if (parsed.success) beats.push(parsed.data);
  }
  return beats.sort((a, b) => b.lastSeen - a.lastSeen);
}

/** Seen within `maxAgeMs` and not past its own expiresAt: a worker that died without removing its entry is not. */
export const isLiveWorker = (beat: WorkerHeartbeat, now: number, maxAgeMs = Infinity): boolean =>
  beat.expiresAt > now && now - beat.lastSeen <= maxAgeMs;
