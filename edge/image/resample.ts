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

/**
 * Where displayed pixel (x, y) is stored, for an image stored as width x height: the pixel index
 * `origin + x * stepX + y * stepY`. Every EXIF orientation is a flip and/or a transpose, so the
 * mapping is linear, and the loops below walk the stored pixels with two strides.
 */
function storedLayout(orientation: Orientation, width: number, height: number): { origin: number; stepX: number; stepY: number } {
  const lastRow = (height - 1) * width;
  switch (orientation) {
    case 2:
      return { origin: width - 1, stepX: -1, stepY: width };
    case 3:
      return { origin: lastRow + width - 1, stepX: -1, stepY: -width };
    case 4:
      return { origin: lastRow, stepX: 1, stepY: -width };
    case 5:
      return { origin: 0, stepX: width, stepY: 1 };
    case 6:
      return { origin: lastRow, stepX: -width, stepY: 1 };
    case 7:
      return { origin: lastRow + width - 1, stepX: -width, stepY: -1 };
    case 8:
      return { origin: width - 1, stepX: width, stepY: -1 };
    default:
      return { origin: 0, stepX: 1, stepY: width };
  }
}

export function displaySize(orientation: Orientation, width: number, height: number): [number, number] {
  return orientation >= 5 ? [height, width] : [width, height];
}

/** One channel value composited onto white with its alpha (as sharp's flatten does). */
const onWhite = (value: number, alpha: number) => (value * alpha + 255 * (255 - alpha)) / 255;

/**
 * Keras' `load_img(target_size=(224, 224))`: squash the whole image with PIL's nearest-neighbour
 * rule, source = floor((x + 0.5) * scale). libvips' "nearest" box-shrinks first on large
 * reductions, so this is done here for every codec. It runs on the edge's main thread for every
 * upload, hence the plain index loops (no per-pixel closures).
 */
function squashNearest(pixels: Pixels, orientation: Orientation): Uint8Array {
  const [width, height] = displaySize(orientation, pixels.width, pixels.height);
  const { origin, stepX, stepY } = storedLayout(orientation, pixels.width, pixels.height);
  const { data, channels } = pixels;
  const columns = new Int32Array(IMAGE_SIZE); // stored offset of each output column's source pixel
  for (let x = 0; x < IMAGE_SIZE; x++) columns[x] = Math.min(width - 1, Math.floor(((x + 0.5) * width) / IMAGE_SIZE)) * stepX;
  const out = new Uint8Array(IMAGE_SIZE * IMAGE_SIZE * 3);
  for (let y = 0, at = 0; y < IMAGE_SIZE; y++) {
    const row = origin + Math.min(height - 1, Math.floor(((y + 0.5) * height) / IMAGE_SIZE)) * stepY;
    for (let x = 0; x < IMAGE_SIZE; x++, at += 3) {
      const i = (row + columns[x]!) * channels;
      if (channels === 3) {
        out[at] = data[i]!;
        out[at + 1] = data[i + 1]!;
        out[at + 2] = data[i + 2]!;
      } else {
        const alpha = data[i + 3]!;
        out[at] = Math.round(onWhite(data[i]!, alpha));
        out[at + 1] = Math.round(onWhite(data[i + 1]!, alpha));
        out[at + 2] = Math.round(onWhite(data[i + 2]!, alpha));
      }
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
 * One source row resampled horizontally into `row` (224 x RGB, float32 sums). A function of its own,
 * called once per source row, so the JIT optimizes it as an ordinary hot function: as one long loop
 * inside centerCropArea it depended on on-stack replacement, and workerd's V8 now and then left it
 * unoptimized for a whole run (2 MP centre crops 36 -> 280 ms in `npm run bench:codec`).
 */
function resampleRow(data: Uint8Array, channels: 3 | 4, rowOrigin: number, taps: Taps, row: Float32Array) {
  const { start, offset, weight } = taps;
  for (let ox = 0; ox < IMAGE_SIZE; ox++) {
    // fround after each tap: the float32 sums the row held when this was written with arrays.
    let r = 0,
      g = 0,
      b = 0;
    for (let t = start[ox]!; t < start[ox + 1]!; t++) {
      const i = (rowOrigin + offset[t]!) * channels;
      const w = weight[t]!;
      if (channels === 3) {
        r = Math.fround(r + data[i]! * w);
        g = Math.fround(g + data[i + 1]! * w);
        b = Math.fround(b + data[i + 2]! * w);
      } else {
        const alpha = data[i + 3]!;
        r = Math.fround(r + Math.fround(onWhite(data[i]!, alpha)) * w);
        g = Math.fround(g + Math.fround(onWhite(data[i + 1]!, alpha)) * w);
        b = Math.fround(b + Math.fround(onWhite(data[i + 2]!, alpha)) * w);
      }
    }
    row[ox * 3] = r;
    row[ox * 3 + 1] = g;
    row[ox * 3 + 2] = b;
  }
}

/** `sum[base..] += row * w` over one output row (the vertical pass; see resampleRow for why a function). */
function accumulateRow(sum: Float32Array, base: number, row: Float32Array, w: number) {
  for (let i = 0; i < IMAGE_SIZE * 3; i++) sum[base + i] = sum[base + i]! + row[i]! * w;
}

/** Every (output column, tap), flattened: taps of column ox are start[ox]..start[ox+1]. */
interface Taps {
  start: Int32Array;
  /** Stored offset of the tap's source column. */
  offset: Int32Array;
  weight: Float32Array;
}

function columnTaps(columns: ReturnType<typeof areaWeights>, width: number, stepX: number): Taps {
  const start = new Int32Array(IMAGE_SIZE + 1);
  for (let ox = 0; ox < IMAGE_SIZE; ox++) start[ox + 1] = start[ox]! + columns[ox]!.weights.length;
  const offset = new Int32Array(start[IMAGE_SIZE]!);
  const weight = new Float32Array(start[IMAGE_SIZE]!);
  for (let ox = 0; ox < IMAGE_SIZE; ox++) {
    const { from, weights } = columns[ox]!;
    for (let k = 0; k < weights.length; k++) {
      offset[start[ox]! + k] = Math.min(width - 1, Math.max(0, from + k)) * stepX;
      weight[start[ox]! + k] = weights[k]!;
    }
  }
  return { start, offset, weight };
}

/**
 * Short side to 224, centre 224x224 kept, by area averaging (antialiased, like a box filter).
 * It differs from sharp's lanczos3 by the filter only; the parity test bounds the difference.
 * Sums are kept in float32 arrays; the loops read the stored pixels directly (see squashNearest).
 */
function centerCropArea(pixels: Pixels, orientation: Orientation): Uint8Array {
  const [width, height] = displaySize(orientation, pixels.width, pixels.height);
  const { origin, stepX, stepY } = storedLayout(orientation, pixels.width, pixels.height);
  const side = Math.min(width, height);
  const taps = columnTaps(areaWeights((width - side) / 2, side), width, stepX);
  const rows = areaWeights((height - side) / 2, side);
  const sum = new Float32Array(IMAGE_SIZE * IMAGE_SIZE * 3);
  const row = new Float32Array(IMAGE_SIZE * 3);
  // Source rows in order; each is resampled horizontally once, then spread over the output rows it covers.
  const firstRow = Math.max(0, rows[0]!.from);
  const lastRow = Math.min(height, rows[IMAGE_SIZE - 1]!.to);
  let outRow = 0;
  for (let sy = firstRow; sy < lastRow; sy++) {
    resampleRow(pixels.data, pixels.channels, origin + sy * stepY, taps, row);
    while (outRow < IMAGE_SIZE && rows[outRow]!.to <= sy) outRow++;
    // Rows are ordered, so every later row that starts at or before sy also covers it.
    for (let oy = outRow; oy < IMAGE_SIZE && rows[oy]!.from <= sy; oy++) {
      accumulateRow(sum, oy * IMAGE_SIZE * 3, row, rows[oy]!.weights[sy - rows[oy]!.from]!);
    }
  }
  const out = new Uint8Array(sum.length);
  for (let i = 0; i < sum.length; i++) out[i] = Math.min(255, Math.max(0, Math.round(sum[i]!)));
  return out;
}

/** The 224x224 RGB tensor of decoded `pixels`, shown with EXIF `orientation`, in `mode`. */
export function resizeToTensor(pixels: Pixels, orientation: Orientation, mode: ResizeMode): Uint8Array {
  return mode === 'center-crop' ? centerCropArea(pixels, orientation) : squashNearest(pixels, orientation);
}
