/**
 * Byte-level builders for hand-crafted image files: CRCs, PNG chunks, JPEG segments, EXIF blocks,
 * GIF and WebP header fields, and the few non-image containers (ZIP, BMP, ICO) the hostile-input
 * corpus needs. Pure functions over Buffers; test/corpus/make.ts writes the corpus with them.
 */

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

/** CRC-32 (IEEE), as PNG chunks and ZIP entries use it. */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const byte of bytes) c = CRC_TABLE[(c ^ byte) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// ---------------------------------------------------------------------------------------- PNG

export const PNG_SIGNATURE = Buffer.from('\x89PNG\r\n\x1a\n', 'latin1');

export function pngChunk(type: string, data: Uint8Array = new Uint8Array(0), crc?: number): Buffer {
  const chunk = Buffer.alloc(12 + data.length);
  chunk.writeUInt32BE(data.length, 0);
  chunk.write(type, 4, 'latin1');
  chunk.set(data, 8);
  chunk.writeUInt32BE(crc ?? crc32(chunk.subarray(4, 8 + data.length)), 8 + data.length);
  return chunk;
}

export interface PngChunk {
  type: string;
  /** Offset of the chunk (its length field) in the file. */
  at: number;
  data: Buffer;
}

/** The chunks of a PNG, in order (stops at the end or at a chunk that overruns it). */
export function pngChunks(png: Buffer): PngChunk[] {
  const chunks: PngChunk[] = [];
  for (let at = 8; at + 12 <= png.length; ) {
    const length = png.readUInt32BE(at);
    if (at + 12 + length > png.length) break;
    chunks.push({ type: png.toString('latin1', at + 4, at + 8), at, data: png.subarray(at + 8, at + 8 + length) });
    at += 12 + length;
  }
  return chunks;
}

/** A PNG rebuilt from the signature and these chunks. */
export const pngFromChunks = (chunks: Buffer[]) => Buffer.concat([PNG_SIGNATURE, ...chunks]);

/** Insert chunks right after IHDR. */
export function pngInsertAfterIhdr(png: Buffer, ...chunks: Buffer[]): Buffer {
  const ihdrEnd = 8 + 12 + png.readUInt32BE(8);
  return Buffer.concat([png.subarray(0, ihdrEnd), ...chunks, png.subarray(ihdrEnd)]);
}

/** IHDR with other dimensions, CRC fixed (so only the size is a lie). */
export function pngWithSize(png: Buffer, width: number, height: number): Buffer {
  const out = Buffer.from(png);
  out.writeUInt32BE(width, 16);
  out.writeUInt32BE(height, 20);
  out.writeUInt32BE(crc32(out.subarray(12, 29)), 29);
  return out;
}

// --------------------------------------------------------------------------------------- JPEG

export interface JpegSegment {
  marker: number;
  /** Offset of the 0xFF of the marker. */
  at: number;
  /** Whole segment length including the marker (2 for standalone markers). */
  size: number;
}

/** Segments up to and including SOS (the entropy-coded data after it is not walked). */
export function jpegSegments(jpeg: Buffer): JpegSegment[] {
  const segments: JpegSegment[] = [];
  for (let at = 2; at + 4 <= jpeg.length && jpeg[at] === 0xff; ) {
    const marker = jpeg[at + 1]!;
    const size = 2 + jpeg.readUInt16BE(at + 2);
    segments.push({ marker, at, size });
    if (marker === 0xda) break;
    at += size;
  }
  return segments;
}

const isSof = (marker: number) => marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;

export function jpegSof(jpeg: Buffer): JpegSegment {
  const sof = jpegSegments(jpeg).find((s) => isSof(s.marker));
  if (!sof) throw new Error('no SOF segment');
  return sof;
}

/** The frame header (SOF) claiming other dimensions; the scan data stays what it was. */
export function jpegWithSize(jpeg: Buffer, width: number, height: number): Buffer {
  const out = Buffer.from(jpeg);
  const { at } = jpegSof(out);
  out.writeUInt16BE(height, at + 5);
  out.writeUInt16BE(width, at + 7);
  return out;
}

/** A marker segment (APPn, COM...) carrying `payload`; `length` overrides the length field. */
export function jpegSegment(marker: number, payload: Uint8Array, length = payload.length + 2): Buffer {
  const segment = Buffer.alloc(4 + payload.length);
  segment[0] = 0xff;
  segment[1] = marker;
  segment.writeUInt16BE(length & 0xffff, 2);
  segment.set(payload, 4);
  return segment;
}

/** Insert segments right after SOI. */
export const jpegInsertAfterSoi = (jpeg: Buffer, ...segments: Buffer[]) =>
  Buffer.concat([jpeg.subarray(0, 2), ...segments, jpeg.subarray(2)]);

/** An APP1 "Exif\0\0" segment around a TIFF block; `length` overrides its length field. */
export const exifApp1 = (tiffBlock: Buffer, length?: number) =>
  jpegSegment(0xe1, Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), tiffBlock]), length);

export type IfdEntry = [tag: number, type: number, count: number, value: number];

/**
 * A little-endian TIFF block with one IFD at `ifdOffset` (8 = right after the header) holding
 * `entries` (values inline), whose next-IFD pointer is `next`.
 */
export function tiffBlock(entries: IfdEntry[], { ifdOffset = 8, next = 0 }: { ifdOffset?: number; next?: number } = {}): Buffer {
  const ifdAt = 8;
  const block = Buffer.alloc(ifdAt + 2 + entries.length * 12 + 4);
  block.write('II', 0, 'latin1');
  block.writeUInt16LE(42, 2);
  block.writeUInt32LE(ifdOffset >>> 0, 4);
  block.writeUInt16LE(entries.length, ifdAt);
  entries.forEach(([tag, type, count, value], i) => {
    const at = ifdAt + 2 + i * 12;
    block.writeUInt16LE(tag, at);
    block.writeUInt16LE(type, at + 2);
    block.writeUInt32LE(count >>> 0, at + 4);
    block.writeUInt32LE(value >>> 0, at + 8);
  });
  block.writeUInt32LE(next >>> 0, ifdAt + 2 + entries.length * 12);
  return block;
}

export const ORIENTATION = 0x0112;
export const EXIF_IFD_POINTER = 0x8769;
export const GPS_IFD_POINTER = 0x8825;
export const SHORT = 3;
export const LONG = 4;

// ---------------------------------------------------------------------------------------- GIF

/** Logical screen size, and optionally the first image descriptor's size. */
export function gifWithSize(gif: Buffer, screen: [number, number], frame?: [number, number]): Buffer {
  const out = Buffer.from(gif);
  out.writeUInt16LE(screen[0], 6);
  out.writeUInt16LE(screen[1], 8);
  if (frame) {
    const at = gifFirstImageDescriptor(out);
    out.writeUInt16LE(frame[0], at + 5);
    out.writeUInt16LE(frame[1], at + 7);
  }
  return out;
}

/** Offset of the first image descriptor (0x2C), walking extensions. */
export function gifFirstImageDescriptor(gif: Buffer): number {
  let at = 13;
  if (gif[10]! & 0x80) at += 3 << ((gif[10]! & 7) + 1);
  while (at < gif.length) {
    if (gif[at] === 0x2c) return at;
    if (gif[at] !== 0x21) break;
    at += 2;
    while (at < gif.length && gif[at] !== 0) at += 1 + gif[at]!;
    at++;
  }
  throw new Error('no image descriptor');
}

// --------------------------------------------------------------------------------------- WebP

export function riff(form: string, ...chunks: Buffer[]): Buffer {
  const body = Buffer.concat([Buffer.from(form, 'latin1'), ...chunks]);
  const header = Buffer.alloc(8);
  header.write('RIFF', 0, 'latin1');
  header.writeUInt32LE(body.length, 4);
  return Buffer.concat([header, body]);
}

export function riffChunk(type: string, data: Uint8Array): Buffer {
  const chunk = Buffer.alloc(8 + data.length + (data.length & 1));
  chunk.write(type, 0, 'latin1');
  chunk.writeUInt32LE(data.length, 4);
  chunk.set(data, 8);
  return chunk;
}

/** A VP8X chunk: flags (0x02 animation, 0x08 EXIF, 0x10 alpha) and canvas size. */
export function vp8x(width: number, height: number, flags = 0): Buffer {
  const data = Buffer.alloc(10);
  data[0] = flags;
  data.writeUIntLE(width - 1, 4, 3);
  data.writeUIntLE(height - 1, 7, 3);
  return riffChunk('VP8X', data);
}

/** The chunks after "WEBP" of a simple (VP8 or VP8L) WebP, as they are. */
export const webpChunks = (webp: Buffer) => webp.subarray(12);

/** Width and height fields of a simple lossy WebP's VP8 key frame (the chunk starts at 12). */
export function webpVp8WithSize(webp: Buffer, width: number, height: number, chunkAt = 12): Buffer {
  const out = Buffer.from(webp);
  if (out.toString('latin1', chunkAt, chunkAt + 4) !== 'VP8 ') throw new Error('not a VP8 chunk');
  out.writeUInt16LE(width & 0x3fff, chunkAt + 14);
  out.writeUInt16LE(height & 0x3fff, chunkAt + 16);
  return out;
}

// ------------------------------------------------------------------------------ other formats

/** A ZIP archive with one stored (uncompressed) file. */
export function zipWithOneFile(name: string, content: Buffer): Buffer {
  const nameBytes = Buffer.from(name, 'latin1');
  const crc = crc32(content);
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt16LE(10, 4); // version needed
  local.writeUInt32LE(crc, 14);
  local.writeUInt32LE(content.length, 18);
  local.writeUInt32LE(content.length, 22);
  local.writeUInt16LE(nameBytes.length, 26);
  const central = Buffer.alloc(46);
  central.writeUInt32LE(0x02014b50, 0);
  central.writeUInt16LE(20, 4);
  central.writeUInt16LE(10, 6);
  central.writeUInt32LE(crc, 16);
  central.writeUInt32LE(content.length, 20);
  central.writeUInt32LE(content.length, 24);
  central.writeUInt16LE(nameBytes.length, 28);
  const centralAt = local.length + nameBytes.length + content.length;
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(1, 8);
  end.writeUInt16LE(1, 10);
  end.writeUInt32LE(central.length + nameBytes.length, 12);
  end.writeUInt32LE(centralAt, 16);
  return Buffer.concat([local, nameBytes, content, central, nameBytes, end]);
}

/** A width x height 24-bit BMP of one colour. */
export function bmp(width: number, height: number, [r, g, b]: [number, number, number]): Buffer {
  const rowSize = Math.ceil((width * 3) / 4) * 4;
  const file = Buffer.alloc(54 + rowSize * height);
  file.write('BM', 0, 'latin1');
  file.writeUInt32LE(file.length, 2);
  file.writeUInt32LE(54, 10);
  file.writeUInt32LE(40, 14);
  file.writeInt32LE(width, 18);
  file.writeInt32LE(height, 22);
  file.writeUInt16LE(1, 26);
  file.writeUInt16LE(24, 28);
  file.writeUInt32LE(rowSize * height, 34);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) file.set([b, g, r], 54 + y * rowSize + x * 3);
  return file;
}

/** An ICO file holding one PNG image. */
export function icoWithPng(png: Buffer, width: number, height: number): Buffer {
  const header = Buffer.alloc(6 + 16);
  header.writeUInt16LE(0, 0);
  header.writeUInt16LE(1, 2); // icon
  header.writeUInt16LE(1, 4); // one image
  header[6] = width & 0xff;
  header[7] = height & 0xff;
  header.writeUInt16LE(1, 10); // planes
  header.writeUInt16LE(32, 12); // bits per pixel
  header.writeUInt32LE(png.length, 14);
  header.writeUInt32LE(22, 18);
  return Buffer.concat([header, png]);
}

/** An ISO-BMFF `ftyp` box (HEIC, AVIF...) followed by an empty `meta` box. */
export function isoBmffHeader(brand: string, compatible: string[]): Buffer {
  const ftyp = Buffer.alloc(16 + 4 * compatible.length);
  ftyp.writeUInt32BE(ftyp.length, 0);
  ftyp.write('ftyp', 4, 'latin1');
  ftyp.write(brand, 8, 'latin1');
  compatible.forEach((b, i) => ftyp.write(b, 16 + 4 * i, 'latin1'));
  const meta = Buffer.alloc(12);
  meta.writeUInt32BE(12, 0);
  meta.write('meta', 4, 'latin1');
  return Buffer.concat([ftyp, meta]);
}
