/**
 * The Workers image codec: decode in WebAssembly with @cf-wasm/photon (sharp cannot run in
 * workerd), then orient, flatten and resize with the shared TypeScript rules (../image/resample.ts),
 * so the tensor matches the sharp path.
 *
 * Memory: an isolate's memory is shared by its concurrent requests, and a decode holds the pixels
 * in photon's WASM memory (which never shrinks) and again as the RGBA copy out (per-pixel figures:
 * `npm run bench:codec`, docs/cloudflare-workers.md). Decodes therefore run one at a time per
 * isolate, and MAX_PIXELS (checked from the header before this) is lower on Workers than on Node.
 *
 * Corrupt input: photon's decoder panics, which in WebAssembly is a trap ("RuntimeError:
 * unreachable"). A trap unwinds nothing inside the instance: the copy of the input and whatever the
 * decoder had allocated stay allocated for good, and the shadow stack pointer is never restored.
 * With photon's own bindings (one module-wide instance) every corrupt upload therefore leaked its
 * size in WASM memory, and after a few thousand traps the instance broke for good ("memory access
 * out of bounds" on every later image, valid ones too). So the codec drives its own instance of
 * photon's compiled module through the few raw exports a decode needs, and replaces the instance
 * after any trap: instantiating the already compiled module takes under a millisecond.
 *
 * WIRE_FORMAT: the same instance encodes the 224x224 tensor as JPEG (quality 95; photon's encoder,
 * the `image` crate's, never subsamples chroma, as the Node edge's 4:4:4) or lossless WebP, so the
 * Workers edge queues the same compact jobs as the Node edge (sizes and accuracy: docs/performance.md).
 *
 * @example
 * const codec = createPhotonCodec();
 * const tensor = await codec.toTensor(bytes, probeImage(bytes, maxPixels), 'squash');
 * const job = await codec.toWire(tensor, 'jpeg');
 */
import { photonWasmModule, type InitOutput } from '@cf-wasm/photon';
import { ApiError } from '../errors.ts';
import type { ImageCodec } from '../image/codec.ts';
import { readOrientation } from '../image/orientation.ts';
import { resizeToTensor } from '../image/resample.ts';
import { IMAGE_SIZE } from '../../shared/tensor.ts';

/**
 * The exports a decode and an encode use: the ABI behind photon's `PhotonImage.new_from_byteslice`,
 * its constructor from RGBA pixels, `get_bytes_jpeg`, `get_bytes_webp` and the getters.
 */
type PhotonExports = Pick<
  InitOutput,
  | 'memory'
  | '__wbindgen_start'
  | '__wbindgen_externrefs'
  | '__wbindgen_malloc'
  | '__wbindgen_free'
  | 'photonimage_new_from_byteslice'
  | 'photonimage_new'
  | 'photonimage_get_bytes_jpeg'
  | 'photonimage_get_bytes_webp'
  | 'photonimage_get_width'
  | 'photonimage_get_height'
  | 'photonimage_get_raw_pixels'
  | '__wbg_photonimage_free'
>;

export interface DecodedImage {
  pixels: Uint8Array;
  width: number;
  height: number;
}

/**
 * A fresh instance of photon's module. Decoding and encoding call none of its JS imports (they serve canvas,
 * console and text features), so each is a stub that throws, except the externref table set-up
 * that the start function runs (the same four slots wasm-bindgen's glue fills).
 */
function instantiate(): PhotonExports {
  let exports: PhotonExports | undefined;
  const imports: Record<string, Record<string, (...args: unknown[]) => unknown>> = {};
  for (const { module, name, kind } of WebAssembly.Module.imports(photonWasmModule)) {
    if (kind !== 'function') continue;
    imports[module] ??= {};
    imports[module][name] =
      name === '__wbindgen_init_externref_table'
        ? () => {
            const table = exports!.__wbindgen_externrefs;
            const offset = table.grow(4);
            table.set(0, undefined);
            table.set(offset, undefined);
            table.set(offset + 1, null);
            table.set(offset + 2, true);
            table.set(offset + 3, false);
          }
        : () => {
            throw new Error(`photon called ${name}, which the decoder does not provide`);
          };
  }
  exports = new WebAssembly.Instance(photonWasmModule, imports).exports as unknown as PhotonExports;
  exports.__wbindgen_start();
  return exports;
}

/**
 * Photon on an instance of its own that is replaced after a trap: decodes JPEG, PNG, WebP and GIF
 * to RGBA, and encodes RGBA as JPEG or WebP. A healthy instance is kept: its memory stays at the
 * largest decode so far (WASM memory never shrinks), which MAX_PIXELS bounds, and reusing it costs
 * no new memory.
 */
export function createPhoton() {
  let instance: PhotonExports | undefined;
  const stats = { instances: 0, traps: 0, peakWasmBytes: 0 };
  /** Run `work` on the live instance (a fresh one if the last trapped), dropping it if `work` traps. */
  const withInstance = <T>(work: (wasm: PhotonExports) => T): T => {
    if (!instance) {
      instance = instantiate();
      stats.instances++;
    }
    const wasm = instance;
    try {
      return work(wasm);
    } catch (error) {
      instance = undefined; // never call into a trapped instance again
      stats.traps++;
      throw error;
    } finally {
      stats.peakWasmBytes = Math.max(stats.peakWasmBytes, wasm.memory.buffer.byteLength);
    }
  };
  /** Copy `bytes` into the instance's memory; the callee it is passed to takes ownership. */
  const pass = (wasm: PhotonExports, bytes: Uint8Array): number => {
    const at = wasm.__wbindgen_malloc(bytes.length, 1) >>> 0;
    new Uint8Array(wasm.memory.buffer, at, bytes.length).set(bytes);
    return at;
  };
  /** Copy out and free a byte vector photon returned. */
  const take = (wasm: PhotonExports, [at, length]: [number, number]): Uint8Array => {
    const bytes = new Uint8Array(wasm.memory.buffer, at >>> 0, length >>> 0).slice();
    wasm.__wbindgen_free(at, length, 1);
    return bytes;
  };
  return {
    decode(bytes: Uint8Array): DecodedImage {
      return withInstance((wasm) => {
        // Takes ownership of the input: freed when it returns, lost with the instance if it traps.
        const image = wasm.photonimage_new_from_byteslice(pass(wasm, bytes), bytes.length) >>> 0;
        const width = wasm.photonimage_get_width(image) >>> 0;
        const height = wasm.photonimage_get_height(image) >>> 0;
        const pixels = take(wasm, wasm.photonimage_get_raw_pixels(image));
        wasm.__wbg_photonimage_free(image, 0);
        return { pixels, width, height };
      });
    },
    /** `rgba` (width x height x 4) as a JPEG file at `quality`, or a lossless WebP file. */
    encode(rgba: Uint8Array, width: number, height: number, file: { format: 'jpeg'; quality: number } | { format: 'webp' }): Uint8Array {
      return withInstance((wasm) => {
        const image = wasm.photonimage_new(pass(wasm, rgba), rgba.length, width, height) >>> 0;
        const bytes = take(
          wasm,
          file.format === 'jpeg' ? wasm.photonimage_get_bytes_jpeg(image, file.quality) : wasm.photonimage_get_bytes_webp(image),
        );
        wasm.__wbg_photonimage_free(image, 0);
        return bytes;
      });
    },
    /** For tests and the fuzzer: WASM memory of the live instance and the most any reached; instances made; traps. */
    stats: () => ({ ...stats, wasmBytes: instance?.memory.buffer.byteLength ?? 0 }),
  };
}

export function createPhotonCodec(photon = createPhoton()): ImageCodec {
  let queue: Promise<unknown> = Promise.resolve();
  /** Run `work` after every earlier decode of this isolate has finished. */
  const oneAtATime = <T>(work: () => T): Promise<T> => {
    const run = queue.then(work);
    queue = run.catch(() => {});
    return run;
  };

  return {
    toTensor(bytes, info, mode) {
      return oneAtATime(() => {
        let decoded: DecodedImage;
        try {
          decoded = photon.decode(bytes);
        } catch (error) {
          throw new ApiError(
            400,
            'corrupt_image',
            `The ${info.format.toUpperCase()} image could not be decoded: ${(error as Error).message}`,
          );
        }
        const { pixels, width, height } = decoded;
        if (pixels.length !== width * height * 4) {
          throw new ApiError(400, 'corrupt_image', `The ${info.format.toUpperCase()} image decoded to an unexpected size`);
        }
        return resizeToTensor({ data: pixels, width, height, channels: 4 }, readOrientation(bytes, info.format), mode);
      });
    },
    toWire(tensor, format) {
      return oneAtATime(() => {
        const rgba = new Uint8Array(IMAGE_SIZE * IMAGE_SIZE * 4).fill(255);
        for (let pixel = 0; pixel < IMAGE_SIZE * IMAGE_SIZE; pixel++) rgba.set(tensor.subarray(pixel * 3, pixel * 3 + 3), pixel * 4);
        // The settings of the Node edge's sharp codec: JPEG 95 (4:4:4 in photon too); WebP lossless.
        return photon.encode(rgba, IMAGE_SIZE, IMAGE_SIZE, format === 'jpeg' ? { format, quality: 95 } : { format });
      });
    },
  };
}
