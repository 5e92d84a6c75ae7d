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

export function errorBody(code: ErrorCode, message: string): ErrorBody {
  return { success: false, error: { code, message } };
}
