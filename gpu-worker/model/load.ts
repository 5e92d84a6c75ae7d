/**
 * Load a tfjs layers model (model.json + weight shards) and its labels, and check they fit the
 * wire format: input [null, 224, 224, 3], one output of [null, labels.length].
 *
 * Local directories are read with fs and handed to tfjs as in-memory artifacts: tfjs-core alone
 * has no file:// handler (only tfjs-node registers one). URLs go through tfjs' http loader (fetch).
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { CHANNELS, IMAGE_SIZE } from '../../shared/tensor.ts';
import type { ModelSource, WorkerConfig } from '../config.ts';
import { BUILTIN_MODEL } from './builtin.ts';
import { fetchBuiltinModel, type DownloadProgress } from './fetch.ts';
import type { PreprocessMode } from './preprocess.ts';

export class ModelLoadError extends Error {
  override name = 'ModelLoadError';
}

export interface LoadedModel {
  model: tfl.LayersModel;
  labels: string[];
  /** Reported in results. */
  name: string;
  preprocess: PreprocessMode;
  /** Directory or URL the model came from. */
  source: string;
  paramCount: number;
  /** Whether the last layer already ends in softmax; if not, the classifier applies one. */
  outputsProbabilities: boolean;
  loadMs: number;
}

export interface LoadModelOptions {
  onProgress?: (progress: DownloadProgress) => void;
}

/** A model with weights to load (a synthetic model has none). */
type FileSource = Extract<ModelSource, { kind: 'dir' | 'url' }>;

type ModelSettings = Pick<WorkerConfig, 'model' | 'labels' | 'preprocess' | 'modelName' | 'modelCacheDir'>;

/** Resolve the configured model (downloading the builtin one on first use), load and check it. */
export async function loadModel(config: ModelSettings, options: LoadModelOptions = {}): Promise<LoadedModel> {
  let source: FileSource;
  let labelsAt: string | undefined = config.labels;
  if (config.model.kind === 'builtin') {
    const fetched = await fetchBuiltinModel({ cacheDir: config.modelCacheDir, onProgress: options.onProgress });
    source = { kind: 'dir', path: join(fetched.dir, BUILTIN_MODEL.modelPath, '..') };
    labelsAt ??= join(fetched.dir, BUILTIN_MODEL.labelsPath);
  } else if (config.model.kind === 'synthetic') {
    throw new ModelLoadError('a synthetic model has no weights to load (see model/synthetic.ts)');
  } else {
    source = config.model;
  }
  const started = Date.now();
  const model = await loadLayersModel(source);
  try {
    const labels = await loadLabels(labelsAt ?? labelsNextTo(source), labelsAt === undefined);
    checkModelShape(model, labels, sourceText(source));
    return {
      model,
      labels,
      name: config.modelName,
      preprocess: config.preprocess,
      source: sourceText(source),
      paramCount: model.countParams(),
      outputsProbabilities: endsInSoftmax(model),
      loadMs: Date.now() - started,
    };
  } catch (error) {
    model.dispose();
    throw error;
  }
}

export async function loadLayersModel(source: FileSource): Promise<tfl.LayersModel> {
  try {
    if (source.kind === 'url') return await tfl.loadLayersModel(source.url);
    return await tfl.loadLayersModel(tf.io.fromMemory(await readModelArtifacts(source.path)));
  } catch (error) {
    if (error instanceof ModelLoadError) throw error;
    throw new ModelLoadError(`could not load the model from ${sourceText(source)}: ${(error as Error).message}`, { cause: error });
  }
}

/** model.json + its weight shards from a directory, as tfjs ModelArtifacts. */
export async function readModelArtifacts(dir: string): Promise<tf.io.ModelArtifacts> {
  const jsonPath = join(dir, 'model.json');
  let modelJson: tf.io.ModelJSON;
  try {
    modelJson = JSON.parse(await readFile(jsonPath, 'utf8')) as tf.io.ModelJSON;
  } catch (error) {
    throw new ModelLoadError(`could not read ${jsonPath}: ${(error as Error).message}`, { cause: error });
  }
  if (!modelJson.modelTopology) throw new ModelLoadError(`${jsonPath} is not a tfjs layers model (no modelTopology)`);
  return tf.io.getModelArtifactsForJSON(modelJson, async (manifest) => {
    const specs = manifest.flatMap((group) => group.weights);
    const paths = manifest.flatMap((group) => group.paths);
    const shards = await Promise.all(
      paths.map(async (path) => {
        const file = resolve(dir, path);
        const inside = relative(dir, file);
        // model.json is data: a shard path must not point outside the model's directory.
        if (inside.startsWith('..') || isAbsolute(inside)) throw new ModelLoadError(`${jsonPath}: weight path ${path} leaves the model directory`);
        const bytes = await readFile(file);
        return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
      }),
    );
    return [specs, shards];
  });
}

function labelsNextTo(source: FileSource): string {
  return source.kind === 'dir' ? join(source.path, 'labels.json') : new URL('labels.json', source.url).href;
}

/** Labels from a path or http(s) URL. `guessed`: the location was not configured but assumed. */
export async function loadLabels(location: string, guessed = false): Promise<string[]> {
  let text: string;
  try {
    if (/^https?:\/\//i.test(location)) {
      const response = await fetch(location);
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      text = await response.text();
    } else {
      text = await readFile(location, 'utf8');
    }
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
    const missing = labels.findIndex((label) => label === undefined);
    if (missing !== -1) throw new Error(`no label for class ${missing}`);
    return labels;
  }
  throw new Error('expected an array of names or an object keyed "0".."N-1"');
}

export function checkModelShape(model: tfl.LayersModel, labels: string[], where: string): void {
  const expected = [null, IMAGE_SIZE, IMAGE_SIZE, CHANNELS];
  const input = model.inputs.length === 1 ? model.inputs[0]?.shape : undefined;
  if (!input || JSON.stringify(input) !== JSON.stringify(expected)) {
    const got = model.inputs.map((t) => JSON.stringify(t.shape)).join(', ');
    throw new ModelLoadError(`${where}: the model must take one input of shape [null,224,224,3] (224x224 RGB, channels last); it takes ${got}`);
  }
  const output = model.outputs.length === 1 ? model.outputs[0]?.shape : undefined;
  if (!output || output.length !== 2) {
    const got = model.outputs.map((t) => JSON.stringify(t.shape)).join(', ');
    throw new ModelLoadError(`${where}: the model must have one output of shape [null, classes]; it has ${got}`);
  }
  if (output[1] !== labels.length) {
    throw new ModelLoadError(`${where}: the model outputs ${output[1]} classes but there are ${labels.length} labels`);
  }
}

function endsInSoftmax(model: tfl.LayersModel): boolean {
  const last = model.layers.at(-1);
  if (!last) return false;
  if (last.getClassName() === 'Softmax') return true;
  return (last.getConfig() as { activation?: unknown }).activation === 'softmax';
}

const sourceText = (source: FileSource) => (source.kind === 'dir' ? source.path : source.url);
