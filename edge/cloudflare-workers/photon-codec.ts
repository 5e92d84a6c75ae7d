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
 * @example
 * const codec = createPhotonCodec();
 * const tensor = await codec.toTensor(bytes, probeImage(bytes, maxPixels), 'squash');
 */
import { photonWasmModule, type InitOutput } from '@cf-wasm/photon';
import { ApiError } from '../errors.ts';
import type { ImageCodec } from '../image/codec.ts';
import { readOrientation } from '../image/orientation.ts';
import { resizeToTensor } from '../image/resample.ts';

/** The exports a decode uses (the ABI behind photon's `PhotonImage.new_from_byteslice` and getters). */
type DecoderExports = Pick<
  InitOutput,
  | 'memory'
  | '__wbindgen_start'
  | '__wbindgen_externrefs'
  | '__wbindgen_malloc'
  | '__wbindgen_free'
  | 'photonimage_new_from_byteslice'
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
 * A fresh instance of photon's module. Decoding calls none of its JS imports (they serve canvas,
 * console and text features), so each is a stub that throws, except the externref table set-up
 * that the start function runs (the same four slots wasm-bindgen's glue fills).
 */
function instantiate(): DecoderExports {
  let exports: DecoderExports | undefined;
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
  exports = new WebAssembly.Instance(photonWasmModule, imports).exports as unknown as DecoderExports;
  exports.__wbindgen_start();
  return exports;
}

/**
 * Decodes with photon (JPEG, PNG, WebP, GIF) to RGBA, on an instance of its own that is replaced
 * after a trap. A healthy instance is kept: its memory stays at the largest decode so far (WASM
 * memory never shrinks), which MAX_PIXELS bounds, and reusing it costs no new memory.
 */
export function createPhotonDecoder() {
  let instance: DecoderExports | undefined;
  const stats = { instances: 0, traps: 0, peakWasmBytes: 0 };
  return {
    decode(bytes: Uint8Array): DecodedImage {
      if (!instance) {
        instance = instantiate();
        stats.instances++;
      }
      const wasm = instance;
      try {
        const input = wasm.__wbindgen_malloc(bytes.length, 1) >>> 0;
        new Uint8Array(wasm.memory.buffer, input, bytes.length).set(bytes);
        // Takes ownership of `input`: freed when it returns, lost with the instance if it traps.
        const image = wasm.photonimage_new_from_byteslice(input, bytes.length) >>> 0;
        const width = wasm.photonimage_get_width(image) >>> 0;
        const height = wasm.photonimage_get_height(image) >>> 0;
        const [at, length] = wasm.photonimage_get_raw_pixels(image);
        const pixels = new Uint8Array(wasm.memory.buffer, at >>> 0, length >>> 0).slice();
        wasm.__wbindgen_free(at, length, 1);
        wasm.__wbg_photonimage_free(image, 0);
        return { pixels, width, height };
      } catch (error) {
        instance = undefined; // never call into a trapped instance again
        stats.traps++;
        throw error;
      } finally {
        stats.peakWasmBytes = Math.max(stats.peakWasmBytes, wasm.memory.buffer.byteLength);
      }
    },
    /** For tests and the fuzzer: WASM memory of the live instance and the most any reached; instances made; traps. */
    stats: () => ({ ...stats, wasmBytes: instance?.memory.buffer.byteLength ?? 0 }),
  };
}

export function createPhotonCodec(decoder = createPhotonDecoder()): ImageCodec {
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
          decoded = decoder.decode(bytes);
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
  };
}
