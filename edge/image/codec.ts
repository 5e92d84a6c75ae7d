/**
 * The image codec is runtime-specific (sharp on Node, WebAssembly on Workers); the app only sees
 * this interface. Every codec returns the wire tensor: 224x224 RGB uint8 HWC, EXIF-oriented, alpha
 * flattened onto white, grayscale/CMYK converted to sRGB.
 */
import type { WireFormat } from '../../shared/protocol.ts';
import type { ImageInfo } from './probe.ts';

/**
 * - `squash`: Keras' `image.load_img(path, target_size=(224, 224))`: the whole image squashed to
 *   224x224 with nearest-neighbour sampling. The default, so results match the Keras reference.
 * - `center-crop`: short side scaled to 224 by area averaging (antialiased), then the centre 224x224.
 */
export const RESIZE_MODES = ['squash', 'center-crop'] as const;
export type ResizeMode = (typeof RESIZE_MODES)[number];

export interface ImageCodec {
  /** Decode `bytes` (already probed) to the 224x224 RGB tensor. Throws ApiError 400 when undecodable. */
  toTensor(bytes: Uint8Array, info: ImageInfo, mode: ResizeMode): Promise<Uint8Array>;
  /**
   * The tensor as the image file WIRE_FORMAT names (shared/protocol.ts WIRE_FORMATS), for a
   * smaller job. A codec without it serves `WIRE_FORMAT=raw` only.
   */
  toWire?(tensor: Uint8Array, format: Exclude<WireFormat, 'raw'>): Promise<Uint8Array>;
}
