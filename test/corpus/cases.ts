/**
 * The hostile-input corpus as a table: every bad, odd or tricky request the edge must survive,
 * with the status and JSON error code it must get (docs/api.md, "Errors"), or 200 with predictions for
 * the valid-but-unusual images. test/hostile-inputs.test.ts sends each one to a real Node edge and
 * runs each image through both codecs in-process (sharp on Node, photon on Workers).
 *
 * The bytes are small files in test/corpus/files/ (built by make.ts, listed in README.md), or made
 * at test time when too big to commit. Where photon ends differently from sharp, the case says so
 * and why (`photon`).
 */
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import type { ErrorCode } from '../../shared/protocol.ts';
import { CORPUS_DIR } from './make.ts';
import { chunkedBody } from '../helpers/bad-uploads.ts';

/** The edge's defaults, which the test edge keeps. */
export const MAX_BODY_BYTES = 10 * 1024 * 1024;
export const MAX_PIXELS = 40_000_000;

export type Group =
  | 'control'
  | 'not an image'
  | 'polyglot'
  | 'truncated or corrupt'
  | 'too large'
  | 'valid but unusual'
  | 'request body'
  | 'multipart'
  | 'query'
  | 'route';

/** 200 with `predictions` results (default 5), or an error status with its JSON code. */
export type Expected = { status: 200; predictions?: number } | { status: 400 | 404 | 405 | 413 | 415; code: ErrorCode };

/** What probe + codec make of an image in-process: a tensor, or the ApiError's "status code". */
export type Outcome = 'ok' | `${number} ${ErrorCode}`;

/** A request to send: through fetch, or (for what fetch refuses to send) a raw node:http request. */
export type Send =
  | { path?: string; init: RequestInit }
  | { path?: string; raw: { method: string; headers: Record<string, string>; body: Uint8Array; end: boolean } };

export interface HostileCase {
  name: string;
  group: Group;
  /** The bytes under test: a corpus file, or made at test time. */
  input?: { file: string } | { made: string; make: () => Promise<Uint8Array> };
  /** How it is sent; by default the bytes as the multipart file field "image". */
  send?: (bytes: Uint8Array, ctx: { jpeg: Uint8Array }) => Send;
  /** The bytes reach the probe and codec as the upload (so the in-process codec run applies). */
  image: boolean;
  expect: Expected;
  /** photon's in-process outcome where it differs from sharp's (= the HTTP answer on Node), and why. */
  photon?: { outcome: Outcome; why: string };
}

const ok = (predictions?: number): Expected => ({ status: 200, ...(predictions ? { predictions } : {}) });
const err = (status: 400 | 404 | 405 | 413 | 415, code: ErrorCode): Expected => ({ status, code });
const UNSUPPORTED = err(415, 'unsupported_media_type');
const CORRUPT = err(400, 'corrupt_image');
const TOO_LARGE = err(413, 'image_too_large');

const blob = (bytes: Uint8Array, type = 'application/octet-stream') => new Blob([bytes as Uint8Array<ArrayBuffer>], { type });
const form = (...parts: [name: string, value: Blob | string, filename?: string][]) => {
  const body = new FormData();
  for (const [name, value, filename] of parts) {
    if (typeof value === 'string') body.append(name, value);
    else body.append(name, value, filename);
  }
  return body;
};
const multipart =
  (filename: string, type: string) =>
  (bytes: Uint8Array): Send => ({ init: { method: 'POST', body: form(['image', blob(bytes, type), filename]) } });
const raw =
  (contentType: string | null, path?: string) =>
  (bytes: Uint8Array): Send => ({
    path,
    init: { method: 'POST', headers: contentType === null ? {} : { 'content-type': contentType }, body: bytes as Uint8Array<ArrayBuffer> },
  });
const rawMultipart = (contentType: string, body: string | Uint8Array): Send => ({
  init: { method: 'POST', headers: { 'content-type': contentType }, body: body as string },
});

const MIME: Record<string, string> = {
  jpg: 'image/jpeg',
  png: 'image/png',
  gif: 'image/gif',
  webp: 'image/webp',
  svg: 'image/svg+xml',
  html: 'text/html',
  pdf: 'application/pdf',
  zip: 'application/zip',
  tiff: 'image/tiff',
  bmp: 'image/bmp',
  avif: 'image/avif',
  heic: 'image/heic',
  ico: 'image/x-icon',
  jxl: 'image/jxl',
  wav: 'audio/wav',
  txt: 'text/plain',
};

/** A corpus file uploaded as the multipart field "image", with the Content-Type its name implies. */
function file(group: Group, name: string, fileName: string, expect: Expected, extra: Partial<HostileCase> = {}): HostileCase {
  const type = MIME[fileName.split('.').pop()!] ?? 'application/octet-stream';
  return { name, group, input: { file: fileName }, send: multipart(fileName, type), image: true, expect, ...extra };
}

const boundary = '----hostile-boundary-7f3a';
const part = (name: string, body: string, filename = 'a.jpg') =>
  `--${boundary}\r\nContent-Disposition: form-data; name="${name}"; filename="${filename}"\r\nContent-Type: image/jpeg\r\n\r\n${body}\r\n`;

export const cases: HostileCase[] = [
  file('control', 'a plain JPEG (control)', 'baseline.jpg', ok()),

  // ---- not an image: refused by magic bytes, whatever the Content-Type claims
  {
    name: 'plain text sent as a raw image/png body',
    group: 'not an image',
    input: { file: 'text.txt' },
    send: raw('image/png'),
    image: true,
    expect: UNSUPPORTED,
  },
  file('not an image', 'SVG with a script', 'drawing.svg', UNSUPPORTED),
  {
    name: 'SVG as a raw image/svg+xml body',
    group: 'not an image',
    input: { file: 'drawing.svg' },
    send: raw('image/svg+xml'),
    image: true,
    expect: UNSUPPORTED,
  },
  file('not an image', 'HTML page', 'page.html', UNSUPPORTED),
  file('not an image', 'PDF document', 'document.pdf', UNSUPPORTED),
  file('not an image', 'ZIP archive (holding a JPEG)', 'archive.zip', UNSUPPORTED),
  file('not an image', 'TIFF', 'image.tiff', UNSUPPORTED),
  file('not an image', 'BMP', 'image.bmp', UNSUPPORTED),
  file('not an image', 'AVIF', 'image.avif', UNSUPPORTED),
  file('not an image', 'HEIC (ISO-BMFF header)', 'heic-header.heic', UNSUPPORTED),
  file('not an image', 'ICO holding a PNG', 'icon.ico', UNSUPPORTED),
  file('not an image', 'JPEG XL codestream (starts with 0xFF like JPEG)', 'jpeg-xl.jxl', UNSUPPORTED),
  file('not an image', 'RIFF WAVE audio (RIFF like WebP)', 'sound.wav', UNSUPPORTED),

  // ---- polyglots: judged by what they are as images
  file('polyglot', 'GIF that is also JavaScript (GIF89a/*...*/=1;alert())', 'gif-js-polyglot.gif', ok()),
  file('polyglot', 'HTML page starting with GIF89a: its "screen" is 29500x29283', 'html-with-gif-magic.gif', TOO_LARGE),
  file('polyglot', 'JPEG with a ZIP appended', 'jpeg-zip-polyglot.jpg', ok()),
  file('polyglot', 'PNG with an HTML/script tEXt chunk', 'png-html-polyglot.png', ok()),

  // ---- truncated or corrupt
  file('truncated or corrupt', 'truncated JPEG (half)', 'truncated.jpg', CORRUPT),
  file('truncated or corrupt', 'truncated PNG (half)', 'truncated.png', CORRUPT),
  file('truncated or corrupt', 'truncated WebP (half)', 'truncated.webp', CORRUPT),
  file('truncated or corrupt', 'truncated GIF (half)', 'truncated.gif', CORRUPT),
  file('truncated or corrupt', 'valid JPEG header, then garbage', 'jpeg-then-garbage.jpg', CORRUPT),
  file('truncated or corrupt', 'JPEG without its EOI marker', 'jpeg-no-eoi.jpg', CORRUPT),
  file('truncated or corrupt', 'JPEG magic bytes only (3 bytes)', 'jpeg-magic-only.jpg', CORRUPT),
  file('truncated or corrupt', 'JPEG with height 0 in SOF (DNL-style)', 'jpeg-dnl-zero-height.jpg', CORRUPT),
  file('truncated or corrupt', 'JPEG with the scan before the frame header', 'jpeg-sos-before-sof.jpg', CORRUPT),
  file('truncated or corrupt', 'JPEG with a second SOF claiming 6000x6000', 'jpeg-two-sof.jpg', CORRUPT),
  file('truncated or corrupt', 'JPEG whose SOF claims 64x4000 over 64x48 of scan data', 'jpeg-sof-taller-than-data.jpg', CORRUPT, {
    photon: {
      outcome: 'ok',
      why: "libjpeg warns 'premature end of data segment' (failOn: warning refuses it); jpeg-decoder fills the rows the data never reaches",
    },
  }),
  file('truncated or corrupt', 'PNG signature only', 'png-signature-only.png', CORRUPT),
  file('truncated or corrupt', 'PNG with a bad IHDR CRC', 'png-bad-ihdr-crc.png', CORRUPT),
  file('truncated or corrupt', 'PNG with a bad IDAT CRC', 'png-bad-idat-crc.png', CORRUPT),
  file('truncated or corrupt', 'PNG with garbage in the zlib stream (CRC correct)', 'png-bad-zlib.png', CORRUPT),
  file('truncated or corrupt', 'PNG with width 0', 'png-zero-width.png', CORRUPT),
  file('truncated or corrupt', 'PNG with a chunk before IHDR', 'png-ihdr-not-first.png', CORRUPT),
  file('truncated or corrupt', 'PNG header claiming 6000x6000 (within the limit) and no pixel data', 'png-6000x6000-no-data.png', CORRUPT),
  file('truncated or corrupt', 'PNG without IEND', 'png-no-iend.png', ok(), {
    photon: { outcome: '400 corrupt_image', why: 'libpng stops at the last IDAT; the png crate wants IEND and panics at end of input' },
  }),
  file('truncated or corrupt', 'APNG whose fcTL frame claims 16383x16383 in a 64x48 canvas', 'apng-frame-larger-than-canvas.png', ok(), {
    photon: {
      outcome: '400 corrupt_image',
      why: 'libpng ignores APNG chunks; the png crate validates fcTL against IHDR (and refuses before allocating)',
    },
  }),
  file('truncated or corrupt', 'GIF with a 0x0 logical screen', 'gif-zero-screen.gif', CORRUPT),
  file('truncated or corrupt', 'GIF signature only', 'gif-header-only.gif', CORRUPT),
  file('truncated or corrupt', 'WebP: RIFF header only', 'webp-riff-only.webp', CORRUPT),
  file('truncated or corrupt', 'WebP VP8X canvas 16x16 around a 64x48 image', 'webp-canvas-mismatch.webp', CORRUPT),
  file('truncated or corrupt', 'WebP with a bad VP8 start code', 'webp-bad-vp8-start-code.webp', CORRUPT),
  file('truncated or corrupt', 'WebP missing its last byte', 'webp-minus-one-byte.webp', CORRUPT, {
    photon: { outcome: 'ok', why: 'libwebp refuses a chunk shorter than its size; image-webp decodes the frame, whose data is complete' },
  }),

  // ---- decompression bombs and size limits
  file('too large', 'PNG claiming 50,000 x 50,000 (header only)', 'png-50000x50000.png', TOO_LARGE),
  file('too large', 'JPEG whose SOF claims 65000x65000, 305-byte file', 'jpeg-sof-65000x65000.jpg', TOO_LARGE),
  file('too large', 'WebP VP8X canvas claiming 16383x16383', 'webp-vp8x-16383x16383.webp', TOO_LARGE),
  file('too large', 'WebP 16x16 canvas around a VP8 frame claiming 16383x16383', 'webp-16x16-canvas-16383-frame.webp', TOO_LARGE),
  file('too large', 'GIF 1x1 screen holding a 60000x60000 frame', 'gif-1x1-screen-60000-frame.gif', TOO_LARGE),
  file('too large', 'GIF 1x1 screen holding a 7000x7000 frame (49 MP)', 'gif-1x1-screen-7000-frame.gif', TOO_LARGE),
  {
    name: 'raw body one byte over MAX_BODY_BYTES',
    group: 'too large',
    send: () => raw('image/jpeg')(new Uint8Array(MAX_BODY_BYTES + 1)),
    image: false,
    expect: err(413, 'payload_too_large'),
  },
  {
    name: 'multipart file over MAX_BODY_BYTES',
    group: 'too large',
    send: () => multipart('big.jpg', 'image/jpeg')(new Uint8Array(MAX_BODY_BYTES + 10)),
    image: false,
    expect: err(413, 'payload_too_large'),
  },
  {
    name: 'Content-Length claiming 1 GiB (body never sent)',
    group: 'too large',
    send: (_, { jpeg }) => ({
      raw: { method: 'POST', headers: { 'content-type': 'image/jpeg', 'content-length': String(2 ** 30) }, body: jpeg, end: false },
    }),
    image: false,
    expect: err(413, 'payload_too_large'),
  },
  {
    name: 'chunked body streaming past the limit (no Content-Length)',
    group: 'too large',
    send: () => {
      const body = chunkedBody(2 * MAX_BODY_BYTES);
      return { init: { method: 'POST', headers: { 'content-type': 'image/png' }, body, duplex: 'half' } as RequestInit };
    },
    image: false,
    expect: err(413, 'payload_too_large'),
  },

  // ---- valid but unusual: classified
  file('valid but unusual', 'CMYK JPEG', 'cmyk.jpg', ok()),
  file('valid but unusual', '16-bit RGB PNG', 'rgb16.png', ok()),
  file('valid but unusual', 'grayscale JPEG', 'gray.jpg', ok()),
  file('valid but unusual', '16-bit grayscale PNG', 'gray16.png', ok()),
  file('valid but unusual', 'grayscale + alpha PNG', 'gray-alpha.png', ok()),
  file('valid but unusual', 'palette PNG', 'palette.png', ok()),
  file('valid but unusual', 'palette PNG with transparency (tRNS)', 'palette-alpha.png', ok()),
  file('valid but unusual', 'RGBA PNG', 'rgba.png', ok()),
  file('valid but unusual', 'WebP with alpha', 'alpha.webp', ok()),
  file('valid but unusual', 'lossless WebP', 'lossless.webp', ok()),
  file('valid but unusual', 'progressive JPEG', 'progressive.jpg', ok()),
  file('valid but unusual', 'interlaced (Adam7) PNG', 'interlaced.png', ok()),
  file('valid but unusual', 'JPEG with a Display P3 ICC profile', 'icc-p3.jpg', ok()),
  file('valid but unusual', 'animated GIF (3 frames)', 'animated.gif', ok()),
  file('valid but unusual', 'animated WebP (3 frames)', 'animated.webp', ok()),
  file('valid but unusual', 'animated PNG (2 frames)', 'apng.png', ok()),
  file('valid but unusual', 'EXIF-rotated JPEG (orientation 6)', 'exif-orientation-6.jpg', ok()),
  file('valid but unusual', 'EXIF-rotated JPEG (orientation 8)', 'exif-orientation-8.jpg', ok()),
  file('valid but unusual', 'EXIF orientation 9 (out of range: shown as stored)', 'exif-orientation-9.jpg', ok()),
  file('valid but unusual', 'EXIF IFDs pointing at themselves (next, Exif and GPS IFD loops)', 'exif-ifd-loop.jpg', ok()),
  file('valid but unusual', 'EXIF IFD offset far past the block', 'exif-ifd-offset-out-of-range.jpg', ok()),
  file('valid but unusual', 'EXIF IFD claiming 65535 entries in 26 bytes', 'exif-65535-entries.jpg', ok()),
  file('valid but unusual', 'EXIF entry with a 2^31 value count at offset 0xFFFFFFF0', 'exif-huge-value-count.jpg', ok()),
  file('valid but unusual', 'JPEG with 100 COM segments', 'jpeg-100-comments.jpg', ok()),
  file('valid but unusual', 'PNG with an eXIf orientation 6', 'png-exif-orientation-6.png', ok()),
  file('valid but unusual', 'WebP with an EXIF chunk (orientation 6)', 'webp-exif-orientation-6.webp', ok()),
  file('valid but unusual', 'GIF 1x1 screen holding a 64x48 frame', 'gif-1x1-screen-64x48-frame.gif', ok()),
  file('valid but unusual', '1x1 PNG', '1x1.png', ok()),
  file('valid but unusual', '1x1 JPEG', '1x1.jpg', ok()),
  file('valid but unusual', '1x1 GIF', '1x1.gif', ok()),
  file('valid but unusual', '1x1 WebP', '1x1.webp', ok()),
  file('valid but unusual', '10000x1 PNG', '10000x1.png', ok()),
  file('valid but unusual', '1x10000 JPEG', '1x10000.jpg', ok()),
  {
    name: '6000x6000 PNG of one colour (36 MP, within the limit; 100 KB)',
    group: 'valid but unusual',
    input: {
      made: 'sharp: 6000x6000 solid PNG',
      make: () =>
        sharp({ create: { width: 6000, height: 6000, channels: 3, background: '#808040' } })
          .png()
          .toBuffer(),
    },
    send: multipart('big.png', 'image/png'),
    image: true,
    expect: ok(),
  },

  // ---- how the body is sent
  {
    name: 'zero-byte raw body',
    group: 'request body',
    send: () => raw('image/jpeg')(new Uint8Array(0)),
    image: false,
    expect: err(400, 'empty_body'),
  },
  {
    name: 'zero-byte multipart file',
    group: 'request body',
    send: () => multipart('empty.jpg', 'image/jpeg')(new Uint8Array(0)),
    image: false,
    expect: err(400, 'empty_body'),
  },
  {
    name: 'no body and no Content-Type',
    group: 'request body',
    send: () => ({ init: { method: 'POST' } }),
    image: false,
    expect: err(400, 'missing_image'),
  },
  {
    name: 'JSON body',
    group: 'request body',
    send: () => rawMultipart('application/json', '{"image":"/9j/4AAQSkZJRg=="}'),
    image: false,
    expect: UNSUPPORTED,
  },
  {
    name: 'form-urlencoded body',
    group: 'request body',
    send: () => rawMultipart('application/x-www-form-urlencoded', 'image=%FF%D8%FF%E0'),
    image: false,
    expect: UNSUPPORTED,
  },
  {
    name: 'JPEG bytes with no Content-Type',
    group: 'request body',
    input: { file: 'baseline.jpg' },
    send: raw(null),
    image: false,
    expect: UNSUPPORTED,
  },
  {
    name: 'JPEG bytes as text/plain',
    group: 'request body',
    input: { file: 'baseline.jpg' },
    send: raw('text/plain'),
    image: false,
    expect: UNSUPPORTED,
  },
  {
    name: 'JPEG as raw application/octet-stream',
    group: 'request body',
    input: { file: 'baseline.jpg' },
    send: raw('application/octet-stream'),
    image: true,
    expect: ok(),
  },
  {
    name: 'JPEG as raw IMAGE/JPEG (upper case)',
    group: 'request body',
    input: { file: 'baseline.jpg' },
    send: raw('IMAGE/JPEG'),
    image: true,
    expect: ok(),
  },
  {
    name: 'PNG sent as raw image/jpeg (type sniffed, not trusted)',
    group: 'request body',
    input: { file: 'rgba.png' },
    send: raw('image/jpeg'),
    image: true,
    expect: ok(),
  },
  {
    name: 'Content-Type image/jpeg with a multipart body',
    group: 'request body',
    input: { file: 'baseline.jpg' },
    send: (bytes) =>
      raw('image/jpeg')(Buffer.concat([Buffer.from(part('image', '').slice(0, -2)), bytes, Buffer.from(`\r\n--${boundary}--\r\n`)])),
    image: false,
    expect: UNSUPPORTED,
  },

  // ---- multipart structure
  {
    name: 'multipart without an "image" field',
    group: 'multipart',
    input: { file: 'baseline.jpg' },
    send: (b) => ({ init: { method: 'POST', body: form(['photo', blob(b, 'image/jpeg'), 'a.jpg']) } }),
    image: false,
    expect: err(400, 'missing_image'),
  },
  {
    name: 'multipart with nine "image" files (over the default limit of 8)',
    group: 'multipart',
    input: { file: 'baseline.jpg' },
    send: (b) => ({
      init: {
        method: 'POST',
        body: form(...Array.from({ length: 9 }, (_, i) => ['image', blob(b), `${i}.jpg`] as [string, Blob, string])),
      },
    }),
    image: false,
    expect: err(400, 'too_many_files'),
  },
  {
    name: 'multipart "image" as a text field',
    group: 'multipart',
    send: () => ({ init: { method: 'POST', body: form(['image', 'not a file']) } }),
    image: false,
    expect: err(400, 'missing_image'),
  },
  {
    name: 'multipart with a wrong boundary',
    group: 'multipart',
    send: () => rawMultipart('multipart/form-data; boundary=nope', part('image', 'x')),
    image: false,
    expect: err(400, 'bad_request'),
  },
  {
    name: 'multipart without a boundary parameter',
    group: 'multipart',
    send: () => rawMultipart('multipart/form-data', part('image', 'x')),
    image: false,
    expect: err(400, 'bad_request'),
  },
  {
    name: 'multipart with no closing boundary',
    group: 'multipart',
    send: () => rawMultipart(`multipart/form-data; boundary=${boundary}`, part('image', 'x'.repeat(100))),
    image: false,
    expect: err(400, 'bad_request'),
  },
  {
    name: 'multipart content type with an empty body',
    group: 'multipart',
    send: () => rawMultipart(`multipart/form-data; boundary=${boundary}`, ''),
    image: false,
    expect: err(400, 'bad_request'),
  },
  {
    name: 'multipart/mixed instead of form-data',
    group: 'multipart',
    send: () => rawMultipart(`multipart/mixed; boundary=${boundary}`, `${part('image', 'x')}--${boundary}--\r\n`),
    image: false,
    expect: UNSUPPORTED,
  },
  {
    name: 'multipart field name of 60,000 characters (no "image")',
    group: 'multipart',
    input: { file: 'baseline.jpg' },
    send: (b) => ({ init: { method: 'POST', body: form(['n'.repeat(60_000), blob(b, 'image/jpeg'), 'a.jpg']) } }),
    image: false,
    expect: err(400, 'missing_image'),
  },
  {
    name: '"image" plus a 60,000-character field name',
    group: 'multipart',
    input: { file: 'baseline.jpg' },
    send: (b) => ({ init: { method: 'POST', body: form(['image', blob(b, 'image/jpeg'), 'a.jpg'], ['n'.repeat(60_000), 'v']) } }),
    image: false,
    expect: ok(),
  },
  {
    name: '"image" plus 1000 other fields',
    group: 'multipart',
    input: { file: 'baseline.jpg' },
    send: (b) => ({
      init: {
        method: 'POST',
        body: form(
          ['image', blob(b, 'image/jpeg'), 'a.jpg'],
          ...Array.from({ length: 1000 }, (_, i) => [`f${i}`, 'v'] as [string, string]),
        ),
      },
    }),
    image: false,
    expect: ok(),
  },
  {
    name: 'filename "../../etc/passwd" and part type text/plain',
    group: 'multipart',
    input: { file: 'baseline.jpg' },
    send: multipart('../../etc/passwd', 'text/plain'),
    image: true,
    expect: ok(),
  },
  {
    name: 'filename with NUL, CR/LF and non-ASCII',
    group: 'multipart',
    input: { file: 'baseline.jpg' },
    send: multipart('\u00efmage\u0000.jpg\r\nX-Injected: 1', 'image/jpeg'),
    image: true,
    expect: ok(),
  },

  // ---- query parameters
  ...(['0', 'abc', '1e3', '1e1', '0x10', '-1', '2.5', '', '21', '%00'] as const).map(
    (top): HostileCase => ({
      name: `?top=${top}`,
      group: 'query',
      input: { file: 'baseline.jpg' },
      send: (b) => ({ path: `/predict?top=${top}`, init: { method: 'POST', body: form(['image', blob(b, 'image/jpeg'), 'a.jpg']) } }),
      image: false,
      expect: err(400, 'invalid_parameter'),
    }),
  ),
  {
    name: '?resize=stretch',
    group: 'query',
    input: { file: 'baseline.jpg' },
    send: (b) => ({ path: '/predict?resize=stretch', init: { method: 'POST', body: form(['image', blob(b), 'a.jpg']) } }),
    image: false,
    expect: err(400, 'invalid_parameter'),
  },
  {
    name: '?top=3&top=4 (the first wins)',
    group: 'query',
    input: { file: 'baseline.jpg' },
    send: (b) => ({ path: '/predict?top=3&top=4', init: { method: 'POST', body: form(['image', blob(b), 'a.jpg']) } }),
    image: false,
    expect: ok(3),
  },
  {
    name: '?unknown=1 (ignored)',
    group: 'query',
    input: { file: 'baseline.jpg' },
    send: (b) => ({ path: '/predict?unknown=1&resize=center-crop', init: { method: 'POST', body: form(['image', blob(b), 'a.jpg']) } }),
    image: false,
    expect: ok(),
  },

  // ---- methods and routes
  ...(['GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const).map(
    (method): HostileCase => ({
      name: `${method} /predict`,
      group: 'route',
      send: () => ({ init: { method } }),
      image: false,
      expect: err(405, 'method_not_allowed'),
    }),
  ),
  ...(['/v0/classify', '/predict/', '/PREDICT', '/healthz/../predict%00', `/${'a'.repeat(4000)}`] as const).map(
    (path): HostileCase => ({
      name: `POST ${path.slice(0, 40)}${path.length > 40 ? '...' : ''}`,
      group: 'route',
      send: () => ({ path, init: { method: 'POST' } }),
      image: false,
      expect: err(404, 'not_found'),
    }),
  ),
  {
    name: 'POST /healthz',
    group: 'route',
    send: () => ({ path: '/healthz', init: { method: 'POST' } }),
    image: false,
    expect: err(404, 'not_found'),
  },
];

/** The bytes of a case's input (empty when it has none). */
export async function inputBytes(c: HostileCase): Promise<Uint8Array> {
  if (!c.input) return new Uint8Array(0);
  if ('file' in c.input) return new Uint8Array(await readFile(CORPUS_DIR + c.input.file));
  return c.input.make();
}

/** What a codec should make of an image case in-process: sharp's is the HTTP answer. */
export function expectedOutcome(c: HostileCase, codec: 'sharp' | 'photon'): Outcome {
  if (codec === 'photon' && c.photon) return c.photon.outcome;
  return c.expect.status === 200 ? 'ok' : `${c.expect.status} ${c.expect.code}`;
}
