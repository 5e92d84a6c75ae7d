/** Where things are, the knobs (BENCH_RUNS, ...) and the production Worker's limits. */
import type { ResizeMode } from '../../edge/image/codec.ts';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseToml } from 'smol-toml';

export const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = resolve(HERE, '../..');
export const FIXTURES = resolve(REPO_ROOT, '../shared/fixtures/images');
export const CONFIG = join(HERE, 'wrangler.toml');
export const RESULTS_DIR = join(REPO_ROOT, 'bench/results');
export const WRANGLER_JS = join(REPO_ROOT, 'node_modules/wrangler/bin/wrangler.js');

export const intEnv = (name: string, fallback: number) => {
  const value = Number(process.env[name]);
  return Number.isInteger(value) && value > 0 ? value : fallback;
};
export const RUNS = intEnv('BENCH_RUNS', 15);
export const FRESH_RUNS = intEnv('BENCH_FRESH_RUNS', 5);
export const LIMIT_RUNS = intEnv('BENCH_LIMIT_RUNS', 3);
export const MODES: ResizeMode[] = process.env.BENCH_SKIP_CENTER_CROP === '1' ? ['squash'] : ['squash', 'center-crop'];
/** A Workers isolate's memory limit. */
export const ISOLATE_LIMIT_MB = 128;
/** Kept free under the limit: the isolate's own baseline (bundle, compiled WASM, heap) and GC slack. */
export const HEADROOM_MB = 28;
/** The production Worker's limits, from the root wrangler.toml's [vars]. */
export const WORKER_VARS = (
  parseToml(readFileSync(new URL('../../wrangler.toml', import.meta.url), 'utf8')) as { vars: Record<string, string> }
).vars;
export const MAX_PIXELS_NOW = Number(WORKER_VARS.MAX_PIXELS);
/** The largest body, held twice at the peak (in JS and copied into WASM). */
export const MAX_BODY_MB = Number(WORKER_VARS.MAX_BODY_BYTES) / (1024 * 1024);
export const MB = 1024 * 1024;
