/**
 * The Node image codec, on sharp (libvips). See ImageCodec for the tensor it must produce.
 *
 * @example
 * const codec = createSharpCodec({ maxPixels: 40e6 });
 * const tensor = await codec.toTensor(bytes, probeImage(bytes, 40e6), 'squash');
 */
import sharp from 'sharp';
import { ApiError } from '../errors.ts';
import type { ImageCodec } from '../image/codec.ts';
import { resizeToTensor } from '../image/resample.ts';
import { IMAGE_SIZE, TENSOR_BYTES } from '../../shared/tensor.ts';

const WHITE = { r: 255, g: 255, b: 255 };

export function createSharpCodec(options: { maxPixels: number }): ImageCodec {
  return {
    async toTensor(bytes, info, mode) {
      try {
        // failOn 'warning' turns libvips' "premature end of JPEG" and the like into errors.
        // ignoreIcc: like PIL (and so Keras), and like the WASM codec, use the pixel values as stored.
        const image = sharp(bytes, { limitInputPixels: options.maxPixels, failOn: 'warning', animated: false, ignoreIcc: true })
          .rotate() // EXIF orientation
          .flatten({ background: WHITE })
          .toColourspace('srgb');
        // Resizing is the shared TypeScript code, so this path and the WASM one give the same tensor.
        const { data, info: decoded } = await image.removeAlpha().raw().toBuffer({ resolveWithObject: true });
        if (decoded.channels !== 3) throw new Error(`decoded ${decoded.channels} channels`);
        return checked(resizeToTensor({ data, width: decoded.width, height: decoded.height, channels: 3 }, 1, mode));
      } catch (error) {
        throw new ApiError(
          400,
          'corrupt_image',
          `The ${info.format.toUpperCase()} image could not be decoded: ${(error as Error).message}`,
        );
      }
    },
    async toWire(tensor, format) {
      const image = sharp(tensor, { raw: { width: IMAGE_SIZE, height: IMAGE_SIZE, channels: 3 } });
      // The settings docs/performance.md measured: JPEG 95 without chroma subsampling; WebP lossless.
      const file = format === 'jpeg' ? image.jpeg({ quality: 95, chromaSubsampling: '4:4:4' }) : image.webp({ lossless: true, effort: 2 });
      return new Uint8Array(await file.toBuffer());
    },
  };
}

function checked(tensor: Uint8Array): Uint8Array {
  if (tensor.length !== TENSOR_BYTES) throw new Error(`resized to ${tensor.length} bytes, expected ${TENSOR_BYTES}`);
  return new Uint8Array(tensor.buffer, tensor.byteOffset, tensor.byteLength);
}
