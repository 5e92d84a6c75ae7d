/**
 * The seed tutorial's protocol (Keras + Redis + Flask "scalable deep learning REST API"), rebuilt
 * for `npm run bench` as the baseline our pipeline is compared with: same model, same machine,
 * same image decode. Only what the tutorial did differently is kept different:
 *
 * - one Redis list; the web server RPUSHes `{"id", "image"}` JSON with the image as base64 of the
 *   caffe-preprocessed float32 tensor (602,112 bytes, ~803 KB of base64);
 * - the model server reads up to 32 entries with LRANGE, predicts, SETs each result under the
 *   request id, then LTRIMs what it read (not atomic: a second model server would read the same
 *   batch, which is why the baseline runs one), and sleeps 0.25 s after every round;
 * - the web server polls GET every 0.25 s, then DELs the key.
 *
 * @example
 * const payload = seedJob(id, tensorBytes); // JSON text as the web server RPUSHes it
 */
import { CAFFE_MEAN_BGR } from '../../gpu-worker/model/preprocess.ts';
import { CHANNELS, IMAGE_SIZE, TENSOR_BYTES } from '../../shared/tensor.ts';

export const IMAGE_QUEUE = 'image_queue';
export const BATCH_SIZE = 32;
export const SERVER_SLEEP_MS = 250;
export const CLIENT_SLEEP_MS = 250;
export const FLOAT32_SHAPE: [number, number, number] = [IMAGE_SIZE, IMAGE_SIZE, CHANNELS];

/** uint8 RGB HWC -> float32 BGR minus the ImageNet means (Keras `imagenet_utils.preprocess_input`). */
export function caffeFloat32(rgb: Uint8Array): Float32Array {
  if (rgb.length !== TENSOR_BYTES) throw new RangeError(`expected ${TENSOR_BYTES} bytes, got ${rgb.length}`);
  const out = new Float32Array(TENSOR_BYTES);
  for (let i = 0; i < TENSOR_BYTES; i += 3) {
    out[i] = rgb[i + 2]! - CAFFE_MEAN_BGR[0];
    out[i + 1] = rgb[i + 1]! - CAFFE_MEAN_BGR[1];
    out[i + 2] = rgb[i]! - CAFFE_MEAN_BGR[2];
  }
  return out;
}

/** The list entry, as the tutorial's `json.dumps({"id": k, "image": base64_encode_image(image)})`. */
export function seedJob(id: string, rgb: Uint8Array): string {
  const floats = caffeFloat32(rgb);
  return JSON.stringify({ id, image: Buffer.from(floats.buffer, floats.byteOffset, floats.byteLength).toString('base64') });
}

export function parseSeedJob(text: string): { id: string; image: Float32Array } {
  const { id, image } = JSON.parse(text) as { id: string; image: string };
  const bytes = Buffer.from(image, 'base64');
  if (bytes.length !== TENSOR_BYTES * 4) throw new RangeError(`job ${id}: expected ${TENSOR_BYTES * 4} tensor bytes, got ${bytes.length}`);
  // Copy: Buffer's pool offset need not be 4-aligned.
  return { id, image: new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)) };
}
