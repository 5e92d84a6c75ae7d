/** Images generated at test time with sharp, for the cases the fixture photos do not cover. */
import sharp from 'sharp';

export const FIXTURES = new URL('../../../shared/fixtures/images/', import.meta.url).pathname;

/** A width x height image: left half red, right half blue. */
export function halves(width: number, height: number) {
  const left = { input: { create: { width: width / 2, height, channels: 3, background: '#ff0000' } } as const, left: 0, top: 0 };
  return sharp({ create: { width, height, channels: 3, background: '#0000ff' } }).composite([left]);
}

export const jpegWithOrientation = async (orientation: number) => halves(300, 100).jpeg().withMetadata({ orientation }).toBuffer();

// sharp composites last, so colour conversions run on a flattened copy.
const flatHalves = async () => sharp(await halves(200, 200).png().toBuffer());
export const cmykJpeg = async () => (await flatHalves()).toColourspace('cmyk').jpeg().toBuffer();
export const png16 = async () => (await flatHalves()).toColourspace('rgb16').png().toBuffer();
export const grayscaleJpeg = async () => (await flatHalves()).toColourspace('b-w').jpeg().toBuffer();
export const palettePng = async () => (await flatHalves()).png({ palette: true, colours: 4 }).toBuffer();
export const transparentPng = () =>
  sharp({ create: { width: 64, height: 64, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } })
    .png()
    .toBuffer();
export const webp = () => halves(200, 200).webp().toBuffer();
export const gif = () => halves(200, 200).gif().toBuffer();

/** A valid PNG signature + IHDR claiming width x height, and nothing after it. */
export function pngHeaderOnly(width: number, height: number): Uint8Array {
  const b = Buffer.alloc(33);
  Buffer.from('\x89PNG\r\n\x1a\n', 'latin1').copy(b, 0);
  b.writeUInt32BE(13, 8);
  b.write('IHDR', 12, 'latin1');
  b.writeUInt32BE(width, 16);
  b.writeUInt32BE(height, 20);
  b.set([8, 2, 0, 0, 0], 24);
  return b;
}
