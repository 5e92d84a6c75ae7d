/**
 * One structured log line per request: request id, method, path, status, time. Never the body,
 * never headers (they carry API keys).
 *
 * @example
 * app.use(requestId(), accessLog(logger));
 */
import type { MiddlewareHandler } from 'hono';
import type { Logger } from '../../../shared/log.ts';

export function accessLog(logger: Logger): MiddlewareHandler {
  return async (c, next) => {
    const started = Date.now();
    await next();
    const status = c.res.status;
    const line = {
      id: c.get('requestId' as never) as string | undefined,
      method: c.req.method,
      path: c.req.path,
      status,
      ms: Date.now() - started,
    };
    if (status >= 500) logger.warn(line, 'request');
    else logger.info(line, 'request');
  };
}
