/**
 * The converted ONNX graph, cached in MODEL_CACHE_DIR/onnx/ beside the tfjs model it came from:
 *
 *   <model name>-<key>.onnx   the graph
 *   <model name>-<key>.json   what it is: its sha256 and size, the source digest, converter version
 *
 * The key hashes everything the graph is made from: the source model's files (model/files.ts'
 * digest), PREPROCESS (it is inside the graph), the model name (the graph's name), the converter
 * version and the opset. So a changed model, setting or converter makes a new file, never a wrong hit.
 *
 * Nothing half-written is ever used: each file is written under a temporary name, flushed and then
 * renamed into place, the graph before its .json; a graph is used only when its .json names it
 * and its bytes hash to the sha256 written there. A missing, truncated or corrupt graph is logged,
 * removed and converted again. Processes converting at once each rename their own (identical)
 * file; the last rename wins. A cache directory that cannot be written costs a conversion per
 * start, with a warning, not a failure. Temporary files left by a crash are removed an hour later.
 *
 * @example
 * const { bytes, converted } = await cachedOnnxModel(files, config, log, () => convertLayersModel(loaded));
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../../shared/log.ts';
import type { WorkerConfig } from '../../config.ts';
import { modelDigest, type ModelFiles } from '../../model/files.ts';
import type { ConvertedModel } from './convert.ts';
import { CONVERTER_VERSION, OPSET } from './graph.ts';

const FORMAT = 1;

export interface OnnxCacheEntry {
  format: number;
  key: string;
  /** sha256 (hex) and size of the .onnx file. */
  sha256: string;
  bytes: number;
  classes: number;
  nodes: number;
  model: string;
  source: string;
  sourceDigest: string;
  preprocess: string;
  converterVersion: number;
  opset: number;
  convertMs: number;
  createdAt: string;
}

export interface CachedOnnxModel {
  bytes: Uint8Array;
  entry: OnnxCacheEntry;
  /** The .onnx file (it may not exist if the cache could not be written). */
  path: string;
  /** Converted by this call (a miss), not read from the cache. */
  converted: boolean;
}

type CacheSettings = Pick<WorkerConfig, 'modelCacheDir' | 'modelName' | 'preprocess'>;

export const onnxCacheDir = (modelCacheDir: string) => join(modelCacheDir, 'onnx');

/** The cache key of these files under these settings (see the header). */
export function onnxCacheKey(
  files: Pick<ModelFiles, 'jsonBytes' | 'shards'>,
  config: CacheSettings,
): { key: string; sourceDigest: string } {
  const sourceDigest = modelDigest(files);
  const key = createHash('sha256')
    .update(
      JSON.stringify({ sourceDigest, preprocess: config.preprocess, model: config.modelName, converter: CONVERTER_VERSION, opset: OPSET }),
    )
    .digest('hex')
    .slice(0, 32);
  return { key, sourceDigest };
}

export async function cachedOnnxModel(
  files: ModelFiles,
  config: CacheSettings,
  log: Logger,
  convert: () => Promise<ConvertedModel> | ConvertedModel,
): Promise<CachedOnnxModel> {
  const { key, sourceDigest } = onnxCacheKey(files, config);
  const dir = onnxCacheDir(config.modelCacheDir);
  const base = join(dir, `${config.modelName.replace(/[^\w.-]+/g, '_')}-${key}`);
  const path = `${base}.onnx`;
  const entryPath = `${base}.json`;

  const hit = await readEntry(path, entryPath, key);
  if (hit.ok) return { bytes: hit.bytes, entry: hit.entry, path, converted: false };
  if (hit.reason !== 'not cached') {
    log.warn({ path, reason: hit.reason }, 'cached ONNX model unusable; converting again');
    // Best effort: the new files replace them anyway, if they can be written at all.
    await Promise.all([path, entryPath].map((file) => rm(file, { force: true }).catch(() => {})));
  }

  const converted = await convert();
  const entry: OnnxCacheEntry = {
    format: FORMAT,
    key,
    sha256: sha256(converted.bytes),
    bytes: converted.bytes.byteLength,
    classes: converted.classes,
    nodes: converted.nodes,
    model: config.modelName,
    source: files.where,
    sourceDigest,
    preprocess: config.preprocess,
    converterVersion: CONVERTER_VERSION,
    opset: OPSET,
    convertMs: Math.round(converted.convertMs),
    createdAt: new Date().toISOString(),
  };
  try {
    await mkdir(dir, { recursive: true });
    await removeStalePartials(dir);
    await writeAtomically(path, converted.bytes);
    await writeAtomically(entryPath, new TextEncoder().encode(`${JSON.stringify(entry, null, 2)}\n`));
  } catch (error) {
    log.warn({ dir, err: error }, 'could not cache the converted ONNX model: it is converted again at every start');
  }
  return { bytes: converted.bytes, entry, path, converted: true };
}

type Lookup = { ok: true; bytes: Uint8Array; entry: OnnxCacheEntry } | { ok: false; reason: string };

async function readEntry(path: string, entryPath: string, key: string): Promise<Lookup> {
  let entry: OnnxCacheEntry;
  try {
    entry = JSON.parse(await readFile(entryPath, 'utf8')) as OnnxCacheEntry;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return { ok: false, reason: code === 'ENOENT' ? 'not cached' : `unreadable ${entryPath}: ${(error as Error).message}` };
  }
  if (entry?.format !== FORMAT || entry.key !== key) return { ok: false, reason: `${entryPath} describes another graph` };
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (error) {
    return { ok: false, reason: `the graph is missing (${(error as Error).message})` };
  }
  if (bytes.byteLength !== entry.bytes) return { ok: false, reason: `${bytes.byteLength} bytes instead of ${entry.bytes} (truncated?)` };
  if (sha256(bytes) !== entry.sha256) return { ok: false, reason: 'its bytes do not match the sha256 recorded at conversion (corrupt)' };
  return { ok: true, bytes, entry };
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** Temporary files older than this are from a crashed write (a graph is ~100 MB: worth removing). */
const STALE_PARTIAL_MS = 60 * 60 * 1000;

async function removeStalePartials(dir: string): Promise<void> {
  for (const name of (await readdir(dir)).filter((n) => n.includes('.partial-'))) {
    const path = join(dir, name);
    const info = await stat(path).catch(() => undefined);
    if (info && Date.now() - info.mtimeMs > STALE_PARTIAL_MS) await rm(path, { force: true });
  }
}

/** Write to a temporary name, flush to disk, rename: readers see the old file or the whole new one. */
async function writeAtomically(path: string, bytes: Uint8Array): Promise<void> {
  const temporary = `${path}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const file = await open(temporary, 'w');
    try {
      await file.writeFile(bytes);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}
