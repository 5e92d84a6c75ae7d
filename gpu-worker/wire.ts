/**
 * The jobs whose `tensor` field is an image file (WIRE_FORMAT jpeg or webp: shared/protocol.ts),
 * decoded back to the 224x224 RGB tensor before inference. A file that does not decode, or is
 * not 224x224, is answered `bad_request`; the rest of the batch runs. sharp is loaded on the first
 * such job only: a worker that only sees raw tensors never loads it.
 *
 * @example
 * const { jobs, invalid } = await decodeWireImages(sorted.live);
 */
import { IMAGE_SIZE, TENSOR_BYTES } from '../shared/tensor.ts';
import type { InvalidJob, Job } from './jobs.ts';

export async function decodeWireImages(live: Job[]): Promise<{ jobs: Job[]; invalid: InvalidJob[] }> {
  if (live.every((job) => job.format === 'raw')) return { jobs: live, invalid: [] };
  const { default: sharp } = await import('sharp');
  const decoded = await Promise.all(
    live.map(async (job): Promise<Job | InvalidJob> => {
      if (job.format === 'raw') return job;
      try {
        // No more pixels than the wire image has: a file claiming more is refused before decoding.
        const image = sharp(job.tensor, { limitInputPixels: IMAGE_SIZE * IMAGE_SIZE, failOn: 'error' });
        const { format } = await image.metadata();
        if (format !== job.format) throw new Error(`the file is ${format ?? 'of no known format'}`);
        const { data, info } = await image.removeAlpha().raw().toBuffer({ resolveWithObject: true });
        if (info.width !== IMAGE_SIZE || info.height !== IMAGE_SIZE || data.length !== TENSOR_BYTES) {
          throw new Error(`a ${info.width}x${info.height} image with ${info.channels} channels, not ${IMAGE_SIZE}x${IMAGE_SIZE} RGB`);
        }
        return { ...job, tensor: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), format: 'raw' };
      } catch (error) {
        const { entryId, id, reply } = job;
        return {
          kind: 'invalid',
          entryId,
          id,
          reply,
          message: `tensor: not a ${job.format} file of the wire image (${(error as Error).message})`,
        };
      }
    }),
  );
  return {
    jobs: decoded.filter((job): job is Job => job.kind === 'job'),
    invalid: decoded.filter((job): job is InvalidJob => job.kind === 'invalid'),
  };
}
