/**
 * The edge's bare preprocessing rate: what the Node edge does to an upload before it touches the
 * queue (probe the header, decode with sharp, orient, resize to the 224x224 wire tensor), with no
 * HTTP and no Redis. The capacity section compares the whole pipeline with the instant model
 * against this number: if the queue path is not the bottleneck, the two are close.
 *
 * Runs in the bench process with `inFlight` images at a time (as an edge under load has several
 * requests open: sharp decodes on libuv's thread pool, the resize runs on the main thread).
 *
 * @example
 * const { imgPerSec } = await benchPreprocess(images, { seconds: 5, inFlight: 8 });
 */
import { createSharpCodec } from '../edge/node/sharp-codec.ts';
import { probeImage } from '../edge/image/probe.ts';
import type { ResizeMode } from '../edge/image/codec.ts';
import { median, round } from './stats.ts';

export interface PreprocessResult {
  images: number;
  seconds: number;
  imgPerSec: number;
  /** Median ms of one image, per file. */
  perImageMs: Record<string, number>;
  inFlight: number;
}

const MAX_PIXELS = 40_000_000; // the Node edge's default MAX_PIXELS

export async function benchPreprocess(
  images: { name: string; bytes: Uint8Array }[],
  options: { seconds: number; inFlight: number; mode?: ResizeMode },
): Promise<PreprocessResult> {
  const codec = createSharpCodec({ maxPixels: MAX_PIXELS });
  const mode = options.mode ?? 'squash';
  const one = async (image: (typeof images)[number]) => {
    const started = performance.now();
    await codec.toTensor(image.bytes, probeImage(image.bytes, MAX_PIXELS), mode);
    return performance.now() - started;
  };

  // Alone, for the per-file cost (after one warm-up pass).
  const perImageMs: Record<string, number> = {};
  for (const image of images) await one(image);
  for (const image of images) {
    const runs: number[] = [];
    for (let i = 0; i < 5; i++) runs.push(await one(image));
    perImageMs[image.name] = round(median(runs), 1);
  }

  // Then the rate, with `inFlight` at a time, cycling through the images.
  let next = 0;
  let done = 0;
  const started = performance.now();
  const until = started + options.seconds * 1000;
  await Promise.all(
    Array.from({ length: options.inFlight }, async () => {
      while (performance.now() < until) {
        await one(images[next++ % images.length]!);
        done++;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return { images: done, seconds: round(seconds, 1), imgPerSec: round(done / seconds, 1), perImageMs, inFlight: options.inFlight };
}
