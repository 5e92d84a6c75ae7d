/**
 * Structured JSON logs (pino) for every tier. Never log image bytes, tensors or secrets.
 *
 * @example
 * const log = createLogger('gpu-worker');
 * log.info({ engine: 'onnx' }, 'engine selected');
 */
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/** `destination`: where the lines go (default stdout). */
export function createLogger(
  name: string,
  level: string = globalThis.process?.env?.LOG_LEVEL ?? 'info',
  destination?: DestinationStream,
): Logger {
  const options = {
    name,
    level,
    // Defence in depth: these fields must never reach a log line.
    // ioredis puts the failed command on its errors: for AUTH and HELLO that is the password.
    redact: {
      paths: ['token', 'authorization', '*.authorization', 'headers.authorization', 'tensor', '*.tensor', 'err.command.args'],
      censor: '[redacted]',
    },
  };
  return destination ? pino(options, destination) : pino(options);
}
