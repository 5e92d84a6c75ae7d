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

function webpSize(b: Uint8Array): [number, number] {
  if (b.length < 30) throw corrupt('webp', 'truncated');
  const u24 = (at: number) => b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16);
  if (ascii(b, 12, 'VP8X')) return [u24(24) + 1, u24(27) + 1];
  if (ascii(b, 12, 'VP8L')) {
    if (b[20] !== 0x2f) throw corrupt('webp', 'bad VP8L signature');
    const bits = b[21]! | (b[22]! << 8) | (b[23]! << 16) | (b[24]! << 24);
    return [(bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1];
  }
  if (ascii(b, 12, 'VP8 ')) {
    if (b[23] !== 0x9d || b[24] !== 0x01 || b[25] !== 0x2a) throw corrupt('webp', 'bad VP8 key frame');
    return [(b[26]! | (b[27]! << 8)) & 0x3fff, (b[28]! | (b[29]! << 8)) & 0x3fff];
  }
  throw corrupt('webp', 'unknown chunk');
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
  if (width * height > maxPixels) {
    throw new ApiError(
      413,
      'image_too_large',
      `Image is ${width}x${height} (${((width * height) / 1e6).toFixed(1)} MP); the limit is ${(maxPixels / 1e6).toFixed(1)} MP`,
    );
  }
  return { format, width, height };
}
