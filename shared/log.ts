/**
 * Structured JSON logs (pino) for every tier. Never log image bytes, tensors or secrets.
 *
 * @example
 * const log = createLogger('gpu-worker');
 * log.info({ backend: 'wasm' }, 'backend selected');
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(name: string, level: string = globalThis.process?.env?.LOG_LEVEL ?? 'info'): Logger {
  return pino({
    name,
    level,
    // Defence in depth: these fields must never reach a log line.
    redact: { paths: ['token', 'authorization', '*.authorization', 'headers.authorization', 'tensor', '*.tensor'], censor: '[redacted]' },
  });
}
