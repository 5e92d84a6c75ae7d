/** What each measurement records, and the figures derived from it. */
import type { ResizeMode } from '../../edge/image/codec.ts';
import { round } from './helpers.ts';
import type { TestImage } from './images.ts';
import { MB } from './settings.ts';
import type { ImageSpec } from './images.ts';

export interface Timing {
  image: string;
  dims: string;
  megapixels: number;
  fileMB: number;
  path: 'workerd/photon' | 'node/sharp';
  mode: ResizeMode;
  runs: number;
  /** Median request time minus the /noop median for the same body (workerd); codec call (Node). */
  medianMs: number | null;
  rawMedianMs: number | null;
  noopMedianMs: number | null;
  minMs: number | null;
  maxMs: number | null;
  checksum: string | null;
}

export interface MemoryRecord {
  image: string;
  dims: string;
  megapixels: number;
  path: 'workerd/photon' | 'node/sharp';
  where: 'fresh process' | 'shared process' | 'this Node process';
  /** RSS just before the image's first request (fresh: idle Worker). */
  baselineRssMB: number | null;
  /** VmHWM after the first request / after all the image's requests. */
  hwmAfterFirstMB: number | null;
  hwmAfterAllMB: number | null;
  /** hwmAfterAll - baselineRss: what this image's requests added at their peak. */
  peakGrowthMB: number | null;
  rssAfterMB: number | null;
  /** Shared process only: growth of the never-reset high-water mark (as if clear_refs were not used). */
  cumulativeHwmMB?: number | null;
  cumulativeHwmGrowthMB?: number | null;
  wasmMemoryMB?: number | null;
  /** workerd: WASM memory + one RGBA copy in JS + the body + the tensor (what the isolate holds at its peak). */
  isolateEstimateMB?: number | null;
  hwmReset: boolean;
}

export interface LimitRecord {
  image: string;
  dims: string;
  megapixels: number;
  fileMB: number;
  outcome: 'ok' | 'error' | 'crash';
  statuses: number[];
  error: string | null;
  medianMs: number | null;
  firstRequestMs: number | null;
  baselineRssMB: number | null;
  peakHwmMB: number | null;
  peakGrowthMB: number | null;
  /** Growth of VmHWM over the idle RSS after the first (cold) request alone. */
  firstRequestGrowthMB: number | null;
  wasmMemoryMB: number | null;
  /** 4 bytes per pixel: one RGBA copy of the decoded image. */
  rgbaMB: number;
  isolateEstimateMB: number | null;
}

export const dimsOf = (img: ImageSpec) => `${img.width}x${img.height}`;
/**
 * What the isolate itself holds at the decode's peak, from exact sizes: photon's WASM linear memory
 * (it never shrinks, so its size after the request is its peak; it includes the copied-in file and
 * photon's own RGBA buffers), plus the RGBA copy get_raw_pixels() makes in JS while the WASM side
 * is still allocated, plus the request body in JS, plus the tensor.
 */
export const isolateEstimate = (img: TestImage, wasmBytes: number | null) =>
  wasmBytes == null ? null : round((wasmBytes + img.width * img.height * 4 + img.bytes.length + 150_528) / MB);
export const mpOf = (img: ImageSpec) => round((img.width * img.height) / 1e6, 2)!;
