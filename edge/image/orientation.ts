/**
 * Read the EXIF orientation tag (1..8) from the image's metadata, for codecs that decode pixels
 * as stored (the WASM one). sharp reads it itself. Anything missing or malformed means 1: a bad
 * EXIF block must not fail an otherwise good image.
 */
import type { ImageFormat } from './probe.ts';
import type { Orientation } from './resample.ts';

const ORIENTATION_TAG = 0x0112;

/** Orientation from a TIFF structure (the body of an EXIF block). */
function fromTiff(b: Uint8Array, start: number, end: number): Orientation {
  if (end - start < 8) return 1;
  const view = new DataView(b.buffer, b.byteOffset + start, end - start);
  const little = view.getUint16(0) === 0x4949;
  if (!little && view.getUint16(0) !== 0x4d4d) return 1;
  const ifd = view.getUint32(4, little);
  if (ifd + 2 > view.byteLength) return 1;
  const count = view.getUint16(ifd, little);
  for (let i = 0; i < count; i++) {
    const entry = ifd + 2 + i * 12;
    if (entry + 12 > view.byteLength) return 1;
    if (view.getUint16(entry, little) === ORIENTATION_TAG) {
      const value = view.getUint16(entry + 8, little);
      return value >= 1 && value <= 8 ? (value as Orientation) : 1;
    }
  }
  return 1;
}

const isExifHeader = (b: Uint8Array, at: number) =>
  b[at] === 0x45 && b[at + 1] === 0x78 && b[at + 2] === 0x69 && b[at + 3] === 0x66 && b[at + 4] === 0 && b[at + 5] === 0;

function jpegOrientation(b: Uint8Array): Orientation {
  let i = 2;
  while (i + 4 <= b.length && b[i] === 0xff) {
    const marker = b[i + 1]!;
    if (marker === 0xda || marker === 0xd9) break; // image data: no metadata after this point matters
    const length = (b[i + 2]! << 8) | b[i + 3]!;
    if (marker === 0xe1 && isExifHeader(b, i + 4)) return fromTiff(b, i + 10, Math.min(b.length, i + 2 + length));
    i += 2 + length;
  }
  return 1;
}

function pngOrientation(b: Uint8Array): Orientation {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 8; i + 8 <= b.length; ) {
    const length = view.getUint32(i);
    const type = String.fromCharCode(b[i + 4]!, b[i + 5]!, b[i + 6]!, b[i + 7]!);
    if (type === 'eXIf') return fromTiff(b, i + 8, Math.min(b.length, i + 8 + length));
    if (type === 'IDAT') break;
    i += 12 + length;
  }
  return 1;
}

function webpOrientation(b: Uint8Array): Orientation {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 12; i + 8 <= b.length; ) {
    const type = String.fromCharCode(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!);
    const length = view.getUint32(i + 4, true);
    if (type === 'EXIF') {
      const start = isExifHeader(b, i + 8) ? i + 14 : i + 8;
      return fromTiff(b, start, Math.min(b.length, i + 8 + length));
    }
    i += 8 + length + (length & 1);
  }
  return 1;
}

export function readOrientation(bytes: Uint8Array, format: ImageFormat): Orientation {
  try {
    if (format === 'jpeg') return jpegOrientation(bytes);
    if (format === 'png') return pngOrientation(bytes);
    if (format === 'webp') return webpOrientation(bytes);
  } catch {
    // Malformed metadata: show the image as stored.
  }
  return 1;
}
