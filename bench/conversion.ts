/**
 * The ONNX conversion on a cold cache, in a fresh child process (`node --import tsx
 * bench/conversion.ts --child <json>`): what a worker's first start with ENGINE=onnx does before
 * it can serve. Reading the tfjs files, building the tfjs model and converting it to ONNX, writing
 * the cache; then the session, its first inference and warm ones (batch 1), as the worker's
 * warm-up would see them.
 *
 * @example
 * const result = await benchConversion({ model: 'resnet50', warm: 10 }); // { convertMs, firstMs, warmMedianMs, ... }
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { PreprocessMode } from '../gpu-worker/model/preprocess.ts';
import { median, round } from './stats.ts';

const FILE = fileURLToPath(import.meta.url);

export interface ConversionOptions {
  model: string;
  preprocess?: PreprocessMode;
  /** Warm inferences timed after the first. */
  warm: number;
}

export interface ConversionResult {
  /** Reading model.json and the shards (from MODEL_CACHE_DIR: the download is not counted). */
  readMs: number;
  /** Building the tfjs model, converting, serialising, and writing the cache files. */
  convertMs: number;
  /** Of which the converter itself (graph and weights to ONNX bytes). */
  converterMs: number;
  onnxBytes: number;
  nodes: number;
  /** ONNX Runtime's InferenceSession.create on those bytes (graph optimisation included). */
  sessionMs: number;
  /** The first inference of the new session, and the median of the warm ones after it (batch 1). */
  firstMs: number;
  warmMedianMs: number;
  warm: number;
  provider: string;
}

export async function benchConversion(options: ConversionOptions): Promise<ConversionResult> {
  // A cache of its own: the conversion must run, and the user's cache stays as it was. The tfjs
  // files are read where they are (the builtin model is fetched into MODEL_CACHE_DIR before).
  const scratch = await mkdtemp(join(tmpdir(), 'bench-conversion-'));
  try {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', FILE, '--child', JSON.stringify({ ...options, scratch })],
      { cwd: resolve(FILE, '../..'), maxBuffer: 4 * 1024 * 1024, timeout: 10 * 60_000 },
    );
    return JSON.parse(stdout.trim().split('\n').at(-1)!) as ConversionResult;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

async function runChild(options: ConversionOptions & { scratch: string }): Promise<void> {
  const [{ parseWorkerConfig }, { readModelFiles }, onnx, { createLogger }] = await Promise.all([
    import('../gpu-worker/config.ts'),
    import('../gpu-worker/model/files.ts'),
    import('../gpu-worker/engine/onnx/index.ts'),
    import('../shared/log.ts'),
  ]);
  const log = createLogger('bench-conversion', 'warn', process.stderr);
  const config = parseWorkerConfig({
    MODEL: options.model,
    PREPROCESS: options.preprocess,
    MODEL_CACHE_DIR: process.env.MODEL_CACHE_DIR,
    EXECUTION_PROVIDER: 'cpu',
  });
  let started = performance.now();
  const files = await readModelFiles(config);
  const readMs = performance.now() - started;
  started = performance.now();
  const model = await onnx.prepareOnnxModel(files, { ...config, modelCacheDir: options.scratch }, log);
  const convertMs = performance.now() - started;
  if (!model.converted) throw new Error('expected a conversion on an empty cache');
  started = performance.now();
  const classifier = await onnx.loadOnnxClassifier(model, files, config, ['cpu']);
  const sessionMs = performance.now() - started;
  const { randomImage } = await import('../test/helpers/tiny-model.ts');
  const image = [randomImage(1)];
  const firstMs = (await classifier.classifyWithStats(image, 5)).inferenceMs;
  const warm: number[] = [];
  for (let i = 0; i < options.warm; i++) warm.push((await classifier.classifyWithStats(image, 5)).inferenceMs);
  classifier.dispose();
  const result: ConversionResult = {
    readMs: round(readMs, 0),
    convertMs: round(convertMs, 0),
    converterMs: model.entry.convertMs,
    onnxBytes: model.entry.bytes,
    nodes: model.entry.nodes,
    sessionMs: round(sessionMs, 0),
    firstMs: round(firstMs, 1),
    warmMedianMs: round(median(warm), 1),
    warm: warm.length,
    provider: classifier.engine.provider,
  };
  console.log(JSON.stringify(result));
}

if (process.argv[2] === '--child' && process.argv[1] && resolve(process.argv[1]) === FILE) {
  await runChild(JSON.parse(process.argv[3] ?? '{}') as ConversionOptions & { scratch: string });
}
