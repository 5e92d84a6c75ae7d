/**
 * Read an image's format and dimensions from its first bytes, before anything is decoded, so that
 * unsupported types (415) and decompression bombs (413) are refused without allocating pixels.
 * Pure TypeScript: runs the same in Node and in workerd.
 *
 * @example
 * probeImage(bytes) // { format: 'jpeg', width: 375, height: 500 }
 */
import { ApiError } from '../errors.ts';

export type ImageFormat = 'jpeg' | 'png' | 'webp' | 'gif';
export interface ImageInfo {
  format: ImageFormat;
  width: number;
  height: number;
}

const ascii = (b: Uint8Array, at: number, text: string) =>
  b.length >= at + text.length && [...text].every((ch, i) => b[at + i] === ch.charCodeAt(0));

/** The format from magic bytes alone, or null when it is none of the four we accept. */
export function sniffFormat(b: Uint8Array): ImageFormat | null {
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (ascii(b, 0, '\x89PNG\r\n\x1a\n')) return 'png';
  if (ascii(b, 0, 'RIFF') && ascii(b, 8, 'WEBP')) return 'webp';
  if (ascii(b, 0, 'GIF87a') || ascii(b, 0, 'GIF89a')) return 'gif';
  return null;
}

const corrupt = (format: ImageFormat, why: string) =>
  new ApiError(400, 'corrupt_image', `The ${format.toUpperCase()} header is unreadable: ${why}`);

function jpegSize(b: Uint8Array): [number, number] {
  let i = 2;
  while (i + 4 <= b.length) {
    if (b[i] !== 0xff) throw corrupt('jpeg', `expected a marker at byte ${i}`);
    const marker = b[i + 1]!;
    if (marker === 0xff) {
      i++; // fill byte
      continue;
    }
    // Standalone markers carry no length.
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      i += 2;
      continue;
    }
    const length = (b[i + 2]! << 8) | b[i + 3]!;
    if (length < 2) throw corrupt('jpeg', 'bad segment length');
    const isStartOfFrame = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isStartOfFrame) {
      if (i + 9 > b.length) break;
      return [(b[i + 7]! << 8) | b[i + 8]!, (b[i + 5]! << 8) | b[i + 6]!];
    }
    if (marker === 0xda || marker === 0xd9) throw corrupt('jpeg', 'no frame header before the image data');
    i += 2 + length;
  }
  throw corrupt('jpeg', 'truncated before the frame header');
}

function pngSize(b: Uint8Array): [number, number] {
  if (b.length < 24 || !ascii(b, 12, 'IHDR')) throw corrupt('png', 'missing IHDR chunk');
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return [view.getUint32(16), view.getUint32(20)];
}

function gifSize(b: Uint8Array): [number, number] {
  if (b.length < 10) throw corrupt('gif', 'truncated logical screen descriptor');
  return [b[6]! | (b[7]! << 8), b[8]! | (b[9]! << 8)];
}

/** The largest width and height a decoder may allocate for, and why the structure is corrupt if it is. */
interface Extent {
  width: number;
  height: number;
  corrupt?: string;
}

/**
 * The area GIF decoders allocate: the logical screen, grown to fit every frame (libnsgif, and so
 * sharp, enlarges the canvas to the frames; photon allocates each frame at its own size). A 1x1
 * screen may hold a 65535x65535 frame. Walks the block structure without decoding; stops quietly
 * where the data ends or stops making sense (the decoder will judge that part).
 */
function gifExtent(b: Uint8Array, [width, height]: [number, number]): Extent {
  const u16 = (at: number) => b[at]! | (b[at + 1]! << 8);
  const skipSubBlocks = (at: number) => {
    while (at < b.length && b[at] !== 0) at += 1 + b[at]!;
    return at + 1;
  };
  let i = 13;
  if (b[10]! & 0x80) i += 3 << ((b[10]! & 7) + 1); // global colour table
  while (i < b.length) {
    const block = b[i];
    if (block === 0x21) {
      i = skipSubBlocks(i + 2); // extension: label, then data sub-blocks
    } else if (block === 0x2c) {
      if (i + 10 > b.length) break;
      width = Math.max(width, u16(i + 1) + u16(i + 5));
      height = Math.max(height, u16(i + 3) + u16(i + 7));
      const flags = b[i + 9]!;
      i += 10;
      if (flags & 0x80) i += 3 << ((flags & 7) + 1); // local colour table
      i = skipSubBlocks(i + 1); // LZW minimum code size, then image data sub-blocks
    } else {
      break; // trailer (0x3b) or not a block
    }
  }
  return { width, height };
}

/** Width and height from a VP8 or VP8L bitstream's header (`at`: the chunk's data), or null if unreadable. */
function bitstreamSize(b: Uint8Array, type: string, at: number): [number, number] | null {
  if (type === 'VP8L') {
    if (at + 5 > b.length || b[at] !== 0x2f) return null;
    const bits = b[at + 1]! | (b[at + 2]! << 8) | (b[at + 3]! << 16) | (b[at + 4]! << 24);
    return [(bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1];
  }
  if (type === 'VP8 ') {
    if (at + 10 > b.length || b[at + 3] !== 0x9d || b[at + 4] !== 0x01 || b[at + 5] !== 0x2a) return null;
    return [(b[at + 6]! | (b[at + 7]! << 8)) & 0x3fff, (b[at + 8]! | (b[at + 9]! << 8)) & 0x3fff];
  }
  return null;
}

const fourcc = (b: Uint8Array, at: number) => String.fromCharCode(b[at]!, b[at + 1]!, b[at + 2]!, b[at + 3]!);

function webpSize(b: Uint8Array): [number, number] {
  if (b.length < 30) throw corrupt('webp', 'truncated');
  const u24 = (at: number) => b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16);
  if (ascii(b, 12, 'VP8X')) return [u24(24) + 1, u24(27) + 1];
  const type = fourcc(b, 12);
  if (type === 'VP8L' || type === 'VP8 ') {
    const size = bitstreamSize(b, type, 20);
    if (!size) throw corrupt('webp', type === 'VP8L' ? 'bad VP8L signature' : 'bad VP8 key frame');
    return size;
  }
  throw corrupt('webp', 'unknown chunk');
}

/**
 * The area WebP decoders allocate for an extended (VP8X) file: the canvas, grown to fit every
 * frame and every bitstream in it. The canvas alone is not enough: photon decodes a VP8 bitstream
 * at the size its own header claims before comparing it with the canvas (a 150-byte file with a
 * 16x16 canvas around a "16383x16383" frame took 14 s and 1.7 GB). A still image whose bitstream
 * is not the canvas's size is corrupt (libwebp refuses it too). Stops quietly where the data ends.
 */
function webpExtent(b: Uint8Array, [width, height]: [number, number]): Extent {
  if (!ascii(b, 12, 'VP8X')) return { width, height };
  let mismatch: string | undefined;
  const [canvasWidth, canvasHeight] = [width, height];
  const animated = (b[20]! & 0x02) !== 0;
  const u24 = (at: number) => b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16);
  const u32 = (at: number) => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
  const grow = (w: number, h: number) => {
    width = Math.max(width, w);
    height = Math.max(height, h);
  };
  const walk = (from: number, to: number, depth: number) => {
    for (let i = from; i + 8 <= to; ) {
      const type = fourcc(b, i);
      const size = u32(i + 4);
      const data = i + 8;
      const bitstream = bitstreamSize(b, type, data);
      if (bitstream) {
        const [w, h] = bitstream;
        if (!animated && (w !== canvasWidth || h !== canvasHeight)) {
          mismatch ??= `the ${w}x${h} image does not match its ${canvasWidth}x${canvasHeight} canvas`;
        }
        grow(w, h);
      }
      if (type === 'ANMF' && depth === 0 && data + 16 <= b.length) {
        // Frame X and Y (in units of 2 px), width - 1 and height - 1, then the frame's own chunks.
        grow(2 * u24(data) + u24(data + 6) + 1, 2 * u24(data + 3) + u24(data + 9) + 1);
        walk(data + 16, Math.min(to, data + size), 1);
      }
      i = data + size + (size & 1);
    }
  };
  walk(12, b.length, 0);
  return { width, height, corrupt: mismatch };
}

/**
 * Sniff and measure an image. Throws ApiError 415 for other types, 400 for unreadable headers,
 * and 413 when width x height exceeds `maxPixels`.
 */
export function probeImage(bytes: Uint8Array, maxPixels: number): ImageInfo {
  const format = sniffFormat(bytes);
  if (!format) {
    throw new ApiError(415, 'unsupported_media_type', 'Unsupported image type: send a JPEG, PNG, WebP or GIF image');
  }
  const [width, height] = { jpeg: jpegSize, png: pngSize, gif: gifSize, webp: webpSize }[format](bytes);
  if (width === 0 || height === 0) throw corrupt(format, `zero dimension ${width}x${height}`);
  const tooLarge = (w: number, h: number, what: string) =>
    new ApiError(
      413,
      'image_too_large',
      `${what} is ${w}x${h} (${((w * h) / 1e6).toFixed(1)} MP); the limit is ${(maxPixels / 1e6).toFixed(1)} MP`,
    );
  if (width * height > maxPixels) throw tooLarge(width, height, 'Image');
  // Frames and bitstreams can claim more than the canvas, and decoders allocate what they claim.
  const extent: Extent =
    format === 'gif' ? gifExtent(bytes, [width, height]) : format === 'webp' ? webpExtent(bytes, [width, height]) : { width, height };
  if (extent.width * extent.height > maxPixels) throw tooLarge(extent.width, extent.height, `Image (${width}x${height}) has a frame that`);
  if (extent.corrupt) throw corrupt(format, extent.corrupt);
  return { format, width, height };
}
