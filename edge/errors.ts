/**
 * API errors: every failure the edge answers is `{"success": false, "error": {"code", "message"}}`
 * with an HTTP status that fits. Throw an ApiError anywhere in a request; the app's error handler
 * turns it into that response.
 *
 * @example
 * throw new ApiError(415, 'unsupported_media_type', 'Expected a JPEG, PNG, WebP or GIF image');
 */
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { ErrorCode } from '../shared/protocol.ts';

export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: ErrorCode,
    message: string,
    readonly headers: Record<string, string> = {},
    /** What went wrong underneath (a Redis error, say): logged with its stack, never sent to the client. */
    cause?: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
  }
}

export interface ErrorBody {
  success: false;
  error: { code: ErrorCode; message: string };
}

/** 503 `queue_full`: the backlog is at QUEUE_MAX, or the live workers could not answer in time (broker/admission.ts). */
export const queueFull = (message: string, retryAfterSeconds: number) =>
  new ApiError(503, 'queue_full', message, { 'Retry-After': String(retryAfterSeconds) });

/** 504 `deadline_exceeded`: no result before the request's deadline. */
export const deadlineExceeded = (deadlineMs: number) =>
  new ApiError(504, 'deadline_exceeded', `No result within the ${deadlineMs} ms deadline`);

/** 503 `broker_unavailable`: the queue cannot be reached; `error` says why (logged as the cause, in the message too). */
export const brokerUnavailable = (error: unknown, retryAfterSeconds: number) =>
  new ApiError(
    503,
    'broker_unavailable',
    `The queue is unavailable: ${(error as Error)?.message ?? String(error)}`,
    { 'Retry-After': String(retryAfterSeconds) },
    error,
  );

export function errorBody(code: ErrorCode, message: string): ErrorBody {
  return { success: false, error: { code, message } };
}
