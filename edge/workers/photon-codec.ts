/**
 * The Workers image codec: decode in WebAssembly with @cf-wasm/photon (sharp cannot run in
 * workerd), then orient, flatten and resize with the shared TypeScript rules (../image/resample.ts),
 * so the tensor matches the sharp path.
 *
 * Memory: an isolate has 128 MB shared by its concurrent requests, and a decode holds the RGBA
 * pixels twice (in WASM memory, then copied out). Decodes therefore run one at a time per isolate,
 * and MAX_PIXELS (checked from the header before this) must be set to what fits: see the README.
 *
 * @example
 * const codec = createPhotonCodec();
 * const tensor = await codec.toTensor(bytes, probeImage(bytes, maxPixels), 'squash');
 */
import { PhotonImage } from '@cf-wasm/photon';
import { ApiError } from '../errors.ts';
import type { ImageCodec } from '../image/codec.ts';
import { readOrientation } from '../image/orientation.ts';
import { resizeToTensor } from '../image/resample.ts';

export function createPhotonCodec(): ImageCodec {
  let queue: Promise<unknown> = Promise.resolve();
  /** Run `work` after every earlier decode of this isolate has finished. */
  const oneAtATime = <T>(work: () => T): Promise<T> => {
    const run = queue.then(work);
    queue = run.catch(() => {});
    return run;
  };

  return {
    toTensor(bytes, info, mode) {
      return oneAtATime(() => {
        let image: PhotonImage | undefined;
        let pixels: Uint8Array;
        let width: number;
        let height: number;
        try {
          image = PhotonImage.new_from_byteslice(bytes);
          width = image.get_width();
          height = image.get_height();
          pixels = image.get_raw_pixels();
        } catch (error) {
          // A corrupt image makes the decoder trap ("unreachable"); the module stays usable.
          throw new ApiError(400, 'corrupt_image', `The ${info.format.toUpperCase()} image could not be decoded: ${(error as Error).message}`);
        } finally {
          image?.free();
        }
        if (pixels.length !== width * height * 4) {
          throw new ApiError(400, 'corrupt_image', `The ${info.format.toUpperCase()} image decoded to an unexpected size`);
        }
        return resizeToTensor({ data: pixels, width, height, channels: 4 }, readOrientation(bytes, info.format), mode);
      });
    },
  };
}
