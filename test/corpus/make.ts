/**
 * Writes the hostile-input corpus (test/corpus/files/): small bad, odd or tricky files, each built
 * from a synthetic picture made with sharp plus byte-level surgery (test/helpers/crafted.ts). The
 * files are committed; this script documents how each was made and rebuilds them:
 *
 *   npx tsx test/corpus/make.ts
 *
 * (sharp's encoders may change between versions, so a rebuild can change bytes; the expected
 * outcomes live in cases.ts and the test checks them.) Large inputs are not here: cases.ts
 * generates those at test time.
 */
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import sharp from 'sharp';
import {
  bmp,
  crc32,
  EXIF_IFD_POINTER,
  exifApp1,
  gifWithSize,
  GPS_IFD_POINTER,
  icoWithPng,
  isoBmffHeader,
  jpegInsertAfterSoi,
  jpegSegment,
  jpegSegments,
  jpegSof,
  jpegWithSize,
  LONG,
  ORIENTATION,
  PNG_SIGNATURE,
  pngChunk,
  pngChunks,
  pngFromChunks,
  pngInsertAfterIhdr,
  pngWithSize,
  riff,
  riffChunk,
  SHORT,
  tiffBlock,
  vp8x,
  webpChunks,
  webpVp8WithSize,
  zipWithOneFile,
} from '../helpers/crafted.ts';

export const CORPUS_DIR = new URL('./files/', import.meta.url).pathname;

/** 64x48: red left half, blue right half, a white square top left (so orientation shows). */
async function picture(width = 64, height = 48) {
  const png = await sharp({ create: { width, height, channels: 3, background: '#1040c0' } })
    .composite([
      { input: { create: { width: Math.max(1, Math.floor(width / 2)), height, channels: 3, background: '#d01010' } }, left: 0, top: 0 },
      {
        input: {
          create: {
            width: Math.max(1, Math.floor(width / 4)),
            height: Math.max(1, Math.floor(height / 3)),
            channels: 3,
            background: '#ffffff',
          },
        },
        left: 0,
        top: 0,
      },
    ])
    .removeAlpha()
    .png()
    .toBuffer();
  return sharp(png);
}

const half = (b: Buffer) => b.subarray(0, Math.floor(b.length / 2));
const text = (s: string) => Buffer.from(s, 'utf8');

export async function buildCorpus(): Promise<Record<string, Buffer>> {
  const jpeg = await (await picture()).jpeg({ quality: 80 }).toBuffer();
  const png = await (await picture()).png().toBuffer();
  const webp = await (await picture()).webp({ quality: 80 }).toBuffer();
  const gif = await (await picture()).gif().toBuffer();
  const frames = await Promise.all(
    ['#d01010', '#10c040', '#1040c0'].map((c) =>
      sharp({ create: { width: 64, height: 48, channels: 3, background: c } })
        .png()
        .toBuffer(),
    ),
  );
  const exifJpeg = (...args: Parameters<typeof tiffBlock>) => jpegInsertAfterSoi(jpeg, exifApp1(tiffBlock(...args)));
  const files: Record<string, Buffer> = {};

  // ---- the control: a plain JPEG (classified)
  files['baseline.jpg'] = jpeg;

  // ---- not images (415)
  files['text.txt'] = text('This is plain text, not an image.\n');
  files['drawing.svg'] = text(
    '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="48"><script>alert(1)</script><rect width="64" height="48" fill="red"/></svg>\n',
  );
  files['page.html'] = text('<!doctype html><html><body><img src="x" onerror="alert(1)"><p>not an image</p></body></html>\n');
  files['document.pdf'] = text(
    '%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n' +
      '3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 64 48]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n',
  );
  files['archive.zip'] = zipWithOneFile('inside.jpg', jpeg);
  files['image.tiff'] = await (await picture()).tiff({ compression: 'lzw' }).toBuffer();
  files['image.bmp'] = bmp(4, 3, [208, 16, 16]);
  files['image.avif'] = await (await picture()).avif({ quality: 50, effort: 0 }).toBuffer();
  files['heic-header.heic'] = isoBmffHeader('heic', ['mif1', 'heic']);
  files['icon.ico'] = icoWithPng(png, 64, 48);
  files['jpeg-xl.jxl'] = Buffer.concat([Buffer.from([0xff, 0x0a]), Buffer.alloc(30, 0x11)]);
  files['sound.wav'] = riff('WAVE', riffChunk('fmt ', Buffer.alloc(16)), riffChunk('data', Buffer.alloc(8)));

  // ---- polyglots
  // GIF whose first bytes are also JavaScript: `GIF89a/*` opens a comment that closes after the
  // trailer, then `=1;alert(1)`. The "/*" is the screen width (10799 px); the image is still valid.
  const gifJs = Buffer.from(gifWithSize(gif, [0x2a2f, 48]));
  files['gif-js-polyglot.gif'] = Buffer.concat([gifJs, text('*/=1;alert("GIF and JavaScript");//')]);
  // An HTML page that starts with GIF89a: its "screen" is '<s' x 'cr' = 29500 x 29283 px.
  files['html-with-gif-magic.gif'] = text('GIF89a<script>alert("GIF magic, HTML body")</script>\n');
  files['jpeg-zip-polyglot.jpg'] = Buffer.concat([jpeg, zipWithOneFile('payload.js', text('alert(1)\n'))]);
  files['png-html-polyglot.png'] = pngInsertAfterIhdr(png, pngChunk('tEXt', text('Comment\0<html><script>alert(1)</script></html>')));

  // ---- truncated or corrupt
  files['truncated.jpg'] = half(jpeg);
  files['truncated.png'] = half(png);
  files['truncated.webp'] = half(webp);
  files['truncated.gif'] = half(gif);
  files['jpeg-then-garbage.jpg'] = Buffer.concat([jpeg.subarray(0, jpegSegments(jpeg).at(-1)!.at + 20), Buffer.alloc(600, 0x42)]);
  files['jpeg-no-eoi.jpg'] = jpeg.subarray(0, jpeg.length - 2);
  files['jpeg-magic-only.jpg'] = Buffer.from([0xff, 0xd8, 0xff]);
  files['jpeg-dnl-zero-height.jpg'] = jpegWithSize(jpeg, 64, 0);
  {
    const sof = jpegSof(jpeg);
    const sos = jpegSegments(jpeg).find((s) => s.marker === 0xda)!;
    const sofBytes = jpeg.subarray(sof.at, sof.at + sof.size);
    const withoutSof = Buffer.concat([jpeg.subarray(0, sof.at), jpeg.subarray(sof.at + sof.size)]);
    // Move the frame header after the scan header: the probe meets SOS first.
    const sosAt = sos.at - sof.size;
    files['jpeg-sos-before-sof.jpg'] = Buffer.concat([
      withoutSof.subarray(0, sosAt),
      withoutSof.subarray(sosAt, sosAt + sos.size),
      sofBytes,
      withoutSof.subarray(sosAt + sos.size),
    ]);
    const second = Buffer.from(sofBytes);
    second.writeUInt16BE(6000, 5);
    second.writeUInt16BE(6000, 7);
    files['jpeg-two-sof.jpg'] = Buffer.concat([jpeg.subarray(0, sof.at + sof.size), second, jpeg.subarray(sof.at + sof.size)]);
  }
  files['jpeg-sof-taller-than-data.jpg'] = jpegWithSize(jpeg, 64, 4000);
  files['png-signature-only.png'] = Buffer.from(PNG_SIGNATURE);
  {
    const bad = Buffer.from(png);
    bad.writeUInt32BE((bad.readUInt32BE(29) ^ 0xdeadbeef) >>> 0, 29);
    files['png-bad-ihdr-crc.png'] = bad;
  }
  {
    const idat = pngChunks(png).find((c) => c.type === 'IDAT')!;
    const badCrc = Buffer.from(png);
    const crcAt = idat.at + 8 + idat.data.length;
    badCrc.writeUInt32BE((badCrc.readUInt32BE(crcAt) ^ 1) >>> 0, crcAt);
    files['png-bad-idat-crc.png'] = badCrc;
    // Garbage inside the zlib stream, with a correct CRC: only the decompressor can tell.
    const data = Buffer.from(idat.data);
    data.fill(0x55, 2, Math.min(data.length - 4, 18));
    files['png-bad-zlib.png'] = pngFromChunks(
      pngChunks(png).map((c) => (c.type === 'IDAT' ? pngChunk('IDAT', data) : pngChunk(c.type, c.data))),
    );
  }
  files['png-zero-width.png'] = pngWithSize(png, 0, 48);
  files['png-no-iend.png'] = png.subarray(0, png.length - 12);
  files['png-ihdr-not-first.png'] = pngFromChunks([
    pngChunk('tEXt', text('Comment\0first')),
    ...pngChunks(png).map((c) => pngChunk(c.type, c.data)),
  ]);
  files['png-6000x6000-no-data.png'] = pngWithSize(png, 6000, 6000);
  files['gif-zero-screen.gif'] = gifWithSize(gif, [0, 0]);
  files['gif-header-only.gif'] = Buffer.from('GIF89a', 'latin1');
  files['webp-riff-only.webp'] = riff('WEBP');
  files['webp-canvas-mismatch.webp'] = riff('WEBP', vp8x(16, 16), webpChunks(webp));
  files['webp-minus-one-byte.webp'] = webp.subarray(0, webp.length - 1);
  {
    const bad = Buffer.from(webp);
    bad.set([0, 0, 0], 23); // VP8 key frame start code 9d 01 2a
    files['webp-bad-vp8-start-code.webp'] = bad;
  }
  {
    // APNG whose fcTL frame claims 16383x16383 inside the 64x48 canvas.
    const actl = Buffer.alloc(8);
    actl.writeUInt32BE(1, 0);
    const fctl = Buffer.alloc(26);
    fctl.writeUInt32BE(16383, 4);
    fctl.writeUInt32BE(16383, 8);
    fctl.writeUInt16BE(1, 20);
    fctl.writeUInt16BE(10, 22);
    files['apng-frame-larger-than-canvas.png'] = pngInsertAfterIhdr(png, pngChunk('acTL', actl), pngChunk('fcTL', fctl));
  }

  // ---- decompression bombs and size limits (413)
  files['png-50000x50000.png'] = pngWithSize(png, 50_000, 50_000).subarray(0, 33 + 64);
  files['jpeg-sof-65000x65000.jpg'] = jpegWithSize(jpeg, 65_000, 65_000);
  files['webp-vp8x-16383x16383.webp'] = riff('WEBP', vp8x(16383, 16383), webpChunks(webp));
  files['webp-16x16-canvas-16383-frame.webp'] = riff('WEBP', vp8x(16, 16), webpChunks(webpVp8WithSize(webp, 16383, 16383)));
  files['gif-1x1-screen-60000-frame.gif'] = gifWithSize(gif, [1, 1], [60_000, 60_000]);
  files['gif-1x1-screen-7000-frame.gif'] = gifWithSize(gif, [1, 1], [7000, 7000]);

  // ---- valid but unusual (classified)
  const flat = await (await picture()).png().toBuffer();
  files['cmyk.jpg'] = await sharp(flat).toColourspace('cmyk').jpeg().toBuffer();
  files['rgb16.png'] = await sharp(flat).toColourspace('rgb16').png().toBuffer();
  files['gray.jpg'] = await sharp(flat).toColourspace('b-w').jpeg().toBuffer();
  files['gray16.png'] = await sharp(flat).toColourspace('grey16').png().toBuffer();
  files['gray-alpha.png'] = await sharp(flat).toColourspace('b-w').ensureAlpha(0.5).png().toBuffer();
  files['palette.png'] = await sharp(flat).png({ palette: true, colours: 4 }).toBuffer();
  files['palette-alpha.png'] = await sharp(flat).ensureAlpha(0.5).png({ palette: true, colours: 4 }).toBuffer();
  files['rgba.png'] = await sharp(flat).ensureAlpha(0.3).png().toBuffer();
  files['alpha.webp'] = await sharp(flat).ensureAlpha(0.3).webp().toBuffer();
  files['lossless.webp'] = await sharp(flat).webp({ lossless: true }).toBuffer();
  files['progressive.jpg'] = await sharp(flat).jpeg({ progressive: true }).toBuffer();
  files['interlaced.png'] = await sharp(flat).png({ progressive: true }).toBuffer();
  files['icc-p3.jpg'] = await sharp(flat).withIccProfile('p3').jpeg().toBuffer();
  files['animated.gif'] = await sharp(frames, { join: { animated: true } })
    .gif({ delay: [100, 100, 100], loop: 0 })
    .toBuffer();
  files['animated.webp'] = await sharp(frames, { join: { animated: true } })
    .webp({ delay: [100, 100, 100], loop: 0 })
    .toBuffer();
  {
    // A real two-frame APNG: acTL, fcTL + IDAT (frame 0), fcTL + fdAT (frame 1, the same data).
    const idats = pngChunks(png).filter((c) => c.type === 'IDAT');
    const actl = Buffer.alloc(8);
    actl.writeUInt32BE(2, 0);
    const fctl = (sequence: number) => {
      const data = Buffer.alloc(26);
      data.writeUInt32BE(sequence, 0);
      data.writeUInt32BE(64, 4);
      data.writeUInt32BE(48, 8);
      data.writeUInt16BE(1, 20);
      data.writeUInt16BE(10, 22);
      return pngChunk('fcTL', data);
    };
    const fdat = idats.map((c, i) => {
      const data = Buffer.alloc(4 + c.data.length);
      data.writeUInt32BE(2 + i, 0);
      c.data.copy(data, 4);
      return pngChunk('fdAT', data);
    });
    const rebuilt = (type: string) =>
      pngChunks(png)
        .filter((c) => c.type === type)
        .map((c) => pngChunk(c.type, c.data));
    const ancillary = pngChunks(png)
      .filter((c) => !['IHDR', 'IDAT', 'IEND'].includes(c.type))
      .map((c) => pngChunk(c.type, c.data));
    files['apng.png'] = pngFromChunks([
      ...rebuilt('IHDR'),
      pngChunk('acTL', actl),
      ...ancillary,
      fctl(0),
      ...rebuilt('IDAT'),
      fctl(1),
      ...fdat,
      pngChunk('IEND'),
    ]);
  }
  files['exif-orientation-6.jpg'] = exifJpeg([[ORIENTATION, SHORT, 1, 6]]);
  files['exif-orientation-8.jpg'] = exifJpeg([[ORIENTATION, SHORT, 1, 8]]);
  files['exif-orientation-9.jpg'] = exifJpeg([[ORIENTATION, SHORT, 1, 9]]);
  files['exif-ifd-loop.jpg'] = exifJpeg(
    [
      [EXIF_IFD_POINTER, LONG, 1, 8],
      [GPS_IFD_POINTER, LONG, 1, 8],
      [ORIENTATION, SHORT, 1, 3],
    ],
    { next: 8 },
  );
  files['exif-ifd-offset-out-of-range.jpg'] = exifJpeg([[ORIENTATION, SHORT, 1, 6]], { ifdOffset: 0xfffffff0 });
  {
    const block = tiffBlock([[ORIENTATION, SHORT, 1, 6]]);
    block.writeUInt16LE(0xffff, 8); // 65535 entries in a 26-byte block
    files['exif-65535-entries.jpg'] = jpegInsertAfterSoi(jpeg, exifApp1(block));
  }
  files['exif-huge-value-count.jpg'] = exifJpeg([
    [0x010f, 2, 0x7fffffff, 0xfffffff0],
    [ORIENTATION, SHORT, 1, 3],
  ]);
  files['jpeg-100-comments.jpg'] = jpegInsertAfterSoi(
    jpeg,
    ...Array.from({ length: 100 }, (_, i) => jpegSegment(0xfe, text(`comment ${i} `.repeat(4)))),
  );
  files['png-exif-orientation-6.png'] = pngInsertAfterIhdr(png, pngChunk('eXIf', tiffBlock([[ORIENTATION, SHORT, 1, 6]])));
  files['webp-exif-orientation-6.webp'] = riff(
    'WEBP',
    vp8x(64, 48, 0x08),
    webpChunks(webp),
    riffChunk('EXIF', tiffBlock([[ORIENTATION, SHORT, 1, 6]])),
  );
  files['gif-1x1-screen-64x48-frame.gif'] = gifWithSize(gif, [1, 1]);
  files['1x1.png'] = await (await picture(1, 1)).png().toBuffer();
  files['1x1.jpg'] = await (await picture(1, 1)).jpeg().toBuffer();
  files['1x1.gif'] = await (await picture(1, 1)).gif().toBuffer();
  files['1x1.webp'] = await (await picture(1, 1)).webp().toBuffer();
  files['10000x1.png'] = await (await picture(10_000, 1)).png().toBuffer();
  files['1x10000.jpg'] = await (await picture(1, 10_000)).jpeg().toBuffer();

  // Keep the CRC helper honest: a chunk built here must verify.
  const ihdr = pngChunks(files['1x1.png'])[0]!;
  if (
    crc32(files['1x1.png'].subarray(ihdr.at + 4, ihdr.at + 8 + ihdr.data.length)) !==
    files['1x1.png'].readUInt32BE(ihdr.at + 8 + ihdr.data.length)
  ) {
    throw new Error('crc32 does not match sharp');
  }
  return files;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const files = await buildCorpus();
  await mkdir(CORPUS_DIR, { recursive: true });
  for (const old of await readdir(CORPUS_DIR)) await rm(CORPUS_DIR + old);
  let total = 0;
  for (const [name, bytes] of Object.entries(files)) {
    await writeFile(CORPUS_DIR + name, bytes);
    total += bytes.length;
  }
  console.log(`wrote ${Object.keys(files).length} files, ${total} bytes, to ${CORPUS_DIR}`);
}
