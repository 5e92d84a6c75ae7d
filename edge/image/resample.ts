/**
 * Pixel work shared by every codec, in plain TypeScript so that all runtimes produce the same
 * tensor from the same decoded pixels: EXIF orientation, alpha flattened onto white, and the two
 * resize modes. Input is the decoded image as stored (RGB or RGBA, 8-bit, row-major); output is
 * the 224x224 RGB wire tensor.
 *
 * @example
 * const tensor = resizeToTensor({ data: rgba, width, height, channels: 4 }, 6, 'squash');
 */
import { IMAGE_SIZE } from '../../shared/tensor.ts';
import type { ResizeMode } from './codec.ts';

export interface Pixels {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 3 | 4;
}

/** EXIF orientation 1..8; 5..8 swap width and height. */
export type Orientation = 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8;

/** Maps a displayed pixel (x, y) to its stored index, for an image stored as width x height. */
function storedIndex(orientation: Orientation, width: number, height: number): (x: number, y: number) => number {
  switch (orientation) {
    case 2: return (x, y) => y * width + (width - 1 - x);
    case 3: return (x, y) => (height - 1 - y) * width + (width - 1 - x);
    case 4: return (x, y) => (height - 1 - y) * width + x;
    case 5: return (x, y) => x * width + y;
    case 6: return (x, y) => (height - 1 - x) * width + y;
    case 7: return (x, y) => (height - 1 - x) * width + (width - 1 - y);
    case 8: return (x, y) => x * width + (width - 1 - y);
    default: return (x, y) => y * width + x;
  }
}

export function displaySize(orientation: Orientation, width: number, height: number): [number, number] {
  return orientation >= 5 ? [height, width] : [width, height];
}

/** Reads displayed pixels as RGB, with alpha composited onto white (as sharp's flatten does). */
function rgbReader(pixels: Pixels, orientation: Orientation) {
  const index = storedIndex(orientation, pixels.width, pixels.height);
  const { data, channels } = pixels;
  return (x: number, y: number, out: Float32Array | Uint8Array, at: number) => {
    const i = index(x, y) * channels;
    if (channels === 3) {
      out[at] = data[i]!;
      out[at + 1] = data[i + 1]!;
      out[at + 2] = data[i + 2]!;
      return;
    }
    const alpha = data[i + 3]!;
    const white = 255 - alpha;
    out[at] = (data[i]! * alpha + 255 * white) / 255;
    out[at + 1] = (data[i + 1]! * alpha + 255 * white) / 255;
    out[at + 2] = (data[i + 2]! * alpha + 255 * white) / 255;
  };
}

/**
 * Keras' `load_img(target_size=(224, 224))`: squash the whole image with PIL's nearest-neighbour
 * rule, source = floor((x + 0.5) * scale). libvips' "nearest" box-shrinks first on large
 * reductions, so this is done here for every codec.
 */
function squashNearest(pixels: Pixels, orientation: Orientation): Uint8Array {
  const [width, height] = displaySize(orientation, pixels.width, pixels.height);
  const read = rgbReader(pixels, orientation);
  const out = new Uint8Array(IMAGE_SIZE * IMAGE_SIZE * 3);
  const rgb = new Float32Array(3);
  for (let y = 0; y < IMAGE_SIZE; y++) {
    const sy = Math.min(height - 1, Math.floor(((y + 0.5) * height) / IMAGE_SIZE));
    for (let x = 0; x < IMAGE_SIZE; x++) {
      const sx = Math.min(width - 1, Math.floor(((x + 0.5) * width) / IMAGE_SIZE));
      read(sx, sy, rgb, 0);
      const at = (y * IMAGE_SIZE + x) * 3;
      out[at] = Math.round(rgb[0]!);
      out[at + 1] = Math.round(rgb[1]!);
      out[at + 2] = Math.round(rgb[2]!);
    }
  }
  return out;
}

/** For each output index along one axis: the source pixels it covers and their weights (area average). */
function areaWeights(start: number, span: number): { from: number; to: number; weights: Float32Array }[] {
  const scale = span / IMAGE_SIZE;
  return Array.from({ length: IMAGE_SIZE }, (_, o) => {
    const lo = start + o * scale;
    const hi = lo + Math.max(scale, 1e-9);
    const from = Math.floor(lo);
    const to = Math.max(from + 1, Math.ceil(hi));
    const weights = new Float32Array(to - from);
    for (let s = from; s < to; s++) weights[s - from] = Math.min(hi, s + 1) - Math.max(lo, s);
    const total = weights.reduce((a, b) => a + b, 0);
    return { from, to, weights: weights.map((w) => w / total) };
  });
}

/**
 * Short side to 224, centre 224x224 kept, by area averaging (antialiased, like a box filter).
 * It differs from sharp's lanczos3 by the filter only; the parity test bounds the difference.
 */
function centerCropArea(pixels: Pixels, orientation: Orientation): Uint8Array {
  const [width, height] = displaySize(orientation, pixels.width, pixels.height);
  const side = Math.min(width, height);
  const columns = areaWeights((width - side) / 2, side);
  const rows = areaWeights((height - side) / 2, side);
  const read = rgbReader(pixels, orientation);
  const sum = new Float32Array(IMAGE_SIZE * IMAGE_SIZE * 3);
  const row = new Float32Array(IMAGE_SIZE * 3);
  const rgb = new Float32Array(3);
  // Source rows in order; each is resampled horizontally once, then spread over the output rows it covers.
  const firstRow = Math.max(0, rows[0]!.from);
  const lastRow = Math.min(height, rows[IMAGE_SIZE - 1]!.to);
  let outRow = 0;
  for (let sy = firstRow; sy < lastRow; sy++) {
    row.fill(0);
    for (let ox = 0; ox < IMAGE_SIZE; ox++) {
      const { from, weights } = columns[ox]!;
      for (let k = 0; k < weights.length; k++) {
        read(Math.min(width - 1, Math.max(0, from + k)), sy, rgb, 0);
        const w = weights[k]!;
        for (let c = 0; c < 3; c++) row[ox * 3 + c] = row[ox * 3 + c]! + rgb[c]! * w;
      }
    }
    while (outRow < IMAGE_SIZE && rows[outRow]!.to <= sy) outRow++;
    for (let oy = outRow; oy < IMAGE_SIZE && rows[oy]!.from <= sy; oy++) {
      const w = rows[oy]!.weights[sy - rows[oy]!.from] ?? 0;
      const base = oy * IMAGE_SIZE * 3;
      for (let i = 0; i < IMAGE_SIZE * 3; i++) sum[base + i] = sum[base + i]! + row[i]! * w;
    }
  }
  return Uint8Array.from(sum, (v) => Math.min(255, Math.max(0, Math.round(v))));
}

/** The 224x224 RGB tensor of decoded `pixels`, shown with EXIF `orientation`, in `mode`. */
export function resizeToTensor(pixels: Pixels, orientation: Orientation, mode: ResizeMode): Uint8Array {
  return mode === 'center-crop' ? centerCropArea(pixels, orientation) : squashNearest(pixels, orientation);
}
