import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { createSharpCodec } from './sharp-codec.ts';
import { probeImage } from '../image/probe.ts';
import { ApiError } from '../errors.ts';
import type { ResizeMode } from '../image/codec.ts';
import { TENSOR_BYTES } from '../../shared/tensor.ts';
import * as images from '../../test/helpers/images.ts';

const codec = createSharpCodec({ maxPixels: 40e6 });
const toTensor = async (bytes: Uint8Array, mode: ResizeMode = 'squash') => codec.toTensor(bytes, probeImage(bytes, 40e6), mode);
const pixel = (t: Uint8Array, x: number, y: number) => [...t.subarray((y * 224 + x) * 3, (y * 224 + x) * 3 + 3)];
const near = (actual: number[], expected: number[], tolerance = 12) =>
  expect(
    actual.every((v, i) => Math.abs(v - expected[i]!) <= tolerance),
    `${actual} ~ ${expected}`,
  ).toBe(true);

describe('sharp codec', () => {
  it('squash mode equals Keras load_img: PIL nearest sampling of the full image', async () => {
    for (const file of ['beagle.jpg', 'coral_cat_1080p.jpg']) {
      const bytes = await readFile(images.FIXTURES + file);
      const full = await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      const { width: W, height: H } = full.info;
      const tensor = await toTensor(bytes);
      expect(tensor.length).toBe(TENSOR_BYTES);
      for (const [x, y] of [
        [0, 0],
        [223, 223],
        [100, 37],
        [7, 200],
      ] as const) {
        const sx = Math.floor(((x + 0.5) * W) / 224);
        const sy = Math.floor(((y + 0.5) * H) / 224);
        expect(pixel(tensor, x, y)).toEqual([...full.data.subarray((sy * W + sx) * 3, (sy * W + sx) * 3 + 3)]);
      }
    }
  });

  it('center-crop mode keeps the centre at the right aspect', async () => {
    // 300x100: red left, blue right. Cropping the centre 100x100 keeps the seam in the middle.
    const tensor = await toTensor(await images.halves(300, 100).png().toBuffer(), 'center-crop');
    near(pixel(tensor, 50, 112), [255, 0, 0]);
    near(pixel(tensor, 170, 112), [0, 0, 255]);
    // Squash keeps the whole width instead.
    const squashed = await toTensor(await images.halves(300, 100).png().toBuffer(), 'squash');
    near(pixel(squashed, 100, 112), [255, 0, 0]);
    near(pixel(squashed, 123, 112), [0, 0, 255]);
  });

  it('applies EXIF orientation', async () => {
    // Orientation 6 = rotate 90 degrees clockwise to display: the stored left (red) half ends on top.
    const tensor = await toTensor(await images.jpegWithOrientation(6));
    near(pixel(tensor, 112, 20), [255, 0, 0]);
    near(pixel(tensor, 112, 200), [0, 0, 255]);
    const upright = await toTensor(await images.jpegWithOrientation(1));
    near(pixel(upright, 20, 112), [255, 0, 0]);
  });

  it('converts CMYK, 16-bit, grayscale and palette images to 8-bit sRGB', async () => {
    // The generated inputs really are what they claim.
    expect((await sharp(await images.cmykJpeg()).metadata()).space).toBe('cmyk');
    expect((await sharp(await images.png16()).metadata()).depth).toBe('ushort');
    expect((await sharp(await images.grayscaleJpeg()).metadata()).channels).toBe(1);
    expect((await sharp(await images.palettePng()).metadata()).isPalette).toBe(true);
    for (const make of [images.png16, images.palettePng, images.webp, images.gif]) {
      const tensor = await toTensor(await make());
      near(pixel(tensor, 20, 112), [255, 0, 0], 40);
      near(pixel(tensor, 200, 112), [0, 0, 255], 40);
    }
    // Pure sRGB blue is outside the CMYK gamut, so it comes back as a darker blue; read as raw
    // channels instead of converted, the right half would not be blue-dominant at all.
    const cmyk = await toTensor(await images.cmykJpeg());
    near(pixel(cmyk, 20, 112), [237, 28, 36], 40);
    const [r, g, b] = pixel(cmyk, 200, 112);
    expect(b! > 120 && b! > r! * 2 && b! > g! * 1.5, `${[r, g, b]}`).toBe(true);
    const gray = await toTensor(await images.grayscaleJpeg());
    const [gr, gg, gb] = pixel(gray, 20, 112);
    expect(gr).toBe(gg);
    expect(gg).toBe(gb);
  });

  it('flattens transparency onto white', async () => {
    const tensor = await toTensor(await images.transparentPng());
    expect(pixel(tensor, 10, 10)).toEqual([255, 255, 255]);
  });

  it('answers 400 corrupt_image for truncated or garbage images', async () => {
    const beagle = await readFile(`${images.FIXTURES}beagle.jpg`);
    const png = await readFile(`${images.FIXTURES}ort_lion.png`);
    for (const bytes of [
      beagle.subarray(0, beagle.length / 2),
      png.subarray(0, png.length / 2),
      Buffer.concat([beagle.subarray(0, 700), Buffer.alloc(5000, 0x55)]),
    ]) {
      const error = await toTensor(bytes).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ApiError);
      expect((error as ApiError).code).toBe('corrupt_image');
      expect((error as ApiError).status).toBe(400);
    }
  });
});
