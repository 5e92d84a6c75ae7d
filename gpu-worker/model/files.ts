/**
 * The configured model's files, read once: model.json, its weight shards in manifest order, and
 * its labels, from the builtin package (fetched on first use), a directory or an http(s) URL. Both
 * engines start from them: tfjs builds its LayersModel from them (engine/tfjs/load.ts), the ONNX
 * engine looks its converted graph up by their digest (engine/onnx/cache.ts). No tfjs here.
 *
 * @example
 * const files = await readModelFiles(config); // { where, modelJson, shards, labels, ... }
 * modelDigest(files)                           // sha256 of what the model is
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve } from 'node:path';
import type { ModelSource, WorkerConfig } from '../config.ts';
import { BUILTIN_MODEL } from './builtin.ts';
import { fetchBuiltinModel, type DownloadProgress } from './fetch.ts';

export class ModelLoadError extends Error {
  override name = 'ModelLoadError';
}

/** The parts of a tfjs layers model.json that loading reads (see tf.io.ModelJSON). */
export interface LayersModelJson {
  modelTopology: unknown;
  weightsManifest: { paths: string[]; weights: unknown[] }[];
  [key: string]: unknown;
}

export interface ModelFiles {
  /** Directory or URL of model.json, for messages. */
  where: string;
  modelJson: LayersModelJson;
  /** model.json as read: with the shards, exactly what the model is. */
  jsonBytes: Uint8Array;
  /** Weight shards in the order of the manifest's paths. */
  shards: Uint8Array[];
  labels: string[];
}

export interface ReadModelOptions {
  onProgress?: (progress: DownloadProgress) => void;
}

export type ModelSettings = Pick<WorkerConfig, 'model' | 'labels' | 'preprocess' | 'modelName' | 'modelCacheDir'>;

/** A model with weights to read (a synthetic model has none). */
type FileSource = Extract<ModelSource, { kind: 'dir' | 'url' }>;

/** Resolve the configured model (downloading the builtin one on first use) and read it whole. */
export async function readModelFiles(config: ModelSettings, options: ReadModelOptions = {}): Promise<ModelFiles> {
  let source: FileSource;
  let labelsAt: string | undefined = config.labels;
  if (config.model.kind === 'builtin') {
    const fetched = await fetchBuiltinModel({ cacheDir: config.modelCacheDir, onProgress: options.onProgress });
    source = { kind: 'dir', path: join(fetched.dir, BUILTIN_MODEL.modelPath, '..') };
    labelsAt ??= join(fetched.dir, BUILTIN_MODEL.labelsPath);
  } else if (config.model.kind === 'synthetic') {
    throw new ModelLoadError('a synthetic model has no weights to load (see engine/synthetic.ts)');
  } else {
    source = config.model;
  }
  const where = source.kind === 'dir' ? source.path : source.url;
  const modelUrl = source.kind === 'dir' ? join(source.path, 'model.json') : source.url;
  const jsonBytes = await readLocation(modelUrl).catch((error: Error) => {
    throw new ModelLoadError(`could not read ${modelUrl}: ${error.message}`, { cause: error });
  });
  let modelJson: LayersModelJson;
  try {
    modelJson = JSON.parse(Buffer.from(jsonBytes).toString('utf8')) as LayersModelJson;
  } catch (error) {
    throw new ModelLoadError(`could not read ${modelUrl}: ${(error as Error).message}`, { cause: error });
  }
  if (!modelJson?.modelTopology) throw new ModelLoadError(`${modelUrl} is not a tfjs layers model (no modelTopology)`);
  const paths = (modelJson.weightsManifest ?? []).flatMap((group) => group.paths);
  const shards = await Promise.all(
    paths.map((path) => {
      const at = shardLocation(source, path, modelUrl);
      return readLocation(at).catch((error: Error) => {
        throw new ModelLoadError(`could not read the weight file ${at}: ${error.message}`, { cause: error });
      });
    }),
  );
  const labels = await loadLabels(labelsAt ?? labelsNextTo(source), labelsAt === undefined);
  return { where, modelJson, jsonBytes, shards, labels };
}

/** sha256 (hex) of model.json and every shard: changes whenever the model does. */
export function modelDigest(files: Pick<ModelFiles, 'jsonBytes' | 'shards'>): string {
  const hash = createHash('sha256');
  for (const part of [files.jsonBytes, ...files.shards]) {
    // Length first: no two different splits of the same bytes hash alike.
    hash.update(`${part.byteLength}:`);
    hash.update(part);
  }
  return hash.digest('hex');
}

/** Labels from a path or http(s) URL. `guessed`: the location was not configured but assumed. */
export async function loadLabels(location: string, guessed = false): Promise<string[]> {
  let text: string;
  try {
    text = Buffer.from(await readLocation(location)).toString('utf8');
  } catch (error) {
    const hint = guessed ? ' (set LABELS to the labels JSON, or put labels.json next to model.json)' : '';
    throw new ModelLoadError(`could not read labels from ${location}: ${(error as Error).message}${hint}`, { cause: error });
  }
  try {
    return parseLabels(JSON.parse(text));
  } catch (error) {
    throw new ModelLoadError(`bad labels file ${location}: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Accepts an array of names, or an object keyed "0".."N-1" whose values are names or
 * Keras-style [wnid, name] pairs (imagenet_class_index.json).
 */
export function parseLabels(json: unknown): string[] {
  const name = (value: unknown, at: string): string => {
    if (typeof value === 'string') return value;
    if (Array.isArray(value) && typeof value.at(-1) === 'string') return value.at(-1) as string;
    throw new Error(`label ${at} is not a string`);
  };
  if (Array.isArray(json)) {
    if (json.length === 0) throw new Error('no labels');
    return json.map((value, i) => name(value, String(i)));
  }
  if (json && typeof json === 'object') {
    const entries = Object.entries(json);
    if (entries.length === 0) throw new Error('no labels');
    const labels = new Array<string>(entries.length);
    for (const [key, value] of entries) {
      const index = Number(key);
      if (!/^\d+$/.test(key) || index >= entries.length) {
        throw new Error(`expected keys "0".."${entries.length - 1}", got "${key}"`);
      }
      labels[index] = name(value, key);
    }
    // biome-ignore lint/complexity/useIndexOf: indexOf skips the holes of a sparse array; findIndex visits them
    const missing = labels.findIndex((label) => label === undefined);
    if (missing !== -1) throw new Error(`no label for class ${missing}`);
    return labels;
  }
  throw new Error('expected an array of names or an object keyed "0".."N-1"');
}

const isUrl = (location: string) => /^https?:\/\//i.test(location);

async function readLocation(location: string): Promise<Uint8Array> {
  if (!isUrl(location)) return readFile(location);
  const response = await fetch(location);
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

/** model.json is data: a shard path must not point outside the model's directory. */
function shardLocation(source: FileSource, path: string, modelUrl: string): string {
  if (source.kind === 'url') return new URL(path, source.url).href;
  const file = resolve(source.path, path);
  const inside = relative(source.path, file);
  if (inside.startsWith('..') || isAbsolute(inside))
    throw new ModelLoadError(`${modelUrl}: weight path ${path} leaves the model directory`);
  return file;
}

function labelsNextTo(source: FileSource): string {
  return source.kind === 'dir' ? join(source.path, 'labels.json') : new URL('labels.json', source.url).href;
}
