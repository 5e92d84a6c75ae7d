/**
 * Bytes stored per queued job, measured on what the edge really enqueues: a pipeline with no
 * worker, one upload with a short deadline (the edge answers 504), then the job is still in the
 * stream to be weighed: the sum of its field names and values (the payload) and `MEMORY USAGE`
 * of the stream holding only it, for the edge's WIRE_FORMAT `format`.
 *
 * @example
 * const { payloadBytes, memoryUsage } = await pipelineBytesPerJob(image, 'jpeg');
 */
import { redisKeys } from '../shared/keys.ts';
import type { WireFormat } from '../shared/protocol.ts';
import { startPipeline } from './pipeline.ts';

export interface BytesPerJob {
  /** Sum of the byte lengths of every field name and value of one queued job. */
  payloadBytes: number;
  /** `MEMORY USAGE` of the queue key holding just that job (the key's own overhead included). */
  memoryUsage: number;
}

export async function pipelineBytesPerJob(
  image: { name: string; bytes: Uint8Array },
  format: WireFormat,
  log?: (line: string) => void,
): Promise<BytesPerJob> {
  // The deadline leaves room for the encode (WIRE_FORMAT=webp: tens of ms, more on a busy machine) before the enqueue.
  const stack = await startPipeline({ workers: 0, workerEnv: {}, edgeEnv: { DEADLINE_MS: '1000', WIRE_FORMAT: format }, log });
  try {
    const form = new FormData();
    form.append('image', new Blob([new Uint8Array(image.bytes)]), image.name);
    const response = await fetch(`${stack.url}/predict`, { method: 'POST', body: form });
    if (response.status !== 504)
      throw new Error(`expected 504 from an edge without workers, got ${response.status}: ${await response.text()}`);
    const stream = redisKeys().stream;
    const entries = (await stack.redis.xrangeBuffer(stream, '-', '+')) as [Buffer, Buffer[]][];
    if (entries.length !== 1) throw new Error(`expected 1 queued job, found ${entries.length}`);
    const payloadBytes = entries[0]![1].reduce((sum, part) => sum + part.length, 0);
    const memoryUsage = Number(await stack.redis.call('MEMORY', 'USAGE', stream, 'SAMPLES', '0'));
    return { payloadBytes, memoryUsage };
  } finally {
    await stack.stop();
  }
}
