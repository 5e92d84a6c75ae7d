/** Test images: mosaics of the fixture photos, so every size has real photo content. */
import sharp from 'sharp';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ImageSpec {
  id: string;
  label: string;
  width: number;
  height: number;
  format: 'jpeg' | 'png';
}

export interface TestImage extends ImageSpec {
  bytes: Uint8Array<ArrayBuffer>;
  path: string;
}

/** Deterministic mild sensor-like noise, so big JPEGs compress like photos rather than smooth upscales. */
export function addNoise(pixels: Buffer, amplitude: number) {
  let state = 0x9e3779b9;
  for (let i = 0; i < pixels.length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    const noise = ((state >>> 24) % (2 * amplitude + 1)) - amplitude;
    const v = pixels[i]! + noise;
    pixels[i] = v < 0 ? 0 : Math.min(v, 255);
  }
}

export async function makeImage(spec: ImageSpec, dir: string, photos: string[]): Promise<TestImage> {
  // Tiles about 1000 px wide, 4:3, each a different photo cropped to fill.
  const cols = Math.max(1, Math.round(spec.width / 1000));
  const rows = Math.max(1, Math.round(spec.height / 750));
  const composites: { input: Buffer; left: number; top: number }[] = [];
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const left = Math.floor((c * spec.width) / cols);
      const top = Math.floor((r * spec.height) / rows);
      const w = Math.floor(((c + 1) * spec.width) / cols) - left;
      const h = Math.floor(((r + 1) * spec.height) / rows) - top;
      const photo = photos[(r * cols + c) % photos.length]!;
      const input = await sharp(photo)
        .rotate()
        .flatten({ background: '#ffffff' })
        .resize(w, h, { fit: 'cover' })
        .removeAlpha()
        .png()
        .toBuffer();
      composites.push({ input, left, top });
    }
  }
  const { data, info } = await sharp({ create: { width: spec.width, height: spec.height, channels: 3, background: '#808080' } })
    .composite(composites)
    .raw()
    .toBuffer({ resolveWithObject: true });
  addNoise(data, 6);
  const raw = sharp(data, { raw: { width: info.width, height: info.height, channels: 3 } });
  const bytes = spec.format === 'jpeg' ? await raw.jpeg({ quality: 90 }).toBuffer() : await raw.png({ compressionLevel: 6 }).toBuffer();
  const path = join(dir, `${spec.id}.${spec.format === 'jpeg' ? 'jpg' : 'png'}`);
  writeFileSync(path, bytes);
  return { ...spec, bytes: new Uint8Array(bytes), path };
}
