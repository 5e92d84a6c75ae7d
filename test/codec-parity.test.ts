/**
 * The WASM codec (Workers: photon decode) and the sharp codec (Node) must give the same tensor:
 * both resize with the shared TypeScript rules, so only the decoders can differ. Checked on the
 * fixture photos in both resize modes, on every EXIF orientation, and by the real ResNet50's top-1.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSharpCodec } from '../edge/node/sharp-codec.ts';
import { createPhotonCodec } from '../edge/cloudflare-workers/photon-codec.ts';
import { probeImage } from '../edge/image/probe.ts';
import { RESIZE_MODES } from '../edge/image/codec.ts';
import { selectBackend } from '../gpu-worker/engine/tfjs/backend.ts';
import { TfjsClassifier } from '../gpu-worker/engine/tfjs/classifier.ts';
import { parseWorkerConfig } from '../gpu-worker/config.ts';
import { loadModel } from '../gpu-worker/engine/tfjs/load.ts';
import * as images from './helpers/images.ts';

/**
 * Mean absolute difference per channel value, in 0..255 units. 2 is the bound for the
 * Keras mode; it holds for center-crop too, since both modes share the resampler and a decoder
 * difference (JPEG IDCT rounding, +-1 on some pixels) survives averaging no worse than sampling.
 */
const MAX_MEAN_ABS_DIFF = 2;

const manifest: { file: string }[] = JSON.parse(await readFile(`${images.FIXTURES}manifest.json`, 'utf8'));
const sharpCodec = createSharpCodec({ maxPixels: 40e6 });
const photonCodec = createPhotonCodec();

async function both(bytes: Uint8Array, mode: (typeof RESIZE_MODES)[number]) {
  const info = probeImage(bytes, 40e6);
  return [await sharpCodec.toTensor(bytes, info, mode), await photonCodec.toTensor(bytes, info, mode)] as const;
}

function meanAbsDiff(a: Uint8Array, b: Uint8Array): number {
  expect(a.length).toBe(b.length);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!);
  return sum / a.length;
}

describe('WASM codec vs sharp codec', () => {
  const cases = manifest.flatMap(({ file }) => RESIZE_MODES.map((mode) => ({ file, mode })));
  it.each(cases)('$file, $mode: mean abs diff <= 2/255', async ({ file, mode }) => {
    const [fromSharp, fromPhoton] = await both(await readFile(images.FIXTURES + file), mode);
    expect(meanAbsDiff(fromSharp, fromPhoton)).toBeLessThanOrEqual(MAX_MEAN_ABS_DIFF);
  });

  it.each([1, 2, 3, 4, 5, 6, 7, 8])('applies EXIF orientation %i like sharp', async (orientation) => {
    for (const mode of RESIZE_MODES) {
      const [fromSharp, fromPhoton] = await both(await images.jpegWithOrientation(orientation), mode);
      expect(meanAbsDiff(fromSharp, fromPhoton)).toBeLessThanOrEqual(MAX_MEAN_ABS_DIFF);
    }
  });

  it('flattens alpha and reads GIF, 16-bit, palette and grayscale images alike', async () => {
    for (const make of [images.transparentPng, images.gif, images.png16, images.palettePng, images.grayscaleJpeg]) {
      const [fromSharp, fromPhoton] = await both(await make(), 'squash');
      expect(meanAbsDiff(fromSharp, fromPhoton)).toBeLessThanOrEqual(MAX_MEAN_ABS_DIFF);
    }
  });

  it('answers corrupt images with the same 400 corrupt_image', async () => {
    const beagle = await readFile(`${images.FIXTURES}beagle.jpg`);
    const truncated = beagle.subarray(0, beagle.length / 2);
    const info = probeImage(truncated, 40e6);
    for (const codec of [sharpCodec, photonCodec]) {
      await expect(codec.toTensor(truncated, info, 'squash')).rejects.toMatchObject({ status: 400, code: 'corrupt_image' });
    }
    // The WASM decoder traps on bad input; it must still work afterwards.
    expect((await photonCodec.toTensor(beagle, probeImage(beagle, 40e6), 'squash')).length).toBe(150_528);
  });
});

describe('same top-1 on both paths (Keras ResNet50)', () => {
  let classifier: TfjsClassifier;
  beforeAll(async () => {
    await selectBackend('wasm');
    classifier = new TfjsClassifier(await loadModel(parseWorkerConfig({ MODEL_CACHE_DIR: process.env.MODEL_CACHE_DIR })));
  }, 180_000);
  afterAll(() => classifier?.dispose());

  it('gives every fixture photo the same top-1 from either codec', async () => {
    const tensors = await Promise.all(manifest.map(async ({ file }) => both(await readFile(images.FIXTURES + file), 'squash')));
    const fromSharp = await classifier.classify(
      tensors.map(([a]) => a),
      1,
    );
    const fromPhoton = await classifier.classify(
      tensors.map(([, b]) => b),
      1,
    );
    manifest.forEach(({ file }, i) => expect(fromPhoton[i]![0]!.label, file).toBe(fromSharp[i]![0]!.label));
  }, 120_000);
});
